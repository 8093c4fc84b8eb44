//! The DAG side chain at a gateway: drives the pure [`Tangle`] with real
//! time, the peer channels, the committed chain and sqlite.
//!
//! One task owns the tangle. It takes transactions from this gateway's
//! callers (REST, its bulbs) and from peers' gossip, checks each against
//! the issuer's key in committed chain state, and pushes what it took
//! itself to every peer; parents it lacks are asked of the peer that sent
//! the child (or of all, for its own). While this gateway is the PBFT
//! primary, it submits one anchor per height over its current tips — an
//! anchor's nonce is the height it is for, so it spends no account nonce.
//! When a block commits, the task reads it from the store and confirms
//! every anchor in it, in order; a block whose anchored tips are not solid
//! here waits (the tips are asked for) and so do the blocks after it, so
//! every gateway confirms the same transactions in the same order.
//!
//! Writes (taken transactions, confirmations with the height reached) go
//! to sqlite in batches every [`FLUSH_EVERY`]: a restart reloads the
//! tangle and resumes at the stored height. Confirmed history older than
//! `depth` blocks is pruned from memory and its bodies from sqlite.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use itc_chain::block::{Block, CommitCertificate};
use itc_chain::crypto::{Hash, Keypair, PublicKey};
use itc_chain::dag::tangle::roots;
use itc_chain::dag::{
    CheckedDagTx, DagError, DagKind, DagMessage, DagProof, DagTx, Status, Tangle, TangleConfig,
};
use itc_chain::ledger::StateRead;
use itc_chain::pbft::AnchorAvailability;
use itc_chain::state::{StateKey, StateValue};
use itc_chain::store::ChainStore;
use itc_chain::tx::{Tx, TxBody};
use itc_chain::types::Height;
use ring::rand::SecureRandom;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::net::DagInbound;
use crate::node::NodeHandle;
use crate::service::now_ms;
use crate::store::dag::DagBatch;
use crate::store::{SqliteStore, StoreError};

/// How often buffered writes go to sqlite.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// How long a gateway that is not the primary waits, with transactions to
/// anchor and no block committed, before it submits an anchor itself.
const STALLED_AFTER: Duration = Duration::from_secs(1);

/// How the DAG runs at this gateway.
#[derive(Clone, Debug)]
pub struct DagConfig {
    pub tangle: TangleConfig,
    /// Confirmed history kept (in blocks) with bodies and proofs.
    pub depth: Height,
    /// How often the primary looks at its tips to anchor them.
    pub anchor_every: Duration,
}

impl Default for DagConfig {
    fn default() -> Self {
        DagConfig {
            tangle: TangleConfig::default(),
            depth: 10_000,
            anchor_every: Duration::from_millis(2),
        }
    }
}

/// A transaction's status with what proves it.
#[derive(Clone, Debug)]
pub struct DagView {
    pub status: Status,
    /// `None` when unknown, or pruned.
    pub tx: Option<DagTx>,
    /// For a confirmed transaction still within the depth: the path to an
    /// anchored tip and the Merkle proofs into the block's header.
    pub proof: Option<(DagProof, Block, Option<CommitCertificate>)>,
}

/// A transaction the tangle confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub id: Hash,
    pub height: Height,
    pub applied: bool,
}

/// Why a DAG call failed.
#[derive(Debug, thiserror::Error)]
pub enum DagServiceError {
    #[error("the DAG service has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Outcomes = Vec<Result<Hash, DagError>>;

enum Command {
    Submit(Vec<DagTx>, oneshot::Sender<Outcomes>),
    Status(Hash, oneshot::Sender<(Status, Option<DagTx>)>),
    Path(Hash, Vec<Hash>, oneshot::Sender<Option<Vec<DagTx>>>),
    Parents(u64, oneshot::Sender<[Hash; 2]>),
}

/// What the rest of the gateway calls.
#[derive(Clone)]
pub struct DagHandle {
    commands: mpsc::Sender<Command>,
    confirmations: broadcast::Sender<Arc<Vec<Confirmation>>>,
    store: SqliteStore,
}

impl DagHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DagServiceError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| DagServiceError::Stopped)?;
        answer.await.map_err(|_| DagServiceError::Stopped)
    }

    /// Takes transactions on behalf of their issuers; each gets its id or
    /// the typed reason it was refused.
    pub async fn submit(
        &self,
        txs: Vec<DagTx>,
    ) -> Result<Vec<Result<Hash, DagError>>, DagServiceError> {
        self.ask(|reply| Command::Submit(txs, reply)).await
    }

    /// Two parents for a new transaction (uniform over non-lazy tips).
    pub async fn parents(&self) -> Result<[Hash; 2], DagServiceError> {
        let mut random = [0u8; 8];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| DagServiceError::Stopped)?;
        self.ask(|reply| Command::Parents(u64::from_le_bytes(random), reply))
            .await
    }

    /// Every batch of confirmations, as blocks commit.
    pub fn confirmations(&self) -> broadcast::Receiver<Arc<Vec<Confirmation>>> {
        self.confirmations.subscribe()
    }

    pub async fn status(&self, id: Hash) -> Result<DagView, DagServiceError> {
        let (status, tx) = match self.ask(|reply| Command::Status(id, reply)).await? {
            // Pruned from memory: the row keeps the outcome.
            (Status::Unknown, _) => match self.store.dag_row(&id).await? {
                Some((tx, Some(outcome))) => (outcome, tx),
                _ => (Status::Unknown, None),
            },
            known => known,
        };
        let proof = match status {
            Status::Confirmed { height } | Status::Conflicting { height } => {
                self.proof(id, height).await?
            }
            Status::Unknown | Status::Pending { .. } => None,
        };
        Ok(DagView { status, tx, proof })
    }

    /// The proof that block `height` confirmed `id`, while the tangle
    /// still holds the path.
    async fn proof(
        &self,
        id: Hash,
        height: Height,
    ) -> Result<Option<(DagProof, Block, Option<CommitCertificate>)>, DagServiceError> {
        let Some((block, certificate)) = self.store.clone().block(height).await? else {
            return Ok(None);
        };
        let tips: Vec<Hash> = anchored_tips(&block).collect();
        let path = self.ask(|reply| Command::Path(id, tips, reply)).await?;
        Ok(path
            .and_then(|path| DagProof::build(path, &block))
            .map(|proof| (proof, block, certificate)))
    }
}

/// Every tip the anchors of `block` name.
fn anchored_tips(block: &Block) -> impl Iterator<Item = Hash> + '_ {
    itc_chain::block::anchors(block.txs.as_slice()).flat_map(|a| a.tips.as_slice().iter().copied())
}

/// Below this many, checking on one thread is cheaper than starting more.
const PARALLEL_FROM: usize = 32;

/// At most this many transactions queued behind the first are checked with
/// it: enough that a backlog is checked in large batches (cheaper per
/// signature), few enough that its callers wait at most tens of
/// milliseconds.
const COALESCE_UP_TO: usize = 4_096;

/// Transactions that arrived together, and from where.
struct Arrival {
    from: Origin,
    txs: Vec<DagTx>,
}

/// Where an arrival came from.
enum Origin {
    /// This gateway's caller, waiting for the outcomes.
    Local(oneshot::Sender<Outcomes>),
    /// A peer's gossip.
    Peer(PublicKey),
}

impl Origin {
    fn peer(&self) -> Option<PublicKey> {
        match self {
            Origin::Local(_) => None,
            Origin::Peer(peer) => Some(*peer),
        }
    }
}

/// A candidate's check: the transaction ready to attach, or why not.
type Checked = Result<CheckedDagTx, DagError>;

/// A transaction offered to the tangle, before its check. Almost every
/// candidate is `New`, so boxing it would only add an allocation each.
#[allow(clippy::large_enum_variant)]
enum Candidate {
    /// Held here already (by id).
    Known(Hash),
    /// New, with its issuer's key on chain (`None`: not registered).
    New(DagTx, Option<PublicKey>),
}

/// Checks each candidate's work and signature against its issuer's key,
/// the signatures in batches ([`DagTx::checked_all`]), on every core for a
/// large batch; outcomes in the candidates' order.
///
/// The candidates are shared out among the threads in issuer-key order,
/// not in arrival order: a batch check folds all of one key's signatures
/// into a single term, so keeping each device's transactions in one batch
/// keeps the multiplication small (`BENCHMARKS.md`: 1,024 signatures by 200 keys
/// cost 11 µs each, 256 by 256 keys 26 µs).
fn check_all(candidates: Vec<Candidate>) -> Vec<Checked> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if candidates.len() < PARALLEL_FROM || threads == 1 {
        return check_chunk(candidates);
    }
    let total = candidates.len();
    // In key order, cut into equal runs: each key's signatures stay in one
    // batch except where a cut falls, and one busy device still gets every
    // core.
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by_key(|&i| match &candidates[i] {
        Candidate::New(_, Some(key)) => Some(key.0),
        _ => None,
    });
    let mut slots: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    let shares: Vec<(Vec<usize>, Vec<Candidate>)> = order
        .chunks(total.div_ceil(threads))
        .map(|indexes| {
            let share = indexes.iter().filter_map(|&i| slots[i].take()).collect();
            (indexes.to_vec(), share)
        })
        .collect();
    let checked: Vec<(Vec<usize>, Vec<Checked>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|(indexes, share)| scope.spawn(move || (indexes, check_chunk(share))))
            .collect();
        // A panic in a check is a bug; it surfaces here rather than
        // leave the outcomes out of step with the transactions.
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut outcomes: Vec<Option<Checked>> = (0..total).map(|_| None).collect();
    for (indexes, results) in checked {
        for (index, result) in indexes.into_iter().zip(results) {
            outcomes[index] = Some(result);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            // `check_chunk` answers every candidate it is given.
            outcome.unwrap_or(Err(DagError::from(
                itc_chain::dag::DagTxError::BadSignature,
            )))
        })
        .collect()
}

/// [`check_all`] on one thread: the new candidates with a key go through
/// one batch check, the others fail at once.
fn check_chunk(candidates: Vec<Candidate>) -> Vec<Checked> {
    let mut outcomes: Vec<Option<Checked>> = Vec::new();
    let mut batch = Vec::new();
    for candidate in candidates {
        outcomes.push(match candidate {
            Candidate::Known(id) => Some(Err(DagError::Duplicate { id })),
            Candidate::New(tx, Some(key)) => {
                batch.push((tx, key));
                None
            }
            Candidate::New(tx, None) => Some(Err(DagError::UnknownIssuer {
                issuer: tx.body.issuer.clone(),
            })),
        });
    }
    let mut checked = DagTx::checked_all(batch).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Some(done) => done,
            None => match checked.next() {
                Some(result) => result.map_err(DagError::from),
                // `checked_all` answers every item it is given.
                None => Err(DagError::from(itc_chain::dag::DagTxError::BadSignature)),
            },
        })
        .collect()
}

/// Reloads the tangle from the store and starts the DAG task; it stops
/// when `shutdown` turns true.
/// What this gateway's tangle holds solid, for its replica: a backup
/// prepares a block only if the tips its anchors name are here
/// ([`AnchorAvailability`]). The DAG task adds what becomes solid, drops
/// what it prunes, and tells the node when there is more.
pub struct SolidTips {
    solid: RwLock<HashSet<Hash>>,
}

impl Default for SolidTips {
    fn default() -> Self {
        SolidTips {
            solid: RwLock::new(roots().into_iter().collect()),
        }
    }
}

impl SolidTips {
    /// Marks `ids` solid. The DAG task calls it as its tangle solidifies;
    /// a test makes a faulty gateway claim data it lacks through it.
    pub fn add(&self, ids: Vec<Hash>) {
        if let Ok(mut solid) = self.solid.write() {
            solid.extend(ids);
        }
    }

    fn remove(&self, ids: &[Hash]) {
        if let Ok(mut solid) = self.solid.write() {
            for id in ids {
                solid.remove(id);
            }
        }
    }
}

impl AnchorAvailability for SolidTips {
    fn is_solid(&self, tip: &Hash) -> bool {
        self.solid.read().is_ok_and(|solid| solid.contains(tip))
    }
}

pub async fn start(
    node: &NodeHandle,
    key: Keypair,
    config: DagConfig,
    solid: Arc<SolidTips>,
    shutdown: watch::Receiver<bool>,
) -> Result<(DagHandle, JoinHandle<()>), DagServiceError> {
    let store = node.store.clone();
    let mut tangle = Tangle::new(config.tangle.clone());
    let (rows, height) = store.dag_load().await?;
    let restored = rows.len();
    for (tx, outcome) in rows {
        tangle.restore(tx, outcome.unwrap_or(Status::Pending { solid: false }));
    }
    solid.add(tangle.poll_solidified());
    node.data_available();
    tracing::info!(restored, height, "DAG restored");
    let (commands, command_rx) = mpsc::channel(4_096);
    let (confirmations, _) = broadcast::channel(1_024);
    let inbox = node.take_dag_inbox().ok_or(DagServiceError::Stopped)?;
    let handle = DagHandle {
        commands,
        confirmations: confirmations.clone(),
        store: store.clone(),
    };
    let driver = Driver {
        tangle,
        node: node.clone(),
        key,
        config,
        store,
        batch: DagBatch::default(),
        outbox: Vec::new(),
        height,
        behind: true,
        committed: height,
        anchored_for: 0,
        last_commit: tokio::time::Instant::now(),
        confirmations,
        solid,
    };
    let task = tokio::spawn(driver.run(command_rx, inbox, shutdown));
    Ok((handle, task))
}

struct Driver {
    tangle: Tangle,
    node: NodeHandle,
    key: Keypair,
    config: DagConfig,
    store: SqliteStore,
    batch: DagBatch,
    /// Taken here, to push to every peer.
    outbox: Vec<DagTx>,
    /// The last height whose anchors are confirmed here.
    height: Height,
    /// Committed blocks are waiting to be confirmed here.
    behind: bool,
    /// The highest height the node announced committed.
    committed: Height,
    /// The height this gateway last anchored for.
    anchored_for: Height,
    /// When the last block committed (or the service started).
    last_commit: tokio::time::Instant,
    confirmations: broadcast::Sender<Arc<Vec<Confirmation>>>,
    solid: Arc<SolidTips>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbox: mpsc::Receiver<DagInbound>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut commits = self.node.commits();
        let mut anchor = tokio::time::interval(self.config.anchor_every);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut house = tokio::time::interval(HOUSEKEEPING_EVERY);
        for tick in [&mut anchor, &mut flush, &mut house] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        }
        loop {
            let result = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                commit = commits.recv() => match commit {
                    Ok(block) => {
                        self.committed = self.committed.max(block.height);
                        self.last_commit = tokio::time::Instant::now();
                        self.behind = true;
                        match self.catch_up().await {
                            // The next height's anchor at once, not at the
                            // next tick: it is what the primary waits for.
                            Ok(()) => {
                                self.maybe_anchor().await;
                                Ok(())
                            }
                            failed => failed,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.behind = true;
                        self.catch_up().await
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(command) = commands.recv() => {
                    let first = self.command(command);
                    self.arrived(first, &mut commands, &mut inbox).await
                }
                Some((peer, message)) = inbox.recv() => {
                    let first = self.gossip(peer, message);
                    self.arrived(first, &mut commands, &mut inbox).await
                }
                _ = anchor.tick() => {
                    self.maybe_anchor().await;
                    Ok(())
                }
                _ = flush.tick() => self.flush().await,
                _ = house.tick() => self.housekeeping().await,
            };
            if let Err(error) = result {
                tracing::error!(%error, "the DAG store failed; stopping");
                return;
            }
            if !self.outbox.is_empty() {
                for message in DagMessage::txs(std::mem::take(&mut self.outbox)) {
                    self.node.network.broadcast_dag(message);
                }
            }
            let solidified = self.tangle.poll_solidified();
            if !solidified.is_empty() {
                self.solid.add(solidified);
                self.node.data_available();
            }
        }
        if let Err(error) = self.flush().await {
            tracing::error!(%error, "the DAG store failed at shutdown");
        }
    }

    /// The issuer's key in committed state, for each of `txs`.
    fn keys(&self, txs: &[DagTx]) -> Vec<Option<PublicKey>> {
        let Ok(view) = self.node.committed().read() else {
            return vec![None; txs.len()];
        };
        txs.iter()
            .map(|tx| view.entries.device(&tx.body.issuer).map(|d| d.key))
            .collect()
    }

    /// Takes `first` with whatever else is queued behind it (up to
    /// [`COALESCE_UP_TO`] transactions): one check for them all, so a
    /// backlog costs less per transaction than a trickle. Other commands
    /// and requests met on the way are answered at once.
    async fn arrived(
        &mut self,
        first: Option<Arrival>,
        commands: &mut mpsc::Receiver<Command>,
        inbox: &mut mpsc::Receiver<DagInbound>,
    ) -> Result<(), StoreError> {
        let Some(first) = first else {
            return Ok(());
        };
        let mut count = first.txs.len();
        let mut arrivals = vec![first];
        // Callers' and peers' in turn, so neither can starve the other.
        while count < COALESCE_UP_TO {
            let mut next = Vec::new();
            if let Ok(command) = commands.try_recv() {
                next.push(self.command(command));
            }
            if let Ok((peer, message)) = inbox.try_recv() {
                next.push(self.gossip(peer, message));
            }
            if next.is_empty() {
                break;
            }
            for arrival in next.into_iter().flatten() {
                count += arrival.txs.len();
                arrivals.push(arrival);
            }
        }
        let gossiped = arrivals.iter().any(|a| a.from.peer().is_some());
        self.take_arrivals(arrivals);
        if gossiped && self.behind {
            return self.catch_up().await;
        }
        Ok(())
    }

    /// Takes the transactions of `arrivals` in their order; each caller gets
    /// its outcomes, and what a peer sent that is refused is logged.
    /// Parents the tangle lacks are asked of the one peer that sent every
    /// transaction, else of every peer.
    fn take_arrivals(&mut self, arrivals: Vec<Arrival>) {
        let mut txs = Vec::new();
        let mut local = Vec::new();
        let mut ends: Vec<(usize, Origin)> = Vec::new();
        for Arrival { from, txs: batch } in arrivals {
            local.extend(std::iter::repeat_n(from.peer().is_none(), batch.len()));
            ends.push((batch.len(), from));
            txs.extend(batch);
        }
        let ask = match ends.split_first() {
            Some(((_, first), rest)) => first
                .peer()
                .filter(|peer| rest.iter().all(|(_, from)| from.peer() == Some(*peer))),
            None => None,
        };
        let mut outcomes = self.take(txs, &local, ask).into_iter();
        for (count, from) in ends {
            let mine: Outcomes = outcomes.by_ref().take(count).collect();
            match from {
                Origin::Local(reply) => {
                    let _ = reply.send(mine);
                }
                Origin::Peer(peer) => {
                    for refused in mine {
                        match refused {
                            Ok(_) | Err(DagError::Duplicate { .. }) => {}
                            Err(error) => {
                                tracing::debug!(%peer, %error, "gossiped DAG transaction refused")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Takes `txs` (`local[i]`: the i-th is this gateway's to push to its
    /// peers); returns each outcome and asks `ask` (or every peer) for
    /// parents the tangle lacks. Signatures are checked on all cores
    /// ([`check_all`]), then attached in order.
    fn take(&mut self, txs: Vec<DagTx>, local: &[bool], ask: Option<PublicKey>) -> Outcomes {
        let keys = self.keys(&txs);
        let candidates: Vec<Candidate> = txs
            .into_iter()
            .zip(keys)
            .map(|(tx, key)| {
                let id = tx.id();
                match self.tangle.get(&id) {
                    Some(_) => Candidate::Known(id),
                    None => Candidate::New(tx, key),
                }
            })
            .collect();
        let now = now_ms();
        let mut out = Vec::with_capacity(candidates.len());
        for (result, local) in check_all(candidates).into_iter().zip(local) {
            out.push(result.and_then(|tx| {
                let copy = tx.tx().clone();
                let id = self.tangle.handle_checked(tx, now)?;
                if *local {
                    self.outbox.push(copy.clone());
                }
                self.batch.taken.push((id, copy));
                Ok(id)
            }));
        }
        let missing = self.tangle.poll_missing();
        if !missing.is_empty() {
            self.request(missing, ask);
        }
        out
    }

    fn request(&self, ids: Vec<Hash>, ask: Option<PublicKey>) {
        for message in DagMessage::requests(ids) {
            match &ask {
                Some(peer) => self.node.network.send_dag(peer, message),
                None => self.node.network.broadcast_dag(message),
            }
        }
    }

    /// Answers a command, or hands back the transactions it submits.
    fn command(&mut self, command: Command) -> Option<Arrival> {
        match command {
            Command::Submit(txs, reply) => {
                return Some(Arrival {
                    from: Origin::Local(reply),
                    txs,
                })
            }
            Command::Status(id, reply) => {
                let _ = reply.send((self.tangle.status(&id), self.tangle.get(&id).cloned()));
            }
            Command::Path(id, tips, reply) => {
                let _ = reply.send(self.tangle.path_to(&id, &tips));
            }
            Command::Parents(random, reply) => {
                let _ = reply.send(self.tangle.select_parents(random));
            }
        }
        None
    }

    /// Answers a peer's request, or hands back the transactions it sent.
    fn gossip(&mut self, peer: PublicKey, message: DagMessage) -> Option<Arrival> {
        match message {
            DagMessage::Txs(txs) => {
                return Some(Arrival {
                    from: Origin::Peer(peer),
                    txs: txs.into_inner(),
                })
            }
            DagMessage::Request(ids) => {
                let found: Vec<DagTx> = ids
                    .as_slice()
                    .iter()
                    .filter_map(|id| self.tangle.get(id).cloned())
                    .collect();
                for message in DagMessage::txs(found) {
                    self.node.network.send_dag(&peer, message);
                }
            }
        }
        None
    }

    /// Confirms the anchors of every committed block after `self.height`,
    /// in order, stopping at one whose tips are not solid here (they are
    /// asked for).
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        // The node announces a commit before its status shows it.
        let target = self.node.status().height.max(self.committed);
        while self.height < target {
            let height = self.height + 1;
            let Some((block, _)) = self.store.clone().block(height).await? else {
                break;
            };
            let unknown: Vec<Hash> = anchored_tips(&block)
                .filter(|tip| !self.tangle.is_solid(tip))
                .collect();
            if !unknown.is_empty() {
                // The tips themselves if unknown, else what they wait on:
                // asked again at every commit and housekeeping tick until
                // it comes.
                let mut ask = self.tangle.missing_beneath(&unknown);
                ask.extend(self.tangle.poll_missing());
                tracing::debug!(
                    height,
                    missing = ask.len(),
                    "anchored tips not solid here yet"
                );
                self.request(ask, None);
                return Ok(());
            }
            let mut confirmed = Vec::new();
            for anchor in itc_chain::block::anchors(block.txs.as_slice()) {
                let paid = self.paid_at(anchor, height).await?;
                // Solid (checked above), so this cannot fail.
                for c in self
                    .tangle
                    .confirm(anchor.tips.as_slice(), height, |id| paid.contains(id))
                    .unwrap_or_default()
                {
                    self.batch.confirmed.push((c.id, height, c.applied));
                    confirmed.push(Confirmation {
                        id: c.id,
                        height,
                        applied: c.applied,
                    });
                }
            }
            self.height = height;
            self.batch.height = Some(height);
            if !confirmed.is_empty() {
                let _ = self.confirmations.send(Arc::new(confirmed));
            }
        }
        self.behind = self.height < target;
        Ok(())
    }

    /// The payments `anchor` lists that the ledger applied at `height`:
    /// its record of the (payer, nonce) names the payment and the height.
    /// The store holds that block's state changes already (written in the
    /// block's sqlite transaction), and a record is never changed.
    async fn paid_at(
        &self,
        anchor: &itc_chain::tx::DagAnchor,
        height: Height,
    ) -> Result<std::collections::HashSet<Hash>, StoreError> {
        let mut paid = std::collections::HashSet::new();
        for payment in anchor.payments.as_slice() {
            let DagKind::Payment { from, nonce, .. } = &payment.body.kind else {
                continue;
            };
            let key = StateKey::DagPayment {
                from: *from,
                nonce: *nonce,
            };
            if let Some(StateValue::DagPayment(record)) = self.store.state_value(&key).await? {
                let id = payment.id();
                if record.tx == id && record.height == height {
                    paid.insert(id);
                }
            }
        }
        Ok(paid)
    }

    /// While primary: one anchor per height, over tips with something not
    /// yet confirmed beneath them. Any other gateway does the same once
    /// nothing has committed for [`STALLED_AFTER`] and a tip has waited as
    /// long to be anchored: its anchor reaches every replica's mempool, so if the
    /// primary is gone (or alone in a view change, with nothing pending
    /// anywhere to make the others follow) their timers run and the view
    /// changes (Castro & Liskov §4.4: requests are what start backups'
    /// timers).
    async fn maybe_anchor(&mut self) {
        let status = self.node.status();
        // The node announces a commit before its status shows it.
        let next = status.height.max(self.committed) + 1;
        let stalled = || {
            let limit = STALLED_AFTER.as_millis() as u64;
            self.last_commit.elapsed() >= STALLED_AFTER
                && self.tangle.longest_tip_wait(now_ms()) >= Some(limit)
        };
        if !(status.primary || stalled())
            || status.changing_view
            || self.anchored_for >= next
            || self.behind
        {
            return;
        }
        let Some(anchor) = self.tangle.anchor() else {
            return;
        };
        let chain_id = match self.node.committed().read() {
            Ok(view) => view.chain_id.clone(),
            Err(_) => return,
        };
        let tx = Tx {
            chain_id,
            sender: self.key.public(),
            nonce: next,
            body: TxBody::AnchorDag(anchor),
        }
        .sign(&self.key);
        self.anchored_for = next;
        self.node.submit(vec![tx]).await;
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.store.dag_write(&batch).await
    }

    async fn housekeeping(&mut self) -> Result<(), StoreError> {
        for orphan in self.tangle.expire(now_ms()) {
            tracing::debug!(%orphan, "DAG transaction dropped");
        }
        if self.behind {
            self.catch_up().await?;
        }
        let keep_from = self.height.saturating_sub(self.config.depth);
        if keep_from > 0 {
            let pruned = self.tangle.prune(|height| height < keep_from);
            if !pruned.is_empty() {
                tracing::debug!(pruned = pruned.len(), keep_from, "DAG history pruned");
                self.solid.remove(&pruned);
                self.batch.forgotten.extend(pruned);
            }
        }
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use itc_chain::codec::{BoundedVec, Bytes};
    use itc_chain::dag::{DagBody, DagKind, DagTxError};
    use itc_chain::types::DeviceId;

    use super::*;

    fn issue(key: &Keypair, i: usize) -> DagTx {
        let body = DagBody {
            issuer: DeviceId::new(format!("mqtt:unit-{i}")).unwrap(),
            kind: DagKind::Reading {
                data: Bytes::new(i.to_le_bytes().to_vec()).unwrap(),
            },
            parents: BoundedVec::new(roots().to_vec()).unwrap(),
            time_ms: 1_000,
            level: 0,
        };
        DagTx::issue(key, body, 0)
    }

    #[test]
    fn checks_shared_out_by_key_come_back_in_the_candidates_order() {
        let keys: Vec<Keypair> = (1..=5u8).map(|k| Keypair::from_seed([k; 32])).collect();
        let mut candidates = Vec::new();
        let mut expected: Vec<Result<Hash, DagError>> = Vec::new();
        for i in 0..PARALLEL_FROM * 3 {
            let key = &keys[i % keys.len()];
            let tx = issue(key, i);
            let id = tx.id();
            match i % 7 {
                0 => {
                    candidates.push(Candidate::Known(id));
                    expected.push(Err(DagError::Duplicate { id }));
                }
                1 => {
                    expected.push(Err(DagError::UnknownIssuer {
                        issuer: tx.body.issuer.clone(),
                    }));
                    candidates.push(Candidate::New(tx, None));
                }
                2 => {
                    // Checked under another device's key.
                    let other = keys[(i + 1) % keys.len()].public();
                    candidates.push(Candidate::New(tx, Some(other)));
                    expected.push(Err(DagError::Invalid(DagTxError::BadSignature)));
                }
                _ => {
                    candidates.push(Candidate::New(tx, Some(key.public())));
                    expected.push(Ok(id));
                }
            }
        }
        let outcomes: Vec<Result<Hash, DagError>> = check_all(candidates)
            .into_iter()
            .map(|outcome| outcome.map(|checked| checked.id()))
            .collect();
        assert_eq!(outcomes, expected);
    }
}
