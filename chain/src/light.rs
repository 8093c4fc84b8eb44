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
//! The rules are checked once, in [`itc_verify::client`], which is also
//! what a microcontroller runs; this is its typed face.
//!
//! Against any header it has verified, the client checks transaction
//! inclusion ([`verify_tx`]) and state (a device's owner, a grant, a
//! manifest, a balance: [`verify_state`]). Pure: time comes in as an
//! argument.

use crate::block::{CommitCertificate, Header};
use crate::codec::encode;
use crate::crypto::{Hash, Host};
use crate::merkle::InclusionProof;
use crate::state::{ProofError, StateProof};
use crate::types::TimestampMs;
use crate::validators::ValidatorSet;

pub use itc_verify::VerifyError;

/// Why a header or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("the state proof does not hold: {0}")]
    State(#[from] ProofError),
}

/// A light client's trusted state: [`itc_verify::Verifier`] (the same
/// client a microcontroller runs, on `ring`), with the typed tip and set
/// it has verified.
#[derive(Clone, Debug)]
pub struct LightClient {
    verifier: itc_verify::Verifier<Host>,
    tip: Header,
    set: ValidatorSet,
}

impl LightClient {
    /// Trusts `header` (a genesis or a checkpoint obtained out of band) and
    /// the validator set it names.
    pub fn new(header: Header, set: ValidatorSet) -> Result<LightClient, LightError> {
        let verifier = itc_verify::Verifier::new(&encode(&header), &encode(&set))?;
        Ok(LightClient {
            verifier,
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

    /// Moves to `header`, signed by the current set or `new_set`.
    fn advance(&mut self, header: Header, new_set: Option<&ValidatorSet>) {
        if let Some(set) = new_set.filter(|set| set.hash() == header.validators_hash) {
            self.set = set.clone();
        }
        self.tip = header;
    }

    /// Accepts the header right after the tip.
    pub fn verify_next(
        &mut self,
        header: Header,
        certificate: &CommitCertificate,
        new_set: Option<&ValidatorSet>,
    ) -> Result<(), LightError> {
        self.verifier.verify_next(
            &encode(&header),
            &encode(certificate),
            new_set.map(encode).as_deref(),
        )?;
        self.advance(header, new_set);
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
        self.verifier.verify_skipping(
            &encode(&header),
            &encode(certificate),
            header_set.map(encode).as_deref(),
            now,
            trusting_period_ms,
        )?;
        self.advance(header, header_set);
        Ok(())
    }
}

/// Checks that transaction `id` is in the block `header` heads.
pub fn verify_tx(header: &Header, id: &Hash, proof: &InclusionProof) -> Result<(), LightError> {
    proof
        .verify(id, &header.tx_root)
        .map_err(VerifyError::Inclusion)?;
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
    use itc_verify::quorum::QuorumError;

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
            Err(LightError::Verify(VerifyError::NotNext { .. }))
        ));
        // A tampered header: its certificate no longer matches.
        let mut tampered = h1.clone();
        tampered.state_root = Hash::digest(b"mine now");
        assert!(matches!(
            light.verify_next(tampered, c1, None),
            Err(LightError::Verify(VerifyError::WrongHeader { .. }))
        ));
        // Too few signers: one short of a quorum.
        let mut weak = c1.clone();
        let sigs: Vec<CommitSig> = weak.signatures.as_slice()[..2].to_vec();
        weak = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &weak, None),
            Err(LightError::Verify(VerifyError::Certificate(
                QuorumError::TooFew { have: 2, need: 3 }
            )))
        ));
        // A stranger among the signers.
        let stranger = Keypair::from_seed([99; 32]);
        let mut sigs: Vec<CommitSig> = c1.signatures.as_slice()[..2].to_vec();
        sigs.push(CommitSig::sign(&stranger, &h1.hash()));
        let forged = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &forged, None),
            Err(LightError::Verify(VerifyError::Certificate(
                QuorumError::NotAMember { .. }
            )))
        ));
        // A duplicate signer counted twice.
        let mut sigs: Vec<CommitSig> = c1.signatures.as_slice()[..2].to_vec();
        sigs.push(sigs[0].clone());
        let doubled = CommitCertificate::new(h1, sigs).unwrap();
        assert!(matches!(
            light.verify_next(h1.clone(), &doubled, None),
            Err(LightError::Verify(VerifyError::Certificate(
                QuorumError::Duplicate { .. }
            )))
        ));
        // A fork: a correctly certified header on another parent.
        let mut fork = h1.clone();
        fork.prev_hash = Hash::digest(b"another chain");
        let fork_cert = work.certify(&fork);
        assert!(matches!(
            light.verify_next(fork, &fork_cert, None),
            Err(LightError::Verify(VerifyError::Fork { .. }))
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
            Err(LightError::Verify(VerifyError::TrustExpired { .. }))
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
            Err(LightError::Verify(VerifyError::NotEnoughTrust {
                have: 0,
                need: 2
            }))
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
            Err(LightError::Verify(VerifyError::UnexpectedSet { .. }))
        ));
    }
}
