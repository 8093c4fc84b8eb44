//! The DAG side chain's core: device transactions (signed at the source,
//! with proof of work sized to the device's security level) in a tangle,
//! made final by PBFT blocks that anchor it.
//!
//! - [`tx`]: the transaction, its signature and work;
//! - [`pow`]: the work per security level;
//! - [`tangle`]: solidification, non-lazy uniform tip selection, rate
//!   limits, anchoring and the deterministic confirmation order with
//!   double-spend detection;
//! - [`proof`]: that a transaction is in a certified anchor's past cone;
//! - [`gossip`]: what gateways tell each other about the tangle.
//!
//! Pure like the rest of `itc-chain`: time and randomness are arguments.
//! The gateway drives it (`itc-gateway`'s `dag` service): gossip over the
//! peer channels, sqlite storage and pruning, anchoring, the REST status.

pub mod gossip;
pub mod pow;
pub mod proof;
pub mod tangle;
pub mod tx;

pub use gossip::DagMessage;
pub use proof::{DagProof, DagProofError};
pub use tangle::{Confirmed, DagError, Status, Tangle, TangleConfig};
pub use tx::{CheckedDagTx, DagBody, DagKind, DagTx, DagTxError};
