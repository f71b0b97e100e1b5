//! The bounded cache of forwarded answers, keyed by lower-case name, type and class. Bounded by
//! bytes held, not entries, so large answers cannot exceed the memory budget.

use std::sync::Arc;
use std::time::Instant;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::forwarded::ForwardedAnswer;

/// Rough size of an answer for the eviction policy.
#[derive(Debug, Clone, Copy)]
struct BytesHeld;

impl Weighter<Box<[u8]>, Arc<ForwardedAnswer>> for BytesHeld {
    fn weight(&self, key: &Box<[u8]>, answer: &Arc<ForwardedAnswer>) -> u64 {
        (key.len() + answer.footprint()) as u64
    }
}

/// Answers of upstream resolvers, each served until its lifetime ends.
pub(crate) struct AnswerCache {
    /// `None` when the configured size is 0: caching is off.
    entries: Option<Cache<Box<[u8]>, Arc<ForwardedAnswer>, BytesHeld>>,
}

/// Typical bytes per entry, to size the cache's tables up front.
const TYPICAL_ENTRY_BYTES: usize = 256;

impl AnswerCache {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        let entries = (capacity_bytes > 0).then(|| {
            Cache::with_weighter(
                (capacity_bytes / TYPICAL_ENTRY_BYTES).max(16),
                capacity_bytes as u64,
                BytesHeld,
            )
        });
        AnswerCache { entries }
    }

    /// The answer for `key` with its age in seconds, if it is still fresh.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<(Arc<ForwardedAnswer>, u32)> {
        let answer = self.entries.as_ref()?.get(key)?;
        let age = answer.age_if_fresh(now)?;
        Some((answer, age))
    }

    /// Keeps `answer` if it may be cached at all.
    pub(crate) fn insert(&self, key: &[u8], answer: Arc<ForwardedAnswer>) {
        if let Some(entries) = &self.entries {
            if answer.cache_lifetime().is_some() {
                entries.insert(key.into(), answer);
            }
        }
    }

    /// How many answers are held (expired ones included until evicted).
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }
}
