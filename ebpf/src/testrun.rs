//! `BPF_PROG_TEST_RUN` through the raw syscall, on a program fd of our own: runs need no lock on
//! the data plane's state, so tests can run packets while rule updates are being published.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the program's verdicts are carried out (Linux 5.18).
const LIVE_FRAMES: u32 = 1 << 1;

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Verdict, output bytes and mean time per run of `repeat` runs on `packet`.
pub(crate) fn run(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    repeat: u32,
) -> io::Result<(u32, Vec<u8>, Duration)> {
    // Room for the metadata the program may prepend.
    // Room for what a program may add: a DNS answer grows the query by up to a page.
    let mut out = vec![0u8; packet.len() + 4096];
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..TestAttr::default()
    };
    // SAFETY: `attr` points to buffers that outlive the call, with their true sizes.
    unsafe { test_run(&mut attr)? };
    out.truncate(attr.data_size_out as usize);
    Ok((
        attr.retval,
        out,
        Duration::from_nanos(u64::from(attr.duration)),
    ))
}

/// Runs the XDP program `prog` `repeat` times in live-frame mode: each run gets a fresh page
/// holding `packet` (or, on a recycled page, what was last written there) and its verdict is
/// carried out, so an `XDP_REDIRECT` really sends the frame. For load generators: the caller's
/// CPU runs the program and the redirects, in batches of 64 frames.
pub fn run_live_frames(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> io::Result<()> {
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: repeat.max(1),
        flags: LIVE_FRAMES,
        ..TestAttr::default()
    };
    // SAFETY: `attr` points to `packet`, which outlives the call, with its true size.
    unsafe { test_run(&mut attr) }
}

/// # Safety
/// The buffers `attr` points to must be valid for the sizes it gives, until this returns.
unsafe fn test_run(attr: &mut TestAttr) -> io::Result<()> {
    // SAFETY: the caller keeps what `attr` points to valid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestAttr,
            size_of::<TestAttr>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
