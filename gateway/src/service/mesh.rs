//! The Bluetooth mesh bridge: the gateway's mesh client driving bulbs over
//! their proxy connections ([`MeshLink`]), real ones over Bluetooth
//! (btleplug, BlueZ) or simulated ones in memory.
//!
//! When the administrator opens the network (permit join), unprovisioned
//! bulbs in range are provisioned (PB-GATT); each is then found again as a
//! proxy of this gateway's network, connected, given the proxy filter, the
//! application key and its bindings to the four lighting models. They
//! appear as lights like any other bridge's: registered on chain with a
//! key the gateway derives for each, commanded only as chain state allows.
//!
//! Secrets: the network and application keys derive from the gateway's
//! secret seed (its key file, mode 0600), so they are never written
//! anywhere. Device keys come out of each provisioning run and are kept in
//! sqlite sealed under another key derived from the seed
//! ([`crate::store::mesh`]). Sequence numbers are reserved in blocks in
//! sqlite before they are used, so a restarted gateway resumes above
//! anything its bulbs have seen (their replay protection would drop it
//! otherwise). A restarted gateway lists the Bluetooth bulbs it knows and
//! reconnects to a bulb's proxy when it next commands it.
//!
//! Simulated bulbs (for `dev` and tests) are in memory and factory-new at
//! every start, so they are not stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use itc_bridges::light::{Color, LightCommand, LightState, MAX_BRIGHTNESS};
use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::ble::{Advert, Beacon, BleCentral};
use itc_bridges::mesh::client::{ClientEvent, MeshClient};
use itc_bridges::mesh::crypto::k3;
use itc_bridges::mesh::link::{
    configured, exchange, filter_set, provisioned, statuses_from, MeshLink, SharedNode, SimLink,
};
use itc_bridges::mesh::sim::SimMeshNode;
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::types::{DeviceId, DeviceKind};
use ring::agreement::{EphemeralPrivateKey, ECDH_P256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::bridge::{poisoned, BridgeError, BridgeEvent, BridgeLight};
use super::now_ms;
use crate::store::mesh::{MeshNodeRow, SealingKey};
use crate::SqliteStore;

pub const MESH: &str = "mesh";
/// The gateway's own element address; bulbs get 0x0100 and up.
const GATEWAY_ADDRESS: u16 = 0x0001;
const FIRST_NODE: u16 = 0x0100;
const MODEL: &str = "mesh-bulb";
/// How long one conversation with a bulb may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a bulb's proxy may take to show up after provisioning, or
/// when reconnecting.
const PROXY_WITHIN: Duration = Duration::from_secs(15);
/// Sequence numbers reserved in sqlite at a time.
const SEQ_BLOCK: u32 = 1_024;

/// The `[mesh]` table of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Simulated bulbs in range (for `dev` and tests).
    pub simulated: usize,
    /// Real bulbs over Bluetooth: the first adapter BlueZ has.
    pub bluetooth: bool,
}

impl MeshConfig {
    pub fn is_on(&self) -> bool {
        self.simulated > 0 || self.bluetooth
    }
}

/// A bulb as the API sees it.
#[derive(Clone)]
struct Node {
    id: DeviceId,
    address: u16,
    state: LightState,
    lightness: u16,
    last_seen_ms: u64,
    /// The BLE address of a real bulb.
    ble_address: Option<String>,
}

/// What talks to the radio, one conversation at a time.
struct Radio {
    client: MeshClient,
    /// Open proxy connections, by unicast address.
    links: HashMap<u16, MeshLink>,
    /// Simulated factory-new bulbs in range.
    waiting: Vec<(DeviceId, SharedNode)>,
    next_address: u16,
    /// Sequence numbers up to here are reserved in the store.
    reserved: u32,
}

struct Inner {
    radio: tokio::sync::Mutex<Radio>,
    nodes: Mutex<Vec<Node>>,
    central: Option<BleCentral>,
    network_id: [u8; 8],
    seed: [u8; 32],
    store: SqliteStore,
    sealing: SealingKey,
    events: Mutex<Option<mpsc::Sender<BridgeEvent>>>,
    /// A Bluetooth join window is being served.
    joining: Mutex<bool>,
}

pub struct MeshBridge {
    inner: Arc<Inner>,
}

fn unavailable(reason: impl ToString) -> BridgeError {
    BridgeError::Unavailable {
        bridge: MESH,
        reason: reason.to_string(),
    }
}

/// The randomness of one provisioning run.
fn ephemeral() -> Result<EphemeralPrivateKey, BridgeError> {
    EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new())
        .map_err(|_| unavailable("no randomness"))
}

fn random() -> Result<[u8; 16], BridgeError> {
    let mut r = [0u8; 16];
    SystemRandom::new()
        .fill(&mut r)
        .map(|_| r)
        .map_err(|_| unavailable("no randomness"))
}

fn derived(seed: &[u8; 32], label: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&Hash::digest_parts(&[label, seed]).0[..16]);
    key
}

/// A bulb's device id from its Device UUID.
fn device_id(uuid: &[u8; 16]) -> Result<DeviceId, BridgeError> {
    DeviceId::new(format!("{MESH}:{}", hex::encode(uuid))).map_err(unavailable)
}

/// Brightness (1–254) from Light Lightness (0–65535), rounded (the client
/// rounds the other way, so a brightness survives the round trip).
fn brightness(lightness: u16) -> u8 {
    ((u32::from(lightness) * u32::from(MAX_BRIGHTNESS) + 32_767) / 65_535).max(1) as u8
}

fn temperature(kelvin: u16) -> Color {
    Color::Temperature {
        mireds: (1_000_000 / u32::from(kelvin.max(800))) as u16,
    }
}

/// A bulb as taken until it answers a Get: off, at full lightness when
/// switched on, neutral white (Light Lightness Last and CTL defaults).
fn new_node(id: DeviceId, address: u16, ble_address: Option<String>) -> Node {
    Node {
        id,
        address,
        state: LightState {
            on: false,
            brightness: brightness(0xffff),
            color: temperature(4_000),
        },
        lightness: 0xffff,
        last_seen_ms: now_ms(),
        ble_address,
    }
}

impl MeshBridge {
    /// The mesh of `config`: simulated bulbs in range, and the Bluetooth
    /// bulbs provisioned before (from the store).
    pub async fn start(
        config: &MeshConfig,
        seed: [u8; 32],
        store: SqliteStore,
    ) -> Result<MeshBridge, BridgeError> {
        let net_key = derived(&seed, b"itc-mesh-netkey");
        let app_key = derived(&seed, b"itc-mesh-appkey");
        let mut sealing = [0u8; 32];
        sealing.copy_from_slice(&Hash::digest_parts(&[b"itc-mesh-sealing", &seed]).0);
        let sealing = SealingKey::new(sealing);
        let mut client = MeshClient::new(net_key, 0, GATEWAY_ADDRESS, 0, app_key);
        let reserved = store.mesh_sequence().await.map_err(unavailable)?;
        client.resume_seq(reserved);
        let mut nodes = Vec::new();
        let mut next_address = FIRST_NODE;
        let mut waiting = Vec::new();
        let central = match config.bluetooth {
            true => Some(BleCentral::open().await.map_err(unavailable)?),
            false => None,
        };
        if config.bluetooth {
            for row in store.mesh_nodes(&sealing).await.map_err(unavailable)? {
                client.add_node(row.address, row.device_key);
                let id = DeviceId::new(row.device).map_err(unavailable)?;
                nodes.push(new_node(id, row.address, Some(row.ble_address)));
                next_address = next_address.max(row.address + 1);
            }
        }
        for i in 0..config.simulated {
            let uuid = derived(
                &seed,
                &[b"itc-mesh-sim-".as_slice(), &(i as u32).to_le_bytes()].concat(),
            );
            let mut node = SimMeshNode::new(ephemeral()?, random()?);
            node.uuid = uuid;
            waiting.push((device_id(&uuid)?, Arc::new(Mutex::new(node))));
        }
        Ok(MeshBridge {
            inner: Arc::new(Inner {
                radio: tokio::sync::Mutex::new(Radio {
                    client,
                    links: HashMap::new(),
                    waiting,
                    next_address,
                    reserved,
                }),
                nodes: Mutex::new(nodes),
                central,
                network_id: k3(&net_key),
                seed,
                store,
                sealing,
                events: Mutex::new(None),
                joining: Mutex::new(false),
            }),
        })
    }

    /// Opens the network for `seconds`: simulated bulbs in range join at
    /// once; over Bluetooth, a scan runs for the window in the background
    /// and each unprovisioned bulb it finds joins.
    pub async fn permit_join(&self, seconds: u32) -> Result<(), BridgeError> {
        let waiting = std::mem::take(&mut self.inner.radio.lock().await.waiting);
        for (id, node) in waiting {
            let link = MeshLink::Sim(SimLink::open(node).map_err(unavailable)?);
            match self.inner.join(id.clone(), link, None).await {
                Ok(()) => self.inner.emit(BridgeEvent::Joined {
                    device: id,
                    bridge: MESH,
                }),
                Err(error) => tracing::warn!(%error, "a mesh bulb did not join"),
            }
        }
        if self.inner.central.is_some() {
            let mut joining = self.inner.joining.lock().map_err(|_| poisoned(MESH))?;
            if !*joining {
                *joining = true;
                let inner = self.inner.clone();
                let window = Duration::from_secs(u64::from(seconds.max(1)));
                tokio::spawn(async move {
                    inner.join_over_bluetooth(window).await;
                    if let Ok(mut joining) = inner.joining.lock() {
                        *joining = false;
                    }
                });
            }
        }
        Ok(())
    }

    fn light_of(node: &Node) -> BridgeLight {
        BridgeLight {
            id: node.id.clone(),
            bridge: MESH,
            kind: DeviceKind::BleMesh,
            model: MODEL.into(),
            link_quality: 200,
            last_seen_ms: node.last_seen_ms,
            state: node.state,
            target: node.state,
        }
    }

    pub fn lights(&self) -> Vec<BridgeLight> {
        self.inner
            .nodes
            .lock()
            .map(|nodes| nodes.iter().map(Self::light_of).collect())
            .unwrap_or_default()
    }

    pub fn light(&self, device: &DeviceId) -> Option<BridgeLight> {
        self.inner.node(device).map(|n| Self::light_of(&n))
    }

    /// The key the gateway keeps for a mesh bulb (its chain identity).
    pub fn device_keypair(&self, device: &DeviceId) -> Option<Keypair> {
        self.inner.node(device)?;
        Some(Keypair::from_seed(
            Hash::digest_parts(&[
                b"itc-mesh-device",
                &self.inner.seed,
                device.as_str().as_bytes(),
            ])
            .0,
        ))
    }

    /// Turns a command into model messages, sends them over the bulb's
    /// proxy connection (reconnecting to a real bulb if need be), and takes
    /// the statuses it answers with.
    pub async fn send(
        &self,
        device: &DeviceId,
        command: &LightCommand,
    ) -> Result<LightState, BridgeError> {
        let node = self
            .inner
            .node(device)
            .ok_or_else(|| BridgeError::Unknown {
                device: device.clone(),
            })?;
        let mut radio = self.inner.radio.lock().await;
        let mut node = node;
        if !radio.links.contains_key(&node.address) {
            // What the bulb is doing now, so a command that keeps some of
            // it (a colour change keeps the lightness) keeps the truth.
            let mut link = self.inner.reconnect(&mut radio, &node).await?;
            let events = self
                .inner
                .read_state(&mut radio, &mut link, node.address)
                .await?;
            radio.links.insert(node.address, link);
            self.inner.apply(device, &events)?;
            node = self.inner.node(device).unwrap_or(node);
        }
        self.inner.reserve(&mut radio).await?;
        let Radio { client, links, .. } = &mut *radio;
        let messages = client.messages_for(command, node.lightness);
        let writes = client
            .send(node.address, &messages)
            .map_err(|e| BridgeError::Command(e.to_string()))?;
        let link = links
            .get_mut(&node.address)
            .ok_or_else(|| unavailable("no link"))?;
        let address = node.address;
        let done = statuses_from(address, messages.len());
        let events = match exchange(client, link, writes, now_ms(), done, ANSWER_WITHIN).await {
            Ok(events) => events,
            Err(error) => {
                // Gone or silent: the next command connects afresh.
                if let Some(link) = links.remove(&address) {
                    let _ = link.close().await;
                }
                return Err(unavailable(format!("{device}: {error}")));
            }
        };
        drop(radio);
        let state = self.inner.apply(device, &events)?;
        self.inner.emit(BridgeEvent::State {
            device: device.clone(),
            state,
        });
        Ok(state)
    }

    /// Keeps the sender for state and join events (mesh statuses arrive as
    /// answers to commands) and waits until the service goes.
    pub async fn pump(&self, events: mpsc::Sender<BridgeEvent>) {
        if let Ok(mut slot) = self.inner.events.lock() {
            *slot = Some(events.clone());
        }
        events.closed().await;
    }
}

impl Inner {
    fn emit(&self, event: BridgeEvent) {
        if let Ok(events) = self.events.lock() {
            if let Some(events) = events.as_ref() {
                let _ = events.try_send(event);
            }
        }
    }

    fn node(&self, device: &DeviceId) -> Option<Node> {
        let nodes = self.nodes.lock().ok()?;
        nodes.iter().find(|n| &n.id == device).cloned()
    }

    /// Reserves the next block of sequence numbers in the store before any
    /// of it is used.
    async fn reserve(&self, radio: &mut Radio) -> Result<(), BridgeError> {
        // A conversation (configuration, a command) uses far fewer than a
        // block.
        if radio.client.next_seq().saturating_add(SEQ_BLOCK / 2) < radio.reserved {
            return Ok(());
        }
        let up_to = radio.client.next_seq().saturating_add(SEQ_BLOCK);
        self.store
            .reserve_mesh_sequence(up_to)
            .await
            .map_err(unavailable)?;
        radio.reserved = up_to;
        Ok(())
    }

    /// Asks the bulb at `address` for its state (Light CTL Get, then
    /// Generic OnOff Get) over `link`; returns the statuses.
    async fn read_state(
        &self,
        radio: &mut Radio,
        link: &mut MeshLink,
        address: u16,
    ) -> Result<Vec<ClientEvent>, BridgeError> {
        self.reserve(radio).await?;
        let gets = [Message::CtlGet, Message::OnOffGet];
        let writes = radio.client.send(address, &gets).map_err(unavailable)?;
        exchange(
            &mut radio.client,
            link,
            writes,
            now_ms(),
            statuses_from(address, gets.len()),
            ANSWER_WITHIN,
        )
        .await
        .map_err(unavailable)
    }

    /// Takes the statuses a bulb answered with into its state.
    fn apply(&self, device: &DeviceId, events: &[ClientEvent]) -> Result<LightState, BridgeError> {
        let mut nodes = self.nodes.lock().map_err(|_| poisoned(MESH))?;
        let node =
            nodes
                .iter_mut()
                .find(|n| &n.id == device)
                .ok_or_else(|| BridgeError::Unknown {
                    device: device.clone(),
                })?;
        for event in events {
            let ClientEvent::Status { src, message } = event else {
                continue;
            };
            if *src != node.address {
                continue;
            }
            match *message {
                Message::OnOffStatus { present, .. } => node.state.on = present,
                Message::LightnessStatus { present, .. } => {
                    node.lightness = present;
                    node.state.on = present > 0;
                    node.state.brightness = brightness(present);
                }
                Message::CtlStatus {
                    lightness,
                    temperature: kelvin,
                    ..
                } => {
                    node.lightness = lightness;
                    node.state.on = lightness > 0;
                    node.state.brightness = brightness(lightness);
                    node.state.color = temperature(kelvin);
                }
                _ => {}
            }
        }
        node.last_seen_ms = now_ms();
        Ok(node.state)
    }

    /// Provisions the unprovisioned bulb on `link` and configures it
    /// through its proxy: over the same link for a simulated bulb, over a
    /// new connection to its proxy for a real one (`advert`).
    async fn join(
        &self,
        id: DeviceId,
        mut link: MeshLink,
        advert: Option<&Advert>,
    ) -> Result<(), BridgeError> {
        let mut radio = self.radio.lock().await;
        let address = radio.next_address;
        let invite = radio.client.provision(address, ephemeral()?, random()?);
        let events = exchange(
            &mut radio.client,
            &mut link,
            invite,
            now_ms(),
            provisioned(address),
            ANSWER_WITHIN,
        )
        .await
        .map_err(|e| unavailable(format!("provisioning {id}: {e}")))?;
        let device_key = events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Provisioned { device_key, .. } => Some(*device_key),
                _ => None,
            })
            .ok_or_else(|| unavailable(format!("provisioning {id} gave no device key")))?;
        radio.next_address += 1;
        let ble_address = advert.map(|a| a.address.clone());
        if let Some(ble_address) = &ble_address {
            self.store
                .save_mesh_node(
                    &self.sealing,
                    &MeshNodeRow {
                        address,
                        device: id.as_str().to_string(),
                        ble_address: ble_address.clone(),
                        device_key,
                    },
                )
                .await
                .map_err(unavailable)?;
            // A provisioned bulb drops PB-GATT and comes back as a proxy.
            let _ = link.close().await;
            drop(radio);
            link = self.proxy(ble_address).await?;
            radio = self.radio.lock().await;
        }
        self.set_filter(&mut radio, &mut link).await?;
        let config = radio.client.configure(address).map_err(unavailable)?;
        exchange(
            &mut radio.client,
            &mut link,
            config,
            now_ms(),
            configured,
            ANSWER_WITHIN,
        )
        .await
        .map_err(|e| unavailable(format!("configuring {id}: {e}")))?;
        let state = self.read_state(&mut radio, &mut link, address).await?;
        radio.links.insert(address, link);
        drop(radio);
        tracing::info!(device = %id, address, "mesh bulb provisioned and configured");
        self.nodes
            .lock()
            .map_err(|_| poisoned(MESH))?
            .push(new_node(id.clone(), address, ble_address));
        self.apply(&id, &state)?;
        Ok(())
    }

    /// Scans for the proxy of this network at `ble_address` and connects.
    async fn proxy(&self, ble_address: &str) -> Result<MeshLink, BridgeError> {
        let central = self
            .central
            .as_ref()
            .ok_or_else(|| unavailable("no Bluetooth"))?;
        let ours = |a: &Advert| {
            a.address == ble_address
                && matches!(&a.beacon, Beacon::Proxy { kind: 0, data } if data[..] == self.network_id)
        };
        let seen = central
            .scan(|seen| seen.iter().any(ours), PROXY_WITHIN)
            .await
            .map_err(unavailable)?;
        let advert = seen
            .iter()
            .find(|a| ours(a))
            .ok_or_else(|| unavailable(format!("no proxy of ours at {ble_address}")))?;
        central.connect(advert).await.map_err(unavailable)
    }

    /// Sets the proxy filter on a new proxy connection (this gateway's
    /// address, so the proxy forwards what answers it).
    async fn set_filter(&self, radio: &mut Radio, link: &mut MeshLink) -> Result<(), BridgeError> {
        self.reserve(radio).await?;
        let filter = radio.client.set_filter().map_err(unavailable)?;
        exchange(
            &mut radio.client,
            link,
            filter,
            now_ms(),
            filter_set,
            ANSWER_WITHIN,
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// A new proxy connection to a known bulb, with the filter set.
    async fn reconnect(&self, radio: &mut Radio, node: &Node) -> Result<MeshLink, BridgeError> {
        let ble_address = node
            .ble_address
            .as_deref()
            .ok_or_else(|| unavailable(format!("{} is out of reach", node.id)))?;
        let mut link = self.proxy(ble_address).await?;
        self.set_filter(radio, &mut link).await?;
        tracing::info!(device = %node.id, %ble_address, "reconnected to a mesh bulb's proxy");
        Ok(link)
    }

    /// Serves a join window over Bluetooth: whatever unprovisioned bulb the
    /// scan finds joins, until the window closes.
    async fn join_over_bluetooth(self: &Arc<Self>, window: Duration) {
        let Some(central) = &self.central else {
            return;
        };
        let deadline = tokio::time::Instant::now() + window;
        let mut tried: Vec<[u8; 16]> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let new = |a: &Advert| matches!(a.beacon, Beacon::Unprovisioned { uuid, .. } if !tried.contains(&uuid));
            let seen = match central.scan(|seen| seen.iter().any(new), left).await {
                Ok(seen) => seen,
                Err(error) => {
                    tracing::warn!(%error, "Bluetooth scan failed");
                    return;
                }
            };
            let fresh: Vec<Advert> = seen.into_iter().filter(|a| new(a)).collect();
            for advert in fresh {
                let Beacon::Unprovisioned { uuid, .. } = advert.beacon else {
                    continue;
                };
                tried.push(uuid);
                if let Err(error) = self.join_one(central, &advert, &uuid).await {
                    tracing::warn!(%error, address = %advert.address, "a mesh bulb did not join");
                }
            }
        }
    }

    async fn join_one(
        &self,
        central: &BleCentral,
        advert: &Advert,
        uuid: &[u8; 16],
    ) -> Result<(), BridgeError> {
        let id = device_id(uuid)?;
        if self.node(&id).is_some() {
            return Ok(());
        }
        let link = central.connect(advert).await.map_err(unavailable)?;
        self.join(id.clone(), link, Some(advert)).await?;
        self.emit(BridgeEvent::Joined {
            device: id,
            bridge: MESH,
        });
        Ok(())
    }
}
