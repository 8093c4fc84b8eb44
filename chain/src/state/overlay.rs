//! The state as it will be once some uncommitted blocks are applied: what a
//! pipelining replica executes block n+1 against while block n is still
//! being voted on.
//!
//! Copying [`State`] per block would copy every entry and tree node. An
//! overlay copies nothing: it reads the parents' [`StateChanges`], newest
//! first, and then the committed state, both as entries (for execution,
//! through `StateRead`) and as tree nodes (jmt's [`TreeReader`], for the new
//! root). A node a parent made stale is never read: the tree is walked from
//! the newest root, which no longer points at it.

use std::collections::BTreeMap;
use std::iter::Peekable;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};

use super::{State, StateChanges, StateError, StateKey, StateValue};

/// The committed state with uncommitted changes on top, oldest first.
pub struct Overlay<'a> {
    base: &'a State,
    layers: Vec<&'a StateChanges>,
}

impl<'a> Overlay<'a> {
    /// `layers` must be consecutive versions right after `base`'s: each was
    /// prepared over `base` and the layers before it.
    pub fn new(base: &'a State, layers: Vec<&'a StateChanges>) -> Result<Self, StateError> {
        for (offset, layer) in (0..).zip(&layers) {
            let expected = base.next_version() + offset;
            if layer.version != expected {
                return Err(StateError::NotNext {
                    expected,
                    found: layer.version,
                });
            }
        }
        Ok(Overlay { base, layers })
    }

    /// The version the next prepared changes get.
    pub(super) fn next_version(&self) -> Version {
        self.layers
            .last()
            .map_or(self.base.next_version(), |l| l.version + 1)
    }

    /// Computes the changes `writes` make on top of this overlay, without
    /// applying anything. They apply to the committed state once the
    /// layers have, in order.
    pub fn prepare(
        &self,
        writes: BTreeMap<StateKey, Option<StateValue>>,
    ) -> Result<StateChanges, StateError> {
        super::prepare_by(self, writes, super::TreePath::Batch)
    }

    pub fn get(&self, key: &StateKey) -> Option<&'a StateValue> {
        for layer in self.layers.iter().rev() {
            if let Ok(at) = layer.writes.binary_search_by(|(k, _)| k.cmp(key)) {
                return layer.writes[at].1.as_ref();
            }
        }
        self.base.get(key)
    }

    /// Entries in key order from `from` (inclusive), as they will be.
    pub fn range_from(
        &self,
        from: &StateKey,
    ) -> impl Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a {
        // A block writes few keys: gather the layers' from `from` on, the
        // newer write of a key replacing the older.
        let mut upper: BTreeMap<&'a StateKey, Option<&'a StateValue>> = BTreeMap::new();
        for layer in &self.layers {
            let start = layer.writes.partition_point(|(k, _)| k < from);
            for (key, value) in &layer.writes[start..] {
                upper.insert(key, value.as_ref());
            }
        }
        Merge {
            base: self.base.range_from(from).peekable(),
            upper: upper.into_iter().peekable(),
        }
    }
}

/// Two key-ordered streams, the upper one replacing (or, with `None`,
/// deleting) the base's entry of the same key.
struct Merge<'a, B: Iterator<Item = (&'a StateKey, &'a StateValue)>> {
    base: Peekable<B>,
    upper: Peekable<std::collections::btree_map::IntoIter<&'a StateKey, Option<&'a StateValue>>>,
}

impl<'a, B: Iterator<Item = (&'a StateKey, &'a StateValue)>> Iterator for Merge<'a, B> {
    type Item = (&'a StateKey, &'a StateValue);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let base = self.base.peek().map(|(key, _)| *key);
            let upper_first = match (base, self.upper.peek().map(|(key, _)| *key)) {
                (_, None) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(b), Some(u)) => {
                    if b == u {
                        // Replaced or deleted above.
                        self.base.next();
                    }
                    u <= b
                }
            };
            if !upper_first {
                return self.base.next();
            }
            if let Some((key, Some(value))) = self.upper.next() {
                return Some((key, value));
            }
        }
    }
}

impl TreeReader for Overlay<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        for layer in self.layers.iter().rev() {
            if let Some(node) = layer.batch.node_batch.nodes().get(node_key) {
                return Ok(Some(node.clone()));
            }
        }
        self.base.nodes.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        for layer in self.layers.iter().rev() {
            if let Some(value) = layer
                .batch
                .node_batch
                .values()
                .get(&(layer.version, key_hash))
            {
                return Ok(value.clone());
            }
        }
        self.base.nodes.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // As for the node store: only jmt's restore paths ask for this.
        anyhow::bail!("get_rightmost_leaf is not supported by the state overlay")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::state::Account;

    fn key(seed: u8) -> StateKey {
        StateKey::Account {
            account: Keypair::from_seed([seed; 32]).public(),
        }
    }

    fn value(balance: u64) -> Option<StateValue> {
        Some(StateValue::Account(Account { balance, nonce: 0 }))
    }

    /// Writes that insert, replace and delete across `keys`.
    fn writes(round: u64, keys: &[u8]) -> BTreeMap<StateKey, Option<StateValue>> {
        keys.iter()
            .map(|&k| {
                let v = if (u64::from(k) + round) % 3 == 0 {
                    None
                } else {
                    value(round * 1000 + u64::from(k))
                };
                (key(k), v)
            })
            .collect()
    }

    /// Reads through two uncommitted layers are the reads of the state
    /// with both applied: each key, every range, and the root of a third
    /// block prepared on top.
    #[test]
    fn reads_through_layers_are_those_of_the_applied_state() {
        let mut base = State::default();
        let genesis = base.prepare(writes(1, &[1, 2, 3, 4, 5, 6, 7, 8])).unwrap();
        base.apply(&genesis);
        let first = base.prepare(writes(2, &[2, 3, 4, 9, 10])).unwrap();
        let second = Overlay::new(&base, vec![&first])
            .unwrap()
            .prepare(writes(3, &[1, 3, 4, 10, 11, 12]))
            .unwrap();
        let over = Overlay::new(&base, vec![&first, &second]).unwrap();
        let mut applied = base.clone();
        applied.apply(&first);
        applied.apply(&second);

        for k in 0..14 {
            assert_eq!(over.get(&key(k)), applied.get(&key(k)), "key {k}");
            let ours: Vec<_> = over.range_from(&key(k)).collect();
            let theirs: Vec<_> = applied.range_from(&key(k)).collect();
            assert_eq!(ours, theirs, "range from key {k}");
        }
        let third = writes(4, &[2, 5, 8, 13]);
        let on_top = over.prepare(third.clone()).unwrap();
        assert_eq!(on_top.root, applied.prepare(third).unwrap().root);
        applied.apply(&on_top);
        assert_eq!(applied.root(), on_top.root);
    }

    #[test]
    fn layers_out_of_order_are_refused() {
        let mut base = State::default();
        let genesis = base.prepare(writes(1, &[1, 2])).unwrap();
        base.apply(&genesis);
        let first = base.prepare(writes(2, &[1])).unwrap();
        let second = Overlay::new(&base, vec![&first])
            .unwrap()
            .prepare(writes(3, &[2]))
            .unwrap();
        assert!(matches!(
            Overlay::new(&base, vec![&second]),
            Err(StateError::NotNext { .. })
        ));
        assert!(Overlay::new(&base, vec![&first, &second]).is_ok());
    }
}
