//! Damage to a well-formed packet, for the property tests: some bytes replaced, the end cut off,
//! some bytes appended.

use std::ops::Range;

use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
pub(super) struct Damage {
    replaced: Vec<(Index, u8)>,
    cut: Option<Index>,
    appended: Vec<u8>,
}

impl Damage {
    pub(super) fn apply(&self, packet: &mut Vec<u8>) {
        for (at, byte) in &self.replaced {
            let i = at.index(packet.len());
            packet[i] = *byte;
        }
        if let Some(cut) = &self.cut {
            packet.truncate(cut.index(packet.len() + 1));
        }
        packet.extend_from_slice(&self.appended);
    }
}

/// `replaced` bytes replaced (a count in that range), perhaps a cut, and up to `appended` bytes
/// appended.
pub(super) fn damage(replaced: Range<usize>, appended: usize) -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<Index>(), any::<u8>()), replaced),
        prop::option::of(any::<Index>()),
        prop::collection::vec(any::<u8>(), 0..appended),
    )
        .prop_map(|(replaced, cut, appended)| Damage {
            replaced,
            cut,
            appended,
        })
}
