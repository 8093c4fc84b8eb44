//! Small value types shared by transactions and state: device ids, models,
//! rights, firmware versions, amounts and times.
//!
//! Each validates itself when it is made *and* when it is decoded, so a value
//! that exists is a valid one: no handler re-checks a device id's characters.

use std::fmt;
use std::io;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{BoundError, Text};

/// Token amounts in integer base units. 1 ITC = [`BASE_UNITS_PER_ITC`] units.
pub type Amount = u64;

/// Base units in one ITC.
pub const BASE_UNITS_PER_ITC: Amount = 1_000_000;

/// Milliseconds since the Unix epoch. Block time is chosen by the proposer and
/// checked by the replicas; the core never reads a clock.
pub type TimestampMs = u64;

/// Block height. The genesis is height 0.
pub type Height = u64;

/// The longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A device's id on the chain, e.g. `zigbee:00124b0012345678` or
/// `mqtt:esp-kitchen-1`: 1 to 64 characters from `[A-Za-z0-9:._-]`, so it is
/// safe in MQTT topics, URLs and logs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize)]
pub struct DeviceId(Text<MAX_DEVICE_ID_LEN>);

impl DeviceId {
    pub fn new(id: impl Into<String>) -> Result<Self, BoundError> {
        let id = id.into();
        if id.is_empty() {
            return Err(BoundError::Empty);
        }
        if let Some(ch) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-')))
        {
            return Err(BoundError::BadCharacter { ch });
        }
        Text::new(id).map(DeviceId)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl BorshDeserialize for DeviceId {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let text = Text::<MAX_DEVICE_ID_LEN>::deserialize_reader(reader)?;
        DeviceId::new(text.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.as_str())
    }
}

impl FromStr for DeviceId {
    type Err = BoundError;
    fn from_str(s: &str) -> Result<Self, BoundError> {
        DeviceId::new(s)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DeviceId::new(<String as Deserialize>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A device model name, as the manufacturer spells it (e.g. `LCT015`).
pub type Model = Text<64>;

/// How the gateway reaches a device.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    Zigbee = 0,
    BleMesh = 1,
    Mqtt = 2,
}

/// What a grant allows, as a set of bits. Unknown bits are rejected, so a
/// set has one encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, BorshSerialize)]
pub struct Rights(u8);

impl Rights {
    /// Send commands (on/off, level, colour…).
    pub const CONTROL: Rights = Rights(0b01);
    /// Read state and history.
    pub const READ: Rights = Rights(0b10);
    const ALL: u8 = 0b11;

    pub fn from_bits(bits: u8) -> Option<Rights> {
        (bits & !Self::ALL == 0).then_some(Rights(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.contains(Rights::CONTROL) {
            names.push("control");
        }
        if self.contains(Rights::READ) {
            names.push("read");
        }
        names
    }
}

impl BorshDeserialize for Rights {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let bits = u8::deserialize_reader(reader)?;
        Rights::from_bits(bits).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown rights bits {bits:#04x}"),
            )
        })
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rights({})", self.names().join("+"))
    }
}

/// Rights read and write as a list of names: `["control", "read"]`.
impl Serialize for Rights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.names(), s)
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = <Vec<String> as Deserialize>::deserialize(d)?;
        let mut rights = Rights::default();
        for name in names {
            rights = rights.union(match name.as_str() {
                "control" => Rights::CONTROL,
                "read" => Rights::READ,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown right {other:?} (expected \"control\" or \"read\")"
                    )))
                }
            });
        }
        Ok(rights)
    }
}

/// A firmware version, ordered as semantic versions are.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct FirmwareVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode, DecodeError};

    #[test]
    fn device_ids_are_validated_on_decode_too() {
        assert!(DeviceId::new("zigbee:00124b0012345678").is_ok());
        assert_eq!(DeviceId::new(""), Err(BoundError::Empty));
        assert_eq!(
            DeviceId::new("bulb/1"),
            Err(BoundError::BadCharacter { ch: '/' })
        );
        assert!(DeviceId::new("x".repeat(65)).is_err());
        // Smuggle a bad id past the constructor by encoding a raw text.
        let raw = encode(&Text::<64>::new("bad id").unwrap());
        assert!(matches!(
            decode::<DeviceId>(&raw),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn rights_reject_unknown_bits() {
        assert_eq!(decode::<Rights>(&[1, 0b11]), Ok(Rights(0b11)));
        assert!(decode::<Rights>(&[1, 0b100]).is_err());
        let json = serde_json::to_string(&Rights::CONTROL.union(Rights::READ)).unwrap();
        assert_eq!(json, r#"["control","read"]"#);
        assert!(serde_json::from_str::<Rights>(r#"["admin"]"#).is_err());
    }

    #[test]
    fn device_kind_discriminants_are_stable() {
        assert_eq!(encode(&DeviceKind::Mqtt), vec![1, 2]);
        assert!(decode::<DeviceKind>(&[1, 3]).is_err());
    }
}
