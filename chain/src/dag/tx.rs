//! A DAG transaction: what a device issues, signed at the source.
//!
//! The body (issuer, kind, parents, time, security level) is signed by the
//! device's key, so a gateway that carries it can neither forge nor alter
//! it. The proof of work is over the signed body, the signature and a
//! nonce; that hash is the transaction's id, so the work also protects
//! the id.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use super::pow;
use crate::codec::{encode, BoundedVec, Bytes};
use crate::crypto::{AccountId, Domain, Hash, Keypair, PublicKey, Signature};
use crate::types::{Amount, DeviceId, TimestampMs};
use crate::zip215;

/// Parents a transaction approves: at least two (so the tangle widens and
/// every transaction confirms others), at most eight.
pub const MIN_PARENTS: usize = 2;
pub const MAX_PARENTS: usize = 8;
/// The largest payload a device may put in one transaction.
pub const MAX_PAYLOAD: usize = 1_024;

/// What a transaction carries.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DagKind {
    /// A light's state, as the device reported it.
    StateReport { data: Bytes<MAX_PAYLOAD> },
    /// A sensor or energy reading.
    Reading { data: Bytes<MAX_PAYLOAD> },
    /// An audit record of a command the gateway carried out.
    CommandRecord { data: Bytes<MAX_PAYLOAD> },
    /// A token micro-payment from the issuer's owner account. `nonce`
    /// names the payment: two payments with one (payer, nonce) are a double
    /// spend.
    Payment {
        from: AccountId,
        to: AccountId,
        amount: Amount,
        nonce: u64,
    },
}

/// The signed part.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DagBody {
    pub issuer: DeviceId,
    pub kind: DagKind,
    pub parents: BoundedVec<Hash, MAX_PARENTS>,
    pub time_ms: TimestampMs,
    /// The security level: how much work the issuer must do
    /// ([`pow::difficulty`]).
    pub level: u8,
}

/// A transaction as it travels.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DagTx {
    pub body: DagBody,
    /// The issuer's signature over the body, under [`Domain::DagTransaction`].
    pub signature: Signature,
    pub nonce: u64,
}

/// Why a transaction is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagTxError {
    #[error("{count} parents; a transaction approves {MIN_PARENTS} to {MAX_PARENTS}")]
    Parents { count: usize },
    #[error("a parent is listed twice")]
    DuplicateParent,
    #[error("the signature does not verify under the issuer's key")]
    BadSignature,
    #[error("the work is short: {have} leading zero bits, level {level} needs {need}")]
    Work { level: u8, have: u32, need: u32 },
    #[error("security level {level} is above the highest, {max}")]
    Level { level: u8, max: u8 },
}

/// A transaction whose shape, signature and work were checked against its
/// issuer's key: the only kind the tangle takes. Checking is the costly
/// part (an Ed25519 verification), so a driver may do it on many threads
/// and attach the results in order. It keeps the id the check computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedDagTx {
    tx: DagTx,
    id: Hash,
}

impl CheckedDagTx {
    pub fn tx(&self) -> &DagTx {
        &self.tx
    }

    pub fn id(&self) -> Hash {
        self.id
    }

    pub fn into_inner(self) -> DagTx {
        self.tx
    }
}

impl DagBody {
    /// The bytes the issuer signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        encode(self)
    }
}

impl DagTx {
    /// Signs `body` with the issuer's key and does its work, trying nonces
    /// from `start` (the caller picks it; the core draws no randomness).
    pub fn issue(key: &Keypair, body: DagBody, start: u64) -> DagTx {
        let signed = body.signing_bytes();
        let signature = key.sign(Domain::DagTransaction, &signed);
        let need = pow::difficulty(body.level);
        let mut nonce = start;
        while pow::leading_zero_bits(&work_hash(&signed, &signature, nonce)) < need {
            nonce = nonce.wrapping_add(1);
        }
        DagTx {
            body,
            signature,
            nonce,
        }
    }

    /// SHA-256 over body, signature and nonce: the work, and the id.
    pub fn work_hash(&self) -> Hash {
        work_hash(&self.body.signing_bytes(), &self.signature, self.nonce)
    }

    pub fn id(&self) -> Hash {
        self.work_hash()
    }

    /// [`DagTx::check`], keeping the proof that it passed and the id.
    pub fn checked(self, key: &PublicKey) -> Result<CheckedDagTx, DagTxError> {
        let id = self.check_id(key)?;
        Ok(CheckedDagTx { tx: self, id })
    }

    /// Checks shape, work and signature (by `key`, the issuer's key on
    /// chain), in that order: the cheap checks first.
    pub fn check(&self, key: &PublicKey) -> Result<(), DagTxError> {
        self.check_id(key).map(|_| ())
    }

    /// [`DagTx::check`], returning the id (the work hash).
    fn check_id(&self, key: &PublicKey) -> Result<Hash, DagTxError> {
        let (signed, id) = self.precheck()?;
        zip215::verify(key, Domain::DagTransaction, &signed, &self.signature)
            .map_err(|_| DagTxError::BadSignature)?;
        Ok(id)
    }

    /// [`DagTx::checked`] for many transactions at once, with their
    /// signatures checked in one batch ([`zip215::verify_all`]); the
    /// outcomes are in order, and each is what `checked` says of it alone.
    pub fn checked_all(items: Vec<(DagTx, PublicKey)>) -> Vec<Result<CheckedDagTx, DagTxError>> {
        let prechecked: Vec<_> = items
            .into_iter()
            .map(|(tx, key)| tx.precheck().map(|(signed, id)| (tx, key, signed, id)))
            .collect();
        let batch: Vec<zip215::Signed<'_>> = prechecked
            .iter()
            .flatten()
            .map(|(tx, key, signed, _)| zip215::Signed {
                key: *key,
                domain: Domain::DagTransaction,
                payload: signed,
                signature: tx.signature,
            })
            .collect();
        let mut verdicts = zip215::verify_all(&batch, &mut zip215::KeyCache::new(0)).into_iter();
        prechecked
            .into_iter()
            .map(|outcome| {
                let (tx, _, _, id) = outcome?;
                match verdicts.next() {
                    Some(true) => Ok(CheckedDagTx { tx, id }),
                    _ => Err(DagTxError::BadSignature),
                }
            })
            .collect()
    }

    /// Everything but the signature: the parents, the level and the work.
    /// Returns the signed bytes (encoded once for both) and the id.
    fn precheck(&self) -> Result<(Vec<u8>, Hash), DagTxError> {
        let parents = self.body.parents.as_slice();
        if !(MIN_PARENTS..=MAX_PARENTS).contains(&parents.len()) {
            return Err(DagTxError::Parents {
                count: parents.len(),
            });
        }
        let mut sorted = parents.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != parents.len() {
            return Err(DagTxError::DuplicateParent);
        }
        if self.body.level > pow::MAX_LEVEL {
            return Err(DagTxError::Level {
                level: self.body.level,
                max: pow::MAX_LEVEL,
            });
        }
        let signed = self.body.signing_bytes();
        let need = pow::difficulty(self.body.level);
        let id = work_hash(&signed, &self.signature, self.nonce);
        let have = pow::leading_zero_bits(&id);
        if have < need {
            return Err(DagTxError::Work {
                level: self.body.level,
                have,
                need,
            });
        }
        Ok((signed, id))
    }
}

/// SHA-256 over the signed body's encoding, the signature and the nonce.
fn work_hash(signed: &[u8], signature: &Signature, nonce: u64) -> Hash {
    Hash::digest_parts(&[signed, &signature.0, &nonce.to_le_bytes()])
}
