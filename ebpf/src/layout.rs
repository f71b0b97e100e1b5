//! The model of what the kernel's rule maps hold, kept incrementally: filter entries in stable
//! slots, one candidate list per index key (in a block of the list array), and a rank per rule
//! that orders candidates by priority.
//!
//! A change edits a copy of the model (persistent maps: copying costs nothing) and records what
//! it touched in [`Touched`]; the generation writer then writes only those map elements. A change
//! that does not fit is dropped with its copy, leaving the model as it was. A change costs what
//! the rules it touches touch: their entries, the lists of their keys, and the lists of longer
//! prefixes their prefixes cover (which the kernel finds before the shorter ones).

use std::collections::HashSet;
use std::sync::Arc;

use imbl::{HashMap as PHashMap, OrdMap, OrdSet, Vector};
use mep_ebpf_common::{
    AddrKey, Entry, GenConfig, ListItem, ListRef, DIM_DST, DIM_SRC, DIM_TEID, DIM_WILD, F_DST,
    F_SRC, F_TEID, MAX_ENTRIES, MAX_KEYS, MAX_LENS, MAX_LIST_ITEMS, MAX_RULES, MAX_SCAN,
};
use mep_rules::{CompiledFilter, TrafficRule};

use crate::compile::{self, CapacityError};

/// `(appInstanceId, trafficRuleId)`.
pub(crate) type RuleKey = (String, String);

/// Rules in kernel order: lower `priority` first, then app instance id, then rule id.
type OrderKey = (u32, RuleKey);

/// The gap left between the rank of a rule and the next one added after it.
const RANK_STEP: u64 = 1 << 40;

/// An ACTIVE rule as the data plane holds it.
#[derive(Debug, PartialEq)]
pub(crate) struct Held {
    pub rule: TrafficRule,
    pub filters: Vec<CompiledFilter>,
}

/// One of a generation's candidate lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ListKey {
    Dst(AddrKey),
    Src(AddrKey),
    Teid(u32),
    /// The entries no index holds, checked for every packet.
    Wild,
}

/// A candidate list and the block of the list array it occupies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct List {
    pub start: u32,
    pub cap: u32,
    pub items: Vec<ListItem>,
}

impl List {
    pub(crate) fn list_ref(&self) -> ListRef {
        ListRef {
            start: self.start,
            len: self.items.len() as u32,
        }
    }
}

/// What one change touched: the lists to rewrite in each generation, the entries to write, the
/// counter slots taken and given back.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub lists: HashSet<ListKey>,
    pub entries: Vec<(u32, Entry)>,
    pub fresh_slots: Vec<(RuleKey, u32)>,
    pub freed_slots: Vec<u32>,
    /// Rules moved to new ranks to make room where neighbouring ranks left no gap.
    pub reranked: usize,
}

/// Slot numbers handed out and taken back. A slot given back stays in quarantine until the next
/// change: the generation packets used before the last flip may still refer to it.
#[derive(Clone, Debug)]
struct Pool {
    max: u32,
    next: u32,
    free: Vector<u32>,
    quarantine: Vector<u32>,
}

impl Pool {
    fn new(max: u32) -> Self {
        Self {
            max,
            next: 0,
            free: Vector::new(),
            quarantine: Vector::new(),
        }
    }

    /// Called at the start of a change, after the grace period: the quarantine is safe to reuse.
    fn begin(&mut self) {
        let q = std::mem::take(&mut self.quarantine);
        self.free.append(q);
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop_back() {
            return Some(s);
        }
        if self.next < self.max {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    fn release(&mut self, slot: u32) {
        self.quarantine.push_back(slot);
    }

    fn in_use(&self) -> u32 {
        self.next - (self.free.len() + self.quarantine.len()) as u32
    }
}

/// Blocks of 1, 2, 4, 8 or 16 items of a generation's list array. A list lives in one block and
/// moves to a larger one when it outgrows it. Both generations have the same layout, and a block
/// is only ever rewritten in the generation packets do not use, so a freed block is reusable at
/// once.
#[derive(Clone, Debug, Default)]
struct Blocks {
    next: u32,
    free: [Vector<u32>; 5],
}

fn block_class(n: usize) -> usize {
    n.max(1).next_power_of_two().trailing_zeros() as usize
}

impl Blocks {
    fn alloc(&mut self, n: usize) -> Result<(u32, u32), CapacityError> {
        let class = block_class(n);
        let cap = 1u32 << class;
        if let Some(start) = self.free[class].pop_back() {
            return Ok((start, cap));
        }
        if self.next + cap > MAX_LIST_ITEMS {
            return Err(CapacityError::ListsFull);
        }
        self.next += cap;
        Ok((self.next - cap, cap))
    }

    fn free(&mut self, start: u32, cap: u32) {
        if cap > 0 {
            self.free[cap.trailing_zeros() as usize].push_back(start);
        }
    }
}

/// Where an entry is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Dst,
    Src,
    Teid,
    Wild,
}

/// An entry and every key it could be indexed under.
#[derive(Clone, Debug)]
struct PlacedEntry {
    idx: u32,
    dst: Vec<AddrKey>,
    src: Vec<AddrKey>,
    teid: Vec<u32>,
    dim: Dim,
}

/// A rule in the model.
#[derive(Clone, Debug)]
struct Placed {
    slot: u32,
    rank: u64,
    priority: u32,
    entries: Vec<PlacedEntry>,
    held: Arc<Held>,
}

fn insert_sorted(items: &mut Vec<ListItem>, item: ListItem) {
    if let Err(at) = items.binary_search(&item) {
        items.insert(at, item);
    }
}

fn remove_sorted(items: &mut Vec<ListItem>, item: ListItem) {
    if let Ok(at) = items.binary_search(&item) {
        items.remove(at);
    }
}

fn addr_num(words: &[u32; 4]) -> u128 {
    let mut octets = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        octets[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    u128::from_be_bytes(octets)
}

fn masked(k: &AddrKey, len: u32) -> AddrKey {
    AddrKey {
        len,
        addr: compile::and(k.addr, compile::mask_words(len)),
    }
}

fn describe(key: ListKey) -> String {
    match key {
        ListKey::Dst(k) => format!("destination {}", compile::describe(&k)),
        ListKey::Src(k) => format!("source {}", compile::describe(&k)),
        ListKey::Teid(t) => format!("TEID {}", u32::from_be(t)),
        ListKey::Wild => "filters without an address or TEID".into(),
    }
}

/// Applies `edit` to one list: allocates, grows or frees its block, checks the kernel's scan
/// bound, and records the list as touched. None: the list is now empty (and has no block).
fn edit_list(
    blocks: &mut Blocks,
    current: Option<List>,
    key: ListKey,
    touched: &mut Touched,
    edit: impl FnOnce(&mut Vec<ListItem>),
) -> Result<Option<List>, CapacityError> {
    let mut list = current.unwrap_or_default();
    edit(&mut list.items);
    touched.lists.insert(key);
    if list.items.is_empty() {
        blocks.free(list.start, list.cap);
        return Ok(None);
    }
    if list.items.len() > MAX_SCAN as usize {
        return Err(CapacityError::TooManyCandidates(
            list.items.len(),
            describe(key),
        ));
    }
    if list.items.len() > list.cap as usize {
        blocks.free(list.start, list.cap);
        (list.start, list.cap) = blocks.alloc(list.items.len())?;
    }
    Ok(Some(list))
}

/// `edit_list` on the list `map` holds at `key`, stored back, or taken out once it is empty.
fn edit_in<K: Clone + Eq + std::hash::Hash>(
    map: &mut PHashMap<K, List>,
    key: K,
    blocks: &mut Blocks,
    list_key: ListKey,
    touched: &mut Touched,
    edit: impl FnOnce(&mut Vec<ListItem>),
) -> Result<(), CapacityError> {
    let current = map.get(&key).cloned();
    match edit_list(blocks, current, list_key, touched, edit)? {
        Some(l) => map.insert(key, l),
        None => map.remove(&key),
    };
    Ok(())
}

/// Whether an edit puts an item into the lists or takes it out.
#[derive(Clone, Copy)]
enum Op {
    Insert,
    Remove,
}

impl Op {
    fn apply(self, items: &mut Vec<ListItem>, item: ListItem) {
        match self {
            Op::Insert => insert_sorted(items, item),
            Op::Remove => remove_sorted(items, item),
        }
    }
}

/// An address index: the entries placed at each key (`own`) and each key's candidate list, which
/// also holds the entries of the shorter indexed prefixes that cover the key, because the kernel
/// stops at the longest prefix it finds.
#[derive(Clone, Debug, Default)]
struct AddrIndex {
    /// Indexed prefix lengths (IPv4-mapped scale), longest first, with their number of keys.
    lens: Vec<(u32, u32)>,
    own: PHashMap<AddrKey, Vec<ListItem>>,
    lists: PHashMap<AddrKey, List>,
    /// Every key as (length, address), for the keys a shorter prefix covers.
    keys: OrdSet<(u32, u128)>,
}

impl AddrIndex {
    fn has_len(&self, len: u32) -> bool {
        self.lens.iter().any(|(l, _)| *l == len)
    }

    /// Whether the index can take an entry with these keys (it probes at most `MAX_LENS` lengths).
    fn usable(&self, keys: &[AddrKey]) -> bool {
        if keys.is_empty() || keys.iter().any(|k| k.len == 0) {
            return false;
        }
        let mut missing: Vec<u32> = keys
            .iter()
            .map(|k| k.len)
            .filter(|l| !self.has_len(*l))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        self.lens.len() + missing.len() <= MAX_LENS
    }

    /// The items of the shorter indexed keys that cover `k`.
    fn covering(&self, k: &AddrKey) -> Vec<ListItem> {
        let mut out = Vec::new();
        for (len, _) in self.lens.iter().filter(|(l, _)| *l < k.len) {
            if let Some(own) = self.own.get(&masked(k, *len)) {
                out.extend_from_slice(own);
            }
        }
        out.sort_unstable();
        out
    }

    /// The longest candidate list an entry with these keys would join.
    fn cost(&self, keys: &[AddrKey]) -> usize {
        keys.iter()
            .map(|k| match self.lists.get(k) {
                Some(l) => l.items.len(),
                None => self.covering(k).len(),
            })
            .max()
            .unwrap_or(0)
    }

    /// The keys of length `len` that `k` covers.
    fn covered(&self, k: &AddrKey, len: u32) -> Vec<AddrKey> {
        let lo = addr_num(&k.addr);
        let hi = lo | u128::MAX.checked_shr(k.len).unwrap_or(0);
        self.keys
            .range((len, lo)..=(len, hi))
            .map(|(l, a)| AddrKey {
                len: *l,
                addr: compile::words(a.to_be_bytes()),
            })
            .collect()
    }

    fn longer_lens(&self, len: u32) -> Vec<u32> {
        self.lens
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| *l > len)
            .collect()
    }

    /// Edits the list of `k` and of every longer key it covers.
    fn edit_covered(
        &mut self,
        k: &AddrKey,
        blocks: &mut Blocks,
        touched: &mut Touched,
        wrap: fn(AddrKey) -> ListKey,
        edit: impl Fn(&mut Vec<ListItem>),
    ) -> Result<(), CapacityError> {
        for len in self.longer_lens(k.len) {
            for ck in self.covered(k, len) {
                edit_in(&mut self.lists, ck, blocks, wrap(ck), touched, &edit)?;
            }
        }
        Ok(())
    }

    fn add(
        &mut self,
        k: AddrKey,
        item: ListItem,
        blocks: &mut Blocks,
        touched: &mut Touched,
        wrap: fn(AddrKey) -> ListKey,
    ) -> Result<(), CapacityError> {
        if !self.has_len(k.len) {
            let at = self.lens.partition_point(|(l, _)| *l > k.len);
            self.lens.insert(at, (k.len, 0));
        }
        let current = match self.own.get(&k) {
            Some(_) => self.lists.get(&k).cloned(),
            None => {
                if self.lists.len() >= MAX_KEYS as usize {
                    return Err(CapacityError::TooManyKeys);
                }
                if let Some(n) = self.lens.iter_mut().find(|(l, _)| *l == k.len) {
                    n.1 += 1;
                }
                self.keys.insert((k.len, addr_num(&k.addr)));
                Some(List {
                    items: self.covering(&k),
                    ..List::default()
                })
            }
        };
        let mut own = self.own.get(&k).cloned().unwrap_or_default();
        insert_sorted(&mut own, item);
        self.own.insert(k, own);
        if let Some(l) = edit_list(blocks, current, wrap(k), touched, |i| {
            insert_sorted(i, item)
        })? {
            self.lists.insert(k, l);
        }
        self.edit_covered(&k, blocks, touched, wrap, |i| insert_sorted(i, item))
    }

    fn remove(
        &mut self,
        k: AddrKey,
        item: ListItem,
        blocks: &mut Blocks,
        touched: &mut Touched,
        wrap: fn(AddrKey) -> ListKey,
    ) -> Result<(), CapacityError> {
        let Some(mut own) = self.own.get(&k).cloned() else {
            return Ok(());
        };
        remove_sorted(&mut own, item);
        if own.is_empty() {
            self.own.remove(&k);
            if let Some(l) = self.lists.remove(&k) {
                blocks.free(l.start, l.cap);
            }
            touched.lists.insert(wrap(k));
            self.keys.remove(&(k.len, addr_num(&k.addr)));
            if let Some(n) = self.lens.iter_mut().find(|(l, _)| *l == k.len) {
                n.1 -= 1;
            }
            self.lens.retain(|(_, n)| *n > 0);
        } else {
            self.own.insert(k, own);
            edit_in(&mut self.lists, k, blocks, wrap(k), touched, |i| {
                remove_sorted(i, item)
            })?;
        }
        self.edit_covered(&k, blocks, touched, wrap, |i| remove_sorted(i, item))
    }

    fn config(&self) -> (u32, [u32; MAX_LENS], [[u32; 4]; MAX_LENS]) {
        let mut lens = [0u32; MAX_LENS];
        let mut masks = [[0u32; 4]; MAX_LENS];
        for (i, (len, _)) in self.lens.iter().take(MAX_LENS).enumerate() {
            lens[i] = *len;
            masks[i] = compile::mask_words(*len);
        }
        (self.lens.len().min(MAX_LENS) as u32, lens, masks)
    }
}

/// The indexes and the blocks their lists occupy.
#[derive(Clone, Debug, Default)]
struct Indexes {
    blocks: Blocks,
    dst: AddrIndex,
    src: AddrIndex,
    teid: PHashMap<u32, List>,
    wild: Option<List>,
}

impl Indexes {
    /// Puts `e` in the index whose longest affected list is shortest; falls back to the others
    /// when that overflows a list.
    fn place(
        &mut self,
        e: &PlacedEntry,
        item: ListItem,
        touched: &mut Touched,
    ) -> Result<Dim, CapacityError> {
        let mut options: Vec<(usize, Dim)> = Vec::with_capacity(4);
        if self.dst.usable(&e.dst) {
            options.push((self.dst.cost(&e.dst), Dim::Dst));
        }
        if self.src.usable(&e.src) {
            options.push((self.src.cost(&e.src), Dim::Src));
        }
        if !e.teid.is_empty() {
            let cost = e
                .teid
                .iter()
                .map(|t| self.teid.get(t).map_or(0, |l| l.items.len()))
                .max()
                .unwrap_or(0);
            options.push((cost, Dim::Teid));
        }
        options.sort_by_key(|(cost, _)| *cost);
        options.push((0, Dim::Wild));
        let mut last = None;
        for (_, dim) in options {
            let saved = self.clone();
            match self.edit(e, dim, item, Op::Insert, touched) {
                Ok(()) => return Ok(dim),
                Err(err @ CapacityError::TooManyCandidates(..)) => {
                    *self = saved;
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(CapacityError::ListsFull))
    }

    /// Inserts `item` into, or removes it from, the lists of `e`'s keys in index `dim`.
    fn edit(
        &mut self,
        e: &PlacedEntry,
        dim: Dim,
        item: ListItem,
        op: Op,
        touched: &mut Touched,
    ) -> Result<(), CapacityError> {
        let blocks = &mut self.blocks;
        match (dim, op) {
            (Dim::Dst, Op::Insert) => {
                for k in &e.dst {
                    self.dst.add(*k, item, blocks, touched, ListKey::Dst)?;
                }
            }
            (Dim::Dst, Op::Remove) => {
                for k in &e.dst {
                    self.dst.remove(*k, item, blocks, touched, ListKey::Dst)?;
                }
            }
            (Dim::Src, Op::Insert) => {
                for k in &e.src {
                    self.src.add(*k, item, blocks, touched, ListKey::Src)?;
                }
            }
            (Dim::Src, Op::Remove) => {
                for k in &e.src {
                    self.src.remove(*k, item, blocks, touched, ListKey::Src)?;
                }
            }
            (Dim::Teid, _) => {
                for t in &e.teid {
                    let new_key = !self.teid.contains_key(t);
                    if matches!(op, Op::Insert) && new_key && self.teid.len() >= MAX_KEYS as usize {
                        return Err(CapacityError::TooManyKeys);
                    }
                    edit_in(
                        &mut self.teid,
                        *t,
                        blocks,
                        ListKey::Teid(*t),
                        touched,
                        |i| op.apply(i, item),
                    )?;
                }
            }
            (Dim::Wild, _) => {
                let current = self.wild.take();
                self.wild = edit_list(blocks, current, ListKey::Wild, touched, |i| {
                    op.apply(i, item)
                })?;
            }
        }
        Ok(())
    }

    fn all_keys(&self) -> impl Iterator<Item = ListKey> + '_ {
        self.dst
            .lists
            .keys()
            .map(|k| ListKey::Dst(*k))
            .chain(self.src.lists.keys().map(|k| ListKey::Src(*k)))
            .chain(self.teid.keys().map(|t| ListKey::Teid(*t)))
            .chain(self.wild.iter().map(|_| ListKey::Wild))
    }
}

/// The model of the kernel's rule maps.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    rules: PHashMap<RuleKey, Arc<Placed>>,
    order: OrdMap<OrderKey, u64>,
    slots: Pool,
    entries: Pool,
    idx: Indexes,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            rules: PHashMap::new(),
            order: OrdMap::new(),
            slots: Pool::new(MAX_RULES),
            entries: Pool::new(MAX_ENTRIES),
            idx: Indexes::default(),
        }
    }
}

impl Layout {
    /// Starts a change: slots given back by the previous one become reusable. Call it on the copy
    /// the change edits, once packets can no longer use the generation before the last flip.
    pub(crate) fn begin(&mut self) {
        self.slots.begin();
        self.entries.begin();
    }

    /// What the model holds for `key`.
    pub(crate) fn held(&self, key: &RuleKey) -> Option<&Arc<Held>> {
        self.rules.get(key).map(|p| &p.held)
    }

    /// Every rule and its counter slot.
    pub(crate) fn slots(&self) -> impl Iterator<Item = (&RuleKey, u32)> {
        self.rules.iter().map(|(k, p)| (k, p.slot))
    }

    pub(crate) fn rule_keys(&self) -> impl Iterator<Item = &RuleKey> {
        self.rules.keys()
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn entries_in_use(&self) -> u32 {
        self.entries.in_use()
    }

    /// List-array items taken by blocks (used or free for reuse).
    pub(crate) fn list_items_reserved(&self) -> u32 {
        self.idx.blocks.next
    }

    /// Makes `key` hold `held` (None: removes it). A rule that stays keeps its counter slot.
    pub(crate) fn set_rule(
        &mut self,
        key: RuleKey,
        held: Option<Arc<Held>>,
        touched: &mut Touched,
    ) -> Result<(), CapacityError> {
        let keep = held.is_some();
        let slot = self.remove_rule(&key, keep, touched)?;
        match held {
            Some(h) => self.add_rule(key, h, slot, touched),
            None => Ok(()),
        }
    }

    fn remove_rule(
        &mut self,
        key: &RuleKey,
        keep_slot: bool,
        touched: &mut Touched,
    ) -> Result<Option<u32>, CapacityError> {
        let Some(p) = self.rules.remove(key) else {
            return Ok(None);
        };
        self.order.remove(&(p.priority, key.clone()));
        for e in &p.entries {
            let item = ListItem::new(p.rank, e.idx);
            self.idx.edit(e, e.dim, item, Op::Remove, touched)?;
            self.entries.release(e.idx);
        }
        if !keep_slot {
            self.slots.release(p.slot);
            touched.freed_slots.push(p.slot);
        }
        Ok(Some(p.slot))
    }

    fn add_rule(
        &mut self,
        key: RuleKey,
        held: Arc<Held>,
        slot: Option<u32>,
        touched: &mut Touched,
    ) -> Result<(), CapacityError> {
        let slot = match slot {
            Some(s) => s,
            None => {
                let s = self.slots.alloc().ok_or(CapacityError::TooManyRules)?;
                touched.fresh_slots.push((key.clone(), s));
                s
            }
        };
        let action = compile::rule_action(held.rule.action, &held.rule.dst_interface);
        let mut entries = Vec::new();
        for f in &held.filters {
            entries.extend(compile::filter_entries(slot, action, f)?);
        }
        let priority = held.rule.priority;
        let order_key = (priority, key.clone());
        let rank = match self.free_rank(&order_key) {
            Some(r) => {
                self.order.insert(order_key, r);
                r
            }
            None => {
                self.order.insert(order_key.clone(), 0);
                touched.reranked += self.respread(&order_key, touched)?;
                self.order.get(&order_key).copied().unwrap_or(0)
            }
        };
        let mut placed = Vec::with_capacity(entries.len());
        for e in entries {
            let idx = self.entries.alloc().ok_or(CapacityError::TooManyEntries)?;
            let mut pe = PlacedEntry {
                idx,
                dst: keys_of(&e, F_DST, true),
                src: keys_of(&e, F_SRC, false),
                teid: if e.flags & F_TEID != 0 {
                    e.teid[..usize::from(e.n_teid)].to_vec()
                } else {
                    Vec::new()
                },
                dim: Dim::Wild,
            };
            pe.dim = self.idx.place(&pe, ListItem::new(rank, idx), touched)?;
            touched.entries.push((idx, e));
            placed.push(pe);
        }
        self.rules.insert(
            key,
            Arc::new(Placed {
                slot,
                rank,
                priority,
                entries: placed,
                held,
            }),
        );
        Ok(())
    }

    /// A rank between those of the neighbours of `key` in kernel order, at most `RANK_STEP`
    /// above the lower one (rules added in ascending order then use up a gap slowly instead of
    /// halving it); None when they leave no gap.
    fn free_rank(&self, key: &OrderKey) -> Option<u64> {
        let pred = self.order.range(..key.clone()).next_back().map(|(_, r)| *r);
        let succ = self.order.range(key.clone()..).next().map(|(_, r)| *r);
        let lo = pred.map_or(0, |p| u128::from(p) + 1);
        let hi = succ.map_or(u128::from(u64::MAX), u128::from);
        if lo >= hi {
            return None;
        }
        let rank = (lo + u128::from(RANK_STEP) - 1).min(lo + (hi - lo) / 2);
        u64::try_from(rank).ok()
    }

    /// Makes room for `key` (already in `order`): spreads the ranks of the smallest window of
    /// rules around it, doubling its width, whose bounds leave a quarter of the average gap per
    /// rule, and moves the window's rules to their new ranks in every list that holds them.
    /// Amortized, a few rules per insertion; answers how many were moved.
    fn respread(&mut self, key: &OrderKey, touched: &mut Touched) -> Result<usize, CapacityError> {
        let min_gap = (u128::from(u64::MAX) / (self.order.len() as u128 + 1) / 4).max(2);
        let mut width = 1usize;
        let (window, lo, hi) = loop {
            let left: Vec<(OrderKey, u64)> = self
                .order
                .range(..key.clone())
                .rev()
                .take(width + 1)
                .map(|(k, r)| (k.clone(), *r))
                .collect();
            let right: Vec<(OrderKey, u64)> = self
                .order
                .range(key.clone()..)
                .skip(1)
                .take(width + 1)
                .map(|(k, r)| (k.clone(), *r))
                .collect();
            let lo = left.get(width).map_or(0, |(_, r)| u128::from(*r) + 1);
            let hi = right
                .get(width)
                .map_or(u128::from(u64::MAX), |(_, r)| u128::from(*r));
            let inside: Vec<OrderKey> = left
                .iter()
                .take(width)
                .rev()
                .map(|(k, _)| k.clone())
                .chain(std::iter::once(key.clone()))
                .chain(right.iter().take(width).map(|(k, _)| k.clone()))
                .collect();
            let whole = left.len() <= width && right.len() <= width;
            if hi > lo && (hi - lo) / (inside.len() as u128 + 1) >= min_gap || whole {
                break (inside, lo, hi);
            }
            width *= 2;
        };
        let step = (hi - lo) / (window.len() as u128 + 1);
        if step == 0 {
            return Err(CapacityError::TooManyRules);
        }
        let mut moved = 0;
        for (i, ok) in window.iter().enumerate() {
            let rank = u64::try_from(lo + (i as u128 + 1) * step).unwrap_or(u64::MAX - 1);
            self.order.insert(ok.clone(), rank);
            let Some(p) = self.rules.get(&ok.1) else {
                continue;
            };
            if p.rank == rank {
                continue;
            }
            let mut p = Placed::clone(p);
            for e in &p.entries {
                let (old, new) = (ListItem::new(p.rank, e.idx), ListItem::new(rank, e.idx));
                self.idx.edit(e, e.dim, old, Op::Remove, touched)?;
                self.idx.edit(e, e.dim, new, Op::Insert, touched)?;
            }
            p.rank = rank;
            self.rules.insert(ok.1.clone(), Arc::new(p));
            moved += 1;
        }
        Ok(moved)
    }

    /// The list `key` names, if it exists.
    pub(crate) fn list(&self, key: &ListKey) -> Option<&List> {
        match key {
            ListKey::Dst(k) => self.idx.dst.lists.get(k),
            ListKey::Src(k) => self.idx.src.lists.get(k),
            ListKey::Teid(t) => self.idx.teid.get(t),
            ListKey::Wild => self.idx.wild.as_ref(),
        }
    }

    /// Every list there is.
    pub(crate) fn list_keys(&self) -> impl Iterator<Item = ListKey> + '_ {
        self.idx.all_keys()
    }

    /// The program settings of a generation holding this model.
    pub(crate) fn config(&self) -> GenConfig {
        let mut cfg = GenConfig::default();
        let i = &self.idx;
        for (present, dim) in [
            (!i.dst.lists.is_empty(), DIM_DST),
            (!i.src.lists.is_empty(), DIM_SRC),
            (!i.teid.is_empty(), DIM_TEID),
            (i.wild.is_some(), DIM_WILD),
        ] {
            if present {
                cfg.dims |= dim;
            }
        }
        (cfg.n_dst_lens, cfg.dst_lens, cfg.dst_masks) = i.dst.config();
        (cfg.n_src_lens, cfg.src_lens, cfg.src_masks) = i.src.config();
        if let Some(w) = &i.wild {
            cfg.wild = w.list_ref();
        }
        cfg
    }
}

/// The address keys of `e` for the destination (`dst`) or source index; none when the entry
/// does not match on that address.
fn keys_of(e: &Entry, flag: u32, dst: bool) -> Vec<AddrKey> {
    if e.flags & flag == 0 {
        return Vec::new();
    }
    if dst {
        compile::entry_prefix_keys(&e.dst, e.n_dst)
    } else {
        compile::entry_prefix_keys(&e.src, e.n_src)
    }
}

#[cfg(test)]
mod tests;
