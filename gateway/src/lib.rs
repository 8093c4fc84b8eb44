//! # itc-gateway
//!
//! The gateway: everything that touches the outside world on behalf of the
//! pure cores in `itc-chain` and `itc-bridges`: the chain store on sqlite
//! ([`store`]), the encrypted network between gateways ([`net`]), the node
//! that drives the PBFT replica ([`node`]) and its configuration
//! ([`config`]). The device bridges and the full REST API are wired in here
//! as they land.

pub mod app;
pub mod bench;
pub mod config;
pub mod dag;
pub mod light;
pub mod mqtt;
pub mod net;
pub mod node;
pub mod service;
pub mod store;

pub use store::{SqliteStore, StoreError};
