//! The light client a device runs, on bytes.
//!
//! It starts from a header it trusts (the genesis, or a checkpoint it was
//! given) and the validator set that header names, and follows the chain by
//! the rules of the Tendermint light client (Tendermint spec, "Light Client
//! Verification"):
//!
//! - [`Verifier::verify_next`] (`VerifyAdjacent`): the next header extends
//!   the tip (height + 1, `prev_hash` = the tip's hash), is signed by the set
//!   the tip announced in `next_validators_hash` — supplied when it differs
//!   from the current one — and carries a quorum certificate of that set.
//! - [`Verifier::verify_skipping`] (`VerifyNonAdjacent`, trust level 1/3): a
//!   header further ahead is accepted when, besides its own set's quorum,
//!   members of the trusted set holding more than a third of it signed it,
//!   so at least one honest validator the client already trusts vouches for
//!   the jump, and the trusted header is younger than the trusting period.
//!
//! Against its tip it checks transaction inclusion and state proofs.
//! `itc_chain::light::LightClient` is this same client over typed values.

use alloc::string::String;
use core::marker::PhantomData;

use crate::merkle::{self, MerkleError};
use crate::quorum::{self, QuorumError};
use crate::smt::SmtError;
use crate::wire::{self, CommitCertificate, HashedHeader, ValidatorSet, WireError};
use crate::{Backend, Hex32};

/// Why a header or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot decode: {0}")]
    Wire(#[from] WireError),
    #[error("the header is for chain {found:?}, not {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("expected height {expected}, got {found}")]
    NotNext { expected: u64, found: u64 },
    #[error("height {found} is not after the trusted height {trusted}")]
    NotAhead { trusted: u64, found: u64 },
    #[error("the header does not extend the trusted tip (prev_hash sha256:{found}, tip sha256:{expected})")]
    Fork { expected: Hex32, found: Hex32 },
    #[error("the header is signed by set sha256:{found}, but the trusted tip announced sha256:{expected}")]
    UnexpectedSet { expected: Hex32, found: Hex32 },
    #[error(
        "the header's validator set sha256:{needed} was not supplied (or does not hash to it)"
    )]
    UnknownSet { needed: Hex32 },
    #[error("the certificate is for header sha256:{found}, not sha256:{expected}")]
    WrongHeader { expected: Hex32, found: Hex32 },
    #[error("the certificate is for height {found}, not {expected}")]
    WrongHeight { expected: u64, found: u64 },
    #[error("the certificate is not valid: {0}")]
    Certificate(#[from] QuorumError),
    #[error("only {have} of the trusted validators signed; more than a third ({need}) is needed to skip")]
    NotEnoughTrust { have: usize, need: usize },
    #[error(
        "the trusted header is {age_ms} ms old; skipping needs it younger than {period_ms} ms"
    )]
    TrustExpired { age_ms: u64, period_ms: u64 },
    #[error("the trusted header does not name the set it came with")]
    BadTrustedSet,
    #[error("the transaction is not in the header: {0}")]
    Inclusion(#[from] MerkleError),
    #[error("the state proof does not hold: {0}")]
    State(#[from] SmtError),
}

/// A light client's trusted state: the tip it has verified and the set
/// that signed it.
#[derive(Debug, Clone)]
pub struct Verifier<B> {
    tip: HashedHeader,
    set: ValidatorSet,
    backend: PhantomData<B>,
}

impl<B: Backend> Verifier<B> {
    /// Trusts `header` and `set` (encodings), obtained out of band.
    pub fn new(header: &[u8], set: &[u8]) -> Result<Self, VerifyError> {
        let tip = HashedHeader::decode::<B>(header)?;
        let set = ValidatorSet::decode::<B>(set)?;
        if tip.header.validators_hash != set.hash() {
            return Err(VerifyError::BadTrustedSet);
        }
        Ok(Verifier {
            tip,
            set,
            backend: PhantomData,
        })
    }

    pub fn tip(&self) -> &HashedHeader {
        &self.tip
    }

    pub fn set(&self) -> &ValidatorSet {
        &self.set
    }

    fn check_chain(&self, header: &wire::Header) -> Result<(), VerifyError> {
        if header.chain_id != self.tip.header.chain_id {
            return Err(VerifyError::WrongChain {
                expected: self.tip.header.chain_id.clone(),
                found: header.chain_id.clone(),
            });
        }
        Ok(())
    }

    /// The set that signs `header`: `None` for the current one, or the
    /// supplied one if it is the one the header names.
    fn new_signing_set(
        &self,
        header: &wire::Header,
        supplied: Option<&[u8]>,
    ) -> Result<Option<ValidatorSet>, VerifyError> {
        if header.validators_hash == self.set.hash() {
            return Ok(None);
        }
        let unknown = VerifyError::UnknownSet {
            needed: Hex32(header.validators_hash),
        };
        let set = ValidatorSet::decode::<B>(supplied.ok_or_else(|| unknown.clone())?)?;
        if set.hash() != header.validators_hash {
            return Err(unknown);
        }
        Ok(Some(set))
    }

    /// Moves to `header`, signed by `new_set` if there is one.
    fn advance(&mut self, header: HashedHeader, new_set: Option<ValidatorSet>) {
        self.tip = header;
        if let Some(set) = new_set {
            self.set = set;
        }
    }

    /// Checks that `cert` is a quorum certificate of `set` for `header`;
    /// returns the signers.
    fn certified(
        header: &HashedHeader,
        cert: &CommitCertificate,
        set: &ValidatorSet,
    ) -> Result<alloc::collections::BTreeSet<[u8; 32]>, VerifyError> {
        if cert.header_hash != header.hash {
            return Err(VerifyError::WrongHeader {
                expected: Hex32(header.hash),
                found: Hex32(cert.header_hash),
            });
        }
        if cert.height != header.header.height {
            return Err(VerifyError::WrongHeight {
                expected: header.header.height,
                found: cert.height,
            });
        }
        Ok(quorum::check_commit::<B>(
            &header.hash,
            |key| set.contains(key),
            quorum::quorum(set.len()),
            cert.votes(),
        )?)
    }

    /// Accepts the header right after the tip (`VerifyAdjacent`).
    pub fn verify_next(
        &mut self,
        header: &[u8],
        cert: &[u8],
        new_set: Option<&[u8]>,
    ) -> Result<(), VerifyError> {
        let header = HashedHeader::decode::<B>(header)?;
        let cert = CommitCertificate::decode(cert)?;
        self.check_chain(&header.header)?;
        let expected = self.tip.header.height.saturating_add(1);
        if header.header.height != expected {
            return Err(VerifyError::NotNext {
                expected,
                found: header.header.height,
            });
        }
        if header.header.prev_hash != self.tip.hash {
            return Err(VerifyError::Fork {
                expected: Hex32(self.tip.hash),
                found: Hex32(header.header.prev_hash),
            });
        }
        if header.header.validators_hash != self.tip.header.next_validators_hash {
            return Err(VerifyError::UnexpectedSet {
                expected: Hex32(self.tip.header.next_validators_hash),
                found: Hex32(header.header.validators_hash),
            });
        }
        let new_set = self.new_signing_set(&header.header, new_set)?;
        Self::certified(&header, &cert, new_set.as_ref().unwrap_or(&self.set))?;
        self.advance(header, new_set);
        Ok(())
    }

    /// Accepts a header further ahead (`VerifyNonAdjacent`, trust level
    /// 1/3), if the tip is younger than `trusting_period_ms` at `now_ms`.
    pub fn verify_skipping(
        &mut self,
        header: &[u8],
        cert: &[u8],
        header_set: Option<&[u8]>,
        now_ms: u64,
        trusting_period_ms: u64,
    ) -> Result<(), VerifyError> {
        let header = HashedHeader::decode::<B>(header)?;
        let cert = CommitCertificate::decode(cert)?;
        self.check_chain(&header.header)?;
        if header.header.height <= self.tip.header.height {
            return Err(VerifyError::NotAhead {
                trusted: self.tip.header.height,
                found: header.header.height,
            });
        }
        let age_ms = now_ms.saturating_sub(self.tip.header.time_ms);
        if age_ms >= trusting_period_ms {
            return Err(VerifyError::TrustExpired {
                age_ms,
                period_ms: trusting_period_ms,
            });
        }
        let new_set = self.new_signing_set(&header.header, header_set)?;
        let signers = Self::certified(&header, &cert, new_set.as_ref().unwrap_or(&self.set))?;
        // Every signer is now a distinct, verified member of the header's
        // set; count those the client already trusts.
        let have = signers.iter().filter(|k| self.set.contains(k)).count();
        let need = quorum::max_faulty(self.set.len()) + 1;
        if have < need {
            return Err(VerifyError::NotEnoughTrust { have, need });
        }
        self.advance(header, new_set);
        Ok(())
    }

    /// Checks that transaction `tx_id` is in the tip's block.
    pub fn verify_tx(&self, tx_id: &[u8; 32], proof: &[u8]) -> Result<(), VerifyError> {
        verify_tx::<B>(
            &self.tip.header,
            tx_id,
            &wire::InclusionProof::decode(proof)?,
        )
    }

    /// Checks a state proof against the tip; returns it, so the caller can
    /// read the proven entry.
    pub fn verify_state(&self, proof: &[u8]) -> Result<wire::StateProof, VerifyError> {
        let proof = wire::StateProof::decode(proof)?;
        verify_state::<B>(&self.tip.header, &proof)?;
        Ok(proof)
    }
}

/// Checks that transaction `tx_id` is in the block `header` heads.
pub fn verify_tx<B: Backend>(
    header: &wire::Header,
    tx_id: &[u8; 32],
    proof: &wire::InclusionProof,
) -> Result<(), VerifyError> {
    merkle::verify_inclusion::<B>(
        tx_id,
        proof.index,
        proof.leaf_count,
        &proof.path,
        &header.tx_root,
    )?;
    Ok(())
}

/// Checks a state proof against `header`'s state root.
pub fn verify_state<B: Backend>(
    header: &wire::Header,
    proof: &wire::StateProof,
) -> Result<(), VerifyError> {
    proof
        .proof
        .verify::<B>(&header.state_root, &proof.key, proof.value.as_deref())?;
    Ok(())
}
