//! Bluetooth mesh, as a provisioner and proxy client speaks it (Mesh
//! Profile 1.0.1). Pure layers, sans-IO like the Zigbee core: keys, the IV
//! index, sequence numbers and time come in as arguments; bytes go out as
//! return values.
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
//!   `dev`.
//!
//! Not here yet: the btleplug transport and its test against a fake BlueZ,
//! device keys and sequence numbers kept across restarts, segment
//! retransmission (a proxy link over GATT is reliable), IV update and key
//! refresh. The gateway's `service::mesh` drives [`client`] over
//! simulated bulbs meanwhile.
//!
//! Every layer is checked byte for byte against the specification's
//! sample data (§8), in both directions.

pub mod access;
pub mod ble;
pub mod client;
pub mod crypto;
pub mod network;
pub mod provisioning;
pub mod proxy;
pub mod replay;
pub mod sim;
pub mod stack;
pub mod transport;
