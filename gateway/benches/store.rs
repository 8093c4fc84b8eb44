//! Store benchmark (figures in BENCHMARKS.md): the time to durably store a
//! certified block of 1,000 transfers in sqlite (WAL, synchronous = FULL):
//! header, certificate, transactions, the by-account index, changed state
//! entries and Jellyfish nodes, in one transaction. Only the store call is
//! timed; building the next block is not.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use itc_chain::store::{open_ledger, ChainStore};
use itc_chain::testkit::Workload;
use itc_gateway::SqliteStore;

fn store_block(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let work = Workload::new(4, 10_000, 3);
    let mut store = rt
        .block_on(SqliteStore::open(&dir.path().join("bench.sqlite")))
        .unwrap();
    let mut ledger = rt.block_on(open_ledger(&mut store, &work.genesis)).unwrap();
    let mut group = c.benchmark_group("store_block");
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("1000_transfers_durable", |b| {
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
                rt.block_on(store.commit_block(&executed, Some(&cert)))
                    .unwrap();
                total += start.elapsed();
                ledger.commit(executed).unwrap();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, store_block);
criterion_main!(benches);
