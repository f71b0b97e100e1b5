//! Which node of a site sends the notifications: the holder of an etcd lease on the
//! `{prefix}/leader` key (see `etcd::EtcdStore::campaign`). A store of one node always leads.
//!
//! A leader stops counting itself as one when its lease may have expired, by its own clock,
//! even before it hears so from etcd: a node paused or cut off from etcd for longer than the
//! lease stops sending before another node can have taken over (less a margin for clock rate).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// Handle on this node's leadership. Cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    /// Until when this node leads; `None` while another node does (or nobody is known to).
    until: Mutex<Option<Instant>>,
    changes: watch::Sender<bool>,
}

impl Leadership {
    /// A node that leads from the start and for ever (a store of one node).
    pub fn always() -> Self {
        let leadership = Self::follower();
        leadership.lead_until(Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        leadership
    }

    /// A node that does not lead until it wins a campaign.
    pub fn follower() -> Self {
        Self {
            inner: Arc::new(Inner {
                until: Mutex::new(None),
                changes: watch::channel(false).0,
            }),
        }
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.inner
            .until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Announces leadership changes (`true`: this node now leads).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.changes.subscribe()
    }

    /// This node leads until `until` (a won campaign or a renewed lease).
    pub(super) fn lead_until(&self, until: Instant) {
        *self.inner.until.lock() = Some(until);
        self.inner
            .changes
            .send_if_modified(|leads| !std::mem::replace(leads, true));
    }

    /// This node no longer leads (its lease is gone or may be).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(super) fn step_down(&self) {
        *self.inner.until.lock() = None;
        self.inner
            .changes
            .send_if_modified(|leads| std::mem::replace(leads, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leadership_ends_with_its_lease_even_unannounced() {
        let l = Leadership::follower();
        let mut changes = l.subscribe();
        assert!(!l.is_leader());
        l.lead_until(Instant::now() + Duration::from_millis(50));
        assert!(l.is_leader());
        assert!(changes.has_changed().unwrap_or(false) && *changes.borrow_and_update());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            !l.is_leader(),
            "a lease that may have expired is not leadership"
        );
        l.step_down();
        assert!(!*changes.borrow_and_update());
        assert!(Leadership::always().is_leader());
    }
}
