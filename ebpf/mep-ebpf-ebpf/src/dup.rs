//! `mep_dup`, on TC ingress: sends the copy of a packet that `mep_xdp` marked for a DUPLICATE rule
//! to each of the rule's destination interfaces (decapsulated for DUPLICATE_DECAPSULATED) with
//! `bpf_clone_redirect`, then restores the packet, which goes on to the stack unchanged.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK,
    },
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_skb_load_bytes, bpf_skb_store_bytes},
    macros::classifier,
    programs::TcContext,
};
use mep_ebpf_common::{
    DstIf, DupMeta, RuleAction, ACT_DUPLICATE_DECAP, DUP_INNER_V6, IF_DST_IP, IF_DST_IP6,
    IF_DST_MAC, IF_SRC_MAC, META_MAGIC,
};

use crate::maps::{ACTIONS_0, ACTIONS_1, ACTIVE};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ETH_LEN: usize = 14;
/// Longest outer header stack (IPv6 + UDP + GTP-U with extensions) a decapsulated copy strips.
const MAX_STRIP: usize = 96;
const BPF_F_RECOMPUTE_CSUM: u64 = 1;
/// Keeps the checksum state of the packet: it is restored byte for byte after the copy left, and
/// a reset would make the stack verify a CHECKSUM_PARTIAL packet's unfinished checksum.
const BPF_F_ADJ_ROOM_NO_CSUM_RESET: u64 = 1 << 5;

#[classifier]
pub fn mep_dup(ctx: TcContext) -> i32 {
    let meta_start = unsafe { (*ctx.skb.skb).data_meta } as usize;
    let data = ctx.data();
    if meta_start + core::mem::size_of::<DupMeta>() > data {
        return TC_ACT_OK;
    }
    let meta = unsafe { *(meta_start as *const DupMeta) };
    if meta.magic != META_MAGIC {
        return TC_ACT_OK;
    }
    let act = match ACTIVE.get(0) {
        Some(0) => ACTIONS_0.get(meta.slot),
        Some(_) => ACTIONS_1.get(meta.slot),
        None => None,
    };
    if let Some(act) = act {
        let act: RuleAction = *act;
        duplicate(&ctx, &act, &meta);
    }
    TC_ACT_OK
}

#[inline(always)]
fn duplicate(ctx: &TcContext, act: &RuleAction, meta: &DupMeta) {
    let decap = act.kind == ACT_DUPLICATE_DECAP && meta.strip != 0;
    let strip = meta.strip as usize;
    let mut saved = [0u8; MAX_STRIP];
    let mut old_proto = [0u8; 2];
    if decap {
        if strip == 0
            || strip > MAX_STRIP
            || !load(ctx, ETH_LEN, saved.as_mut_ptr(), strip)
            || !load(ctx, 12, old_proto.as_mut_ptr(), 2)
            || ctx
                .adjust_room(-(strip as i32), BPF_ADJ_ROOM_MAC, 0)
                .is_err()
        {
            return;
        }
        let proto: [u8; 2] = if meta.flags & DUP_INNER_V6 != 0 {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        };
        if ctx.store(12, &proto, BPF_F_RECOMPUTE_CSUM).is_err() {
            return;
        }
    }
    let mut macs = [0u8; 12];
    if load(ctx, 0, macs.as_mut_ptr(), 12) {
        for (i, dif) in act.ifs.iter().enumerate() {
            if i as u32 >= act.n_if {
                break;
            }
            send_copy(ctx, dif);
        }
        let _ = ctx.store(0, &macs, BPF_F_RECOMPUTE_CSUM);
    }
    if decap
        && ctx
            .adjust_room(strip as i32, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_NO_CSUM_RESET)
            .is_ok()
        && ctx.store(12, &old_proto, BPF_F_RECOMPUTE_CSUM).is_ok()
    {
        let len = ((strip as u32).wrapping_sub(1) & 0x7f) + 1;
        if len as usize <= MAX_STRIP {
            unsafe {
                bpf_skb_store_bytes(
                    ctx.skb.skb.cast(),
                    ETH_LEN as u32,
                    saved.as_ptr().cast(),
                    len,
                    BPF_F_RECOMPUTE_CSUM,
                )
            };
        }
        // Shrinking dropped a partial (offloaded) checksum state, so the stack would now verify
        // the outer UDP checksum and fail. Over IPv4 a zero UDP checksum means "none": valid for
        // every checksum state. (Over IPv6 zero is not allowed; such originals keep theirs.)
        if old_proto == [0x08, 0x00] {
            let ihl = usize::from(saved[0] & 0x0f) * 4;
            let _ = ctx.store(ETH_LEN + ihl + 6, &[0u8; 2], BPF_F_RECOMPUTE_CSUM);
        }
    }
}

/// Copies `len` (1..=MAX_STRIP) bytes at `off` to `dst`.
#[inline(always)]
fn load(ctx: &TcContext, off: usize, dst: *mut u8, len: usize) -> bool {
    // 1..=128 by construction (0 wraps to 128), so the verifier sees a non-zero size.
    let len = ((len as u32).wrapping_sub(1) & 0x7f) + 1;
    if len as usize > MAX_STRIP {
        return false;
    }
    unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off as u32, dst.cast(), len) == 0 }
}

/// Rewrites the MACs for `dif` (from the FIB where the interface does not name them) and
/// clone-redirects the frame out of the FIB's egress interface.
#[inline(always)]
fn send_copy(ctx: &TcContext, dif: &DstIf) {
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    let Ok(proto) = ctx.load::<[u8; 2]>(12) else {
        return;
    };
    let v6 = proto == [0x86, 0xdd];
    {
        if dif.flags & IF_DST_IP != 0 && dif.flags & IF_DST_IP6 != 0 {
            fib.family = AF_INET6;
            fib.__bindgen_anon_4.ipv6_dst = dif.dst_ip;
        } else if dif.flags & IF_DST_IP != 0 {
            fib.family = AF_INET;
            fib.__bindgen_anon_4.ipv4_dst = dif.dst_ip[0];
        } else if v6 {
            let Ok(dst) = ctx.load::<[u32; 4]>(ETH_LEN + 24) else {
                return;
            };
            fib.family = AF_INET6;
            fib.__bindgen_anon_4.ipv6_dst = dst;
        } else {
            let Ok(dst) = ctx.load::<u32>(ETH_LEN + 16) else {
                return;
            };
            fib.family = AF_INET;
            fib.__bindgen_anon_4.ipv4_dst = dst;
        }
        fib.__bindgen_anon_1.tot_len = ctx.len() as u16;
    }
    fib.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    } as u32;
    let named = dif.flags & (IF_DST_MAC | IF_SRC_MAC) == IF_DST_MAC | IF_SRC_MAC;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && !(named && fib.ifindex != 0) {
        return;
    }
    let dmac = if dif.flags & IF_DST_MAC != 0 {
        dif.dst_mac
    } else {
        fib.dmac
    };
    let smac = if dif.flags & IF_SRC_MAC != 0 {
        dif.src_mac
    } else {
        fib.smac
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&dmac);
    macs[6..].copy_from_slice(&smac);
    if ctx.store(0, &macs, 0).is_ok() {
        let _ = ctx.clone_redirect(fib.ifindex, 0);
    }
}
