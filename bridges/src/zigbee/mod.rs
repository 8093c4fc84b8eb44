//! The Zigbee bridge: a TI Z-Stack coordinator (CC2652/CC1352 and
//! friends) on a serial port, speaking ZNP.
//!
//! - [`znp`]: the serial framing, a streaming parser (pure);
//! - [`mt`]: the Monitor and Test commands the driver uses, typed (pure);
//! - [`zcl`]: the Zigbee Cluster Library frames of lights — Basic, On/Off,
//!   Level Control, Color Control — and how they map onto
//!   [`crate::light`] (pure).

pub mod mt;
pub mod zcl;
pub mod znp;
