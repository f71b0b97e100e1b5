//! `XdpDataPlane`: the `xdp` implementation of `mep_rules::DataPlane`. A task's batch of changes
//! edits a copy of the layout model (only what the changed rules touch) and is published as the
//! next map generation in one flip; a batch that does not fit is refused before anything in the
//! kernel changes. A resync applies the difference between the snapshot and the model.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{SchedClassifier, Xdp};
use aya::Ebpf;
use mep_ebpf_common::{Counter, IfaceInfo, RuleId, MAX_IFACES};
use mep_rules::{
    Action, AppInfo, ApplyError, CompiledFilter, DataPlane, DataPlaneError, InterfaceType,
    KernelDnsCounters, RuleChange, RuleError, RuleState, Snapshot, TrafficRule,
};

use crate::attach::{self, Attached, DUP_PROGRAM, PASS_PROGRAM, XDP_PROGRAM};
use crate::compile::CapacityError;
use crate::config::XdpConfig;
use crate::dns::KernelDns;
use crate::error::XdpError;
use crate::generation::{take, Generations};
use crate::layout::{Held, Layout, RuleKey, Touched};
use crate::status::{
    self, DeliveryCounters, RuleCounters, PIN_COUNTERS, PIN_DELIVERY, PIN_DNS_STATS, PIN_IFACES,
    PIN_RULE_IDS,
};

const PLANE: &str = "xdp";

/// The compiled kernel programs, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mep-ebpf.o"));

/// Which loaded XDP program [`XdpDataPlane::test_run`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestProgram {
    /// The traffic-steering program.
    Steer,
    /// A program that returns XDP_PASS and nothing else: the benchmark's floor.
    Pass,
}

/// The result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone)]
pub struct TestRunOutput {
    /// The XDP verdict (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_TX` = 3, `XDP_REDIRECT` = 4).
    pub verdict: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
    /// Mean time per run as the kernel measured it.
    pub per_run: Duration,
}

struct State {
    /// Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    gens: Generations,
    counters: PerCpuArray<MapData, Counter>,
    delivery: PerCpuArray<MapData, Counter>,
    dns_stats: PerCpuArray<MapData, Counter>,
    /// The attached interfaces by ifindex, which the program may redirect into natively.
    targets: aya::maps::HashMap<MapData, u32, u32>,
    rule_ids: Array<MapData, RuleId>,
    layout: Layout,
    attached: Vec<Attached>,
    last_update: Option<UpdateStats>,
}

/// What the last rule-set update cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateStats {
    /// From the start of the edit to the generation flip.
    pub took: Duration,
    /// Map elements written (entries, list items, index keys, config, the flip).
    pub map_writes: usize,
    /// Rules moved to new ranks to make room where neighbouring ranks left no gap.
    pub reranked: usize,
}

/// How full the kernel maps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub rules: usize,
    pub entries: u32,
    pub list_items: u32,
}

/// The `xdp` data plane.
pub struct XdpDataPlane {
    state: Arc<Mutex<Option<State>>>,
    pin_path: PathBuf,
    /// Our own references to the XDP programs, for `test_run` without the state lock.
    steer_fd: OwnedFd,
    pass_fd: OwnedFd,
    /// The kernel DNS answers, when on; locked apart from `state` so that following a snapshot
    /// never waits for a traffic-rule update.
    dns: Option<Mutex<KernelDns>>,
}

fn lock(state: &Mutex<Option<State>>) -> MutexGuard<'_, Option<State>> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N - 1);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

impl XdpDataPlane {
    /// Loads the programs, pins the status maps under `config.pin_path` and attaches to
    /// `config.interfaces`. Every packet passes until the first `init`/`resync`.
    pub fn new(config: XdpConfig) -> Result<Self, XdpError> {
        if !may_load_xdp() {
            return Err(XdpError::MissingCapabilities);
        }
        crate::bpffs::prepare(&config.pin_path)?;
        let pin_path = config.pin_path.clone();
        Self::load(config).inspect_err(|_| remove_pins(&pin_path))
    }

    fn load(config: XdpConfig) -> Result<Self, XdpError> {
        raise_memlock_limit();
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut fds = Vec::new();
        for name in [XDP_PROGRAM, PASS_PROGRAM] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(XdpError::MissingMap(name))?
                .try_into()
                .map_err(XdpError::program(name))?;
            p.load().map_err(XdpError::program(name))?;
            let fd = p.fd().map_err(XdpError::program(name))?;
            fds.push(fd.as_fd().try_clone_to_owned()?);
        }
        let (pass_fd, steer_fd) = match (fds.pop(), fds.pop()) {
            (Some(pass), Some(steer)) => (pass, steer),
            _ => return Err(XdpError::MissingMap(XDP_PROGRAM)),
        };
        let dup: &mut SchedClassifier = ebpf
            .program_mut(DUP_PROGRAM)
            .ok_or(XdpError::MissingMap(DUP_PROGRAM))?
            .try_into()
            .map_err(XdpError::program(DUP_PROGRAM))?;
        dup.load().map_err(XdpError::program(DUP_PROGRAM))?;

        for (map, pin) in [
            ("MEP_COUNTERS", PIN_COUNTERS),
            ("MEP_RULE_IDS", PIN_RULE_IDS),
            ("MEP_IFACES", PIN_IFACES),
            ("MEP_DELIVERY", PIN_DELIVERY),
            ("MEP_DNS_STATS", PIN_DNS_STATS),
        ] {
            let path = config.pin_path.join(pin);
            // A pin left by an earlier run that did not shut down cleanly.
            let _ = std::fs::remove_file(&path);
            ebpf.map(map)
                .ok_or(XdpError::MissingMap(map))?
                .pin(&path)
                .map_err(|source| XdpError::Pin {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        let gens = Generations::take(&mut ebpf)?;
        let counters: PerCpuArray<MapData, Counter> = take(&mut ebpf, "MEP_COUNTERS")?;
        let rule_ids: Array<MapData, RuleId> = take(&mut ebpf, "MEP_RULE_IDS")?;
        let mut ifaces: Array<MapData, IfaceInfo> = take(&mut ebpf, "MEP_IFACES")?;
        let delivery: PerCpuArray<MapData, Counter> = take(&mut ebpf, "MEP_DELIVERY")?;
        let mut targets: aya::maps::HashMap<MapData, u32, u32> =
            take(&mut ebpf, "MEP_XDP_TARGETS")?;
        let dns_stats: PerCpuArray<MapData, Counter> = take(&mut ebpf, "MEP_DNS_STATS")?;
        let dns = match config.dns.clone() {
            Some(dns) => Some(Mutex::new(KernelDns::load(
                &mut ebpf,
                dns,
                &config.interfaces,
            )?)),
            None => None,
        };

        let mut attached = Vec::new();
        for iface in &config.interfaces {
            let a = attach::attach(&mut ebpf, iface, config.mode)?;
            let idx = attached.len() as u32;
            if idx < MAX_IFACES {
                let info = IfaceInfo {
                    ifindex: a.ifindex,
                    mode: a.mode.code(),
                    name: fixed(&a.iface),
                };
                ifaces
                    .set(idx, info, 0)
                    .map_err(XdpError::map("MEP_IFACES"))?;
                targets
                    .insert(a.ifindex, a.mode.code(), 0)
                    .map_err(XdpError::map("MEP_XDP_TARGETS"))?;
            }
            tracing::info!(iface, mode = %a.mode, "xdp attached");
            attached.push(a);
        }
        let plane = Self {
            state: Arc::new(Mutex::new(Some(State {
                _ebpf: ebpf,
                gens,
                counters,
                delivery,
                dns_stats,
                targets,
                rule_ids,
                layout: Layout::default(),
                attached,
                last_update: None,
            }))),
            pin_path: config.pin_path,
            steer_fd,
            pass_fd,
            dns,
        };
        for iface in &config.native_targets {
            plane.add_native_target(iface)?;
        }
        Ok(plane)
    }

    /// Lets the program redirect natively into `iface` (resolved in the caller's network
    /// namespace): for NICs that take XDP frames. Others get forwarded packets through TC.
    pub fn add_native_target(&self, iface: &str) -> Result<(), XdpError> {
        let ifindex = attach::ifindex(iface)?;
        let mut guard = lock(&self.state);
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        st.targets
            .insert(ifindex, mep_ebpf_common::MODE_NATIVE, 0)
            .map_err(XdpError::map("MEP_XDP_TARGETS"))
    }

    /// Packets and bytes each ACTIVE rule matched.
    pub fn rule_counters(&self) -> Vec<RuleCounters> {
        let guard = lock(&self.state);
        let Some(st) = guard.as_ref() else {
            return Vec::new();
        };
        let mut out: Vec<RuleCounters> = st
            .layout
            .slots()
            .map(|((app, rule), slot)| {
                let c = status::slot_counter(&st.counters, slot);
                RuleCounters {
                    app_instance_id: app.clone(),
                    traffic_rule_id: rule.clone(),
                    packets: c.packets,
                    bytes: c.bytes,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.app_instance_id, &a.traffic_rule_id).cmp(&(&b.app_instance_id, &b.traffic_rule_id))
        });
        out
    }

    /// How the packets matched by FORWARD rules left, or why they did not.
    pub fn delivery_counters(&self) -> DeliveryCounters {
        lock(&self.state)
            .as_ref()
            .map(|st| DeliveryCounters::read(&st.delivery))
            .unwrap_or_default()
    }

    /// DNS queries the program answered, and those for the DNS service it passed on.
    pub fn dns_counters(&self) -> KernelDnsCounters {
        lock(&self.state)
            .as_ref()
            .map(|st| crate::dns::counters(&st.dns_stats))
            .unwrap_or_default()
    }

    /// Brings the kernel DNS answers to `snapshot`, when they are on.
    fn follow_dns(&self, snapshot: &Snapshot) {
        if let Some(dns) = &self.dns {
            dns.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .follow(snapshot);
        }
    }

    /// The interfaces the programs are attached to, with their mode.
    pub fn attached(&self) -> Vec<Attached> {
        lock(&self.state)
            .as_ref()
            .map(|st| st.attached.clone())
            .unwrap_or_default()
    }

    /// What the last rule-set update cost (the edit, map writes, generation flip).
    pub fn last_update(&self) -> Option<UpdateStats> {
        lock(&self.state).as_ref().and_then(|st| st.last_update)
    }

    /// How many rules, filter entries and list items the maps hold.
    pub fn occupancy(&self) -> Occupancy {
        lock(&self.state)
            .as_ref()
            .map(|st| Occupancy {
                rules: st.layout.rule_count(),
                entries: st.layout.entries_in_use(),
                list_items: st.layout.list_items_reserved(),
            })
            .unwrap_or(Occupancy {
                rules: 0,
                entries: 0,
                list_items: 0,
            })
    }

    /// Where the status maps are pinned.
    pub fn pin_path(&self) -> &std::path::Path {
        &self.pin_path
    }

    /// Runs a loaded XDP program on `packet` with `BPF_PROG_TEST_RUN`, `repeat` times (the
    /// kernel reports the mean time per run).
    pub fn test_run(
        &self,
        program: TestProgram,
        packet: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput, XdpError> {
        let fd = match program {
            TestProgram::Steer => &self.steer_fd,
            TestProgram::Pass => &self.pass_fd,
        };
        let (verdict, data, per_run) = crate::testrun::run(fd.as_fd(), packet, repeat)?;
        Ok(TestRunOutput {
            verdict,
            data,
            per_run,
        })
    }

    /// Runs `f` on the state in a blocking task (map writes are syscalls).
    async fn with_state<T, F>(&self, f: F) -> Result<T, DataPlaneError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, XdpError> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&state);
            let st = guard.as_mut().ok_or(XdpError::Shutdown)?;
            f(st)
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(to_plane_error(e)),
            Err(e) => Err(DataPlaneError::Failed {
                plane: PLANE,
                reason: e.to_string(),
            }),
        }
    }

    /// Applies the traffic rule changes of one task as one step: placed in one copy of the
    /// layout and published as one generation, so a packet sees all of them or none.
    async fn change(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), DataPlaneError> {
        let mut edits = Vec::new();
        for change in changes {
            let (rule, keep) = match change {
                RuleChange::AddTraffic(r) | RuleChange::UpdateTraffic { new: r, .. } => (r, true),
                RuleChange::RemoveTraffic(r) => (r, false),
                // DNS rules are the DNS server's business.
                RuleChange::AddDns(_) | RuleChange::UpdateDns { .. } | RuleChange::RemoveDns(_) => {
                    continue
                }
            };
            let key: RuleKey = (app.app_instance_id.clone(), rule.traffic_rule_id.clone());
            let held = if keep && rule.state == RuleState::Active {
                let filters = rule.compile().map_err(|e| unsupported(e.0))?;
                supported(rule, &filters).map_err(|e| unsupported(e.0))?;
                Some(Arc::new(Held {
                    rule: rule.clone(),
                    filters,
                }))
            } else {
                None
            };
            edits.push((key, held));
        }
        if edits.is_empty() {
            return Ok(());
        }
        self.with_state(move |st| st.apply(edits)).await
    }
}

/// Whether this process may load and attach XDP programs: CAP_NET_ADMIN and CAP_BPF (or
/// CAP_SYS_ADMIN on kernels before 5.8) in its effective set, as root or through file
/// capabilities on the binary.
fn may_load_xdp() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it. Best effort.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit value.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

fn unsupported(reason: String) -> DataPlaneError {
    DataPlaneError::Unsupported {
        plane: PLANE,
        reason,
    }
}

fn to_plane_error(e: XdpError) -> DataPlaneError {
    match e {
        XdpError::Capacity(c) => unsupported(c.to_string()),
        other => DataPlaneError::Failed {
            plane: PLANE,
            reason: other.to_string(),
        },
    }
}

impl State {
    /// Applies `edits` (a rule's new form, or None to remove it) as one generation. On failure
    /// the kernel keeps the previous generation and the model does not change.
    fn apply(&mut self, mut edits: Vec<(RuleKey, Option<Arc<Held>>)>) -> Result<(), XdpError> {
        let started = Instant::now();
        // Removals first, then additions in kernel order: each new rank then follows the one
        // before it instead of splitting a gap.
        edits.sort_by(|(ka, a), (kb, b)| {
            let order = |h: &Option<Arc<Held>>| h.as_ref().map(|h| h.rule.priority);
            (order(a), ka).cmp(&(order(b), kb))
        });
        self.gens.settle();
        let mut next = self.layout.clone();
        next.begin();
        let mut touched = Touched::default();
        for (key, held) in edits {
            next.set_rule(key, held, &mut touched)?;
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| XdpError::Io(e))?;
        for ((app, rule), slot) in &touched.fresh_slots {
            let zero = PerCpuValues::try_from(vec![Counter::default(); cpus])?;
            self.counters
                .set(*slot, zero, 0)
                .map_err(XdpError::map("MEP_COUNTERS"))?;
            let id = RuleId {
                used: 1,
                app: fixed(app),
                rule: fixed(rule),
            };
            self.rule_ids
                .set(*slot, id, 0)
                .map_err(XdpError::map("MEP_RULE_IDS"))?;
        }
        if let Err(e) = self.gens.publish(&next, &touched) {
            for (_, slot) in &touched.fresh_slots {
                let _ = self.rule_ids.set(*slot, RuleId::default(), 0);
            }
            return Err(e);
        }
        for slot in &touched.freed_slots {
            let _ = self.rule_ids.set(*slot, RuleId::default(), 0);
        }
        self.layout = next;
        self.last_update = Some(UpdateStats {
            took: started.elapsed(),
            map_writes: self.gens.last_writes(),
            reranked: touched.reranked,
        });
        Ok(())
    }
}

/// Checks what the kernel program can honour, independent of the other rules: the fields it
/// matches and actions it takes (`supported`), and that the rule fits the maps on its own.
pub fn check(rule: &TrafficRule, filters: &[CompiledFilter]) -> Result<(), RuleError> {
    supported(rule, filters)?;
    let alone = Held {
        rule: rule.clone(),
        filters: filters.to_vec(),
    };
    let mut layout = Layout::default();
    let key = (String::new(), rule.traffic_rule_id.clone());
    match layout.set_rule(key, Some(Arc::new(alone)), &mut Touched::default()) {
        Ok(()) => Ok(()),
        Err(e @ (CapacityError::FilterTooLarge | CapacityError::TooManyCandidates(..))) => Err(
            RuleError::new(format!("the xdp data plane cannot hold this rule: {e}")),
        ),
        Err(e) => Err(RuleError::new(e.to_string())),
    }
}

/// The fields and actions of `rule` the kernel program cannot honour. Capacity is the layout's
/// to find when the rule is placed.
fn supported(rule: &TrafficRule, filters: &[CompiledFilter]) -> Result<(), RuleError> {
    if let Some(what) = filters.iter().flat_map(|f| &f.uninterpreted).next() {
        return Err(RuleError::new(format!(
            "the xdp data plane matches IP protocol numbers (or TCP, UDP, ICMP, ...) and numeric \
             GTP-U TEIDs only, not {what}"
        )));
    }
    if filters.iter().any(|f| f.qci.is_some()) {
        return Err(RuleError::new(
            "the xdp data plane cannot match qCI: the QoS class is signalled, not carried in packets",
        ));
    }
    let uses_interface = !matches!(rule.action, Action::Drop | Action::Passthrough);
    if uses_interface
        && rule
            .dst_interface
            .iter()
            .any(|d| d.interface_type == InterfaceType::Tunnel)
    {
        return Err(RuleError::new(
            "the xdp data plane cannot encapsulate into a new tunnel (dstInterface of type TUNNEL); use MAC or IP",
        ));
    }
    Ok(())
}

#[async_trait]
impl DataPlane for XdpDataPlane {
    fn kind(&self) -> &'static str {
        PLANE
    }

    fn check_traffic_rule(
        &self,
        rule: &TrafficRule,
        filters: &[CompiledFilter],
    ) -> Result<(), RuleError> {
        check(rule, filters)
    }

    fn counters(&self) -> Vec<mep_rules::RuleCounter> {
        XdpDataPlane::rule_counters(self)
            .into_iter()
            .map(|c| mep_rules::RuleCounter {
                app_instance_id: c.app_instance_id,
                traffic_rule_id: c.traffic_rule_id,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect()
    }

    fn forward_outcomes(&self) -> Vec<mep_rules::ForwardOutcome> {
        self.delivery_counters()
            .outcomes()
            .into_iter()
            .map(|(outcome, _, c)| mep_rules::ForwardOutcome {
                outcome,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect()
    }

    fn snapshot_published(&self, snapshot: &Snapshot) {
        self.follow_dns(snapshot);
    }

    fn dns_answers(&self) -> Option<KernelDnsCounters> {
        self.dns.as_ref().map(|_| self.dns_counters())
    }

    async fn init(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        self.resync(snapshot).await
    }

    /// All or nothing: on failure the kernel keeps the previous generation.
    async fn apply(&self, app: &AppInfo, changes: &[RuleChange]) -> Result<(), ApplyError> {
        self.change(app, changes)
            .await
            .map_err(ApplyError::nothing_applied)
    }

    /// Applies the difference between `snapshot` and what the maps hold.
    async fn resync(&self, snapshot: &Snapshot) -> Result<(), DataPlaneError> {
        self.follow_dns(snapshot);
        let mut wanted = Vec::with_capacity(snapshot.traffic_rule_count());
        for r in snapshot.traffic_rules() {
            supported(&r.rule, &r.filters).map_err(|e| {
                unsupported(format!(
                    "rule {} of {}: {}",
                    r.rule.traffic_rule_id, r.app_instance_id, e.0
                ))
            })?;
            let key: RuleKey = (
                r.app_instance_id.to_string(),
                r.rule.traffic_rule_id.clone(),
            );
            wanted.push((key, r.rule.clone(), r.filters.clone()));
        }
        self.with_state(move |st| {
            let mut edits = Vec::new();
            let mut keep = std::collections::HashSet::new();
            for (key, rule, filters) in wanted {
                let held = Held { rule, filters };
                if st.layout.held(&key).map(|h| **h == held) != Some(true) {
                    edits.push((key.clone(), Some(Arc::new(held))));
                }
                keep.insert(key);
            }
            for key in st.layout.rule_keys() {
                if !keep.contains(key) {
                    edits.push((key.clone(), None));
                }
            }
            if edits.is_empty() {
                return Ok(());
            }
            st.apply(edits)
        })
        .await
    }

    /// Detaches from every interface, unloads the programs and removes the pins.
    async fn shutdown(&self) {
        let state = lock(&self.state).take();
        if let Some(st) = state {
            for a in &st.attached {
                tracing::info!(iface = %a.iface, "xdp detached");
            }
            drop(st);
        }
        remove_pins(&self.pin_path);
    }
}

impl Drop for XdpDataPlane {
    fn drop(&mut self) {
        if lock(&self.state).take().is_some() {
            remove_pins(&self.pin_path);
        }
    }
}

/// Removes the status pins: `mep xdp status` then reports that no data plane runs.
fn remove_pins(pin_path: &std::path::Path) {
    for pin in [
        PIN_COUNTERS,
        PIN_RULE_IDS,
        PIN_IFACES,
        PIN_DELIVERY,
        PIN_DNS_STATS,
    ] {
        let _ = std::fs::remove_file(pin_path.join(pin));
    }
    // Only succeeds when nothing else is pinned there.
    let _ = std::fs::remove_dir(pin_path);
}
