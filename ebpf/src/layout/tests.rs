//! The model against a first-match reference: random rule sets changed one task at a time, each
//! probed packet classified the way the kernel program does (longest indexed prefix per address
//! index, TEID, wildcards; rank-sorted lists with the scan bound) must find the rule a plain
//! scan in priority order finds.

use std::collections::HashMap;
use std::net::IpAddr;

use mep_ebpf_common::{
    Entry, ACT_DROP, DIM_DST, DIM_SRC, DIM_TEID, DIM_WILD, F_DPORT, F_DST, F_PROTO, F_SRC, F_TEID,
    F_TUNNEL, MAX_SCAN,
};
use serde_json::json;

use super::*;

/// What the test matcher looks at in a packet.
#[derive(Clone, Copy, Debug)]
struct Probe {
    src: [u32; 4],
    dst: [u32; 4],
    dport: u16,
    proto: u8,
    teid: Option<u32>,
}

fn prefix_hit(p: &mep_ebpf_common::Prefix, a: &[u32; 4]) -> bool {
    (0..4).all(|i| a[i] & p.mask[i] == p.addr[i])
}

/// The kernel's `entry_matches` for the fields these tests use.
fn matches(e: &Entry, p: &Probe) -> bool {
    let f = e.flags;
    if f & F_TUNNEL != 0 && p.teid.is_none() {
        return false;
    }
    if f & F_PROTO != 0 && (e.proto[usize::from(p.proto >> 6)] >> (p.proto & 63)) & 1 == 0 {
        return false;
    }
    if f & F_DST != 0 && !e.dst.iter().any(|x| prefix_hit(x, &p.dst)) {
        return false;
    }
    if f & F_SRC != 0 && !e.src.iter().any(|x| prefix_hit(x, &p.src)) {
        return false;
    }
    if f & F_DPORT != 0 && !e.dport.iter().any(|r| p.dport >= r.lo && p.dport <= r.hi) {
        return false;
    }
    if f & F_TEID != 0 && !e.teid.contains(&p.teid.unwrap_or(0).to_be()) {
        return false;
    }
    true
}

/// The kernel's lookup on a generation holding `layout`, with the shared entry array `entries`.
fn kernel_lookup(layout: &Layout, entries: &HashMap<u32, Entry>, p: &Probe) -> Option<u32> {
    let cfg = layout.config();
    let mut best = (u64::MAX, None);
    let scan = |list: Option<&List>, best: &mut (u64, Option<u32>)| {
        let Some(list) = list else { return };
        for item in list.items.iter().take(MAX_SCAN as usize) {
            if item.rank >= best.0 {
                break;
            }
            if matches(&entries[&item.entry], p) {
                *best = (item.rank, Some(item.entry));
                return;
            }
        }
    };
    let longest = |n: u32, lens: &[u32], masks: &[[u32; 4]], a: &[u32; 4], dst: bool| {
        (0..n as usize).find_map(|i| {
            let key = AddrKey {
                len: lens[i],
                addr: compile::and(*a, masks[i]),
            };
            layout.list(&if dst {
                ListKey::Dst(key)
            } else {
                ListKey::Src(key)
            })
        })
    };
    if cfg.dims & DIM_DST != 0 {
        scan(
            longest(cfg.n_dst_lens, &cfg.dst_lens, &cfg.dst_masks, &p.dst, true),
            &mut best,
        );
    }
    if cfg.dims & DIM_SRC != 0 {
        scan(
            longest(cfg.n_src_lens, &cfg.src_lens, &cfg.src_masks, &p.src, false),
            &mut best,
        );
    }
    if let (true, Some(t)) = (cfg.dims & DIM_TEID != 0, p.teid) {
        scan(layout.list(&ListKey::Teid(t.to_be())), &mut best);
    }
    if cfg.dims & DIM_WILD != 0 {
        scan(layout.list(&ListKey::Wild), &mut best);
    }
    best.1.map(|e| entries[&e].slot)
}

/// The counter slot of the first rule in priority order with an entry that matches.
fn reference(layout: &Layout, entries: &HashMap<u32, Entry>, p: &Probe) -> Option<u32> {
    let mut rules: Vec<(&OrderKey, &Arc<Placed>)> = layout
        .order
        .keys()
        .filter_map(|k| Some((k, layout.rules.get(&k.1)?)))
        .collect();
    rules.sort_by(|a, b| a.0.cmp(b.0));
    rules
        .into_iter()
        .find(|(_, r)| r.entries.iter().any(|e| matches(&entries[&e.idx], p)))
        .map(|(_, r)| r.slot)
}

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

const DSTS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3",
    "10.1.3.0/24",
    "10.2.0.0/16",
    "192.168.0.0/16",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1::1",
];
const SRCS: &[&str] = &["10.60.0.0/16", "10.60.0.1", "10.60.0.2", "10.61.0.0/24"];
const PROBE_DSTS: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "10.1.3.9",
    "10.2.0.1",
    "10.3.0.1",
    "192.168.1.1",
    "172.16.0.1",
    "2001:db8::1",
    "2001:db8:1::1",
    "2001:db8:1::2",
];
const PROBE_SRCS: &[&str] = &["10.60.0.1", "10.60.0.2", "10.61.0.7", "10.70.0.1"];

fn random_rule(rng: &mut Rng, id: usize) -> Arc<Held> {
    let mut filter = serde_json::Map::new();
    if rng.below(4) != 0 {
        let n = 1 + rng.below(2);
        let d: Vec<&str> = (0..n).map(|_| *rng.pick(DSTS)).collect();
        filter.insert("dstAddress".into(), json!(d));
    }
    if rng.below(3) == 0 {
        filter.insert("srcAddress".into(), json!([rng.pick(SRCS)]));
    }
    if rng.below(3) == 0 {
        filter.insert(
            "dstPort".into(),
            json!([rng.pick(&["53", "80", "443", "1000-2000"])]),
        );
    }
    if rng.below(4) == 0 {
        filter.insert("protocol".into(), json!([rng.pick(&["TCP", "UDP"])]));
    }
    if rng.below(5) == 0 {
        filter.insert("tag".into(), json!([rng.pick(&["7", "8"])]));
    }
    let rule: TrafficRule = serde_json::from_value(json!({
        "trafficRuleId": format!("r{id}"), "filterType": "FLOW",
        "priority": rng.below(4), "action": "DROP", "trafficFilter": [filter]
    }))
    .expect("rule");
    let filters = rule.compile().expect("compile");
    Arc::new(Held { rule, filters })
}

fn addr(s: &str) -> [u32; 4] {
    compile::addr_words(s.parse::<IpAddr>().expect("address"))
}

fn probes() -> Vec<Probe> {
    let mut out = Vec::new();
    for d in PROBE_DSTS {
        for s in PROBE_SRCS {
            for (dport, proto) in [(53u16, 17u8), (80, 6), (1500, 17), (9, 1)] {
                for teid in [None, Some(7), Some(9)] {
                    out.push(Probe {
                        src: addr(s),
                        dst: addr(d),
                        dport,
                        proto,
                        teid,
                    });
                }
            }
        }
    }
    out
}

/// Applies one task's edits the way the data plane does: all or nothing.
fn apply(
    layout: &mut Layout,
    entries: &mut HashMap<u32, Entry>,
    edits: Vec<(RuleKey, Option<Arc<Held>>)>,
) -> Result<Touched, CapacityError> {
    let mut next = layout.clone();
    next.begin();
    let mut touched = Touched::default();
    for (k, h) in edits {
        next.set_rule(k, h, &mut touched)?;
    }
    for (idx, e) in &touched.entries {
        entries.insert(*idx, *e);
    }
    *layout = next;
    Ok(touched)
}

#[test]
fn incremental_changes_classify_like_a_first_match_scan() {
    let probes = probes();
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut layout = Layout::default();
        let mut entries = HashMap::new();
        let mut refused = 0;
        for step in 0..120 {
            let n = 1 + rng.below(3);
            let edits: Vec<(RuleKey, Option<Arc<Held>>)> = (0..n)
                .map(|_| {
                    let id = rng.below(40);
                    let key = (format!("app{}", id % 3), format!("r{id}"));
                    let held = (rng.below(4) != 0).then(|| random_rule(&mut rng, id));
                    (key, held)
                })
                .collect();
            let before = layout.clone();
            if apply(&mut layout, &mut entries, edits).is_err() {
                refused += 1;
                assert_eq!(layout.rule_count(), before.rule_count(), "all or nothing");
                continue;
            }
            for p in probes.iter().step_by(1 + step % 5) {
                assert_eq!(
                    kernel_lookup(&layout, &entries, p),
                    reference(&layout, &entries, p),
                    "seed {seed} step {step}: {p:?}"
                );
            }
        }
        assert!(refused < 60, "seed {seed}: {refused} of 120 tasks refused");
        assert!(layout.rule_count() > 5, "seed {seed}: rules remain");
    }
}

fn drop_rule(id: &str, priority: u32, filter: serde_json::Value) -> Arc<Held> {
    let rule: TrafficRule = serde_json::from_value(json!({
        "trafficRuleId": id, "filterType": "FLOW", "priority": priority, "action": "DROP",
        "trafficFilter": [filter]
    }))
    .expect("rule");
    let filters = rule.compile().expect("compile");
    Arc::new(Held { rule, filters })
}

fn key(id: &str) -> RuleKey {
    ("a".into(), id.into())
}

#[test]
fn one_rule_among_many_touches_only_its_own_lists() {
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    let many: Vec<_> = (0..2000u32)
        .map(|i| {
            let id = format!("r{i}");
            let dst = format!("10.{}.{}.1", i >> 8, i & 255);
            (
                key(&id),
                Some(drop_rule(&id, 5, json!({"dstAddress": [dst]}))),
            )
        })
        .collect();
    apply(&mut layout, &mut entries, many).expect("load");
    let t = apply(
        &mut layout,
        &mut entries,
        vec![(
            key("new"),
            Some(drop_rule("new", 1, json!({"dstAddress": ["10.200.0.9"]}))),
        )],
    )
    .expect("add");
    assert_eq!(t.entries.len(), 1);
    assert_eq!(t.lists.len(), 1, "{:?}", t.lists);
    assert_eq!(t.fresh_slots.len(), 1);
    // A /24 covers one of the /32 keys: its list and that key's change.
    let t = apply(
        &mut layout,
        &mut entries,
        vec![(
            key("wide"),
            Some(drop_rule("wide", 9, json!({"dstAddress": ["10.0.7.0/24"]}))),
        )],
    )
    .expect("add a prefix");
    assert_eq!(t.lists.len(), 2, "{:?}", t.lists);
    let t = apply(&mut layout, &mut entries, vec![(key("r7"), None)]).expect("remove");
    assert!(t.entries.is_empty());
    assert_eq!(t.lists.len(), 1);
    assert_eq!(t.freed_slots.len(), 1);
}

#[test]
fn an_updated_rule_keeps_its_counter_slot_and_frees_its_entries_a_change_later() {
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    let v1 = drop_rule("x", 1, json!({"dstAddress": ["10.0.0.1"]}));
    apply(&mut layout, &mut entries, vec![(key("x"), Some(v1))]).expect("add");
    let slot = layout.slots().next().map(|(_, s)| s);
    let v2 = drop_rule("x", 1, json!({"dstAddress": ["10.0.0.2"]}));
    let t = apply(&mut layout, &mut entries, vec![(key("x"), Some(v2))]).expect("update");
    assert_eq!(layout.slots().next().map(|(_, s)| s), slot);
    assert!(t.fresh_slots.is_empty() && t.freed_slots.is_empty());
    // The old entry is in quarantine: packets on the previous generation may still read it.
    assert_ne!(t.entries[0].0, 0);
    let v3 = drop_rule("x", 1, json!({"dstAddress": ["10.0.0.3"]}));
    let t = apply(&mut layout, &mut entries, vec![(key("x"), Some(v3))]).expect("update");
    assert_eq!(t.entries[0].0, 0, "reused one change later");
    assert_eq!(layout.entries_in_use(), 1);
}

#[test]
fn ranks_that_run_out_are_spread_again_locally_in_priority_order() {
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    // Sorts after every rNN of the same priority; its /16 covers all their /24s.
    let wide = drop_rule("z", 3, json!({"dstAddress": ["10.0.0.0/16"]}));
    apply(&mut layout, &mut entries, vec![(key("z"), Some(wide))]).expect("add");
    let mut reranked = 0;
    // Each rule sorts before the previous one: every rank halves the gap below its successor.
    for i in (0..70u32).rev() {
        let id = format!("r{i:02}");
        let f = json!({"dstAddress": [format!("10.0.{i}.0/24")], "dstPort": [i.to_string()]});
        let t = apply(
            &mut layout,
            &mut entries,
            vec![(key(&id), Some(drop_rule(&id, 3, f)))],
        )
        .expect("fits");
        reranked += t.reranked;
    }
    assert!(reranked >= 1, "the gaps ran out");
    let probe = |i: u32, port: u16| Probe {
        src: addr("1.1.1.1"),
        dst: addr(&format!("10.0.{i}.1")),
        dport: port,
        proto: 17,
        teid: None,
    };
    let slot_of = |id: &str| layout.rules.get(&key(id)).map(|p| p.slot);
    for i in 0..70u32 {
        let own = kernel_lookup(&layout, &entries, &probe(i, i as u16));
        assert_eq!(own, slot_of(&format!("r{i:02}")), "rule {i} before z");
        assert_eq!(own, reference(&layout, &entries, &probe(i, i as u16)));
        assert_eq!(
            kernel_lookup(&layout, &entries, &probe(i, 999)),
            slot_of("z")
        );
    }
    let ranks: Vec<u64> = layout.order.values().copied().collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "ranks follow kernel order"
    );
}

#[test]
fn ipv4_is_stored_mapped_with_its_mask_and_long_lists_split() {
    let held = drop_rule("r", 1, json!({"dstAddress": ["10.1.0.0/16"]}));
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    let t = apply(&mut layout, &mut entries, vec![(key("r"), Some(held))]).expect("add");
    let e = t.entries[0].1;
    assert_eq!(e.flags, F_DST);
    assert_eq!(e.action.kind, ACT_DROP);
    assert_eq!(e.dst[0].addr, addr("10.1.0.0"));
    assert_eq!(e.dst[0].mask, compile::mask_words(112));
    // Unused slots repeat the used one, so the kernel can compare all of them.
    assert_eq!(e.dst[3], e.dst[0]);
    let cfg = layout.config();
    assert_eq!(
        (cfg.dims, cfg.n_dst_lens, cfg.dst_lens[0]),
        (DIM_DST, 1, 112)
    );

    let ports: Vec<String> = (1..=9).map(|p| p.to_string()).collect();
    let split = drop_rule("s", 1, json!({"dstPort": ports, "tag": ["1", "2"]}));
    let t = apply(&mut layout, &mut entries, vec![(key("s"), Some(split))]).expect("add");
    assert_eq!(t.entries.len(), 3, "9 ports in chunks of 4");
    assert!(t.entries.iter().all(|(_, e)| e.flags & F_TUNNEL != 0));
    assert_eq!(layout.config().dims, DIM_DST | DIM_TEID);
    let many: Vec<String> = (0..300).map(|p| p.to_string()).collect();
    let huge = drop_rule("h", 1, json!({"dstPort": many}));
    assert_eq!(
        apply(&mut layout, &mut entries, vec![(key("h"), Some(huge))]).err(),
        Some(CapacityError::FilterTooLarge)
    );
}

#[test]
fn entries_spread_over_the_emptiest_index_and_overlaps_are_bounded() {
    // One destination (an app), a source per UE: indexed by destination they would share a list.
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    let rules: Vec<_> = (0..40)
        .map(|i| {
            let id = format!("u{i}");
            let f = json!({"dstAddress": ["10.9.9.9"], "srcAddress": [format!("10.60.0.{i}")]});
            (key(&id), Some(drop_rule(&id, 1, f)))
        })
        .collect();
    apply(&mut layout, &mut entries, rules).expect("fits");
    assert!(
        layout.idx.src.lists.len() >= 24,
        "spread over the source index"
    );

    let wild: Vec<_> = (0..=MAX_SCAN)
        .map(|i| {
            let id = format!("w{i}");
            (
                key(&id),
                Some(drop_rule(&id, 1, json!({"protocol": ["UDP"]}))),
            )
        })
        .collect();
    match apply(&mut layout, &mut entries, wild) {
        Err(CapacityError::TooManyCandidates(n, what)) => {
            assert_eq!(n, MAX_SCAN as usize + 1);
            assert!(what.contains("without an address"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(layout.rule_count(), 40, "the refused task changed nothing");
}

#[test]
fn apps_added_out_of_rank_order_move_few_rules() {
    // What an operator's load does: app-0, app-1, ... (app-10 sorts before app-2) with priorities
    // 0..8 each, so every app's rules land inside the ranks of those before it.
    let mut layout = Layout::default();
    let mut entries = HashMap::new();
    let (mut reranked, mut most_lists) = (0, 0);
    for app in 0..300 {
        let edits: Vec<_> = (0..8u32)
            .map(|i| {
                let id = format!("t{i}");
                let dst = format!("10.{}.{}.{i}", app / 250, app % 250);
                let held = drop_rule(&id, i, json!({"dstAddress": [dst]}));
                ((format!("app-{app}"), id), Some(held))
            })
            .collect();
        let t = apply(&mut layout, &mut entries, edits).expect("fits");
        reranked += t.reranked;
        most_lists = most_lists.max(t.lists.len());
    }
    assert!(reranked < 1200, "{reranked} rules moved for 2400 added");
    assert!(most_lists < 1000, "one task touched {most_lists} lists");
    let p = Probe {
        src: addr("1.1.1.1"),
        dst: addr("10.0.77.3"),
        dport: 1,
        proto: 17,
        teid: None,
    };
    assert_eq!(
        kernel_lookup(&layout, &entries, &p),
        reference(&layout, &entries, &p)
    );
}
