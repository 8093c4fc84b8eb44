//! The PBFT replica: normal-case operation (§4.2), checkpoints and garbage
//! collection (§4.3), commit and execution, state transfer and
//! retransmission. The view change (§4.4) is in `view_change.rs`.

use crate::ledger::StateRead;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::block::{Block, CommitCertificate, CommitSig};
use crate::codec::BoundedVec;
use crate::crypto::{Domain, Hash, Keypair, PublicKey, Signature};
use crate::evidence::{proposal_payload, EquivocationProof, SignedDigest};
use crate::ledger::{Executed, Ledger, TxError};
use crate::state::StateKey;
use crate::tx::{ChainId, SignedTx, Tx, TxBody};
use crate::types::{Height, TimestampMs};
use crate::validators::ValidatorSet;

use super::mempool::{AdmitError, Mempool};
use super::message::{
    Checkpoint, CheckpointProof, Commit, Message, NewView, PrePrepare, Prepare, PreparedProof,
    Signed, Status, View, ViewChange,
};

/// Blocks sent per state-transfer request.
const TRANSFER_BATCH: u64 = 32;

/// Certified blocks held while waiting for their parents.
const MAX_FETCHED: usize = 4 * TRANSFER_BATCH as usize;

/// The replica's tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// K: a checkpoint every K heights (§4.3). Must divide the chain's
    /// epoch length, so validator-set changes land on checkpoints.
    pub checkpoint_interval: u64,
    /// L: heights accepted above the stable checkpoint (H = h + L).
    pub log_window: u64,
    /// Most transactions per block.
    pub max_batch: usize,
    /// How long the primary may wait to fill a batch.
    pub batch_delay_ms: u64,
    /// The first view-change timeout; it doubles with every view change
    /// that brings no progress (§4.5.2).
    pub view_timeout_ms: u64,
    /// The doubling stops here, so that after a long partition replicas do
    /// not wait for hours (a partial-synchrony bound must exist anyway).
    pub max_view_timeout_ms: u64,
    /// Period of status and retransmission.
    pub tick_ms: u64,
    /// Most blocks in flight: above the last committed one, a primary
    /// proposes (and a backup executes) up to this many, each on the
    /// uncommitted one below it. 1 waits for every block to commit before
    /// the next. Replicas may differ: a backup with less puts a block above
    /// its depth aside until the one below commits. The default is 1:
    /// with four replicas sharing two cores, pipelining lowered p50 at
    /// 300 transfers/s and raised it from 500 on (BENCHMARKS.md).
    pub pipeline_depth: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            checkpoint_interval: 10,
            log_window: 40,
            max_batch: 2_000,
            batch_delay_ms: 0,
            view_timeout_ms: 1_000,
            max_view_timeout_ms: 16_000,
            tick_ms: 100,
            pipeline_depth: 1,
        }
    }
}

/// Why replica parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "the checkpoint interval {interval} must be positive and divide the epoch length {epoch}"
    )]
    Checkpoint { interval: u64, epoch: u64 },
    #[error("the log window {window} must be at least twice the checkpoint interval {interval}")]
    Window { window: u64, interval: u64 },
    #[error("{field} must be positive")]
    Zero { field: &'static str },
}

/// The replica's timers. Setting one replaces its previous deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The primary's batch is due.
    Batch,
    /// No progress: suspect the primary (§4.4).
    Progress,
    /// Send status and retransmit.
    Tick,
}

/// Which vote a [`Record::Voted`] remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Vote {
    /// A new view's re-proposals (§4.4).
    PrePrepare,
    /// No longer written (see `Replica::silent_in`); read back from the
    /// records of earlier versions.
    Prepare,
    Commit,
}

/// What a replica must have on disk before it speaks again.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Record {
    /// It entered `view` (normal operation) or started changing to it.
    View { view: View, changing: bool },
    /// It voted for `digest` at (`view`, `height`).
    Voted {
        vote: Vote,
        view: View,
        height: Height,
        digest: Hash,
    },
    /// It holds this prepared certificate (carried into view changes).
    Prepared(Box<PreparedProof>),
    /// This checkpoint became stable; records below it are obsolete.
    Stable(CheckpointProof),
}

/// Whether the DAG transactions a block anchors are at hand here: data
/// availability for the side chain. A backup prepares a block only if every
/// tip its anchors name is solid here (known with all its ancestors), so a
/// prepared block's anchors are held by at least one honest backup (2f
/// backups prepared it, at most f of them faulty), from whom the rest
/// fetch them. A primary that anchors data nobody has gets no prepares and
/// is replaced (§4.4). The driver implements it over its tangle and calls
/// [`Replica::handle_available`] when more becomes solid.
pub trait AnchorAvailability: Send + Sync {
    fn is_solid(&self, tip: &Hash) -> bool;
}

/// What the replica asks its driver to do, in order.
#[derive(Clone, Debug)]
pub enum Output {
    Send {
        to: PublicKey,
        message: Message,
    },
    Broadcast(Message),
    /// Deliver [`Replica::handle_timer`] at `at` (replacing any earlier
    /// deadline of that timer).
    SetTimer {
        timer: Timer,
        at: TimestampMs,
    },
    /// Make this durable before sending any later message that
    /// [waits for records](Message::waits_for_records).
    Persist(Record),
    /// A block committed; store it (the replica's ledger has applied it).
    Committed {
        executed: Box<Executed>,
        certificate: CommitCertificate,
    },
    /// Send `to` the committed blocks `from..=to_height` from storage, as
    /// [`Message::Block`].
    ServeBlocks {
        to: PublicKey,
        from: Height,
        to_height: Height,
    },
    /// A client's transaction was refused.
    Rejected {
        tx: Hash,
        error: AdmitError,
    },
    /// A primary equivocated: it signed two blocks for one view and
    /// height. The replica has reported it on chain already (a
    /// [`TxBody::ReportEquivocation`] in its mempool); keep it.
    Equivocation(Box<EquivocationProof>),
}

/// A pre-prepare this replica accepted in `view`, executed against its
/// ledger (and, pipelining, the uncommitted blocks below it).
#[derive(Clone, Debug)]
pub(super) struct Accepted {
    pub view: View,
    pub signed: Signed<PrePrepare>,
    pub digest: Hash,
    pub executed: Option<Executed>,
}

/// Everything about one height above the last committed one.
#[derive(Default, Debug)]
pub(super) struct Slot {
    /// The pre-prepare for the current view, once accepted.
    pub accepted: Option<Accepted>,
    /// A pre-prepare that arrived before its parent was committed (or,
    /// pipelining, accepted in its view); checked then.
    pub waiting: Option<Signed<PrePrepare>>,
    pub prepares: BTreeMap<View, BTreeMap<PublicKey, Signed<Prepare>>>,
    pub commits: BTreeMap<View, BTreeMap<PublicKey, (Hash, CommitSig)>>,
    /// The prepared certificate of the highest view.
    pub prepared: Option<PreparedProof>,
    /// Own votes: (vote, view) -> digest.
    pub voted: BTreeMap<(View, u8), Hash>,
}

impl Slot {
    /// The commit votes this slot holds for `digest` in `view`.
    fn commits_for(&self, view: View, digest: Hash) -> impl Iterator<Item = &CommitSig> + '_ {
        self.commits
            .get(&view)
            .into_iter()
            .flat_map(|by| by.values())
            .filter(move |(d, _)| *d == digest)
            .map(|(_, vote)| vote)
    }

    /// The primary's signature over this slot in `view` that this replica
    /// holds: its accepted pre-prepare (whose digest is kept, so no header
    /// is hashed again), else the one waiting for the parent.
    fn held_proposal(&self, view: View) -> Option<SignedDigest> {
        match self.accepted.as_ref().filter(|a| a.view == view) {
            Some(a) => Some(SignedDigest {
                digest: a.digest,
                signature: a.signed.signature,
            }),
            None => self
                .waiting
                .as_ref()
                .filter(|w| w.body.view == view)
                .map(proposal),
        }
    }
}

/// The primary's signed assignment a pre-prepare carries.
fn proposal(signed: &Signed<PrePrepare>) -> SignedDigest {
    SignedDigest {
        digest: signed.body.block.header.hash(),
        signature: signed.signature,
    }
}

fn vote_tag(vote: Vote) -> u8 {
    match vote {
        Vote::PrePrepare => 0,
        Vote::Prepare => 1,
        Vote::Commit => 2,
    }
}

/// One PBFT replica.
pub struct Replica {
    pub(super) key: Keypair,
    pub(super) chain: ChainId,
    pub(super) params: Params,
    pub(super) ledger: Ledger,
    /// The validator set for the next height.
    pub(super) set: ValidatorSet,
    pub(super) view: View,
    /// Changing to `view` (§4.4), not yet in it.
    pub(super) changing: bool,
    pub(super) timeout_ms: u64,
    progress_deadline: Option<TimestampMs>,
    batch_deadline: Option<TimestampMs>,
    pub(super) mempool: Mempool,
    pub(super) slots: BTreeMap<Height, Slot>,
    /// Checkpoint messages by height and author.
    checkpoints: BTreeMap<Height, BTreeMap<PublicKey, Signed<Checkpoint>>>,
    /// The stable checkpoint (h); `None` means the genesis.
    pub(super) stable: Option<CheckpointProof>,
    /// Own latest checkpoint message (retransmitted).
    own_checkpoint: Option<Signed<Checkpoint>>,
    /// The latest view change from each replica.
    pub(super) view_changes: BTreeMap<PublicKey, Signed<ViewChange>>,
    /// The NEW-VIEW that started the current view (forwarded to laggards).
    pub(super) new_view: Option<NewView>,
    /// Certified blocks waiting for their parents (state transfer).
    fetched: BTreeMap<Height, (Block, CommitCertificate)>,
    /// Each peer's last reported height and when it first reported it.
    peer_heights: BTreeMap<PublicKey, (Height, TimestampMs)>,
    evidence: Vec<EquivocationProof>,
    /// What this replica holds of the DAG, if it anchors one.
    availability: Option<Arc<dyn AnchorAvailability>>,
    /// Heights whose pre-prepare it accepted but holds its prepare back,
    /// for want of anchored DAG data.
    awaiting_data: BTreeSet<Height>,
    /// The view this replica restarted in, if it restarted: it neither
    /// proposes nor prepares in that view. Pre-prepares and prepares leave
    /// without being persisted first (they are off the disk's critical
    /// path), so after a crash it cannot know which heights it already
    /// assigned or which blocks it already prepared in that view, and doing
    /// either twice for different blocks would be equivocation (§4.2). A
    /// prepared certificate still reaches every view change: a replica
    /// persists it before its COMMIT leaves (§4.2, §4.4). If it was primary,
    /// its backups time out and move to the next view (§4.4), as they would
    /// for any primary that stopped; if a backup, the others prepare
    /// without it.
    silent_in: Option<View>,
    pub(super) outputs: VecDeque<Output>,
}

impl Replica {
    /// A replica over `ledger` (opened from storage), resuming from the
    /// records it persisted before (empty for a fresh one). It emits a
    /// view record to persist, which must be durable before it gets any
    /// input (see `silent_in`).
    pub fn new(
        key: Keypair,
        params: Params,
        ledger: Ledger,
        records: impl IntoIterator<Item = Record>,
        now: TimestampMs,
    ) -> Result<Replica, ParamsError> {
        let epoch = ledger.params().epoch_length;
        let interval = params.checkpoint_interval;
        if interval == 0 || epoch % interval != 0 {
            return Err(ParamsError::Checkpoint { interval, epoch });
        }
        if params.log_window < 2 * interval {
            return Err(ParamsError::Window {
                window: params.log_window,
                interval,
            });
        }
        for (field, value) in [
            ("max_batch", params.max_batch as u64),
            ("view_timeout_ms", params.view_timeout_ms),
            ("tick_ms", params.tick_ms),
            ("pipeline_depth", params.pipeline_depth),
        ] {
            if value == 0 {
                return Err(ParamsError::Zero { field });
            }
        }
        let set = ledger.validator_sets().active;
        let mut replica = Replica {
            chain: ledger.params().chain_id.clone(),
            timeout_ms: params.view_timeout_ms,
            key,
            params,
            set,
            view: 0,
            changing: false,
            progress_deadline: None,
            batch_deadline: None,
            mempool: Mempool::default(),
            slots: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            stable: None,
            own_checkpoint: None,
            view_changes: BTreeMap::new(),
            new_view: None,
            fetched: BTreeMap::new(),
            peer_heights: BTreeMap::new(),
            evidence: Vec::new(),
            availability: None,
            awaiting_data: BTreeSet::new(),
            silent_in: None,
            outputs: VecDeque::new(),
            ledger,
        };
        let records: Vec<Record> = records.into_iter().collect();
        // Every start persists a view record (below), and the latest one is
        // always kept, so any earlier life of this replica left one.
        let restarted = records.iter().any(|r| matches!(r, Record::View { .. }));
        for record in &records {
            if let Record::Stable(proof) = record {
                if proof.height() > replica.low_mark() {
                    replica.stable = Some(proof.clone());
                }
            }
        }
        // Everything above the stable checkpoint is kept, committed or not:
        // a prepared certificate must reach any view change until then.
        let low = replica.low_mark();
        for record in records {
            match record {
                Record::View { view, changing } => {
                    if view > replica.view || (view == replica.view && !changing) {
                        replica.view = view;
                        replica.changing = changing;
                    }
                }
                Record::Voted {
                    vote,
                    view,
                    height,
                    digest,
                } if height > low => {
                    replica
                        .slot(height)
                        .voted
                        .insert((view, vote_tag(vote)), digest);
                }
                Record::Prepared(proof) if proof.height() > low => {
                    let slot = replica.slot(proof.height());
                    if slot
                        .prepared
                        .as_ref()
                        .is_none_or(|p| p.view() < proof.view())
                    {
                        slot.prepared = Some(*proof);
                    }
                }
                Record::Voted { .. } | Record::Prepared(_) | Record::Stable(_) => {}
            }
        }
        if restarted {
            replica.silent_in = Some(replica.view);
        }
        replica.persist(Record::View {
            view: replica.view,
            changing: replica.changing,
        });
        replica.set_timer(Timer::Tick, now + replica.params.tick_ms);
        if replica.changing {
            // It was asking for this view when it stopped: ask again.
            replica.send_view_change(now);
        }
        Ok(replica)
    }

    // --- Accessors ---

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn is_changing_view(&self) -> bool {
        self.changing
    }

    pub fn is_primary(&self) -> bool {
        self.set.primary(self.view).key == self.public()
    }

    pub fn pending(&self) -> usize {
        self.mempool.len()
    }

    /// The equivocations this replica has seen.
    pub fn evidence(&self) -> &[EquivocationProof] {
        &self.evidence
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // --- Inputs ---

    /// Gates prepares on the DAG data a block anchors (see
    /// [`AnchorAvailability`]); without it every block's data counts as
    /// at hand.
    pub fn with_availability(mut self, availability: Arc<dyn AnchorAvailability>) -> Replica {
        self.availability = Some(availability);
        self
    }

    fn anchors_available(&self, block: &Block) -> bool {
        self.tips_held(block.txs.as_slice())
    }

    /// Whether every tip the anchors among `txs` name is solid here.
    fn tips_held<'a>(&self, txs: impl IntoIterator<Item = &'a SignedTx>) -> bool {
        let Some(availability) = &self.availability else {
            return true;
        };
        txs.into_iter()
            .filter_map(|t| match &t.tx.body {
                TxBody::AnchorDag(anchor) => Some(anchor.tips.as_slice()),
                _ => None,
            })
            .flatten()
            .all(|tip| availability.is_solid(tip))
    }

    /// More DAG data became solid here: prepare what was held back for it
    /// (in the current view only; a later view re-proposes), and, as
    /// primary, propose what waited for it.
    pub fn handle_available(&mut self, now: TimestampMs) {
        for height in std::mem::take(&mut self.awaiting_data) {
            self.maybe_prepare(now, height);
        }
        // A pending anchor this primary left out may now be vouched for.
        self.maybe_propose(now);
    }

    /// A client submitted transactions to this replica: admit them, relay
    /// them to the other replicas, and propose if primary.
    pub fn handle_transactions(&mut self, now: TimestampMs, txs: Vec<SignedTx>) {
        self.admit(now, txs, Vec::new());
    }

    /// Transactions reached this replica: `own` from its clients, `relayed`
    /// by other replicas. They are admitted together, so their signatures
    /// are checked in one batch, which costs less per signature the larger
    /// it is; a driver may gather what queued up into one call. The `own`
    /// admitted are relayed to the other replicas, so that every replica
    /// knows every pending request and can suspect a primary that leaves
    /// one out (§4.1, §4.4); those refused are reported. Then the primary
    /// proposes.
    pub fn admit(&mut self, now: TimestampMs, own: Vec<SignedTx>, relayed: Vec<SignedTx>) {
        // Only the client's are needed again (to relay): the mempool takes
        // the rest without a copy.
        let mut txs = own.clone();
        txs.extend(relayed);
        let outcomes = self.mempool.admit_all(&self.ledger, txs, now);
        let admitted = outcomes.iter().any(|(_, outcome)| outcome.is_ok());
        let mut relay = Vec::new();
        for (tx, (id, outcome)) in own.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => relay.push(tx),
                Err(error) => self.outputs.push_back(Output::Rejected { tx: id, error }),
            }
        }
        for chunk in relay.chunks(crate::block::MAX_BLOCK_TXS) {
            if let Ok(batch) = BoundedVec::new(chunk.to_vec()) {
                self.outputs
                    .push_back(Output::Broadcast(Message::Transactions(batch)));
            }
        }
        if admitted {
            self.on_pending(now);
        }
    }

    /// A message from peer `from` (authenticated by the channel).
    pub fn handle_message(&mut self, now: TimestampMs, from: PublicKey, message: Message) {
        if from == self.public() {
            return;
        }
        match message {
            Message::Transactions(txs) => self.admit(now, Vec::new(), txs.into_inner()),
            Message::PrePrepare(signed) => self.on_pre_prepare(now, signed),
            Message::Prepare(signed) => self.on_prepare(now, signed),
            Message::Commit(commit) => self.on_commit(now, from, commit),
            Message::Checkpoint(signed) => self.on_checkpoint(now, signed),
            Message::ViewChange(signed) => self.on_view_change(now, signed),
            Message::NewView(new_view) => self.on_new_view(now, from, new_view),
            Message::Status(status) => self.on_status(now, from, status),
            Message::Block { block, certificate } => self.on_block(now, from, block, certificate),
        }
    }

    /// A timer set through [`Output::SetTimer`] fired.
    pub fn handle_timer(&mut self, now: TimestampMs, timer: Timer) {
        match timer {
            Timer::Batch => {
                if self.batch_deadline.is_some_and(|at| now >= at) {
                    self.batch_deadline = None;
                    self.maybe_propose(now);
                }
            }
            Timer::Progress => {
                if self.progress_deadline.is_some_and(|at| now >= at) {
                    self.progress_deadline = None;
                    // Suspecting the primary is a backup's vote (§4.4): a
                    // learner alone in a later view would stop following.
                    if !self.is_member() {
                        return;
                    }
                    // Transactions that can no longer apply are not the
                    // primary's fault: drop them, and wait no more if
                    // nothing else is pending.
                    if !self.changing && !self.waiting_for_block() && !self.prune_mempool(now) {
                        return;
                    }
                    // §4.4: the backup suspects the primary; §4.5.2: each
                    // further change waits twice as long.
                    let next = self.view + 1;
                    self.timeout_ms = self.timeout_ms.saturating_mul(2).min(
                        self.params
                            .max_view_timeout_ms
                            .max(self.params.view_timeout_ms),
                    );
                    self.start_view_change(now, next);
                }
            }
            Timer::Tick => {
                self.tick();
                self.set_timer(Timer::Tick, now + self.params.tick_ms);
            }
        }
    }

    // --- Normal case (§4.2) ---

    pub(super) fn primary(&self, view: View) -> PublicKey {
        self.set.primary(view).key
    }

    pub(super) fn slot(&mut self, height: Height) -> &mut Slot {
        self.slots.entry(height).or_default()
    }

    /// The stable checkpoint's height: the low watermark h (0 at the
    /// genesis).
    pub fn low_mark(&self) -> Height {
        self.stable.as_ref().map_or(0, |c| c.height())
    }

    /// §4.2: a replica accepts messages for heights in (h, H].
    fn in_window(&self, height: Height) -> bool {
        height > self.ledger.height()
            && height > self.low_mark()
            && height <= self.low_mark() + self.params.log_window
    }

    /// Whether a pre-prepare for the next height is accepted or waiting but
    /// not committed.
    fn waiting_for_block(&self) -> bool {
        self.slots
            .get(&(self.ledger.height() + 1))
            .is_some_and(|s| s.accepted.is_some() || s.waiting.is_some())
    }

    /// Dry-runs the mempool as a block and drops what fails for good;
    /// returns whether anything that would apply is left.
    fn prune_mempool(&mut self, now: TimestampMs) -> bool {
        let candidates = self.candidates(&|_| false);
        let proposer = self.primary(self.view);
        let mempool = &self.mempool;
        let Ok(dry_run) = self
            .ledger
            .propose_verified(candidates, now, proposer, &|id| mempool.contains(id))
        else {
            return !self.mempool.is_empty();
        };
        self.drop_refused(&dry_run.rejected);
        !dry_run.executed.block.txs.is_empty()
    }

    /// The next batch from the mempool, less the anchors whose data is not
    /// held here. A primary proposes only what it can vouch for, so a
    /// faulty primary's anchor over data it never gossiped, relayed to
    /// every mempool, does not stall each view after it; and a backup
    /// without the data does not blame a primary for leaving it out. The
    /// anchor stays pending until its data arrives or its height passes.
    fn candidates(&self, skip: &dyn Fn(&Hash) -> bool) -> Vec<SignedTx> {
        let mut candidates = self.mempool.batch(self.params.max_batch, skip);
        candidates.retain(|tx| self.tips_held([tx]));
        candidates
    }

    /// Forgets transactions a proposal refused, unless the nonce is merely
    /// early.
    fn drop_refused(&mut self, rejected: &[(Hash, TxError)]) {
        let dropped: Vec<Hash> = rejected
            .iter()
            .filter(
                |(_, e)| !matches!(e, TxError::BadNonce { expected, found } if found > expected),
            )
            .map(|(id, _)| *id)
            .collect();
        self.mempool.remove(&dropped);
    }

    fn on_pending(&mut self, now: TimestampMs) {
        self.arm_progress(now);
        self.maybe_propose(now);
    }

    /// §4.2: the primary assigns the next height to a batch. It proposes
    /// when it has committed the parent and the batch is full or due, and
    /// never in the view it restarted in (see `silent_in`).
    pub(super) fn maybe_propose(&mut self, now: TimestampMs) {
        if self.changing
            || !self.is_primary()
            || self.mempool.is_empty()
            || self.silent_in == Some(self.view)
        {
            return;
        }
        let view = self.view;
        // The first height with no proposal of this view. Pipelining: one
        // above a block not yet committed is proposed once that block is
        // prepared here, so each height's block is in every later view's
        // O set before the one above it can prepare (see `maybe_prepare`).
        let mut height = self.ledger.height() + 1;
        while let Some(slot) = self.slots.get(&height) {
            let busy = slot.accepted.as_ref().is_some_and(|a| a.view == view)
                || slot.waiting.is_some()
                || slot.voted.contains_key(&(view, vote_tag(Vote::PrePrepare)));
            if !busy {
                break;
            }
            if !self.prepared_here(view, height) {
                return;
            }
            height += 1;
        }
        if !self.in_window(height) {
            return;
        }
        let Some(parents) = self.uncommitted_parents(view, height) else {
            return;
        };
        // What the blocks in flight hold is not proposed again.
        let in_flight: HashSet<&Hash> = parents.iter().flat_map(|p| p.tx_ids()).collect();
        let skip = |id: &Hash| in_flight.contains(id);
        // The batch is due `batch_delay_ms` after the oldest transaction it
        // would hold arrived (not after the mempool last stood empty, which
        // under steady load it never does), or once it is full.
        if self.params.batch_delay_ms > 0 && self.mempool.len() < self.params.max_batch {
            let due = self
                .mempool
                .oldest(&skip)
                .map_or(now, |at| at + self.params.batch_delay_ms);
            if now < due {
                if self.batch_deadline.is_none_or(|at| due < at) {
                    self.batch_deadline = Some(due);
                    self.set_timer(Timer::Batch, due);
                }
                return;
            }
        }
        let candidates = self.candidates(&skip);
        if candidates.is_empty() {
            return;
        }
        let mempool = &self.mempool;
        let Ok(proposal) =
            self.ledger
                .propose_on(&parents, candidates, now, self.public(), &|id| {
                    mempool.contains(id)
                })
        else {
            return;
        };
        self.drop_refused(&proposal.rejected);
        if proposal.executed.block.txs.is_empty() {
            return;
        }
        let block = proposal.executed.block.clone();
        let signed = Signed::sign(&self.key, &self.chain, PrePrepare { view, block });
        let digest = signed.body.block.header.hash();
        // Not persisted: see `silent_in`.
        let slot = self.slot(height);
        slot.voted
            .insert((view, vote_tag(Vote::PrePrepare)), digest);
        slot.accepted = Some(Accepted {
            view,
            signed: signed.clone(),
            digest,
            executed: Some(proposal.executed),
        });
        self.outputs
            .push_back(Output::Broadcast(Message::PrePrepare(signed)));
        self.arm_progress(now);
        self.check_prepared(now, height);
    }

    /// §4.2: a backup accepts a pre-prepare if it is signed by the view's
    /// primary, in its view, within the watermarks, and it has accepted no
    /// other for that view and height. Here it must also execute.
    fn on_pre_prepare(&mut self, now: TimestampMs, signed: Signed<PrePrepare>) {
        let view = signed.body.view;
        let height = signed.body.block.header.height;
        if self.changing || view != self.view || !self.in_window(height) {
            return;
        }
        if signed.author != self.primary(view) || signed.verify(&self.chain, &self.set).is_err() {
            return;
        }
        self.accept_pre_prepare(now, signed);
    }

    /// Accepts a verified pre-prepare of the current view (from the primary
    /// or from a NEW-VIEW's O set).
    pub(super) fn accept_pre_prepare(&mut self, now: TimestampMs, signed: Signed<PrePrepare>) {
        let view = signed.body.view;
        let height = signed.body.block.header.height;
        let digest = signed.body.block.header.hash();
        let next = self.ledger.height() + 1;
        // The primary's signatures over this slot that this replica holds:
        // the pre-prepare it accepted or keeps waiting in this view, and
        // those backups forwarded in their prepares (checked before use).
        // One over another block is proof of equivocation.
        let slot = self.slot(height);
        let held = slot.held_proposal(view);
        let duplicate = slot
            .accepted
            .as_ref()
            .is_some_and(|a| a.view == view && a.digest == digest);
        let forwarded: Vec<SignedDigest> = slot
            .prepares
            .get(&view)
            .map(|by| by.values().map(|p| p.body.proposal()).collect())
            .unwrap_or_default();
        let other = held.filter(|o| o.digest != digest).or_else(|| {
            forwarded
                .into_iter()
                .filter(|o| o.digest != digest)
                .find(|o| self.signed_by_primary(view, height, o))
        });
        if let Some(other) = other {
            self.equivocation(now, view, height, other, proposal(&signed));
            return;
        }
        if duplicate {
            return;
        }
        // Never contradict an earlier vote in this view (even one made
        // before a restart).
        let slot = self.slot(height);
        for vote in [Vote::PrePrepare, Vote::Prepare, Vote::Commit] {
            if slot
                .voted
                .get(&(view, vote_tag(vote)))
                .is_some_and(|d| *d != digest)
            {
                return;
            }
        }
        let Some(parents) = self.uncommitted_parents(view, height) else {
            self.slot(height).waiting = Some(signed);
            return;
        };
        let mempool = &self.mempool;
        let result = self
            .ledger
            .execute_on(&parents, &signed.body.block, &|id| mempool.contains(id));
        self.slot(height).waiting = None;
        match result {
            Ok(executed) => {
                self.slot(height).accepted = Some(Accepted {
                    view,
                    signed,
                    digest,
                    executed: Some(executed),
                });
                // A valid proposal for the next height shows the primary
                // is working: the time a big block's round takes is not
                // held against it.
                if height == next && !self.changing {
                    self.disarm_progress();
                    self.arm_progress(now);
                }
                self.maybe_prepare(now, height);
                self.check_prepared(now, height);
                // Pipelining: the block above may have waited for this one.
                let above = self
                    .slots
                    .get_mut(&(height + 1))
                    .and_then(|s| s.waiting.take_if(|w| w.body.view == view));
                if let Some(above) = above {
                    self.accept_pre_prepare(now, above);
                }
            }
            Err(_) => {
                // An invalid block from the primary: suspect it now.
                let next = self.view + 1;
                self.start_view_change(now, next);
            }
        }
    }

    /// Whether the primary of `view` signed `proposal` for `height`.
    fn signed_by_primary(&self, view: View, height: Height, proposal: &SignedDigest) -> bool {
        let payload = proposal_payload(&self.chain, view, height, &proposal.digest);
        self.primary(view)
            .verify(Domain::Proposal, &payload, &proposal.signature)
            .is_ok()
    }

    /// The primary signed two blocks for one view and height: keep the
    /// proof, report it on chain and replace the primary (§4.4).
    fn equivocation(
        &mut self,
        now: TimestampMs,
        view: View,
        height: Height,
        first: SignedDigest,
        second: SignedDigest,
    ) {
        let proof = EquivocationProof {
            primary: self.primary(view),
            view,
            height,
            first,
            second,
        };
        if self.evidence.contains(&proof) {
            return;
        }
        self.evidence.push(proof.clone());
        self.report_equivocation(now, &proof);
        self.outputs
            .push_back(Output::Equivocation(Box::new(proof)));
        if view == self.view && !self.changing && self.is_member() {
            let next = self.view + 1;
            self.start_view_change(now, next);
        }
    }

    /// Puts `evidence` on chain: a report transaction from this replica
    /// through its own mempool, so it is relayed and the next honest
    /// primary orders it. Nothing if the chain records it already (a
    /// restarted gateway reports what it kept and the chain may lack).
    pub fn report_equivocation(&mut self, now: TimestampMs, proof: &EquivocationProof) {
        let key = StateKey::Equivocation {
            primary: proof.primary,
            view: proof.view,
            height: proof.height,
        };
        if self.ledger.get(&key).is_some() {
            return;
        }
        let report = Tx {
            chain_id: self.chain.clone(),
            sender: self.public(),
            nonce: 0,
            body: TxBody::ReportEquivocation(proof.clone()),
        }
        .sign(&self.key);
        self.handle_transactions(now, vec![report]);
    }

    /// Whether this replica votes: a gateway about to join follows the
    /// chain as a learner until the epoch that makes it a validator, and a
    /// removed one keeps following without voting.
    fn is_member(&self) -> bool {
        self.set.contains(&self.public())
    }

    /// The executed blocks a block of `view` at `height` extends, from the
    /// one above the tip: each accepted in `view` and not yet committed.
    /// `None` if one is missing, or if there would be more in flight than
    /// the pipeline's depth or a block that ends an epoch among them (the
    /// validator set changes when that commits).
    fn uncommitted_parents(&self, view: View, height: Height) -> Option<Vec<&Executed>> {
        let next = self.ledger.height() + 1;
        if height < next || height - next >= self.params.pipeline_depth {
            return None;
        }
        let epoch = self.ledger.params().epoch_length;
        (next..height)
            .map(|h| {
                let accepted = self.slots.get(&h)?.accepted.as_ref()?;
                if accepted.view != view || h % epoch == 0 {
                    return None;
                }
                accepted.executed.as_ref()
            })
            .collect()
    }

    /// Whether the block accepted at `height` in `view` is prepared here.
    fn prepared_here(&self, view: View, height: Height) -> bool {
        self.slots.get(&height).is_some_and(|slot| {
            slot.accepted.as_ref().is_some_and(|a| {
                a.view == view
                    && slot
                        .prepared
                        .as_ref()
                        .is_some_and(|p| p.view() == view && p.digest() == a.digest)
            })
        })
    }

    /// §4.2: a backup prepares the pre-prepare it accepted, once it holds
    /// the DAG data the block anchors and the block below is committed or
    /// prepared here. The last is pipelining's one rule: if a block
    /// prepares at 2f+1 replicas in view v, then the f+1 honest ones among
    /// them prepared its parent in v, and by the argument of §4.4 every
    /// later view's O set holds that parent at its height. So O is always
    /// a chain, and NEW-VIEW needs no change.
    fn maybe_prepare(&mut self, now: TimestampMs, height: Height) {
        let view = self.view;
        if self.changing || height <= self.ledger.height() || self.primary(view) == self.public() {
            return;
        }
        let Some(slot) = self.slots.get(&height) else {
            return;
        };
        let Some(accepted) = slot.accepted.as_ref().filter(|a| a.view == view) else {
            return;
        };
        if slot.voted.contains_key(&(view, vote_tag(Vote::Prepare))) {
            return;
        }
        if height > self.ledger.height() + 1 && !self.prepared_here(view, height - 1) {
            return;
        }
        if !self.anchors_available(&accepted.signed.body.block) {
            self.awaiting_data.insert(height);
            return;
        }
        let (digest, signature) = (accepted.digest, accepted.signed.signature);
        self.vote_prepare(view, height, digest, signature);
        self.check_prepared(now, height);
    }

    /// §4.2: a backup that accepts a pre-prepare multicasts PREPARE. Not
    /// persisted: see `silent_in`.
    fn vote_prepare(&mut self, view: View, height: Height, digest: Hash, proposal: Signature) {
        if !self.is_member() || self.silent_in == Some(view) {
            return;
        }
        let prepare = Signed::sign(
            &self.key,
            &self.chain,
            Prepare {
                view,
                height,
                digest,
                proposal,
            },
        );
        let slot = self.slot(height);
        slot.voted.insert((view, vote_tag(Vote::Prepare)), digest);
        slot.prepares
            .entry(view)
            .or_default()
            .insert(prepare.author, prepare.clone());
        self.outputs
            .push_back(Output::Broadcast(Message::Prepare(prepare)));
    }

    fn on_prepare(&mut self, now: TimestampMs, signed: Signed<Prepare>) {
        let Prepare { view, height, .. } = signed.body;
        if self.changing || view != self.view || !self.in_window(height) {
            return;
        }
        // §4.2: once prepared(m, v, n, i) holds, a further prepare for the
        // same m adds nothing (the certificate is formed and persisted), so
        // its signature is not checked. One for another block still is:
        // it may prove the primary equivocated.
        let prepared = self.slots.get(&height).and_then(|s| s.prepared.as_ref());
        if prepared.is_some_and(|p| p.view() == view && p.digest() == signed.body.digest) {
            return;
        }
        if signed.author == self.primary(view) || signed.verify(&self.chain, &self.set).is_err() {
            return;
        }
        let forwarded = signed.body.proposal();
        self.slot(height)
            .prepares
            .entry(view)
            .or_default()
            .entry(signed.author)
            .or_insert(signed);
        // The prepare carries the primary's signature over the block its
        // sender was sent: if that is not the block this replica was sent,
        // the primary signed two.
        let accepted = self
            .slots
            .get(&height)
            .and_then(|slot| slot.held_proposal(view));
        if let Some(mine) = accepted {
            if mine.digest != forwarded.digest && self.signed_by_primary(view, height, &forwarded) {
                self.equivocation(now, view, height, mine, forwarded);
                return;
            }
        }
        self.check_prepared(now, height);
    }

    /// §4.2: prepared(m, v, n, i) holds when the replica has the
    /// pre-prepare and 2f matching prepares from distinct backups; it then
    /// persists the certificate and multicasts COMMIT.
    fn check_prepared(&mut self, now: TimestampMs, height: Height) {
        let need = self.set.quorum() - 1;
        let view = self.view;
        let Some(slot) = self.slots.get(&height) else {
            return;
        };
        let Some(accepted) = &slot.accepted else {
            return;
        };
        // A learner has no commit vote to show it is past this point.
        let learned = !self.is_member()
            && slot
                .prepared
                .as_ref()
                .is_some_and(|p| p.view() == view && p.digest() == accepted.digest);
        if accepted.view != view
            || learned
            || slot.voted.contains_key(&(view, vote_tag(Vote::Commit)))
        {
            self.check_committed(now, height);
            return;
        }
        let digest = accepted.digest;
        let matching: Vec<Signed<Prepare>> = slot
            .prepares
            .get(&view)
            .map(|by| {
                by.values()
                    .filter(|p| p.body.digest == digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if matching.len() < need {
            return;
        }
        let Ok(prepares) = BoundedVec::new(matching) else {
            return;
        };
        let proof = PreparedProof {
            pre_prepare: accepted.signed.clone(),
            prepares,
        };
        self.persist(Record::Prepared(Box::new(proof.clone())));
        if !self.is_member() {
            self.slot(height).prepared = Some(proof);
            self.check_committed(now, height);
            return;
        }
        self.persist(Record::Voted {
            vote: Vote::Commit,
            view,
            height,
            digest,
        });
        let vote = CommitSig::sign(&self.key, &digest);
        let me = self.public();
        let slot = self.slot(height);
        slot.prepared = Some(proof);
        slot.voted.insert((view, vote_tag(Vote::Commit)), digest);
        slot.commits
            .entry(view)
            .or_default()
            .insert(me, (digest, vote.clone()));
        self.outputs
            .push_back(Output::Broadcast(Message::Commit(Commit {
                view,
                height,
                digest,
                vote,
            })));
        self.check_committed(now, height);
        // Pipelining: the block above may prepare now, and the primary may
        // propose one more.
        self.maybe_prepare(now, height + 1);
        self.maybe_propose(now);
    }

    fn on_commit(&mut self, now: TimestampMs, from: PublicKey, commit: Commit) {
        let Commit {
            view,
            height,
            digest,
            vote,
        } = commit;
        if vote.validator != from || !self.set.contains(&from) || !self.in_window(height) {
            return;
        }
        // §4.2: a height this replica has committed has its certificate;
        // a late commit for it adds nothing and is not checked.
        if height <= self.ledger.height() {
            return;
        }
        // §4.2 accepts commits for the current view only; a replica still
        // changing view keeps them too, since they carry the same votes.
        if view != self.view {
            return;
        }
        // A block waiting for its parent to commit (pipelining) may hold a
        // quorum of commits already: more add nothing and are not checked.
        let matching = self
            .slots
            .get(&height)
            .map_or(0, |s| s.commits_for(view, digest).count());
        if matching >= self.set.quorum() {
            return;
        }
        if from
            .verify(Domain::Commit, digest.as_bytes(), &vote.signature)
            .is_err()
        {
            return;
        }
        self.slot(height)
            .commits
            .entry(view)
            .or_default()
            .entry(from)
            .or_insert((digest, vote));
        self.check_committed(now, height);
    }

    /// §4.2: committed-local(m, v, n, i) holds when the replica is prepared
    /// and has 2f+1 matching commits; requests execute in height order, so
    /// only the next height can commit.
    fn check_committed(&mut self, now: TimestampMs, height: Height) {
        if height != self.ledger.height() + 1 {
            return;
        }
        let quorum = self.set.quorum();
        let Some(slot) = self.slots.get(&height) else {
            return;
        };
        let (Some(accepted), Some(prepared)) = (&slot.accepted, &slot.prepared) else {
            return;
        };
        if prepared.view() != accepted.view || prepared.digest() != accepted.digest {
            return;
        }
        let digest = accepted.digest;
        let votes: Vec<CommitSig> = slot.commits_for(accepted.view, digest).cloned().collect();
        if votes.len() < quorum {
            return;
        }
        let Some(header) = accepted.executed.as_ref().map(|e| &e.block.header) else {
            return;
        };
        let Ok(certificate) = CommitCertificate::new(header, votes) else {
            return;
        };
        // The slot is done with its execution result: move it, not a copy.
        let executed = self
            .slots
            .get_mut(&height)
            .and_then(|s| s.accepted.as_mut())
            .and_then(|a| a.executed.take());
        if let Some(executed) = executed {
            self.commit(now, executed, certificate);
        }
    }

    /// Applies a committed block: ledger, store, mempool, checkpoint, timers.
    pub(super) fn commit(
        &mut self,
        now: TimestampMs,
        executed: Executed,
        certificate: CommitCertificate,
    ) {
        let height = executed.block.header.height;
        let digest = executed.block.header.hash();
        if self.ledger.commit(&executed).is_err() {
            return;
        }
        self.mempool.remove(executed.tx_ids());
        self.outputs.push_back(Output::Committed {
            executed: Box::new(executed),
            certificate,
        });
        let set = self.ledger.validator_sets().active;
        if set != self.set {
            // An epoch changed the set: what validators that left last
            // reported is kept no longer.
            self.peer_heights.retain(|key, _| set.contains(key));
            self.set = set;
        }
        // The slot stays until the next stable checkpoint: its prepared
        // certificate must go into any view change before then (§4.4).
        if let Some(accepted) = self
            .slots
            .get_mut(&height)
            .and_then(|s| s.accepted.as_mut())
        {
            accepted.executed = None;
        }
        // A view that commits something new has proved itself (§4.5.2).
        self.timeout_ms = self.params.view_timeout_ms;
        self.progress_deadline = None;
        if height % self.params.checkpoint_interval == 0 {
            self.send_checkpoint(now, height, digest);
        }
        self.after_progress(now);
    }

    /// After the tip moved: check what waited for it, re-arm the timer,
    /// propose.
    pub(super) fn after_progress(&mut self, now: TimestampMs) {
        let next = self.ledger.height() + 1;
        if let Some((block, certificate)) = self.fetched.remove(&next) {
            self.apply_certified(now, block, certificate);
            return;
        }
        self.fetched.retain(|h, _| *h > next);
        if let Some(waiting) = self.slots.get_mut(&next).and_then(|s| s.waiting.take()) {
            if waiting.body.view == self.view && !self.changing {
                self.accept_pre_prepare(now, waiting);
            }
        } else {
            self.maybe_prepare(now, next);
            self.check_prepared(now, next);
        }
        if !self.mempool.is_empty() || self.slots.contains_key(&(self.ledger.height() + 1)) {
            self.arm_progress(now);
        }
        self.maybe_propose(now);
    }

    // --- Checkpoints and garbage collection (§4.3) ---

    fn send_checkpoint(&mut self, now: TimestampMs, height: Height, digest: Hash) {
        let signed = Signed::sign(&self.key, &self.chain, Checkpoint { height, digest });
        self.own_checkpoint = Some(signed.clone());
        self.outputs
            .push_back(Output::Broadcast(Message::Checkpoint(signed.clone())));
        self.on_checkpoint(now, signed);
    }

    /// §4.3: checkpoint messages are kept for heights above the low
    /// watermark, within twice the log window of where this replica is:
    /// of its stable checkpoint, or of its tip if state transfer took it
    /// further. Counted from the stable checkpoint alone, a replica that
    /// caught up past its window by certified blocks would refuse every
    /// later checkpoint (the others retransmit only their latest), and so
    /// every later pre-prepare, until a view change brought it one.
    fn on_checkpoint(&mut self, now: TimestampMs, signed: Signed<Checkpoint>) {
        let height = signed.body.height;
        let here = self.low_mark().max(self.ledger.height());
        if height <= self.low_mark()
            || height.abs_diff(here) > 2 * self.params.log_window
            || height % self.params.checkpoint_interval != 0
            || signed.verify(&self.chain, &self.set).is_err()
        {
            return;
        }
        let digest = signed.body.digest;
        let by = self.checkpoints.entry(height).or_default();
        by.entry(signed.author).or_insert(signed);
        let matching: Vec<Signed<Checkpoint>> = by
            .values()
            .filter(|c| c.body.digest == digest)
            .cloned()
            .collect();
        if matching.len() < self.set.quorum() {
            return;
        }
        let Ok(checkpoints) = BoundedVec::new(matching) else {
            return;
        };
        self.make_stable(now, CheckpointProof { checkpoints });
    }

    /// A checkpoint became stable: discard the log at and below it (§4.3).
    pub(super) fn make_stable(&mut self, now: TimestampMs, proof: CheckpointProof) {
        let height = proof.height();
        if height <= self.low_mark() {
            return;
        }
        self.persist(Record::Stable(proof.clone()));
        self.stable = Some(proof);
        self.slots.retain(|h, _| *h > height);
        self.checkpoints.retain(|h, _| *h > height);
        // Behind the stable checkpoint: fetch blocks from a peer that signed it.
        if self.ledger.height() < height {
            self.request_blocks(height);
        }
        self.maybe_propose(now);
    }

    // --- Retransmission and state transfer ---

    fn status(&self) -> Message {
        Message::Status(Status {
            view: self.view,
            height: self.ledger.height(),
            changing_view: self.changing,
        })
    }

    /// Ask the stable checkpoint's signers for blocks up to `target`.
    fn request_blocks(&mut self, target: Height) {
        let me = self.public();
        let signers: Vec<PublicKey> = self
            .stable
            .iter()
            .flat_map(|p| p.checkpoints.as_slice().iter().map(|c| c.author))
            .filter(|a| *a != me)
            .collect();
        let status = self.status();
        if signers.is_empty() || target <= self.ledger.height() {
            self.outputs.push_back(Output::Broadcast(status));
            return;
        }
        for to in signers {
            self.outputs.push_back(Output::Send {
                to,
                message: status.clone(),
            });
        }
    }

    /// Periodic: say where this replica is, and resend what a lost message
    /// may have kept from others.
    fn tick(&mut self) {
        self.outputs.push_back(Output::Broadcast(self.status()));
        if self.changing {
            let me = self.public();
            if let Some(own) = self.view_changes.get(&me) {
                if own.body.new_view == self.view {
                    self.outputs
                        .push_back(Output::Broadcast(Message::ViewChange(own.clone())));
                }
            }
            return;
        }
        if let Some(own) = &self.own_checkpoint {
            self.outputs
                .push_back(Output::Broadcast(Message::Checkpoint(own.clone())));
        }
        let me = self.public();
        let next = self.ledger.height() + 1;
        let view = self.view;
        let Some(slot) = self.slots.get(&next) else {
            return;
        };
        let Some(accepted) = &slot.accepted else {
            return;
        };
        if accepted.view != view {
            return;
        }
        if accepted.signed.author == me {
            self.outputs
                .push_back(Output::Broadcast(Message::PrePrepare(
                    accepted.signed.clone(),
                )));
        }
        if let Some(own) = slot.prepares.get(&view).and_then(|by| by.get(&me)) {
            self.outputs
                .push_back(Output::Broadcast(Message::Prepare(own.clone())));
        }
        if let Some((digest, vote)) = slot.commits.get(&view).and_then(|by| by.get(&me)) {
            self.outputs
                .push_back(Output::Broadcast(Message::Commit(Commit {
                    view,
                    height: next,
                    digest: *digest,
                    vote: vote.clone(),
                })));
        }
    }

    /// A peer's status. Blocks go to a peer that needs them: one more than
    /// a height behind (restarted, cut off), or one that has reported the
    /// same height for a whole tick (it missed the messages that would
    /// have committed the next one). A peer one height behind that is
    /// still progressing is about to commit that block itself; serving it
    /// the block would only cost both sides a block's worth of reading,
    /// sending and decoding (at saturation that was about four blocks
    /// served per block committed).
    fn on_status(&mut self, now: TimestampMs, from: PublicKey, status: Status) {
        if !self.set.contains(&from) {
            return;
        }
        let height = self.ledger.height();
        let since = match self.peer_heights.get(&from) {
            Some((reported, since)) if *reported == status.height => *since,
            _ => now,
        };
        self.peer_heights.insert(from, (status.height, since));
        let stuck = now.saturating_sub(since) >= self.params.tick_ms;
        if status.height + 1 < height || (status.height < height && stuck) {
            self.outputs.push_back(Output::ServeBlocks {
                to: from,
                from: status.height + 1,
                to_height: height.min(status.height + TRANSFER_BATCH),
            });
        }
        // A replica in an older view, or still changing to ours, missed
        // the NEW-VIEW that started ours.
        let missed = status.view < self.view || (status.view == self.view && status.changing_view);
        if !self.changing && missed {
            if let Some(new_view) = &self.new_view {
                self.outputs.push_back(Output::Send {
                    to: from,
                    message: Message::NewView(new_view.clone()),
                });
            }
        }
        if status.height > height && self.fetched.is_empty() {
            self.outputs.push_back(Output::Send {
                to: from,
                message: self.status(),
            });
        }
    }

    /// Whether a status from `key` is on record (tests: the record of
    /// validators that left is dropped).
    #[cfg(test)]
    pub(super) fn has_status_of(&self, key: &PublicKey) -> bool {
        self.peer_heights.contains_key(key)
    }

    /// State transfer: a committed block, trusted only through its
    /// certificate and re-execution.
    fn on_block(
        &mut self,
        now: TimestampMs,
        from: PublicKey,
        block: Block,
        certificate: CommitCertificate,
    ) {
        let height = block.header.height;
        let tip = self.ledger.height();
        if height <= tip || height > tip + MAX_FETCHED as u64 {
            return;
        }
        if height > tip + 1 {
            self.fetched.insert(height, (block, certificate));
            return;
        }
        let before = self.ledger.height();
        self.apply_certified(now, block, certificate);
        // Still behind the sender: ask for more.
        if self.ledger.height() > before && self.fetched.is_empty() {
            self.outputs.push_back(Output::Send {
                to: from,
                message: self.status(),
            });
        }
    }

    fn apply_certified(&mut self, now: TimestampMs, block: Block, certificate: CommitCertificate) {
        if certificate.verify(&block.header, &self.set).is_err() {
            return;
        }
        let Ok(executed) = self.ledger.execute(&block) else {
            return;
        };
        self.commit(now, executed, certificate);
    }

    // --- Helpers ---

    pub(super) fn persist(&mut self, record: Record) {
        self.outputs.push_back(Output::Persist(record));
    }

    pub(super) fn set_timer(&mut self, timer: Timer, at: TimestampMs) {
        self.outputs.push_back(Output::SetTimer { timer, at });
    }

    /// §4.4: a backup waiting for a request to execute keeps a timer.
    /// While changing view the timer follows the view-change rule instead
    /// (see `arm_view_change_timer`).
    pub(super) fn arm_progress(&mut self, now: TimestampMs) {
        if !self.changing {
            self.arm_timer(now);
        }
    }

    pub(super) fn arm_timer(&mut self, now: TimestampMs) {
        if self.progress_deadline.is_none() {
            let at = now + self.timeout_ms;
            self.progress_deadline = Some(at);
            self.set_timer(Timer::Progress, at);
        }
    }

    pub(super) fn disarm_progress(&mut self) {
        self.progress_deadline = None;
    }

    /// Restarts the timer from now (entering a view or starting a change).
    pub(super) fn rearm_progress(&mut self, now: TimestampMs) {
        self.progress_deadline = None;
        self.arm_progress(now);
    }
}
