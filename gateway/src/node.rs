//! The gateway node: drives the pure PBFT [`Replica`] with real time, the
//! network and sqlite.
//!
//! One task owns the replica. It waits for whichever comes first — a peer
//! message, a client's transactions, the earliest timer, a write becoming
//! durable, shutdown — feeds it in (with whatever else is already queued,
//! so a burst is handled in one go), then carries out the outputs in order:
//! - records to persist, and committed blocks, go to the node's
//!   [`persister`], which writes them in the background (one sqlite
//!   transaction for whatever queued up, synced if it holds records);
//! - a message that waits for records is held until everything handed to
//!   the persister before it is durable (the replica's durability rule);
//!   the others (a pre-prepare, relayed transactions) go at once;
//! - a committed block reaches subscribers once it is stored;
//! - requests for blocks are served from the store, after what is queued.
//!
//! So the driver never waits on the disk: while one replica's vote syncs,
//! it takes in and checks its peers' votes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use itc_chain::block::Header;
use itc_chain::crypto::{Hash, Keypair, PublicKey};
use itc_chain::genesis::Genesis;
use itc_chain::ledger::StateRead;
use itc_chain::pbft::{AnchorAvailability, Message, Output, Params, Record, Replica, Timer};
use itc_chain::state::{Entries, StateKey, StateProof, StateValue, ValidatorSets};
use itc_chain::store::{open_ledger, ChainStore};
use itc_chain::tx::ChainId;
use itc_chain::tx::SignedTx;
use itc_chain::types::{Height, TimestampMs};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::net::{DagInbound, Inbound, Inboxes, Network};
use crate::service::now_ms;
use crate::store::SqliteStore;
use persister::{CommittedPair, Persister, Ticket};

mod persister;
mod rounds;

pub use rounds::{RoundStep, Step};

/// Inbound messages queued from all peers together.
const INBOUND_QUEUE: usize = 8_192;
/// Inputs handled per burst before outputs are carried out.
const BURST: usize = 256;
/// Transactions gathered per burst: a backlog is checked in batches about
/// a block's size (cheaper per signature than small ones), while a round
/// waits behind at most one such batch.
const ADMIT_UP_TO: usize = 1_024;

/// Why a node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("opening the ledger: {0}")]
    Open(String),
    #[error("replica parameters: {0}")]
    Params(#[from] itc_chain::pbft::ParamsError),
    #[error("validator {key} has an address that does not parse: {addr}")]
    BadAddress { key: PublicKey, addr: String },
    #[error("the node's writer stopped")]
    WriterStopped,
    #[error("the node's writer panicked: {0}")]
    WriterPanicked(String),
}

/// Where a node stands, for status queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub height: Height,
    pub head: Hash,
    pub view: u64,
    pub changing_view: bool,
    pub pending: usize,
    /// This replica is the primary of its view.
    pub primary: bool,
}

/// A block the node committed.
#[derive(Clone, Debug)]
pub struct CommittedBlock {
    pub height: Height,
    pub head: Hash,
    pub txs: Arc<Vec<Hash>>,
    pub time_ms: TimestampMs,
}

/// The committed state as the API reads it: a copy of the entries (no
/// Merkle tree) and the tip, updated right after each block is stored, so
/// authorising a command needs neither the consensus task nor sqlite.
#[derive(Clone, Debug)]
pub struct CommittedView {
    pub chain_id: ChainId,
    pub entries: Entries,
    pub tip: Header,
}

/// A transaction the replica refused, and why.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub tx: Hash,
    pub error: String,
}

/// A state proof against the tip it was made at.
pub type ProofAtTip = (StateProof, Header);

/// What a running node offers the rest of the gateway (the API, benches).
#[derive(Clone)]
pub struct NodeHandle {
    pub public: PublicKey,
    submit: mpsc::Sender<Vec<SignedTx>>,
    status: watch::Receiver<NodeStatus>,
    commits: broadcast::Sender<CommittedBlock>,
    shutdown: watch::Sender<bool>,
    refusals: broadcast::Sender<Refusal>,
    queries: mpsc::Sender<Query>,
    committed: Arc<RwLock<CommittedView>>,
    pub store: SqliteStore,
    /// The peer channels, for the DAG's gossip.
    pub network: Network,
    dag_inbox: Arc<std::sync::Mutex<Option<mpsc::Receiver<DagInbound>>>>,
    /// Woken when the DAG holds more: prepares held back for data may go.
    available: Arc<tokio::sync::Notify>,
    steps: broadcast::Sender<RoundStep>,
}

/// A question only the replica's ledger can answer.
enum Query {
    Prove(StateKey, oneshot::Sender<Result<ProofAtTip, String>>),
}

impl NodeHandle {
    /// Hands transactions to the replica (admission, relay, proposal).
    pub async fn submit(&self, txs: Vec<SignedTx>) -> bool {
        self.submit.send(txs).await.is_ok()
    }

    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    pub fn status_watch(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Committed blocks from now on.
    pub fn commits(&self) -> broadcast::Receiver<CommittedBlock> {
        self.commits.subscribe()
    }

    /// The steps of consensus rounds this node reaches from now on
    /// ([`Step`]).
    pub fn rounds(&self) -> broadcast::Receiver<RoundStep> {
        self.steps.subscribe()
    }

    /// Transactions the replica refused from now on.
    pub fn refusals(&self) -> broadcast::Receiver<Refusal> {
        self.refusals.subscribe()
    }

    /// The committed state (read it briefly: the node writes it after
    /// every block).
    pub fn committed(&self) -> &Arc<RwLock<CommittedView>> {
        &self.committed
    }

    /// A proof of `key` against the current tip's state root.
    pub async fn prove(&self, key: StateKey) -> Result<ProofAtTip, String> {
        let (reply, answer) = oneshot::channel();
        self.queries
            .send(Query::Prove(key, reply))
            .await
            .map_err(|_| "the node has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the node has stopped".to_string())?
    }

    /// Stops the node after the input it is handling; nothing committed or
    /// persisted is lost.
    /// The DAG gossip peers sent; the one DAG service takes it.
    pub fn take_dag_inbox(&self) -> Option<mpsc::Receiver<DagInbound>> {
        self.dag_inbox.lock().ok()?.take()
    }

    /// The DAG holds more than before (see [`NodeConfig::availability`]).
    pub fn data_available(&self) {
        self.available.notify_one();
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// How to start a node.
pub struct NodeConfig {
    pub key: Keypair,
    pub genesis: Genesis,
    pub store: SqliteStore,
    pub listener: TcpListener,
    pub params: Params,
    /// The DAG data this gateway holds, if it runs one: backups prepare
    /// anchors only over tips they hold ([`AnchorAvailability`]).
    pub availability: Option<Arc<dyn AnchorAvailability>>,
}

/// The peers a gateway talks to: every validator of the active and the
/// pending set (so a gateway joining at the next epoch is connected, and
/// follows the chain, before it votes). A genesis with an address that
/// does not parse is refused at start, and the ledger refuses a validator
/// change with one; should one appear anyway it is skipped with a warning.
pub fn peer_addresses(sets: &ValidatorSets) -> Vec<(PublicKey, SocketAddr)> {
    let mut peers: Vec<(PublicKey, SocketAddr)> = Vec::new();
    for v in sets
        .active
        .validators()
        .iter()
        .chain(sets.pending.validators())
    {
        if peers.iter().any(|(k, _)| *k == v.key) {
            continue;
        }
        match v.socket_addr() {
            Ok(addr) => peers.push((v.key, addr)),
            Err(_) => {
                tracing::warn!(key = %v.key, addr = %v.addr.as_str(), "validator address does not parse; not dialed")
            }
        }
    }
    peers
}

/// Opens the ledger from the store, restores the replica from its records,
/// joins the network and runs until shutdown.
pub async fn start(
    config: NodeConfig,
) -> Result<(NodeHandle, JoinHandle<Result<(), NodeError>>), NodeError> {
    let NodeConfig {
        key,
        genesis,
        mut store,
        listener,
        params,
        availability,
    } = config;
    let public = key.public();
    if let Some(v) = genesis.validators.iter().find(|v| v.socket_addr().is_err()) {
        return Err(NodeError::BadAddress {
            key: v.key,
            addr: v.addr.as_str().to_string(),
        });
    }
    let ledger = open_ledger(&mut store, &genesis)
        .await
        .map_err(|e| NodeError::Open(e.to_string()))?;
    let sets = ledger.validator_sets();
    if !sets.active.contains(&public) {
        // Its peers accept it once a committed change names it (pending);
        // it follows the chain from then, and votes from the epoch on.
        tracing::info!(%public, "not an active validator: following the chain as a learner");
    }
    let peers = peer_addresses(&sets);
    let records = store.load_records().await?;
    let evidence = store.evidence().await?;
    let mut replica = Replica::new(
        Keypair::from_seed(*key.seed()),
        params,
        ledger,
        records,
        now_ms(),
    )?;
    if let Some(availability) = availability {
        replica = replica.with_availability(availability);
    }
    // Evidence kept before a restart goes on chain if it is not yet.
    for kept in &evidence {
        replica.report_equivocation(now_ms(), kept);
    }
    let (consensus_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
    let (transactions_tx, relayed) = mpsc::channel(INBOUND_QUEUE);
    let (dag_tx, dag_inbox) = mpsc::channel(INBOUND_QUEUE);
    let (network, accepting) = Network::start(
        Arc::new(key),
        genesis.chain_id.clone(),
        listener,
        peers,
        Inboxes {
            consensus: consensus_tx,
            transactions: transactions_tx,
            dag: dag_tx,
        },
    );
    let (submit, submissions) = mpsc::channel(1_024);
    let (status_tx, status) = watch::channel(status_of(&replica, replica.ledger().tip()));
    let (commits, _) = broadcast::channel(1_024);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let available = Arc::new(tokio::sync::Notify::new());
    let (refusals, _) = broadcast::channel(1_024);
    let (steps, _) = broadcast::channel(1_024);
    let (queries, queries_rx) = mpsc::channel(64);
    let committed = Arc::new(RwLock::new(CommittedView {
        chain_id: genesis.chain_id.clone(),
        entries: replica.ledger().state().entries(),
        tip: replica.ledger().tip().clone(),
    }));
    let handle = NodeHandle {
        public,
        submit,
        status,
        commits: commits.clone(),
        shutdown,
        refusals: refusals.clone(),
        queries,
        committed: committed.clone(),
        store: store.clone(),
        network: network.clone(),
        dag_inbox: Arc::new(std::sync::Mutex::new(Some(dag_inbox))),
        available: available.clone(),
        steps: steps.clone(),
    };
    let driver = Driver {
        replica,
        persister: Persister::start(store.clone()),
        store,
        network,
        timers: HashMap::new(),
        status: status_tx,
        commits,
        records: Vec::new(),
        held: VecDeque::new(),
        refusals,
        committed,
        steps,
    };
    let task = tokio::spawn(async move {
        let result = driver
            .run(
                inbound,
                relayed,
                submissions,
                queries_rx,
                available,
                shutdown_rx,
            )
            .await;
        // The listener closes with the node.
        accepting.abort();
        let _ = accepting.await;
        result
    });
    Ok((handle, task))
}

/// The replica's status at `tip`, the last block stored.
fn status_of(replica: &Replica, tip: &Header) -> NodeStatus {
    NodeStatus {
        height: tip.height,
        head: tip.hash(),
        view: replica.view(),
        changing_view: replica.is_changing_view(),
        pending: replica.pending(),
        primary: replica.is_primary(),
    }
}

struct Driver {
    replica: Replica,
    store: SqliteStore,
    network: Network,
    timers: HashMap<Timer, TimestampMs>,
    status: watch::Sender<NodeStatus>,
    commits: broadcast::Sender<CommittedBlock>,
    /// Records made since the last hand-over to the persister.
    records: Vec<Record>,
    persister: Persister,
    /// What waits for a ticket to be durable, in order.
    held: VecDeque<(Ticket, After)>,
    refusals: broadcast::Sender<Refusal>,
    committed: Arc<RwLock<CommittedView>>,
    steps: broadcast::Sender<RoundStep>,
}

/// An output acted on once what was persisted before it is durable.
enum After {
    Send(PublicKey, Message),
    Broadcast(Message),
    Publish(CommittedPair),
    ServeBlocks {
        to: PublicKey,
        from: Height,
        to_height: Height,
    },
    /// A state proof, made at the replica's tip: it goes once that tip's
    /// block is stored, so the caller can read the block's certificate.
    Prove(ProofReply, ProofAtTip),
}

type ProofReply = oneshot::Sender<Result<ProofAtTip, String>>;

enum Input {
    Peer(Box<Inbound>),
    Available,
}

/// Transactions gathered in one burst, admitted in one call (one batch
/// signature check): from this gateway's clients, and relayed by peers.
#[derive(Default)]
struct Arrivals {
    own: Vec<SignedTx>,
    relayed: Vec<SignedTx>,
}

impl Arrivals {
    fn len(&self) -> usize {
        self.own.len() + self.relayed.len()
    }

    fn add_relayed(&mut self, (_, message): Inbound) {
        if let Message::Transactions(txs) = message {
            self.relayed.extend(txs.into_inner());
        }
    }
}

impl Driver {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut relayed: mpsc::Receiver<Inbound>,
        mut submissions: mpsc::Receiver<Vec<SignedTx>>,
        mut queries: mpsc::Receiver<Query>,
        available: Arc<tokio::sync::Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let mut durable = self.persister.durable();
        self.carry_out().await?;
        // The replica's start persisted a view record, by which a later
        // start knows it restarted (and proposes nothing in that view).
        // Pre-prepares leave without waiting for records, so this one must
        // be durable before any input can make one.
        self.persister.wait_for(self.persister.submitted()).await?;
        self.release().await?;
        loop {
            let next_timer = self.timers.values().min().copied();
            let sleep = match next_timer {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3_600),
            };
            // Consensus first: transactions to verify wait behind a round,
            // never the other way round.
            let mut arrivals = Arrivals::default();
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => return self.persister.finish().await,
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Err(self.persister.failure().await);
                    }
                    None
                }
                Some(message) = inbound.recv() => Some(Input::Peer(Box::new(message))),
                _ = available.notified() => Some(Input::Available),
                _ = tokio::time::sleep(sleep) => None,
                Some(txs) = submissions.recv() => {
                    arrivals.own = txs;
                    None
                }
                Some(message) = relayed.recv() => {
                    arrivals.add_relayed(message);
                    None
                }
                Some(query) = queries.recv() => {
                    self.answer(query);
                    None
                }
            };
            let mut inputs: Vec<Input> = first.into_iter().collect();
            while inputs.len() < BURST {
                if let Ok(message) = inbound.try_recv() {
                    inputs.push(Input::Peer(Box::new(message)));
                } else {
                    break;
                }
            }
            // Transactions queued up, to one batch's worth, so a backlog
            // of them cannot hold a round up for long; clients' and peers'
            // in turn, so neither can starve the other.
            while arrivals.len() < ADMIT_UP_TO {
                let mut took = false;
                if let Ok(txs) = submissions.try_recv() {
                    arrivals.own.extend(txs);
                    took = true;
                }
                if let Ok(message) = relayed.try_recv() {
                    arrivals.add_relayed(message);
                    took = true;
                }
                if !took {
                    break;
                }
            }
            for input in inputs {
                let now = now_ms();
                match input {
                    Input::Peer(inbound) => {
                        let (from, message) = *inbound;
                        self.replica.handle_message(now, from, message)
                    }
                    Input::Available => self.replica.handle_available(now),
                }
            }
            if arrivals.len() > 0 {
                self.replica.admit(now_ms(), arrivals.own, arrivals.relayed);
            }
            let now = now_ms();
            let due: Vec<Timer> = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(t, _)| *t)
                .collect();
            for timer in due {
                self.timers.remove(&timer);
                self.replica.handle_timer(now, timer);
            }
            self.carry_out().await?;
        }
    }

    /// Hands the records made so far (and a committed block) to the
    /// persister; returns their ticket. If the writer has stopped, the
    /// node stops with its error, before anything that waited on it acts.
    async fn submit(&mut self, block: Option<CommittedPair>) -> Result<Ticket, NodeError> {
        let records = std::mem::take(&mut self.records);
        match self.persister.submit(records, block).await {
            Some(ticket) => Ok(ticket),
            None => Err(self.persister.failure().await),
        }
    }

    /// Acts on `after` once everything persisted before it (and `block`,
    /// if given) is durable.
    async fn hold(&mut self, block: Option<CommittedPair>, after: After) -> Result<(), NodeError> {
        let ticket = self.submit(block).await?;
        self.held.push_back((ticket, after));
        Ok(())
    }

    /// Acts on what was held for writes that are now durable.
    async fn release(&mut self) -> Result<(), NodeError> {
        let durable = self.persister.durable_ticket();
        let mut published = false;
        while self.held.front().is_some_and(|(t, _)| *t <= durable) {
            let Some((_, after)) = self.held.pop_front() else {
                break;
            };
            match after {
                After::Send(to, message) => self.network.send(&to, &message),
                After::Broadcast(message) => {
                    self.broadcast_step(&message, true);
                    self.network.broadcast(&message)
                }
                After::Publish(pair) => {
                    self.step(Step::Published, pair.0.block.header.height);
                    self.publish(&pair.0);
                    published = true;
                }
                After::ServeBlocks {
                    to,
                    from,
                    to_height,
                } => self.serve_blocks(to, from, to_height).await?,
                After::Prove(reply, proof) => {
                    let _ = reply.send(Ok(proof));
                }
            }
        }
        let status = match self.committed.read() {
            Ok(view) => status_of(&self.replica, &view.tip),
            Err(_) => status_of(&self.replica, self.replica.ledger().tip()),
        };
        if published || *self.status.borrow() != status {
            let _ = self.status.send(status);
        }
        Ok(())
    }

    /// Tells the round's subscribers, if any, that it reached `step`.
    fn step(&self, step: Step, height: Height) {
        if self.steps.receiver_count() > 0 {
            let at = std::time::Instant::now();
            let _ = self.steps.send(RoundStep { height, step, at });
        }
    }

    /// The round step a broadcast marks ([`Step::of_broadcast`]), if any.
    fn broadcast_step(&self, message: &Message, released: bool) {
        if let Some((step, height)) = Step::of_broadcast(message, released) {
            self.step(step, height);
        }
    }

    /// A block is stored: the API's view, the peers and subscribers learn
    /// of it.
    fn publish(&mut self, executed: &itc_chain::ledger::Executed) {
        let header = &executed.block.header;
        if let Ok(mut view) = self.committed.write() {
            view.entries.apply(&executed.changes.writes);
            view.tip = header.clone();
        }
        // A validator-set change (approved, or made active at the epoch)
        // changes who the peers are.
        for (key, value) in &executed.changes.writes {
            if let (StateKey::Validators, Some(StateValue::Validators(sets))) = (key, value) {
                self.network.set_peers(peer_addresses(sets));
            }
        }
        let _ = self.commits.send(CommittedBlock {
            height: header.height,
            head: header.hash(),
            txs: Arc::new(executed.tx_ids().to_vec()),
            time_ms: header.time_ms,
        });
    }

    async fn carry_out(&mut self) -> Result<(), NodeError> {
        while let Some(output) = self.replica.poll_output() {
            match output {
                Output::Persist(record) => self.records.push(record),
                Output::SetTimer { timer, at } => {
                    self.timers.insert(timer, at);
                }
                // A pre-prepare or relayed transactions leave at once,
                // ahead of what is held.
                Output::Send { to, message } if !message.waits_for_records() => {
                    self.network.send(&to, &message)
                }
                Output::Broadcast(message) if !message.waits_for_records() => {
                    self.broadcast_step(&message, false);
                    self.network.broadcast(&message)
                }
                Output::Send { to, message } => self.hold(None, After::Send(to, message)).await?,
                Output::Broadcast(message) => {
                    self.broadcast_step(&message, false);
                    self.hold(None, After::Broadcast(message)).await?
                }
                Output::Committed {
                    executed,
                    certificate,
                } => {
                    // Stored with the records before it, and with whatever
                    // else queues up while the disk is busy.
                    self.step(Step::Committed, executed.block.header.height);
                    let pair: CommittedPair = Arc::new((*executed, certificate));
                    self.hold(Some(pair.clone()), After::Publish(pair)).await?;
                }
                Output::ServeBlocks {
                    to,
                    from,
                    to_height,
                } => {
                    self.hold(
                        None,
                        After::ServeBlocks {
                            to,
                            from,
                            to_height,
                        },
                    )
                    .await?
                }
                Output::Rejected { tx, error } => {
                    tracing::debug!(%tx, %error, "transaction refused");
                    let _ = self.refusals.send(Refusal {
                        tx,
                        error: error.to_string(),
                    });
                }
                Output::Equivocation(evidence) => {
                    tracing::warn!(
                        primary = %evidence.primary,
                        view = evidence.view,
                        height = evidence.height,
                        "equivocating primary: two signed pre-prepares kept as evidence and reported on chain"
                    );
                    self.store.record_evidence(&evidence).await?;
                }
            }
        }
        self.submit(None).await?;
        self.release().await
    }

    /// Answers a query against the replica's ledger. Its tip is committed
    /// but may not be stored yet, so a proof waits (held, like a message)
    /// until every block handed to the persister so far is durable.
    fn answer(&mut self, query: Query) {
        match query {
            Query::Prove(key, reply) => {
                let ledger = self.replica.ledger();
                match ledger.prove(&key) {
                    Ok(proof) => {
                        let at = (proof, ledger.tip().clone());
                        let ticket = self.persister.submitted();
                        self.held.push_back((ticket, After::Prove(reply, at)));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
            }
        }
    }

    async fn serve_blocks(
        &mut self,
        to: PublicKey,
        from: Height,
        to_height: Height,
    ) -> Result<(), NodeError> {
        for height in from..=to_height {
            let Some((block, Some(certificate))) = self.store.block(height).await? else {
                break;
            };
            self.network
                .send(&to, &Message::Block { block, certificate });
        }
        Ok(())
    }
}
