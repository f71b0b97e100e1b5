//! Double-buffered rule maps. A change writes its new entries into free slots of the shared
//! entry array, rewrites the lists it touched in the generation packets do not use, and flips
//! `MEP_ACTIVE` with one map write. The other generation catches up with the same lists at the
//! next change, once no packet can still be using it: each generation gets every change, and
//! each change costs what it touched.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, MapError};
use aya::Ebpf;
use mep_ebpf_common::{AddrKey, Entry, GenConfig, ListItem, ListRef};

use crate::error::XdpError;
use crate::layout::{Layout, ListKey, Touched};

/// How long a generation rests after being switched off before it is rewritten, so that a packet
/// that read the old `MEP_ACTIVE` has finished with it: an XDP run takes microseconds and is not
/// preempted.
const GRACE: Duration = Duration::from_millis(2);

struct GenMaps {
    lists: Array<MapData, ListItem>,
    dst: HashMap<MapData, AddrKey, ListRef>,
    src: HashMap<MapData, AddrKey, ListRef>,
    teid: HashMap<MapData, u32, ListRef>,
    /// Lists changed since this generation was last written.
    pending: HashSet<ListKey>,
    /// A write failed half-way: everything is rewritten (and stale keys removed) next time.
    dirty: bool,
    /// The config it was last given.
    config: Option<GenConfig>,
}

pub(crate) struct Generations {
    gens: [GenMaps; 2],
    entries: Array<MapData, Entry>,
    config: Array<MapData, GenConfig>,
    active_map: Array<MapData, u32>,
    active: u32,
    last_flip: Instant,
    /// Map writes of the last publication.
    last_writes: usize,
}

/// Takes map `name` out of the loaded object as a `T`.
pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::MissingMap(name))?;
    T::try_from(map).map_err(XdpError::map(name))
}

/// A removal of a key the map does not hold (it came and went while this generation was idle).
pub(crate) fn absent(e: &MapError) -> bool {
    matches!(e, MapError::KeyNotFound)
        || matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}

fn remove<K: aya::Pod>(
    map: &mut HashMap<MapData, K, ListRef>,
    key: &K,
    name: &'static str,
) -> Result<(), XdpError> {
    match map.remove(key) {
        Err(e) if !absent(&e) => Err(XdpError::map(name)(e)),
        _ => Ok(()),
    }
}

/// Makes `map` hold `at` under `key`, or nothing.
fn put<K: aya::Pod>(
    map: &mut HashMap<MapData, K, ListRef>,
    key: &K,
    at: Option<ListRef>,
    name: &'static str,
) -> Result<(), XdpError> {
    match at {
        Some(r) => map.insert(key, r, 0).map_err(XdpError::map(name)),
        None => remove(map, key, name),
    }
}

/// Removes the keys of `map` that `keep` refuses; answers how many.
fn remove_stale<K: aya::Pod>(
    map: &mut HashMap<MapData, K, ListRef>,
    keep: impl Fn(K) -> bool,
    name: &'static str,
) -> Result<usize, XdpError> {
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keep(*k))
        .collect();
    for k in &stale {
        remove(map, k, name)?;
    }
    Ok(stale.len())
}

impl GenMaps {
    fn take(ebpf: &mut Ebpf, g: usize) -> Result<Self, XdpError> {
        const NAMES: [[&str; 4]; 2] = [
            ["MEP_LISTS_0", "MEP_DST_0", "MEP_SRC_0", "MEP_TEID_0"],
            ["MEP_LISTS_1", "MEP_DST_1", "MEP_SRC_1", "MEP_TEID_1"],
        ];
        let n = NAMES[g];
        Ok(Self {
            lists: take(ebpf, n[0])?,
            dst: take(ebpf, n[1])?,
            src: take(ebpf, n[2])?,
            teid: take(ebpf, n[3])?,
            pending: HashSet::new(),
            dirty: false,
            config: None,
        })
    }

    /// Makes list `key` of this generation what `layout` says; answers the map writes made.
    fn write_list(&mut self, layout: &Layout, key: &ListKey) -> Result<usize, XdpError> {
        let list = layout.list(key);
        if let Some(l) = list {
            for (i, item) in l.items.iter().enumerate() {
                self.lists
                    .set(l.start + i as u32, item, 0)
                    .map_err(XdpError::map("lists"))?;
            }
        }
        let at = list.map(|l| l.list_ref());
        match key {
            ListKey::Dst(k) => put(&mut self.dst, k, at, "dst")?,
            ListKey::Src(k) => put(&mut self.src, k, at, "src")?,
            ListKey::Teid(t) => put(&mut self.teid, t, at, "teid")?,
            // The wild list's place is in the config.
            ListKey::Wild => {}
        }
        Ok(list.map_or(0, |l| l.items.len()) + 1)
    }

    /// Brings this (idle) generation to `layout`: the pending lists, or everything after a
    /// failed write.
    fn catch_up(&mut self, layout: &Layout) -> Result<usize, XdpError> {
        let mut writes = 0;
        if self.dirty {
            writes += self.remove_stale(layout)?;
            self.pending.extend(layout.list_keys());
        }
        for key in &std::mem::take(&mut self.pending) {
            match self.write_list(layout, key) {
                Ok(n) => writes += n,
                Err(e) => {
                    self.dirty = true;
                    return Err(e);
                }
            }
        }
        self.dirty = false;
        Ok(writes)
    }

    /// Removes the index keys the kernel holds and `layout` does not.
    fn remove_stale(&mut self, layout: &Layout) -> Result<usize, XdpError> {
        let has = |key: ListKey| layout.list(&key).is_some();
        Ok(
            remove_stale(&mut self.dst, |k| has(ListKey::Dst(k)), "dst")?
                + remove_stale(&mut self.src, |k| has(ListKey::Src(k)), "src")?
                + remove_stale(&mut self.teid, |t| has(ListKey::Teid(t)), "teid")?,
        )
    }
}

impl Generations {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, XdpError> {
        let gens = [GenMaps::take(ebpf, 0)?, GenMaps::take(ebpf, 1)?];
        Ok(Self {
            gens,
            entries: take(ebpf, "MEP_ENTRIES")?,
            config: take(ebpf, "MEP_GEN_CFG")?,
            active_map: take(ebpf, "MEP_ACTIVE")?,
            active: 0,
            last_flip: Instant::now() - GRACE,
            last_writes: 0,
        })
    }

    /// Waits until the idle generation is no longer in use by any packet. Call it before the
    /// change that `publish` writes takes its slots (`Layout::begin`).
    pub(crate) fn settle(&self) {
        let rested = self.last_flip.elapsed();
        if rested < GRACE {
            std::thread::sleep(GRACE - rested);
        }
    }

    /// Makes `layout`, which differs from the published one by `touched`, the active generation.
    /// On failure packets keep the active generation; the idle one is rewritten in full next time.
    pub(crate) fn publish(&mut self, layout: &Layout, touched: &Touched) -> Result<(), XdpError> {
        self.settle();
        let mut writes = 0;
        for (idx, e) in &touched.entries {
            self.entries
                .set(*idx, e, 0)
                .map_err(XdpError::map("MEP_ENTRIES"))?;
            writes += 1;
        }
        let idle = 1 - self.active;
        let g = &mut self.gens[idle as usize];
        g.pending.extend(touched.lists.iter().copied());
        let written = (|| {
            let mut n = g.catch_up(layout)?;
            let config = layout.config();
            if g.config != Some(config) {
                g.config = None;
                self.config
                    .set(idle, config, 0)
                    .map_err(XdpError::map("MEP_GEN_CFG"))?;
                g.config = Some(config);
                n += 1;
            }
            self.active_map
                .set(0, idle, 0)
                .map_err(XdpError::map("MEP_ACTIVE"))?;
            Ok::<_, XdpError>(n + 1)
        })();
        match written {
            Ok(n) => writes += n,
            Err(e) => {
                // The idle generation holds part of a layout the caller drops.
                g.dirty = true;
                return Err(e);
            }
        }
        self.active = idle;
        self.last_flip = Instant::now();
        self.gens[1 - idle as usize]
            .pending
            .extend(touched.lists.iter().copied());
        self.last_writes = writes;
        Ok(())
    }

    pub(crate) fn last_writes(&self) -> usize {
        self.last_writes
    }
}
