//! Inclusion proofs in binary Merkle trees over lists, as Certificate
//! Transparency defines them (RFC 6962 §2.1: leaves hashed under 0x00, inner
//! nodes under 0x01), checked with the algorithm of RFC 9162 §2.1.3.2.
//!
//! `itc_chain::merkle` builds the trees and proofs; both it and a device
//! check them here.

use crate::{Backend, Hex32};

/// A path is at most one hash per level; 2^64 leaves is more than enough.
pub const MAX_PATH: usize = 64;

/// Why an inclusion proof failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("index {index} is outside a list of {leaf_count}")]
    IndexOutOfRange { index: u64, leaf_count: u64 },
    #[error("the proof's path has the wrong length")]
    WrongPathLength,
    #[error("the proof leads to sha256:{computed}, not the expected root sha256:{expected}")]
    RootMismatch { computed: Hex32, expected: Hex32 },
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ item).
pub fn leaf_hash<B: Backend>(item: &[u8; 32]) -> [u8; 32] {
    B::sha256(&[&[0x00], item])
}

/// RFC 6962 inner node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash<B: Backend>(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    B::sha256(&[&[0x01], left, right])
}

/// Checks that `item` is at `index` of a list of `leaf_count` items whose
/// root is `root`, given the sibling hashes from the leaf up (RFC 9162
/// §2.1.3.2).
pub fn verify_inclusion<B: Backend>(
    item: &[u8; 32],
    index: u64,
    leaf_count: u64,
    path: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<(), MerkleError> {
    if index >= leaf_count {
        return Err(MerkleError::IndexOutOfRange { index, leaf_count });
    }
    if path.len() > MAX_PATH {
        return Err(MerkleError::WrongPathLength);
    }
    let mut f_n = index;
    let mut s_n = leaf_count - 1;
    let mut r = leaf_hash::<B>(item);
    for p in path {
        if s_n == 0 {
            return Err(MerkleError::WrongPathLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash::<B>(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash::<B>(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(MerkleError::WrongPathLength);
    }
    if &r != root {
        return Err(MerkleError::RootMismatch {
            computed: Hex32(r),
            expected: Hex32(*root),
        });
    }
    Ok(())
}
