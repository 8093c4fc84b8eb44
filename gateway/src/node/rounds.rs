//! The steps of a consensus round as a node reaches them, with the time:
//! where a block's submit-to-commit latency goes.
//!
//! Why: the latency targets are about a whole round (pre-prepare,
//! prepares, the synced record, commits, the stored block), and which step
//! costs what is not visible from outside a node. A node reports each step
//! to whoever subscribed ([`super::NodeHandle::rounds`]); `bench consensus`
//! does, and prints the steps' medians (BENCHMARKS.md, "Consensus"). With
//! no subscriber a step costs a counter check.

use std::time::Instant;

use itc_chain::pbft::Message;
use itc_chain::types::Height;
use serde::Serialize;

/// A step of the round at one height, in the order a round reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The primary sent its pre-prepare (§4.2).
    Proposed,
    /// A backup accepted the pre-prepare and sent its prepare.
    Accepted,
    /// Prepared (§4.2): the commit is made, held until the records that
    /// state it are synced.
    Prepared,
    /// The records are synced; the commit left.
    CommitSent,
    /// Committed-local (2f+1 commits); the block goes to the store.
    Committed,
    /// The block is stored; the API and subscribers learn of it.
    Published,
}

/// A step one node reached.
#[derive(Clone, Copy, Debug)]
pub struct RoundStep {
    pub height: Height,
    pub step: Step,
    pub at: Instant,
}

impl Step {
    /// The step a broadcast of `message` marks: when the replica made it
    /// (`released` false), or when it left after its records were synced
    /// (`released` true; only a commit waits so).
    pub(super) fn of_broadcast(message: &Message, released: bool) -> Option<(Step, Height)> {
        match (message, released) {
            (Message::PrePrepare(signed), false) => {
                Some((Step::Proposed, signed.body.block.header.height))
            }
            (Message::Prepare(signed), false) => Some((Step::Accepted, signed.body.height)),
            (Message::Commit(commit), false) => Some((Step::Prepared, commit.height)),
            (Message::Commit(commit), true) => Some((Step::CommitSent, commit.height)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use itc_chain::block::CommitSig;
    use itc_chain::crypto::{Hash, PublicKey, Signature};
    use itc_chain::pbft::{Commit, Status};

    #[test]
    fn a_commit_marks_prepared_when_made_and_commit_sent_when_released() {
        let commit = Message::Commit(Commit {
            view: 0,
            height: 7,
            digest: Hash([1; 32]),
            vote: CommitSig {
                validator: PublicKey([2; 32]),
                signature: Signature([3; 64]),
            },
        });
        assert_eq!(
            Step::of_broadcast(&commit, false),
            Some((Step::Prepared, 7))
        );
        assert_eq!(
            Step::of_broadcast(&commit, true),
            Some((Step::CommitSent, 7))
        );
        let status = Message::Status(Status {
            view: 0,
            height: 7,
            changing_view: false,
        });
        assert_eq!(Step::of_broadcast(&status, false), None);
    }
}
