//! The in-memory node store behind the Jellyfish Merkle tree.
//!
//! `jmt` computes updates and proofs; it reads nodes through [`TreeReader`]
//! and hands back a [`TreeUpdateBatch`] of new and stale nodes instead of
//! writing anything, which is exactly the split the core needs: the batch is
//! applied here, and the same batch is persisted by the store.
//!
//! Only the latest version is kept: stale nodes are dropped as soon as a batch
//! is applied (a proof is always made against the newest root; the light
//! client already holds the header it needs for that).

use std::collections::HashMap;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};

/// SHA-256 through `ring`, as the tree's hash function.
pub struct TreeHasher(ring::digest::Context);

impl jmt::SimpleHasher for TreeHasher {
    fn new() -> Self {
        TreeHasher(ring::digest::Context::new(&ring::digest::SHA256))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// Nodes and leaf values of the latest version of the tree.
#[derive(Default, Clone)]
pub(crate) struct NodeStore {
    pub(crate) nodes: HashMap<NodeKey, Node>,
    pub(crate) values: HashMap<KeyHash, OwnedValue>,
    /// The key of the current root node.
    pub(crate) root: Option<NodeKey>,
}

impl TreeReader for NodeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.values.get(&key_hash).cloned())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's restore and overwrite paths ask for this; neither is used.
        anyhow::bail!("get_rightmost_leaf is not supported by the in-memory node store")
    }
}

/// The root node a batch creates (jmt writes one for every version, copying
/// an unchanged root forward).
fn new_root(batch: &TreeUpdateBatch) -> Option<&NodeKey> {
    batch
        .node_batch
        .nodes()
        .keys()
        .find(|key| key.nibble_path().is_empty())
}

/// The node keys an applied batch removes: its stale nodes, plus the previous
/// root (jmt copies an unchanged root forward without marking the old copy
/// stale).
fn removed_nodes(batch: &TreeUpdateBatch, previous_root: Option<&NodeKey>) -> Vec<NodeKey> {
    let mut removed: Vec<NodeKey> = batch
        .stale_node_index_batch
        .iter()
        .map(|stale| stale.node_key.clone())
        .collect();
    if let Some(old) = previous_root {
        if Some(old) != new_root(batch) && !removed.contains(old) {
            removed.push(old.clone());
        }
    }
    removed
}

impl NodeStore {
    /// Applies a batch made by jmt on top of this store.
    pub(crate) fn apply(&mut self, batch: &TreeUpdateBatch) {
        for key in removed_nodes(batch, self.root.as_ref()) {
            self.nodes.remove(&key);
        }
        for (key, node) in batch.node_batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((_, key_hash), value) in batch.node_batch.values() {
            match value {
                Some(value) => self.values.insert(*key_hash, value.clone()),
                None => self.values.remove(key_hash),
            };
        }
        if let Some(root) = new_root(batch) {
            self.root = Some(root.clone());
        }
    }
}
