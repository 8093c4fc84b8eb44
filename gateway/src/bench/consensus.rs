//! `itc-gateway bench consensus`: a cluster of gateway nodes in this
//! process, over real loopback TCP with Noise channels and real sqlite
//! stores (WAL; the replicas' records synced before their messages
//! leave, as in production), fed pre-signed transfers at an
//! offered rate (or as fast as they commit), measuring submit-to-commit
//! latency and committed throughput.
//!
//! Every replica verifies every signature itself (at admission to its own
//! mempool); nothing verified is shared between replicas. Transfers are
//! signed before the timed run. Each user's transfers go to one gateway, so
//! they reach the primary in nonce order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use itc_chain::codec::Text;
use itc_chain::crypto::Hash;
use itc_chain::pbft::Params;
use itc_chain::testkit::Workload;
use itc_chain::tx::{SignedTx, Tx, TxBody};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::node::{self, NodeConfig, NodeHandle, RoundStep, Step};
use crate::SqliteStore;

/// What the benchmark measured; printed as JSON on its last line.
#[derive(Debug, Serialize)]
pub struct ConsensusReport {
    /// What was run (its fields appear at the top level of the JSON).
    #[serde(flatten)]
    pub run: ConsensusRun,
    /// 0 when offering as fast as the cluster takes them.
    pub offered_tx_per_s: f64,
    pub submitted: usize,
    pub committed: usize,
    pub committed_tx_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub blocks: u64,
    pub mean_block_txs: f64,
    /// The highest view any node reached (0: no view change).
    pub max_view: u64,
    /// The process's CPU time during the timed run over its length: how
    /// many of the machine's cores the cluster kept busy (signing and
    /// setup excluded).
    pub cpu_cores: f64,
    /// That CPU time per committed block, summed over all the replicas.
    pub cpu_ms_per_block: f64,
    /// Where a round's time goes: for each step, the median over the
    /// rounds of the time from the primary's pre-prepare until a quorum
    /// (2f+1 replicas; 2f backups for `accepted`, as a quorum less the
    /// primary) reached it
    /// ([`node::Step`]).
    pub round_p50_ms: BTreeMap<Step, f64>,
}

const USERS: usize = 2_000;

/// What to run: the cluster's size, the load and the replicas' parameters
/// (`itc-gateway bench consensus`'s flags).
#[derive(Debug, Clone, Copy, Serialize, clap::Args)]
pub struct ConsensusRun {
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Offered transfers per second; 0 saturates (keeps a window of
    /// transfers in flight).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Blocks in flight (the replicas' pipeline depth); 1 waits for each
    /// block to commit before the next.
    #[arg(long, default_value_t = Params::default().pipeline_depth)]
    pub pipeline_depth: u64,
    /// Blocks between checkpoints (K); the log window is four times as
    /// long, as in the default. Must divide the epoch length (100).
    #[arg(long, default_value_t = Params::default().checkpoint_interval)]
    pub checkpoint_interval: u64,
    /// How long a primary may wait for a fuller block (ms).
    #[arg(long, default_value_t = Params::default().batch_delay_ms)]
    pub batch_delay_ms: u64,
    /// Most transfers per block.
    #[arg(long, default_value_t = Params::default().max_batch)]
    pub max_batch: usize,
}

/// Runs the consensus benchmark.
pub async fn consensus(run: ConsensusRun) -> anyhow::Result<ConsensusReport> {
    let ConsensusRun {
        nodes,
        seconds,
        rate,
        ..
    } = run;
    let dir = tempfile::tempdir()?;
    let mut work = Workload::new(nodes, USERS, 0xbe7c);
    let mut listeners = Vec::new();
    for v in work.genesis.validators.iter_mut() {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        v.addr = Text::new(listener.local_addr()?.to_string())?;
        listeners.push(listener);
    }
    let mut handles: Vec<NodeHandle> = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let key = work
            .validator_keypair(&work.genesis.validators[i].key)
            .ok_or_else(|| anyhow::anyhow!("no key"))?;
        let store = SqliteStore::open(&dir.path().join(format!("gw{i}.sqlite"))).await?;
        let params = Params {
            max_batch: run.max_batch,
            pipeline_depth: run.pipeline_depth,
            checkpoint_interval: run.checkpoint_interval,
            log_window: 4 * run.checkpoint_interval,
            batch_delay_ms: run.batch_delay_ms,
            ..Params::default()
        };
        let (handle, _task) = node::start(NodeConfig {
            key,
            genesis: work.genesis.clone(),
            store,
            listener,
            params,
            availability: None,
        })
        .await?;
        handles.push(handle);
    }

    // Pre-sign: enough for the offered rate, or for saturation at twice
    // the target.
    let total = if rate == 0 {
        20_000 * seconds as usize
    } else {
        (rate * seconds) as usize + rate as usize
    };
    eprintln!("signing {total} transfers…");
    let txs = sign_transfers(&work, total);

    let mut commits = handles[0].commits();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let recorders: Vec<_> = handles
        .iter()
        .map(|handle| tokio::spawn(record_steps(handle.rounds(), steps.clone())))
        .collect();
    let cpu_before = super::cpu_seconds();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut submitted_at: HashMap<Hash, Instant> = HashMap::with_capacity(total);
    let mut latencies: Vec<f64> = Vec::new();
    let mut committed = 0usize;
    let mut blocks = 0u64;
    let mut next = 0usize;
    // Saturation keeps this many transfers in flight.
    let window = 8_000usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let due = if rate == 0 {
                    (next + window.saturating_sub(next - committed.min(next))).min(txs.len())
                } else {
                    (((now - started).as_secs_f64() * rate as f64) as usize).min(txs.len())
                };
                if due > next {
                    let mut per_node: Vec<Vec<SignedTx>> = vec![Vec::new(); nodes];
                    for (user, tx) in &txs[next..due] {
                        submitted_at.insert(tx.hash(), now);
                        per_node[user % nodes].push(tx.clone());
                    }
                    next = due;
                    for (handle, batch) in handles.iter().zip(per_node) {
                        if !batch.is_empty() {
                            handle.submit(batch).await;
                        }
                    }
                }
            }
            block = commits.recv() => {
                let Ok(block) = block else { continue };
                let now = Instant::now();
                blocks += 1;
                for id in block.txs.iter() {
                    if let Some(at) = submitted_at.remove(id) {
                        committed += 1;
                        latencies.push((now - at).as_secs_f64() * 1_000.0);
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, super::cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => f64::NAN,
    };
    let max_view = handles.iter().map(|h| h.status().view).max().unwrap_or(0);
    for recorder in recorders {
        recorder.abort();
    }
    let steps = std::mem::take(&mut *steps.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let quorum = work.genesis.validator_set()?.quorum();
    for handle in &handles {
        handle.shutdown();
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| super::quantile(&latencies, q);
    Ok(ConsensusReport {
        run,
        offered_tx_per_s: rate as f64,
        submitted: next,
        committed,
        committed_tx_per_s: committed as f64 / elapsed,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        blocks,
        mean_block_txs: if blocks == 0 {
            0.0
        } else {
            committed as f64 / blocks as f64
        },
        max_view,
        cpu_cores: cpu / elapsed,
        cpu_ms_per_block: cpu * 1_000.0 / blocks.max(1) as f64,
        round_p50_ms: round_medians(&steps, quorum, started),
    })
}

/// Keeps every round step a node reports (a lagging recorder skips some).
async fn record_steps(
    mut rounds: tokio::sync::broadcast::Receiver<RoundStep>,
    into: Arc<Mutex<Vec<RoundStep>>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rounds.recv().await {
            Ok(step) => match into.lock() {
                Ok(mut steps) => steps.push(step),
                Err(_) => return,
            },
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// For each step after the proposal, the median over the rounds proposed
/// from `from` on of the milliseconds from the (first) pre-prepare until
/// `quorum` replicas reached that step, or `quorum - 1` for
/// [`Step::Accepted`] (only backups accept). Rounds that no quorum reached
/// a step in do not count for it.
fn round_medians(steps: &[RoundStep], quorum: usize, from: Instant) -> BTreeMap<Step, f64> {
    let mut rounds: HashMap<u64, BTreeMap<Step, Vec<Instant>>> = HashMap::new();
    for s in steps {
        rounds
            .entry(s.height)
            .or_default()
            .entry(s.step)
            .or_default()
            .push(s.at);
    }
    let mut delays: BTreeMap<Step, Vec<f64>> = BTreeMap::new();
    for reached in rounds.values_mut() {
        let proposed = reached.get(&Step::Proposed).and_then(|at| at.iter().min());
        let Some(&proposed) = proposed.filter(|at| **at >= from) else {
            continue;
        };
        for (step, times) in reached.iter_mut() {
            let need = match step {
                Step::Proposed => continue,
                Step::Accepted => quorum - 1,
                _ => quorum,
            };
            times.sort();
            if let Some(at) = need.checked_sub(1).and_then(|i| times.get(i)) {
                let ms = at.saturating_duration_since(proposed).as_secs_f64() * 1_000.0;
                delays.entry(*step).or_default().push(ms);
            }
        }
    }
    delays
        .into_iter()
        .map(|(step, mut ms)| {
            ms.sort_by(|a, b| a.total_cmp(b));
            (step, super::quantile(&ms, 0.5))
        })
        .collect()
}

/// `count` transfers, each user's in nonce order: (user index, tx).
fn sign_transfers(work: &Workload, count: usize) -> Vec<(usize, SignedTx)> {
    let users = work.users.len();
    let mut nonces = vec![0u64; users];
    (0..count)
        .map(|k| {
            let from = k % users;
            let to = (from + 1 + k / users) % users;
            let to = if to == from { (to + 1) % users } else { to };
            let tx = Tx {
                chain_id: work.genesis.chain_id.clone(),
                sender: work.users[from].public(),
                nonce: nonces[from],
                body: TxBody::Transfer {
                    to: work.users[to].public(),
                    amount: 1,
                },
            }
            .sign(&work.users[from]);
            nonces[from] += 1;
            (from, tx)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_counts_when_a_quorum_reached_it_measured_from_the_proposal() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let step = |height, step, ms| RoundStep {
            height,
            step,
            at: at(ms),
        };
        let steps = vec![
            // Height 1: proposed at 10; accepted by backups at 12 and 13;
            // committed at 20, 25, 30 and 40 (the third is the quorum's).
            step(1, Step::Proposed, 10),
            step(1, Step::Accepted, 13),
            step(1, Step::Accepted, 12),
            step(1, Step::Committed, 40),
            step(1, Step::Committed, 25),
            step(1, Step::Committed, 20),
            step(1, Step::Committed, 30),
            // Height 2: only two replicas committed; it does not count for
            // committed, its acceptance does.
            step(2, Step::Proposed, 50),
            step(2, Step::Accepted, 54),
            step(2, Step::Accepted, 55),
            step(2, Step::Committed, 60),
            step(2, Step::Committed, 61),
            // Height 3: proposed before the run began.
            step(3, Step::Proposed, 1),
            step(3, Step::Accepted, 2),
            step(3, Step::Accepted, 3),
        ];
        let medians = round_medians(&steps, 3, at(5));
        assert_eq!(
            medians.into_iter().collect::<Vec<_>>(),
            // Accepted: 3 ms (height 1) and 5 ms (height 2); the median
            // of two is the lower. Committed: 20 ms, height 1 alone.
            vec![(Step::Accepted, 3.0), (Step::Committed, 20.0)]
        );
    }
}
