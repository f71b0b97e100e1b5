//! The load generator of `benches/xdp-dns-veth.sh` (`CLIENT=gun`), not part of the data plane.
//! `mep_bench_gun` has two roles. Run by `BPF_PROG_TEST_RUN` in live-frame mode, it sends, at a
//! set pace, frames rewritten into the next of a set of precomputed DNS queries out of a veth
//! with `XDP_REDIRECT`. Attached to that veth, it counts and drops the answers. Being attached
//! keeps it in the kernel's XDP dispatcher: a test run's start and end would otherwise update
//! the dispatcher, which takes milliseconds.
//!
//! A test run cannot sleep, so the generator paces itself: one call runs it millions of times,
//! and it drops the frames of the runs when no query is due (a dropped frame goes straight back
//! to the call's page pool). That keeps its CPU busy. Short calls with sleeps between them
//! were measured and not kept: each call sets up a page pool of its own, which capped the rate
//! at about 330,000 queries/s.
//!
//! Why not an AF_XDP client such as kxdpgun: its copy-mode socket buffers are copied again by
//! the veth into XDP frames on the server's side, which costs that side about as much as mep's
//! answer itself. A redirected XDP frame reaches the peer as the frame a NIC driver would hand
//! to XDP.
#![no_std]
#![no_main]

mod runtime;
mod verifier;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{
        bpf_ktime_get_ns, bpf_redirect, bpf_xdp_adjust_tail, bpf_xdp_store_bytes,
    },
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use mep_ebpf_common::{GunConfig, GunFrame, GunState, GUN_FRAMES_MAX, GUN_FRAME_CAP};

#[map(name = "MEP_GUN_CFG")]
static GUN_CFG: Array<GunConfig> = Array::with_max_entries(1, 0);

#[map(name = "MEP_GUN_FRAMES")]
static GUN_FRAMES: Array<GunFrame> = Array::with_max_entries(GUN_FRAMES_MAX, 0);

/// Per CPU: a test run stays on one.
#[map(name = "MEP_GUN_STATE")]
static GUN_STATE: PerCpuArray<GunState> = PerCpuArray::with_max_entries(1, 0);

/// Time, in queries, the generator may make up after it was held up.
const CATCH_UP: u64 = 64;

/// Answers counted.
#[map(name = "MEP_GUN_REPLIES")]
static GUN_REPLIES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn mep_bench_gun(ctx: XdpContext) -> u32 {
    let Some(cfg) = GUN_CFG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    if ctx.ingress_ifindex() == cfg.ifindex as usize {
        count_answer(&ctx, cfg)
    } else {
        send_query(&ctx, cfg)
    }
}

/// Sends the next query when one is due (a burst of `cfg.burst` at a time), and drops the frame
/// otherwise. A live-frame page keeps what was last written to it (by the server's answer,
/// after a round trip), so the whole frame is written every time.
#[inline(always)]
fn send_query(ctx: &XdpContext, cfg: &GunConfig) -> u32 {
    let Some(state) = GUN_STATE.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let state = unsafe { &mut *state };
    if state.burst_left > 0 {
        state.burst_left -= 1;
    } else {
        let now = unsafe { bpf_ktime_get_ns() };
        if now >= cfg.stop_ns || now < state.next_ns {
            return xdp_action::XDP_DROP;
        }
        let burst = cfg.burst.max(1);
        let behind = now.saturating_sub(CATCH_UP * cfg.interval_ns);
        state.next_ns = state.next_ns.max(behind) + u64::from(burst) * cfg.interval_ns;
        state.burst_left = burst - 1;
    }
    let i = state.cursor;
    state.cursor = if i + 1 >= cfg.frames { 0 } else { i + 1 };
    let Some(frame) = GUN_FRAMES.get(i) else {
        return xdp_action::XDP_ABORTED;
    };
    let len = verifier::masked_len::<{ GUN_FRAME_CAP as u32 }>(frame.len);
    let have = ctx.data_end() - ctx.data();
    unsafe {
        if bpf_xdp_adjust_tail(ctx.ctx, len as i32 - have as i32) != 0
            || bpf_xdp_store_bytes(ctx.ctx, 0, frame.data.as_ptr() as *mut _, len) != 0
        {
            return xdp_action::XDP_ABORTED;
        }
        state.sent += 1;
        bpf_redirect(cfg.ifindex, 0) as u32
    }
}

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_AT: usize = ETH_LEN + IPV4_LEN;

/// Counts and drops an answer to the generator's queries: IPv4 without options, UDP from the
/// server's port to one of the generator's. Everything else (ARP, `dig`'s answers) goes on to
/// the stack.
#[inline(always)]
fn count_answer(ctx: &XdpContext, cfg: &GunConfig) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + UDP_AT + 8 > end {
        return xdp_action::XDP_PASS;
    }
    let byte = |at: usize| unsafe { *((start + at) as *const u8) };
    let word = |at: usize| u16::from_be_bytes([byte(at), byte(at + 1)]);
    if word(12) != 0x0800 || byte(ETH_LEN) != 0x45 || byte(ETH_LEN + 9) != 17 {
        return xdp_action::XDP_PASS;
    }
    let port = word(UDP_AT + 2);
    if word(UDP_AT) != cfg.server_port
        || port < cfg.port_base
        || port - cfg.port_base >= cfg.port_count
    {
        return xdp_action::XDP_PASS;
    }
    if let Some(n) = GUN_REPLIES.get_ptr_mut(0) {
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}
