//! A confirmation proof: that a DAG transaction is in the past cone of an
//! anchor a certified block carries.
//!
//! The DAG is content-addressed — a transaction's id hashes its body, and
//! the body lists its parents' ids — so a chain of transactions from the
//! one in question to an anchored tip, each approving the one before,
//! proves the tip's past cone holds it. Two Merkle inclusion proofs then
//! take the tip into the header: the tip into its anchor's root, the
//! anchor's root into the header's `dag_root` (a block may carry several
//! anchors). A light client that verified the header (its quorum
//! certificate) needs to trust nobody for the rest.

use serde::{Deserialize, Serialize};

use super::tx::DagTx;
use crate::block::{Block, Header};
use crate::crypto::Hash;
use crate::merkle::{self, InclusionProof, MerkleError};
use crate::types::Height;

/// Links the transaction `path[0]` to the header at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagProof {
    pub height: Height,
    /// From the transaction to an anchored tip; each approves the one
    /// before it.
    pub path: Vec<DagTx>,
    /// The tip among its anchor's tips.
    pub tip: InclusionProof,
    /// That anchor's root, among the block's anchor roots.
    pub anchor_root: Hash,
    pub anchor: InclusionProof,
}

/// Why a confirmation proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagProofError {
    #[error("the proof is for height {proof}, the header is at {header}")]
    Height { proof: Height, header: Height },
    #[error("the path is empty")]
    EmptyPath,
    #[error("the path starts at {found}, not at the transaction {expected}")]
    WrongStart { expected: Hash, found: Hash },
    #[error("step {step} of the path does not approve the one before it")]
    Broken { step: usize },
    #[error("the tip is not in the anchor: {0}")]
    Tip(MerkleError),
    #[error("the anchor is not in the header's DAG root: {0}")]
    Anchor(MerkleError),
}

impl DagProof {
    /// The proof that `path`'s first transaction is confirmed by `block`,
    /// if `path` ends at a tip one of its anchors names.
    pub fn build(path: Vec<DagTx>, block: &Block) -> Option<DagProof> {
        let tip = path.last()?.id();
        let anchors: Vec<_> = crate::block::anchors(block.txs.as_slice()).collect();
        let roots: Vec<Hash> = anchors.iter().map(|a| a.root).collect();
        for (index, anchor) in anchors.iter().enumerate() {
            let tips = anchor.tips.as_slice();
            if let Some(at) = tips.iter().position(|t| *t == tip) {
                return Some(DagProof {
                    height: block.header.height,
                    path,
                    tip: merkle::prove(tips, at)?,
                    anchor_root: anchor.root,
                    anchor: merkle::prove(&roots, index)?,
                });
            }
        }
        None
    }

    /// Checks that the transaction `id` is confirmed by `header` (which the
    /// caller has verified).
    pub fn verify(&self, id: &Hash, header: &Header) -> Result<(), DagProofError> {
        if self.height != header.height {
            return Err(DagProofError::Height {
                proof: self.height,
                header: header.height,
            });
        }
        let first = self.path.first().ok_or(DagProofError::EmptyPath)?;
        let mut previous = first.id();
        if previous != *id {
            return Err(DagProofError::WrongStart {
                expected: *id,
                found: previous,
            });
        }
        for (step, tx) in self.path.iter().enumerate().skip(1) {
            if !tx.body.parents.as_slice().contains(&previous) {
                return Err(DagProofError::Broken { step });
            }
            previous = tx.id();
        }
        self.tip
            .verify(&previous, &self.anchor_root)
            .map_err(DagProofError::Tip)?;
        self.anchor
            .verify(&self.anchor_root, &header.dag_root)
            .map_err(DagProofError::Anchor)
    }
}
