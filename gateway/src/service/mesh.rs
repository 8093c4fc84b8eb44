//! The Bluetooth mesh bridge: the gateway's mesh client driving bulbs over
//! their proxy connections ([`MeshLink`]). When the administrator opens
//! the network (permit join), the unprovisioned bulbs in range are
//! provisioned (PB-GATT), given the gateway's proxy filter, the
//! application key and its bindings to the four lighting models; then they
//! appear as lights like any other bridge's: registered on chain with a key
//! the gateway derives for each, commanded only as chain state allows.
//!
//! The network and application keys derive from the gateway's secret seed
//! (its key file, mode 0600), so they are never written anywhere; device
//! keys come out of each provisioning run. Today the links are simulated
//! bulbs in memory; the BLE transport over btleplug is the next step.

use std::sync::Mutex;

use itc_bridges::light::{Color, LightCommand, LightState, MAX_BRIGHTNESS};
use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::client::{exchange, ClientEvent, MeshClient, MeshLink};
use itc_bridges::mesh::sim::SimMeshNode;
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::types::{DeviceId, DeviceKind};
use ring::agreement::{EphemeralPrivateKey, ECDH_P256};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::mpsc;

use super::bridge::{poisoned, BridgeError, BridgeEvent, BridgeLight};
use super::now_ms;

pub const MESH: &str = "mesh";
/// The gateway's own element address; bulbs get 0x0100 and up.
const GATEWAY_ADDRESS: u16 = 0x0001;
const FIRST_NODE: u16 = 0x0100;
const MODEL: &str = "mesh-bulb";

struct Node {
    id: DeviceId,
    link: Box<dyn MeshLink + Send>,
    address: u16,
    state: LightState,
    lightness: u16,
    last_seen_ms: u64,
}

struct Mesh {
    client: MeshClient,
    nodes: Vec<Node>,
    /// Unprovisioned bulbs in range, advertising 0x1827.
    waiting: Vec<(DeviceId, Box<dyn MeshLink + Send>)>,
}

pub struct MeshBridge {
    mesh: Mutex<Mesh>,
    seed: [u8; 32],
    events: Mutex<Option<mpsc::Sender<BridgeEvent>>>,
}

fn unavailable(reason: String) -> BridgeError {
    BridgeError::Unavailable {
        bridge: MESH,
        reason,
    }
}

/// The randomness of one provisioning run.
fn ephemeral() -> Result<EphemeralPrivateKey, BridgeError> {
    EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new())
        .map_err(|_| unavailable("no randomness".into()))
}

fn random() -> Result<[u8; 16], BridgeError> {
    let mut r = [0u8; 16];
    SystemRandom::new()
        .fill(&mut r)
        .map(|_| r)
        .map_err(|_| unavailable("no randomness".into()))
}

fn derived(seed: &[u8; 32], label: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&Hash::digest_parts(&[label, seed]).0[..16]);
    key
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

impl MeshBridge {
    /// A mesh with `simulated` factory-new bulbs in range.
    pub fn start(seed: [u8; 32], simulated: usize) -> Result<MeshBridge, BridgeError> {
        let net_key = derived(&seed, b"itc-mesh-netkey");
        let app_key = derived(&seed, b"itc-mesh-appkey");
        let client = MeshClient::new(net_key, 0, GATEWAY_ADDRESS, 0, app_key);
        let mut waiting: Vec<(DeviceId, Box<dyn MeshLink + Send>)> = Vec::new();
        for i in 0..simulated {
            let uuid = derived(
                &seed,
                &[b"itc-mesh-sim-".as_slice(), &(i as u32).to_le_bytes()].concat(),
            );
            let id = DeviceId::new(format!("{MESH}:{}", hex::encode(uuid)))
                .map_err(|e| unavailable(e.to_string()))?;
            let node = SimMeshNode::new(ephemeral()?, random()?);
            waiting.push((id, Box::new(node)));
        }
        Ok(MeshBridge {
            mesh: Mutex::new(Mesh {
                client,
                nodes: Vec::new(),
                waiting,
            }),
            seed,
            events: Mutex::new(None),
        })
    }

    /// Provisions and configures every unprovisioned bulb in range, and
    /// says each joined.
    pub fn permit_join(&self) -> Result<(), BridgeError> {
        let joined = {
            let mut mesh = self.locked()?;
            let waiting = std::mem::take(&mut mesh.waiting);
            let mut joined = Vec::new();
            for (id, link) in waiting {
                let address = FIRST_NODE + mesh.nodes.len() as u16;
                match mesh.join(id.clone(), link, address, ephemeral()?, random()?) {
                    Ok(()) => joined.push(id),
                    Err(error) => tracing::warn!(%error, "a mesh bulb did not join"),
                }
            }
            joined
        };
        for device in joined {
            self.emit(BridgeEvent::Joined {
                device,
                bridge: MESH,
            });
        }
        Ok(())
    }

    fn emit(&self, event: BridgeEvent) {
        if let Ok(events) = self.events.lock() {
            if let Some(events) = events.as_ref() {
                let _ = events.try_send(event);
            }
        }
    }

    fn locked(&self) -> Result<std::sync::MutexGuard<'_, Mesh>, BridgeError> {
        self.mesh.lock().map_err(|_| poisoned(MESH))
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
        self.locked()
            .map(|m| m.nodes.iter().map(Self::light_of).collect())
            .unwrap_or_default()
    }

    pub fn light(&self, device: &DeviceId) -> Option<BridgeLight> {
        let mesh = self.locked().ok()?;
        mesh.nodes
            .iter()
            .find(|n| &n.id == device)
            .map(Self::light_of)
    }

    /// The key the gateway keeps for a mesh bulb (its chain identity).
    pub fn device_keypair(&self, device: &DeviceId) -> Option<Keypair> {
        self.light(device)?;
        Some(Keypair::from_seed(
            Hash::digest_parts(&[b"itc-mesh-device", &self.seed, device.as_str().as_bytes()]).0,
        ))
    }

    /// Turns a command into model messages, sends them over the bulb's
    /// proxy connection, and takes the statuses it answers with.
    pub fn send(
        &self,
        device: &DeviceId,
        command: &LightCommand,
    ) -> Result<LightState, BridgeError> {
        let mut mesh = self.locked()?;
        let Mesh { client, nodes, .. } = &mut *mesh;
        let node =
            nodes
                .iter_mut()
                .find(|n| &n.id == device)
                .ok_or_else(|| BridgeError::Unknown {
                    device: device.clone(),
                })?;
        let messages = client.messages_for(command, node.lightness);
        let writes = client
            .send(node.address, &messages)
            .map_err(|e| BridgeError::Command(e.to_string()))?;
        let now = now_ms();
        let events = exchange(client, node.link.as_mut(), writes, now);
        let mut answered = false;
        for event in events {
            let ClientEvent::Status { src, message } = event else {
                continue;
            };
            if src != node.address {
                continue;
            }
            answered = true;
            match message {
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
        if !answered {
            return Err(unavailable(format!("{device} did not answer")));
        }
        node.last_seen_ms = now;
        let state = node.state;
        drop(mesh);
        self.emit(BridgeEvent::State {
            device: device.clone(),
            state,
        });
        Ok(state)
    }

    /// Keeps the sender for state events (mesh statuses arrive as answers
    /// to commands) and waits until the service goes.
    pub async fn pump(&self, events: mpsc::Sender<BridgeEvent>) {
        if let Ok(mut slot) = self.events.lock() {
            *slot = Some(events.clone());
        }
        events.closed().await;
    }
}

impl Mesh {
    /// Provisions the device on `link` as `address`, sets the proxy filter,
    /// adds the application key and binds it to the lighting models.
    fn join(
        &mut self,
        id: DeviceId,
        mut link: Box<dyn MeshLink + Send>,
        address: u16,
        private: EphemeralPrivateKey,
        random: [u8; 16],
    ) -> Result<(), BridgeError> {
        let now = now_ms();
        let invite = self.client.provision(address, private, random);
        let events = exchange(&mut self.client, link.as_mut(), invite, now);
        if !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Provisioned { address: a, .. } if *a == address))
        {
            return Err(unavailable(format!("provisioning {id} failed: {events:?}")));
        }
        let filter = self
            .client
            .set_filter()
            .map_err(|e| unavailable(e.to_string()))?;
        exchange(&mut self.client, link.as_mut(), filter, now);
        let config = self
            .client
            .configure(address)
            .map_err(|e| unavailable(e.to_string()))?;
        let events = exchange(&mut self.client, link.as_mut(), config, now);
        let bound = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::Status {
                        message: Message::ModelAppStatus { status: 0, .. },
                        ..
                    }
                )
            })
            .count();
        if bound < itc_bridges::mesh::client::LIGHT_MODELS.len() {
            return Err(unavailable(format!("configuring {id} failed: {events:?}")));
        }
        tracing::info!(device = %id, address, "mesh bulb provisioned and configured");
        self.nodes.push(Node {
            id,
            link,
            address,
            // A new bulb: off, at full lightness when switched on, neutral
            // white (the simulated bulb's factory state).
            state: LightState {
                on: false,
                brightness: brightness(0xffff),
                color: temperature(4_000),
            },
            lightness: 0xffff,
            last_seen_ms: now,
        });
        Ok(())
    }
}
