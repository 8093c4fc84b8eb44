//! Chain transactions: what they say, how they are signed and how they are
//! named.
//!
//! A transaction names its chain (so it cannot be replayed on another chain),
//! its sender (an account = a public key) and the sender's next nonce (so it
//! cannot be replayed on this chain). The sender signs the versioned encoding
//! of all of that under [`Domain::Transaction`]. A transaction's id is the
//! SHA-256 of its signed encoding.
//!
//! Proofs made by parties other than the sender travel inside the body and
//! are signed over their own domain-separated payloads (see
//! [`registration_payload`], [`claim_payload`] and
//! [`validator_change_payload`]).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{encode, BoundedVec, Text};
use crate::crypto::{AccountId, CryptoError, Domain, Hash, Keypair, PublicKey, Signature};
use crate::types::{Amount, DeviceId, DeviceKind, FirmwareVersion, Model, Rights, TimestampMs};
use crate::validators::Validator;
use crate::zip215;

/// A chain's name, e.g. `itc-dev`.
pub type ChainId = Text<32>;

/// Most approvals a validator-set change may carry (one per validator).
pub const MAX_APPROVALS: usize = crate::validators::MAX_VALIDATORS;

/// Most DAG tips one anchor may name.
pub const MAX_ANCHOR_TIPS: usize = 64;
/// Most DAG payments one anchor may carry.
pub const MAX_ANCHOR_PAYMENTS: usize = 256;

/// An unsigned transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tx {
    pub chain_id: ChainId,
    pub sender: AccountId,
    /// Must equal the sender's account nonce; the first is 0.
    pub nonce: u64,
    pub body: TxBody,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxBody {
    /// Move tokens from the sender to `to`.
    Transfer { to: AccountId, amount: Amount },
    /// A gateway (the sender, a current validator) registers a device it
    /// reaches. The device proves it holds `device_key`.
    RegisterDevice(DeviceRegistration),
    /// The sender becomes the first owner of an unclaimed device. The device
    /// or its registering gateway (`authorizer`) must have signed the
    /// sender's claim, so nobody can snatch a device off the chain by
    /// front-running its rightful owner.
    ClaimDevice {
        device: DeviceId,
        authorizer: PublicKey,
        authorization: Signature,
    },
    /// The owner hands the device to `new_owner`. Every grant on the device
    /// ends with the transfer.
    TransferDevice {
        device: DeviceId,
        new_owner: AccountId,
    },
    /// The owner lets `grantee` use the device with `rights` until
    /// `expires_at`. A new grant to the same grantee replaces the old one.
    GrantAccess {
        device: DeviceId,
        grantee: AccountId,
        rights: Rights,
        expires_at: TimestampMs,
    },
    /// The owner ends `grantee`'s grant.
    RevokeAccess {
        device: DeviceId,
        grantee: AccountId,
    },
    /// A manufacturer (the sender) publishes a firmware image's manifest.
    PublishManifest(FirmwareManifest),
    /// Add or remove a gateway. Needs approvals from a quorum of the active
    /// set; takes effect at the next epoch boundary.
    ChangeValidators {
        change: ValidatorChange,
        approvals: BoundedVec<Approval, MAX_APPROVALS>,
    },
    /// A gateway anchors the DAG side chain: a root over its current tips.
    AnchorDag(DagAnchor),
    /// A gateway registers a device with `owner` as its first owner; the
    /// owner consented, once, by signing [`adoption_payload`] for this
    /// gateway (its administrator adopting whatever the gateway pairs).
    RegisterAdoptedDevice {
        registration: DeviceRegistration,
        owner: AccountId,
        consent: Signature,
    },
    /// A gateway puts a primary's equivocation on chain: two blocks it
    /// signed for one view and height. Anyone can check the proof against
    /// the validator set; it is recorded once per (primary, view, height),
    /// so, like an anchor, a report spends no nonce (its nonce is 0) and a
    /// replay is refused as already known.
    ReportEquivocation(crate::evidence::EquivocationProof),
}

/// A device registration, made by a gateway.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DeviceRegistration {
    pub device: DeviceId,
    pub device_key: PublicKey,
    pub kind: DeviceKind,
    pub model: Model,
    /// The device's signature over [`registration_payload`].
    pub proof: Signature,
}

/// A firmware manifest: which image a model's version is.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct FirmwareManifest {
    pub model: Model,
    pub version: FirmwareVersion,
    /// SHA-256 of the whole image.
    pub image_hash: Hash,
    pub image_size: u64,
}

/// A change to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ValidatorChange {
    Add(Validator),
    Remove { key: PublicKey },
}

/// One validator's approval of a validator-set change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Approval {
    pub validator: PublicKey,
    /// Over [`validator_change_payload`].
    pub signature: Signature,
}

/// A DAG anchor: the tips of the side chain a block makes final, the
/// Merkle root over them (see [`crate::merkle`]), and the token payments
/// their past cone confirms, in the cone's confirmation order
/// ([`crate::dag::Tangle::anchor`]). The ledger applies each payment the
/// issuing device signed, from its owner's account, at most once per
/// (payer, nonce); one it cannot apply (unfunded, not the owner's, spent
/// already) is skipped.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DagAnchor {
    pub tips: BoundedVec<Hash, MAX_ANCHOR_TIPS>,
    pub root: Hash,
    pub payments: BoundedVec<crate::dag::DagTx, MAX_ANCHOR_PAYMENTS>,
}

/// A transaction and its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    pub tx: Tx,
    pub signature: Signature,
}

impl Tx {
    /// Whether this transaction spends its sender's account nonce. An
    /// anchor does not: its nonce is the height of the block it is for, so
    /// anchoring never competes with the gateway's other transactions, and
    /// a replay is refused (its height passed).
    pub fn spends_nonce(&self) -> bool {
        !matches!(
            self.body,
            TxBody::AnchorDag(_) | TxBody::ReportEquivocation(_)
        )
    }

    /// The nonce this transaction must carry in the block at `height`, when
    /// its sender's next account nonce is `account`.
    pub fn expected_nonce(&self, account: u64, height: crate::types::Height) -> u64 {
        match self.body {
            TxBody::AnchorDag(_) => height,
            TxBody::ReportEquivocation(_) => 0,
            _ => account,
        }
    }

    /// Signs this transaction with the sender's key.
    pub fn sign(self, key: &Keypair) -> SignedTx {
        let signature = key.sign(Domain::Transaction, &encode(&self));
        SignedTx {
            tx: self,
            signature,
        }
    }
}

impl SignedTx {
    /// The transaction's id.
    pub fn hash(&self) -> Hash {
        Hash::digest(&encode(self))
    }

    /// Checks the sender's signature, under ZIP-215 ([`crate::zip215`]),
    /// the rule its batch check follows too.
    pub fn verify_signature(&self) -> Result<(), CryptoError> {
        zip215::verify(
            &self.tx.sender,
            Domain::Transaction,
            &encode(&self.tx),
            &self.signature,
        )
    }

    /// [`SignedTx::verify_signature`] for many at once, in one batch with
    /// senders' keys from `keys`; each verdict is what the single check says.
    pub fn verify_signatures(txs: &[&SignedTx], keys: &mut zip215::KeyCache) -> Vec<bool> {
        let payloads: Vec<Vec<u8>> = txs.iter().map(|signed| encode(&signed.tx)).collect();
        let items: Vec<zip215::Signed<'_>> = txs
            .iter()
            .zip(&payloads)
            .map(|(signed, payload)| zip215::Signed {
                key: signed.tx.sender,
                domain: Domain::Transaction,
                payload,
                signature: signed.signature,
            })
            .collect();
        zip215::verify_all(&items, keys)
    }
}

/// What a device signs to prove it holds its key when `registrar` registers
/// it on `chain_id`.
pub fn registration_payload(
    chain_id: &ChainId,
    registrar: &AccountId,
    device: &DeviceId,
    device_key: &PublicKey,
    kind: DeviceKind,
    model: &Model,
) -> Vec<u8> {
    encode(&(chain_id, registrar, device, device_key, kind, model))
}

/// What an owner signs to let `gateway` register devices as theirs.
pub fn adoption_payload(chain_id: &ChainId, owner: &AccountId, gateway: &AccountId) -> Vec<u8> {
    encode(&(chain_id, owner, gateway))
}

/// What a device or its registering gateway signs to let `claimant` claim
/// `device`.
pub fn claim_payload(chain_id: &ChainId, device: &DeviceId, claimant: &AccountId) -> Vec<u8> {
    encode(&(chain_id, device, claimant))
}

/// What a validator signs to approve `change` to the pending set whose hash
/// is `pending_set`. Binding the pending set's hash means an approval counts
/// once: after the change, that hash is gone.
pub fn validator_change_payload(
    chain_id: &ChainId,
    pending_set: &Hash,
    change: &ValidatorChange,
) -> Vec<u8> {
    encode(&(chain_id, pending_set, change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode;

    fn transfer() -> SignedTx {
        let key = Keypair::from_seed([3; 32]);
        Tx {
            chain_id: ChainId::new("itc-test").unwrap(),
            sender: key.public(),
            nonce: 0,
            body: TxBody::Transfer {
                to: Keypair::from_seed([4; 32]).public(),
                amount: 5,
            },
        }
        .sign(&key)
    }

    #[test]
    fn signature_covers_every_field() {
        let signed = transfer();
        assert!(signed.verify_signature().is_ok());
        let mut changed = signed.clone();
        changed.tx.nonce = 1;
        assert!(changed.verify_signature().is_err());
        let mut changed = signed.clone();
        changed.tx.chain_id = ChainId::new("itc-other").unwrap();
        assert!(changed.verify_signature().is_err());
        let mut changed = signed;
        changed.tx.body = TxBody::Transfer {
            to: Keypair::from_seed([4; 32]).public(),
            amount: 6,
        };
        assert!(changed.verify_signature().is_err());
    }

    #[test]
    fn encoding_and_json_round_trip() {
        let signed = transfer();
        let bytes = encode(&signed);
        let back: SignedTx = decode(&bytes).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.hash(), signed.hash());
        let json = serde_json::to_string(&signed).unwrap();
        assert!(json.contains(r#""type":"transfer""#), "{json}");
        assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), signed);
    }
}
