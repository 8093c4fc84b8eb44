//! PBFT among the gateways: Castro and Liskov, "Practical Byzantine Fault
//! Tolerance", OSDI '99 (section numbers in the handlers refer to it).
//!
//! The replica is a pure state machine in the style of quinn-proto: inputs
//! arrive through `handle_*` with the current time, outputs are drained with
//! [`Replica::poll_output`]. It does no IO, reads no clock and draws no
//! randomness, so a simulator can run many replicas in one process under a
//! seeded scheduler, and the gateway can drive the same code over sockets
//! and sqlite.
//!
//! How PBFT maps onto the chain:
//! - a sequence number is a block height, and a request batch is a block;
//!   the digest is the header hash, so 2f+1 COMMIT votes are the block's
//!   [`crate::block::CommitCertificate`];
//! - a block is validated by executing it on the ledger before a backup
//!   prepares it, so a primary that proposes invalid transactions is caught
//!   at PRE-PREPARE and replaced. Executing needs the parent's state, so a
//!   primary proposes height n+1 once it has committed n (pipelining depth
//!   one; batches grow with load);
//! - a checkpoint every `checkpoint_interval` heights carries the header
//!   hash (which names the state root); the validator set changes only at an
//!   epoch boundary, which must be a checkpoint;
//! - state transfer is by certified blocks: a replica that is behind is sent
//!   committed blocks with their certificates, checks each certificate and
//!   re-executes the block.
//!
//! Durability: before a replica sends a vote or a view change it emits
//! [`Output::Persist`]; the driver must make that record durable before it
//! sends any later message that [waits for records]. On restart the records
//! are handed back to [`Replica::new`], so a replica never contradicts what
//! it said before. Normal-case pre-prepares and prepares are the exception:
//! they are not persisted, and a restarted replica neither proposes nor
//! prepares in the view it restarted in (a prepared certificate, which view
//! changes carry, is persisted before the COMMIT that follows it). It knows
//! it restarted by the view record every start
//! persists, so the driver makes the records [`Replica::new`] emitted
//! durable before it hands the replica any input.
//!
//! [waits for records]: Message::waits_for_records

mod mempool;
mod message;
mod replica;
mod view_change;

pub use mempool::{AdmitError, Mempool, MAX_PENDING};
pub use message::{
    Checkpoint, CheckpointProof, Commit, Message, NewView, PrePrepare, Prepare, PreparedProof,
    ProofError, Signed, Status, View, ViewChange, MAX_PREPARED,
};
pub use replica::{AnchorAvailability, Output, Params, ParamsError, Record, Replica, Timer, Vote};

#[cfg(test)]
mod tests;
