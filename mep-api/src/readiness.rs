//! What `GET /ready` on Mm5 reports: whether every part a request depends on is up. `/health`
//! only says that the process answers; `/ready` says that it serves what it holds (an
//! orchestrator sends traffic, and an operator starts changes, only once it is 200).

use std::sync::atomic::{AtomicBool, Ordering};

/// One part readiness waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The store is open and the in-memory indexes are loaded from it.
    Store,
    /// The data plane holds every committed rule (its first sync, or a resync after a failed
    /// revert, succeeded).
    DataPlane,
    /// The DNS server listens.
    Dns,
}

impl Part {
    const ALL: [Part; 3] = [Part::Store, Part::DataPlane, Part::Dns];

    fn describe(self) -> &'static str {
        match self {
            Part::Store => "the store is loading",
            Part::DataPlane => "the data plane is not in sync with the committed rules",
            Part::Dns => "the DNS server is not listening",
        }
    }
}

/// The readiness of each part; share it in an `Arc`.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: [AtomicBool; 3],
}

impl Readiness {
    pub fn set(&self, part: Part, ready: bool) {
        self.ready[part as usize].store(ready, Ordering::Release);
    }

    pub fn is_ready(&self, part: Part) -> bool {
        self.ready[part as usize].load(Ordering::Acquire)
    }

    /// What is still missing; empty when ready.
    pub fn missing(&self) -> Vec<&'static str> {
        Part::ALL
            .iter()
            .filter(|p| !self.ready[**p as usize].load(Ordering::Acquire))
            .map(|p| p.describe())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_part_is() {
        let r = Readiness::default();
        assert_eq!(r.missing().len(), 3);
        r.set(Part::Store, true);
        r.set(Part::Dns, true);
        assert_eq!(
            r.missing(),
            vec!["the data plane is not in sync with the committed rules"]
        );
        r.set(Part::DataPlane, true);
        assert!(r.missing().is_empty());
        r.set(Part::DataPlane, false);
        assert_eq!(r.missing().len(), 1);
    }
}
