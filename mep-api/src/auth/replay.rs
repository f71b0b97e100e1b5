//! One use per signed token request. A signed request stays valid for the clock-skew window, so
//! without this a captured one could be replayed within it; remembering each verified signature
//! until its window ends closes that.

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::Mutex;

/// Signatures remembered at most; beyond this, new signed requests are refused until old ones
/// expire (memory stays bounded even under a flood of valid requests).
const MAX_REMEMBERED: usize = 100_000;

/// Signatures already used, each with the end of its validity.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 32], SystemTime>>,
}

/// Why a signed request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// This exact signature was used before.
    Used,
    /// Too many signatures are still within their window.
    Full,
}

impl ReplayGuard {
    /// Records `signature` (valid until `valid_until`) and says whether it was its first use.
    pub fn first_use(
        &self,
        signature: &[u8; 32],
        valid_until: SystemTime,
        now: SystemTime,
    ) -> Result<(), Replay> {
        let mut seen = self.seen.lock();
        if seen.get(signature).is_some_and(|until| *until >= now) {
            return Err(Replay::Used);
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(Replay::Full);
            }
        }
        seen.insert(*signature, valid_until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_signature_works_once_within_its_window() {
        let guard = ReplayGuard::default();
        let now = SystemTime::now();
        let until = now + Duration::from_secs(300);
        let (sig, other) = ([1u8; 32], [2u8; 32]);
        assert_eq!(guard.first_use(&sig, until, now), Ok(()));
        assert_eq!(guard.first_use(&sig, until, now), Err(Replay::Used));
        assert_eq!(guard.first_use(&other, until, now), Ok(()));
        // Past its window the signature is refused by the skew check anyway; the guard forgets it.
        let later = until + Duration::from_secs(1);
        assert_eq!(
            guard.first_use(&sig, later + Duration::from_secs(300), later),
            Ok(())
        );
    }
}
