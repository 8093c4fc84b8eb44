//! What gateways tell each other about the tangle, over the same
//! authenticated channels PBFT uses.
//!
//! A gateway pushes every transaction it takes to its peers (each checks
//! it again: the issuer's signature and work, against its own chain
//! state), and asks for the parents its tangle is missing; a peer answers
//! a request with what it has. Both lists are bounded, so one message
//! stays small.

use borsh::{BorshDeserialize, BorshSerialize};

use super::tx::DagTx;
use crate::codec::BoundedVec;
use crate::crypto::Hash;

/// Transactions or ids in one message, at most.
pub const MAX_GOSSIP: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum DagMessage {
    /// New transactions, or the answer to a request.
    Txs(BoundedVec<DagTx, MAX_GOSSIP>),
    /// Transactions the sender is missing (unknown parents).
    Request(BoundedVec<Hash, MAX_GOSSIP>),
}

impl DagMessage {
    /// `txs` in as many messages as they need.
    pub fn txs(txs: Vec<DagTx>) -> Vec<DagMessage> {
        txs.chunks(MAX_GOSSIP)
            .filter_map(|chunk| BoundedVec::new(chunk.to_vec()).ok().map(DagMessage::Txs))
            .collect()
    }

    /// Requests for `ids`, in as many messages as they need.
    pub fn requests(ids: Vec<Hash>) -> Vec<DagMessage> {
        ids.chunks(MAX_GOSSIP)
            .filter_map(|chunk| {
                BoundedVec::new(chunk.to_vec())
                    .ok()
                    .map(DagMessage::Request)
            })
            .collect()
    }
}
