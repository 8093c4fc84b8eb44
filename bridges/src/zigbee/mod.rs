//! The Zigbee bridge: a TI Z-Stack coordinator (CC2652/CC1352 and
//! friends) on a serial port, speaking ZNP.
//!
//! - [`znp`]: the serial framing, a streaming parser (pure);
//! - [`mt`]: the Monitor and Test commands the driver uses, typed (pure);
//! - [`zcl`]: the Zigbee Cluster Library frames of lights — Basic, On/Off,
//!   Level Control, Color Control — and how they map onto
//!   [`crate::light`] (pure);
//! - [`ota`]: the OTA Upgrade cluster's query-next-image handshake (pure);
//! - [`host`]: requests matched to responses, retries, data requests
//!   tracked to their delivery confirm (sans-IO);
//! - [`network`]: the coordinator brought up, devices interviewed, light
//!   commands sent and reports folded in (sans-IO);
//! - [`stick`]: a simulated coordinator with bulbs, byte-exact ZNP
//!   (sans-IO), for `dev`, tests and benches;
//! - [`driver`]: the network on a real serial port (tokio-serial), with
//!   reopening when the stick comes back;
//! - [`sim_port`]: the simulated stick behind a real pseudo-terminal.

pub mod driver;
pub mod host;
pub mod mt;
pub mod network;
pub mod ota;
pub mod sim_port;
pub mod stick;
pub mod zcl;
pub mod znp;
