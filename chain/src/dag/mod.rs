//! The DAG side chain's core: device transactions (signed at the source,
//! with proof of work sized to the device's security level) in a tangle,
//! made final by PBFT blocks that anchor it.
//!
//! - [`tx`]: the transaction, its signature and work;
//! - [`pow`]: the work per security level;
//! - [`tangle`]: solidification, non-lazy uniform tip selection, rate
//!   limits, anchoring and the deterministic confirmation order with
//!   double-spend detection.
//!
//! Pure like the rest of `itc-chain`: time and randomness are arguments.
//! Gossip between gateways, storage and the REST status are the gateway's
//! (not built yet).

pub mod pow;
pub mod tangle;
pub mod tx;

pub use tangle::{Confirmed, DagError, Status, Tangle, TangleConfig};
pub use tx::{DagBody, DagKind, DagTx, DagTxError};
