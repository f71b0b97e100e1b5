//! Immutable snapshots of every ACTIVE rule. The control plane builds a new one after each
//! committed change and publishes it through its [`SnapshotPublisher`]; readers (the DNS server,
//! the XDP data plane) hold a [`SnapshotReader`], `load()` it without locks and never see a
//! half-applied change. Only the publisher can publish.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

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

/// Every ACTIVE rule at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub version: u64,
    /// Sorted by priority (0 first), then owner and id, so the first match wins.
    pub traffic_rules: Vec<ActiveTrafficRule>,
    /// Lower-case names without the trailing dot, to their answers in rule order.
    dns: HashMap<Box<str>, Box<[DnsAnswer]>>,
    /// The ACTIVE DNS rules themselves, sorted by owner then id.
    dns_rules: Vec<ActiveDnsRule>,
    /// `appInstanceId` to `appName`, where the control plane supplied it.
    app_names: HashMap<String, String>,
}

impl Snapshot {
    /// Builds a snapshot from `(appInstanceId, rule)` pairs. INACTIVE rules are left out; rules
    /// that do not validate (which the control plane never stores) are left out and logged.
    pub fn build<'a>(
        version: u64,
        traffic: impl IntoIterator<Item = (&'a str, &'a TrafficRule)>,
        dns: impl IntoIterator<Item = (&'a str, &'a DnsRule)>,
    ) -> Self {
        let mut traffic_rules: Vec<ActiveTrafficRule> = traffic
            .into_iter()
            .filter(|(_, r)| r.state == RuleState::Active)
            .filter_map(|(app, rule)| match rule.compile() {
                Ok(filters) => Some(ActiveTrafficRule {
                    app_instance_id: app.to_owned(),
                    rule: rule.clone(),
                    filters,
                }),
                Err(e) => {
                    tracing::error!(app, rule = %rule.traffic_rule_id, error = %e, "invalid traffic rule left out of the snapshot");
                    None
                }
            })
            .collect();
        traffic_rules.sort_by(|a, b| {
            (a.rule.priority, &a.app_instance_id, &a.rule.traffic_rule_id).cmp(&(
                b.rule.priority,
                &b.app_instance_id,
                &b.rule.traffic_rule_id,
            ))
        });
        let mut names: HashMap<Box<str>, Vec<DnsAnswer>> = HashMap::new();
        let mut dns_rules = Vec::new();
        for (app, rule) in dns {
            if rule.state != RuleState::Active {
                continue;
            }
            match rule.validate() {
                Ok(answer) => {
                    names
                        .entry(normalize_name(&rule.domain_name).into_boxed_str())
                        .or_default()
                        .push(answer);
                    dns_rules.push(ActiveDnsRule {
                        app_instance_id: app.to_owned(),
                        rule: rule.clone(),
                    });
                }
                Err(e) => {
                    tracing::error!(app, rule = %rule.dns_rule_id, error = %e, "invalid DNS rule left out of the snapshot")
                }
            }
        }
        dns_rules.sort_by(|a, b| {
            (&a.app_instance_id, &a.rule.dns_rule_id)
                .cmp(&(&b.app_instance_id, &b.rule.dns_rule_id))
        });
        Snapshot {
            version,
            traffic_rules,
            dns: names
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            dns_rules,
            app_names: HashMap::new(),
        }
    }

    /// Records the `appName` of app instances, so that data planes forwarding a full state can
    /// name the owner of each rule as the per-rule calls do.
    pub fn with_app_names<'a>(
        mut self,
        names: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.app_names.extend(
            names
                .into_iter()
                .map(|(id, name)| (id.to_owned(), name.to_owned())),
        );
        self
    }

    /// The `appName` of an app instance, if the control plane supplied it.
    pub fn app_name(&self, app_instance_id: &str) -> Option<&str> {
        self.app_names.get(app_instance_id).map(String::as_str)
    }

    /// Every ACTIVE DNS rule with its owner, sorted by owner then `dnsRuleId`.
    pub fn dns_rules(&self) -> &[ActiveDnsRule] {
        &self.dns_rules
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
    use crate::dns::IpAddressType;
    use crate::traffic::{Action, FilterType, TrafficFilter};

    fn dns(id: &str, name: &str, ip: &str, state: RuleState) -> DnsRule {
        DnsRule {
            dns_rule_id: id.into(),
            domain_name: name.into(),
            ip_address_type: if ip.contains(':') {
                IpAddressType::IpV6
            } else {
                IpAddressType::IpV4
            },
            ip_address: ip.into(),
            ttl: Some(30),
            state,
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
        let active: Vec<&str> = s
            .dns_rules()
            .iter()
            .map(|r| r.rule.dns_rule_id.as_str())
            .collect();
        assert_eq!(active, vec!["a", "b"]);
        let s = s.with_app_names([("app", "edge-app")]);
        assert_eq!(s.app_name("app"), Some("edge-app"));
        assert_eq!(s.app_name("other"), None);
        let ids: Vec<&str> = s
            .traffic_rules
            .iter()
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
}
