//! The light-client core: following the chain by its headers alone.
//!
//! A light client (a phone, a bulb) starts from a header it trusts — the
//! genesis, or a checkpoint it was given — together with the validator set
//! that header names. From there it accepts a header only with a commit
//! certificate from a quorum (2f+1 distinct members) of the right set:
//!
//! - **Sequential** ([`LightClient::verify_next`]): the next header must
//!   extend the tip (height + 1, `prev_hash` = the tip's hash) and be
//!   signed by the set the tip announced in `next_validators_hash`; when
//!   that differs from the current set, the new set must be supplied and
//!   hash to it. This is the Tendermint light client's sequential
//!   verification (Tendermint spec, "Light Client Verification",
//!   `VerifyAdjacent`).
//! - **Skipping** ([`LightClient::verify_skipping`]): a header many heights
//!   ahead is accepted when, besides its own set's quorum, validators of the
//!   trusted set holding more than one third of it signed it too — so at
//!   least one honest validator the client already trusts vouches for the
//!   jump — and the trusted header is younger than the trusting period
//!   (Tendermint spec, `VerifyNonAdjacent` with trust level 1/3). With
//!   f < n/3 faulty this cannot be forged by the faulty alone.
//!
//! Against any header it has verified, the client checks transaction
//! inclusion ([`verify_tx`]) and state (a device's owner, a grant, a
//! manifest, a balance: [`verify_state`]). Pure: time comes in as an
//! argument.

use crate::block::{CertificateError, CommitCertificate, Header};
use crate::crypto::Hash;
use crate::merkle::{InclusionProof, MerkleError};
use crate::state::{ProofError, StateProof};
use crate::tx::ChainId;
use crate::types::{Height, TimestampMs};
use crate::validators::ValidatorSet;

/// Why a header or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    #[error("the header is for chain {found:?}, not {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("expected height {expected}, got {found}")]
    NotNext { expected: Height, found: Height },
    #[error("height {found} is not after the trusted height {trusted}")]
    NotAhead { trusted: Height, found: Height },
    #[error("the header does not extend the trusted tip (prev_hash {found}, tip {expected})")]
    Fork { expected: Hash, found: Hash },
    #[error("the header is signed by set {found}, but the trusted tip announced {expected}")]
    UnexpectedSet { expected: Hash, found: Hash },
    #[error("the header's validator set {needed} was not supplied (or does not hash to it)")]
    UnknownSet { needed: Hash },
    #[error("the certificate is not valid: {0}")]
    Certificate(#[from] CertificateError),
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
    State(#[from] ProofError),
}

/// A light client's trusted state.
#[derive(Clone, Debug)]
pub struct LightClient {
    chain_id: ChainId,
    tip: Header,
    set: ValidatorSet,
}

impl LightClient {
    /// Trusts `header` (a genesis or a checkpoint obtained out of band) and
    /// the validator set it names.
    pub fn new(header: Header, set: ValidatorSet) -> Result<LightClient, LightError> {
        if header.validators_hash != set.hash() {
            return Err(LightError::BadTrustedSet);
        }
        Ok(LightClient {
            chain_id: header.chain_id.clone(),
            tip: header,
            set,
        })
    }

    pub fn tip(&self) -> &Header {
        &self.tip
    }

    pub fn set(&self) -> &ValidatorSet {
        &self.set
    }

    fn check_chain(&self, header: &Header) -> Result<(), LightError> {
        if header.chain_id != self.chain_id {
            return Err(LightError::WrongChain {
                expected: self.chain_id.as_str().into(),
                found: header.chain_id.as_str().into(),
            });
        }
        Ok(())
    }

    /// The set that signs `header`: the current one, or `supplied` if it
    /// is the one the header names.
    fn signing_set<'a>(
        &'a self,
        header: &Header,
        supplied: Option<&'a ValidatorSet>,
    ) -> Result<&'a ValidatorSet, LightError> {
        if header.validators_hash == self.set.hash() {
            return Ok(&self.set);
        }
        supplied
            .filter(|set| set.hash() == header.validators_hash)
            .ok_or(LightError::UnknownSet {
                needed: header.validators_hash,
            })
    }

    /// Accepts the header right after the tip.
    pub fn verify_next(
        &mut self,
        header: Header,
        certificate: &CommitCertificate,
        new_set: Option<&ValidatorSet>,
    ) -> Result<(), LightError> {
        self.check_chain(&header)?;
        if header.height != self.tip.height + 1 {
            return Err(LightError::NotNext {
                expected: self.tip.height + 1,
                found: header.height,
            });
        }
        let tip_hash = self.tip.hash();
        if header.prev_hash != tip_hash {
            return Err(LightError::Fork {
                expected: tip_hash,
                found: header.prev_hash,
            });
        }
        if header.validators_hash != self.tip.next_validators_hash {
            return Err(LightError::UnexpectedSet {
                expected: self.tip.next_validators_hash,
                found: header.validators_hash,
            });
        }
        let set = self.signing_set(&header, new_set)?.clone();
        certificate.verify(&header, &set)?;
        self.tip = header;
        self.set = set;
        Ok(())
    }

    /// Accepts a header further ahead, if more than a third of the trusted
    /// set signed it as well as a quorum of its own set, and the trusted
    /// tip is younger than `trusting_period_ms` at `now`.
    pub fn verify_skipping(
        &mut self,
        header: Header,
        certificate: &CommitCertificate,
        header_set: Option<&ValidatorSet>,
        now: TimestampMs,
        trusting_period_ms: u64,
    ) -> Result<(), LightError> {
        self.check_chain(&header)?;
        if header.height <= self.tip.height {
            return Err(LightError::NotAhead {
                trusted: self.tip.height,
                found: header.height,
            });
        }
        let age_ms = now.saturating_sub(self.tip.time_ms);
        if age_ms >= trusting_period_ms {
            return Err(LightError::TrustExpired {
                age_ms,
                period_ms: trusting_period_ms,
            });
        }
        let set = self.signing_set(&header, header_set)?.clone();
        certificate.verify(&header, &set)?;
        // Every signer is now a distinct, verified member of the header's
        // set; count those the client already trusts.
        let trusted_signers = certificate
            .signatures
            .as_slice()
            .iter()
            .filter(|sig| self.set.contains(&sig.validator))
            .count();
        let need = self.set.max_faulty() + 1;
        if trusted_signers < need {
            return Err(LightError::NotEnoughTrust {
                have: trusted_signers,
                need,
            });
        }
        self.tip = header;
        self.set = set;
        Ok(())
    }
}

/// Checks that transaction `id` is in the block `header` heads.
pub fn verify_tx(header: &Header, id: &Hash, proof: &InclusionProof) -> Result<(), LightError> {
    proof.verify(id, &header.tx_root)?;
    Ok(())
}

/// Checks a state proof (a value, or its absence) against `header`.
pub fn verify_state(header: &Header, proof: &StateProof) -> Result<(), LightError> {
    proof.verify(&header.state_root)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::CommitSig;
    use crate::crypto::Keypair;
    use crate::testkit::Workload;

    fn chain(work: &Workload, blocks: usize) -> (Header, Vec<(Header, CommitCertificate)>) {
        work.certified_chain(blocks).unwrap()
    }

    fn client(work: &Workload, genesis: &Header) -> LightClient {
        let set = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
        LightClient::new(genesis.clone(), set).unwrap()
    }

    #[test]
    fn follows_a_chain_header_by_header() {
        let work = Workload::new(4, 2, 1);
        let (genesis, headers) = chain(&work, 20);
        let mut light = client(&work, &genesis);
        for (header, cert) in &headers {
            light.verify_next(header.clone(), cert, None).unwrap();
        }
        assert_eq!(light.tip().height, 20);
    }

    #[test]
    fn refuses_gaps_forks_tampering_and_weak_certificates() {
        let work = Workload::new(4, 2, 2);
        let (genesis, headers) = chain(&work, 3);
        let mut light = client(&work, &genesis);
        let (h1, c1) = &headers[0];
        // A gap.
        assert!(matches!(
            light.verify_next(headers[1].0.clone(), &headers[1].1, None),
            Err(LightError::NotNext { .. })
        ));
        // A tampered header: its certificate no longer matches.
        let mut tampered = h1.clone();
        tampered.state_root = Hash::digest(b"mine now");
        assert!(matches!(
            light.verify_next(tampered, c1, None),
            Err(LightError::Certificate(
                CertificateError::WrongHeader { .. }
            ))
        ));
        // Too few signers: one short of a quorum.
        let mut weak = c1.clone();
        let sigs: Vec<CommitSig> = weak.signatures.as_slice()[..2].to_vec();
        weak = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &weak, None),
            Err(LightError::Certificate(CertificateError::TooFewSigners {
                have: 2,
                need: 3
            }))
        ));
        // A stranger among the signers.
        let stranger = Keypair::from_seed([99; 32]);
        let mut sigs: Vec<CommitSig> = c1.signatures.as_slice()[..2].to_vec();
        sigs.push(CommitSig::sign(&stranger, &h1.hash()));
        let forged = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &forged, None),
            Err(LightError::Certificate(
                CertificateError::NotAValidator { .. }
            ))
        ));
        // A duplicate signer counted twice.
        let mut sigs: Vec<CommitSig> = c1.signatures.as_slice()[..2].to_vec();
        sigs.push(sigs[0].clone());
        let doubled = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &doubled, None),
            Err(LightError::Certificate(
                CertificateError::DuplicateSigner { .. }
            ))
        ));
        // A fork: a correctly certified header on another parent.
        let mut fork = h1.clone();
        fork.prev_hash = Hash::digest(b"another chain");
        let fork_cert = work.certify(&fork);
        assert!(matches!(
            light.verify_next(fork, &fork_cert, None),
            Err(LightError::Fork { .. })
        ));
        // Nothing refused moved the client.
        assert_eq!(light.tip().height, 0);
        light.verify_next(h1.clone(), c1, None).unwrap();
    }

    #[test]
    fn skips_ahead_only_with_enough_trusted_signers() {
        let work = Workload::new(4, 2, 3);
        let (genesis, headers) = chain(&work, 50);
        let (far, far_cert) = &headers[49];
        let period = 3_600_000;
        let now = far.time_ms;
        let mut light = client(&work, &genesis);
        light
            .verify_skipping(far.clone(), far_cert, None, now, period)
            .unwrap();
        assert_eq!(light.tip().height, 50);

        // A stale trusted header cannot be skipped from.
        let mut stale = client(&work, &genesis);
        assert!(matches!(
            stale.verify_skipping(
                far.clone(),
                far_cert,
                None,
                genesis.time_ms + period,
                period
            ),
            Err(LightError::TrustExpired { .. })
        ));

        // A new set (four strangers) vouched for by nobody the client
        // trusts: refused, even with a full quorum of its own.
        let strangers: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed([200 + i; 32])).collect();
        let new_set = ValidatorSet::new(
            strangers
                .iter()
                .enumerate()
                .map(|(i, k)| crate::validators::Validator {
                    key: k.public(),
                    addr: crate::codec::Text::new(format!("10.0.0.{i}:7100")).unwrap(),
                })
                .collect(),
        )
        .unwrap();
        let mut takeover = far.clone();
        takeover.validators_hash = new_set.hash();
        let sigs = strangers
            .iter()
            .take(3)
            .map(|k| CommitSig::sign(k, &takeover.hash()))
            .collect();
        let cert = CommitCertificate::new(&takeover, sigs).unwrap();
        let mut fresh = client(&work, &genesis);
        assert!(matches!(
            fresh.verify_skipping(takeover.clone(), &cert, Some(&new_set), now, period),
            Err(LightError::NotEnoughTrust { have: 0, need: 2 })
        ));
        // Sequentially it is refused too: the trusted tip announced
        // another set.
        let mut next = headers[0].0.clone();
        next.validators_hash = new_set.hash();
        let cert = CommitCertificate::new(
            &next,
            strangers
                .iter()
                .take(3)
                .map(|k| CommitSig::sign(k, &next.hash()))
                .collect(),
        )
        .unwrap();
        assert!(matches!(
            fresh.verify_next(next, &cert, Some(&new_set)),
            Err(LightError::UnexpectedSet { .. })
        ));
    }
}
