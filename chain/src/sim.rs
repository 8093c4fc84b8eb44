//! A deterministic simulator for the PBFT replicas: one process, virtual
//! time, a seeded scheduler.
//!
//! Every replica is the real [`Replica`] over a real [`Ledger`]. The network
//! loses, duplicates, delays (and so reorders) messages and partitions the
//! replicas; replicas crash and restart from what they persisted (their
//! committed blocks and their [`Record`]s); one replica may be Byzantine.
//! Every crash is a power cut: a replica's records are synced when made,
//! but a committed block is only synced by the next record made after it
//! (as the gateway's store does it), so a crash loses the blocks committed
//! since the replica's last record.
//! After the faults end the network heals, and the run must commit again.
//!
//! Checked on every run:
//! - **safety**: no two honest replicas ever commit different blocks at one
//!   height (checked at every commit, including commits made by state
//!   transfer and after restarts);
//! - **liveness**: within [`Scenario::liveness_bound_ms`] of the heal, every
//!   honest replica commits above the highest height any had at the heal.
//!
//! A run is a pure function of its seed, so a failing seed replays exactly.

use crate::ledger::StateRead;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::block::{Block, CommitCertificate};
use crate::crypto::{Hash, PublicKey};
use crate::ledger::Ledger;
use crate::pbft::{
    Commit, Message, Output, Params, PrePrepare, Prepare, Record, Replica, Signed, Timer,
};
use crate::testkit::{SplitMix64, Workload};
use crate::tx::{SignedTx, Tx, TxBody};
use crate::types::{Height, TimestampMs};

/// How the Byzantine replica misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// As primary, sends different valid blocks to different halves.
    Equivocate,
    /// Prepares and commits (validly signed) for random digests.
    WrongDigest,
    /// Sends messages claiming other replicas' identities and forged
    /// certificates.
    Forge,
    /// Resends old messages it received.
    Replay,
    /// As primary, proposes blocks that do not execute.
    InvalidBlock,
}

const BYZANTINE: [Byzantine; 6] = [
    Byzantine::Silent,
    Byzantine::Equivocate,
    Byzantine::WrongDigest,
    Byzantine::Forge,
    Byzantine::Replay,
    Byzantine::InvalidBlock,
];

/// One run's faults, drawn from its seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: usize,
    pub byzantine: Option<(usize, Byzantine)>,
    pub loss_percent: u64,
    pub duplicate_percent: u64,
    pub max_delay_ms: u64,
    /// (start, end, group of node indexes cut off from the rest).
    pub partitions: Vec<(TimestampMs, TimestampMs, Vec<usize>)>,
    /// (node, crash time, restart time).
    pub crashes: Vec<(usize, TimestampMs, TimestampMs)>,
    /// When every fault ends.
    pub heal_at: TimestampMs,
    pub liveness_bound_ms: u64,
    /// A client submits a transfer this often.
    pub submit_every_ms: u64,
    /// The replicas' [`Params::pipeline_depth`].
    pub pipeline_depth: u64,
    /// Print every view change, new view and commit as it happens.
    pub trace: bool,
}

impl Scenario {
    /// The faults of run `seed` with `nodes` replicas.
    pub fn random(seed: u64, nodes: usize) -> Scenario {
        let mut rng = SplitMix64::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ nodes as u64);
        let heal_at = 2_000 + rng.below(2_000);
        let byzantine = (rng.below(4) != 0).then(|| {
            // Half the time the faulty replica is view 0's primary.
            let node = if rng.below(2) == 0 {
                usize::MAX
            } else {
                rng.below(nodes as u64) as usize
            };
            (node, BYZANTINE[rng.below(BYZANTINE.len() as u64) as usize])
        });
        let mut partitions = Vec::new();
        for _ in 0..rng.below(3) {
            let start = rng.below(heal_at);
            let end = (start + 100 + rng.below(1_500)).min(heal_at);
            let size = 1 + rng.below(nodes as u64 / 2) as usize;
            let mut group: Vec<usize> = (0..nodes).collect();
            for i in (1..group.len()).rev() {
                group.swap(i, rng.below(i as u64 + 1) as usize);
            }
            group.truncate(size);
            partitions.push((start, end, group));
        }
        let mut crashes = Vec::new();
        for _ in 0..rng.below(3) {
            let node = rng.below(nodes as u64) as usize;
            let at = rng.below(heal_at - 100);
            let back = (at + 50 + rng.below(1_000)).min(heal_at);
            crashes.push((node, at, back));
        }
        let mut scenario = Scenario {
            seed,
            nodes,
            byzantine,
            loss_percent: rng.below(21),
            duplicate_percent: rng.below(11),
            max_delay_ms: 1 + rng.below(30),
            partitions,
            crashes,
            heal_at,
            liveness_bound_ms: 12_000,
            submit_every_ms: 40 + rng.below(80),
            pipeline_depth: 1,
            trace: false,
        };
        // In one run of eight (drawn last, so the other runs are as they
        // were), one replica is cut off from the start to the heal while
        // transfers come fast: it falls beyond its log window and must
        // catch up by blocks, then become stable again by checkpoints.
        if rng.below(8) == 0 {
            let node = rng.below(nodes as u64) as usize;
            scenario.heal_at += 4_000;
            scenario.partitions.push((0, scenario.heal_at, vec![node]));
            scenario.submit_every_ms = 10 + rng.below(20);
        }
        // Drawn after everything else, like the cut-off replica: 1 (no
        // pipelining) to 3 blocks in flight.
        scenario.pipeline_depth = 1 + rng.below(3);
        scenario
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The highest height every honest replica reached.
    pub min_height: Height,
    pub max_height: Height,
    pub views: u64,
    pub delivered: u64,
    pub equivocations_seen: usize,
    /// Equivocation reports in the honest replicas' committed chain.
    pub evidence_on_chain: usize,
    /// Committed blocks that power cuts took from replicas' disks (each
    /// replica must commit them again, from its peers).
    pub blocks_lost: usize,
    /// When (virtual ms after the heal) every honest replica had committed
    /// above the heal-time height.
    pub recovered_after_ms: Option<u64>,
    /// Checkpoint messages that made a stable checkpoint more than twice
    /// the log window above the receiver's last one: a replica that had
    /// fallen behind its window rejoining without a view change.
    pub stable_past_window: usize,
    /// Pre-prepares a primary sent above a block it had not committed.
    pub pipelined: usize,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("seed {seed}: safety violated at height {height}: {a} and {b} committed")]
    Safety {
        seed: u64,
        height: Height,
        a: Hash,
        b: Hash,
    },
    #[error("seed {seed}: no progress within {bound_ms} ms of the heal (heights {heights:?}, target above {target}); replicas: {states:?}")]
    Liveness {
        seed: u64,
        bound_ms: u64,
        heights: Vec<Height>,
        target: Height,
        states: Vec<String>,
    },
    #[error("seed {seed}: {what}")]
    Broken { seed: u64, what: String },
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        message: Box<Message>,
    },
    Timer {
        node: usize,
        incarnation: u64,
        timer: Timer,
    },
    Submit,
    Crash(usize),
    Restart(usize),
}

/// What survives a crash.
#[derive(Default)]
struct Disk {
    blocks: Vec<(Block, CommitCertificate)>,
    records: Vec<Record>,
    /// The last blocks stored, none of whose records came after: a power
    /// cut loses them.
    unsynced: usize,
}

impl Disk {
    fn record(&mut self, record: Record) {
        self.records.push(record);
        self.unsynced = 0;
    }

    /// Loses the unsynced blocks; returns how many.
    fn power_cut(&mut self) -> usize {
        let lost = self.unsynced.min(self.blocks.len());
        self.blocks.truncate(self.blocks.len() - lost);
        self.unsynced = 0;
        lost
    }
}

struct Node {
    key: PublicKey,
    replica: Option<Replica>,
    incarnation: u64,
    timers: HashMap<Timer, TimestampMs>,
    disk: Disk,
    /// Messages a replaying Byzantine replica received.
    heard: Vec<Message>,
}

/// The simulated cluster.
pub struct Sim {
    scenario: Scenario,
    work: Workload,
    params: Params,
    rng: SplitMix64,
    now: TimestampMs,
    seq: u64,
    queue: BinaryHeap<Reverse<(TimestampMs, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<Node>,
    byzantine: Option<(usize, Byzantine)>,
    committed: BTreeMap<Height, Hash>,
    next_nonce: HashMap<PublicKey, u64>,
    report: Report,
}

impl Sim {
    pub fn new(scenario: Scenario) -> Result<Sim, SimError> {
        let seed = scenario.seed;
        let broken = |what: String| SimError::Broken { seed, what };
        let mut work = Workload::new(scenario.nodes, 8, seed);
        work.genesis.epoch_length = 100;
        let params = Params {
            checkpoint_interval: 5,
            log_window: 20,
            max_batch: 200,
            batch_delay_ms: 2,
            view_timeout_ms: 300,
            max_view_timeout_ms: 2_400,
            tick_ms: 60,
            pipeline_depth: scenario.pipeline_depth,
        };
        let (ledger, _) = Ledger::genesis(&work.genesis).map_err(|e| broken(e.to_string()))?;
        let set = ledger.validator_sets().active;
        let keys: Vec<PublicKey> = set.validators().iter().map(|v| v.key).collect();
        let byzantine = scenario.byzantine.map(|(node, how)| {
            let node = if node == usize::MAX {
                keys.iter()
                    .position(|k| *k == set.primary(0).key)
                    .unwrap_or(0)
            } else {
                node
            };
            (node, how)
        });
        let mut nodes = Vec::new();
        for key in &keys {
            let keypair = work
                .validator_keypair(key)
                .ok_or_else(|| broken("no key".into()))?;
            let replica = Replica::new(keypair, params.clone(), ledger.clone(), Vec::new(), 0)
                .map_err(|e| broken(e.to_string()))?;
            nodes.push(Node {
                key: *key,
                replica: Some(replica),
                incarnation: 0,
                timers: HashMap::new(),
                disk: Disk::default(),
                heard: Vec::new(),
            });
        }
        let rng = SplitMix64::new(seed ^ 0x5151_5151);
        let mut sim = Sim {
            scenario,
            work,
            params,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            byzantine,
            committed: BTreeMap::new(),
            next_nonce: HashMap::new(),
            report: Report::default(),
        };
        for (node, at, back) in sim.scenario.crashes.clone() {
            sim.schedule(at, Event::Crash(node));
            sim.schedule(back, Event::Restart(node));
        }
        sim.schedule(1, Event::Submit);
        for i in 0..sim.nodes.len() {
            sim.drain(i)?;
        }
        Ok(sim)
    }

    fn schedule(&mut self, at: TimestampMs, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn is_honest(&self, node: usize) -> bool {
        self.byzantine.is_none_or(|(b, _)| b != node)
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        if self.now >= self.scenario.heal_at {
            return false;
        }
        self.scenario.partitions.iter().any(|(start, end, group)| {
            self.now >= *start && self.now < *end && (group.contains(&a) != group.contains(&b))
        })
    }

    /// Puts a message on the wire: maybe lost, maybe twice, after a delay.
    fn send(&mut self, from: usize, to: usize, message: Message) {
        if from == to || self.cut(from, to) {
            return;
        }
        let faulty = self.now < self.scenario.heal_at;
        if faulty && self.rng.below(100) < self.scenario.loss_percent {
            return;
        }
        let copies = if faulty && self.rng.below(100) < self.scenario.duplicate_percent {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.scenario.max_delay_ms);
            self.schedule(
                self.now + delay,
                Event::Deliver {
                    to,
                    from,
                    message: Box::new(message.clone()),
                },
            );
        }
    }

    /// Runs the driver loop for node `i`'s outputs.
    fn drain(&mut self, i: usize) -> Result<(), SimError> {
        loop {
            let Some(replica) = self.nodes[i].replica.as_mut() else {
                return Ok(());
            };
            let Some(output) = replica.poll_output() else {
                return Ok(());
            };
            if self.scenario.trace {
                let what = match &output {
                    Output::Broadcast(Message::ViewChange(vc)) => Some(format!(
                        "view change to {} (stable {}, {} prepared)",
                        vc.body.new_view,
                        vc.body.stable_height(),
                        vc.body.prepared.len()
                    )),
                    Output::Broadcast(Message::NewView(nv)) => Some(format!(
                        "new view {} with {} pre-prepares",
                        nv.view,
                        nv.pre_prepares.len()
                    )),
                    Output::Broadcast(Message::PrePrepare(pp)) => Some(format!(
                        "pre-prepare view {} height {}",
                        pp.body.view, pp.body.block.header.height
                    )),
                    Output::Committed { executed, .. } => {
                        Some(format!("committed {}", executed.block.header.height))
                    }
                    Output::Persist(Record::View { view, changing }) => {
                        Some(format!("view {view} changing {changing}"))
                    }
                    _ => None,
                };
                if let Some(what) = what {
                    eprintln!("{:>6} node {i}: {what}", self.now);
                }
            }
            match output {
                Output::Send { to, message } => {
                    if let Some(to) = self.nodes.iter().position(|n| n.key == to) {
                        for (to, message) in self.misbehave(i, Some(to), message) {
                            self.send(i, to, message);
                        }
                    }
                }
                Output::Broadcast(message) => {
                    if let Message::PrePrepare(pp) = &message {
                        if pp.body.block.header.height > replica.ledger().height() + 1 {
                            self.report.pipelined += 1;
                        }
                    }
                    for (to, message) in self.misbehave(i, None, message) {
                        self.send(i, to, message);
                    }
                }
                Output::SetTimer { timer, at } => {
                    self.nodes[i].timers.insert(timer, at);
                    let incarnation = self.nodes[i].incarnation;
                    self.schedule(
                        at.max(self.now),
                        Event::Timer {
                            node: i,
                            incarnation,
                            timer,
                        },
                    );
                }
                Output::Persist(record) => self.nodes[i].disk.record(record),
                Output::Committed {
                    executed,
                    certificate,
                } => {
                    let header = &executed.block.header;
                    let (height, hash) = (header.height, header.hash());
                    if self.is_honest(i) {
                        match self.committed.get(&height) {
                            Some(other) if *other != hash => {
                                return Err(SimError::Safety {
                                    seed: self.scenario.seed,
                                    height,
                                    a: *other,
                                    b: hash,
                                })
                            }
                            Some(_) => {}
                            None => {
                                self.committed.insert(height, hash);
                                self.report.evidence_on_chain += executed
                                    .block
                                    .txs
                                    .as_slice()
                                    .iter()
                                    .filter(|t| matches!(t.tx.body, TxBody::ReportEquivocation(_)))
                                    .count();
                            }
                        }
                    }
                    let disk = &mut self.nodes[i].disk;
                    if disk.blocks.len() as u64 + 1 != height {
                        return Err(SimError::Broken {
                            seed: self.scenario.seed,
                            what: format!("node {i} stored height {height} out of order"),
                        });
                    }
                    disk.blocks.push((executed.block, certificate));
                    disk.unsynced += 1;
                }
                Output::ServeBlocks {
                    to,
                    from,
                    to_height,
                } => {
                    let Some(to) = self.nodes.iter().position(|n| n.key == to) else {
                        continue;
                    };
                    let blocks: Vec<_> = (from..=to_height)
                        .filter_map(|h| self.nodes[i].disk.blocks.get(h as usize - 1).cloned())
                        .collect();
                    for (block, certificate) in blocks {
                        self.send(i, to, Message::Block { block, certificate });
                    }
                }
                Output::Rejected { .. } => {}
                Output::Equivocation(proof) => {
                    // Evidence must only ever name the Byzantine replica.
                    let accused = self.nodes.iter().position(|n| n.key == proof.primary);
                    if accused.is_none_or(|a| self.is_honest(a)) {
                        return Err(SimError::Broken {
                            seed: self.scenario.seed,
                            what: format!("node {i} accused honest node {accused:?}"),
                        });
                    }
                    self.report.equivocations_seen += 1;
                }
            }
        }
    }

    /// The Byzantine replica's rewrite of what it sends: (recipient, message)
    /// pairs. Honest replicas send as asked.
    fn misbehave(
        &mut self,
        i: usize,
        to: Option<usize>,
        message: Message,
    ) -> Vec<(usize, Message)> {
        let everyone: Vec<usize> = match to {
            Some(to) => vec![to],
            None => (0..self.nodes.len()).filter(|j| *j != i).collect(),
        };
        let plain = |message: Message| everyone.iter().map(|t| (*t, message.clone())).collect();
        let Some((b, how)) = self.byzantine else {
            return plain(message);
        };
        if b != i {
            return plain(message);
        }
        let Some(key) = self.work.validator_keypair(&self.nodes[i].key) else {
            return Vec::new();
        };
        let chain = self.work.genesis.chain_id.clone();
        match (how, message) {
            (Byzantine::Silent, _) => Vec::new(),
            (Byzantine::Equivocate, Message::PrePrepare(pp)) => {
                let Some(replica) = &self.nodes[i].replica else {
                    return Vec::new();
                };
                let txs: Vec<SignedTx> = pp.body.block.txs.as_slice().to_vec();
                let half = txs.len() / 2;
                let time = pp.body.block.header.time_ms + 1;
                let other = replica
                    .ledger()
                    .propose(txs[..half].to_vec(), time, key.public())
                    .map(|p| p.executed.block);
                let mut out = Vec::new();
                for (n, t) in everyone.iter().enumerate() {
                    let message = match (&other, n % 2) {
                        (Ok(block), 1) => Message::PrePrepare(Signed::sign(
                            &key,
                            &chain,
                            PrePrepare {
                                view: pp.body.view,
                                block: block.clone(),
                            },
                        )),
                        _ => Message::PrePrepare(pp.clone()),
                    };
                    out.push((*t, message));
                }
                out
            }
            (Byzantine::WrongDigest, Message::Prepare(p)) => {
                let digest = Hash::digest(&self.rng.next_u64().to_le_bytes());
                plain(Message::Prepare(Signed::sign(
                    &key,
                    &chain,
                    Prepare { digest, ..p.body },
                )))
            }
            (Byzantine::WrongDigest, Message::Commit(c)) => {
                let digest = Hash::digest(&self.rng.next_u64().to_le_bytes());
                plain(Message::Commit(Commit {
                    digest,
                    vote: crate::block::CommitSig::sign(&key, &digest),
                    ..c
                }))
            }
            (Byzantine::Forge, message) => {
                let victim = self.nodes[(i + 1) % self.nodes.len()].key;
                let mut out: Vec<(usize, Message)> = plain(message.clone());
                let forged = match message {
                    Message::Prepare(mut p) => {
                        p.author = victim;
                        Message::Prepare(p)
                    }
                    Message::Commit(mut c) => {
                        c.vote.validator = victim;
                        Message::Commit(c)
                    }
                    Message::PrePrepare(mut pp) => {
                        pp.author = victim;
                        Message::PrePrepare(pp)
                    }
                    Message::ViewChange(mut vc) => {
                        vc.author = victim;
                        vc.body.new_view += 1;
                        Message::ViewChange(vc)
                    }
                    other => other,
                };
                out.extend(everyone.iter().map(|t| (*t, forged.clone())));
                out
            }
            (Byzantine::Replay, message) => {
                let mut out: Vec<(usize, Message)> = plain(message);
                let heard = &self.nodes[i].heard;
                if !heard.is_empty() {
                    for _ in 0..2 {
                        let old = heard[self.rng.below(heard.len() as u64) as usize].clone();
                        let t = everyone[self.rng.below(everyone.len() as u64) as usize];
                        out.push((t, old));
                    }
                }
                out
            }
            (Byzantine::InvalidBlock, Message::PrePrepare(pp)) => {
                let mut block = pp.body.block.clone();
                block.header.state_root = Hash::digest(b"not the state root");
                plain(Message::PrePrepare(Signed::sign(
                    &key,
                    &chain,
                    PrePrepare {
                        view: pp.body.view,
                        block,
                    },
                )))
            }
            (_, message) => plain(message),
        }
    }

    /// A client submits one transfer to a random live replica.
    fn submit(&mut self) {
        let users = self.work.users.len() as u64;
        let from = self.rng.below(users) as usize;
        let to = (from + 1 + self.rng.below(users - 1) as usize) % users as usize;
        let sender = self.work.users[from].public();
        let committed = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_honest(*i))
            .filter_map(|(_, n)| n.replica.as_ref())
            .map(|r| r.ledger().account(&sender).nonce)
            .max()
            .unwrap_or(0);
        let next = self.next_nonce.entry(sender).or_insert(0);
        // A client whose earlier transactions went missing starts over
        // from the committed nonce.
        if *next < committed || *next > committed + 2 {
            *next = committed;
        }
        let tx = Tx {
            chain_id: self.work.genesis.chain_id.clone(),
            sender,
            nonce: *next,
            body: TxBody::Transfer {
                to: self.work.users[to].public(),
                amount: 1 + self.rng.below(100),
            },
        }
        .sign(&self.work.users[from]);
        *next += 1;
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].replica.is_some())
            .collect();
        if let Some(&node) = live.get(self.rng.below(live.len().max(1) as u64) as usize) {
            if let Some(replica) = self.nodes[node].replica.as_mut() {
                replica.handle_transactions(self.now, vec![tx]);
            }
            let _ = self.drain(node);
        }
    }

    fn restart(&mut self, i: usize) -> Result<(), SimError> {
        let seed = self.scenario.seed;
        let broken = |what: String| SimError::Broken { seed, what };
        let (mut ledger, _) =
            Ledger::genesis(&self.work.genesis).map_err(|e| broken(e.to_string()))?;
        for (block, _) in &self.nodes[i].disk.blocks {
            let executed = ledger.execute(block).map_err(|e| broken(e.to_string()))?;
            ledger
                .commit(&executed)
                .map_err(|e| broken(e.to_string()))?;
        }
        let key = self
            .work
            .validator_keypair(&self.nodes[i].key)
            .ok_or_else(|| broken("key".into()))?;
        let records = self.nodes[i].disk.records.clone();
        let replica = Replica::new(key, self.params.clone(), ledger, records, self.now)
            .map_err(|e| broken(e.to_string()))?;
        let node = &mut self.nodes[i];
        node.replica = Some(replica);
        node.incarnation += 1;
        node.timers.clear();
        self.drain(i)
    }

    fn heights(&self) -> Vec<Height> {
        (0..self.nodes.len())
            .filter(|i| self.is_honest(*i))
            .map(|i| self.nodes[i].disk.blocks.len() as Height)
            .collect()
    }

    /// Runs the scenario to the end; checks safety throughout and liveness
    /// after the heal.
    pub fn run(mut self) -> Result<Report, SimError> {
        let end = self.scenario.heal_at + self.scenario.liveness_bound_ms;
        let mut target: Option<Height> = None;
        while let Some(Reverse((at, id))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            if target.is_none() && at >= self.scenario.heal_at {
                target = self.heights().into_iter().max();
            }
            if let Some(target) = target {
                if self.heights().iter().all(|h| *h > target) {
                    self.report.recovered_after_ms = Some(at - self.scenario.heal_at);
                    break;
                }
            }
            let Some(event) = self.events.remove(&id) else {
                continue;
            };
            match event {
                Event::Deliver { to, from, message } => {
                    if self.cut(from, to) {
                        continue;
                    }
                    let from_key = self.nodes[from].key;
                    if let Some((b, Byzantine::Replay)) = self.byzantine {
                        if b == to && self.nodes[to].heard.len() < 256 {
                            self.nodes[to].heard.push((*message).clone());
                        }
                    }
                    if let Some(replica) = self.nodes[to].replica.as_mut() {
                        self.report.delivered += 1;
                        let checkpoint = matches!(*message, Message::Checkpoint(_));
                        let low = replica.low_mark();
                        replica.handle_message(at, from_key, *message);
                        if checkpoint && replica.low_mark() > low + 2 * self.params.log_window {
                            self.report.stable_past_window += 1;
                        }
                        self.drain(to)?;
                    }
                }
                Event::Timer {
                    node,
                    incarnation,
                    timer,
                } => {
                    let current = self.nodes[node].incarnation == incarnation
                        && self.nodes[node].timers.get(&timer) == Some(&at);
                    if !current {
                        continue;
                    }
                    if let Some(replica) = self.nodes[node].replica.as_mut() {
                        replica.handle_timer(at, timer);
                        self.drain(node)?;
                    }
                }
                Event::Submit => {
                    self.submit();
                    let next = at + self.scenario.submit_every_ms;
                    self.schedule(next, Event::Submit);
                }
                Event::Crash(i) => {
                    self.report.blocks_lost += self.nodes[i].disk.power_cut();
                    self.nodes[i].replica = None;
                    self.nodes[i].incarnation += 1;
                }
                Event::Restart(i) => {
                    if self.nodes[i].replica.is_none() {
                        self.restart(i)?;
                    }
                }
            }
        }
        let heights = self.heights();
        self.report.min_height = heights.iter().copied().min().unwrap_or(0);
        self.report.max_height = heights.iter().copied().max().unwrap_or(0);
        self.report.views = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.view())
            .max()
            .unwrap_or(0);
        if self.report.recovered_after_ms.is_none() {
            let states = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| match &n.replica {
                    Some(r) => format!(
                        "{i}{}: height {} view {}{} pending {}",
                        if self.is_honest(i) {
                            ""
                        } else {
                            " (byzantine)"
                        },
                        r.ledger().height(),
                        r.view(),
                        if r.is_changing_view() {
                            " (changing)"
                        } else {
                            ""
                        },
                        r.pending()
                    ),
                    None => format!("{i}: down"),
                })
                .collect();
            return Err(SimError::Liveness {
                seed: self.scenario.seed,
                bound_ms: self.scenario.liveness_bound_ms,
                heights,
                target: target.unwrap_or(0),
                states,
            });
        }
        Ok(self.report)
    }
}

/// Runs seed `seed` with `nodes` replicas.
pub fn run_seed(seed: u64, nodes: usize) -> Result<Report, SimError> {
    Sim::new(Scenario::random(seed, nodes))?.run()
}

/// Replays seed `seed`, printing its scenario and its view changes, new
/// views and commits as they happen.
pub fn trace_seed(seed: u64, nodes: usize) -> Result<Report, SimError> {
    let mut scenario = Scenario::random(seed, nodes);
    scenario.trace = true;
    eprintln!("{scenario:?}");
    Sim::new(scenario)?.run()
}
