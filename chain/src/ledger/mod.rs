//! The ledger state machine: from a genesis, through blocks, to a state.
//!
//! Deterministic and IO-free: the same genesis and the same blocks give the
//! same state root on every gateway. Block time comes in the block, chosen by
//! its proposer; nothing here reads a clock.
//!
//! The flow for a block:
//! - the proposer calls [`Ledger::propose`] with candidate transactions; the
//!   rejected ones are dropped and reported, and the result is a block whose
//!   header already commits to its outcome;
//! - every replica calls [`Ledger::execute`] on a received block, which
//!   re-runs it and refuses it if any transaction is invalid or any header
//!   field disagrees;
//! - once consensus commits the block, [`Ledger::commit`] applies the
//!   [`Executed`] result (the store persists the same [`StateChanges`] first).

mod error;
mod exec;
mod read;

use std::collections::HashSet;

use crate::block::{dag_root, tx_root, Block, Header, MAX_BLOCK_TXS};
use crate::codec::BoundedVec;
use crate::crypto::{Hash, PublicKey};
use crate::genesis::{Genesis, GenesisError};
use crate::state::{
    Account, Overlay, State, StateChanges, StateError, StateKey, StateProof, StateValue,
    ValidatorSets,
};
use crate::tx::{ChainId, SignedTx};
use crate::types::{Height, TimestampMs};
use crate::validators::ValidatorSet;
use crate::zip215;

pub use error::{AccessError, BlockError, TxError};
use exec::BlockWrites;
pub use read::StateRead;

/// The chain's fixed parameters, from its genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    pub chain_id: ChainId,
    pub epoch_length: u64,
}

/// A block that executed cleanly, with the changes it makes.
#[derive(Clone, Debug)]
pub struct Executed {
    pub block: Block,
    pub changes: StateChanges,
    /// The hashes of the block's transactions, in order: computed once in
    /// execution and used by everything after it (mempool, store, API).
    /// Private, so only execution makes them and they match the block.
    tx_ids: Vec<Hash>,
}

impl Executed {
    /// The hashes of the block's transactions, in order.
    pub fn tx_ids(&self) -> &[Hash] {
        &self.tx_ids
    }
}

/// A proposed block and the candidates left out of it.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub executed: Executed,
    pub rejected: Vec<(Hash, TxError)>,
}

/// How an account is allowed to act on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Owner,
    Grant { expires_at: TimestampMs },
}

/// The ledger: parameters, the committed state and the header of its tip.
#[derive(Clone)]
pub struct Ledger {
    params: ChainParams,
    state: State,
    tip: Header,
}

impl Ledger {
    /// The ledger at height 0, and the state changes the store must persist
    /// for it.
    pub fn genesis(genesis: &Genesis) -> Result<(Ledger, Executed), GenesisError> {
        genesis.validate()?;
        let set = genesis.validator_set()?;
        let mut writes = exec::Writes::new();
        writes.insert(
            StateKey::Validators,
            Some(StateValue::Validators(ValidatorSets {
                active: set.clone(),
                pending: set.clone(),
            })),
        );
        for balance in &genesis.balances {
            writes.insert(
                StateKey::Account {
                    account: balance.account,
                },
                Some(StateValue::Account(Account {
                    balance: balance.amount,
                    nonce: 0,
                })),
            );
        }
        let state = State::default();
        let changes = state.prepare(writes).map_err(|e| GenesisError::State {
            reason: e.to_string(),
        })?;
        let header = Header {
            chain_id: genesis.chain_id.clone(),
            height: 0,
            prev_hash: Hash::ZERO,
            time_ms: genesis.genesis_time_ms,
            tx_root: tx_root(&[]),
            state_root: changes.root,
            dag_root: dag_root([]),
            validators_hash: set.hash(),
            next_validators_hash: set.hash(),
            proposer: set.primary(0).key,
        };
        let executed = Executed {
            block: Block {
                header: header.clone(),
                txs: BoundedVec::default(),
            },
            changes,
            tx_ids: Vec::new(),
        };
        let mut ledger = Ledger {
            params: ChainParams {
                chain_id: genesis.chain_id.clone(),
                epoch_length: genesis.epoch_length,
            },
            state,
            tip: header,
        };
        ledger.state.apply(&executed.changes);
        Ok((ledger, executed))
    }

    /// A ledger from a restored state whose root matches `tip`.
    pub fn from_parts(genesis: &Genesis, tip: Header, state: State) -> Result<Ledger, StateError> {
        if state.root() != tip.state_root {
            return Err(StateError::RootMismatch {
                computed: state.root(),
                expected: tip.state_root,
            });
        }
        Ok(Ledger {
            params: ChainParams {
                chain_id: genesis.chain_id.clone(),
                epoch_length: genesis.epoch_length,
            },
            state,
            tip,
        })
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    pub fn tip(&self) -> &Header {
        &self.tip
    }

    pub fn height(&self) -> Height {
        self.tip.height
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn state_root(&self) -> Hash {
        self.state.root()
    }

    /// Builds the next block from `candidates`, in order, leaving out those
    /// that fail (each with its reason).
    pub fn propose(
        &self,
        candidates: impl IntoIterator<Item = SignedTx>,
        time_ms: TimestampMs,
        proposer: PublicKey,
    ) -> Result<Proposal, BlockError> {
        self.propose_verified(candidates, time_ms, proposer, &exec::none_verified)
    }

    /// [`Ledger::propose`], skipping the signature check of transactions
    /// for which `verified` says this replica has checked it itself.
    pub fn propose_verified(
        &self,
        candidates: impl IntoIterator<Item = SignedTx>,
        time_ms: TimestampMs,
        proposer: PublicKey,
        verified: &dyn Fn(&Hash) -> bool,
    ) -> Result<Proposal, BlockError> {
        self.propose_on(&[], candidates, time_ms, proposer, verified)
    }

    /// [`Ledger::propose_verified`] for the block after `parents`: blocks
    /// executed but not committed, in height order, the first extending
    /// the tip (pipelining). The proposal commits once they have.
    pub fn propose_on(
        &self,
        parents: &[&Executed],
        candidates: impl IntoIterator<Item = SignedTx>,
        time_ms: TimestampMs,
        proposer: PublicKey,
        verified: &dyn Fn(&Hash) -> bool,
    ) -> Result<Proposal, BlockError> {
        let pending = self.pending(parents)?;
        let (tip, state) = (pending.tip, &pending.state);
        let height = tip.height + 1;
        let time_ms = time_ms.max(tip.time_ms);
        let active = active_set_with(state, &proposer)?;
        let mut block = BlockWrites::new(state, &self.params.chain_id, height, time_ms);
        block.verified = verified;
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut tx_ids = Vec::new();
        for signed in candidates {
            if accepted.len() == MAX_BLOCK_TXS {
                break;
            }
            let id = signed.hash();
            match block.apply(&signed, &id) {
                Ok(()) => {
                    accepted.push(signed);
                    tx_ids.push(id);
                }
                Err(error) => rejected.push((id, error)),
            }
        }
        let (changes, header) =
            self.finish(&pending, block, &accepted, &tx_ids, proposer, active)?;
        let txs = BoundedVec::new(accepted).map_err(|_| BlockError::TooManyTxs {
            count: MAX_BLOCK_TXS + 1,
            max: MAX_BLOCK_TXS,
        })?;
        Ok(Proposal {
            executed: Executed {
                block: Block { header, txs },
                changes,
                tx_ids,
            },
            rejected,
        })
    }

    /// Re-runs a received block against the tip and checks every header
    /// field. Changes nothing.
    pub fn execute(&self, block: &Block) -> Result<Executed, BlockError> {
        self.execute_verified(block, &exec::none_verified)
    }

    /// [`Ledger::execute`], skipping the signature check of transactions
    /// for which `verified` says this replica has checked it itself.
    pub fn execute_verified(
        &self,
        block: &Block,
        verified: &dyn Fn(&Hash) -> bool,
    ) -> Result<Executed, BlockError> {
        self.execute_on(&[], block, verified)
    }

    /// [`Ledger::execute_verified`] for a block after `parents`: blocks
    /// executed but not committed, in height order, the first extending
    /// the tip (pipelining). The result commits once they have.
    pub fn execute_on(
        &self,
        parents: &[&Executed],
        block: &Block,
        verified: &dyn Fn(&Hash) -> bool,
    ) -> Result<Executed, BlockError> {
        let pending = self.pending(parents)?;
        let (tip, state) = (pending.tip, &pending.state);
        let header = &block.header;
        if header.chain_id != self.params.chain_id {
            return Err(BlockError::WrongChain {
                expected: self.params.chain_id.to_string(),
                found: header.chain_id.to_string(),
            });
        }
        if header.height != tip.height + 1 {
            return Err(BlockError::WrongHeight {
                expected: tip.height + 1,
                found: header.height,
            });
        }
        if header.prev_hash != pending.tip_hash {
            return Err(BlockError::WrongParent {
                expected: pending.tip_hash,
                found: header.prev_hash,
            });
        }
        if header.time_ms < tip.time_ms {
            return Err(BlockError::TimeWentBackwards {
                parent: tip.time_ms,
                time: header.time_ms,
            });
        }
        let mut writes =
            BlockWrites::new(state, &self.params.chain_id, header.height, header.time_ms);
        // The signatures not checked here before are checked in one batch
        // (a peer's block, state transfer); each verdict is the single
        // check's, and a bad one still fails below, by its index.
        let tx_ids = block.tx_hashes();
        let unchecked: Vec<(Hash, &SignedTx)> = tx_ids
            .iter()
            .zip(block.txs.as_slice())
            .filter(|(id, _)| !verified(id))
            .map(|(id, signed)| (*id, signed))
            .collect();
        let refs: Vec<&SignedTx> = unchecked.iter().map(|(_, signed)| *signed).collect();
        let good: HashSet<Hash> = unchecked
            .iter()
            .zip(SignedTx::verify_signatures(
                &refs,
                &mut zip215::KeyCache::new(0),
            ))
            .filter(|(_, ok)| *ok)
            .map(|((id, _), _)| *id)
            .collect();
        let verified = |id: &Hash| verified(id) || good.contains(id);
        writes.verified = &verified;
        let active = active_set_with(state, &header.proposer)?;
        for (index, (signed, id)) in block.txs.as_slice().iter().zip(&tx_ids).enumerate() {
            writes
                .apply(signed, id)
                .map_err(|error| BlockError::InvalidTx {
                    index,
                    hash: *id,
                    error,
                })?;
        }
        let (changes, computed) = self.finish(
            &pending,
            writes,
            block.txs.as_slice(),
            &tx_ids,
            header.proposer,
            active,
        )?;
        for (field, claimed, computed) in [
            ("tx_root", header.tx_root, computed.tx_root),
            ("state_root", header.state_root, computed.state_root),
            ("dag_root", header.dag_root, computed.dag_root),
            (
                "validators_hash",
                header.validators_hash,
                computed.validators_hash,
            ),
            (
                "next_validators_hash",
                header.next_validators_hash,
                computed.next_validators_hash,
            ),
        ] {
            if claimed != computed {
                return Err(BlockError::HeaderMismatch {
                    field,
                    claimed,
                    computed,
                });
            }
        }
        Ok(Executed {
            block: block.clone(),
            changes,
            tx_ids,
        })
    }

    /// The header a block after `parents` extends, and the state it runs
    /// against: the tip's, with the parents' changes on top.
    fn pending<'a>(&'a self, parents: &[&'a Executed]) -> Result<Pending<'a>, BlockError> {
        let mut tip = &self.tip;
        let mut tip_hash = tip.hash();
        for parent in parents {
            let header = &parent.block.header;
            if header.height != tip.height + 1 || header.prev_hash != tip_hash {
                return Err(BlockError::WrongParent {
                    expected: tip_hash,
                    found: header.prev_hash,
                });
            }
            tip = header;
            tip_hash = tip.hash();
        }
        let layers = parents.iter().map(|p| &p.changes).collect();
        Ok(Pending {
            tip,
            tip_hash,
            state: Overlay::new(&self.state, layers)?,
        })
    }

    /// End of block: the epoch rule, then the header. `before` is the active
    /// set at the tip, which signs this block.
    fn finish(
        &self,
        pending: &Pending<'_>,
        mut writes: BlockWrites<'_>,
        txs: &[SignedTx],
        tx_ids: &[Hash],
        proposer: PublicKey,
        before: ValidatorSet,
    ) -> Result<(StateChanges, Header), BlockError> {
        let height = writes.height;
        // Validator-set changes take effect at epoch (checkpoint) boundaries.
        if height % self.params.epoch_length == 0 {
            let mut sets = writes.validator_sets();
            if sets.active != sets.pending {
                sets.active = sets.pending.clone();
                writes.put(StateKey::Validators, Some(StateValue::Validators(sets)));
            }
        }
        let after = writes.validator_sets().active;
        let time_ms = writes.time_ms;
        let changes = pending.state.prepare(writes.writes)?;
        let header = Header {
            chain_id: self.params.chain_id.clone(),
            height,
            prev_hash: pending.tip_hash,
            time_ms,
            tx_root: tx_root(tx_ids),
            state_root: changes.root,
            dag_root: dag_root(txs),
            validators_hash: before.hash(),
            next_validators_hash: after.hash(),
            proposer,
        };
        Ok((changes, header))
    }

    /// Applies an executed block. It must have been executed against this
    /// very tip (the consensus layer guarantees it; a mismatch is refused).
    pub fn commit(&mut self, executed: &Executed) -> Result<(), BlockError> {
        let header = &executed.block.header;
        if header.height != self.tip.height + 1 || header.prev_hash != self.tip.hash() {
            return Err(BlockError::WrongParent {
                expected: self.tip.hash(),
                found: header.prev_hash,
            });
        }
        self.state.apply(&executed.changes);
        self.tip = executed.block.header.clone();
        Ok(())
    }

    /// Would `signed` be accepted in the next block at `now`? (Mempool
    /// admission.)
    pub fn check_tx(&self, signed: &SignedTx, now: TimestampMs) -> Result<(), TxError> {
        check_tx(&self.state, &self.params.chain_id, &self.tip, signed, now)
    }

    /// A proof of `key`'s value (or absence) against the tip's state root.
    pub fn prove(&self, key: &StateKey) -> Result<StateProof, StateError> {
        self.state.prove(key)
    }
}

/// What a block is built on: the header it extends and the state it runs
/// against (the committed state, with any uncommitted parents on top).
struct Pending<'a> {
    tip: &'a Header,
    /// `tip`'s hash, the new block's parent hash: hashed once.
    tip_hash: Hash,
    state: Overlay<'a>,
}

/// The active validator set in `state`, if `proposer` is in it.
fn active_set_with(
    state: &dyn StateRead,
    proposer: &PublicKey,
) -> Result<ValidatorSet, BlockError> {
    let active = state.validator_sets().active;
    if !active.contains(proposer) {
        return Err(BlockError::UnknownProposer {
            proposer: *proposer,
        });
    }
    Ok(active)
}

/// Would `signed` be accepted in the block after `tip`, on `state` (the
/// committed state at `tip`), at `now`? For readers that hold a copy of the
/// committed entries rather than the ledger, such as the gateway's API
/// checking a transaction before it submits it.
pub fn check_tx(
    state: &dyn StateRead,
    chain_id: &ChainId,
    tip: &Header,
    signed: &SignedTx,
    now: TimestampMs,
) -> Result<(), TxError> {
    let mut block = BlockWrites::new(state, chain_id, tip.height + 1, now.max(tip.time_ms));
    block.apply(signed, &signed.hash())
}
