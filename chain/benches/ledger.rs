//! Ledger benchmarks (figures in BENCHMARKS.md):
//! - `execute_block/1000_transfers`: a replica re-executes a block of 1,000
//!   pre-signed transfers over 10,000 funded accounts: every Ed25519
//!   signature verified (in one batch), every balance and nonce updated, the Jellyfish root
//!   recomputed. One core.
//! - `execute_block/1000_transfers_preverified`: the same block at a replica
//!   that checked each signature when the transaction entered its mempool.
//! - `state_restore/100k_accounts`: rebuilding the tree from stored entries,
//!   what reopening a store costs.
//! - `ed25519_verify/rfc8032`: one signature check as consensus messages
//!   and certificates get it (`itc_chain::rfc8032`), against `ring`'s
//!   (`ed25519_verify/ring`), whose verdicts it reproduces;
//!   `zip215_single` and `zip215_batch_*` (per signature; `_warm_keys` with
//!   the keys already decoded in a `KeyCache`) the rule transaction
//!   signatures are checked under, alone and in a batch.
//! - `state_proof/100k_accounts/{prove,verify}`: a state proof of one
//!   account among 100,000; its encoded size is printed.
//!   `verify_device` is the same check as a device makes it: `itc-verify`
//!   on its pure-Rust backend, decoding the portable bytes first.
//! - `light_client/verify_next_1000_headers_n4{,_device}`: following 1,000
//!   certified headers, through `itc-chain` on `ring` and through
//!   `itc-verify` on bytes with the pure-Rust backend.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use itc_chain::codec::encode;
use itc_chain::ledger::Ledger;
use itc_chain::state::{State, StateKey};
use itc_chain::testkit::Workload;

fn execute_block(c: &mut Criterion) {
    let work = Workload::new(4, 10_000, 1);
    let (ledger, _) = Ledger::genesis(&work.genesis).unwrap();
    let txs = work.transfers(&ledger, 1_000);
    let proposer = work.proposer(&ledger).public();
    let block = ledger
        .propose(txs, ledger.tip().time_ms + 1, proposer)
        .unwrap()
        .executed
        .block;
    assert_eq!(block.txs.len(), 1_000);
    let mut group = c.benchmark_group("execute_block");
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(20);
    group.bench_function("1000_transfers", |b| {
        b.iter(|| ledger.execute(&block).unwrap())
    });
    // What a PBFT replica does with a block whose transactions it already
    // verified at admission to its mempool: every other check, no second
    // signature check.
    let ids: std::collections::HashSet<_> = block.tx_hashes().into_iter().collect();
    group.bench_function("1000_transfers_preverified", |b| {
        b.iter(|| {
            ledger
                .execute_verified(&block, &|id| ids.contains(id))
                .unwrap()
        })
    });
    group.bench_function("1000_transfers_and_commit", |b| {
        b.iter_batched(
            || ledger.clone(),
            |mut l| {
                let executed = l.execute(&block).unwrap();
                l.commit(&executed).unwrap();
                l
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// One Ed25519 verification, by each rule and implementation.
fn ed25519_verify(c: &mut Criterion) {
    let key = itc_chain::Keypair::from_seed([5; 32]);
    let message = [7u8; 120];
    let sig = key.sign(itc_chain::crypto::Domain::Transaction, &message);
    let signed =
        itc_chain::crypto::signing_message(itc_chain::crypto::Domain::Transaction, &message);
    c.bench_function("ed25519_verify/ring", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key.public().0)
                .verify(&signed, &sig.0)
                .unwrap()
        })
    });
    c.bench_function("ed25519_verify/rfc8032", |b| {
        b.iter(|| {
            key.public()
                .verify(itc_chain::crypto::Domain::Transaction, &message, &sig)
                .unwrap()
        })
    });
    c.bench_function("ed25519_verify/zip215_single", |b| {
        b.iter(|| {
            itc_chain::zip215::verify(
                &key.public(),
                itc_chain::crypto::Domain::Transaction,
                &message,
                &sig,
            )
            .unwrap()
        })
    });
    // Signatures checked in one batch, per signature: n signatures by k
    // keys (the batch folds each key's terms into one, so repeated keys
    // shrink the multiscalar multiplication).
    let mut group = c.benchmark_group("ed25519_verify");
    for (n, k) in [
        (1u32, 1u32),
        (128, 128),
        (256, 256),
        (1024, 1024),
        (1024, 200),
    ] {
        let signed: Vec<(
            itc_chain::crypto::PublicKey,
            Vec<u8>,
            itc_chain::crypto::Signature,
        )> = (0..n)
            .map(|i| {
                let mut seed = [9u8; 32];
                seed[..4].copy_from_slice(&(i % k).to_le_bytes());
                let key = itc_chain::Keypair::from_seed(seed);
                let message = i.to_le_bytes().repeat(30);
                let sig = key.sign(itc_chain::crypto::Domain::Transaction, &message);
                (key.public(), message, sig)
            })
            .collect();
        group.throughput(Throughput::Elements(u64::from(n)));
        let name = if n == k {
            format!("zip215_batch_{n}")
        } else {
            format!("zip215_batch_{n}_by_{k}_keys")
        };
        let items: Vec<itc_chain::zip215::Signed<'_>> = signed
            .iter()
            .map(|(key, payload, signature)| itc_chain::zip215::Signed {
                key: *key,
                domain: itc_chain::crypto::Domain::Transaction,
                payload,
                signature: *signature,
            })
            .collect();
        // Cold: every key decoded in the batch; warm: the keys are already
        // in the cache, as a returning sender's are at mempool admission.
        group.bench_function(name.clone(), |b| {
            b.iter(|| {
                let verdicts =
                    itc_chain::zip215::verify_all(&items, &mut itc_chain::zip215::KeyCache::new(0));
                assert!(verdicts.iter().all(|ok| *ok));
            })
        });
        let mut warm = itc_chain::zip215::KeyCache::new(8_192);
        itc_chain::zip215::verify_all(&items, &mut warm);
        group.bench_function(format!("{name}_warm_keys"), |b| {
            b.iter(|| {
                let verdicts = itc_chain::zip215::verify_all(&items, &mut warm);
                assert!(verdicts.iter().all(|ok| *ok));
            })
        });
    }
    group.finish();
}

fn state_proofs(c: &mut Criterion) {
    let work = Workload::new(4, 100_000, 2);
    let (ledger, _) = Ledger::genesis(&work.genesis).unwrap();
    let root = ledger.tip().state_root;
    let keys: Vec<StateKey> = work
        .users
        .iter()
        .step_by(997)
        .map(|u| StateKey::Account {
            account: u.public(),
        })
        .collect();
    let proofs: Vec<_> = keys.iter().map(|k| ledger.prove(k).unwrap()).collect();
    let sizes: Vec<usize> = proofs.iter().map(|p| p.encoded_len()).collect();
    eprintln!(
        "state proof size with 100,000 accounts: min {} B, max {} B, mean {} B over {} proofs",
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        sizes.iter().sum::<usize>() / sizes.len(),
        sizes.len()
    );
    let mut group = c.benchmark_group("state_proof/100k_accounts");
    let mut i = 0;
    group.bench_function("prove", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            ledger.prove(&keys[i]).unwrap()
        })
    });
    let mut j = 0;
    group.bench_function("verify", |b| {
        b.iter(|| {
            j = (j + 1) % proofs.len();
            proofs[j].verify(&root).unwrap()
        })
    });
    let portable: Vec<Vec<u8>> = proofs.iter().map(|p| p.portable()).collect();
    let mut k = 0;
    group.bench_function("verify_device", |b| {
        b.iter(|| {
            k = (k + 1) % portable.len();
            let p = itc_verify::wire::StateProof::decode(&portable[k]).unwrap();
            p.proof
                .verify::<itc_verify::Software>(&root.0, &p.key, p.value.as_deref())
                .unwrap()
        })
    });
    group.finish();

    // What reopening a store costs: rebuilding the tree from flat entries.
    let rows: Vec<(Vec<u8>, Vec<u8>)> = ledger
        .state()
        .range_from(&StateKey::Account {
            account: itc_chain::PublicKey([0; 32]),
        })
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    let mut group = c.benchmark_group("state_restore");
    group.sample_size(10);
    group.bench_function("100k_accounts", |b| {
        b.iter(|| State::restore(rows.clone(), root).unwrap())
    });
    group.finish();
}

/// A light client following 1,000 certified headers of a 4-validator
/// chain, one by one (each: hash chain, announced set, 3 signatures).
fn light_headers(c: &mut Criterion) {
    use itc_chain::light::LightClient;
    use itc_chain::validators::ValidatorSet;
    let work = Workload::new(4, 2, 5);
    let (genesis, headers) = work.certified_chain(1_000).unwrap();
    let set = ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    let (header, cert) = &headers[0];
    eprintln!(
        "light client: {} bytes per stored header (header {} + certificate {})",
        itc_chain::codec::encode(header).len() + itc_chain::codec::encode(cert).len(),
        itc_chain::codec::encode(header).len(),
        itc_chain::codec::encode(cert).len()
    );
    let mut group = c.benchmark_group("light_client");
    group.throughput(Throughput::Elements(headers.len() as u64));
    group.bench_function("verify_next_1000_headers_n4", |b| {
        b.iter_batched(
            || LightClient::new(genesis.clone(), set.clone()).unwrap(),
            |mut light| {
                for (header, cert) in &headers {
                    light.verify_next(header.clone(), cert, None).unwrap();
                }
                light
            },
            BatchSize::SmallInput,
        )
    });
    let genesis_bytes = encode(&genesis);
    let set_bytes = encode(&set);
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = headers
        .iter()
        .map(|(h, c)| (encode(h), encode(c)))
        .collect();
    group.bench_function("verify_next_1000_headers_n4_device", |b| {
        b.iter_batched(
            || {
                itc_verify::Verifier::<itc_verify::Software>::new(&genesis_bytes, &set_bytes)
                    .unwrap()
            },
            |mut device| {
                for (header, cert) in &encoded {
                    device.verify_next(header, cert, None).unwrap();
                }
                device
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    ed25519_verify,
    execute_block,
    state_proofs,
    light_headers
);
criterion_main!(benches);
