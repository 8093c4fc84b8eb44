//! # itc-bridges: how the gateway reaches bulbs
//!
//! Pure protocol cores (no IO, no clock: time comes in as an argument) and,
//! as they land, the drivers that run them. Today:
//! - [`light`]: what a light is — its state, the commands it takes, and how
//!   it moves from one state to the next over a transition time. Every
//!   bridge (Zigbee, BLE mesh, MQTT) maps its wire protocol onto this.
//! - [`sim`]: a simulated radio network of bulbs that behave like lights
//!   (transitions, reports, link quality, joining while the network is
//!   open), standing in for hardware in `itc-gateway dev`, tests and
//!   benchmarks.

#![forbid(unsafe_code)]

pub mod light;
pub mod mesh;
pub mod mqtt;
pub mod sim;
pub mod zigbee;
