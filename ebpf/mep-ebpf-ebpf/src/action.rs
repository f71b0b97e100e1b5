//! What the XDP program does with a matched packet: drop, pass, redirect (optionally after
//! stripping the outer headers and GTP-U), or mark it for the TC duplicate program.

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::{
        bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_meta,
    },
    programs::XdpContext,
};
use mep_ebpf_common::{
    DstIf, DupMeta, FwdMeta, DELIVERY_NO_ROUTE, DELIVERY_TC_FAILED, DELIVERY_XDP_REDIRECT,
    DUP_INNER_V6, FWD_RESOLVE, IF_DST_IP, IF_DST_IP6, IF_DST_MAC, IF_SRC_MAC, META_FWD_MAGIC,
    META_MAGIC, MODE_GENERIC,
};

use crate::maps::{count_delivery, XDP_TARGETS};
use crate::parse::{bounds, Pkt, ETH_LEN};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Strips everything in front of the inner IP header and writes a fresh Ethernet header (MACs are
/// rewritten by `redirect`).
#[inline(always)]
pub fn decapsulate(ctx: &XdpContext, p: &Pkt) -> bool {
    let shrink = p.l3_off as i32 - ETH_LEN as i32;
    if shrink <= 0 || unsafe { bpf_xdp_adjust_head(ctx.ctx, shrink) } != 0 {
        return false;
    }
    let (start, end) = bounds(ctx);
    if start + ETH_LEN > end {
        return false;
    }
    let proto: [u8; 2] = if p.v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    unsafe { *((start + 12) as *mut [u8; 2]) = proto };
    true
}

/// Sends the frame out of the interface the FIB picks for the next hop (the `dstInterface`'s IP
/// address, else the packet's destination), with the `dstInterface`'s MACs where it names them.
/// A target that takes no XDP frames (in native mode: any interface mep's program is not on, such
/// as a container's veth) or a next hop whose MAC is unresolved is handed to the TC program, which
/// redirects the skb. Without a route the packet goes on to the stack, counted.
#[inline(never)]
pub fn redirect(ctx: &XdpContext, p: &Pkt, dif: &DstIf, decapsulated: bool, entry: u32) -> u32 {
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    let outer = p.tunnel && !decapsulated;
    let (v6, src, dst) = if outer {
        (p.outer_v6, &p.tsrc, &p.tdst)
    } else {
        (p.v6, &p.src, &p.dst)
    };
    let (start, end) = bounds(ctx);
    let len = (end - start) as u16;
    {
        if dif.flags & IF_DST_IP != 0 {
            if dif.flags & IF_DST_IP6 != 0 {
                fib.family = AF_INET6;
                fib.__bindgen_anon_4.ipv6_dst = dif.dst_ip;
                if v6 {
                    fib.__bindgen_anon_3.ipv6_src = *src;
                }
            } else {
                fib.family = AF_INET;
                fib.__bindgen_anon_4.ipv4_dst = dif.dst_ip[0];
                if !v6 {
                    fib.__bindgen_anon_3.ipv4_src = src[3];
                }
            }
        } else if v6 {
            fib.family = AF_INET6;
            fib.__bindgen_anon_3.ipv6_src = *src;
            fib.__bindgen_anon_4.ipv6_dst = *dst;
        } else {
            fib.family = AF_INET;
            fib.__bindgen_anon_3.ipv4_src = src[3];
            fib.__bindgen_anon_4.ipv4_dst = dst[3];
        }
        fib.__bindgen_anon_1.tot_len = len;
    }
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let rc = unsafe {
        fib_lookup(
            ctx.ctx.cast(),
            &mut fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    } as u32;
    let named_dmac = dif.flags & IF_DST_MAC != 0;
    let named_smac = dif.flags & IF_SRC_MAC != 0;
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH && !(named_dmac && named_smac) {
        return to_tc(ctx, entry, fib.ifindex, FWD_RESOLVE, [0; 6], [0; 6], len);
    }
    let usable = rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
    if !usable {
        count_delivery(DELIVERY_NO_ROUTE, u64::from(len));
        return xdp_action::XDP_PASS;
    }
    let dmac = if named_dmac { dif.dst_mac } else { fib.dmac };
    let smac = if named_smac { dif.src_mac } else { fib.smac };
    let ingress = ctx.ingress_ifindex() as u32;
    // A known target first: the common case costs one lookup.
    let direct = unsafe { XDP_TARGETS.get(&fib.ifindex) }.is_some()
        || unsafe { XDP_TARGETS.get(&ingress) } == Some(&MODE_GENERIC);
    if !direct {
        return to_tc(ctx, entry, fib.ifindex, 0, dmac, smac, len);
    }
    let (start, end) = bounds(ctx);
    if start + ETH_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    count_delivery(DELIVERY_XDP_REDIRECT, u64::from(len));
    unsafe {
        *(start as *mut [u8; 6]) = dmac;
        *((start + 6) as *mut [u8; 6]) = smac;
        bpf_redirect(fib.ifindex, 0) as u32
    }
}

/// Leaves the forwarding decision in the packet's metadata for the TC program and lets the packet
/// become an skb (counted as not delivered when there is no room for the metadata).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn to_tc(
    ctx: &XdpContext,
    entry: u32,
    ifindex: u32,
    flags: u32,
    dmac: [u8; 6],
    smac: [u8; 6],
    len: u16,
) -> u32 {
    let meta = FwdMeta {
        magic: META_FWD_MAGIC,
        entry,
        ifindex,
        flags,
        dmac,
        smac,
    };
    if !put_meta(ctx, meta) {
        count_delivery(DELIVERY_TC_FAILED, u64::from(len));
    }
    xdp_action::XDP_PASS
}

/// Writes `meta` in front of the packet for the TC program; false when there is no room.
#[inline(always)]
fn put_meta<T>(ctx: &XdpContext, meta: T) -> bool {
    let size = core::mem::size_of::<T>() as i32;
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -size) } != 0 {
        return false;
    }
    let at = ctx.metadata();
    if at + size as usize > ctx.data() {
        return false;
    }
    unsafe { *(at as *mut T) = meta };
    true
}

/// Leaves the matched entry in the packet's metadata for the TC program, which sends the copy;
/// the packet itself goes on to the stack.
#[inline(always)]
pub fn mark_duplicate(ctx: &XdpContext, p: &Pkt, entry: u32) -> u32 {
    let meta = DupMeta {
        magic: META_MAGIC,
        entry,
        strip: if p.tunnel {
            (p.l3_off - p.l2_len) as u32
        } else {
            0
        },
        flags: if p.v6 { DUP_INNER_V6 } else { 0 },
    };
    put_meta(ctx, meta);
    xdp_action::XDP_PASS
}
