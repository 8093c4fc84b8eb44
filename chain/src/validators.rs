//! The validator set: the gateways that run the PBFT main chain.
//!
//! A set is kept sorted by key with no duplicates, so it has one encoding and
//! one hash, and "the i-th validator" (PBFT's primary = view mod n) means the
//! same thing on every replica.
//!
//! Quorums are more than two thirds of the set (`⌊2n/3⌋ + 1`). For n = 3f+1
//! that is PBFT's 2f+1 (Castro & Liskov §3); for other sizes it is still large
//! enough that any two quorums share an honest validator.

use std::io;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{encode, Text};
use crate::crypto::{Hash, PublicKey};

/// The most validators a set may have.
pub const MAX_VALIDATORS: usize = 128;

/// One gateway of the set: its key and where peers reach it.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Validator {
    pub key: PublicKey,
    /// `host:port` of its consensus endpoint.
    pub addr: Text<128>,
}

impl Validator {
    /// Its consensus endpoint as a socket address: what gateways dial, so
    /// the chain refuses an address for which this fails.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, std::net::AddrParseError> {
        self.addr.as_str().parse()
    }
}

/// Why a list of validators is not a valid set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    #[error("a validator set must not be empty")]
    Empty,
    #[error("{len} validators exceed the limit of {max}")]
    TooMany { len: usize, max: usize },
    #[error("validator {key} appears twice")]
    Duplicate { key: PublicKey },
    #[error("validators are not sorted by key")]
    Unsorted,
}

/// A valid validator set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, Serialize)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Sorts `validators` by key and checks the result.
    pub fn new(mut validators: Vec<Validator>) -> Result<Self, ValidatorSetError> {
        validators.sort_by_key(|v| v.key);
        Self::from_sorted(validators)
    }

    fn from_sorted(validators: Vec<Validator>) -> Result<Self, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > MAX_VALIDATORS {
            return Err(ValidatorSetError::TooMany {
                len: validators.len(),
                max: MAX_VALIDATORS,
            });
        }
        for pair in validators.windows(2) {
            match pair[0].key.cmp(&pair[1].key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ValidatorSetError::Duplicate { key: pair[0].key })
                }
                std::cmp::Ordering::Greater => return Err(ValidatorSetError::Unsorted),
            }
        }
        Ok(ValidatorSet { validators })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The most faulty validators the set tolerates: f = ⌊(n-1)/3⌋.
    pub fn max_faulty(&self) -> usize {
        itc_verify::quorum::max_faulty(self.len())
    }

    /// Signatures needed for a quorum: ⌊2n/3⌋ + 1 (2f+1 when n = 3f+1).
    pub fn quorum(&self) -> usize {
        itc_verify::quorum::quorum(self.len())
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.validators.binary_search_by(|v| v.key.cmp(key)).ok()
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.index_of(key).is_some()
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.index_of(key).map(|i| &self.validators[i])
    }

    /// PBFT's primary for `view`: validator number `view mod n`
    /// (Castro & Liskov §4.1).
    pub fn primary(&self, view: u64) -> &Validator {
        let n = self.len() as u64;
        // `n > 0` is an invariant of the type.
        &self.validators[(view % n.max(1)) as usize]
    }

    /// The hash headers commit to.
    pub fn hash(&self) -> Hash {
        Hash::digest(&encode(self))
    }

    /// This set with `validator` added.
    pub fn with(&self, validator: Validator) -> Result<Self, ValidatorSetError> {
        let mut validators = self.validators.clone();
        validators.push(validator);
        ValidatorSet::new(validators)
    }

    /// This set without `key`.
    pub fn without(&self, key: &PublicKey) -> Result<Self, ValidatorSetError> {
        let validators = self
            .validators
            .iter()
            .filter(|v| &v.key != key)
            .cloned()
            .collect();
        ValidatorSet::from_sorted(validators)
    }
}

impl BorshDeserialize for ValidatorSet {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        let len = u32::deserialize_reader(reader)? as usize;
        if len > MAX_VALIDATORS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ValidatorSetError::TooMany {
                    len,
                    max: MAX_VALIDATORS,
                },
            ));
        }
        let mut validators = Vec::with_capacity(len);
        for _ in 0..len {
            validators.push(Validator::deserialize_reader(reader)?);
        }
        ValidatorSet::from_sorted(validators)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<'de> Deserialize<'de> for ValidatorSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            validators: Vec<Validator>,
        }
        let raw = Raw::deserialize(d)?;
        ValidatorSet::new(raw.validators).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode;
    use crate::crypto::Keypair;

    fn validator(seed: u8) -> Validator {
        Validator {
            key: Keypair::from_seed([seed; 32]).public(),
            addr: Text::new(format!("127.0.0.1:{}", 7000 + seed as u16)).unwrap(),
        }
    }

    #[test]
    fn quorum_sizes() {
        for (n, f, q) in [
            (1, 0, 1),
            (4, 1, 3),
            (5, 1, 4),
            (6, 1, 5),
            (7, 2, 5),
            (10, 3, 7),
        ] {
            let set = ValidatorSet::new((1..=n).map(validator).collect()).unwrap();
            assert_eq!((set.max_faulty(), set.quorum()), (f, q), "n = {n}");
            // Two quorums overlap in more than f validators.
            assert!(2 * q - n as usize > f, "n = {n}");
        }
    }

    #[test]
    fn rejects_duplicates_and_unsorted_on_decode() {
        assert_eq!(
            ValidatorSet::new(vec![validator(1), validator(1)]),
            Err(ValidatorSetError::Duplicate {
                key: validator(1).key
            })
        );
        let set = ValidatorSet::new(vec![validator(1), validator(2)]).unwrap();
        let mut bytes = encode(&set);
        assert_eq!(decode::<ValidatorSet>(&bytes), Ok(set.clone()));
        // Swap the two entries' bytes: still well-formed Borsh, but unsorted.
        let entry = (bytes.len() - 5) / 2;
        let (a, b) = bytes[5..].split_at_mut(entry);
        a.swap_with_slice(b);
        assert!(decode::<ValidatorSet>(&bytes).is_err());
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
    }

    #[test]
    fn primary_rotates_with_view() {
        let set = ValidatorSet::new((1..=4).map(validator).collect()).unwrap();
        assert_eq!(set.primary(0), &set.validators()[0]);
        assert_eq!(set.primary(5), &set.validators()[1]);
    }
}
