//! Turns the ACTIVE traffic rules into the contents of one map generation: filter entries in
//! priority order, the per-rule actions, and the indexes (address prefixes by length, TEIDs, and
//! the list of entries no index holds) with their candidate lists.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use mep_ebpf_common::{
    AddrKey, DstIf, Entry, GenConfig, ListRef, Ports, Prefix, RuleAction, ACT_DROP, ACT_DUPLICATE,
    ACT_DUPLICATE_DECAP, ACT_FORWARD, ACT_FORWARD_DECAP, ACT_PASS, DIM_DST, DIM_SRC, DIM_TEID,
    DIM_WILD, FIELD_MAX, F_DPORT, F_DSCP, F_DST, F_PROTO, F_SPORT, F_SRC, F_TC, F_TDPORT, F_TDST,
    F_TEID, F_TSPORT, F_TSRC, F_TUNNEL, IF_DST_IP, IF_DST_IP6, IF_DST_MAC, IF_SRC_MAC, MAX_ENTRIES,
    MAX_KEYS, MAX_LENS, MAX_LIST_IDS, MAX_SCAN,
};
use mep_rules::{Action, CompiledFilter, DestinationInterface, IpPrefix, PortRange};

/// Entries one filter may be split into (its long lists, chunked, multiplied out).
pub const MAX_SPLIT: usize = 64;

/// One rule as the compiler needs it.
pub struct RuleInput<'a> {
    pub slot: u32,
    pub action: Action,
    pub dst_interface: &'a [DestinationInterface],
    pub filters: &'a [CompiledFilter],
}

/// The contents of one generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compiled {
    pub entries: Vec<Entry>,
    pub lists: Vec<u32>,
    pub actions: BTreeMap<u32, RuleAction>,
    pub dst: HashMap<AddrKey, ListRef>,
    pub src: HashMap<AddrKey, ListRef>,
    pub teid: HashMap<u32, ListRef>,
    pub config: GenConfig,
}

/// Why a rule set does not fit the kernel program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "a traffic filter splits into more than {MAX_SPLIT} entries; use fewer values per field"
    )]
    FilterTooLarge,
    #[error("more than {MAX_ENTRIES} filter entries in all")]
    TooManyEntries,
    #[error("{0} filters overlap on the same lookup ({1}); the xdp data plane checks at most {MAX_SCAN} candidates per lookup")]
    TooManyCandidates(usize, String),
    #[error("the candidate lists need more than {MAX_LIST_IDS} slots")]
    ListsFull,
    #[error("more than {MAX_KEYS} distinct index keys")]
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

fn words(octets: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, chunk) in octets.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    w
}

fn mapped_len(p: &IpPrefix) -> u32 {
    u32::from(p.prefix_len()) + if p.addr().is_ipv4() { 96 } else { 0 }
}

fn mask_words(len: u32) -> [u32; 4] {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    words(mask.to_be_bytes())
}

fn and(a: [u32; 4], m: [u32; 4]) -> [u32; 4] {
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

/// Splits one filter into entries (with their dst and src prefixes, for the indexes).
fn filter_entries(slot: u32, f: &CompiledFilter) -> Result<Vec<Entry>, CapacityError> {
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

/// Where an entry is indexed.
#[derive(Clone, Copy)]
enum Dim {
    Dst,
    Src,
    Teid,
    Wild,
}

/// The prefix lengths (longest first) an address index uses: the `MAX_LENS` most common ones.
fn choose_lens(all: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut count: HashMap<u32, usize> = HashMap::new();
    for len in all.filter(|l| *l > 0) {
        *count.entry(len).or_default() += 1;
    }
    let mut by_use: Vec<(u32, usize)> = count.into_iter().collect();
    by_use.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut lens: Vec<u32> = by_use.into_iter().take(MAX_LENS).map(|(l, _)| l).collect();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens
}

fn entry_prefix_keys(p: &[Prefix; FIELD_MAX], n: u8) -> Vec<AddrKey> {
    p[..usize::from(n)]
        .iter()
        .map(|p| {
            let len = p.mask.iter().map(|w| w.count_ones()).sum();
            AddrKey { len, addr: p.addr }
        })
        .collect()
}

/// Compiles `rules` (in priority order: earlier wins): expands them into entries, places each
/// entry in one index, and lays the indexes out as candidate lists and a program config.
pub fn compile(rules: &[RuleInput<'_>]) -> Result<Compiled, CapacityError> {
    let mut out = expand(rules)?;
    let keys = EntryKeys::of(&out.entries);
    let placement = place(&out.entries, &keys);
    out.config = emit(&mut out, placement, &keys)?;
    Ok(out)
}

/// The actions of `rules` and one entry per filter.
fn expand(rules: &[RuleInput<'_>]) -> Result<Compiled, CapacityError> {
    let mut out = Compiled::default();
    for r in rules {
        out.actions
            .insert(r.slot, rule_action(r.action, r.dst_interface));
        for f in r.filters {
            out.entries.extend(filter_entries(r.slot, f)?);
        }
    }
    if out.entries.len() > MAX_ENTRIES as usize {
        return Err(CapacityError::TooManyEntries);
    }
    Ok(out)
}

/// The address keys of every entry (none for a dimension it does not match on), and the prefix
/// lengths each address index uses.
struct EntryKeys {
    dst: Vec<Vec<AddrKey>>,
    src: Vec<Vec<AddrKey>>,
    dst_lens: Vec<u32>,
    src_lens: Vec<u32>,
}

impl EntryKeys {
    fn of(entries: &[Entry]) -> Self {
        let keys =
            |flag: u32, field: fn(&Entry) -> (&[Prefix; FIELD_MAX], u8)| -> Vec<Vec<AddrKey>> {
                entries
                    .iter()
                    .map(|e| {
                        let (prefixes, n) = field(e);
                        if e.flags & flag != 0 {
                            entry_prefix_keys(prefixes, n)
                        } else {
                            Vec::new()
                        }
                    })
                    .collect()
            };
        let dst = keys(F_DST, |e| (&e.dst, e.n_dst));
        let src = keys(F_SRC, |e| (&e.src, e.n_src));
        let dst_lens = choose_lens(dst.iter().flatten().map(|k| k.len));
        let src_lens = choose_lens(src.iter().flatten().map(|k| k.len));
        Self {
            dst,
            src,
            dst_lens,
            src_lens,
        }
    }
}

/// Which entries each index key holds, and the entries no index can hold.
#[derive(Default)]
struct Placement {
    dst: HashMap<AddrKey, Vec<u32>>,
    src: HashMap<AddrKey, Vec<u32>>,
    teid: HashMap<u32, Vec<u32>>,
    wild: Vec<u32>,
}

/// Greedy: each entry goes to the index whose fullest bucket among its keys is emptiest.
fn place(entries: &[Entry], keys: &EntryKeys) -> Placement {
    let mut p = Placement::default();
    let usable = |keys: &[AddrKey], lens: &[u32]| {
        !keys.is_empty() && keys.iter().all(|k| lens.contains(&k.len))
    };
    let fullest = |keys: &[AddrKey], own: &HashMap<AddrKey, Vec<u32>>| {
        keys.iter()
            .map(|k| own.get(k).map_or(0, Vec::len))
            .max()
            .unwrap_or(0)
    };
    for (id, e) in entries.iter().enumerate() {
        let (dk, sk) = (&keys.dst[id], &keys.src[id]);
        let id = id as u32;
        let mut best: Option<(usize, Dim)> = None;
        let mut consider = |cost: usize, dim: Dim| {
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, dim));
            }
        };
        if usable(dk, &keys.dst_lens) {
            consider(fullest(dk, &p.dst), Dim::Dst);
        }
        if usable(sk, &keys.src_lens) {
            consider(fullest(sk, &p.src), Dim::Src);
        }
        let teids = &e.teid[..usize::from(e.n_teid)];
        if e.flags & F_TEID != 0 {
            let cost = teids
                .iter()
                .map(|t| p.teid.get(t).map_or(0, Vec::len))
                .max()
                .unwrap_or(0);
            consider(cost, Dim::Teid);
        }
        match best.map_or(Dim::Wild, |(_, d)| d) {
            Dim::Dst => dk
                .iter()
                .for_each(|k| p.dst.entry(*k).or_default().push(id)),
            Dim::Src => sk
                .iter()
                .for_each(|k| p.src.entry(*k).or_default().push(id)),
            Dim::Teid => teids
                .iter()
                .for_each(|t| p.teid.entry(*t).or_default().push(id)),
            Dim::Wild => p.wild.push(id),
        }
    }
    p
}

/// Writes the candidate lists and index maps of `placement` into `out`; answers the program
/// config that says which indexes exist and which prefix lengths they probe.
fn emit(
    out: &mut Compiled,
    placement: Placement,
    keys: &EntryKeys,
) -> Result<GenConfig, CapacityError> {
    let lists = &mut out.lists;
    let mut push_list = |ids: Vec<u32>, what: String| -> Result<ListRef, CapacityError> {
        if ids.len() > MAX_SCAN as usize {
            return Err(CapacityError::TooManyCandidates(ids.len(), what));
        }
        let start = lists.len() as u32;
        if lists.len() + ids.len() > MAX_LIST_IDS as usize {
            return Err(CapacityError::ListsFull);
        }
        lists.extend_from_slice(&ids);
        Ok(ListRef {
            start,
            len: ids.len() as u32,
        })
    };
    out.dst = closure(
        &placement.dst,
        &keys.dst_lens,
        "destination",
        &mut push_list,
    )?;
    out.src = closure(&placement.src, &keys.src_lens, "source", &mut push_list)?;
    for (teid, ids) in placement.teid {
        let what = format!("TEID {}", u32::from_be(teid));
        out.teid.insert(teid, push_list(ids, what)?);
    }
    if [out.dst.len(), out.src.len(), out.teid.len()]
        .iter()
        .any(|n| *n > MAX_KEYS as usize)
    {
        return Err(CapacityError::TooManyKeys);
    }
    let mut cfg = GenConfig::default();
    if !placement.wild.is_empty() {
        cfg.wild = push_list(placement.wild, "filters without an address or TEID".into())?;
        cfg.dims |= DIM_WILD;
    }
    for (present, dim) in [
        (!out.dst.is_empty(), DIM_DST),
        (!out.src.is_empty(), DIM_SRC),
        (!out.teid.is_empty(), DIM_TEID),
    ] {
        if present {
            cfg.dims |= dim;
        }
    }
    cfg.n_dst_lens = keys.dst_lens.len() as u32;
    for (i, len) in keys.dst_lens.iter().enumerate() {
        cfg.dst_lens[i] = *len;
        cfg.dst_masks[i] = mask_words(*len);
    }
    cfg.n_src_lens = keys.src_lens.len() as u32;
    for (i, len) in keys.src_lens.iter().enumerate() {
        cfg.src_lens[i] = *len;
        cfg.src_masks[i] = mask_words(*len);
    }
    Ok(cfg)
}

/// Each key's list: its own entries and those of every shorter indexed prefix that covers it,
/// since the kernel stops at the longest prefix it finds.
fn closure(
    own: &HashMap<AddrKey, Vec<u32>>,
    lens: &[u32],
    what: &str,
    push_list: &mut dyn FnMut(Vec<u32>, String) -> Result<ListRef, CapacityError>,
) -> Result<HashMap<AddrKey, ListRef>, CapacityError> {
    let mut keys: Vec<&AddrKey> = own.keys().collect();
    keys.sort_by_key(|k| (k.len, k.addr));
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let mut ids = own[key].clone();
        for len in lens.iter().filter(|l| **l < key.len) {
            let shorter = AddrKey {
                len: *len,
                addr: and(key.addr, mask_words(*len)),
            };
            if let Some(more) = own.get(&shorter) {
                ids.extend_from_slice(more);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let label = format!("{what} {}", describe(key));
        out.insert(*key, push_list(ids, label)?);
    }
    Ok(out)
}

fn describe(k: &AddrKey) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use mep_rules::TrafficRule;

    fn filters(filter: serde_json::Value) -> Vec<CompiledFilter> {
        let rule: TrafficRule = serde_json::from_value(serde_json::json!({
            "trafficRuleId": "r", "filterType": "FLOW", "priority": 1, "action": "DROP",
            "trafficFilter": [filter]
        }))
        .unwrap();
        rule.compile().unwrap()
    }

    fn compile_one(f: &[CompiledFilter]) -> Result<Compiled, CapacityError> {
        compile(&[RuleInput {
            slot: 3,
            action: Action::Drop,
            dst_interface: &[],
            filters: f,
        }])
    }

    #[test]
    fn ipv4_is_stored_mapped_with_its_mask() {
        let c = compile_one(&filters(serde_json::json!({"dstAddress": ["10.1.0.0/16"]}))).unwrap();
        let e = &c.entries[0];
        assert_eq!(e.flags, F_DST);
        assert_eq!(e.slot, 3);
        let mapped = addr_words("10.1.0.0".parse().unwrap());
        assert_eq!(e.dst[0].addr, mapped);
        assert_eq!(e.dst[0].mask, mask_words(112));
        // Unused slots repeat the used one, so the kernel can compare all of them.
        assert_eq!(e.dst[3], e.dst[0]);
        assert_eq!(c.config.dims, DIM_DST);
        assert_eq!(c.config.dst_lens[0], 112);
        assert_eq!(c.dst.len(), 1);
    }

    #[test]
    fn long_lists_split_into_several_entries() {
        let ports: Vec<String> = (1..=9).map(|p| p.to_string()).collect();
        let c = compile_one(&filters(
            serde_json::json!({"dstPort": ports, "tag": ["1", "2"]}),
        ))
        .unwrap();
        assert_eq!(c.entries.len(), 3, "9 ports in chunks of 4");
        assert!(c.entries.iter().all(|e| e.flags & F_TUNNEL != 0));
        assert_eq!(c.entries[2].n_dport, 1);
        assert_eq!(c.config.dims, DIM_TEID);
        let many: Vec<String> = (0..300).map(|p| p.to_string()).collect();
        assert_eq!(
            compile_one(&filters(serde_json::json!({"dstPort": many}))),
            Err(CapacityError::FilterTooLarge)
        );
    }

    #[test]
    fn shorter_prefixes_join_the_lists_of_longer_ones() {
        let wide = filters(serde_json::json!({"dstAddress": ["10.0.0.0/8"]}));
        let narrow = filters(serde_json::json!({"dstAddress": ["10.1.2.3"]}));
        let rules = [
            RuleInput {
                slot: 0,
                action: Action::Drop,
                dst_interface: &[],
                filters: &narrow,
            },
            RuleInput {
                slot: 1,
                action: Action::Passthrough,
                dst_interface: &[],
                filters: &wide,
            },
        ];
        let c = compile(&rules).unwrap();
        let narrow_key = AddrKey {
            len: 128,
            addr: addr_words("10.1.2.3".parse().unwrap()),
        };
        let l = c.dst[&narrow_key];
        assert_eq!(
            &c.lists[l.start as usize..(l.start + l.len) as usize],
            &[0, 1]
        );
        assert_eq!(c.config.n_dst_lens, 2);
        assert_eq!(&c.config.dst_lens[..2], &[128, 104], "longest first");
    }

    #[test]
    fn entries_go_to_the_emptiest_index() {
        // Every rule shares the destination (an app) but has its own source (a UE): indexing by
        // destination would put them all in one list.
        let owned: Vec<Vec<CompiledFilter>> = (0..40)
            .map(|i| filters(serde_json::json!({"dstAddress": ["10.9.9.9"], "srcAddress": [format!("10.60.0.{i}")]})))
            .collect();
        let rules: Vec<RuleInput<'_>> = owned
            .iter()
            .enumerate()
            .map(|(i, f)| RuleInput {
                slot: i as u32,
                action: Action::Drop,
                dst_interface: &[],
                filters: f,
            })
            .collect();
        let c = compile(&rules).unwrap();
        assert!(c.src.len() >= 39, "spread over the source index");
        assert!(c.lists.len() <= 2 * 40);
    }

    #[test]
    fn too_many_overlapping_wildcards_are_refused() {
        let f = filters(serde_json::json!({"protocol": ["UDP"]}));
        let rules: Vec<RuleInput<'_>> = (0..=MAX_SCAN)
            .map(|i| RuleInput {
                slot: i,
                action: Action::Drop,
                dst_interface: &[],
                filters: &f,
            })
            .collect();
        match compile(&rules) {
            Err(CapacityError::TooManyCandidates(n, what)) => {
                assert_eq!(n, MAX_SCAN as usize + 1);
                assert!(what.contains("without an address"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn actions_carry_the_destination_interface() {
        let d: Vec<DestinationInterface> = serde_json::from_value(serde_json::json!([
            {"interfaceType": "MAC", "dstMacAddress": "02:00:00:00:00:01", "srcMacAddress": "02:00:00:00:00:02", "dstIpAddress": "2001:db8::1"}
        ]))
        .unwrap();
        let a = rule_action(Action::ForwardDecapsulated, &d);
        assert_eq!(a.kind, ACT_FORWARD_DECAP);
        assert_eq!(a.n_if, 1);
        assert_eq!(
            a.ifs[0].flags,
            IF_DST_MAC | IF_SRC_MAC | IF_DST_IP | IF_DST_IP6
        );
        assert_eq!(a.ifs[0].dst_mac, [2, 0, 0, 0, 0, 1]);
    }
}
