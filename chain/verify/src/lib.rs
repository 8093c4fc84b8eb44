//! ITC's verifier: commit certificates and Merkle proofs, and nothing else,
//! in `no_std` + `alloc`, so that a bulb's microcontroller (a Cortex-M4,
//! `thumbv7em-none-eabihf`) can check what a gateway tells it — that it is
//! owned by whom it is told, that a firmware manifest is on the chain —
//! without trusting that gateway.
//!
//! Why a crate of its own: `itc-chain` uses `ring`, `jmt` and `std`, none of
//! which builds for a bare-metal target. The checks themselves are small and
//! are kept here once:
//!
//! - [`merkle`]: RFC 6962/9162 inclusion proofs (a block's transactions).
//!   `itc-chain` verifies its proofs through this module.
//! - [`quorum`]: the commit-certificate rule — distinct members of the set,
//!   each signature valid, at least a quorum. `itc-chain` verifies its
//!   certificates through this module.
//! - [`smt`]: Jellyfish sparse-Merkle state proofs, in the wire layout `jmt`
//!   produces. `itc-chain` verifies with `jmt` itself; this is the same
//!   algorithm for targets `jmt` does not build for, and the two are
//!   cross-checked in `chain/tests/verifier.rs`.
//! - [`wire`] and [`client`]: the byte-level light client a device runs —
//!   it decodes headers, certificates and sets exactly as `itc-chain`
//!   encodes them and follows the chain by the Tendermint light-client rules
//!   (see `itc_chain::light` for the citation).
//!
//! Hashing and signature checks come from a [`Backend`]: `itc-chain` plugs
//! in `ring`; on a microcontroller the pure-Rust [`Software`] backend
//! (RustCrypto's `sha2`, `ed25519-dalek`) is used, since `ring` needs a C
//! toolchain for the target.
//!
//! Pure and panic-free on untrusted input: no IO, no clock (time is an
//! argument), no unsafe code.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod backend;
pub mod client;
pub mod merkle;
pub mod quorum;
pub mod smt;
pub mod wire;

pub use backend::Backend;
#[cfg(feature = "software")]
pub use backend::Software;
pub use client::{Verifier, VerifyError};

use core::fmt;

/// The version byte that starts every encoding (`itc_chain::codec`).
pub const ENCODING_VERSION: u8 = 1;

/// The domain prefix of a commit vote: a validator signs this followed by
/// the header hash (`itc_chain::crypto::Domain::Commit`).
pub const COMMIT_DOMAIN: &[u8] = b"ITC/v1/commit\0";

/// 32 bytes (a hash or a key), shown in hex in errors.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hex32(pub [u8; 32]);

impl fmt::Display for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
