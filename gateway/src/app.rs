//! A whole gateway in one call: the node (replica, network, store), the
//! service (bulbs, ownership, events) and the REST API, started together
//! and stopped together. `run`, `dev`, the integration tests and the API
//! bench all start gateways this way.

use std::net::SocketAddr;
use std::path::PathBuf;

use itc_chain::crypto::Keypair;
use itc_chain::genesis::Genesis;
use itc_chain::pbft::Params;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::{self, NodeConfig, NodeError, NodeHandle};
use crate::service::{Service, ServiceConfig, ServiceError};
use crate::store::{SqliteStore, StoreError};

/// Why a gateway could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Dag(#[from] crate::dag::DagServiceError),
    #[error("the API server failed: {0}")]
    Api(#[from] std::io::Error),
    #[error("a gateway task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a gateway needs to start.
pub struct GatewayConfig {
    pub key: Keypair,
    pub genesis: Genesis,
    pub db: PathBuf,
    /// Bound to the gateway's peer address from the genesis.
    pub peers: TcpListener,
    pub api: TcpListener,
    pub params: Params,
    pub bulbs: usize,
    pub spare_bulbs: usize,
    /// A Zigbee coordinator, real or simulated.
    pub zigbee: Option<crate::config::ZigbeeConfig>,
    /// Firmware images to offer devices.
    pub firmware: Option<crate::service::firmware::FirmwareConfig>,
    /// The MQTT front's listener and base topic, if MQTT is on.
    pub mqtt: Option<crate::service::mqtt::MqttConfig>,
    pub limits: itc_web::Limits,
    /// The DAG side chain's depth and tangle limits.
    pub dag: crate::dag::DagConfig,
    /// Bluetooth mesh bulbs.
    pub mesh: crate::service::mesh::MeshConfig,
}

/// A running gateway.
pub struct Gateway {
    pub node: NodeHandle,
    pub service: Service,
    pub api: SocketAddr,
    /// The one-time claim code, while nobody administers the gateway.
    pub claim_code: Option<String>,
    /// The simulated Zigbee stick, when the config asks for one.
    pub sim_stick: Option<itc_bridges::zigbee::sim_port::SimPort>,
    zigbee_task: Option<JoinHandle<()>>,
    pub dag: crate::dag::DagHandle,
    /// What this gateway's replica takes as held DAG data.
    pub solid: std::sync::Arc<crate::dag::SolidTips>,
    dag_task: JoinHandle<()>,
    stop_dag: watch::Sender<bool>,
    store: SqliteStore,
    node_task: JoinHandle<Result<(), NodeError>>,
    service_task: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
    stop_api: watch::Sender<bool>,
}

/// Starts a gateway.
pub async fn launch(config: GatewayConfig) -> Result<Gateway, AppError> {
    let store = SqliteStore::open(&config.db).await?;
    let service_key = Keypair::from_seed(*config.key.seed());
    let solid = std::sync::Arc::new(crate::dag::SolidTips::default());
    let (node, node_task) = node::start(NodeConfig {
        key: config.key,
        genesis: config.genesis,
        store: store.clone(),
        listener: config.peers,
        params: config.params,
        availability: Some(solid.clone()),
    })
    .await?;
    let (stop_dag, dag_stopped) = watch::channel(false);
    let (dag, dag_task) = crate::dag::start(
        &node,
        Keypair::from_seed(*service_key.seed()),
        config.dag,
        solid.clone(),
        dag_stopped,
    )
    .await?;
    let (sim_stick, zigbee, zigbee_task) = match config.zigbee {
        Some(zigbee) => {
            let stick = zigbee.simulate.map(|bulbs| {
                // The bulbs' addresses derive from the gateway's seed, so a
                // restarted gateway finds the same bulbs.
                let [a, b, c, d, e, f, g, h, ..] = *service_key.seed();
                let seed = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
                itc_bridges::zigbee::sim_port::SimPort::start(&zigbee.port, bulbs, seed)
            });
            let (handle, task) = itc_bridges::zigbee::driver::spawn(
                itc_bridges::zigbee::driver::DriverConfig::new(&zigbee.port),
            );
            (stick, Some(handle), Some(task))
        }
        None => (None, None, None),
    };
    let (service, claim_code, service_task) = Service::start(ServiceConfig {
        node: node.clone(),
        dag: dag.clone(),
        key: service_key,
        bulbs: config.bulbs,
        spare_bulbs: config.spare_bulbs,
        zigbee,
        firmware: config.firmware,
        mqtt: config.mqtt,
        mesh: config.mesh,
    })
    .await?;
    let api = config.api.local_addr()?;
    let router = itc_web::router_with(service.clone(), config.limits);
    let (stop_api, mut stopped) = watch::channel(false);
    let server = tokio::spawn(std::future::IntoFuture::into_future(
        axum::serve(config.api, router).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }),
    ));
    Ok(Gateway {
        node,
        service,
        api,
        claim_code,
        sim_stick,
        zigbee_task,
        dag,
        solid,
        dag_task,
        stop_dag,
        store,
        node_task,
        service_task,
        server,
        stop_api,
    })
}

impl Gateway {
    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Stops taking requests, lets the ones in flight finish, stops the node
    /// after its current input (everything committed or persisted stays),
    /// and closes the store.
    pub async fn shutdown(self) -> Result<(), AppError> {
        let _ = self.stop_api.send(true);
        // Long-lived event streams would hold a graceful stop forever.
        let mut server = self.server;
        match tokio::time::timeout(std::time::Duration::from_secs(5), &mut server).await {
            Ok(result) => result??,
            Err(_) => server.abort(),
        }
        // The DAG writes what it buffered before the store closes.
        let _ = self.stop_dag.send(true);
        self.dag_task.await?;
        self.node.shutdown();
        self.node_task.await??;
        self.service_task.abort();
        if let Some(task) = self.zigbee_task {
            task.abort();
        }
        self.store.close().await;
        Ok(())
    }
}

/// Gateways of one chain on loopback, each with its own store, API port
/// and simulated bulbs: what the integration tests and `bench api` run.
pub struct LocalCluster {
    pub gateways: Vec<Gateway>,
    /// Funded user accounts of the genesis.
    pub users: Vec<Keypair>,
    pub genesis: Genesis,
    /// The gateways' keys, in the order of `gateways`.
    pub keys: Vec<Keypair>,
    options: ClusterOptions,
    _dir: tempfile::TempDir,
}

/// What a loopback cluster has.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub gateways: usize,
    /// Funded users at genesis.
    pub users: usize,
    /// Simulated bulbs per gateway, on the network from the start, and
    /// waiting to join.
    pub bulbs: usize,
    pub spare_bulbs: usize,
    /// Bulbs behind a simulated Zigbee stick (on a PTY) per gateway; 0 for
    /// no Zigbee coordinator.
    pub zigbee_bulbs: usize,
    /// Firmware images every gateway may offer.
    pub firmware: Option<crate::service::firmware::FirmwareConfig>,
    /// An MQTT front per gateway (on a loopback port the system picks).
    pub mqtt: bool,
    pub limits: itc_web::Limits,
    pub dag: crate::dag::DagConfig,
    /// Simulated Bluetooth mesh bulbs per gateway.
    pub mesh_bulbs: usize,
    /// Mesh bulbs over Bluetooth (BlueZ on the system D-Bus).
    pub mesh_bluetooth: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            gateways: 4,
            users: 2,
            bulbs: 0,
            spare_bulbs: 0,
            zigbee_bulbs: 0,
            firmware: None,
            mqtt: false,
            dag: Default::default(),
            mesh_bulbs: 0,
            mesh_bluetooth: false,
            limits: itc_web::Limits::default(),
        }
    }
}

/// Starts a cluster on loopback, on ports the system picks.
pub async fn local_cluster(options: ClusterOptions) -> Result<LocalCluster, AppError> {
    let dir = tempfile::tempdir()?;
    let mut work = itc_chain::testkit::Workload::new(options.gateways, options.users, 0x11c7);
    let mut listeners = Vec::new();
    for v in work.genesis.validators.iter_mut() {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        v.addr = itc_chain::codec::Text::new(addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        listeners.push(listener);
    }
    let mut keys = Vec::new();
    for v in &work.genesis.validators {
        let key = work
            .validator_keypair(&v.key)
            .ok_or_else(|| std::io::Error::other("the workload lost a validator's key"))?;
        keys.push(key);
    }
    let users = std::mem::take(&mut work.users);
    let mut cluster = LocalCluster {
        gateways: Vec::new(),
        users,
        genesis: work.genesis,
        keys,
        options,
        _dir: dir,
    };
    for (i, peers) in listeners.into_iter().enumerate() {
        let config = cluster.config(i, peers).await?;
        cluster.gateways.push(launch(config).await?);
    }
    Ok(cluster)
}

impl LocalCluster {
    /// Gateway `i`'s configuration: its key, store and options, listening
    /// to peers on `peers`.
    async fn config(&self, i: usize, peers: TcpListener) -> Result<GatewayConfig, AppError> {
        let options = &self.options;
        let dir = self._dir.path();
        Ok(GatewayConfig {
            key: Keypair::from_seed(*self.keys[i].seed()),
            genesis: self.genesis.clone(),
            db: dir.join(format!("gateway-{i}.sqlite")),
            peers,
            api: TcpListener::bind("127.0.0.1:0").await?,
            params: Params::default(),
            bulbs: options.bulbs,
            spare_bulbs: options.spare_bulbs,
            zigbee: (options.zigbee_bulbs > 0).then(|| crate::config::ZigbeeConfig {
                port: dir.join(format!("gateway-{i}.zigbee")),
                simulate: Some(options.zigbee_bulbs),
            }),
            firmware: options.firmware.clone(),
            mqtt: match options.mqtt {
                true => Some(crate::service::mqtt::MqttConfig {
                    listener: TcpListener::bind("127.0.0.1:0").await?,
                    base_topic: "itc".into(),
                    tls: None,
                }),
                false => None,
            },
            limits: options.limits,
            dag: options.dag.clone(),
            mesh: crate::service::mesh::MeshConfig {
                simulated: options.mesh_bulbs,
                bluetooth: options.mesh_bluetooth,
            },
        })
    }

    /// Stops gateway `i` and starts it again from its store, on the same
    /// peer address (its API moves to a new port).
    pub async fn restart(&mut self, i: usize) -> Result<(), AppError> {
        self.gateways.remove(i).shutdown().await?;
        let peers = TcpListener::bind(self.genesis.validators[i].addr.as_str()).await?;
        let config = self.config(i, peers).await?;
        self.gateways.insert(i, launch(config).await?);
        Ok(())
    }

    /// Registers `devices` (id and key, as a bridge would hold them) on
    /// chain through gateway `g`, owned by `owner` from the start, and
    /// waits until every gateway has committed them.
    pub async fn register_devices(
        &self,
        g: usize,
        devices: &[(itc_chain::types::DeviceId, Keypair)],
        owner: &Keypair,
    ) -> Result<(), String> {
        use itc_chain::ledger::StateRead;
        use itc_chain::tx::{
            adoption_payload, registration_payload, DeviceRegistration, Tx, TxBody,
        };
        let gateway = &self.keys[g];
        let node = &self.gateways[g].node;
        let chain_id = self.genesis.chain_id.clone();
        let consent = owner.sign(
            itc_chain::crypto::Domain::Adoption,
            &adoption_payload(&chain_id, &owner.public(), &gateway.public()),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        for chunk in devices.chunks(500) {
            let nonce = node
                .committed()
                .read()
                .map_err(|_| "the committed view is poisoned")?
                .entries
                .account(&gateway.public())
                .nonce;
            let model = itc_chain::types::Model::new("sim-meter").map_err(|e| e.to_string())?;
            let kind = itc_chain::types::DeviceKind::Mqtt;
            let txs = chunk
                .iter()
                .zip(nonce..)
                .map(|((device, key), nonce)| {
                    let payload = registration_payload(
                        &chain_id,
                        &gateway.public(),
                        device,
                        &key.public(),
                        kind,
                        &model,
                    );
                    Tx {
                        chain_id: chain_id.clone(),
                        sender: gateway.public(),
                        nonce,
                        body: TxBody::RegisterAdoptedDevice {
                            registration: DeviceRegistration {
                                device: device.clone(),
                                device_key: key.public(),
                                kind,
                                model: model.clone(),
                                proof: key
                                    .sign(itc_chain::crypto::Domain::DeviceRegistration, &payload),
                            },
                            owner: owner.public(),
                            consent,
                        },
                    }
                    .sign(gateway)
                })
                .collect();
            node.submit(txs).await;
            loop {
                let done = self.gateways.iter().all(|gateway| {
                    gateway
                        .node
                        .committed()
                        .read()
                        .map(|view| chunk.iter().all(|(d, _)| view.entries.device(d).is_some()))
                        .unwrap_or(false)
                });
                if done {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err("devices were not registered within 60 s".into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Stops every gateway.
    pub async fn shutdown(self) -> Result<(), AppError> {
        for gateway in self.gateways {
            gateway.shutdown().await?;
        }
        Ok(())
    }
}
