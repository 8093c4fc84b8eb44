//! # itc-gateway
//!
//! The gateway: everything that touches the outside world on behalf of the
//! pure cores in `itc-chain` and `itc-bridges`. Today it holds the chain
//! store on sqlite ([`store`]); the PBFT network, the device bridges and the
//! REST API are wired in here as they land.

pub mod net;
pub mod node;
pub mod store;

pub use store::{SqliteStore, StoreError};
