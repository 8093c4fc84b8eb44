//! The commit-certificate rule: a block is final when a quorum of the
//! validator set it names signed its header hash — the PBFT COMMIT messages
//! of Castro & Liskov §4.2, made transferable by signing them.
//!
//! Every signature must be valid and from a distinct member; one bad
//! signature fails the certificate rather than being skipped, so a
//! certificate is either wholly right or rejected.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use crate::{Backend, Hex32, COMMIT_DOMAIN};

/// Why a set of commit signatures is not a quorum certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("{signer} is not in the validator set")]
    NotAMember { signer: Hex32 },
    #[error("{signer} signed twice")]
    Duplicate { signer: Hex32 },
    #[error("the signature of {signer} does not verify")]
    BadSignature { signer: Hex32 },
    #[error("{have} distinct validators signed; a quorum is {need}")]
    TooFew { have: usize, need: usize },
}

/// The quorum of a set of `n`: more than two thirds (`⌊2n/3⌋ + 1`), which is
/// PBFT's 2f+1 for n = 3f+1 (Castro & Liskov §3).
pub fn quorum(n: usize) -> usize {
    2 * n / 3 + 1
}

/// The most faulty members a set of `n` tolerates: `⌊(n-1)/3⌋`.
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// The exact bytes a validator signs to commit the header `header_hash`.
pub fn commit_message(header_hash: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(COMMIT_DOMAIN.len() + 32);
    message.extend_from_slice(COMMIT_DOMAIN);
    message.extend_from_slice(header_hash);
    message
}

/// Checks that `signatures` over `header_hash` come from at least `need`
/// distinct members (`is_member`), each valid. Returns the signers, so a
/// caller can count how many of another set vouched too.
pub fn check_commit<'a, B: Backend>(
    header_hash: &[u8; 32],
    is_member: impl Fn(&[u8; 32]) -> bool,
    need: usize,
    signatures: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8; 64])>,
) -> Result<BTreeSet<[u8; 32]>, QuorumError> {
    let message = commit_message(header_hash);
    let mut seen = BTreeSet::new();
    for (signer, signature) in signatures {
        if !is_member(signer) {
            return Err(QuorumError::NotAMember {
                signer: Hex32(*signer),
            });
        }
        if !seen.insert(*signer) {
            return Err(QuorumError::Duplicate {
                signer: Hex32(*signer),
            });
        }
        if !B::verify_ed25519(signer, &message, signature) {
            return Err(QuorumError::BadSignature {
                signer: Hex32(*signer),
            });
        }
    }
    if seen.len() < need {
        return Err(QuorumError::TooFew {
            have: seen.len(),
            need,
        });
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_sizes_follow_pbft() {
        // n = 3f+1 → 2f+1.
        assert_eq!((quorum(1), quorum(4), quorum(7), quorum(10)), (1, 3, 5, 7));
        assert_eq!((max_faulty(1), max_faulty(4), max_faulty(7)), (0, 1, 2));
        // Any two quorums of n overlap in more than f members.
        for n in 1..=128 {
            assert!(2 * quorum(n) > n + max_faulty(n), "n={n}");
        }
    }
}
