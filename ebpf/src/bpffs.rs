//! The BPF filesystem where the maps are pinned.

use std::ffi::CString;
use std::io;
use std::path::Path;

use crate::error::XdpError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPFFS_ROOT: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts bpffs at /sys/fs/bpf when the pin path lies there and nothing is mounted yet (minimal
/// hosts and fresh network namespaces often lack it), then creates the pin directory.
pub(crate) fn prepare(pin_path: &Path) -> Result<(), XdpError> {
    let err = |source: io::Error| XdpError::Bpffs {
        path: pin_path.display().to_string(),
        source,
    };
    if pin_path.starts_with(BPFFS_ROOT) && !is_bpffs(Path::new(BPFFS_ROOT)) {
        let (src, dst, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: constant C strings; no mount data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(err(io::Error::last_os_error()));
        }
    }
    std::fs::create_dir_all(pin_path).map_err(err)
}
