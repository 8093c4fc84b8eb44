//! What the API needs from the gateway: one method per thing a caller can
//! ask, each taking the verified caller where it matters. The gateway makes
//! every decision (chain state, admin list, bulbs); the API only speaks
//! HTTP.

use std::future::Future;
use std::time::Duration;

use itc_bridges::light::LightCommand;
use itc_chain::crypto::{AccountId, Hash, PublicKey};
use itc_chain::tx::SignedTx;
use itc_chain::types::DeviceId;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::model::*;

/// `Result` with an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

/// The gateway's services, as the API calls them.
pub trait Gateway: Clone + Send + Sync + 'static {
    /// The gateway's clock (unix ms): request freshness is judged by it.
    fn now_ms(&self) -> u64;

    // --- Chain ---
    fn status(&self) -> ChainStatus;
    /// Hands signed transactions to the replica; `false` if it has stopped.
    fn submit(&self, txs: Vec<SignedTx>) -> impl Future<Output = bool> + Send;
    fn account(&self, account: &AccountId) -> Account;
    fn blocks(
        &self,
        from: u64,
        limit: u64,
    ) -> impl Future<Output = ApiResult<Vec<BlockSummary>>> + Send;
    fn block(&self, height: u64) -> impl Future<Output = ApiResult<BlockDetail>> + Send;
    fn transaction(&self, id: Hash) -> impl Future<Output = ApiResult<TransactionDetail>> + Send;
    fn owner_proof(&self, device: DeviceId) -> impl Future<Output = ApiResult<OwnerProof>> + Send;
    fn state_proof(
        &self,
        key: itc_chain::state::StateKey,
    ) -> impl Future<Output = ApiResult<StateProofView>> + Send;
    fn validator_set(&self, hash: Hash)
        -> impl Future<Output = ApiResult<ValidatorSetView>> + Send;
    /// Takes a device's DAG transaction.
    fn dag_submit(
        &self,
        tx: itc_chain::dag::DagTx,
    ) -> impl Future<Output = ApiResult<DagTxAccepted>> + Send;
    fn dag_parents(&self) -> impl Future<Output = ApiResult<DagParents>> + Send;
    fn dag_status(&self, id: Hash) -> impl Future<Output = ApiResult<DagTxStatus>> + Send;
    /// A one-time MQTT setup code for a new device owned by `caller`.
    fn mqtt_setup_code(
        &self,
        caller: PublicKey,
        request: NewSetupCode,
    ) -> impl Future<Output = ApiResult<SetupCode>> + Send;

    // --- The gateway itself ---
    fn info(&self, caller: &PublicKey) -> GatewayInfo;
    /// Makes `caller` the gateway's administrator if the request carries
    /// its one-time claim code (and stores an adoption consent, if any).
    fn claim(
        &self,
        caller: PublicKey,
        request: ClaimGateway,
    ) -> impl Future<Output = ApiResult<GatewayInfo>> + Send;

    // --- Lights ---
    fn lights(&self, caller: &PublicKey) -> Vec<Light>;
    fn light(&self, caller: &PublicKey, device: &DeviceId) -> ApiResult<Light>;
    fn set_light(
        &self,
        caller: PublicKey,
        device: DeviceId,
        command: LightCommand,
    ) -> impl Future<Output = ApiResult<Light>> + Send;
    fn groups(&self, caller: PublicKey) -> impl Future<Output = ApiResult<Vec<Group>>> + Send;
    fn create_group(
        &self,
        caller: PublicKey,
        group: NewGroup,
    ) -> impl Future<Output = ApiResult<Group>> + Send;
    fn delete_group(
        &self,
        caller: PublicKey,
        id: i64,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn set_group(
        &self,
        caller: PublicKey,
        id: i64,
        command: LightCommand,
    ) -> impl Future<Output = ApiResult<Vec<Light>>> + Send;
    fn scenes(
        &self,
        caller: PublicKey,
        group: i64,
    ) -> impl Future<Output = ApiResult<Vec<Scene>>> + Send;
    fn store_scene(
        &self,
        caller: PublicKey,
        group: i64,
        scene: NewScene,
    ) -> impl Future<Output = ApiResult<Scene>> + Send;
    fn recall_scene(
        &self,
        caller: PublicKey,
        scene: i64,
        recall: RecallScene,
    ) -> impl Future<Output = ApiResult<Vec<Light>>> + Send;

    // --- Ownership ---
    /// The registering gateway's signature letting `caller` claim
    /// `device` (for the gateway's administrator).
    fn claim_authorization(
        &self,
        caller: &PublicKey,
        device: &DeviceId,
    ) -> ApiResult<ClaimAuthorization>;
    /// Checks an ownership transaction against committed state, submits it
    /// and waits up to `wait` for its commit.
    fn submit_and_wait(
        &self,
        tx: SignedTx,
        wait: Duration,
    ) -> impl Future<Output = ApiResult<TxOutcome>> + Send;
    fn grants(&self, caller: &PublicKey, device: &DeviceId) -> ApiResult<Vec<Grant>>;

    // --- Network ---
    fn permit_join(
        &self,
        caller: PublicKey,
        seconds: u32,
    ) -> impl Future<Output = ApiResult<JoinWindow>> + Send;
    fn devices(&self, caller: &PublicKey) -> ApiResult<Vec<Device>>;

    // --- Events and metrics ---
    fn events(&self) -> broadcast::Receiver<Event>;
    /// Whether `caller` may see `event` (light events go to those who may
    /// use the light).
    fn may_see(&self, caller: &PublicKey, event: &Event) -> bool;
    /// Adds the gateway's own metrics to the API's registry.
    fn register_metrics(&self, registry: &mut Registry);
}
