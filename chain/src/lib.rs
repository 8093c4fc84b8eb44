//! # itc-chain: the ITC chain core
//!
//! Everything the gateways agree on, and nothing that touches the outside
//! world: identities and hashes ([`crypto`], [`text`]; transaction
//! signatures in batches, [`zip215`]), the one binary
//! encoding ([`codec`]), transactions ([`tx`]), the ledger state machine
//! ([`ledger`]) over an authenticated state ([`state`]), blocks and commit
//! certificates ([`block`]), list Merkle proofs ([`merkle`]), the genesis
//! ([`genesis`]) and the storage contract ([`store`]).
//!
//! Invariants (see `ARCHITECTURE.md`):
//! - no IO, no clock, no randomness but what the caller passes in;
//! - no `unsafe`;
//! - decoding untrusted bytes never panics: every failure is a typed error;
//! - the same genesis and blocks give the same state root everywhere.

#![forbid(unsafe_code)]

pub mod block;
pub mod codec;
pub mod crypto;
pub mod dag;
pub mod evidence;
pub mod genesis;
pub mod ledger;
pub mod light;
pub mod merkle;
pub mod pbft;
pub mod rfc8032;
pub mod sim;
pub mod state;
pub mod store;
pub mod testkit;
pub mod text;
pub mod tx;
pub mod types;
pub mod validators;
pub mod zip215;

pub use block::{Block, CommitCertificate, CommitSig, Header};
pub use crypto::{AccountId, Hash, Keypair, PublicKey, Signature};
pub use genesis::Genesis;
pub use ledger::{Access, AccessError, BlockError, Executed, Ledger, Proposal, TxError};
pub use tx::{SignedTx, Tx, TxBody};
