//! Replay protection (Mesh Profile 1.0.1 §3.8.8): for each source, the
//! highest (IV index, sequence number) accepted; a PDU at or below it is a
//! replay. Checked after the NetMIC verifies (so forged PDUs cannot
//! poison the list) and recorded only when the message is taken.

use std::collections::HashMap;

/// The replay protection list, bounded like a node's (`capacity` sources).
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<u16, (u32, u32)>,
    capacity: usize,
}

/// Why a PDU was refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("source {src:#06x} already sent IV index {iv_index}, sequence {seq} or later")]
    Replayed { src: u16, iv_index: u32, seq: u32 },
    #[error("the replay list is full ({capacity} sources); a new source is refused")]
    Full { capacity: usize },
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashMap::new(),
            capacity,
        }
    }

    /// Whether (`iv_index`, `seq`) from `src` is new.
    pub fn check(&self, src: u16, iv_index: u32, seq: u32) -> Result<(), ReplayError> {
        match self.seen.get(&src) {
            Some(&last) if (iv_index, seq) <= last => {
                Err(ReplayError::Replayed { src, iv_index, seq })
            }
            None if self.seen.len() >= self.capacity => Err(ReplayError::Full {
                capacity: self.capacity,
            }),
            _ => Ok(()),
        }
    }

    /// Records an accepted PDU.
    pub fn accept(&mut self, src: u16, iv_index: u32, seq: u32) -> Result<(), ReplayError> {
        self.check(src, iv_index, seq)?;
        self.seen.insert(src, (iv_index, seq));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_and_equal_are_replays_a_new_iv_index_resets() {
        let mut cache = ReplayCache::new(2);
        cache.accept(1, 5, 10).unwrap();
        assert!(cache.accept(1, 5, 10).is_err());
        assert!(cache.accept(1, 5, 9).is_err());
        assert!(cache.accept(1, 4, 100).is_err());
        cache.accept(1, 5, 11).unwrap();
        cache.accept(1, 6, 0).unwrap();
        cache.accept(2, 6, 0).unwrap();
        assert_eq!(
            cache.accept(3, 6, 0),
            Err(ReplayError::Full { capacity: 2 })
        );
    }
}
