//! Store benchmarks (figures in BENCHMARKS.md), over a growing chain of
//! blocks of 1,000 transfers among 10,000 accounts. Only store calls are
//! timed; building and certifying the next block is not.
//!
//! - `1000_transfers_durable`: the commit path, as a replica waits for it:
//!   header, certificate, transactions, changed state entries and device
//!   projection in one fsync'd sqlite transaction, with the background
//!   maintainer running as in production.
//! - `1000_transfers_durable_and_indexed`: the commit plus the maintainer's
//!   work for that block (lookup indexes and WAL checkpoint) run inline:
//!   the whole write cost per block, which bounds sustained throughput.
//! - `append_vote`: one replica vote record made durable, the write each
//!   PBFT phase waits for before its message goes out (three per round on
//!   the critical path).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use itc_chain::crypto::Hash;
use itc_chain::pbft::{Record, Vote};
use itc_chain::store::{open_ledger, ChainStore};
use itc_chain::testkit::Workload;
use itc_gateway::SqliteStore;

fn store_block(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("store_block");
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    for (name, inline) in [
        ("1000_transfers_durable", false),
        ("1000_transfers_durable_and_indexed", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.sqlite");
        let work = Workload::new(4, 10_000, 3);
        let mut store = rt
            .block_on(async {
                if inline {
                    SqliteStore::open_manual(&path).await
                } else {
                    SqliteStore::open(&path).await
                }
            })
            .unwrap();
        let mut ledger = rt.block_on(open_ledger(&mut store, &work.genesis)).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let txs = work.transfers(&ledger, 1_000);
                    let proposer = work.proposer(&ledger).public();
                    let executed = ledger
                        .propose(txs, ledger.tip().time_ms + 1, proposer)
                        .unwrap()
                        .executed;
                    let cert = work.certify(&executed.block.header);
                    let start = Instant::now();
                    rt.block_on(async {
                        store.commit_block(&executed, Some(&cert)).await.unwrap();
                        if inline {
                            store.maintain_now().await.unwrap();
                        }
                    });
                    total += start.elapsed();
                    ledger.commit(&executed).unwrap();
                }
                total
            })
        });
        eprintln!("{name}: chain height {} at the end", ledger.height());
    }
    group.finish();
}

fn append_vote(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(SqliteStore::open(&dir.path().join("votes.sqlite")))
        .unwrap();
    let mut height = 0;
    c.bench_function("append_vote", |b| {
        b.iter(|| {
            height += 1;
            let record = Record::Voted {
                vote: Vote::Prepare,
                view: 0,
                height,
                digest: Hash([7; 32]),
            };
            rt.block_on(store.append_records(&[record])).unwrap();
        })
    });
}

criterion_group!(benches, store_block, append_vote);
criterion_main!(benches);
