//! The tangle: which transactions are known, solid, tips, confirmed.
//!
//! Pure, in the style of the rest of the core: transactions come in through
//! [`Tangle::handle_tx`] with the issuer's key (from chain state) and the
//! time, parents to fetch go out through [`Tangle::poll_missing`], and
//! randomness for tip selection is passed in.
//!
//! - **Solidification**: a transaction is solid once all its ancestors are
//!   known and solid; until then it waits, and its unknown parents are
//!   asked for.
//! - **Tip selection**: uniform random tip selection over non-lazy tips
//!   (IOTA TIP-3, "Uniform Random Tip Selection"): a transaction is lazy
//!   when it approves one the network has moved on from that is old, or a
//!   lazy one — as a parasite chain hanging off old
//!   transactions does. Lazy transactions are never tips, never selected
//!   and never anchored, so what they carry is not confirmed unless
//!   honest issuers approve it; nor do they take tips away.
//! - **Per-issuer rate limits** over a sliding window.
//! - **Anchoring and confirmation**: a PBFT block carries an anchor over
//!   the current non-lazy tips and lists the payments its cone would apply
//!   (the first of each (payer, nonce), in cone order); when it commits,
//!   [`Tangle::confirm`] takes the anchor's past cone in one deterministic
//!   order (parents first, ties by id), and a payment the ledger did not
//!   apply (a double spend: the one anchored first wins; or one it could
//!   not honour) is marked conflicting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::tx::{CheckedDagTx, DagKind, DagTx, DagTxError};
use crate::crypto::{AccountId, Hash, PublicKey};
use crate::types::{DeviceId, Height, TimestampMs};

/// The two roots every tangle starts from (a transaction needs two
/// distinct parents).
pub fn roots() -> [Hash; 2] {
    [
        Hash::digest(b"itc-dag-root-0"),
        Hash::digest(b"itc-dag-root-1"),
    ]
}

/// Limits and ages.
#[derive(Clone, Debug)]
pub struct TangleConfig {
    /// Transactions one issuer may add per window.
    pub per_issuer: usize,
    pub window_ms: u64,
    /// How far in the future a transaction's time may be.
    pub max_skew_ms: u64,
    /// A tip whose newest parent is older than this is lazy.
    pub max_parent_age_ms: u64,
    /// How long a transaction may wait for missing parents before it is
    /// dropped ([`Tangle::expire`]).
    pub max_wait_ms: u64,
}

impl Default for TangleConfig {
    fn default() -> Self {
        TangleConfig {
            per_issuer: 100,
            window_ms: 1_000,
            max_skew_ms: 60_000,
            max_parent_age_ms: 120_000,
            max_wait_ms: 30_000,
        }
    }
}

/// Why a transaction was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error(transparent)]
    Invalid(#[from] DagTxError),
    #[error("{issuer} is not a device registered on chain")]
    UnknownIssuer { issuer: DeviceId },
    #[error("transaction {id} is known already")]
    Duplicate { id: Hash },
    #[error("{issuer} issued {count} transactions in {window_ms} ms; the limit is {limit}")]
    RateLimited {
        issuer: DeviceId,
        count: usize,
        limit: usize,
        window_ms: u64,
    },
    #[error("the transaction's time is {ahead_ms} ms ahead of this gateway's clock")]
    FromTheFuture { ahead_ms: u64 },
    #[error("the anchor names {id}, which is not a solid transaction here")]
    UnknownTip { id: Hash },
    #[error(
        "transaction {id} waited {waited_ms} ms for parents that never arrived ({missing} missing)"
    )]
    Orphaned {
        id: Hash,
        missing: usize,
        waited_ms: u64,
    },
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    /// Known, waiting for ancestors.
    Pending {
        solid: bool,
    },
    Confirmed {
        height: Height,
    },
    /// Confirmed at `height`, but its payment was not applied (a double
    /// spend, or one the ledger could not honour).
    Conflicting {
        height: Height,
    },
}

impl Status {
    /// Confirmed or conflicting: settled by a committed anchor.
    pub fn is_final(&self) -> bool {
        matches!(self, Status::Confirmed { .. } | Status::Conflicting { .. })
    }
}

/// A transaction the latest [`Tangle::confirm`] confirmed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub id: Hash,
    /// `false` for a conflicting payment.
    pub applied: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    tx: DagTx,
    solid: bool,
    lazy: bool,
    status: Status,
    /// When this gateway took it (for [`Tangle::expire`]).
    arrived: TimestampMs,
}

/// The tangle at one gateway.
#[derive(Debug, Clone)]
pub struct Tangle {
    config: TangleConfig,
    txs: HashMap<Hash, Entry>,
    /// Unknown parent → transactions waiting for it.
    waiting: HashMap<Hash, Vec<Hash>>,
    missing: BTreeSet<Hash>,
    /// Parent → the transactions that approve it (for proofs).
    children: HashMap<Hash, Vec<Hash>>,
    tips: BTreeSet<Hash>,
    recent: HashMap<DeviceId, Vec<TimestampMs>>,
    spent: HashMap<(AccountId, u64), Hash>,
    /// Became solid since the last [`Tangle::poll_solidified`].
    solidified: Vec<Hash>,
}

impl Tangle {
    pub fn new(config: TangleConfig) -> Tangle {
        Tangle {
            config,
            txs: HashMap::new(),
            waiting: HashMap::new(),
            missing: BTreeSet::new(),
            children: HashMap::new(),
            tips: roots().into_iter().collect(),
            recent: HashMap::new(),
            spent: HashMap::new(),
            solidified: Vec::new(),
        }
    }

    /// Known here with all its ancestors (or a root).
    pub fn is_solid(&self, id: &Hash) -> bool {
        roots().contains(id) || self.txs.get(id).is_some_and(|e| e.solid)
    }

    pub fn status(&self, id: &Hash) -> Status {
        self.txs.get(id).map_or(Status::Unknown, |e| e.status)
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn get(&self, id: &Hash) -> Option<&DagTx> {
        self.txs.get(id).map(|e| &e.tx)
    }

    /// Takes a transaction issued by the holder of `key` (the issuer's key
    /// on chain) at `now`. Returns its id.
    pub fn handle_tx(
        &mut self,
        tx: DagTx,
        key: &PublicKey,
        now: TimestampMs,
    ) -> Result<Hash, DagError> {
        let id = tx.id();
        if self.txs.contains_key(&id) {
            return Err(DagError::Duplicate { id });
        }
        self.handle_checked(tx.checked(key)?, now)
    }

    /// [`Tangle::handle_tx`] for a transaction checked already.
    pub fn handle_checked(&mut self, tx: CheckedDagTx, now: TimestampMs) -> Result<Hash, DagError> {
        let id = tx.id();
        let tx = tx.into_inner();
        if self.txs.contains_key(&id) {
            return Err(DagError::Duplicate { id });
        }
        if tx.body.time_ms > now.saturating_add(self.config.max_skew_ms) {
            return Err(DagError::FromTheFuture {
                ahead_ms: tx.body.time_ms - now,
            });
        }
        let window_start = now.saturating_sub(self.config.window_ms);
        let recent = self.recent.entry(tx.body.issuer.clone()).or_default();
        recent.retain(|&t| t > window_start);
        if recent.len() >= self.config.per_issuer {
            return Err(DagError::RateLimited {
                issuer: tx.body.issuer.clone(),
                count: recent.len(),
                limit: self.config.per_issuer,
                window_ms: self.config.window_ms,
            });
        }
        recent.push(now);
        self.insert(id, tx, Status::Pending { solid: false }, now);
        Ok(id)
    }

    /// Puts back a transaction this gateway had taken (checked then) with
    /// the status it had, as a restart does: parents before children.
    pub fn restore(&mut self, tx: DagTx, status: Status) {
        let id = tx.id();
        if self.txs.contains_key(&id) {
            return;
        }
        if let (Status::Confirmed { .. }, DagKind::Payment { from, nonce, .. }) =
            (status, &tx.body.kind)
        {
            self.spent.insert((*from, *nonce), id);
        }
        let arrived = tx.body.time_ms;
        self.insert(id, tx, status, arrived);
    }

    /// Adds a transaction: it waits on every parent not solid yet, and
    /// unknown ones are asked for; then it may be solid at once.
    fn insert(&mut self, id: Hash, tx: DagTx, status: Status, arrived: TimestampMs) {
        self.missing.remove(&id);
        let settled = status.is_final();
        for parent in tx.body.parents.as_slice() {
            self.children.entry(*parent).or_default().push(id);
            if settled || self.is_solid(parent) {
                continue;
            }
            self.waiting.entry(*parent).or_default().push(id);
            if !self.txs.contains_key(parent) {
                self.missing.insert(*parent);
            }
        }
        self.txs.insert(
            id,
            Entry {
                tx,
                solid: false,
                lazy: false,
                status,
                arrived,
            },
        );
        self.solidify(id);
    }

    /// Drops transactions that waited longer than `max_wait_ms` for
    /// parents that never came, with the reason.
    pub fn expire(&mut self, now: TimestampMs) -> Vec<DagError> {
        let limit = self.config.max_wait_ms;
        let stale: Vec<Hash> = self
            .txs
            .iter()
            .filter(|(_, e)| !e.solid && now.saturating_sub(e.arrived) > limit)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(stale.len());
        for id in stale {
            let Some(entry) = self.txs.remove(&id) else {
                continue;
            };
            let parents = entry.tx.body.parents.as_slice();
            let missing = parents.iter().filter(|p| !self.is_solid(p)).count();
            for parent in parents {
                self.unlink(parent, &id);
            }
            out.push(DagError::Orphaned {
                id,
                missing,
                waited_ms: now.saturating_sub(entry.arrived),
            });
        }
        // Parents only the dropped ones wanted are no longer asked for.
        self.missing.retain(|p| self.waiting.contains_key(p));
        out
    }

    fn unlink(&mut self, parent: &Hash, child: &Hash) {
        for map in [&mut self.waiting, &mut self.children] {
            if let Some(list) = map.get_mut(parent) {
                list.retain(|c| c != child);
                if list.is_empty() {
                    map.remove(parent);
                }
            }
        }
    }

    /// Forgets confirmed transactions for which `prune` says so (older than
    /// the gateway's depth), except current tips; returns their ids. What
    /// approves a forgotten transaction later waits for it and expires, as
    /// approving deep history is lazy anyway.
    pub fn prune(&mut self, prune: impl Fn(Height) -> bool) -> Vec<Hash> {
        let old: Vec<Hash> = self
            .txs
            .iter()
            .filter(|(id, e)| {
                !self.tips.contains(id)
                    && match e.status {
                        Status::Confirmed { height } | Status::Conflicting { height } => {
                            prune(height)
                        }
                        Status::Pending { .. } | Status::Unknown => false,
                    }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            if let Some(entry) = self.txs.remove(id) {
                for parent in entry.tx.body.parents.as_slice() {
                    self.unlink(parent, id);
                }
                if let DagKind::Payment { from, nonce, .. } = &entry.tx.body.kind {
                    // The ledger's record of the spend stays on chain.
                    self.spent.remove(&(*from, *nonce));
                }
            }
        }
        old
    }

    /// A chain of transactions from `id` to one of `targets` (an anchor's
    /// tips), each approving the one before: the DAG half of a
    /// confirmation proof. Breadth first, so the shortest.
    pub fn path_to(&self, id: &Hash, targets: &[Hash]) -> Option<Vec<DagTx>> {
        let mut came_from: HashMap<Hash, Hash> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([*id]);
        let mut seen = std::collections::HashSet::from([*id]);
        while let Some(at) = queue.pop_front() {
            if targets.contains(&at) {
                let mut path = vec![self.txs.get(&at)?.tx.clone()];
                let mut cursor = at;
                while let Some(prev) = came_from.get(&cursor) {
                    path.push(self.txs.get(prev)?.tx.clone());
                    cursor = *prev;
                }
                path.reverse();
                return Some(path);
            }
            for child in self.children.get(&at).into_iter().flatten() {
                if seen.insert(*child) {
                    came_from.insert(*child, at);
                    queue.push_back(*child);
                }
            }
        }
        None
    }

    /// Marks `start` solid if its parents are, and then the descendants
    /// that waited for it, without recursion.
    fn solidify(&mut self, start: Hash) {
        let mut queue = vec![start];
        while let Some(id) = queue.pop() {
            let Some(entry) = self.txs.get(&id) else {
                continue;
            };
            if entry.solid {
                continue;
            }
            let parents = entry.tx.body.parents.as_slice().to_vec();
            // A confirmed transaction's cone was solid when its anchor
            // committed; its parents may have been pruned since.
            if !entry.status.is_final() && !parents.iter().all(|p| self.is_solid(p)) {
                continue;
            }
            let time = entry.tx.body.time_ms;
            // Laziness is judged on arrival; restored history keeps its
            // place.
            let pending = matches!(entry.status, Status::Pending { .. });
            let lazy = pending && parents.iter().any(|p| self.makes_lazy(p, time));
            self.solidified.push(id);
            if let Some(entry) = self.txs.get_mut(&id) {
                entry.solid = true;
                entry.lazy = lazy;
                if matches!(entry.status, Status::Pending { .. }) {
                    entry.status = Status::Pending { solid: true };
                }
            }
            // A lazy transaction takes no tip away from honest issuers.
            if !lazy {
                // The roots are tips only until something real is (after
                // a restart past pruning, nothing may approve them).
                for parent in parents.iter().chain(&roots()) {
                    self.tips.remove(parent);
                }
                self.tips.insert(id);
            }
            // Whatever waited for this one may be solid now.
            queue.extend(self.waiting.remove(&id).unwrap_or_default());
        }
    }

    /// Whether approving `parent` at `time` makes a transaction lazy: the
    /// parent is lazy itself, or others moved on from it (it is no longer a
    /// tip) and it is older than `max_parent_age_ms` — TIP-3's "below max
    /// depth", what a parasite chain hanging off old transactions is. A
    /// parent confirmed a moment ago is fine to approve (issuers pick
    /// parents before the anchor lands), and a quiet network's tips stay
    /// approvable however old they are.
    fn makes_lazy(&self, parent: &Hash, time: TimestampMs) -> bool {
        let Some(entry) = self.txs.get(parent) else {
            return false;
        };
        if entry.lazy {
            return true;
        }
        let moved_on = !self.tips.contains(parent);
        let old = time.saturating_sub(entry.tx.body.time_ms) > self.config.max_parent_age_ms;
        moved_on && old
    }

    /// The unknown transactions that keep `tips` from being solid: what to
    /// ask peers for again when an anchor waits on them (an answer lost on
    /// the way is not asked for a second time by [`Tangle::poll_missing`]).
    pub fn missing_beneath(&self, tips: &[Hash]) -> Vec<Hash> {
        let mut out = BTreeSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = tips.to_vec();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) || self.is_solid(&id) {
                continue;
            }
            match self.txs.get(&id) {
                Some(entry) => stack.extend(entry.tx.body.parents.as_slice().iter().copied()),
                None => {
                    out.insert(id);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Transactions that became solid (known with all their ancestors)
    /// since the last call, in the order they did.
    pub fn poll_solidified(&mut self) -> Vec<Hash> {
        std::mem::take(&mut self.solidified)
    }

    /// Parents to ask peers for (each once).
    pub fn poll_missing(&mut self) -> Vec<Hash> {
        std::mem::take(&mut self.missing).into_iter().collect()
    }

    /// How long the longest-waiting unconfirmed non-lazy tip has been
    /// here at `now` (a tip nobody has anchored yet), if there is one.
    pub fn longest_tip_wait(&self, now: TimestampMs) -> Option<u64> {
        self.tips()
            .iter()
            .filter_map(|id| self.txs.get(id))
            .filter(|e| matches!(e.status, Status::Pending { .. }))
            .map(|e| now.saturating_sub(e.arrived))
            .max()
    }

    /// The non-lazy tips, sorted.
    pub fn tips(&self) -> Vec<Hash> {
        self.tips
            .iter()
            .filter(|id| !self.txs.get(id).is_some_and(|e| e.lazy))
            .copied()
            .collect()
    }

    /// The anchor a block proposal carries: the non-lazy tips (the
    /// smallest ids first, as many as an anchor holds and as keep the
    /// cone's payments within one anchor), their Merkle root as the ledger
    /// checks it, and the payments the cone would apply, in confirmation
    /// order. `None` while there is nothing to anchor: no tips, or nothing
    /// unconfirmed beneath them.
    pub fn anchor(&self) -> Option<crate::tx::DagAnchor> {
        let mut tips: Vec<Hash> = self
            .tips()
            .into_iter()
            .filter(|t| !roots().contains(t))
            .collect();
        tips.truncate(crate::tx::MAX_ANCHOR_TIPS);
        loop {
            if tips.is_empty() {
                return None;
            }
            let cone = self.cone(&tips);
            if cone.is_empty() {
                return None;
            }
            let payments = self.payments_in(&cone);
            if payments.len() <= crate::tx::MAX_ANCHOR_PAYMENTS {
                return Some(crate::tx::DagAnchor {
                    root: crate::merkle::root(&tips),
                    tips: crate::codec::BoundedVec::new(tips).ok()?,
                    payments: crate::codec::BoundedVec::new(payments).ok()?,
                });
            }
            tips.truncate(tips.len() / 2);
        }
    }

    /// The payments an anchor over `tips` lists: in the unconfirmed past
    /// cone, in confirmation order, the first of each (payer, nonce) not
    /// spent yet.
    pub fn payments(&self, tips: &[Hash]) -> Vec<DagTx> {
        self.payments_in(&self.cone(tips))
    }

    fn payments_in(&self, order: &[Hash]) -> Vec<DagTx> {
        let mut used = std::collections::HashSet::new();
        order
            .iter()
            .filter_map(|id| self.txs.get(id))
            .filter(|e| match &e.tx.body.kind {
                DagKind::Payment { from, nonce, .. } => {
                    !self.spent.contains_key(&(*from, *nonce)) && used.insert((*from, *nonce))
                }
                _ => false,
            })
            .map(|e| e.tx.clone())
            .collect()
    }

    /// Two distinct parents for a new transaction, chosen uniformly among
    /// the non-lazy tips with the caller's `random` (TIP-3's URTS).
    pub fn select_parents(&self, random: u64) -> [Hash; 2] {
        let tips = self.tips();
        match tips.len() {
            0 => roots(),
            1 => {
                // One tip: approve it and one of its parents still held
                // here (or a root, after pruning).
                let other = self
                    .txs
                    .get(&tips[0])
                    .and_then(|e| {
                        e.tx.body
                            .parents
                            .as_slice()
                            .iter()
                            .find(|p| self.is_solid(p))
                            .copied()
                    })
                    .unwrap_or(roots()[0]);
                [tips[0], other]
            }
            n => {
                let first = (random % n as u64) as usize;
                let second = ((random / n as u64) % (n as u64 - 1)) as usize;
                let second = if second >= first { second + 1 } else { second };
                [tips[first], tips[second]]
            }
        }
    }

    /// The not yet confirmed past cone of `tips` in confirmation order:
    /// parents first, ties by smallest id (Kahn's algorithm), so every
    /// gateway orders one cone alike.
    pub fn cone(&self, tips: &[Hash]) -> Vec<Hash> {
        let mut cone = BTreeSet::new();
        let mut stack: Vec<Hash> = tips.to_vec();
        while let Some(id) = stack.pop() {
            let Some(entry) = self.txs.get(&id) else {
                continue;
            };
            if !matches!(entry.status, Status::Pending { .. }) || !cone.insert(id) {
                continue;
            }
            stack.extend(entry.tx.body.parents.as_slice().iter().copied());
        }
        let mut pending: BTreeMap<Hash, usize> = BTreeMap::new();
        let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
        for id in &cone {
            let parents = self.txs[id].tx.body.parents.as_slice();
            let inside = parents.iter().filter(|p| cone.contains(p)).count();
            pending.insert(*id, inside);
            for p in parents.iter().filter(|p| cone.contains(p)) {
                children.entry(*p).or_default().push(*id);
            }
        }
        let mut ready: BTreeSet<Hash> = pending
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(cone.len());
        while let Some(id) = ready.pop_first() {
            for child in children.get(&id).into_iter().flatten() {
                if let Some(n) = pending.get_mut(child) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(*child);
                    }
                }
            }
            out.push(id);
        }
        out
    }

    /// Confirms the past cone of `tips` (an anchor committed at `height`)
    /// in [`Tangle::cone`]'s order. Whether a payment moved tokens is the
    /// ledger's to say, not the tangle's: `applied` answers for each (the
    /// ledger applies only what the anchor lists, once per (payer, nonce),
    /// and only if it can); one it did not apply — a double spend, a
    /// payment the anchor left out or the ledger could not honour — is
    /// conflicting.
    pub fn confirm(
        &mut self,
        tips: &[Hash],
        height: Height,
        applied: impl Fn(&Hash) -> bool,
    ) -> Result<Vec<Confirmed>, DagError> {
        if let Some(id) = tips.iter().find(|t| !self.is_solid(t)) {
            return Err(DagError::UnknownTip { id: *id });
        }
        let order = self.cone(tips);
        let mut out = Vec::with_capacity(order.len());
        for id in order {
            let applied = match &self.txs[&id].tx.body.kind {
                DagKind::Payment { from, nonce, .. } => {
                    let paid = applied(&id);
                    if paid {
                        self.spent.insert((*from, *nonce), id);
                    }
                    paid
                }
                _ => true,
            };
            if let Some(entry) = self.txs.get_mut(&id) {
                entry.status = if applied {
                    Status::Confirmed { height }
                } else {
                    Status::Conflicting { height }
                };
            }
            out.push(Confirmed { id, applied });
        }
        Ok(out)
    }
}
