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
//!   when it approves one the network has moved on from that is confirmed
//!   already or old, or a lazy one — as a parasite chain hanging off old
//!   transactions does. Lazy transactions are never tips, never selected
//!   and never anchored, so what they carry is not confirmed unless
//!   honest issuers approve it; nor do they take tips away.
//! - **Per-issuer rate limits** over a sliding window.
//! - **Anchoring and confirmation**: a PBFT block carries an anchor over
//!   the current non-lazy tips; when it commits, [`Tangle::confirm`] takes
//!   the anchor's past cone in one deterministic order (parents first,
//!   ties by id), and a payment whose (payer, nonce) an earlier confirmed
//!   payment used is marked conflicting and never applied: the one
//!   anchored first wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::tx::{DagKind, DagTx, DagTxError};
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
}

impl Default for TangleConfig {
    fn default() -> Self {
        TangleConfig {
            per_issuer: 100,
            window_ms: 1_000,
            max_skew_ms: 60_000,
            max_parent_age_ms: 120_000,
        }
    }
}

/// Why a transaction was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error(transparent)]
    Invalid(#[from] DagTxError),
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
    /// Confirmed at `height`, but its payment was a double spend: not
    /// applied.
    Conflicting {
        height: Height,
    },
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
}

/// The tangle at one gateway.
#[derive(Debug, Clone)]
pub struct Tangle {
    config: TangleConfig,
    txs: HashMap<Hash, Entry>,
    /// Unknown parent → transactions waiting for it.
    waiting: HashMap<Hash, Vec<Hash>>,
    missing: BTreeSet<Hash>,
    tips: BTreeSet<Hash>,
    recent: HashMap<DeviceId, Vec<TimestampMs>>,
    spent: HashMap<(AccountId, u64), Hash>,
}

impl Tangle {
    pub fn new(config: TangleConfig) -> Tangle {
        Tangle {
            config,
            txs: HashMap::new(),
            waiting: HashMap::new(),
            missing: BTreeSet::new(),
            tips: roots().into_iter().collect(),
            recent: HashMap::new(),
            spent: HashMap::new(),
        }
    }

    fn is_solid(&self, id: &Hash) -> bool {
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
        tx.check(key)?;
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
        self.missing.remove(&id);
        // It waits on every parent not solid yet; unknown ones are asked
        // for.
        for parent in tx.body.parents.as_slice() {
            if self.is_solid(parent) {
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
                status: Status::Pending { solid: false },
            },
        );
        self.solidify(id);
        Ok(id)
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
            if !parents.iter().all(|p| self.is_solid(p)) {
                continue;
            }
            let time = entry.tx.body.time_ms;
            let lazy = parents.iter().any(|p| self.makes_lazy(p, time));
            if let Some(entry) = self.txs.get_mut(&id) {
                entry.solid = true;
                entry.lazy = lazy;
                if matches!(entry.status, Status::Pending { .. }) {
                    entry.status = Status::Pending { solid: true };
                }
            }
            // A lazy transaction takes no tip away from honest issuers.
            if !lazy {
                for parent in &parents {
                    self.tips.remove(parent);
                }
                self.tips.insert(id);
            }
            // Whatever waited for this one may be solid now.
            queue.extend(self.waiting.remove(&id).unwrap_or_default());
        }
    }

    /// Whether approving `parent` at `time` makes a transaction lazy: the
    /// parent is lazy itself, or it is a transaction others moved on from
    /// (no longer a tip) that is confirmed already or older than
    /// `max_parent_age_ms` — what a parasite chain hanging off old
    /// transactions does. A quiet network's tips stay approvable however
    /// old they are.
    fn makes_lazy(&self, parent: &Hash, time: TimestampMs) -> bool {
        let Some(entry) = self.txs.get(parent) else {
            return false;
        };
        if entry.lazy {
            return true;
        }
        let moved_on = !self.tips.contains(parent);
        let confirmed = !matches!(entry.status, Status::Pending { .. });
        let old = time.saturating_sub(entry.tx.body.time_ms) > self.config.max_parent_age_ms;
        moved_on && (confirmed || old)
    }

    /// Parents to ask peers for (each once).
    pub fn poll_missing(&mut self) -> Vec<Hash> {
        std::mem::take(&mut self.missing).into_iter().collect()
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
    /// oldest-id first, as many as an anchor holds) and their Merkle root,
    /// as the ledger checks it. `None` while there is nothing to anchor.
    pub fn anchor(&self) -> Option<crate::tx::DagAnchor> {
        let mut tips: Vec<Hash> = self
            .tips()
            .into_iter()
            .filter(|t| !roots().contains(t))
            .collect();
        tips.truncate(crate::tx::MAX_ANCHOR_TIPS);
        if tips.is_empty() {
            return None;
        }
        Some(crate::tx::DagAnchor {
            root: crate::merkle::root(&tips),
            tips: crate::codec::BoundedVec::new(tips).ok()?,
        })
    }

    /// Two distinct parents for a new transaction, chosen uniformly among
    /// the non-lazy tips with the caller's `random` (TIP-3's URTS).
    pub fn select_parents(&self, random: u64) -> [Hash; 2] {
        let tips = self.tips();
        match tips.len() {
            0 => roots(),
            1 => {
                // One tip: approve it and one of its parents.
                let other = self
                    .txs
                    .get(&tips[0])
                    .and_then(|e| e.tx.body.parents.as_slice().first().copied())
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

    /// Confirms the past cone of `tips` (an anchor committed at `height`):
    /// every not yet confirmed ancestor, parents first, ties by id.
    pub fn confirm(&mut self, tips: &[Hash], height: Height) -> Result<Vec<Confirmed>, DagError> {
        if let Some(id) = tips.iter().find(|t| !self.is_solid(t)) {
            return Err(DagError::UnknownTip { id: *id });
        }
        // The cone: unconfirmed transactions reachable from the tips.
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
        // Kahn's order within the cone, smallest id first among the ready.
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
            for child in children.get(&id).cloned().unwrap_or_default() {
                if let Some(n) = pending.get_mut(&child) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(child);
                    }
                }
            }
            let applied = match &self.txs[&id].tx.body.kind {
                DagKind::Payment { from, nonce, .. } => match self.spent.get(&(*from, *nonce)) {
                    Some(_) => false,
                    None => {
                        self.spent.insert((*from, *nonce), id);
                        true
                    }
                },
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
