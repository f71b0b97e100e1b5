//! mep's traffic-steering programs: `mep_xdp` classifies every frame against the active rule
//! generation and acts on it; `mep_dup` (TC ingress) sends the copies of DUPLICATE rules, which
//! XDP cannot clone. `mep_xdp` also answers DNS queries for local names (`dns`) that no rule
//! takes.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod action;
mod classify;
mod csum;
mod dns;
mod dup;
mod maps;
mod parse;
mod runtime;
mod verifier;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use mep_ebpf_common::{
    Counter, ACT_DROP, ACT_DUPLICATE, ACT_DUPLICATE_DECAP, ACT_FORWARD, ACT_FORWARD_DECAP, ACT_PASS,
};

use crate::{
    classify::{classify, NO_MATCH},
    maps::{ACTIVE, COUNTERS, ENTRIES, GEN_CFG},
};

/// `steer`'s verdict for a packet no rule took (or one a PASS rule hands to the stack): the
/// stack's, unless the kernel answers it as the DNS server would.
const TO_STACK: u32 = u32::MAX;

#[xdp]
pub fn mep_xdp(ctx: XdpContext) -> u32 {
    let verdict = match ACTIVE.get(0) {
        Some(0) => steer::<0>(&ctx),
        Some(_) => steer::<1>(&ctx),
        None => TO_STACK,
    };
    if verdict == TO_STACK {
        dns::answer(&ctx)
    } else {
        verdict
    }
}

/// Classifies and acts with generation `G`'s maps. One copy per generation (not inlined, so
/// LLVM cannot merge the two back into code whose map lookups the verifier cannot inline).
#[inline(never)]
fn steer<const G: u32>(ctx: &XdpContext) -> u32 {
    let Some(cfg) = GEN_CFG.get(G) else {
        return TO_STACK;
    };
    if cfg.dims == 0 {
        return TO_STACK;
    }
    // Not zeroed: `parse` writes every field when it succeeds.
    let mut p = core::mem::MaybeUninit::<parse::Pkt>::uninit();
    if !parse::parse(ctx, unsafe { &mut *p.as_mut_ptr() }) {
        return TO_STACK;
    }
    let p = unsafe { p.assume_init_ref() };
    let id = classify::<G>(cfg, p);
    if id == NO_MATCH {
        return TO_STACK;
    }
    let Some(e) = ENTRIES.get(id) else {
        return TO_STACK;
    };
    if let Some(c) = COUNTERS.get_ptr_mut(e.slot) {
        let c: &mut Counter = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += (ctx.data_end() - ctx.data()) as u64;
    }
    let act = &e.action;
    match act.kind {
        ACT_DROP => xdp_action::XDP_DROP,
        ACT_PASS => TO_STACK,
        ACT_FORWARD => action::redirect(ctx, p, &act.ifs[0], false, id),
        ACT_FORWARD_DECAP => {
            if p.tunnel && !action::decapsulate(ctx, p) {
                return xdp_action::XDP_ABORTED;
            }
            action::redirect(ctx, p, &act.ifs[0], true, id)
        }
        ACT_DUPLICATE | ACT_DUPLICATE_DECAP => action::mark_duplicate(ctx, p, id),
        _ => xdp_action::XDP_PASS,
    }
}

/// The trivial program the benchmark measures as its floor.
#[xdp]
pub fn mep_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
