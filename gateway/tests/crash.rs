//! Crash safety of the sqlite chain store.
//!
//! A child process (this test binary, re-run as the ignored `child_writer`
//! test) writes certified blocks into a sqlite store as fast as it can. The
//! parent kills it with SIGKILL at pseudo-random moments, 24 times. After
//! every kill the store must pass `PRAGMA integrity_check`, reopen at its last
//! committed height with the state root its tip header names, and agree with
//! a fresh in-memory replay of the same deterministic workload to that height.
//! Each restart resumes writing where the store left off.

use itc_chain::ledger::StateRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use itc_chain::ledger::{Executed, Ledger};
use itc_chain::store::{open_ledger, ChainStore};
use itc_chain::testkit::{SplitMix64, Workload};
use itc_gateway::SqliteStore;

const DB_ENV: &str = "ITC_CRASH_TEST_DB";
const KILLS: usize = 24;
const TXS_PER_BLOCK: usize = 20;

fn workload() -> Workload {
    Workload::new(4, 64, 0x1c0ffee)
}

/// The helper the parent runs and kills. Not a test on its own.
#[tokio::test]
#[ignore = "run by killed_writer_recovers as a child process"]
async fn child_writer() {
    let path = std::env::var(DB_ENV).expect("child_writer runs only under killed_writer_recovers");
    let work = workload();
    let mut store = SqliteStore::open(Path::new(&path)).await.unwrap();
    let mut ledger = open_ledger(&mut store, &work.genesis).await.unwrap();
    loop {
        let executed = next_block(&work, &ledger);
        let cert = work.certify(&executed.block.header);
        store.commit_block(&executed, Some(&cert)).await.unwrap();
        ledger.commit(&executed).unwrap();
    }
}

/// The workload's next block on top of `ledger`: the same on every replay.
fn next_block(work: &Workload, ledger: &Ledger) -> Executed {
    let txs = work.transfers(ledger, TXS_PER_BLOCK);
    let time = ledger.tip().time_ms + 1_000;
    let proposer = work.proposer(ledger).public();
    let proposal = ledger.propose(txs, time, proposer).unwrap();
    assert!(proposal.rejected.is_empty(), "{:?}", proposal.rejected);
    proposal.executed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chain.sqlite");
    let work = workload();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix64::new(20261124);
    let mut heights = Vec::new();
    let (mut replayed, _) = Ledger::genesis(&work.genesis).unwrap();

    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--ignored", "--nocapture"])
            .env(DB_ENV, &db)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Between 40 and 400 ms: some kills land while opening, most while
        // a block is being written.
        let delay = 40 + rng.below(360);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer exited on its own before kill {kill}"
        );
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let mut store = SqliteStore::open_manual(&db).await.unwrap();
        assert_eq!(store.integrity_check().await.unwrap(), "ok", "kill {kill}");
        // Reopening rebuilds the state and checks it against the tip header.
        let reopened = open_ledger(&mut store, &work.genesis).await.unwrap();
        let height = reopened.height();
        assert_eq!(store.tip_height().await.unwrap(), Some(height));
        // A fresh replay to the same height agrees.
        while replayed.height() < height {
            let executed = next_block(&work, &replayed);
            replayed.commit(&executed).unwrap();
        }
        assert_eq!(replayed.height(), height);
        assert_eq!(reopened.tip().hash(), replayed.tip().hash(), "kill {kill}");
        assert_eq!(reopened.state_root(), replayed.state_root(), "kill {kill}");
        // The stored tip block is whole: its body matches its header.
        if height > 0 {
            let (block, cert) = store.block(height).await.unwrap().unwrap();
            assert_eq!(block.header, *reopened.tip());
            assert_eq!(block.txs.len(), TXS_PER_BLOCK);
            let set = reopened.validator_sets().active;
            cert.unwrap().verify(&block.header, &set).unwrap();
            // Lookups find the tip's transactions whether the indexer was
            // killed mid-batch or not, and after it catches up.
            for round in 0..2 {
                for (index, tx) in block.txs.as_slice().iter().enumerate() {
                    let found = store.transaction(&tx.hash()).await.unwrap();
                    let found = found.unwrap_or_else(|| panic!("kill {kill} round {round}"));
                    assert_eq!((found.height, found.index as usize), (height, index));
                }
                store.maintain_now().await.unwrap();
            }
        }
        assert_eq!(store.integrity_check().await.unwrap(), "ok", "kill {kill}");
        store.close().await;
        heights.push(height);
    }
    eprintln!("heights after each kill: {heights:?}");
    assert!(
        heights.windows(2).all(|w| w[0] <= w[1]),
        "a committed height was lost: {heights:?}"
    );
    assert!(
        *heights.last().unwrap() >= KILLS as u64,
        "the writer made too little progress to test anything: {heights:?}"
    );
}
