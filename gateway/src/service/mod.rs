//! The gateway's services behind the REST API: lights, groups and scenes,
//! ownership, the device network, chain queries and live events.
//!
//! Every decision about a device is made against the node's committed view
//! ([`CommittedView`]): a control command runs if chain state says the
//! caller owns the light or holds an unexpired grant with the control right
//! — checked locally, with no consensus round. Ownership changes are chain
//! transactions the caller signs; the service checks them against the same
//! view, submits them and waits for their commit.
//!
//! The bulbs are reached through bridges ([`bridge`]): the Zigbee
//! coordinator (a real stick, or the simulated one on a PTY) and the
//! simulated bulb network. Bulbs that join are registered on chain by this
//! gateway (it signs the registration; the bulb's key, or the key the
//! gateway keeps for it, signs the proof of possession).

mod admin;
pub mod bridge;
mod chain;
mod dag;
pub mod firmware;
mod lights;
pub mod mesh;
pub mod mqtt;
mod ownership;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use itc_bridges::sim::SimNetwork;
use itc_bridges::zigbee::driver::ZigbeeHandle;
use itc_chain::crypto::{Hash, Keypair, PublicKey};
use itc_chain::ledger::StateRead;
use itc_web::{ApiError, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

use crate::node::{CommittedView, NodeHandle};
use crate::store::StoreError;
use bridge::{Bridge, BridgeEvent, BridgeLight};

pub use admin::ClaimError;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the system random generator failed")]
    Random,
    #[error("the MQTT broker did not start: {0}")]
    Mqtt(String),
    #[error("the Bluetooth mesh bridge did not start: {0}")]
    Mesh(String),
}

/// How to start the service.
pub struct ServiceConfig {
    pub node: NodeHandle,
    /// The DAG side chain at this gateway.
    pub dag: crate::dag::DagHandle,
    /// The gateway's key (the node's): it registers bulbs and consents to
    /// claims.
    pub key: Keypair,
    /// Simulated bulbs on the network at start, and factory-new ones that
    /// join when the network is opened.
    pub bulbs: usize,
    pub spare_bulbs: usize,
    /// The Zigbee coordinator's driver, if the gateway has one.
    pub zigbee: Option<ZigbeeHandle>,
    /// Firmware images this gateway may offer.
    pub firmware: Option<firmware::FirmwareConfig>,
    /// The MQTT broker's front, for Wi-Fi devices and integrations.
    pub mqtt: Option<mqtt::MqttConfig>,
    /// Bluetooth mesh bulbs: simulated ones in range, and whether to use
    /// the Bluetooth adapter.
    pub mesh: mesh::MeshConfig,
}

/// The running service; cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeHandle,
    dag: crate::dag::DagHandle,
    key: Keypair,
    bridges: Vec<Arc<Bridge>>,
    admins: RwLock<admin::Admins>,
    events: broadcast::Sender<Event>,
    /// Woken when bulbs join or a block commits: registration may be due.
    registration: Notify,
    firmware: Option<firmware::FirmwareConfig>,
    /// The image offered to each device, by its file version, served block
    /// by block until the download ends.
    offered: std::sync::Mutex<HashMap<itc_chain::types::DeviceId, OfferedImage>>,
    metrics: ServiceMetrics,
    rng: ring::rand::SystemRandom,
}

/// An image offered to a device: its OTA file version and its bytes.
type OfferedImage = (u32, Arc<Vec<u8>>);

#[derive(Default)]
struct ServiceMetrics {
    height: Gauge,
    lights: Gauge,
    commands: Counter,
    refused_commands: Counter,
    committed_txs: Counter<u64, AtomicU64>,
}

/// The gateway's clock, unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Service {
    /// Starts the service and its background tasks. Returns the one-time
    /// claim code when nobody administers the gateway yet.
    pub async fn start(
        config: ServiceConfig,
    ) -> Result<(Service, Option<String>, JoinHandle<()>), ServiceError> {
        let rng = ring::rand::SystemRandom::new();
        let (admins, code) = admin::Admins::load(config.node.store.pool().clone(), &rng).await?;
        let mut bridges = Vec::new();
        if let Some(zigbee) = config.zigbee {
            bridges.push(Arc::new(Bridge::zigbee(zigbee, *config.key.seed())));
        }
        if let Some(mqtt) = config.mqtt {
            let known = config
                .node
                .committed()
                .read()
                .map(|view| Service::mqtt_devices_on_chain(&view, &config.key.public()))
                .unwrap_or_default();
            let secret = crate::mqtt::logins::new_secret(&rng).map_err(|_| ServiceError::Random)?;
            let bridge =
                mqtt::MqttBridge::start(mqtt, config.node.store.pool().clone(), secret, known)
                    .await
                    .map_err(ServiceError::Mqtt)?;
            bridges.push(Arc::new(Bridge::Mqtt(Box::new(bridge))));
        }
        if config.mesh.is_on() {
            let mesh = mesh::MeshBridge::start(
                &config.mesh,
                *config.key.seed(),
                config.node.store.clone(),
            )
            .await
            .map_err(|e| ServiceError::Mesh(e.to_string()))?;
            bridges.push(Arc::new(Bridge::Mesh(Box::new(mesh))));
        }
        if config.bulbs + config.spare_bulbs > 0 {
            let seed = Hash::digest_parts(&[b"itc-sim-network", config.key.seed()]).0;
            let network = SimNetwork::new(seed, config.bulbs, config.spare_bulbs, now_ms());
            bridges.push(Arc::new(Bridge::sim(network)));
        }
        let (events, _) = broadcast::channel(4_096);
        let service = Service {
            inner: Arc::new(Inner {
                node: config.node,
                dag: config.dag,
                key: config.key,
                bridges,
                admins: RwLock::new(admins),
                events,
                registration: Notify::new(),
                firmware: config.firmware,
                offered: std::sync::Mutex::new(HashMap::new()),
                metrics: ServiceMetrics::default(),
                rng,
            }),
        };
        let tasks = tokio::spawn(service.clone().run());
        Ok((service, code, tasks))
    }

    pub fn node(&self) -> &NodeHandle {
        &self.inner.node
    }

    pub fn public(&self) -> PublicKey {
        self.inner.key.public()
    }

    /// Reads the committed view.
    fn view<T>(&self, read: impl FnOnce(&CommittedView) -> T) -> Result<T, ApiError> {
        let view = self
            .inner
            .node
            .committed()
            .read()
            .map_err(|_| ApiError::unavailable("the committed view is poisoned"))?;
        Ok(read(&view))
    }

    fn is_admin(&self, key: &PublicKey) -> bool {
        self.inner
            .admins
            .read()
            .map(|a| a.is_admin(key))
            .unwrap_or(false)
    }

    /// The bridge a device id belongs to.
    fn bridge_for(&self, device: &itc_chain::types::DeviceId) -> Option<&Arc<Bridge>> {
        self.inner.bridges.iter().find(|b| b.owns(device))
    }

    /// Every light on every bridge.
    fn all_lights(&self) -> Vec<BridgeLight> {
        self.inner.bridges.iter().flat_map(|b| b.lights()).collect()
    }

    /// Publishes what a bridge reports and wakes whoever must act on it.
    fn bridge_event(&self, event: BridgeEvent) {
        match event {
            BridgeEvent::Joined { device, bridge } => {
                tracing::info!(%device, bridge, "light joined");
                let _ = self.inner.events.send(Event::DeviceJoined {
                    device: device.to_string(),
                    bridge: bridge.into(),
                });
                self.inner
                    .metrics
                    .lights
                    .set(self.all_lights().len() as i64);
                self.inner.registration.notify_one();
                if let Some(light) = self.bridge_for(&device).and_then(|b| b.light(&device)) {
                    self.mqtt_announce_light(&light);
                }
            }
            BridgeEvent::State { device, state } => {
                self.mqtt_state(&device, &state);
                let _ = self.inner.events.send(Event::LightStateChanged {
                    device: device.to_string(),
                    state,
                });
            }
            BridgeEvent::Ota {
                device,
                seq,
                message,
            } => {
                tokio::spawn(self.clone().answer_ota(device, seq, message));
            }
            BridgeEvent::Mqtt(inbound) => self.mqtt_event(inbound),
        }
    }

    /// Answers a device's OTA Upgrade message: offers the newest image
    /// whose hash matches a trusted manifest on chain (or none), serves
    /// its blocks, and acknowledges the end of the download.
    async fn answer_ota(
        self,
        device: itc_chain::types::DeviceId,
        seq: u8,
        message: itc_bridges::zigbee::ota::ClientMessage,
    ) {
        use itc_bridges::zigbee::ota::{ClientMessage, ServerMessage};
        let Some(bridge) = self.bridge_for(&device).cloned() else {
            return;
        };
        let answer = match message {
            ClientMessage::Query(query) => {
                let model = bridge.model(&device);
                let offer = match &self.inner.firmware {
                    Some(config) => {
                        let candidates = self
                            .view(|view| {
                                firmware::candidates(view, config, &model, query.file_version)
                            })
                            .unwrap_or_default();
                        firmware::offer(config, &model, &query, candidates).await
                    }
                    None => None,
                };
                tracing::info!(%device, offered = offer.as_ref().map(|(o, _)| o.file_version), "firmware query");
                if let (Some((offer, image)), Ok(mut offered)) = (&offer, self.inner.offered.lock())
                {
                    offered.insert(
                        device.clone(),
                        (offer.file_version, Arc::new(image.clone())),
                    );
                }
                ServerMessage::QueryResponse(offer.map(|(offer, _)| offer))
            }
            ClientMessage::Block {
                image,
                offset,
                max_size,
            } => {
                let bytes = self
                    .inner
                    .offered
                    .lock()
                    .ok()
                    .and_then(|offered| offered.get(&device).cloned())
                    .filter(|(version, _)| *version == image.file_version)
                    .map(|(_, bytes)| bytes);
                // Only ever bytes of the image that was offered; anything
                // else aborts the download.
                let data = bytes.and_then(|bytes| {
                    let start = usize::try_from(offset).ok()?;
                    let end = start
                        .saturating_add(usize::from(max_size.min(64)))
                        .min(bytes.len());
                    (start < end).then(|| bytes[start..end].to_vec())
                });
                ServerMessage::Block {
                    image,
                    offset,
                    data,
                }
            }
            ClientMessage::End { status, image } => {
                if let Ok(mut offered) = self.inner.offered.lock() {
                    offered.remove(&device);
                }
                tracing::info!(%device, status, version = image.file_version, "firmware download ended");
                if status != itc_bridges::zigbee::zcl::SUCCESS {
                    return;
                }
                ServerMessage::EndResponse { image }
            }
        };
        if let Err(error) = bridge.send_ota(&device, seq, answer).await {
            tracing::warn!(%device, %error, "answering an OTA message");
        }
    }

    /// The background work: the bridges' events, registering new bulbs,
    /// announcing commits.
    async fn run(self) {
        let (bridge_events, mut from_bridges) = mpsc::channel(1_024);
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = self
            .inner
            .bridges
            .iter()
            .map(|bridge| tokio::spawn(bridge.clone().pump(bridge_events.clone())))
            .collect();
        drop(bridge_events);
        tasks.push(tokio::spawn(self.clone().register_bulbs()));
        tasks.push(tokio::spawn(self.clone().mqtt_housekeeping()));
        self.inner
            .metrics
            .lights
            .set(self.all_lights().len() as i64);
        let mut commits = self.inner.node.commits();
        loop {
            tokio::select! {
                block = commits.recv() => match block {
                    Ok(block) => {
                        self.inner.metrics.height.set(block.height as i64);
                        self.inner
                            .metrics
                            .committed_txs
                            .inc_by(block.txs.len() as u64);
                        for id in block.txs.iter() {
                            let _ = self.inner.events.send(Event::TransactionCommitted {
                                id: id.to_string(),
                                height: block.height,
                            });
                        }
                        self.inner.registration.notify_one();
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(event) = from_bridges.recv() => self.bridge_event(event),
            }
        }
        for task in tasks {
            task.abort();
        }
    }

    /// Whether the caller may see a device's events.
    fn may_use(&self, caller: &PublicKey, device: &str) -> bool {
        let Ok(device) = itc_chain::types::DeviceId::new(device) else {
            return false;
        };
        if self.is_admin(caller) {
            return true;
        }
        self.view(|v| v.entries.can_control(caller, &device, now_ms()))
            .unwrap_or(false)
    }
}

impl itc_web::Gateway for Service {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn status(&self) -> itc_web::ChainStatus {
        let status = self.inner.node.status();
        itc_web::ChainStatus {
            height: status.height,
            head: status.head.to_string(),
            view: status.view,
            changing_view: status.changing_view,
            pending: status.pending,
        }
    }

    async fn submit(&self, txs: Vec<itc_chain::tx::SignedTx>) -> bool {
        self.inner.node.submit(txs).await
    }

    fn account(&self, account: &itc_chain::crypto::AccountId) -> itc_web::Account {
        let state = self
            .view(|v| v.entries.account(account))
            .unwrap_or_default();
        itc_web::Account {
            account: account.to_string(),
            balance: state.balance,
            nonce: state.nonce,
        }
    }

    async fn blocks(
        &self,
        from: u64,
        limit: u64,
    ) -> itc_web::ApiResult<Vec<itc_web::BlockSummary>> {
        chain::blocks(self, from, limit).await
    }

    async fn block(&self, height: u64) -> itc_web::ApiResult<itc_web::BlockDetail> {
        chain::block(self, height).await
    }

    async fn transaction(&self, id: Hash) -> itc_web::ApiResult<itc_web::TransactionDetail> {
        chain::transaction(self, id).await
    }

    async fn state_proof(
        &self,
        key: itc_chain::state::StateKey,
    ) -> itc_web::ApiResult<itc_web::StateProofView> {
        chain::state_proof(self, key).await
    }

    async fn mqtt_setup_code(
        &self,
        caller: PublicKey,
        request: itc_web::NewSetupCode,
    ) -> itc_web::ApiResult<itc_web::SetupCode> {
        mqtt::setup_code(self, caller, request).await
    }

    async fn dag_submit(
        &self,
        tx: itc_chain::dag::DagTx,
    ) -> itc_web::ApiResult<itc_web::DagTxAccepted> {
        dag::submit(self, tx).await
    }

    async fn dag_parents(&self) -> itc_web::ApiResult<itc_web::DagParents> {
        dag::parents(self).await
    }

    async fn dag_status(&self, id: Hash) -> itc_web::ApiResult<itc_web::DagTxStatus> {
        dag::status(self, id).await
    }

    async fn validator_set(&self, hash: Hash) -> itc_web::ApiResult<itc_web::ValidatorSetView> {
        chain::validator_set(self, hash).await
    }

    async fn owner_proof(
        &self,
        device: itc_chain::types::DeviceId,
    ) -> itc_web::ApiResult<itc_web::OwnerProof> {
        chain::owner_proof(self, device).await
    }

    fn info(&self, caller: &PublicKey) -> itc_web::GatewayInfo {
        let claimed = self
            .inner
            .admins
            .read()
            .map(|a| a.claimed())
            .unwrap_or(true);
        itc_web::GatewayInfo {
            key: self.public().to_string(),
            chain_id: self
                .view(|v| v.chain_id.as_str().to_string())
                .unwrap_or_default(),
            claimed,
            admin: self.is_admin(caller),
        }
    }

    async fn claim(
        &self,
        caller: PublicKey,
        request: itc_web::ClaimGateway,
    ) -> itc_web::ApiResult<itc_web::GatewayInfo> {
        self.claim_gateway(caller, &request.code, request.adoption.as_deref())
            .await?;
        Ok(self.info(&caller))
    }

    fn lights(&self, caller: &PublicKey) -> Vec<itc_web::Light> {
        lights::list(self, caller)
    }

    fn light(
        &self,
        caller: &PublicKey,
        device: &itc_chain::types::DeviceId,
    ) -> itc_web::ApiResult<itc_web::Light> {
        lights::get(self, caller, device)
    }

    async fn set_light(
        &self,
        caller: PublicKey,
        device: itc_chain::types::DeviceId,
        command: itc_bridges::light::LightCommand,
    ) -> itc_web::ApiResult<itc_web::Light> {
        let mut lights =
            lights::set(self, &caller, std::slice::from_ref(&device), &command).await?;
        lights
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("light {device}")))
    }

    async fn groups(&self, caller: PublicKey) -> itc_web::ApiResult<Vec<itc_web::Group>> {
        lights::groups(self, caller).await
    }

    async fn create_group(
        &self,
        caller: PublicKey,
        group: itc_web::NewGroup,
    ) -> itc_web::ApiResult<itc_web::Group> {
        lights::create_group(self, caller, group).await
    }

    async fn delete_group(&self, caller: PublicKey, id: i64) -> itc_web::ApiResult<()> {
        lights::delete_group(self, caller, id).await
    }

    async fn set_group(
        &self,
        caller: PublicKey,
        id: i64,
        command: itc_bridges::light::LightCommand,
    ) -> itc_web::ApiResult<Vec<itc_web::Light>> {
        let group = lights::group(self, caller, id).await?;
        let devices = lights::parse_devices(&group.lights)?;
        lights::set(self, &caller, &devices, &command).await
    }

    async fn scenes(
        &self,
        caller: PublicKey,
        group: i64,
    ) -> itc_web::ApiResult<Vec<itc_web::Scene>> {
        lights::scenes(self, caller, group).await
    }

    async fn store_scene(
        &self,
        caller: PublicKey,
        group: i64,
        scene: itc_web::NewScene,
    ) -> itc_web::ApiResult<itc_web::Scene> {
        lights::store_scene(self, caller, group, scene).await
    }

    async fn recall_scene(
        &self,
        caller: PublicKey,
        scene: i64,
        recall: itc_web::RecallScene,
    ) -> itc_web::ApiResult<Vec<itc_web::Light>> {
        lights::recall_scene(self, caller, scene, recall).await
    }

    fn claim_authorization(
        &self,
        caller: &PublicKey,
        device: &itc_chain::types::DeviceId,
    ) -> itc_web::ApiResult<itc_web::ClaimAuthorization> {
        ownership::claim_authorization(self, caller, device)
    }

    async fn submit_and_wait(
        &self,
        tx: itc_chain::tx::SignedTx,
        wait: Duration,
    ) -> itc_web::ApiResult<itc_web::TxOutcome> {
        ownership::submit_and_wait(self, tx, wait).await
    }

    fn grants(
        &self,
        caller: &PublicKey,
        device: &itc_chain::types::DeviceId,
    ) -> itc_web::ApiResult<Vec<itc_web::Grant>> {
        ownership::grants(self, caller, device)
    }

    async fn permit_join(
        &self,
        caller: PublicKey,
        seconds: u32,
    ) -> itc_web::ApiResult<itc_web::JoinWindow> {
        if !self.is_admin(&caller) {
            return Err(ApiError::forbidden(
                "only this gateway's administrator may open the network",
            ));
        }
        let until = now_ms() + u64::from(seconds) * 1_000;
        for bridge in &self.inner.bridges {
            bridge.permit_join(seconds).await.map_err(|e| {
                ApiError::unavailable(format!("opening the {} network: {e}", bridge.name()))
            })?;
        }
        tracing::info!(seconds, "network open for joining");
        Ok(itc_web::JoinWindow {
            open_until_ms: until,
        })
    }

    fn devices(&self, caller: &PublicKey) -> itc_web::ApiResult<Vec<itc_web::Device>> {
        lights::devices(self, caller)
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn may_see(&self, caller: &PublicKey, event: &Event) -> bool {
        match event {
            Event::LightStateChanged { device, .. } => self.may_use(caller, device),
            Event::DeviceJoined { .. } => self.is_admin(caller),
            Event::TransactionCommitted { .. } => true,
        }
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let m = &self.inner.metrics;
        registry.register(
            "chain_height",
            "Height of the last committed block",
            m.height.clone(),
        );
        registry.register(
            "lights",
            "Lights on this gateway's networks",
            m.lights.clone(),
        );
        registry.register(
            "light_commands",
            "Light commands carried out",
            m.commands.clone(),
        );
        registry.register(
            "light_commands_refused",
            "Light commands refused by chain state",
            m.refused_commands.clone(),
        );
        registry.register(
            "committed_transactions",
            "Transactions in committed blocks",
            m.committed_txs.clone(),
        );
    }
}
