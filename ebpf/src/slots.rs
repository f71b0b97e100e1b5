//! Stable per-rule slots: a rule keeps its counter slot for as long as it is ACTIVE, whatever
//! the order of the filter entries in the generations.

use std::collections::HashMap;

use mep_ebpf_common::MAX_RULES;

/// `(appInstanceId, trafficRuleId)`.
pub(crate) type RuleKey = (String, String);

#[derive(Default)]
pub(crate) struct Slots {
    by_rule: HashMap<RuleKey, u32>,
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    pub(crate) fn get(&self, key: &RuleKey) -> Option<u32> {
        self.by_rule.get(key).copied()
    }

    /// A fresh slot for `key`, or None when all are taken.
    pub(crate) fn alloc(&mut self, key: RuleKey) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.next < MAX_RULES => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        self.by_rule.insert(key, slot);
        Some(slot)
    }

    pub(crate) fn release(&mut self, key: &RuleKey) -> Option<u32> {
        let slot = self.by_rule.remove(key)?;
        self.free.push(slot);
        Some(slot)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&RuleKey, u32)> {
        self.by_rule.iter().map(|(k, v)| (k, *v))
    }
}
