//! The kernel load generator (`mep_bench_gun` of `mep-ebpf-ebpf`): sends DNS queries for
//! `count` names (`host<i>.<zone>`, A, each from a UDP port of its own) out of a veth at a set
//! rate, in bursts of 10, from `BPF_PROG_TEST_RUN` in live-frame mode on the calling thread's
//! CPU (which it keeps busy: the program paces itself), and counts the answers with the same
//! program attached to the veth in native mode. Used by `examples/dns_xdp_gun.rs` and
//! `tests/dns_netns.rs`; call it in the veth's network namespace.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use mep_ebpf::run_live_frames;
use mep_ebpf_common::{GunConfig, GunFrame, GunState, GUN_FRAMES_MAX, GUN_FRAME_CAP};
use mep_ebpf_testkit::{ip, udp};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mep-bench-gun.o"));

/// The source port of query `i` is `PORT_BASE + i`.
const PORT_BASE: u16 = 20_000;
/// Queries per burst: kxdpgun's default batch.
const BURST: u32 = 10;
/// Runs of the program per `BPF_PROG_TEST_RUN` call: a few hundredths of a second.
const RUNS: u32 = 1 << 20;

/// What to send, from where to where.
pub struct Gun<'a> {
    pub iface: &'a str,
    /// The MAC addresses of the veth and of its peer.
    pub own_mac: [u8; 6],
    pub peer_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub port: u16,
    pub count: u32,
    pub zone: &'a str,
    /// Queries per second; 0 sends as fast as the CPU allows.
    pub rate: f64,
    pub seconds: f64,
}

/// Queries sent (some may have found the veth's ring full) and answers counted.
#[derive(Debug)]
pub struct Fired {
    pub sent: u64,
    pub replies: u64,
}

impl Gun<'_> {
    pub fn fire(&self) -> Result<Fired, String> {
        if self.count == 0 || self.count > GUN_FRAMES_MAX {
            return Err(format!("the name count must be 1..={GUN_FRAMES_MAX}"));
        }
        let iface = self.iface;
        let name = std::ffi::CString::new(iface).map_err(|e| format!("{iface}: {e}"))?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("{iface}: {}", std::io::Error::last_os_error()));
        }

        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| format!("load the generator: {e}"))?;
        let mut frames: Array<MapData, GunFrame> = map(&mut ebpf, "MEP_GUN_FRAMES")?;
        let mut first = Vec::new();
        for i in 0..self.count {
            let frame = self.query_frame(i)?;
            if i == 0 {
                first = frame.data[..frame.len as usize].to_vec();
            }
            frames.set(i, frame, 0).map_err(|e| e.to_string())?;
        }
        let replies: PerCpuArray<MapData, u64> = map(&mut ebpf, "MEP_GUN_REPLIES")?;
        let state: PerCpuArray<MapData, GunState> = map(&mut ebpf, "MEP_GUN_STATE")?;
        let mut cfg: Array<MapData, GunConfig> = map(&mut ebpf, "MEP_GUN_CFG")?;
        let gun = program(&mut ebpf, "mep_bench_gun")?;
        gun.load().map_err(|e| format!("load the generator: {e}"))?;
        gun.attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|e| format!("attach the generator to {iface}: {e}"))?;
        let gun = gun.fd().map_err(|e| e.to_string())?;

        let stop_ns = monotonic_ns() + (self.seconds * 1e9) as u64;
        cfg.set(
            0,
            GunConfig {
                ifindex,
                frames: self.count,
                server_port: self.port,
                port_base: PORT_BASE,
                port_count: self.count as u16,
                burst: BURST,
                interval_ns: if self.rate > 0.0 {
                    (1e9 / self.rate) as u64
                } else {
                    0
                },
                stop_ns,
                ..GunConfig::default()
            },
            0,
        )
        .map_err(|e| e.to_string())?;
        // The program sends nothing after `stop_ns`.
        while monotonic_ns() < stop_ns {
            run_live_frames(gun.as_fd(), &first, RUNS).map_err(|e| format!("test run: {e}"))?;
        }
        // Answers still on their way.
        std::thread::sleep(Duration::from_millis(100));
        let sent = state.get(&0, 0).map_err(|e| e.to_string())?;
        let answers = replies.get(&0, 0).map_err(|e| e.to_string())?;
        Ok(Fired {
            sent: sent.iter().map(|s| s.sent).sum(),
            replies: answers.iter().sum(),
        })
    }

    /// Query `i` as an Ethernet frame, checksums filled in.
    fn query_frame(&self, i: u32) -> Result<GunFrame, String> {
        let name = format!("host{i}.{}", self.zone);
        let mut dns = Vec::with_capacity(64);
        dns.extend_from_slice(&(i as u16).to_be_bytes());
        dns.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.trim_end_matches('.').split('.') {
            dns.push(label.len() as u8);
            dns.extend_from_slice(label.as_bytes());
        }
        dns.extend_from_slice(&[0, 0, 1, 0, 1]);
        let packet = ip(
            &self.src.to_string(),
            &self.dst.to_string(),
            0,
            &udp(PORT_BASE + i as u16, self.port, &dns),
        );
        let len = 14 + packet.len();
        if len > GUN_FRAME_CAP {
            return Err(format!("{name}: a query frame of {len} bytes"));
        }
        let mut frame = GunFrame {
            len: len as u32,
            data: [0; GUN_FRAME_CAP],
        };
        frame.data[..6].copy_from_slice(&self.peer_mac);
        frame.data[6..12].copy_from_slice(&self.own_mac);
        frame.data[12..14].copy_from_slice(&[0x08, 0x00]);
        frame.data[14..len].copy_from_slice(&packet);
        Ok(frame)
    }
}

fn map<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<T, String> {
    let map = ebpf.take_map(name).ok_or(format!("no map {name}"))?;
    T::try_from(map).map_err(|e| format!("{name}: {e}"))
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, String> {
    ebpf.program_mut(name)
        .ok_or(format!("no program {name}"))?
        .try_into()
        .map_err(|e| format!("{name}: {e}"))
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
