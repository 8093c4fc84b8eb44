//! The microcontroller verifier (`itc-verify` on its pure-Rust backend, the
//! build a bulb runs) against what the chain core makes: it must follow the
//! same chain, accept the same proofs and refuse the same tampering, byte
//! for byte, since it reads the encodings the gateway serves.

use itc_chain::block::CommitSig;
use itc_chain::codec::encode;
use itc_chain::crypto::Keypair;
use itc_chain::ledger::Ledger;
use itc_chain::state::{Account, State, StateKey, StateValue};
use itc_chain::testkit::Workload;
use itc_chain::validators::ValidatorSet;
use itc_verify::quorum::QuorumError;
use itc_verify::smt::SmtError;
use itc_verify::wire::WireError;
use itc_verify::{Software, Verifier, VerifyError};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn verifier(work: &Workload, genesis: &itc_chain::block::Header) -> Verifier<Software> {
    let set = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    Verifier::new(&encode(genesis), &encode(&set)).unwrap()
}

#[test]
fn follows_and_skips_the_chain_the_core_makes() {
    let work = Workload::new(4, 2, 7);
    let (genesis, headers) = work.certified_chain(120).unwrap();
    let mut device = verifier(&work, &genesis);
    for (header, cert) in &headers {
        device
            .verify_next(&encode(header), &encode(cert), None)
            .unwrap();
        assert_eq!(device.tip().hash, header.hash().0);
    }
    let (last, last_cert) = headers.last().unwrap();
    let mut skipper = verifier(&work, &genesis);
    skipper
        .verify_skipping(
            &encode(last),
            &encode(last_cert),
            None,
            last.time_ms,
            3_600_000,
        )
        .unwrap();
    assert_eq!(skipper.tip().header.height, 120);
}

#[test]
fn refuses_tampered_bytes_and_weak_certificates() {
    let work = Workload::new(4, 2, 8);
    let (genesis, headers) = work.certified_chain(1).unwrap();
    let (h1, c1) = &headers[0];
    let mut device = verifier(&work, &genesis);
    let header = encode(h1);
    let cert = encode(c1);

    // Any flipped byte of the header is refused: it no longer hashes to
    // what was signed, or it no longer decodes, or it names another chain.
    for i in 0..header.len() {
        let mut bad = header.clone();
        bad[i] ^= 0x01;
        assert!(device.verify_next(&bad, &cert, None).is_err(), "byte {i}");
    }
    // Trailing and missing bytes are refused before any signature check.
    let mut long = header.clone();
    long.push(0);
    assert_eq!(
        device.verify_next(&long, &cert, None),
        Err(VerifyError::Wire(WireError::Malformed { what: "header" }))
    );
    assert!(matches!(
        device.verify_next(&header[..header.len() - 1], &cert, None),
        Err(VerifyError::Wire(WireError::Malformed { .. }))
    ));
    // A signature with one bit flipped.
    let mut forged = c1.clone();
    let mut sigs: Vec<CommitSig> = forged.signatures.as_slice().to_vec();
    sigs[1].signature.0[10] ^= 0x80;
    forged = itc_chain::block::CommitCertificate::new(h1, sigs).unwrap();
    assert!(matches!(
        device.verify_next(&header, &encode(&forged), None),
        Err(VerifyError::Certificate(QuorumError::BadSignature { .. }))
    ));
    // A signer outside the set.
    let mut sigs: Vec<CommitSig> = c1.signatures.as_slice()[..2].to_vec();
    sigs.push(CommitSig::sign(&Keypair::from_seed([7; 32]), &h1.hash()));
    let stranger = itc_chain::block::CommitCertificate::new(h1, sigs).unwrap();
    assert!(matches!(
        device.verify_next(&header, &encode(&stranger), None),
        Err(VerifyError::Certificate(QuorumError::NotAMember { .. }))
    ));
    // Nothing refused moved it; the real header still verifies.
    assert_eq!(device.tip().header.height, 0);
    device.verify_next(&header, &cert, None).unwrap();
}

#[test]
fn proves_transactions_and_state_of_a_real_ledger() {
    let work = Workload::new(4, 6, 9);
    let (mut ledger, genesis) = Ledger::genesis(&work.genesis).unwrap();
    let mut device = verifier(&work, &genesis.block.header);
    let txs = work.transfers(&ledger, 12);
    let time = ledger.tip().time_ms + 1_000;
    let proposer = work.proposer(&ledger).public();
    let proposal = ledger.propose(txs, time, proposer).unwrap();
    let block = proposal.executed.block.clone();
    ledger.commit(proposal.executed).unwrap();
    let cert = work.certify(&block.header);
    device
        .verify_next(&encode(&block.header), &encode(&cert), None)
        .unwrap();

    let ids = block.tx_hashes();
    assert!(!ids.is_empty());
    for (i, id) in ids.iter().enumerate() {
        let proof = encode(&block.prove_tx(i).unwrap());
        device.verify_tx(&id.0, &proof).unwrap();
        let other = ids[(i + 1) % ids.len()];
        if other != *id {
            assert!(matches!(
                device.verify_tx(&other.0, &proof),
                Err(VerifyError::Inclusion(_))
            ));
        }
    }

    // A user's balance, proven to the device; and an absent account.
    let key = StateKey::Account {
        account: work.users[0].public(),
    };
    let proof = ledger.prove(&key).unwrap();
    let proven = device.verify_state(&proof.portable()).unwrap();
    assert_eq!(proven.key, encode(&key));
    assert_eq!(proven.value, proof.value.as_ref().map(encode));
    let absent = StateKey::Account {
        account: Keypair::from_seed([77; 32]).public(),
    };
    let proven = device
        .verify_state(&ledger.prove(&absent).unwrap().portable())
        .unwrap();
    assert_eq!(proven.value, None);

    // A lie about the balance is refused.
    let mut lie = proof.clone();
    lie.value = Some(StateValue::Account(Account {
        balance: u64::MAX,
        nonce: 0,
    }));
    assert_eq!(
        device.verify_state(&lie.portable()),
        Err(VerifyError::State(SmtError::WrongValue))
    );
}

fn account(i: u32) -> StateKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    StateKey::Account {
        account: Keypair::from_seed(seed).public(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_2026),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// `jmt` (the gateway's check) and `itc_verify::smt` (the device's)
    /// agree on every proof of a random state, honest or with one bit of
    /// its encoding flipped.
    #[test]
    fn the_device_check_agrees_with_jmt(
        present in prop::collection::btree_set(0u32..400, 1..120),
        probe in 0u32..400,
        flip in any::<prop::sample::Index>(),
    ) {
        let mut state = State::default();
        let writes: BTreeMap<StateKey, Option<StateValue>> = present
            .iter()
            .map(|&i| (account(i), Some(StateValue::Account(Account { balance: i as u64, nonce: 1 }))))
            .collect();
        let changes = state.prepare(writes).unwrap();
        state.apply(changes);
        let root = state.root();
        let proof = state.prove(&account(probe)).unwrap();
        prop_assert_eq!(proof.value.is_some(), present.contains(&probe));

        let check = |portable: &[u8]| -> Result<(), String> {
            let p = itc_verify::wire::StateProof::decode(portable).map_err(|e| e.to_string())?;
            p.proof.verify::<Software>(&root.0, &p.key, p.value.as_deref()).map_err(|e| e.to_string())
        };
        prop_assert!(proof.verify(&root).is_ok());
        prop_assert_eq!(check(&proof.portable()), Ok(()));

        // Flip one bit of the jmt proof's encoding; where it still decodes
        // as a jmt proof, both checks must give the same answer.
        let mut bytes = borsh::to_vec(&proof.proof).unwrap();
        let at = flip.index(bytes.len() * 8);
        bytes[at / 8] ^= 1 << (at % 8);
        if let Ok(tampered) = borsh::from_slice(&bytes) {
            let tampered = itc_chain::state::StateProof { proof: tampered, ..proof.clone() };
            prop_assert_eq!(tampered.verify(&root).is_ok(), check(&tampered.portable()).is_ok());
        }
    }
}
