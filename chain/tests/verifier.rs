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

/// Proposes, commits and certifies the next block of `txs`.
fn commit_block(
    work: &Workload,
    ledger: &mut Ledger,
    txs: Vec<itc_chain::tx::SignedTx>,
) -> (itc_chain::block::Block, itc_chain::block::CommitCertificate) {
    let time = ledger.tip().time_ms + 1_000;
    let proposer = work.proposer(ledger).public();
    let proposal = ledger.propose(txs, time, proposer).unwrap();
    let block = proposal.executed.block.clone();
    ledger.commit(&proposal.executed).unwrap();
    let cert = work.certify(&block.header);
    (block, cert)
}

fn verifier(work: &Workload, genesis: &itc_chain::block::Header) -> Verifier<Software> {
    let set = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    Verifier::new(&encode(genesis), &encode(&set)).unwrap()
}

/// A device at the genesis skipping straight to the last header (a trust
/// period of an hour, at the header's own time).
fn skip_to_last(
    work: &Workload,
    genesis: &itc_chain::block::Header,
    headers: &itc_chain::testkit::CertifiedHeaders,
    header_set: Option<&ValidatorSet>,
) -> Verifier<Software> {
    let (last, last_cert) = headers.last().unwrap();
    let mut skipper = verifier(work, genesis);
    skipper
        .verify_skipping(
            &encode(last),
            &encode(last_cert),
            header_set.map(encode).as_deref(),
            last.time_ms,
            3_600_000,
        )
        .unwrap();
    skipper
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
    let skipper = skip_to_last(&work, &genesis, &headers, None);
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
    let (block, cert) = commit_block(&work, &mut ledger, txs);
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
        state.apply(&changes);
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

/// The records the Cortex-M4 probe (`chain/verify/mcu`) verifies: the
/// genesis header and set, a transaction id with its inclusion proof in
/// block 1, a state proof (a user's account) at the tip, then each block's
/// header and certificate. Each record is a little-endian u32 length and
/// the bytes.
fn mcu_fixture() -> Vec<u8> {
    const BLOCKS: usize = 8;
    let work = Workload::new(4, 6, 2026);
    let (mut ledger, genesis) = Ledger::genesis(&work.genesis).unwrap();
    let set = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    let mut certified = Vec::new();
    for height in 1..=BLOCKS {
        let txs = if height == 1 {
            work.transfers(&ledger, 16)
        } else {
            Vec::new()
        };
        certified.push(commit_block(&work, &mut ledger, txs));
    }
    let first = &certified[0].0;
    let tx_index = first.txs.len() / 2;
    let state = ledger
        .prove(&StateKey::Account {
            account: work.users[0].public(),
        })
        .unwrap();
    let mut records = vec![
        encode(&genesis.block.header),
        encode(&set),
        first.tx_hashes()[tx_index].0.to_vec(),
        encode(&first.prove_tx(tx_index).unwrap()),
        state.portable(),
    ];
    for (block, cert) in &certified {
        records.push(encode(&block.header));
        records.push(encode(cert));
    }
    let mut out = Vec::new();
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(&record);
    }
    out
}

/// The probe's fixture is what the chain core makes today: a change to an
/// encoding shows up here, not as a mysterious failure on the device. Set
/// `ITC_WRITE_FIXTURE=1` to rewrite it.
#[test]
fn the_mcu_fixture_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("verify/mcu/fixture.bin");
    let fixture = mcu_fixture();
    if std::env::var_os("ITC_WRITE_FIXTURE").is_some() {
        std::fs::write(&path, &fixture).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fixture,
        "{} is stale: rerun with ITC_WRITE_FIXTURE=1",
        path.display()
    );
}

/// A validator joins: the header at the epoch boundary announces the new
/// set, and the next one must be signed by it. The device follows with the
/// new set supplied, refuses it unsupplied, refuses the old set's
/// signatures, and can skip across the change from the genesis only when
/// enough of the old set vouches.
#[test]
fn follows_a_validator_set_change() {
    let work = Workload::new(4, 2, 10);
    let newcomer = Keypair::from_seed([42; 32]);
    let (genesis, headers) = work.certified_chain_adding(130, &newcomer).unwrap();
    let old = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    let boundary = &headers[99].0; // height 100
    assert_eq!(boundary.validators_hash, old.hash());
    assert_ne!(boundary.next_validators_hash, old.hash());
    let new = old
        .with(itc_chain::validators::Validator {
            key: newcomer.public(),
            addr: itc_chain::codec::Text::new("127.0.0.1:7999").unwrap(),
        })
        .unwrap();
    assert_eq!(boundary.next_validators_hash, new.hash());

    let mut device = verifier(&work, &genesis);
    for (header, cert) in &headers[..100] {
        device
            .verify_next(&encode(header), &encode(cert), None)
            .unwrap();
    }
    let (h101, c101) = &headers[100];
    // Unsupplied, or the old set offered: the header names another set.
    assert!(matches!(
        device.verify_next(&encode(h101), &encode(c101), None),
        Err(VerifyError::UnknownSet { .. })
    ));
    assert!(matches!(
        device.verify_next(&encode(h101), &encode(c101), Some(&encode(&old))),
        Err(VerifyError::UnknownSet { .. })
    ));
    // The old set's quorum (3 of the old 4) is not a quorum of the new 5.
    let by_old = work.certify(h101);
    assert_eq!(
        device.verify_next(&encode(h101), &encode(&by_old), Some(&encode(&new))),
        Err(VerifyError::Certificate(QuorumError::TooFew {
            have: 3,
            need: 4
        }))
    );
    device
        .verify_next(&encode(h101), &encode(c101), Some(&encode(&new)))
        .unwrap();
    assert_eq!(device.set().len(), 5);
    for (header, cert) in &headers[101..] {
        device
            .verify_next(&encode(header), &encode(cert), None)
            .unwrap();
    }

    // Skipping from the genesis to the last header: 3 of its 4 signers
    // are old validators, more than a third of the old set.
    let skipper = skip_to_last(&work, &genesis, &headers, Some(&new));
    assert_eq!(skipper.tip().hash, device.tip().hash);
}
