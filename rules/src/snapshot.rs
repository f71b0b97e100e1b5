//! Immutable snapshots of every ACTIVE rule. The control plane builds a new one after each
//! committed change and publishes it through its [`SnapshotPublisher`]; readers (the DNS server,
//! the XDP data plane) hold a [`SnapshotReader`], `load()` it without locks and never see a
//! half-applied change. Only the publisher can publish.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use imbl::{HashMap, OrdMap};

use crate::dns::{normalize_name, DnsAnswer, DnsRule};
use crate::traffic::{CompiledFilter, TrafficRule};
use crate::RuleState;

/// The one writer of the newest snapshot.
#[derive(Debug)]
pub struct SnapshotPublisher {
    cell: Arc<ArcSwap<Snapshot>>,
}

impl Default for SnapshotPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotPublisher {
    /// A publisher whose readers see an empty snapshot until the first `publish`.
    pub fn new() -> Self {
        Self {
            cell: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
        }
    }

    /// Makes `snapshot` the one every reader loads from now on.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        self.cell.store(snapshot);
    }

    /// The snapshot published last.
    pub fn current(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// A reader of this publisher's snapshots.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            cell: Arc::clone(&self.cell),
        }
    }
}

/// Reads the newest snapshot without locks; cheap to clone, cannot publish.
#[derive(Debug, Clone)]
pub struct SnapshotReader {
    cell: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotReader {
    /// The newest snapshot, for the length of one query or update (no reference count).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.cell.load()
    }

    /// The newest snapshot, to keep.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }
}

/// An ACTIVE traffic rule with its owner and parsed filters.
#[derive(Debug, Clone)]
pub struct ActiveTrafficRule {
    pub app_instance_id: String,
    pub rule: TrafficRule,
    pub filters: Vec<CompiledFilter>,
}

/// An ACTIVE DNS rule with its owner, kept whole for data planes that forward rules (`upf-http`).
#[derive(Debug, Clone)]
pub struct ActiveDnsRule {
    pub app_instance_id: String,
    pub rule: DnsRule,
}

/// Where a traffic rule sits: priority (0 first), then owner and id, so the first match wins.
type TrafficKey = (u32, Arc<str>, Arc<str>);

/// One local answer: the name, then the owner and the rule's place in the owner's list, so a
/// name's answers come in owner order and each owner's in its rule order.
type AnswerKey = (Arc<str>, Arc<str>, usize);

/// What one app instance holds in a snapshot, so that replacing its rules touches only them.
#[derive(Debug, Default, Clone)]
struct AppEntry {
    name: Option<String>,
    traffic: Vec<TrafficKey>,
    /// The answer keys and ids of its ACTIVE DNS rules.
    dns: Vec<(AnswerKey, Arc<str>)>,
}

/// Every ACTIVE rule at one point in time. Built from persistent maps: the next snapshot shares
/// everything a change does not touch with this one, so a change costs what it touches.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub version: u64,
    traffic: OrdMap<TrafficKey, Arc<ActiveTrafficRule>>,
    answers: OrdMap<AnswerKey, DnsAnswer>,
    /// Lower-case names without the trailing dot, to their answers (see [`AnswerKey`]).
    dns: HashMap<Arc<str>, Arc<[DnsAnswer]>>,
    /// The ACTIVE DNS rules themselves, by owner then id.
    dns_rules: OrdMap<(Arc<str>, Arc<str>), Arc<ActiveDnsRule>>,
    apps: HashMap<Arc<str>, Arc<AppEntry>>,
    /// The version this snapshot was derived from and the names whose answers may differ from
    /// it; None for a snapshot built whole.
    dns_changes: Option<(u64, Arc<[Arc<str>]>)>,
}

impl Snapshot {
    /// Builds a snapshot from `(appInstanceId, rule)` pairs. INACTIVE rules are left out; rules
    /// that do not validate (which the control plane never stores) are left out and logged.
    pub fn build<'a>(
        version: u64,
        traffic: impl IntoIterator<Item = (&'a str, &'a TrafficRule)>,
        dns: impl IntoIterator<Item = (&'a str, &'a DnsRule)>,
    ) -> Self {
        let mut by_app: BTreeMap<&str, (Vec<&TrafficRule>, Vec<&DnsRule>)> = BTreeMap::new();
        for (app, rule) in traffic {
            by_app.entry(app).or_default().0.push(rule);
        }
        for (app, rule) in dns {
            by_app.entry(app).or_default().1.push(rule);
        }
        let mut snapshot = Snapshot {
            version,
            ..Snapshot::default()
        };
        for (app, (traffic, dns)) in by_app {
            snapshot.replace_app(app, None, traffic, dns);
        }
        snapshot
    }

    /// The next snapshot: this one with every rule of `app` replaced by `traffic` and `dns` (none:
    /// the app has no rules any more) and its `appName` set. Costs what the app's old and new
    /// rules touch, not what the snapshot holds.
    pub fn with_app_rules<'a>(
        &self,
        version: u64,
        app: &str,
        app_name: Option<&str>,
        traffic: impl IntoIterator<Item = &'a TrafficRule>,
        dns: impl IntoIterator<Item = &'a DnsRule>,
    ) -> Self {
        let mut next = self.clone();
        next.version = version;
        let touched = next.replace_app(app, app_name, traffic, dns);
        next.dns_changes = Some((self.version, touched.into()));
        next
    }

    /// The names whose local answers may differ between the snapshot of version `version` and
    /// this one, if this one was derived from it (or is it); None: compare every name.
    pub fn dns_changes_since(&self, version: u64) -> Option<&[Arc<str>]> {
        if version == self.version {
            return Some(&[]);
        }
        match &self.dns_changes {
            Some((base, names)) if *base == version => Some(names),
            _ => None,
        }
    }

    /// Every name with local answers (lower case, no trailing dot), in no particular order.
    pub fn dns_names(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.dns.keys()
    }

    fn replace_app<'a>(
        &mut self,
        app: &str,
        app_name: Option<&str>,
        traffic: impl IntoIterator<Item = &'a TrafficRule>,
        dns: impl IntoIterator<Item = &'a DnsRule>,
    ) -> Vec<Arc<str>> {
        let mut touched: Vec<Arc<str>> = Vec::new();
        let owner: Arc<str> = match self.apps.remove_with_key(app) {
            Some((owner, old)) => {
                for key in &old.traffic {
                    self.traffic.remove(key);
                }
                for (key, id) in &old.dns {
                    self.answers.remove(key);
                    self.dns_rules.remove(&(Arc::clone(&key.1), Arc::clone(id)));
                    touched.push(Arc::clone(&key.0));
                }
                owner
            }
            None => Arc::from(app),
        };
        let mut entry = AppEntry {
            name: app_name.map(str::to_owned),
            ..AppEntry::default()
        };
        for rule in traffic {
            if rule.state != RuleState::Active {
                continue;
            }
            match rule.compile() {
                Ok(filters) => {
                    let key = (
                        rule.priority,
                        Arc::clone(&owner),
                        Arc::from(rule.traffic_rule_id.as_str()),
                    );
                    self.traffic.insert(
                        key.clone(),
                        Arc::new(ActiveTrafficRule {
                            app_instance_id: app.to_owned(),
                            rule: rule.clone(),
                            filters,
                        }),
                    );
                    entry.traffic.push(key);
                }
                Err(e) => {
                    tracing::error!(app, rule = %rule.traffic_rule_id, error = %e, "invalid traffic rule left out of the snapshot");
                }
            }
        }
        for (place, rule) in dns.into_iter().enumerate() {
            if rule.state != RuleState::Active {
                continue;
            }
            match rule.validate() {
                Ok(answer) => {
                    let name: Arc<str> = Arc::from(normalize_name(&rule.domain_name));
                    let id: Arc<str> = Arc::from(rule.dns_rule_id.as_str());
                    let key = (Arc::clone(&name), Arc::clone(&owner), place);
                    self.answers.insert(key.clone(), answer);
                    self.dns_rules.insert(
                        (Arc::clone(&owner), Arc::clone(&id)),
                        Arc::new(ActiveDnsRule {
                            app_instance_id: app.to_owned(),
                            rule: rule.clone(),
                        }),
                    );
                    entry.dns.push((key, id));
                    touched.push(name);
                }
                Err(e) => {
                    tracing::error!(app, rule = %rule.dns_rule_id, error = %e, "invalid DNS rule left out of the snapshot")
                }
            }
        }
        if entry.name.is_some() || !entry.traffic.is_empty() || !entry.dns.is_empty() {
            self.apps.insert(owner, Arc::new(entry));
        }
        touched.sort_unstable();
        touched.dedup();
        for name in &touched {
            self.refresh_name(Arc::clone(name));
        }
        touched
    }

    /// Recomputes the answers of one name from the answers map.
    fn refresh_name(&mut self, name: Arc<str>) {
        let from: AnswerKey = (Arc::clone(&name), Arc::from(""), 0);
        let answers: Vec<DnsAnswer> = self
            .answers
            .range(from..)
            .take_while(|(key, _)| key.0 == name)
            .map(|(_, answer)| *answer)
            .collect();
        if answers.is_empty() {
            self.dns.remove(&name);
        } else {
            self.dns.insert(name, answers.into());
        }
    }

    /// Records the `appName` of app instances, so that data planes forwarding a full state can
    /// name the owner of each rule as the per-rule calls do.
    pub fn with_app_names<'a>(
        mut self,
        names: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (id, name) in names {
            let mut entry = match self.apps.remove(id) {
                Some(entry) => Arc::unwrap_or_clone(entry),
                None => AppEntry::default(),
            };
            entry.name = Some(name.to_owned());
            self.apps.insert(Arc::from(id), Arc::new(entry));
        }
        self
    }

    /// The `appName` of an app instance, if the control plane supplied it.
    pub fn app_name(&self, app_instance_id: &str) -> Option<&str> {
        self.apps.get(app_instance_id)?.name.as_deref()
    }

    /// Every ACTIVE traffic rule in match order: priority (0 first), then owner and id.
    pub fn traffic_rules(&self) -> impl Iterator<Item = &ActiveTrafficRule> + '_ {
        self.traffic.values().map(|r| &**r)
    }

    /// How many ACTIVE traffic rules there are.
    pub fn traffic_rule_count(&self) -> usize {
        self.traffic.len()
    }

    /// Every ACTIVE DNS rule with its owner, sorted by owner then `dnsRuleId`.
    pub fn dns_rules(&self) -> impl Iterator<Item = &ActiveDnsRule> + '_ {
        self.dns_rules.values().map(|r| &**r)
    }

    /// How many ACTIVE DNS rules there are.
    pub fn dns_rule_count(&self) -> usize {
        self.dns_rules.len()
    }

    /// The local answers for `name`, which must be lower case without the trailing dot.
    pub fn dns_answers(&self, name: &str) -> Option<&[DnsAnswer]> {
        self.dns.get(name).map(|a| &**a)
    }

    /// How many distinct names have local answers.
    pub fn dns_name_count(&self) -> usize {
        self.dns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Action, FilterType, TrafficFilter};

    fn dns(id: &str, name: &str, ip: &str, state: RuleState) -> DnsRule {
        DnsRule {
            state,
            ..DnsRule::active(id, name, ip.parse().expect("an IP address"), Some(30))
        }
    }

    fn traffic(id: &str, priority: u32, state: RuleState) -> TrafficRule {
        TrafficRule {
            traffic_rule_id: id.into(),
            filter_type: FilterType::Flow,
            priority,
            traffic_filter: vec![TrafficFilter::default()],
            action: Action::Drop,
            dst_interface: vec![],
            state,
        }
    }

    #[test]
    fn only_active_rules_and_in_priority_order() {
        let d = [
            dns("a", "Edge.Example.", "192.0.2.1", RuleState::Active),
            dns("b", "edge.example", "2001:db8::1", RuleState::Active),
            dns("c", "off.example", "192.0.2.2", RuleState::Inactive),
        ];
        let t = [
            traffic("low", 9, RuleState::Active),
            traffic("high", 0, RuleState::Active),
            traffic("off", 1, RuleState::Inactive),
        ];
        let s = Snapshot::build(
            7,
            t.iter().map(|r| ("app", r)),
            d.iter().map(|r| ("app", r)),
        );
        assert_eq!(s.version, 7);
        assert_eq!(s.dns_answers("edge.example").unwrap().len(), 2);
        assert!(s.dns_answers("off.example").is_none());
        assert_eq!(s.dns_name_count(), 1);
        let active: Vec<&str> = s.dns_rules().map(|r| r.rule.dns_rule_id.as_str()).collect();
        assert_eq!(active, vec!["a", "b"]);
        let s = s.with_app_names([("app", "edge-app")]);
        assert_eq!(s.app_name("app"), Some("edge-app"));
        assert_eq!(s.app_name("other"), None);
        let ids: Vec<&str> = s
            .traffic_rules()
            .map(|r| r.rule.traffic_rule_id.as_str())
            .collect();
        assert_eq!(ids, vec!["high", "low"]);
    }

    #[test]
    fn readers_see_whole_snapshots() {
        let publisher = SnapshotPublisher::new();
        let reader = publisher.reader();
        let before = reader.load_full();
        let d = [dns("a", "x.example", "192.0.2.1", RuleState::Active)];
        publisher.publish(Arc::new(Snapshot::build(
            1,
            [],
            d.iter().map(|r| ("app", r)),
        )));
        assert!(before.dns_answers("x.example").is_none());
        assert!(reader.load().dns_answers("x.example").is_some());
        assert_eq!(publisher.current().version, 1);
    }

    /// What a snapshot shows its readers: traffic rules in order, answers per name, DNS rules.
    type View = (
        Vec<(String, String)>,
        Vec<(String, Vec<DnsAnswer>)>,
        Vec<String>,
    );

    /// What a snapshot shows its readers, to compare two built differently.
    fn view(s: &Snapshot) -> View {
        let traffic = s
            .traffic_rules()
            .map(|r| (r.app_instance_id.clone(), r.rule.traffic_rule_id.clone()))
            .collect();
        let mut names: Vec<String> = s.dns.keys().map(|k| k.to_string()).collect();
        names.sort();
        let answers = names
            .into_iter()
            .map(|n| {
                let a = s.dns_answers(&n).unwrap().to_vec();
                (n, a)
            })
            .collect();
        let dns = s
            .dns_rules()
            .map(|r| format!("{}/{}", r.app_instance_id, r.rule.dns_rule_id))
            .collect();
        (traffic, answers, dns)
    }

    #[test]
    fn replacing_one_apps_rules_equals_building_everything_again() {
        // A small deterministic generator: apps share names and priorities on purpose.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut configs: BTreeMap<String, (Vec<TrafficRule>, Vec<DnsRule>)> = BTreeMap::new();
        let mut incremental = Snapshot::default();
        for step in 0..300u64 {
            let app = format!("app-{}", next(12));
            let rules = (0..next(4))
                .map(|i| {
                    let state = if next(5) == 0 {
                        RuleState::Inactive
                    } else {
                        RuleState::Active
                    };
                    traffic(&format!("t{i}"), next(4) as u32, state)
                })
                .collect();
            let dns_rules = (0..next(4))
                .map(|i| {
                    let ip = format!("192.0.2.{}", next(200) + 1);
                    dns(
                        &format!("d{i}"),
                        &format!("n{}.example", next(6)),
                        &ip,
                        RuleState::Active,
                    )
                })
                .collect();
            if next(6) == 0 {
                configs.remove(&app);
                incremental = incremental.with_app_rules(step, &app, None, [], []);
            } else {
                configs.insert(app.clone(), (rules, dns_rules));
                let (t, d) = &configs[&app];
                incremental = incremental.with_app_rules(step, &app, Some("n"), t, d);
            }
            let full = Snapshot::build(
                step,
                configs
                    .iter()
                    .flat_map(|(a, (t, _))| t.iter().map(move |r| (a.as_str(), r))),
                configs
                    .iter()
                    .flat_map(|(a, (_, d))| d.iter().map(move |r| (a.as_str(), r))),
            );
            assert_eq!(view(&incremental), view(&full), "after step {step} ({app})");
            assert_eq!(incremental.dns_name_count(), full.dns_name_count());
        }
    }
}
