//! Finds the matching filter entry of the best-ranked rule (rank order = priority order). The
//! indexes narrow the search to at most four short candidate lists: the longest-prefix hit on the
//! destination and on the source address, the TEID, and the entries no index holds. Each list is
//! sorted by rank, so a scan stops at its first match or at a rank above the best match so far.

use mep_ebpf_common::{
    AddrKey, Entry, GenConfig, ListRef, Ports, Prefix, DIM_DST, DIM_SRC, DIM_TEID, DIM_WILD,
    FIELD_MAX, F_DPORT, F_DSCP, F_DST, F_PROTO, F_SPORT, F_SRC, F_TC, F_TDPORT, F_TDST, F_TEID,
    F_TSPORT, F_TSRC, F_TUNNEL, MAX_LENS, MAX_SCAN,
};

use crate::{maps, parse::Pkt};

pub const NO_MATCH: u32 = u32::MAX;

// Userspace fills every unused value slot of a field with a copy of a used one, so all
// `FIELD_MAX` slots are compared without looking at the count. Every test branches straight to
// "next field" or "no match", never into a materialised boolean that stays live: that keeps the
// verifier's states mergeable (a combined `a & b & c` of comparisons multiplies its paths).

/// Zero when `a` lies in `p`.
#[inline(always)]
fn prefix_miss(p: &Prefix, a: &[u32; 4]) -> u32 {
    ((a[0] & p.mask[0]) ^ p.addr[0])
        | ((a[1] & p.mask[1]) ^ p.addr[1])
        | ((a[2] & p.mask[2]) ^ p.addr[2])
        | ((a[3] & p.mask[3]) ^ p.addr[3])
}

#[inline(always)]
fn any_prefix(list: &[Prefix; FIELD_MAX], a: &[u32; 4]) -> bool {
    if prefix_miss(&list[0], a) == 0 {
        return true;
    }
    if prefix_miss(&list[1], a) == 0 {
        return true;
    }
    if prefix_miss(&list[2], a) == 0 {
        return true;
    }
    prefix_miss(&list[3], a) == 0
}

#[inline(always)]
fn any_port(list: &[Ports; FIELD_MAX], port: u16) -> bool {
    for r in list {
        if port >= r.lo && port <= r.hi {
            return true;
        }
    }
    false
}

#[inline(always)]
fn entry_matches(e: &Entry, p: &Pkt) -> bool {
    let f = e.flags;
    if f & F_TUNNEL != 0 && !p.tunnel {
        return false;
    }
    if f & F_PROTO != 0 && (e.proto[(p.proto >> 6) as usize & 3] >> (p.proto & 63)) & 1 == 0 {
        return false;
    }
    if f & F_DSCP != 0 && e.dscp != p.dscp {
        return false;
    }
    if f & F_TC != 0 && (!p.v6 || e.tc != p.tc) {
        return false;
    }
    if f & F_DST != 0 && !any_prefix(&e.dst, &p.dst) {
        return false;
    }
    if f & F_SRC != 0 && !any_prefix(&e.src, &p.src) {
        return false;
    }
    if f & (F_SPORT | F_DPORT) != 0 && !p.has_ports {
        return false;
    }
    if f & F_SPORT != 0 && !any_port(&e.sport, p.sport) {
        return false;
    }
    if f & F_DPORT != 0 && !any_port(&e.dport, p.dport) {
        return false;
    }
    if f & F_TUNNEL == 0 {
        return true;
    }
    if f & F_TEID != 0
        && e.teid[0] != p.teid
        && e.teid[1] != p.teid
        && e.teid[2] != p.teid
        && e.teid[3] != p.teid
    {
        return false;
    }
    if f & F_TDST != 0 && !any_prefix(&e.tdst, &p.tdst) {
        return false;
    }
    if f & F_TSRC != 0 && !any_prefix(&e.tsrc, &p.tsrc) {
        return false;
    }
    if f & F_TSPORT != 0 && !any_port(&e.tsport, p.tsport) {
        return false;
    }
    !(f & F_TDPORT != 0 && !any_port(&e.tdport, p.tdport))
}

/// `entry_matches` as a global BPF function: the verifier checks a global function once, on its
/// own, instead of again for every state of every caller and every unrolled scan step (which
/// exceeds its 1M-instruction budget for a match this branchy).
#[no_mangle]
#[inline(never)]
pub extern "C" fn mep_entry_matches(e: *const Entry, p: *const Pkt) -> u32 {
    if e.is_null() || p.is_null() {
        return 0;
    }
    let (e, p) = unsafe { (&*e, &*p) };
    entry_matches(e, p) as u32
}

/// The best match so far: the rank of its rule and its entry.
#[derive(Clone, Copy)]
pub struct Best {
    pub rank: u64,
    pub entry: u32,
}

/// Moves `best` to the first entry of `list` that matches, if its rank is below `best`'s. Lists
/// are sorted by rank, so the scan stops at the first match or at a rank at or above `best`.
#[inline(always)]
fn scan<const G: u32>(list: ListRef, p: &Pkt, best: &mut Best) {
    for i in 0..MAX_SCAN {
        if i >= list.len {
            break;
        }
        let Some(item) = maps::lists::<G>().get(list.start.wrapping_add(i)) else {
            break;
        };
        if item.rank >= best.rank {
            break;
        }
        if let Some(e) = maps::ENTRIES.get(item.entry) {
            if mep_entry_matches(e, p) != 0 {
                best.rank = item.rank;
                best.entry = item.entry;
                return;
            }
        }
    }
}

/// The candidate list of the longest indexed prefix holding `a`.
#[inline(always)]
fn longest<const G: u32, const DST: bool>(cfg: &GenConfig, a: &[u32; 4]) -> ListRef {
    let (lens, masks, n) = if DST {
        (&cfg.dst_lens, &cfg.dst_masks, cfg.n_dst_lens)
    } else {
        (&cfg.src_lens, &cfg.src_masks, cfg.n_src_lens)
    };
    for i in 0..MAX_LENS {
        if i as u32 >= n {
            break;
        }
        let m = &masks[i];
        let key = AddrKey {
            len: lens[i],
            addr: [a[0] & m[0], a[1] & m[1], a[2] & m[2], a[3] & m[3]],
        };
        let map = if DST {
            maps::dst::<G>()
        } else {
            maps::src::<G>()
        };
        if let Some(l) = unsafe { map.get(key) } {
            return *l;
        }
    }
    ListRef::default()
}

/// The best matching entry of generation `G`, or `NO_MATCH`.
#[inline(always)]
pub fn classify<const G: u32>(cfg: &GenConfig, p: &Pkt) -> u32 {
    let mut best = Best {
        rank: u64::MAX,
        entry: NO_MATCH,
    };
    if cfg.dims & DIM_DST != 0 {
        scan::<G>(longest::<G, true>(cfg, &p.dst), p, &mut best);
    }
    if cfg.dims & DIM_SRC != 0 {
        scan::<G>(longest::<G, false>(cfg, &p.src), p, &mut best);
    }
    if cfg.dims & DIM_TEID != 0 && p.tunnel {
        if let Some(l) = unsafe { maps::teid::<G>().get(p.teid) } {
            scan::<G>(*l, p, &mut best);
        }
    }
    if cfg.dims & DIM_WILD != 0 {
        scan::<G>(cfg.wild, p, &mut best);
    }
    best.entry
}
