//! Double-buffered rule maps: a new rule set is written into the generation packets do not use,
//! then `MEP_ACTIVE` is flipped with one map write. Only elements that differ from what that
//! generation last held are written, so a one-rule change costs a handful of syscalls.

use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData};
use aya::Ebpf;
use mep_ebpf_common::{AddrKey, Entry, GenConfig, ListRef, RuleAction};

use crate::compile::Compiled;
use crate::error::XdpError;

/// How long a generation rests after being switched off before it is rewritten, so that a packet
/// that read the old `MEP_ACTIVE` (an XDP run takes microseconds) has finished with it.
const GRACE: Duration = Duration::from_millis(5);

struct GenMaps {
    entries: Array<MapData, Entry>,
    lists: Array<MapData, u32>,
    actions: Array<MapData, RuleAction>,
    dst: HashMap<MapData, AddrKey, ListRef>,
    src: HashMap<MapData, AddrKey, ListRef>,
    teid: HashMap<MapData, u32, ListRef>,
    /// What the maps hold; None after a failed write (then everything is rewritten).
    shadow: Option<Compiled>,
}

pub(crate) struct Generations {
    gens: [GenMaps; 2],
    config: Array<MapData, GenConfig>,
    active_map: Array<MapData, u32>,
    active: u32,
    last_flip: Instant,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::MissingMap(name))?;
    T::try_from(map).map_err(XdpError::map(name))
}

impl GenMaps {
    fn take(ebpf: &mut Ebpf, g: usize) -> Result<Self, XdpError> {
        const NAMES: [[&str; 6]; 2] = [
            [
                "MEP_ENTRIES_0",
                "MEP_LISTS_0",
                "MEP_ACTIONS_0",
                "MEP_DST_0",
                "MEP_SRC_0",
                "MEP_TEID_0",
            ],
            [
                "MEP_ENTRIES_1",
                "MEP_LISTS_1",
                "MEP_ACTIONS_1",
                "MEP_DST_1",
                "MEP_SRC_1",
                "MEP_TEID_1",
            ],
        ];
        let n = NAMES[g];
        Ok(Self {
            entries: take(ebpf, n[0])?,
            lists: take(ebpf, n[1])?,
            actions: take(ebpf, n[2])?,
            dst: take(ebpf, n[3])?,
            src: take(ebpf, n[4])?,
            teid: take(ebpf, n[5])?,
            shadow: Some(Compiled::default()),
        })
    }

    fn write(&mut self, new: &Compiled) -> Result<(), XdpError> {
        let old = self.shadow.take();
        let old_entries = old.as_ref().map(|o| o.entries.as_slice()).unwrap_or(&[]);
        for (i, e) in new.entries.iter().enumerate() {
            if old_entries.get(i) != Some(e) {
                self.entries
                    .set(i as u32, e, 0)
                    .map_err(XdpError::map("entries"))?;
            }
        }
        let old_lists = old.as_ref().map(|o| o.lists.as_slice()).unwrap_or(&[]);
        for (i, id) in new.lists.iter().enumerate() {
            if old_lists.get(i) != Some(id) {
                self.lists
                    .set(i as u32, id, 0)
                    .map_err(XdpError::map("lists"))?;
            }
        }
        for (slot, a) in &new.actions {
            if old.as_ref().and_then(|o| o.actions.get(slot)) != Some(a) {
                self.actions
                    .set(*slot, a, 0)
                    .map_err(XdpError::map("actions"))?;
            }
        }
        sync_hash(&mut self.dst, old.as_ref().map(|o| &o.dst), &new.dst, "dst")?;
        sync_hash(&mut self.src, old.as_ref().map(|o| &o.src), &new.src, "src")?;
        sync_hash(
            &mut self.teid,
            old.as_ref().map(|o| &o.teid),
            &new.teid,
            "teid",
        )?;
        self.shadow = Some(new.clone());
        Ok(())
    }
}

/// Makes `map` hold exactly `new`, given that it held `old` (None: unknown, read it back).
fn sync_hash<K>(
    map: &mut HashMap<MapData, K, ListRef>,
    old: Option<&std::collections::HashMap<K, ListRef>>,
    new: &std::collections::HashMap<K, ListRef>,
    name: &'static str,
) -> Result<(), XdpError>
where
    K: aya::Pod + Eq + std::hash::Hash,
{
    let stale: Vec<K> = match old {
        Some(old) => old
            .keys()
            .filter(|k| !new.contains_key(k))
            .copied()
            .collect(),
        None => map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !new.contains_key(k))
            .collect(),
    };
    for k in &stale {
        map.remove(k).map_err(XdpError::map(name))?;
    }
    for (k, v) in new {
        if old.and_then(|o| o.get(k)) != Some(v) {
            map.insert(k, v, 0).map_err(XdpError::map(name))?;
        }
    }
    Ok(())
}

impl Generations {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, XdpError> {
        let gens = [GenMaps::take(ebpf, 0)?, GenMaps::take(ebpf, 1)?];
        Ok(Self {
            gens,
            config: take(ebpf, "MEP_GEN_CFG")?,
            active_map: take(ebpf, "MEP_ACTIVE")?,
            active: 0,
            last_flip: Instant::now() - GRACE,
        })
    }

    /// Writes `new` into the idle generation and makes it the active one.
    pub(crate) fn publish(&mut self, new: &Compiled) -> Result<(), XdpError> {
        let idle = 1 - self.active;
        let rested = self.last_flip.elapsed();
        if rested < GRACE {
            std::thread::sleep(GRACE - rested);
        }
        let maps = &mut self.gens[idle as usize];
        if let Err(e) = maps.write(new) {
            maps.shadow = None;
            return Err(e);
        }
        self.config
            .set(idle, new.config, 0)
            .map_err(XdpError::map("MEP_GEN_CFG"))?;
        self.active_map
            .set(0, idle, 0)
            .map_err(XdpError::map("MEP_ACTIVE"))?;
        self.active = idle;
        self.last_flip = Instant::now();
        Ok(())
    }
}
