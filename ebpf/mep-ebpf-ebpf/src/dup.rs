//! `mep_dup`, on TC ingress: sends the copy of a packet that `mep_xdp` marked for a DUPLICATE rule
//! to each of the rule's destination interfaces (decapsulated for DUPLICATE_DECAPSULATED) with
//! `bpf_clone_redirect`, then restores the packet, which goes on to the stack unchanged; and
//! forwards the packets `mep_xdp` could not redirect itself (`FwdMeta`): `bpf_redirect` with the
//! MACs it found, or `bpf_redirect_neigh` when the next hop's MAC is still unknown.

use aya_ebpf::bindings::{bpf_redir_neigh, TC_ACT_REDIRECT};
use aya_ebpf::helpers::generated::{bpf_redirect, bpf_redirect_neigh};
use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK,
    },
    helpers::generated::{
        bpf_csum_diff, bpf_csum_level, bpf_csum_update, bpf_fib_lookup as fib_lookup,
        bpf_skb_load_bytes, bpf_skb_store_bytes,
    },
    macros::classifier,
    programs::TcContext,
};
use mep_ebpf_common::{
    DstIf, DupMeta, FwdMeta, RuleAction, ACT_DUPLICATE_DECAP, DELIVERY_TC_FAILED,
    DELIVERY_TC_REDIRECT, DUP_INNER_V6, FWD_RESOLVE, IF_DST_IP, IF_DST_IP6, IF_DST_MAC, IF_SRC_MAC,
    META_FWD_MAGIC, META_MAGIC,
};

use crate::csum::fold;
use crate::maps::{count_delivery, ENTRIES};
use crate::verifier::masked_len;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const ETH_LEN: usize = 14;
/// Longest outer header stack (IPv6 + UDP + GTP-U with extensions) a decapsulated copy strips.
const MAX_STRIP: usize = 96;
const BPF_F_RECOMPUTE_CSUM: u64 = 1;
/// Keeps the checksum state of the packet: it is restored byte for byte after the copy left, and
/// a reset would make the stack verify a CHECKSUM_PARTIAL packet's unfinished checksum.
const BPF_F_ADJ_ROOM_NO_CSUM_RESET: u64 = 1 << 5;
const BPF_CSUM_LEVEL_QUERY: u64 = 0;
const IPPROTO_UDP: u8 = 17;
const IPV6_LEN: usize = 40;
/// Bytes summed per `bpf_csum_diff` call when completing an IPv6 UDP checksum.
const CSUM_CHUNK: u32 = 128;
/// Enough chunks for the longest UDP datagram (65,535 bytes).
const CSUM_CHUNKS: u32 = 512;

#[classifier]
pub fn mep_dup(ctx: TcContext) -> i32 {
    let meta_start = unsafe { (*ctx.skb.skb).data_meta } as usize;
    let data = ctx.data();
    if meta_start + core::mem::size_of::<u32>() > data {
        return TC_ACT_OK;
    }
    let magic = unsafe { *(meta_start as *const u32) };
    if magic == META_FWD_MAGIC {
        if meta_start + core::mem::size_of::<FwdMeta>() > data {
            return TC_ACT_OK;
        }
        let meta = unsafe { *(meta_start as *const FwdMeta) };
        return forward(&ctx, &meta);
    }
    if magic != META_MAGIC || meta_start + core::mem::size_of::<DupMeta>() > data {
        return TC_ACT_OK;
    }
    let meta = unsafe { *(meta_start as *const DupMeta) };
    if let Some(act) = action(meta.entry) {
        duplicate(&ctx, &act, &meta);
    }
    TC_ACT_OK
}

/// The action of the entry `mep_xdp` matched (entries stay unchanged for longer than a packet
/// takes from XDP to TC).
#[inline(always)]
fn action(entry: u32) -> Option<RuleAction> {
    ENTRIES.get(entry).map(|e| e.action)
}

/// Redirects a packet `mep_xdp` matched for FORWARD but could not send itself.
#[inline(never)]
fn forward(ctx: &TcContext, meta: &FwdMeta) -> i32 {
    let len = u64::from(ctx.len());
    let rc = if meta.flags & FWD_RESOLVE != 0 {
        // The next hop is the dstInterface's address when the rule names one, else the kernel
        // routes on the packet's destination; either way it resolves the neighbour.
        let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
        let named = match action(meta.entry) {
            Some(act) if act.ifs[0].flags & IF_DST_IP != 0 => {
                let dif = act.ifs[0];
                if dif.flags & IF_DST_IP6 != 0 {
                    nh.nh_family = AF_INET6 as u32;
                    nh.__bindgen_anon_1.ipv6_nh = dif.dst_ip;
                } else {
                    nh.nh_family = AF_INET as u32;
                    nh.__bindgen_anon_1.ipv4_nh = dif.dst_ip[0];
                }
                true
            }
            _ => false,
        };
        unsafe {
            if named {
                bpf_redirect_neigh(
                    meta.ifindex,
                    &mut nh,
                    core::mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            } else {
                bpf_redirect_neigh(meta.ifindex, core::ptr::null_mut(), 0, 0)
            }
        }
    } else {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&meta.dmac);
        macs[6..].copy_from_slice(&meta.smac);
        if unsafe { bpf_skb_store_bytes(ctx.skb.skb, 0, macs.as_ptr().cast(), 12, 0) } != 0 {
            count_delivery(DELIVERY_TC_FAILED, len);
            return TC_ACT_OK;
        }
        unsafe { bpf_redirect(meta.ifindex, 0) }
    };
    if rc == i64::from(TC_ACT_REDIRECT) {
        count_delivery(DELIVERY_TC_REDIRECT, len);
        TC_ACT_REDIRECT as i32
    } else {
        count_delivery(DELIVERY_TC_FAILED, len);
        TC_ACT_OK
    }
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
        let len = masked_len::<128>(strip as u32);
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
        // Shrinking moved the data start past a partial (offloaded, CHECKSUM_PARTIAL) checksum's
        // start, so the kernel dropped that state (skb_postpull_rcsum sets CHECKSUM_NONE) and the
        // stack now verifies the outer UDP checksum, which still holds only the pseudo-header sum
        // the sender's stack left for the offload. Over IPv4 a zero UDP checksum means "none":
        // valid for every checksum state. Over IPv6 zero is not allowed, so the checksum the
        // offload would have written is computed here.
        if old_proto == [0x08, 0x00] {
            let ihl = usize::from(saved[0] & 0x0f) * 4;
            let _ = ctx.store(ETH_LEN + ihl + 6, &[0u8; 2], BPF_F_RECOMPUTE_CSUM);
        } else if old_proto == [0x86, 0xdd] && strip >= IPV6_LEN + 8 {
            complete_udp6_checksum(ctx, &saved);
        }
    }
}

/// Writes the full UDP checksum of the restored original (outer IPv6 header `hdr`, UDP right
/// behind it) when it arrived with a partial checksum: its checksum field holds exactly the
/// pseudo-header sum and the datagram does not verify. Originals whose checksum state survived
/// (CHECKSUM_COMPLETE, CHECKSUM_UNNECESSARY) or whose checksum is already valid are left alone,
/// and so is a datagram that is simply corrupt. Sums are kept in memory byte order, as
/// `bpf_csum_diff` returns them.
#[inline(always)]
fn complete_udp6_checksum(ctx: &TcContext, hdr: &[u8; MAX_STRIP]) {
    let skb = ctx.skb.skb;
    if hdr[6] != IPPROTO_UDP
        || unsafe { bpf_csum_update(skb, 0) } >= 0
        || unsafe { bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) } >= 0
    {
        return;
    }
    let udp_len = u32::from(u16::from_be_bytes([hdr[IPV6_LEN + 4], hdr[IPV6_LEN + 5]]));
    let udp_off = (ETH_LEN + IPV6_LEN) as u32;
    if udp_len < 8 || udp_off + udp_len > ctx.len() {
        return;
    }
    let mut pseudo: u64 = 0;
    let mut i = 8;
    while i < IPV6_LEN {
        pseudo += u64::from(u16::from_ne_bytes([hdr[i], hdr[i + 1]]));
        i += 2;
    }
    pseudo += u64::from(u16::from_ne_bytes([(udp_len >> 8) as u8, udp_len as u8]));
    pseudo += u64::from(u16::from_ne_bytes([0, IPPROTO_UDP]));
    let field = u16::from_ne_bytes([hdr[IPV6_LEN + 6], hdr[IPV6_LEN + 7]]);
    if field != fold(pseudo) {
        return;
    }
    // The datagram's sum, checksum field included (it holds the pseudo-header sum).
    let mut sum: u64 = 0;
    let mut buf = [0u32; (CSUM_CHUNK / 4) as usize];
    for c in 0..CSUM_CHUNKS {
        let done = c * CSUM_CHUNK;
        if done >= udp_len {
            break;
        }
        let left = udp_len - done;
        let n = if left < CSUM_CHUNK { left } else { CSUM_CHUNK };
        // 1..=CSUM_CHUNK for the verifier; the last word is zeroed so an odd tail is padded.
        let n = ((n - 1) & (CSUM_CHUNK - 1)) + 1;
        let words = (n + 3) >> 2;
        buf[((words - 1) & (CSUM_CHUNK / 4 - 1)) as usize] = 0;
        let r =
            unsafe { bpf_skb_load_bytes(skb.cast(), udp_off + done, buf.as_mut_ptr().cast(), n) };
        if r != 0 {
            return;
        }
        let part =
            unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, buf.as_mut_ptr(), words << 2, 0) };
        if part < 0 {
            return;
        }
        sum += part as u64 & 0xffff_ffff;
    }
    if fold(sum + pseudo) == 0xffff {
        return;
    }
    let mut check = !fold(sum);
    if check == 0 {
        check = 0xffff;
    }
    unsafe {
        bpf_skb_store_bytes(
            skb.cast(),
            udp_off + 6,
            check.to_ne_bytes().as_ptr().cast(),
            2,
            BPF_F_RECOMPUTE_CSUM,
        )
    };
}

/// Copies `len` (1..=MAX_STRIP) bytes at `off` to `dst`.
#[inline(always)]
fn load(ctx: &TcContext, off: usize, dst: *mut u8, len: usize) -> bool {
    let len = masked_len::<128>(len as u32);
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
