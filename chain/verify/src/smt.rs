//! Proofs of state: one key's value, or its absence, under a header's state
//! root.
//!
//! The state is a Jellyfish Merkle tree (Penumbra's `jmt`, after Diem),
//! which proves a key as a path in a binary sparse Merkle tree keyed by
//! `SHA-256(key)`. `itc-chain` makes and checks these proofs with `jmt`;
//! `jmt` does not build without `std`, so the same check is written here
//! against the same wire layout — that of `jmt::proof::SparseMerkleProof`:
//! an optional leaf `(key hash, value hash)` and the siblings from the
//! bottom level up, each null, an inner node `(left, right)` or a leaf. The
//! hashing is `jmt`'s:
//!
//! - leaf = SHA-256("JMT::LeafNode" ‖ key hash ‖ value hash);
//! - inner = SHA-256("JMT::IntrnalNode" ‖ left ‖ right);
//! - an empty subtree is the constant "SPARSE_MERKLE_PLACEHOLDER_HASH__".
//!
//! `chain/tests/verifier.rs` checks that this and `jmt` agree on every proof
//! of a randomly built state, valid or tampered.

use alloc::vec::Vec;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{Backend, Hex32};

const LEAF_DOMAIN: &[u8] = b"JMT::LeafNode";
const INNER_DOMAIN: &[u8] = b"JMT::IntrnalNode";
const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// A tree of 256-bit keys has at most 256 levels.
pub const MAX_SIBLINGS: usize = 256;

/// A leaf as a proof carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Leaf {
    pub key_hash: [u8; 32],
    pub value_hash: [u8; 32],
}

impl Leaf {
    fn hash<B: Backend>(&self) -> [u8; 32] {
        B::sha256(&[LEAF_DOMAIN, &self.key_hash, &self.value_hash])
    }
}

/// A sibling on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Sibling {
    Empty,
    Inner { left: [u8; 32], right: [u8; 32] },
    Leaf(Leaf),
}

impl Sibling {
    fn hash<B: Backend>(&self) -> [u8; 32] {
        match self {
            Sibling::Empty => PLACEHOLDER,
            Sibling::Inner { left, right } => inner_hash::<B>(left, right),
            Sibling::Leaf(leaf) => leaf.hash::<B>(),
        }
    }
}

fn inner_hash<B: Backend>(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    B::sha256(&[INNER_DOMAIN, left, right])
}

/// A sparse-Merkle proof, byte-compatible with `jmt`'s.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SmtProof {
    pub leaf: Option<Leaf>,
    /// From the bottom level up.
    pub siblings: Vec<Sibling>,
}

/// Why a state proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtError {
    #[error("the proof has {count} siblings; a tree has at most {MAX_SIBLINGS} levels")]
    TooDeep { count: usize },
    #[error("the proof's leaf is for key sha256:{found}, not sha256:{expected}")]
    WrongKey { expected: Hex32, found: Hex32 },
    #[error("the value does not match the proof's leaf")]
    WrongValue,
    #[error("a value was claimed, but the proof shows the key absent")]
    Absent,
    #[error("absence was claimed, but the proof's leaf is the key itself")]
    Present,
    #[error("absence was claimed, but the proof's leaf is not where the key would be")]
    NotOnPath,
    #[error("the proof leads to sha256:{computed}, not the state root sha256:{expected}")]
    RootMismatch { computed: Hex32, expected: Hex32 },
}

/// Bit `index` of `key`, most significant bit of byte 0 first.
fn bit(key: &[u8; 32], index: usize) -> bool {
    key[index / 8] & (0x80 >> (index % 8)) != 0
}

fn common_prefix_bits(a: &[u8; 32], b: &[u8; 32]) -> usize {
    (0..256).take_while(|&i| bit(a, i) == bit(b, i)).count()
}

impl SmtProof {
    /// Checks that `key` (its encoding) holds `value` (its encoding), or is
    /// absent if `value` is `None`, under `root`.
    pub fn verify<B: Backend>(
        &self,
        root: &[u8; 32],
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SmtError> {
        let depth = self.siblings.len();
        if depth > MAX_SIBLINGS {
            return Err(SmtError::TooDeep { count: depth });
        }
        let key_hash = B::sha256(&[key]);
        match (value, &self.leaf) {
            (Some(value), Some(leaf)) => {
                if leaf.key_hash != key_hash {
                    return Err(SmtError::WrongKey {
                        expected: Hex32(key_hash),
                        found: Hex32(leaf.key_hash),
                    });
                }
                if leaf.value_hash != B::sha256(&[value]) {
                    return Err(SmtError::WrongValue);
                }
            }
            (Some(_), None) => return Err(SmtError::Absent),
            (None, Some(leaf)) => {
                // The only leaf in the subtree where the key would go is
                // another key's: absent.
                if leaf.key_hash == key_hash {
                    return Err(SmtError::Present);
                }
                if common_prefix_bits(&key_hash, &leaf.key_hash) < depth {
                    return Err(SmtError::NotOnPath);
                }
            }
            // The key's place is an empty subtree.
            (None, None) => {}
        }
        let mut hash = self.leaf.map_or(PLACEHOLDER, |leaf| leaf.hash::<B>());
        for (level, sibling) in self.siblings.iter().enumerate() {
            // The bottom sibling pairs with bit depth-1 of the key.
            let sibling_hash = sibling.hash::<B>();
            hash = if bit(&key_hash, depth - 1 - level) {
                inner_hash::<B>(&sibling_hash, &hash)
            } else {
                inner_hash::<B>(&hash, &sibling_hash)
            };
        }
        if &hash != root {
            return Err(SmtError::RootMismatch {
                computed: Hex32(hash),
                expected: Hex32(*root),
            });
        }
        Ok(())
    }
}
