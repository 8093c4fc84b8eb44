//! The authenticated ledger state: accounts, devices, grants, firmware
//! manifests and the validator sets, committed to by one root.
//!
//! Every entry is a ([`StateKey`], [`StateValue`]) pair. The root is a
//! Jellyfish Merkle tree (the sparse Merkle tree of Diem, maintained as the
//! `jmt` crate by Penumbra) over `SHA-256(encode(key)) → encode(value)`, so
//! - an update touches O(log n) nodes, never the whole tree;
//! - a [`StateProof`] proves a key's value (inclusion) *or* its absence
//!   (exclusion) against nothing but the root.
//!
//! Changes are computed first ([`State::prepare`]) and applied later
//! ([`State::apply`]), so a block that turns out invalid leaves the state
//! untouched, and the exact same [`StateChanges`] can be persisted.
//!
//! Only the flat entries are persisted; the tree is rebuilt from them when a
//! store is reopened ([`State::restore`], O(n) once) and checked against the
//! root the tip header names. Tree nodes are derived data: persisting them
//! would multiply the bytes written per block several times over (see
//! BENCHMARKS.md). The tree's internal version counter is therefore its own,
//! not the block height; roots do not depend on it.

mod overlay;
mod tree;

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::storage::TreeUpdateBatch;
use jmt::{JellyfishMerkleTree, KeyHash, RootHash, Version};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, DecodeError};
use crate::crypto::{AccountId, Hash, PublicKey};
use crate::tx::FirmwareManifest;
use crate::types::{
    Amount, DeviceId, DeviceKind, FirmwareVersion, Height, Model, Rights, TimestampMs,
};
use crate::validators::ValidatorSet;

pub use overlay::Overlay;
use tree::NodeStore;
pub use tree::TreeHasher;

/// Where an entry lives.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateKey {
    Account {
        account: AccountId,
    },
    Device {
        device: DeviceId,
    },
    Grant {
        device: DeviceId,
        grantee: AccountId,
    },
    Manifest {
        manufacturer: AccountId,
        model: Model,
        version: FirmwareVersion,
    },
    Validators,
    /// A DAG payment applied: (payer, nonce) is spent.
    DagPayment {
        from: AccountId,
        nonce: u64,
    },
    /// A primary's equivocation at (view, height), proven on chain.
    Equivocation {
        primary: AccountId,
        view: u64,
        height: Height,
    },
}

impl StateKey {
    /// The tree key: SHA-256 of the key's encoding.
    pub fn key_hash(&self) -> KeyHash {
        KeyHash(Hash::digest(&encode(self)).0)
    }
}

/// An account's balance and next nonce.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub key: PublicKey,
    pub kind: DeviceKind,
    pub model: Model,
    /// The gateway that registered it.
    pub registrar: AccountId,
    pub owner: Option<AccountId>,
    pub registered_at: Height,
}

/// A grant of rights on a device.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct GrantRecord {
    pub rights: Rights,
    pub expires_at: TimestampMs,
    pub granted_at: Height,
}

/// A published firmware manifest.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub image_hash: Hash,
    pub image_size: u64,
    pub published_at: Height,
}

impl ManifestRecord {
    pub fn manifest(&self, model: &Model, version: FirmwareVersion) -> FirmwareManifest {
        FirmwareManifest {
            model: model.clone(),
            version,
            image_hash: self.image_hash,
            image_size: self.image_size,
        }
    }
}

/// The active validator set (signs blocks now) and the pending one (changes
/// accumulate here and become active at the next epoch boundary).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ValidatorSets {
    pub active: ValidatorSet,
    pub pending: ValidatorSet,
}

/// What an entry holds. The variant always matches the key's.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateValue {
    Account(Account),
    Device(DeviceRecord),
    Grant(GrantRecord),
    Manifest(ManifestRecord),
    Validators(ValidatorSets),
    DagPayment(DagPaymentRecord),
    Equivocation(EquivocationRecord),
}

/// An equivocation on chain: the two header hashes the primary signed for
/// one slot, who reported it and at which height.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct EquivocationRecord {
    pub first: Hash,
    pub second: Hash,
    pub reporter: AccountId,
    pub recorded_at: Height,
}

/// The DAG payment that spent a (payer, nonce), and the height of the
/// block whose anchor applied it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct DagPaymentRecord {
    pub tx: Hash,
    pub height: Height,
}

/// Why the state could not be updated, proven or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the Merkle tree failed: {reason}")]
    Tree { reason: String },
    #[error("a stored {what} does not decode: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("the stored state's root {computed} is not the expected {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    #[error("changes of tree version {found} do not follow the state, whose next is {expected}")]
    NotNext { expected: Version, found: Version },
}

fn tree_error(err: anyhow::Error) -> StateError {
    StateError::Tree {
        reason: format!("{err:#}"),
    }
}

/// The changes of one block, ready to apply and to persist.
#[derive(Clone, Debug)]
pub struct StateChanges {
    version: Version,
    /// Every written key with its new value; `None` deletes.
    pub writes: Vec<(StateKey, Option<StateValue>)>,
    pub root: Hash,
    batch: TreeUpdateBatch,
}

/// [`StateChanges`] as the rows a store writes: every key and value in its
/// canonical encoding. The store needs to understand none of it.
#[derive(Clone, Debug, Default)]
pub struct StateRows {
    pub upserts: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
}

impl StateChanges {
    pub fn rows(&self) -> StateRows {
        let mut rows = StateRows::default();
        for (key, value) in &self.writes {
            match value {
                Some(value) => rows.upserts.push((encode(key), encode(value))),
                None => rows.deletes.push(encode(key)),
            }
        }
        rows
    }
}

/// The entries of a state without its Merkle tree: what a reader that needs
/// no proofs keeps (the gateway's API), updated with each block's writes.
#[derive(Clone, Debug, Default)]
pub struct Entries(BTreeMap<StateKey, StateValue>);

impl Entries {
    pub fn get(&self, key: &StateKey) -> Option<&StateValue> {
        self.0.get(key)
    }

    pub fn range_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> impl Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a {
        self.0.range(from.clone()..)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies a committed block's writes.
    pub fn apply(&mut self, writes: &[(StateKey, Option<StateValue>)]) {
        for (key, value) in writes {
            match value {
                Some(value) => self.0.insert(key.clone(), value.clone()),
                None => self.0.remove(key),
            };
        }
    }
}

/// The authenticated state.
#[derive(Clone, Default)]
pub struct State {
    entries: BTreeMap<StateKey, StateValue>,
    nodes: NodeStore,
    version: Option<Version>,
    root: Hash,
}

impl State {
    pub fn get(&self, key: &StateKey) -> Option<&StateValue> {
        self.entries.get(key)
    }

    /// Entries in key order from `from` (inclusive) while `keep` holds.
    pub fn range_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> impl Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a {
        self.entries.range(from.clone()..)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A copy of the entries, without the tree.
    pub fn entries(&self) -> Entries {
        Entries(self.entries.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The root the latest applied version committed to.
    pub fn root(&self) -> Hash {
        self.root
    }

    fn next_version(&self) -> Version {
        self.version.map_or(0, |v| v + 1)
    }

    fn tree(&self) -> JellyfishMerkleTree<'_, NodeStore, TreeHasher> {
        JellyfishMerkleTree::new(&self.nodes)
    }

    /// Computes the changes `writes` make, without applying them.
    pub fn prepare(
        &self,
        writes: BTreeMap<StateKey, Option<StateValue>>,
    ) -> Result<StateChanges, StateError> {
        prepare_by(&Overlay::new(self, Vec::new())?, writes, TreePath::Batch)
    }

    /// Applies changes made by [`State::prepare`] on this very state.
    pub fn apply(&mut self, changes: &StateChanges) {
        self.nodes.apply(&changes.batch);
        for (key, value) in &changes.writes {
            match value {
                Some(value) => self.entries.insert(key.clone(), value.clone()),
                None => self.entries.remove(key),
            };
        }
        self.version = Some(changes.version);
        self.root = changes.root;
    }

    /// A proof of `key`'s current value, or of its absence.
    pub fn prove(&self, key: &StateKey) -> Result<StateProof, StateError> {
        let version = self.version.ok_or_else(|| StateError::Tree {
            reason: "the state has no version yet".into(),
        })?;
        let (_, proof) = self
            .tree()
            .get_with_proof(key.key_hash(), version)
            .map_err(tree_error)?;
        Ok(StateProof {
            key: key.clone(),
            value: self.entries.get(key).cloned(),
            proof,
        })
    }

    /// Rebuilds the state from stored entries (as [`StateRows`] wrote them)
    /// and checks it against the root it must have.
    pub fn restore(
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        expected_root: Hash,
    ) -> Result<State, StateError> {
        let corrupt = |what| move |source| StateError::Corrupt { what, source };
        let mut writes = BTreeMap::new();
        for (key, value) in entries {
            let key: StateKey = decode(&key).map_err(corrupt("state key"))?;
            let value: StateValue = decode(&value).map_err(corrupt("state value"))?;
            writes.insert(key, Some(value));
        }
        let mut state = State::default();
        let changes = state.prepare(writes)?;
        state.apply(&changes);
        if state.root != expected_root {
            return Err(StateError::RootMismatch {
                computed: state.root,
                expected: expected_root,
            });
        }
        Ok(state)
    }
}

/// The changes `writes` make on top of `over`.
fn prepare_by(
    over: &Overlay<'_>,
    writes: BTreeMap<StateKey, Option<StateValue>>,
    path: TreePath,
) -> Result<StateChanges, StateError> {
    let version = over.next_version();
    let tree_writes: Vec<(KeyHash, Option<Vec<u8>>)> = writes
        .iter()
        .map(|(key, value)| (key.key_hash(), value.as_ref().map(encode)))
        .collect();
    let (root, batch) = put_tree_writes(over, tree_writes, version, path)?;
    Ok(StateChanges {
        version,
        writes: writes.into_iter().collect(),
        root: Hash(root.0),
        batch,
    })
}

/// One version of the tree from `writes`.
///
/// jmt's per-key `put_value_set` walks and rehashes the root-to-leaf
/// path once per key, so a block touching k keys hashes the upper nodes
/// k times; its `batch_put_value_sets` sorts the keys and rebuilds each
/// touched node once. The batch path takes no deletions, so a write set
/// with one goes the per-key way. Both build the same tree (its shape is
/// a function of its keys alone), which
/// `tests::both_tree_paths_give_the_same_roots_and_proofs` checks.
fn put_tree_writes(
    over: &Overlay<'_>,
    writes: Vec<(KeyHash, Option<Vec<u8>>)>,
    version: Version,
    path: TreePath,
) -> Result<(RootHash, TreeUpdateBatch), StateError> {
    let tree: JellyfishMerkleTree<'_, Overlay<'_>, TreeHasher> = JellyfishMerkleTree::new(over);
    if path == TreePath::PerKey
        || writes.is_empty()
        || writes.iter().any(|(_, value)| value.is_none())
    {
        return tree.put_value_set(writes, version).map_err(tree_error);
    }
    let inserts: Vec<(KeyHash, Vec<u8>)> = writes
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect();
    let (mut roots, batch) = tree
        .batch_put_value_sets(vec![inserts], None, version)
        .map_err(tree_error)?;
    let root = roots.pop().ok_or_else(|| StateError::Tree {
        reason: "the tree returned no root for the version".into(),
    })?;
    Ok((root, batch))
}

/// How [`State::prepare`] has jmt build a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TreePath {
    /// Each touched node rebuilt once, when the writes delete nothing.
    Batch,
    /// Key by key: the reference the batch path is tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    PerKey,
}

/// Proof of one key's value (or absence) under a state root.
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct StateProof {
    pub key: StateKey,
    /// `None` claims the key is absent.
    pub value: Option<StateValue>,
    pub proof: SparseMerkleProof<TreeHasher>,
}

/// Why a state proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state proof for {key:?} does not verify against root {root}: {reason}")]
pub struct ProofError {
    pub key: StateKey,
    pub root: Hash,
    pub reason: String,
}

impl StateProof {
    /// Checks the claimed value (or absence) against `root` and nothing else.
    pub fn verify(&self, root: &Hash) -> Result<(), ProofError> {
        let value = self.value.as_ref().map(encode);
        self.proof
            .verify(RootHash(root.0), self.key.key_hash(), value)
            .map_err(|e| ProofError {
                key: self.key.clone(),
                root: *root,
                reason: format!("{e:#}"),
            })
    }

    /// The proof in the form a device's verifier reads
    /// (`itc_verify::wire::StateProof`): the key and value as their
    /// encodings, and the same sparse-Merkle proof — `jmt`'s Borsh layout is
    /// the verifier's, so it is carried over byte for byte.
    pub fn portable(&self) -> Vec<u8> {
        let proof = borsh::to_vec(&self.proof)
            .ok()
            .and_then(|bytes| borsh::from_slice::<itc_verify::smt::SmtProof>(&bytes).ok())
            .unwrap_or(itc_verify::smt::SmtProof {
                leaf: None,
                siblings: Vec::new(),
            });
        encode(&itc_verify::wire::StateProof {
            key: encode(&self.key),
            value: self.value.as_ref().map(encode),
            proof,
        })
    }

    /// The encoded size of the proof.
    pub fn encoded_len(&self) -> usize {
        encode(self).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn account(seed: u32) -> StateKey {
        let mut s = [0u8; 32];
        s[..4].copy_from_slice(&seed.to_le_bytes());
        StateKey::Account {
            account: Keypair::from_seed(s).public(),
        }
    }

    fn put(state: &mut State, writes: Vec<(StateKey, Option<StateValue>)>) {
        let changes = state.prepare(writes.into_iter().collect()).unwrap();
        state.apply(&changes);
    }

    fn balance(b: Amount) -> Option<StateValue> {
        Some(StateValue::Account(Account {
            balance: b,
            nonce: 0,
        }))
    }

    #[test]
    fn inclusion_and_exclusion_proofs() {
        let mut state = State::default();
        put(
            &mut state,
            (0..50).map(|i| (account(i), balance(i as u64))).collect(),
        );
        let root = state.root();
        for i in [0, 17, 49] {
            let proof = state.prove(&account(i)).unwrap();
            assert_eq!(proof.value, balance(i as u64));
            proof.verify(&root).unwrap();
        }
        let absent = state.prove(&account(1000)).unwrap();
        assert_eq!(absent.value, None);
        absent.verify(&root).unwrap();
        // Claiming a value for an absent key, or absence for a present key, fails.
        let mut lie = absent.clone();
        lie.value = balance(1);
        assert!(lie.verify(&root).is_err());
        let mut lie = state.prove(&account(3)).unwrap();
        lie.value = None;
        assert!(lie.verify(&root).is_err());
    }

    #[test]
    fn empty_versions_keep_the_root_and_one_root_node() {
        let mut state = State::default();
        put(&mut state, vec![(account(1), balance(1))]);
        let root = state.root();
        let nodes = state.nodes.nodes.len();
        put(&mut state, vec![]);
        put(&mut state, vec![]);
        assert_eq!(state.root(), root);
        assert_eq!(state.nodes.nodes.len(), nodes, "old roots are dropped");
        put(&mut state, vec![(account(2), balance(2))]);
        state
            .prove(&account(1))
            .unwrap()
            .verify(&state.root())
            .unwrap();
    }

    proptest::proptest! {
        /// The batch path builds the very tree the per-key path does:
        /// random versions of inserts, updates and deletes over a small key
        /// space give the same root, the same values and the same node
        /// count, and each tree's proofs verify against the other's root.
        #[test]
        fn both_tree_paths_give_the_same_roots_and_proofs(
            versions in proptest::collection::vec(
                (
                    proptest::collection::vec((0u32..300, 0u64..4), 0..60),
                    // Deletions in about a third of the versions.
                    proptest::option::weighted(0.3, proptest::collection::vec(0u32..300, 1..4)),
                ),
                1..8,
            )
        ) {
            let mut batch = State::default();
            let mut per_key = State::default();
            for (upserts, deletes) in versions {
                let mut writes: BTreeMap<StateKey, Option<StateValue>> = upserts
                    .into_iter()
                    .map(|(i, value)| (account(i), balance(value)))
                    .collect();
                for i in deletes.unwrap_or_default() {
                    writes.insert(account(i), None);
                }
                let a = prepare_by(&Overlay::new(&batch, Vec::new()).unwrap(), writes.clone(), TreePath::Batch).unwrap();
                let b = prepare_by(&Overlay::new(&per_key, Vec::new()).unwrap(), writes.clone(), TreePath::PerKey).unwrap();
                proptest::prop_assert_eq!(a.root, b.root);
                batch.apply(&a);
                per_key.apply(&b);
                proptest::prop_assert_eq!(&batch.entries, &per_key.entries);
                proptest::prop_assert_eq!(&batch.nodes.values, &per_key.nodes.values);
                proptest::prop_assert_eq!(batch.nodes.nodes.len(), per_key.nodes.nodes.len());
                for key in writes.keys().take(5) {
                    let proof = batch.prove(key).unwrap();
                    proptest::prop_assert_eq!(&proof.value, &per_key.get(key).cloned());
                    proptest::prop_assert!(proof.verify(&per_key.root()).is_ok());
                    proptest::prop_assert!(per_key.prove(key).unwrap().verify(&batch.root()).is_ok());
                }
            }
        }
    }

    #[test]
    fn deletes_and_restore_from_rows() {
        let mut state = State::default();
        let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for version in 0..5u64 {
            let mut writes: BTreeMap<StateKey, Option<StateValue>> = (0..20)
                .map(|i| (account(i + version as u32 * 7), balance(version)))
                .collect();
            if version > 0 {
                writes.insert(account(0), None);
            }
            let changes = state.prepare(writes).unwrap();
            let rows = changes.rows();
            for k in rows.deletes {
                entries.remove(&k);
            }
            entries.extend(rows.upserts);
            state.apply(&changes);
        }
        assert!(state.get(&account(0)).is_none());
        let restored = State::restore(entries.clone(), state.root()).unwrap();
        assert_eq!(restored.root(), state.root());
        assert_eq!(restored.entries, state.entries);
        // Proofs from the restored tree verify against the same root.
        restored
            .prove(&account(30))
            .unwrap()
            .verify(&state.root())
            .unwrap();
        // A wrong expected root is refused.
        assert!(matches!(
            State::restore(entries, Hash::ZERO),
            Err(StateError::RootMismatch { .. })
        ));
    }
}
