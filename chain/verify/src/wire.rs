//! What a device receives, decoded exactly as `itc-chain` encodes it: a
//! version byte, then Borsh (`itc_chain::codec`). Only the types a verifier
//! needs are mirrored, with the same bounds; decoding is strict (no trailing
//! bytes), so the bytes a device hashes are the bytes that were signed.
//! `chain/tests/verifier.rs` checks the mirrors against the real types.

use alloc::string::String;
use alloc::vec::Vec;

use borsh::BorshDeserialize;

use crate::smt::SmtProof;
use crate::ENCODING_VERSION;

/// Bounds, as `itc-chain` declares them.
pub const MAX_CHAIN_ID: usize = 32;
pub const MAX_VALIDATORS: usize = 128;
pub const MAX_ADDR: usize = 128;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("no bytes")]
    Empty,
    #[error("encoding version {found}; this verifier reads version {ENCODING_VERSION}")]
    UnknownVersion { found: u8 },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    #[error("{what} has {len} entries or bytes; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the validator set is empty or not strictly sorted by key")]
    BadSet,
}

/// Decodes a versioned encoding of `T`, refusing trailing bytes.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], what: &'static str) -> Result<T, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != ENCODING_VERSION {
        return Err(WireError::UnknownVersion { found: version });
    }
    borsh::from_slice(rest).map_err(|_| WireError::Malformed { what })
}

fn bound(what: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::TooLong { what, len, max });
    }
    Ok(())
}

/// A block header (`itc_chain::block::Header`).
#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
pub struct Header {
    pub chain_id: String,
    pub height: u64,
    pub prev_hash: [u8; 32],
    pub time_ms: u64,
    pub tx_root: [u8; 32],
    pub state_root: [u8; 32],
    pub dag_root: [u8; 32],
    pub validators_hash: [u8; 32],
    pub next_validators_hash: [u8; 32],
    pub proposer: [u8; 32],
}

/// A header with the hash of the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedHeader {
    pub header: Header,
    pub hash: [u8; 32],
}

impl HashedHeader {
    pub fn decode<B: crate::Backend>(bytes: &[u8]) -> Result<HashedHeader, WireError> {
        let header: Header = decode(bytes, "header")?;
        bound("chain id", header.chain_id.len(), MAX_CHAIN_ID)?;
        Ok(HashedHeader {
            header,
            hash: B::sha256(&[bytes]),
        })
    }
}

/// One commit vote (`itc_chain::block::CommitSig`).
#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
pub struct CommitSig {
    pub validator: [u8; 32],
    pub signature: [u8; 64],
}

/// A commit certificate (`itc_chain::block::CommitCertificate`).
#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
pub struct CommitCertificate {
    pub height: u64,
    pub header_hash: [u8; 32],
    pub signatures: Vec<CommitSig>,
}

impl CommitCertificate {
    pub fn decode(bytes: &[u8]) -> Result<CommitCertificate, WireError> {
        let cert: CommitCertificate = decode(bytes, "certificate")?;
        bound("certificate", cert.signatures.len(), MAX_VALIDATORS)?;
        Ok(cert)
    }

    /// The (signer, signature) pairs.
    pub fn votes(&self) -> impl Iterator<Item = (&[u8; 32], &[u8; 64])> {
        self.signatures.iter().map(|s| (&s.validator, &s.signature))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
struct Validator {
    key: [u8; 32],
    addr: String,
}

/// A validator set (`itc_chain::validators::ValidatorSet`): its keys, sorted,
/// and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    keys: Vec<[u8; 32]>,
    hash: [u8; 32],
}

impl ValidatorSet {
    pub fn decode<B: crate::Backend>(bytes: &[u8]) -> Result<ValidatorSet, WireError> {
        let validators: Vec<Validator> = decode(bytes, "validator set")?;
        bound("validator set", validators.len(), MAX_VALIDATORS)?;
        for v in &validators {
            bound("validator address", v.addr.len(), MAX_ADDR)?;
        }
        if validators.is_empty() || validators.windows(2).any(|w| w[0].key >= w[1].key) {
            return Err(WireError::BadSet);
        }
        Ok(ValidatorSet {
            keys: validators.into_iter().map(|v| v.key).collect(),
            hash: B::sha256(&[bytes]),
        })
    }

    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.binary_search(key).is_ok()
    }
}

/// A transaction inclusion proof (`itc_chain::merkle::InclusionProof`).
#[derive(Debug, Clone, PartialEq, Eq, BorshDeserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub leaf_count: u64,
    pub path: Vec<[u8; 32]>,
}

impl InclusionProof {
    pub fn decode(bytes: &[u8]) -> Result<InclusionProof, WireError> {
        let proof: InclusionProof = decode(bytes, "inclusion proof")?;
        bound("inclusion proof", proof.path.len(), crate::merkle::MAX_PATH)?;
        Ok(proof)
    }
}

/// A state proof in the form a device reads (made by
/// `itc_chain::state::StateProof::portable`): the entry's key and value as
/// their encodings, which the device decodes as far as it cares to (say,
/// the owner of its own record), and the sparse-Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, BorshDeserialize)]
pub struct StateProof {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub proof: SmtProof,
}

impl StateProof {
    pub fn decode(bytes: &[u8]) -> Result<StateProof, WireError> {
        let proof: StateProof = decode(bytes, "state proof")?;
        bound(
            "state proof",
            proof.proof.siblings.len(),
            crate::smt::MAX_SIBLINGS,
        )?;
        Ok(proof)
    }
}
