//! The storage contract: what a store must do, and how a ledger is opened
//! from one.
//!
//! The core does no IO, so storage is a trait implemented outside (the
//! gateway implements it over sqlite). A store keeps rows it does not need to
//! understand: encoded headers, transactions and state entries (see
//! [`crate::state::StateRows`]).
//!
//! The one hard rule: [`ChainStore::commit_block`] is atomic. A block, its
//! certificate and all its state changes are stored together or not at all,
//! so after a crash the store is at the last committed height with that
//! height's state root.

use std::future::Future;

use crate::block::{Block, CommitCertificate, Header};
use crate::codec::{decode, DecodeError};
use crate::crypto::{AccountId, Hash};
use crate::genesis::{Genesis, GenesisError};
use crate::ledger::{Executed, Ledger};
use crate::state::{State, StateError};
use crate::tx::{SignedTx, TxBody};
use crate::types::Height;

/// What a store holds at its tip, as rows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The encoded genesis header (height 0).
    pub genesis_header: Vec<u8>,
    /// The encoded header of the last committed block.
    pub tip_header: Vec<u8>,
    /// Every state entry: (encoded key, encoded value).
    pub state: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a transaction was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
    pub tx: SignedTx,
}

/// A chain store.
pub trait ChainStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores a block with its certificate (`None` only for the genesis) and
    /// its state changes, atomically.
    fn commit_block(
        &mut self,
        executed: &Executed,
        certificate: Option<&CommitCertificate>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The rows at the tip, or `None` for an empty store.
    fn load(&mut self) -> impl Future<Output = Result<Option<Snapshot>, Self::Error>> + Send;

    /// A committed block and its certificate.
    fn block(
        &mut self,
        height: Height,
    ) -> impl Future<Output = Result<Option<(Block, Option<CommitCertificate>)>, Self::Error>> + Send;

    /// A committed transaction by id.
    fn transaction(
        &mut self,
        hash: &Hash,
    ) -> impl Future<Output = Result<Option<TxLocation>, Self::Error>> + Send;
}

/// Why a ledger could not be opened from a store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError<E: std::error::Error + 'static> {
    #[error("storage: {0}")]
    Store(#[source] E),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error("the store holds chain {stored}, but the genesis gives {expected}")]
    GenesisMismatch { stored: Hash, expected: Hash },
    #[error("a stored {what} does not decode: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Opens the ledger for `genesis` from `store`: resumes at the stored tip
/// (checking the rebuilt state root against the tip header), or writes the
/// genesis into an empty store.
pub async fn open_ledger<S: ChainStore>(
    store: &mut S,
    genesis: &Genesis,
) -> Result<Ledger, OpenError<S::Error>> {
    let (fresh, genesis_block) = Ledger::genesis(genesis)?;
    let Some(snapshot) = store.load().await.map_err(OpenError::Store)? else {
        store
            .commit_block(&genesis_block, None)
            .await
            .map_err(OpenError::Store)?;
        return Ok(fresh);
    };
    let corrupt = |what| move |source| OpenError::Corrupt { what, source };
    let stored_genesis: Header =
        decode(&snapshot.genesis_header).map_err(corrupt("genesis header"))?;
    let expected = genesis_block.block.header.hash();
    if stored_genesis.hash() != expected {
        return Err(OpenError::GenesisMismatch {
            stored: stored_genesis.hash(),
            expected,
        });
    }
    let tip: Header = decode(&snapshot.tip_header).map_err(corrupt("tip header"))?;
    let state = State::restore(snapshot.state, tip.state_root)?;
    Ok(Ledger::from_parts(genesis, tip, state)?)
}

/// The accounts a transaction concerns, for the by-account index: the sender
/// and whoever it names as a counterparty.
pub fn involved_accounts(signed: &SignedTx) -> Vec<AccountId> {
    let tx = &signed.tx;
    let mut accounts = vec![tx.sender];
    match &tx.body {
        TxBody::Transfer { to, .. } => accounts.push(*to),
        TxBody::TransferDevice { new_owner, .. } => accounts.push(*new_owner),
        TxBody::GrantAccess { grantee, .. } | TxBody::RevokeAccess { grantee, .. } => {
            accounts.push(*grantee)
        }
        TxBody::RegisterDevice(reg) => accounts.push(reg.device_key),
        TxBody::RegisterAdoptedDevice {
            registration,
            owner,
            ..
        } => accounts.extend([registration.device_key, *owner]),
        // The accused's history shows the evidence against it.
        TxBody::ReportEquivocation(proof) => accounts.push(proof.primary),
        TxBody::ClaimDevice { .. }
        | TxBody::PublishManifest(_)
        | TxBody::ChangeValidators { .. }
        | TxBody::AnchorDag(_) => {}
    }
    accounts.sort();
    accounts.dedup();
    accounts
}
