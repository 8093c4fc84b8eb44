//! The one binary encoding for everything that is signed or hashed.
//!
//! The encoding is Borsh ("Binary Object Representation Serializer for
//! Hashing"): fixed-width little-endian integers, `u32` length prefixes, enum
//! tags as one byte, and no alternatives, so every value has exactly one
//! encoding — which is what signing and hashing need. Top-level objects are
//! prefixed with one version byte ([`ENCODING_VERSION`]) so the format can
//! change without ambiguity.
//!
//! Decoding is strict, because its input comes from peers and devices:
//! - the version byte must be known;
//! - the input must be at most [`MAX_ENCODED_LEN`] bytes;
//! - every length prefix is checked against its field's bound *before*
//!   anything is allocated ([`Text`], [`Bytes`], [`BoundedVec`]);
//! - trailing bytes are an error;
//! - the decoded value must re-encode to exactly the input (so a
//!   non-canonical spelling can never hash to a different id);
//! - it never panics: every failure is a [`DecodeError`].

use std::io;

use borsh::{BorshDeserialize, BorshSerialize};

/// The version byte in front of every top-level encoding.
pub const ENCODING_VERSION: u8 = itc_verify::ENCODING_VERSION;

/// No encoded object accepted from outside is larger than this (a block of
/// 10,000 transactions fits easily).
pub const MAX_ENCODED_LEN: usize = 16 * 1024 * 1024;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("unknown encoding version {found} (expected {expected})")]
    UnknownVersion { found: u8, expected: u8 },
    #[error("input of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("a length prefix of {len} exceeds the field's bound of {max}")]
    Oversize { len: u64, max: u64 },
    #[error("{count} trailing bytes after the value")]
    TrailingBytes { count: usize },
    #[error("the input is not the canonical encoding of its value")]
    NonCanonical,
    #[error("malformed input: {reason}")]
    Malformed { reason: String },
}

/// The length-bound violation carried inside an `io::Error` through Borsh.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("length {len} exceeds bound {max}")]
struct LengthExceeded {
    len: u64,
    max: u64,
}

fn length_error(len: u64, max: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LengthExceeded { len, max })
}

fn from_io(err: io::Error) -> DecodeError {
    if let Some(exceeded) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LengthExceeded>())
    {
        return DecodeError::Oversize {
            len: exceeded.len,
            max: exceeded.max,
        };
    }
    DecodeError::Malformed {
        reason: err.to_string(),
    }
}

/// The versioned encoding of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![ENCODING_VERSION];
    // Writing into a Vec cannot fail.
    if value.serialize(&mut out).is_err() {
        out.truncate(1);
    }
    out
}

/// Decodes a versioned encoding made by [`encode`], strictly (see the module
/// docs).
pub fn decode<T: BorshSerialize + BorshDeserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_ENCODED_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENCODED_LEN,
        });
    }
    let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != ENCODING_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: version,
            expected: ENCODING_VERSION,
        });
    }
    let value = T::deserialize(&mut rest).map_err(from_io)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

fn read_len<R: io::Read>(reader: &mut R, max: usize) -> io::Result<usize> {
    let len = u32::deserialize_reader(reader)?;
    if len as u64 > max as u64 {
        return Err(length_error(len as u64, max as u64));
    }
    Ok(len as usize)
}

fn write_len<W: io::Write>(writer: &mut W, len: usize, max: usize) -> io::Result<()> {
    if len > max {
        return Err(length_error(len as u64, max as u64));
    }
    // len <= max <= u32::MAX for every bound used here.
    let len = u32::try_from(len).map_err(|_| length_error(len as u64, u32::MAX as u64))?;
    len.serialize(writer)
}

/// Why a bounded value could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("{len} exceeds the bound of {max}")]
    TooLong { len: usize, max: usize },
    #[error("must not be empty")]
    Empty,
    #[error("character {ch:?} is not allowed")]
    BadCharacter { ch: char },
}

/// A UTF-8 string of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    pub fn new(s: impl Into<String>) -> Result<Self, BoundError> {
        let s = s.into();
        if s.len() > MAX {
            return Err(BoundError::TooLong {
                len: s.len(),
                max: MAX,
            });
        }
        Ok(Text(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> std::fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> std::fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> BorshSerialize for Text<MAX> {
    fn serialize<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        write_len(writer, self.0.len(), MAX)?;
        writer.write_all(self.0.as_bytes())
    }
}

impl<const MAX: usize> BorshDeserialize for Text<MAX> {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, MAX)?;
        let mut buf = vec![0u8; len];
        reader.read_exact(&mut buf)?;
        String::from_utf8(buf)
            .map(Text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<const MAX: usize> serde::Serialize for Text<MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for Text<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::new(<String as serde::Deserialize>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A byte string of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Bytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> Bytes<MAX> {
    pub fn new(bytes: Vec<u8>) -> Result<Self, BoundError> {
        if bytes.len() > MAX {
            return Err(BoundError::TooLong {
                len: bytes.len(),
                max: MAX,
            });
        }
        Ok(Bytes(bytes))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Serde form: lowercase hex.
impl<const MAX: usize> serde::Serialize for Bytes<MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for Bytes<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Bytes::new(bytes).map_err(serde::de::Error::custom)
    }
}

impl<const MAX: usize> BorshSerialize for Bytes<MAX> {
    fn serialize<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        write_len(writer, self.0.len(), MAX)?;
        writer.write_all(&self.0)
    }
}

impl<const MAX: usize> BorshDeserialize for Bytes<MAX> {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, MAX)?;
        let mut buf = vec![0u8; len];
        reader.read_exact(&mut buf)?;
        Ok(Bytes(buf))
    }
}

/// A vector of at most `MAX` elements.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    pub fn new(items: Vec<T>) -> Result<Self, BoundError> {
        if items.len() > MAX {
            return Err(BoundError::TooLong {
                len: items.len(),
                max: MAX,
            });
        }
        Ok(BoundedVec(items))
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<T> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        BoundedVec(Vec::new())
    }
}

impl<T: BorshSerialize, const MAX: usize> BorshSerialize for BoundedVec<T, MAX> {
    fn serialize<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        write_len(writer, self.0.len(), MAX)?;
        for item in &self.0 {
            item.serialize(writer)?;
        }
        Ok(())
    }
}

impl<T: BorshDeserialize, const MAX: usize> BorshDeserialize for BoundedVec<T, MAX> {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, MAX)?;
        // Grow as elements actually arrive; never trust the prefix for the
        // allocation size beyond a small cap.
        let mut items = Vec::with_capacity(len.min(1024));
        for _ in 0..len {
            items.push(T::deserialize_reader(reader)?);
        }
        Ok(BoundedVec(items))
    }
}

impl<T: serde::Serialize, const MAX: usize> serde::Serialize for BoundedVec<T, MAX> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.0, s)
    }
}

impl<'de, T: serde::Deserialize<'de>, const MAX: usize> serde::Deserialize<'de>
    for BoundedVec<T, MAX>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BoundedVec::new(<Vec<T> as serde::Deserialize>::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(BorshSerialize, BorshDeserialize, Debug, PartialEq)]
    struct Sample {
        flag: bool,
        name: Text<8>,
        items: BoundedVec<u16, 3>,
        maybe: Option<u8>,
    }

    fn sample() -> Sample {
        Sample {
            flag: true,
            name: Text::new("bulb").unwrap(),
            items: BoundedVec::new(vec![1, 2]).unwrap(),
            maybe: Some(9),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample());
        assert_eq!(bytes[0], ENCODING_VERSION);
        assert_eq!(decode::<Sample>(&bytes), Ok(sample()));
    }

    #[test]
    fn rejects_trailing_version_and_empty() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert_eq!(
            decode::<Sample>(&bytes),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let mut bytes = encode(&sample());
        bytes[0] = 2;
        assert_eq!(
            decode::<Sample>(&bytes),
            Err(DecodeError::UnknownVersion {
                found: 2,
                expected: 1
            })
        );
        assert_eq!(decode::<Sample>(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn rejects_oversize_length_prefix_before_allocating() {
        // version, flag, then a text length of u32::MAX.
        let bytes = [1u8, 1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode::<Sample>(&bytes),
            Err(DecodeError::Oversize {
                len: u32::MAX as u64,
                max: 8
            })
        );
        // A vector of 4 elements where at most 3 are allowed.
        let mut bytes = encode(&sample());
        let items_at = 1 + 1 + 4 + 4;
        bytes[items_at] = 4;
        assert_eq!(
            decode::<Sample>(&bytes),
            Err(DecodeError::Oversize { len: 4, max: 3 })
        );
        assert!(Text::<2>::new("abc").is_err());
    }

    #[test]
    fn rejects_non_canonical_bool_and_option() {
        let mut bytes = encode(&sample());
        bytes[1] = 2; // bool must be 0 or 1
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(DecodeError::Malformed { .. })
        ));
        let mut bytes = encode(&sample());
        let option_at = bytes.len() - 2;
        bytes[option_at] = 7; // option tag must be 0 or 1
        assert!(decode::<Sample>(&bytes).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x17c_2026),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Sample>(&bytes);
        }
    }
}
