//! Every way a transaction, a block or an access check can be refused.

use crate::crypto::{AccountId, Hash, PublicKey};
use crate::state::StateError;
use crate::types::{Amount, DeviceId, FirmwareVersion, Height, Model, Rights, TimestampMs};
use crate::validators::ValidatorSetError;

/// Why a transaction was rejected. A rejected transaction changes nothing,
/// not even its sender's nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("the transaction is for chain {found:?}, not {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("the sender's signature does not verify")]
    BadSignature,
    #[error("bad nonce: the account's next nonce is {expected}, the transaction has {found}")]
    BadNonce { expected: u64, found: u64 },
    #[error("insufficient balance: {account} has {balance}, needs {needed}")]
    InsufficientBalance {
        account: AccountId,
        balance: Amount,
        needed: Amount,
    },
    #[error("a transfer must move a positive amount")]
    ZeroAmount,
    #[error("a transfer to oneself does nothing")]
    SelfTransfer,
    #[error("{account}'s balance would overflow")]
    BalanceOverflow { account: AccountId },
    #[error("{account} is not a gateway of the active validator set")]
    NotAGateway { account: AccountId },
    #[error("device {device} is already registered")]
    DeviceExists { device: DeviceId },
    #[error("device {device}'s proof of key possession does not verify")]
    BadDeviceProof { device: DeviceId },
    #[error("{owner} did not consent to own the devices this gateway registers (device {device})")]
    BadAdoptionConsent { device: DeviceId, owner: AccountId },
    #[error("unknown device {device}")]
    UnknownDevice { device: DeviceId },
    #[error("device {device} is already owned by {owner}")]
    AlreadyClaimed { device: DeviceId, owner: AccountId },
    #[error(
        "the claim of device {device} is not authorised by the device or its registering gateway"
    )]
    BadClaimAuthorization { device: DeviceId },
    #[error("{account} is not the owner of device {device}")]
    NotOwner {
        device: DeviceId,
        account: AccountId,
    },
    #[error("device {device} already belongs to {owner}")]
    SameOwner { device: DeviceId, owner: AccountId },
    #[error("the owner of device {device} needs no grant")]
    GrantToOwner { device: DeviceId },
    #[error("a grant must give at least one right")]
    NoRights,
    #[error("the grant would expire at {expires_at}, which is not after the block time {now}")]
    ExpiryInPast {
        expires_at: TimestampMs,
        now: TimestampMs,
    },
    #[error("{grantee} holds no grant on device {device}")]
    NoGrant {
        device: DeviceId,
        grantee: AccountId,
    },
    #[error("a firmware image must not be empty")]
    EmptyImage,
    #[error("{manufacturer} already published {model} version {version}")]
    ManifestExists {
        manufacturer: AccountId,
        model: Model,
        version: FirmwareVersion,
    },
    #[error("{key} is already in the validator set")]
    AlreadyValidator { key: PublicKey },
    #[error("validator {key}'s address {addr:?} is not an IP address and port")]
    BadValidatorAddress { key: PublicKey, addr: String },
    #[error("{key} is not in the validator set")]
    NotAValidator { key: PublicKey },
    #[error("the resulting validator set is invalid: {0}")]
    InvalidValidatorSet(#[from] ValidatorSetError),
    #[error("{approver} approved twice")]
    DuplicateApproval { approver: PublicKey },
    #[error("{approver}'s approval does not verify")]
    BadApproval { approver: PublicKey },
    #[error("{have} active validators approved; a quorum is {need}")]
    NotEnoughApprovals { have: usize, need: usize },
    #[error("a DAG anchor must name at least one tip")]
    EmptyAnchor,
    #[error("the DAG anchor's root is {claimed}, but its tips give {computed}")]
    BadAnchorRoot { claimed: Hash, computed: Hash },
    #[error("the DAG anchor's payment {index} is not a payment")]
    AnchorPaymentKind { index: usize },
    #[error("the DAG anchor's payment {index} is not its issuer's: {error}")]
    AnchorPayment {
        index: usize,
        error: crate::dag::DagTxError,
    },
    #[error("the equivocation proof proves nothing: {0}")]
    BadEvidence(#[from] crate::evidence::EvidenceError),
    #[error("{primary}'s equivocation at view {view}, height {height} is on chain already")]
    EvidenceKnown {
        primary: PublicKey,
        view: u64,
        height: Height,
    },
}

/// Why a block was refused. A refused block changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("the block is for chain {found:?}, not {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("expected height {expected}, found {found}")]
    WrongHeight { expected: Height, found: Height },
    #[error("the block does not extend the tip {expected} (it names {found})")]
    WrongParent { expected: Hash, found: Hash },
    #[error("the block time {time} is before its parent's {parent}")]
    TimeWentBackwards {
        parent: TimestampMs,
        time: TimestampMs,
    },
    #[error("the proposer {proposer} is not an active validator")]
    UnknownProposer { proposer: PublicKey },
    #[error("transaction {index} ({hash}) is invalid: {error}")]
    InvalidTx {
        index: usize,
        hash: Hash,
        #[source]
        error: TxError,
    },
    #[error("the header's {field} is {claimed}, but executing the block gives {computed}")]
    HeaderMismatch {
        field: &'static str,
        claimed: Hash,
        computed: Hash,
    },
    #[error("too many transactions: {count} (at most {max})")]
    TooManyTxs { count: usize, max: usize },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why an account may not act on a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("unknown device {device}")]
    UnknownDevice { device: DeviceId },
    #[error("device {device} has no owner yet")]
    NotClaimed { device: DeviceId },
    #[error("{account} neither owns device {device} nor holds a grant on it")]
    NoGrant {
        device: DeviceId,
        account: AccountId,
    },
    #[error("{account}'s grant on device {device} expired at {expired_at}")]
    GrantExpired {
        device: DeviceId,
        account: AccountId,
        expired_at: TimestampMs,
    },
    #[error("{account}'s grant on device {device} gives {have:?}, not {need:?}")]
    MissingRight {
        device: DeviceId,
        account: AccountId,
        have: Rights,
        need: Rights,
    },
}
