//! Binary Merkle trees over lists (a block's transactions, a DAG anchor's
//! tips), as Certificate Transparency defines them (RFC 6962 §2.1, with the
//! verification algorithm of RFC 9162 §2.1.3.2).
//!
//! Leaves and inner nodes are hashed under different prefixes (0x00, 0x01),
//! so an inner node can never pass for a leaf (the second-preimage attack on
//! naive Merkle trees), and the tree of n leaves has exactly one shape, so a
//! list has exactly one root.
//!
//! Verification lives in `itc_verify::merkle`, shared with the
//! microcontroller verifier.
//!
//! The state uses a different structure (a sparse Merkle tree keyed by hash,
//! see [`crate::state`]): lists are appended and proven by position, state is
//! updated and proven by key.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::BoundedVec;
use crate::crypto::{Hash, Host};

pub use itc_verify::merkle::{MerkleError, MAX_PATH};

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ item).
pub fn leaf_hash(item: &Hash) -> Hash {
    Hash(itc_verify::merkle::leaf_hash::<Host>(&item.0))
}

/// RFC 6962 inner node hash: SHA-256(0x01 ‖ left ‖ right).
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash(itc_verify::merkle::node_hash::<Host>(&left.0, &right.0))
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over already-hashed leaves.
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::digest(&[]),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The Merkle root over `items` (RFC 6962 MTH). The empty list's root is
/// SHA-256 of the empty string.
pub fn root(items: &[Hash]) -> Hash {
    let leaves: Vec<Hash> = items.iter().map(leaf_hash).collect();
    subtree_root(&leaves)
}

/// Proof that an item is at `index` in a list of `leaf_count` items.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub leaf_count: u64,
    /// Sibling hashes from the leaf up (RFC 6962 PATH).
    pub path: BoundedVec<Hash, MAX_PATH>,
}

/// The inclusion proof for `items[index]`, or `None` if out of range.
pub fn prove(items: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= items.len() {
        return None;
    }
    let leaves: Vec<Hash> = items.iter().map(leaf_hash).collect();
    let mut path = Vec::new();
    collect_path(index, &leaves, &mut path);
    path.reverse();
    Some(InclusionProof {
        index: index as u64,
        leaf_count: items.len() as u64,
        // A list held in memory has far fewer than 2^64 items.
        path: BoundedVec::new(path).ok()?,
    })
}

/// RFC 6962 PATH(m, D[n]), root-first (reversed by the caller).
fn collect_path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        out.push(subtree_root(&leaves[k..]));
        collect_path(m, &leaves[..k], out);
    } else {
        out.push(subtree_root(&leaves[..k]));
        collect_path(m - k, &leaves[k..], out);
    }
}

impl InclusionProof {
    /// Checks that `item` is in the list whose root is `expected_root`
    /// (RFC 9162 §2.1.3.2).
    pub fn verify(&self, item: &Hash, expected_root: &Hash) -> Result<(), MerkleError> {
        let path: Vec<[u8; 32]> = self.path.as_slice().iter().map(|h| h.0).collect();
        itc_verify::merkle::verify_inclusion::<Host>(
            &item.0,
            self.index,
            self.leaf_count,
            &path,
            &expected_root.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(n: usize) -> Vec<Hash> {
        (0..n as u32)
            .map(|i| Hash::digest(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_match_the_definition() {
        assert_eq!(
            root(&[]).to_string(),
            // SHA-256 of the empty string.
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let xs = items(3);
        let expected = node_hash(
            &node_hash(&leaf_hash(&xs[0]), &leaf_hash(&xs[1])),
            &leaf_hash(&xs[2]),
        );
        assert_eq!(root(&xs), expected);
    }

    #[test]
    fn every_position_proves_for_many_sizes() {
        for n in 1..=33 {
            let xs = items(n);
            let r = root(&xs);
            for (i, x) in xs.iter().enumerate() {
                let proof = prove(&xs, i).unwrap();
                assert_eq!(proof.verify(x, &r), Ok(()), "n={n} i={i}");
                // The wrong item, a wrong index or a wrong root fail.
                let other = Hash::digest(b"other");
                assert!(proof.verify(&other, &r).is_err());
                assert!(proof.verify(x, &other).is_err());
                if n > 1 {
                    let mut moved = proof.clone();
                    moved.index = ((i + 1) % n) as u64;
                    assert!(moved.verify(x, &r).is_err(), "n={n} i={i}");
                }
            }
            assert!(prove(&xs, n).is_none());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x17c_2026),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn a_flipped_bit_anywhere_in_the_path_fails(
            n in 2usize..200, pick in any::<prop::sample::Index>(),
            sib in any::<prop::sample::Index>(), bit in 0usize..256,
        ) {
            let xs = items(n);
            let r = root(&xs);
            let i = pick.index(n);
            let proof = prove(&xs, i).unwrap();
            let mut path = proof.path.clone().into_inner();
            let s = sib.index(path.len());
            path[s].0[bit / 8] ^= 1 << (bit % 8);
            let tampered = InclusionProof { path: BoundedVec::new(path).unwrap(), ..proof };
            prop_assert!(tampered.verify(&xs[i], &r).is_err());
        }
    }
}
