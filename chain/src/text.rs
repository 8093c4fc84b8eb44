//! The readable text form of keys, hashes and signatures, used in JSON, TOML,
//! logs and the command line.
//!
//! Each form carries its type, so a hash can never be pasted where an account
//! is expected:
//! - accounts (public keys): bech32m (BIP-350) with the human-readable part
//!   `itcpk`, so a mistyped account fails its checksum instead of sending
//!   tokens into the void;
//! - hashes: `sha256:<64 lowercase hex>`, the form OCI image digests use, so a
//!   firmware hash reads the same as `sha256sum` prints it;
//! - signatures: `ed25519:<128 lowercase hex>`.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};

use crate::crypto::{Hash, PublicKey, Signature};

/// The bech32m human-readable part of an account.
pub const ACCOUNT_HRP: &str = "itcpk";
const HASH_PREFIX: &str = "sha256:";
const SIGNATURE_PREFIX: &str = "ed25519:";

/// Why a text form did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected the prefix {expected:?}")]
    WrongPrefix { expected: &'static str },
    #[error("invalid bech32m: {reason}")]
    Bech32 { reason: String },
    #[error("invalid hex: {reason}")]
    Hex { reason: String },
    #[error("expected {expected} bytes, found {found}")]
    WrongLength { expected: usize, found: usize },
}

fn fixed<const N: usize>(bytes: Vec<u8>) -> Result<[u8; N], ParseError> {
    let found = bytes.len();
    bytes
        .try_into()
        .map_err(|_| ParseError::WrongLength { expected: N, found })
}

fn parse_hex<const N: usize>(s: &str, prefix: &'static str) -> Result<[u8; N], ParseError> {
    let body = s
        .strip_prefix(prefix)
        .ok_or(ParseError::WrongPrefix { expected: prefix })?;
    // Only the lowercase form is canonical: one value, one spelling.
    if body.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::Hex {
            reason: "uppercase hex is not canonical".into(),
        });
    }
    let bytes = hex::decode(body).map_err(|e| ParseError::Hex {
        reason: e.to_string(),
    })?;
    fixed(bytes)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ACCOUNT_HRP);
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, &self.0).map_err(|_| fmt::Error)
    }
}

impl FromStr for PublicKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|e| ParseError::Bech32 {
            reason: e.to_string(),
        })?;
        if checked.hrp().as_str() != ACCOUNT_HRP || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ParseError::WrongPrefix { expected: "itcpk1" });
        }
        fixed(checked.byte_iter().collect()).map(PublicKey)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HASH_PREFIX}{}", hex::encode(self.0))
    }
}

impl FromStr for Hash {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_hex(s, HASH_PREFIX).map(Hash)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SIGNATURE_PREFIX}{}", hex::encode(self.0))
    }
}

impl FromStr for Signature {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_hex(s, SIGNATURE_PREFIX).map(Signature)
    }
}

/// Debug, serde and the text form agree for each of these types.
macro_rules! text_form {
    ($ty:ty) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_form!(PublicKey);
text_form!(Hash);
text_form!(Signature);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[test]
    fn round_trips_and_type_prefixes() {
        let key = Keypair::from_seed([1; 32]).public();
        let text = key.to_string();
        assert!(text.starts_with("itcpk1"), "{text}");
        assert_eq!(text.parse::<PublicKey>(), Ok(key));

        let hash = Hash::digest(b"abc");
        assert_eq!(
            hash.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash.to_string().parse::<Hash>(), Ok(hash));

        let sig = Signature([0xab; 64]);
        assert_eq!(sig.to_string().parse::<Signature>(), Ok(sig));

        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    }

    #[test]
    fn rejects_typos_wrong_types_and_uppercase() {
        let key = Keypair::from_seed([1; 32]).public().to_string();
        // One changed character breaks the bech32m checksum.
        let mut typo = key.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(matches!(
            typo.parse::<PublicKey>(),
            Err(ParseError::Bech32 { .. })
        ));
        assert!(key.to_uppercase().parse::<PublicKey>().is_err());

        let hash = Hash::digest(b"x").to_string();
        assert!(hash.parse::<PublicKey>().is_err());
        assert_eq!(
            key.parse::<Hash>(),
            Err(ParseError::WrongPrefix {
                expected: "sha256:"
            })
        );
        assert!(hash
            .to_uppercase()
            .replace("SHA256", "sha256")
            .parse::<Hash>()
            .is_err());
        assert!(matches!(
            "sha256:abcd".parse::<Hash>(),
            Err(ParseError::WrongLength {
                expected: 32,
                found: 2
            })
        ));
    }
}
