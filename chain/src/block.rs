//! Blocks, headers and commit certificates.
//!
//! A header commits to everything a light client may ask about: the previous
//! header (the hash chain), the transactions (an RFC 6962 root, so one
//! transaction can be proven), the state after the block (the Jellyfish root,
//! so one entry can be proven), the DAG anchors the block makes final, and the
//! validator set that signs this block and the one that signs the next.
//!
//! A block is final when a [`CommitCertificate`] holds signatures over its
//! header hash from a quorum of the validator set named in the header — the
//! PBFT COMMIT messages of Castro & Liskov §4.2, made transferable by signing
//! them.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{encode, BoundedVec};
use crate::crypto::{Domain, Hash, Host, Keypair, PublicKey, Signature};
use crate::merkle::{self, InclusionProof};
use crate::tx::{ChainId, SignedTx, TxBody};
use crate::types::{Height, TimestampMs};
use crate::validators::{ValidatorSet, MAX_VALIDATORS};
use itc_verify::quorum::QuorumError;

/// The most transactions one block may carry.
pub const MAX_BLOCK_TXS: usize = 10_000;

/// A block header.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: ChainId,
    pub height: Height,
    /// Hash of the previous header; zero for the genesis.
    pub prev_hash: Hash,
    pub time_ms: TimestampMs,
    /// RFC 6962 root over the transaction ids, in block order.
    pub tx_root: Hash,
    /// Jellyfish root of the state after this block.
    pub state_root: Hash,
    /// RFC 6962 root over the roots of this block's DAG anchors.
    pub dag_root: Hash,
    /// The set whose quorum signs this block.
    pub validators_hash: Hash,
    /// The set whose quorum signs the next block.
    pub next_validators_hash: Hash,
    pub proposer: PublicKey,
}

impl Header {
    pub fn hash(&self) -> Hash {
        Hash::digest(&encode(self))
    }
}

/// A header and its transactions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: BoundedVec<SignedTx, MAX_BLOCK_TXS>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn tx_hashes(&self) -> Vec<Hash> {
        self.txs.as_slice().iter().map(SignedTx::hash).collect()
    }

    /// The inclusion proof of the `index`-th transaction under `tx_root`.
    pub fn prove_tx(&self, index: usize) -> Option<InclusionProof> {
        merkle::prove(&self.tx_hashes(), index)
    }
}

/// The transactions root for `txs`.
pub fn tx_root(tx_hashes: &[Hash]) -> Hash {
    merkle::root(tx_hashes)
}

/// The DAG anchors among `txs`, in order.
pub fn anchors<'a>(
    txs: impl IntoIterator<Item = &'a SignedTx>,
) -> impl Iterator<Item = &'a crate::tx::DagAnchor> {
    txs.into_iter().filter_map(|signed| match &signed.tx.body {
        TxBody::AnchorDag(anchor) => Some(anchor),
        _ => None,
    })
}

/// The DAG root for the anchors among `txs`.
pub fn dag_root<'a>(txs: impl IntoIterator<Item = &'a SignedTx>) -> Hash {
    let roots: Vec<Hash> = anchors(txs).map(|anchor| anchor.root).collect();
    merkle::root(&roots)
}

/// One validator's commit vote on a header.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitSig {
    pub validator: PublicKey,
    /// Over the header hash, under [`Domain::Commit`].
    pub signature: Signature,
}

impl CommitSig {
    pub fn sign(key: &Keypair, header_hash: &Hash) -> CommitSig {
        CommitSig {
            validator: key.public(),
            signature: key.sign(Domain::Commit, header_hash.as_bytes()),
        }
    }
}

/// Proof that a quorum committed a header.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub header_hash: Hash,
    pub signatures: BoundedVec<CommitSig, MAX_VALIDATORS>,
}

/// Why a commit certificate is not valid for a header and a set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is for {found}, not for header {expected}")]
    WrongHeader { expected: Hash, found: Hash },
    #[error("the certificate is for height {found}, not {expected}")]
    WrongHeight { expected: Height, found: Height },
    #[error("the header names validator set {in_header}, but the certificate is checked against {given}")]
    WrongValidatorSet { in_header: Hash, given: Hash },
    #[error("{signer} is not in the validator set")]
    NotAValidator { signer: PublicKey },
    #[error("{signer} signed twice")]
    DuplicateSigner { signer: PublicKey },
    #[error("the signature of {signer} does not verify")]
    BadSignature { signer: PublicKey },
    #[error("{have} distinct validators signed; a quorum is {need}")]
    TooFewSigners { have: usize, need: usize },
}

impl CommitCertificate {
    /// Collects signatures into a certificate for `header`.
    pub fn new(header: &Header, signatures: Vec<CommitSig>) -> Result<Self, CertificateError> {
        let len = signatures.len();
        Ok(CommitCertificate {
            height: header.height,
            header_hash: header.hash(),
            signatures: BoundedVec::new(signatures).map_err(|_| {
                CertificateError::TooFewSigners {
                    have: len,
                    need: MAX_VALIDATORS,
                }
            })?,
        })
    }

    /// Checks that a quorum of `set` — which must be the set the header names
    /// — signed `header`. Every signature must be valid and from a distinct
    /// member; one bad signature fails the certificate rather than being
    /// skipped, so a certificate is either wholly right or rejected.
    pub fn verify(&self, header: &Header, set: &ValidatorSet) -> Result<(), CertificateError> {
        let header_hash = header.hash();
        if self.header_hash != header_hash {
            return Err(CertificateError::WrongHeader {
                expected: header_hash,
                found: self.header_hash,
            });
        }
        if self.height != header.height {
            return Err(CertificateError::WrongHeight {
                expected: header.height,
                found: self.height,
            });
        }
        let set_hash = set.hash();
        if set_hash != header.validators_hash {
            return Err(CertificateError::WrongValidatorSet {
                in_header: header.validators_hash,
                given: set_hash,
            });
        }
        itc_verify::quorum::check_commit::<Host>(
            &header_hash.0,
            |key| set.contains(&PublicKey(*key)),
            set.quorum(),
            self.signatures
                .as_slice()
                .iter()
                .map(|sig| (&sig.validator.0, &sig.signature.0)),
        )
        .map_err(|e| match e {
            QuorumError::NotAMember { signer } => CertificateError::NotAValidator {
                signer: PublicKey(signer.0),
            },
            QuorumError::Duplicate { signer } => CertificateError::DuplicateSigner {
                signer: PublicKey(signer.0),
            },
            QuorumError::BadSignature { signer } => CertificateError::BadSignature {
                signer: PublicKey(signer.0),
            },
            QuorumError::TooFew { have, need } => CertificateError::TooFewSigners { have, need },
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Text;
    use crate::validators::Validator;

    fn keys(n: u8) -> Vec<Keypair> {
        (1..=n).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set(keys: &[Keypair]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    key: k.public(),
                    addr: Text::new("127.0.0.1:1").unwrap(),
                })
                .collect(),
        )
        .unwrap()
    }

    fn header(set: &ValidatorSet) -> Header {
        Header {
            chain_id: ChainId::new("itc-test").unwrap(),
            height: 7,
            prev_hash: Hash::digest(b"prev"),
            time_ms: 1,
            tx_root: tx_root(&[]),
            state_root: Hash::digest(b"state"),
            dag_root: merkle::root(&[]),
            validators_hash: set.hash(),
            next_validators_hash: set.hash(),
            proposer: set.validators()[0].key,
        }
    }

    #[test]
    fn certificate_checks() {
        let ks = keys(4);
        let vs = set(&ks);
        let h = header(&vs);
        let hh = h.hash();
        let sigs: Vec<CommitSig> = ks.iter().map(|k| CommitSig::sign(k, &hh)).collect();

        let cert = CommitCertificate::new(&h, sigs[..3].to_vec()).unwrap();
        assert_eq!(cert.verify(&h, &vs), Ok(()));

        let few = CommitCertificate::new(&h, sigs[..2].to_vec()).unwrap();
        assert_eq!(
            few.verify(&h, &vs),
            Err(CertificateError::TooFewSigners { have: 2, need: 3 })
        );

        let dup =
            CommitCertificate::new(&h, vec![sigs[0].clone(), sigs[0].clone(), sigs[1].clone()])
                .unwrap();
        assert_eq!(
            dup.verify(&h, &vs),
            Err(CertificateError::DuplicateSigner {
                signer: ks[0].public()
            })
        );

        let outsider = Keypair::from_seed([99; 32]);
        let mut with_outsider = sigs[..2].to_vec();
        with_outsider.push(CommitSig::sign(&outsider, &hh));
        let cert = CommitCertificate::new(&h, with_outsider).unwrap();
        assert_eq!(
            cert.verify(&h, &vs),
            Err(CertificateError::NotAValidator {
                signer: outsider.public()
            })
        );

        // A signature over another header does not count.
        let mut other = h.clone();
        other.height = 8;
        let mut forged = sigs[..2].to_vec();
        forged.push(CommitSig::sign(&ks[2], &other.hash()));
        let cert = CommitCertificate::new(&h, forged).unwrap();
        assert_eq!(
            cert.verify(&h, &vs),
            Err(CertificateError::BadSignature {
                signer: ks[2].public()
            })
        );

        // A tampered header no longer matches its certificate.
        let good = CommitCertificate::new(&h, sigs[..3].to_vec()).unwrap();
        let mut tampered = h.clone();
        tampered.state_root = Hash::digest(b"evil");
        assert!(matches!(
            good.verify(&tampered, &vs),
            Err(CertificateError::WrongHeader { .. })
        ));

        // The right signatures checked against another set are refused.
        let other_set = set(&keys(5));
        assert!(matches!(
            good.verify(&h, &other_set),
            Err(CertificateError::WrongValidatorSet { .. })
        ));
    }
}
