//! Turns one traffic rule into its kernel form: the rule's action and its filters as entries
//! (long value lists split over several), with the index keys each entry can be found under.

use std::net::IpAddr;

use mep_ebpf_common::{
    AddrKey, DstIf, Entry, Ports, Prefix, RuleAction, ACT_DROP, ACT_DUPLICATE, ACT_DUPLICATE_DECAP,
    ACT_FORWARD, ACT_FORWARD_DECAP, ACT_PASS, FIELD_MAX, F_DPORT, F_DSCP, F_DST, F_PROTO, F_SPORT,
    F_SRC, F_TC, F_TDPORT, F_TDST, F_TEID, F_TSPORT, F_TSRC, F_TUNNEL, IF_DST_IP, IF_DST_IP6,
    IF_DST_MAC, IF_SRC_MAC, MAX_ENTRIES, MAX_KEYS, MAX_LIST_ITEMS, MAX_RULES, MAX_SCAN,
};
use mep_rules::{Action, CompiledFilter, DestinationInterface, IpPrefix, PortRange};

/// Entries one filter may be split into (its long lists, chunked, multiplied out).
pub const MAX_SPLIT: usize = 64;

/// Why a rule set does not fit the kernel program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "a traffic filter splits into more than {MAX_SPLIT} entries; use fewer values per field"
    )]
    FilterTooLarge,
    #[error("more than {MAX_ENTRIES} filter entries in all")]
    TooManyEntries,
    #[error("more than {MAX_RULES} ACTIVE traffic rules")]
    TooManyRules,
    #[error("{0} filters overlap on the same lookup ({1}); the xdp data plane checks at most {MAX_SCAN} candidates per lookup")]
    TooManyCandidates(usize, String),
    #[error("the candidate lists need more than {MAX_LIST_ITEMS} items")]
    ListsFull,
    #[error("more than {MAX_KEYS} distinct keys in one index")]
    TooManyKeys,
}

/// `addr` as IPv6 words in network order (IPv4 mapped) and its prefix length on that scale.
pub fn addr_words(addr: IpAddr) -> [u32; 4] {
    let octets = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    words(octets)
}

pub fn words(octets: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, chunk) in octets.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    w
}

fn mapped_len(p: &IpPrefix) -> u32 {
    u32::from(p.prefix_len()) + if p.addr().is_ipv4() { 96 } else { 0 }
}

pub fn mask_words(len: u32) -> [u32; 4] {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    words(mask.to_be_bytes())
}

pub fn and(a: [u32; 4], m: [u32; 4]) -> [u32; 4] {
    [a[0] & m[0], a[1] & m[1], a[2] & m[2], a[3] & m[3]]
}

fn prefix(p: &IpPrefix) -> Prefix {
    let mask = mask_words(mapped_len(p));
    Prefix {
        addr: and(addr_words(p.addr()), mask),
        mask,
    }
}

fn ports(r: &PortRange) -> Ports {
    Ports {
        lo: r.start,
        hi: r.end,
    }
}

fn dst_if(d: &DestinationInterface) -> DstIf {
    let mut out = DstIf::default();
    if let Some(mac) = d.dst_mac() {
        out.flags |= IF_DST_MAC;
        out.dst_mac = mac;
    }
    if let Some(mac) = d.src_mac() {
        out.flags |= IF_SRC_MAC;
        out.src_mac = mac;
    }
    match d.dst_ip() {
        Some(IpAddr::V4(a)) => {
            out.flags |= IF_DST_IP;
            out.dst_ip[0] = u32::from_ne_bytes(a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.flags |= IF_DST_IP | IF_DST_IP6;
            out.dst_ip = words(a.octets());
        }
        None => {}
    }
    out
}

/// The kernel form of a rule's action.
pub fn rule_action(action: Action, dst_interface: &[DestinationInterface]) -> RuleAction {
    let kind = match action {
        Action::Drop => ACT_DROP,
        Action::Passthrough => ACT_PASS,
        Action::ForwardEncapsulated => ACT_FORWARD,
        Action::ForwardDecapsulated => ACT_FORWARD_DECAP,
        Action::DuplicateEncapsulated => ACT_DUPLICATE,
        Action::DuplicateDecapsulated => ACT_DUPLICATE_DECAP,
    };
    let mut out = RuleAction {
        kind,
        ..RuleAction::default()
    };
    for (i, d) in dst_interface.iter().take(2).enumerate() {
        out.ifs[i] = dst_if(d);
        out.n_if = i as u32 + 1;
    }
    out
}

/// The filter's value lists, chunked to `FIELD_MAX`; an empty list is one empty chunk.
fn chunks<T: Clone>(v: &[T]) -> Vec<Vec<T>> {
    if v.is_empty() {
        vec![Vec::new()]
    } else {
        v.chunks(FIELD_MAX).map(<[T]>::to_vec).collect()
    }
}

/// Fills all `FIELD_MAX` slots, repeating values: the kernel compares every slot.
fn fill<T: Copy + Default, S>(dst: &mut [T; FIELD_MAX], n: &mut u8, v: &[S], f: impl Fn(&S) -> T) {
    for (i, slot) in dst.iter_mut().enumerate() {
        *slot = v.get(i).or_else(|| v.first()).map(&f).unwrap_or_default();
    }
    *n = v.len() as u8;
}

fn fill_prefixes(dst: &mut [Prefix; FIELD_MAX], n: &mut u8, v: &[IpPrefix]) {
    fill(dst, n, v, prefix);
}

fn fill_ports(dst: &mut [Ports; FIELD_MAX], n: &mut u8, v: &[PortRange]) {
    fill(dst, n, v, ports);
}

/// Writes chunk `i` of one field into an entry.
type Fill<'a> = dyn Fn(&mut Entry, usize) + 'a;

/// Splits one filter of the rule with counter slot `slot` and action `action` into entries.
pub fn filter_entries(
    slot: u32,
    action: RuleAction,
    f: &CompiledFilter,
) -> Result<Vec<Entry>, CapacityError> {
    let (src, dst) = (chunks(&f.src_address), chunks(&f.dst_address));
    let (sport, dport) = (chunks(&f.src_port), chunks(&f.dst_port));
    let (tsrc, tdst) = (chunks(&f.src_tunnel_address), chunks(&f.tgt_tunnel_address));
    let (tsport, tdport) = (chunks(&f.src_tunnel_port), chunks(&f.dst_tunnel_port));
    let teid = chunks(&f.tag);
    let total = [
        src.len(),
        dst.len(),
        sport.len(),
        dport.len(),
        tsrc.len(),
        tdst.len(),
        tsport.len(),
        tdport.len(),
        teid.len(),
    ]
    .iter()
    .try_fold(1usize, |acc, n| acc.checked_mul(*n))
    .unwrap_or(usize::MAX);
    if total > MAX_SPLIT {
        return Err(CapacityError::FilterTooLarge);
    }
    let mut base = Entry {
        slot,
        action,
        ..Entry::default()
    };
    let mut flag = |cond: bool, bit: u32| {
        if cond {
            base.flags |= bit;
        }
    };
    flag(!f.src_address.is_empty(), F_SRC);
    flag(!f.dst_address.is_empty(), F_DST);
    flag(!f.src_port.is_empty(), F_SPORT);
    flag(!f.dst_port.is_empty(), F_DPORT);
    flag(!f.protocol.is_empty(), F_PROTO);
    flag(!f.tag.is_empty(), F_TEID);
    flag(!f.src_tunnel_address.is_empty(), F_TSRC);
    flag(!f.tgt_tunnel_address.is_empty(), F_TDST);
    flag(!f.src_tunnel_port.is_empty(), F_TSPORT);
    flag(!f.dst_tunnel_port.is_empty(), F_TDPORT);
    flag(f.dscp.is_some(), F_DSCP);
    flag(f.tc.is_some(), F_TC);
    flag(f.uses_tunnel(), F_TUNNEL);
    for p in &f.protocol {
        base.proto[usize::from(*p >> 6)] |= 1 << (p & 63);
    }
    base.dscp = f.dscp.unwrap_or(0);
    base.tc = f.tc.unwrap_or(0);

    let mut out = vec![base];
    // Each dimension multiplies the entries by its number of chunks.
    let dims: [(usize, &Fill); 9] = [
        (src.len(), &|e, i| {
            fill_prefixes(&mut e.src, &mut e.n_src, &src[i])
        }),
        (dst.len(), &|e, i| {
            fill_prefixes(&mut e.dst, &mut e.n_dst, &dst[i])
        }),
        (tsrc.len(), &|e, i| {
            fill_prefixes(&mut e.tsrc, &mut e.n_tsrc, &tsrc[i])
        }),
        (tdst.len(), &|e, i| {
            fill_prefixes(&mut e.tdst, &mut e.n_tdst, &tdst[i])
        }),
        (sport.len(), &|e, i| {
            fill_ports(&mut e.sport, &mut e.n_sport, &sport[i])
        }),
        (dport.len(), &|e, i| {
            fill_ports(&mut e.dport, &mut e.n_dport, &dport[i])
        }),
        (tsport.len(), &|e, i| {
            fill_ports(&mut e.tsport, &mut e.n_tsport, &tsport[i])
        }),
        (tdport.len(), &|e, i| {
            fill_ports(&mut e.tdport, &mut e.n_tdport, &tdport[i])
        }),
        (teid.len(), &|e, i| {
            fill(&mut e.teid, &mut e.n_teid, &teid[i], |t| t.to_be())
        }),
    ];
    for (n, fill) in dims {
        let mut next = Vec::with_capacity(out.len() * n);
        for e in &out {
            for i in 0..n {
                let mut e = *e;
                fill(&mut e, i);
                next.push(e);
            }
        }
        out = next;
    }
    Ok(out)
}

pub fn entry_prefix_keys(p: &[Prefix; FIELD_MAX], n: u8) -> Vec<AddrKey> {
    p[..usize::from(n)]
        .iter()
        .map(|p| {
            let len = p.mask.iter().map(|w| w.count_ones()).sum();
            AddrKey { len, addr: p.addr }
        })
        .collect()
}

/// `k` as an address prefix, for error messages.
pub fn describe(k: &AddrKey) -> String {
    let mut octets = [0u8; 16];
    for (i, w) in k.addr.iter().enumerate() {
        octets[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let v6 = std::net::Ipv6Addr::from(octets);
    match v6.to_ipv4_mapped() {
        Some(v4) if k.len >= 96 => format!("{v4}/{}", k.len - 96),
        _ => format!("{v6}/{}", k.len),
    }
}
