//! The API's JSON bodies, shared by the server and the signing client.
//!
//! Keys, hashes and signatures travel in their text forms
//! (`itc_chain::text`): accounts as `itcpk1…`, hashes as `sha256:…`,
//! signatures as `ed25519:…`; chain objects that a client verifies itself
//! (headers, certificates, proofs) travel in their canonical encoding, hex.

use itc_bridges::light::LightState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The chain as a client sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ChainStatus {
    pub height: u64,
    pub head: String,
    pub view: u64,
    pub changing_view: bool,
    pub pending: usize,
}

/// A batch of signed transactions in their canonical encoding, hex.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Submit {
    pub txs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The transactions' ids, in order.
    pub ids: Vec<String>,
}

/// This gateway.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayInfo {
    /// The gateway's own key (its validator and chain account).
    pub key: String,
    pub chain_id: String,
    /// Whether someone has claimed the gateway with its one-time code.
    pub claimed: bool,
    /// Whether the caller administers this gateway.
    pub admin: bool,
}

/// Claiming the gateway with the code it showed on its console.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimGateway {
    pub code: String,
    /// Optional: the caller's consent (`ed25519:…` over the chain's
    /// adoption payload for this gateway) to own the devices the gateway
    /// pairs from now on, registered to them in one step.
    #[serde(default)]
    pub adoption: Option<String>,
}

/// Asks for a one-time MQTT setup code: a new Wi-Fi device logs in with it
/// once, proves its key, and is registered on chain as the caller's.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewSetupCode {
    /// The caller's consent (`ed25519:…` over the chain's adoption payload
    /// for this gateway) to own the device.
    pub adoption: String,
}

/// A setup code and where to use it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SetupCode {
    /// The device's MQTT password for its first login (username `setup`).
    pub code: String,
    pub expires_ms: u64,
    /// The broker's address as the gateway listens on it.
    pub broker: String,
    pub base_topic: String,
}

/// How the caller may use a light.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessView {
    Owner,
    Grant,
    /// The gateway's administrator seeing a light nobody has claimed yet.
    Unclaimed,
}

/// A light as the caller may see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Light {
    pub id: String,
    pub access: AccessView,
    pub owner: Option<String>,
    /// Where the light is now (mid-transition, if one is running).
    pub state: LightState,
    /// Where the light is going.
    pub target: LightState,
    pub link_quality: u8,
    pub last_seen_ms: u64,
}

/// A group of lights, kept by this gateway for its creator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub lights: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewGroup {
    pub name: String,
    pub lights: Vec<String>,
}

/// A scene: each light of a group with the state it was in when stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Scene {
    pub id: i64,
    pub group: i64,
    pub name: String,
    pub states: Vec<SceneEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SceneEntry {
    pub light: String,
    pub state: LightState,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewScene {
    pub name: String,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RecallScene {
    #[serde(default)]
    pub transition_ms: Option<u32>,
}

/// An ownership transaction, signed by the caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnershipTx {
    /// The signed transaction, canonical encoding, hex.
    pub tx: String,
    /// How long to wait for the commit; 0 returns at once. Default 5000,
    /// at most 30000.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// What became of a transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TxOutcome {
    pub id: String,
    /// Committed within the wait.
    pub committed: bool,
    pub height: Option<u64>,
}

/// The registering gateway's consent for the caller to claim a device.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimAuthorization {
    pub device: String,
    pub claimant: String,
    pub authorizer: String,
    pub authorization: String,
}

/// A grant on a device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Grant {
    pub grantee: String,
    pub rights: Vec<String>,
    pub expires_at_ms: u64,
    pub granted_at: u64,
    pub expired: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PermitJoin {
    pub seconds: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JoinWindow {
    pub open_until_ms: u64,
}

/// A device on one of the gateway's bridges.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Device {
    pub id: String,
    pub bridge: String,
    pub model: String,
    pub link_quality: u8,
    pub last_seen_ms: u64,
    /// Registered on chain (by this gateway).
    pub registered: bool,
    pub owner: Option<String>,
}

/// An account on chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Account {
    pub account: String,
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

/// A block's header and commit certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct BlockSummary {
    pub height: u64,
    pub hash: String,
    pub time_ms: u64,
    /// The header, canonical encoding, hex.
    pub header: String,
    /// The commit certificate (absent for the genesis), hex.
    pub certificate: Option<String>,
}

/// A block with its transactions' ids.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct BlockDetail {
    #[serde(flatten)]
    pub summary: BlockSummary,
    pub transactions: Vec<String>,
}

/// A committed transaction and the proof it is in its block.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TransactionDetail {
    pub id: String,
    pub height: u64,
    pub index: u64,
    /// The transaction, readable.
    #[schema(value_type = Object)]
    pub tx: serde_json::Value,
    /// The signed transaction, canonical encoding, hex.
    pub encoded: String,
    /// The Merkle inclusion proof against the header's tx root, hex.
    pub proof: String,
    pub block: BlockSummary,
}

/// Who owns a device, proven against a certified header.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnerProof {
    pub device: String,
    pub owner: Option<String>,
    /// The state proof (inclusion or absence), hex.
    pub proof: String,
    pub block: BlockSummary,
}

/// Any state entry, proven against a certified header: an account's
/// balance, a device, a grant, a firmware manifest, the validator sets.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateProofView {
    /// The key, as `itc_chain::state::StateKey` serialises.
    #[schema(value_type = Object)]
    pub key: serde_json::Value,
    /// The value, or null if the key is absent (and the proof shows so).
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// The state proof, hex.
    pub proof: String,
    /// The same proof in the form a device's verifier (`itc-verify`)
    /// reads: the key and value as their encodings and the sparse-Merkle
    /// path, hex.
    pub portable: String,
    pub block: BlockSummary,
}

/// A validator set the chain has named, for light clients that meet a
/// header signed by a new set. A client checks that `encoded` hashes to the
/// header's `validators_hash`; nothing here needs trusting.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorSetView {
    pub hash: String,
    /// `host:port` and key of each member, sorted by key.
    pub validators: Vec<ValidatorView>,
    /// The set's encoding (what `hash` is the SHA-256 of), hex.
    pub encoded: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    pub key: String,
    pub addr: String,
}

/// A DAG transaction to take on its issuer's behalf.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewDagTx {
    /// The transaction (`itc_chain::dag::DagTx`) in its canonical
    /// encoding, hex: what the device signed and did its work over.
    pub encoded: String,
}

/// A DAG transaction this gateway took.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DagTxAccepted {
    pub id: String,
}

/// Parents for a new DAG transaction: two tips chosen uniformly among the
/// non-lazy ones.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DagParents {
    pub parents: Vec<String>,
}

/// Where a DAG transaction stands.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DagTxStatus {
    pub id: String,
    /// `unknown`, `pending`, `confirmed` or `conflicting` (a payment
    /// confirmed but not applied: a double spend, or one the ledger could
    /// not honour).
    pub status: String,
    /// Pending: whether all its ancestors are known here.
    pub solid: Option<bool>,
    /// Confirmed or conflicting: the height of the block that anchored it.
    pub height: Option<u64>,
    /// The transaction, readable (null once pruned).
    #[schema(value_type = Object)]
    pub tx: serde_json::Value,
    /// The confirmation proof (`itc_chain::dag::DagProof`: the path of
    /// transactions to an anchored tip and the Merkle proofs into the
    /// header's DAG root), readable; null if pending or pruned.
    #[schema(value_type = Object)]
    pub proof: serde_json::Value,
    /// The block that anchored it, with its certificate.
    pub block: Option<BlockSummary>,
}

/// A live event (Server-Sent Events at `/api/v1/events`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    LightStateChanged { device: String, state: LightState },
    DeviceJoined { device: String, bridge: String },
    TransactionCommitted { id: String, height: u64 },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::LightStateChanged { .. } => "light_state_changed",
            Event::DeviceJoined { .. } => "device_joined",
            Event::TransactionCommitted { .. } => "transaction_committed",
        }
    }
}
