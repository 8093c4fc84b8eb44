//! Proof that a primary equivocated, small enough to put on chain.
//!
//! Castro and Liskov's primary signs ⟨PRE-PREPARE, v, n, d⟩ with the
//! request's digest d, and the request travels beside the signed part
//! (OSDI '99, §4.2). ITC does the same: a pre-prepare's signature covers
//! the chain, the view, the height and the block's header hash
//! ([`proposal_payload`], under [`Domain::Proposal`]); the header commits
//! to the transactions. So two signatures by one primary for one view and
//! height over different header hashes prove it lied, and the proof is two
//! hashes and two signatures — anyone who knows the validator set can check
//! it, and a ledger transaction can carry it
//! ([`crate::tx::TxBody::ReportEquivocation`]).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::encode;
use crate::crypto::{Domain, Hash, PublicKey, Signature};
use crate::tx::ChainId;
use crate::types::Height;
use crate::validators::ValidatorSet;

/// The bytes a primary signs to assign the block with header hash `digest`
/// to `height` in `view` (under [`Domain::Proposal`]).
pub fn proposal_payload(chain: &ChainId, view: u64, height: Height, digest: &Hash) -> Vec<u8> {
    encode(&(chain, view, height, digest))
}

/// One signed assignment: a header hash and the primary's signature over
/// [`proposal_payload`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SignedDigest {
    pub digest: Hash,
    pub signature: Signature,
}

/// Two assignments of different blocks to one view and height, both signed
/// by that view's primary.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EquivocationProof {
    pub primary: PublicKey,
    pub view: u64,
    pub height: Height,
    pub first: SignedDigest,
    pub second: SignedDigest,
}

/// Why an equivocation proof proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("{accused} is not the primary of view {view} in the active validator set")]
    NotThePrimary { accused: PublicKey, view: u64 },
    #[error("both assignments name the same block {digest}")]
    SameBlock { digest: Hash },
    #[error("the signature over block {digest} does not verify")]
    BadSignature { digest: Hash },
}

impl EquivocationProof {
    /// Checks the proof against `set`, the validator set of its view: the
    /// accused is the view's primary (§4.2: primary = v mod |R|), the two
    /// digests differ and the accused signed both.
    pub fn verify(&self, chain: &ChainId, set: &ValidatorSet) -> Result<(), EvidenceError> {
        if set.primary(self.view).key != self.primary {
            return Err(EvidenceError::NotThePrimary {
                accused: self.primary,
                view: self.view,
            });
        }
        if self.first.digest == self.second.digest {
            return Err(EvidenceError::SameBlock {
                digest: self.first.digest,
            });
        }
        for signed in [&self.first, &self.second] {
            let payload = proposal_payload(chain, self.view, self.height, &signed.digest);
            self.primary
                .verify(Domain::Proposal, &payload, &signed.signature)
                .map_err(|_| EvidenceError::BadSignature {
                    digest: signed.digest,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::validators::Validator;

    fn setup() -> (ChainId, Vec<Keypair>, ValidatorSet) {
        let chain = ChainId::new("evidence-test").expect("id");
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    key: k.public(),
                    addr: crate::codec::Text::new("127.0.0.1:1").expect("addr"),
                })
                .collect(),
        )
        .expect("set");
        (chain, keys, set)
    }

    fn signed(key: &Keypair, chain: &ChainId, view: u64, height: Height, d: u8) -> SignedDigest {
        let digest = Hash::digest(&[d]);
        let payload = proposal_payload(chain, view, height, &digest);
        SignedDigest {
            digest,
            signature: key.sign(Domain::Proposal, &payload),
        }
    }

    #[test]
    fn two_signed_blocks_for_one_slot_prove_equivocation_and_nothing_else_does() {
        let (chain, keys, set) = setup();
        let view = 5;
        let primary = keys
            .iter()
            .find(|k| k.public() == set.primary(view).key)
            .expect("primary");
        let other = keys
            .iter()
            .find(|k| k.public() != primary.public())
            .expect("other");
        let proof = EquivocationProof {
            primary: primary.public(),
            view,
            height: 9,
            first: signed(primary, &chain, view, 9, 1),
            second: signed(primary, &chain, view, 9, 2),
        };
        assert_eq!(proof.verify(&chain, &set), Ok(()));

        let same = EquivocationProof {
            second: proof.first,
            ..proof.clone()
        };
        assert!(matches!(
            same.verify(&chain, &set),
            Err(EvidenceError::SameBlock { .. })
        ));
        // Signed for another height: the second signature is not for this slot.
        let moved = EquivocationProof {
            second: signed(primary, &chain, view, 10, 2),
            ..proof.clone()
        };
        assert!(matches!(
            moved.verify(&chain, &set),
            Err(EvidenceError::BadSignature { .. })
        ));
        // Another validator's signatures accuse nobody.
        let framed = EquivocationProof {
            primary: other.public(),
            first: signed(other, &chain, view, 9, 1),
            second: signed(other, &chain, view, 9, 2),
            ..proof.clone()
        };
        assert!(matches!(
            framed.verify(&chain, &set),
            Err(EvidenceError::NotThePrimary { .. })
        ));
        // A proof from another chain.
        let elsewhere = ChainId::new("elsewhere").expect("id");
        assert!(matches!(
            proof.verify(&elsewhere, &set),
            Err(EvidenceError::BadSignature { .. })
        ));
    }
}
