//! Bluetooth mesh, as a provisioner and proxy client speaks it (Mesh
//! Profile 1.0.1). The protocol layers are pure, sans-IO like the Zigbee
//! core: keys, the IV index, sequence numbers and time come in as
//! arguments; bytes go out as return values. Only [`link`] and [`ble`] do
//! IO.
//!
//! - [`access`]: opcodes, configuration (AppKey Add, Model App Bind) and
//!   the lighting models' Set, Set Unacknowledged and Status messages;
//! - [`crypto`]: AES-CMAC, s1, k1–k4, AES-CCM (RustCrypto's AES, CMAC and
//!   CCM; only the mesh's compositions are written here);
//! - [`network`]: the Network PDU, its encryption and header obfuscation;
//! - [`transport`]: upper transport encryption with application or device
//!   keys, lower transport segmentation, reassembly and acknowledgment;
//! - [`provisioning`]: PB-GATT provisioning, both roles (ECDH P-256
//!   through `ring`, no-OOB confirmation, the session key schedule);
//! - [`replay`]: the replay protection list;
//! - [`stack`]: the layers stacked for one element, with drop counters;
//! - [`proxy`]: Proxy PDUs over GATT (SAR into 20-octet writes) and the
//!   proxy filter's configuration messages;
//! - [`client`]: the gateway's side (provisioner, configuration client,
//!   lighting client) over one proxy connection;
//! - [`sim`]: a simulated bulb, the node side of all of it, for tests and
//!   `dev`;
//! - [`link`]: one connection to a node, real or simulated, and the
//!   exchange of PDUs over it;
//! - [`ble`]: the real one, over btleplug (BlueZ through D-Bus on Linux):
//!   scanning for mesh beacons, connecting, Data In and Data Out;
//! - `fake_bluez` (feature `fake-bluez`, for tests): BlueZ's D-Bus objects
//!   on a private bus with simulated bulbs behind them, so the real
//!   btleplug path runs without a radio.
//!
//! Not here yet: segment retransmission (a proxy link over GATT is
//! reliable), IV update and key refresh.
//!
//! Every layer is checked byte for byte against the specification's
//! sample data (§8), in both directions.

pub mod access;
pub mod ble;
pub mod client;
pub mod crypto;
#[cfg(feature = "fake-bluez")]
pub mod fake_bluez;
pub mod link;
pub mod network;
pub mod provisioning;
pub mod proxy;
pub mod replay;
pub mod sim;
pub mod stack;
pub mod transport;
