//! Pending client transactions, in arrival order.
//!
//! Every replica keeps one (PBFT's backups must know of pending requests to
//! suspect a silent primary, §4.4), and whichever replica is primary builds
//! its next block from it. Admission checks what can be checked without
//! ordering: the chain id, the signature, and that the nonce is not already
//! used. Whether the transaction then applies is the block's business.
//!
//! So every transaction in a replica's mempool has had its signature
//! checked by that replica, and its ledger skips the check when the
//! transaction comes back in a block: each replica verifies each signature
//! once, itself.

use crate::ledger::StateRead;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::crypto::Hash;
use crate::ledger::{Ledger, TxError};
use crate::tx::SignedTx;
use crate::types::TimestampMs;
use crate::zip215::KeyCache;

/// The mempool's bound: a replica under a flood refuses rather than grows.
pub const MAX_PENDING: usize = 100_000;

/// Senders' decoded keys the mempool keeps between batches: enough for a
/// building's users and a busy chain's active accounts (~1.6 MB).
const SENDER_KEYS: usize = 8_192;

/// Pending transactions in arrival order, by id.
pub struct Mempool {
    /// Ids with their arrival time, oldest first; removed ones linger
    /// until the next compaction (see [`Mempool::remove`]).
    order: VecDeque<(Hash, TimestampMs)>,
    txs: HashMap<Hash, SignedTx>,
    /// Decoded sender keys, so a returning sender's key is not decoded
    /// again at admission ([`crate::zip215`]).
    keys: KeyCache,
}

impl Default for Mempool {
    fn default() -> Self {
        Mempool {
            order: VecDeque::new(),
            txs: HashMap::new(),
            keys: KeyCache::new(SENDER_KEYS),
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("already pending")]
    Duplicate,
    #[error("the mempool is full ({max} transactions)")]
    Full { max: usize },
}

impl Mempool {
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.txs.contains_key(id)
    }

    /// Admits each of `txs` that may still apply on top of `ledger`, as
    /// arrived at `now`; the outcomes are in order, with each
    /// transaction's id. The signatures of those that pass the cheap
    /// checks are checked in one batch ([`SignedTx::verify_signatures`]).
    pub fn admit_all(
        &mut self,
        ledger: &Ledger,
        txs: Vec<SignedTx>,
        now: TimestampMs,
    ) -> Vec<(Hash, Result<(), AdmitError>)> {
        let mut seen = HashSet::new();
        let prechecked: Vec<(Hash, SignedTx, Result<(), AdmitError>)> = txs
            .into_iter()
            .map(|tx| {
                let id = tx.hash();
                let fresh = seen.insert(id);
                let outcome = self.precheck(ledger, &id, fresh, &tx);
                (id, tx, outcome)
            })
            .collect();
        let to_verify: Vec<&SignedTx> = prechecked
            .iter()
            .filter(|(_, _, outcome)| outcome.is_ok())
            .map(|(_, tx, _)| tx)
            .collect();
        let mut verdicts = SignedTx::verify_signatures(&to_verify, &mut self.keys).into_iter();
        prechecked
            .into_iter()
            .map(|(id, tx, outcome)| {
                let outcome = outcome.and_then(|()| match verdicts.next() {
                    Some(true) => self.insert(ledger, id, tx, now),
                    _ => Err(TxError::BadSignature.into()),
                });
                (id, outcome)
            })
            .collect()
    }

    /// The checks before the signature: not pending already (`fresh` is
    /// false for a repeat within one batch), room left, this chain.
    fn precheck(
        &self,
        ledger: &Ledger,
        id: &Hash,
        fresh: bool,
        tx: &SignedTx,
    ) -> Result<(), AdmitError> {
        if !fresh || self.txs.contains_key(id) {
            return Err(AdmitError::Duplicate);
        }
        if self.txs.len() >= MAX_PENDING {
            return Err(AdmitError::Full { max: MAX_PENDING });
        }
        if tx.tx.chain_id != ledger.params().chain_id {
            return Err(TxError::WrongChain {
                expected: ledger.params().chain_id.to_string(),
                found: tx.tx.chain_id.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// After the signature: the nonce is not used yet, and there is still
    /// room (the batch may have filled it).
    fn insert(
        &mut self,
        ledger: &Ledger,
        id: Hash,
        tx: SignedTx,
        now: TimestampMs,
    ) -> Result<(), AdmitError> {
        if self.txs.len() >= MAX_PENDING {
            return Err(AdmitError::Full { max: MAX_PENDING });
        }
        let expected = tx
            .tx
            .expected_nonce(ledger.account(&tx.tx.sender).nonce, ledger.height() + 1);
        if tx.tx.nonce < expected {
            return Err(TxError::BadNonce {
                expected,
                found: tx.tx.nonce,
            }
            .into());
        }
        self.order.push_back((id, now));
        self.txs.insert(id, tx);
        Ok(())
    }

    /// Up to `max` pending transactions, oldest first, less those `skip`
    /// names.
    pub fn batch(&self, max: usize, skip: &dyn Fn(&Hash) -> bool) -> Vec<SignedTx> {
        self.pending(skip)
            .take(max)
            .map(|(tx, _)| tx.clone())
            .collect()
    }

    /// When the oldest pending transaction `skip` does not name arrived:
    /// how long the next batch has been waiting to be proposed.
    pub fn oldest(&self, skip: &dyn Fn(&Hash) -> bool) -> Option<TimestampMs> {
        self.pending(skip).next().map(|(_, at)| at)
    }

    /// Pending transactions with their arrival times, oldest first, less
    /// those `skip` names.
    fn pending<'a>(
        &'a self,
        skip: &'a dyn Fn(&Hash) -> bool,
    ) -> impl Iterator<Item = (&'a SignedTx, TimestampMs)> + 'a {
        self.order
            .iter()
            .filter(move |(id, _)| !skip(id))
            .filter_map(|(id, at)| self.txs.get(id).map(|tx| (tx, *at)))
    }

    /// Forgets `ids` (committed, or refused for good).
    pub fn remove<'a>(&mut self, ids: impl IntoIterator<Item = &'a Hash>) {
        for id in ids {
            self.txs.remove(id);
        }
        if self.order.len() > 2 * self.txs.len() + 64 {
            let txs = &self.txs;
            self.order.retain(|(id, _)| txs.contains_key(id));
        }
    }
}
