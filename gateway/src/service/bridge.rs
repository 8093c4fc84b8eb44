//! The gateway's bridges to its lights, behind one interface: the
//! simulated bulb network (`itc_bridges::sim`) and the Zigbee coordinator
//! (`itc_bridges::zigbee`, a real stick or the simulated one on a PTY),
//! and MQTT devices ([`super::mqtt`]). BLE mesh joins here when it lands.
//!
//! A light is named on chain by its bridge's id scheme: `sim:<key prefix>`
//! for simulated bulbs, `zigbee:<IEEE address>` for Zigbee. Each bridge
//! turns its native events into [`BridgeEvent`]s on one channel.
//!
//! Device keys: a simulated bulb holds its own Ed25519 key and signs its
//! registration itself. A Zigbee bulb holds no ITC key (the radio stack has
//! no room for one), so the gateway keeps a per-device key derived from
//! its own seed and the IEEE address, and signs for the bulb; the chain
//! record then says which gateway vouches for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use itc_bridges::light::{LightCommand, LightState};
use itc_bridges::sim::{SimEvent, SimNetwork};
use itc_bridges::zigbee::driver::ZigbeeHandle;
use itc_bridges::zigbee::network::NetEvent;
use itc_bridges::zigbee::ota::{ClientMessage, ServerMessage};
use itc_chain::crypto::{Domain, Hash, Keypair, PublicKey, Signature};
use itc_chain::types::{DeviceId, DeviceKind, Model};
use tokio::sync::{mpsc, Notify};

use super::now_ms;

/// A light as its bridge sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeLight {
    pub id: DeviceId,
    pub bridge: &'static str,
    pub kind: DeviceKind,
    pub model: String,
    pub link_quality: u8,
    pub last_seen_ms: u64,
    /// Where the light is now, as far as the bridge knows.
    pub state: LightState,
    /// Where it is going.
    pub target: LightState,
}

/// What bridges report.
#[derive(Clone, Debug, PartialEq)]
pub enum BridgeEvent {
    Joined {
        device: DeviceId,
        bridge: &'static str,
    },
    State {
        device: DeviceId,
        state: LightState,
    },
    /// A device's OTA Upgrade message.
    Ota {
        device: DeviceId,
        seq: u8,
        message: ClientMessage,
    },
    /// Something for the service from the MQTT side.
    Mqtt(super::mqtt::MqttInbound),
}

/// Why a bridge could not do something.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BridgeError {
    #[error("no light {device} on this gateway")]
    Unknown { device: DeviceId },
    #[error("bad light command: {0}")]
    Command(String),
    #[error("the {bridge} bridge is not available: {reason}")]
    Unavailable {
        bridge: &'static str,
        reason: String,
    },
}

/// One bridge.
pub enum Bridge {
    Sim(SimBridge),
    Zigbee(ZigbeeBridge),
    Mqtt(Box<super::mqtt::MqttBridge>),
    Mesh(Box<super::mesh::MeshBridge>),
}

pub struct SimBridge {
    network: Mutex<SimNetwork>,
    ticks: Notify,
}

pub struct ZigbeeBridge {
    handle: ZigbeeHandle,
    /// Where each light was last told to go.
    targets: Mutex<HashMap<u64, LightState>>,
    /// The gateway's seed, for the per-device keys.
    seed: [u8; 32],
}

/// The ids of the two kinds.
const SIM: &str = "sim";
const ZIGBEE: &str = "zigbee";

/// A simulated bulb as a bridge light.
fn sim_light(network: &SimNetwork, id: &DeviceId, now: u64) -> Option<BridgeLight> {
    let info = network.info(id, now)?;
    Some(BridgeLight {
        target: network.target(id).unwrap_or(info.state),
        id: info.id,
        bridge: SIM,
        kind: info.kind,
        model: info.model,
        link_quality: info.link_quality,
        last_seen_ms: info.last_seen_ms,
        state: info.state,
    })
}

/// A Zigbee device as a bridge light, once interviewed.
fn zigbee_light(
    device: &itc_bridges::zigbee::network::Device,
    target: Option<LightState>,
) -> Option<BridgeLight> {
    device.interviewed.then(|| BridgeLight {
        id: zigbee_id(device.ieee),
        bridge: ZIGBEE,
        kind: DeviceKind::Zigbee,
        model: device.model.clone().unwrap_or_default(),
        link_quality: device.link_quality,
        last_seen_ms: device.last_seen_ms,
        state: device.state,
        target: target.unwrap_or(device.state),
    })
}

fn zigbee_id(ieee: u64) -> DeviceId {
    DeviceId::new(format!("{ZIGBEE}:{ieee:016x}"))
        .unwrap_or_else(|_| unreachable!("a hex IEEE address is a valid device id"))
}

fn zigbee_ieee(device: &DeviceId) -> Option<u64> {
    let hex = device.as_str().strip_prefix("zigbee:")?;
    u64::from_str_radix(hex, 16).ok()
}

impl Bridge {
    pub fn sim(network: SimNetwork) -> Bridge {
        Bridge::Sim(SimBridge {
            network: Mutex::new(network),
            ticks: Notify::new(),
        })
    }

    pub fn zigbee(handle: ZigbeeHandle, gateway_seed: [u8; 32]) -> Bridge {
        Bridge::Zigbee(ZigbeeBridge {
            handle,
            targets: Mutex::new(HashMap::new()),
            seed: gateway_seed,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Bridge::Sim(_) => SIM,
            Bridge::Zigbee(_) => ZIGBEE,
            Bridge::Mqtt(_) => super::mqtt::MQTT,
            Bridge::Mesh(_) => super::mesh::MESH,
        }
    }

    pub fn as_mqtt(&self) -> Option<&super::mqtt::MqttBridge> {
        match self {
            Bridge::Mqtt(mqtt) => Some(mqtt),
            _ => None,
        }
    }

    /// Whether `device` is one of this bridge's ids.
    pub fn owns(&self, device: &DeviceId) -> bool {
        device
            .as_str()
            .strip_prefix(self.name())
            .is_some_and(|rest| rest.starts_with(':'))
    }

    pub fn lights(&self) -> Vec<BridgeLight> {
        match self {
            Bridge::Sim(sim) => {
                let Ok(network) = sim.network.lock() else {
                    return Vec::new();
                };
                let now = now_ms();
                network
                    .devices()
                    .filter_map(|id| sim_light(&network, id, now))
                    .collect()
            }
            Bridge::Zigbee(zigbee) => {
                let targets = zigbee.targets.lock().map(|t| t.clone()).unwrap_or_default();
                zigbee
                    .handle
                    .devices()
                    .iter()
                    .filter_map(|d| zigbee_light(d, targets.get(&d.ieee).copied()))
                    .collect()
            }
            Bridge::Mqtt(mqtt) => mqtt.lights(),
            Bridge::Mesh(mesh) => mesh.lights(),
        }
    }

    /// One light, looked up directly (not by listing them all).
    pub fn light(&self, device: &DeviceId) -> Option<BridgeLight> {
        match self {
            Bridge::Sim(sim) => sim_light(&*sim.network.lock().ok()?, device, now_ms()),
            Bridge::Zigbee(zigbee) => {
                let ieee = zigbee_ieee(device)?;
                let target = zigbee.targets.lock().ok()?.get(&ieee).copied();
                zigbee_light(&zigbee.handle.device(ieee)?, target)
            }
            Bridge::Mqtt(mqtt) => mqtt.light(device),
            Bridge::Mesh(mesh) => mesh.light(device),
        }
    }

    /// Sends a command; returns the state the light is going to. For Zigbee
    /// it returns once the radio confirmed delivery.
    pub async fn send(
        &self,
        device: &DeviceId,
        command: &LightCommand,
    ) -> Result<LightState, BridgeError> {
        command
            .validate()
            .map_err(|e| BridgeError::Command(e.to_string()))?;
        match self {
            Bridge::Sim(sim) => {
                let target = {
                    let mut network = sim.network.lock().map_err(|_| poisoned(SIM))?;
                    network
                        .handle_command(now_ms(), device, command)
                        .map_err(|e| match e {
                            itc_bridges::sim::SimError::UnknownDevice { device } => {
                                BridgeError::Unknown { device }
                            }
                            other => BridgeError::Command(other.to_string()),
                        })?
                };
                sim.ticks.notify_one();
                Ok(target)
            }
            Bridge::Zigbee(zigbee) => {
                let ieee = zigbee_ieee(device).ok_or_else(|| BridgeError::Unknown {
                    device: device.clone(),
                })?;
                let current = zigbee
                    .handle
                    .device(ieee)
                    .filter(|d| d.interviewed)
                    .ok_or_else(|| BridgeError::Unknown {
                        device: device.clone(),
                    })?;
                let base = zigbee
                    .targets
                    .lock()
                    .ok()
                    .and_then(|t| t.get(&ieee).copied())
                    .unwrap_or(current.state);
                zigbee
                    .handle
                    .send(ieee, *command)
                    .await
                    .map_err(|e| BridgeError::Unavailable {
                        bridge: ZIGBEE,
                        reason: e.to_string(),
                    })?;
                let target = command.target(&base);
                if let Ok(mut targets) = zigbee.targets.lock() {
                    targets.insert(ieee, target);
                }
                Ok(target)
            }
            Bridge::Mqtt(mqtt) => {
                mqtt.send(device, command)
                    .await
                    .map_err(|reason| BridgeError::Unavailable {
                        bridge: super::mqtt::MQTT,
                        reason,
                    })
            }
            Bridge::Mesh(mesh) => mesh.send(device, command).await,
        }
    }

    /// Opens the network for joining.
    pub async fn permit_join(&self, seconds: u32) -> Result<(), BridgeError> {
        match self {
            Bridge::Sim(sim) => {
                sim.network
                    .lock()
                    .map_err(|_| poisoned(SIM))?
                    .permit_join(now_ms(), u64::from(seconds) * 1_000);
                sim.ticks.notify_one();
                Ok(())
            }
            Bridge::Zigbee(zigbee) => {
                // A coordinator that is (re)starting gets a moment.
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    zigbee.handle.wait_up(),
                )
                .await;
                zigbee
                    .handle
                    .permit_join(seconds.min(254) as u8)
                    .await
                    .map_err(|e| BridgeError::Unavailable {
                        bridge: ZIGBEE,
                        reason: e.to_string(),
                    })
            }
            // Unprovisioned mesh bulbs in range are provisioned.
            Bridge::Mesh(mesh) => mesh.permit_join(seconds).await,
            // Wi-Fi devices join with a setup code instead.
            Bridge::Mqtt(_) => Ok(()),
        }
    }

    /// Answers a device's OTA message (bridges without OTA have no
    /// devices that send them).
    pub async fn send_ota(
        &self,
        device: &DeviceId,
        seq: u8,
        message: ServerMessage,
    ) -> Result<(), BridgeError> {
        match self {
            Bridge::Sim(_) | Bridge::Mqtt(_) | Bridge::Mesh(_) => Ok(()),
            Bridge::Zigbee(zigbee) => {
                let ieee = zigbee_ieee(device).ok_or_else(|| BridgeError::Unknown {
                    device: device.clone(),
                })?;
                zigbee
                    .handle
                    .send_ota(ieee, seq, message)
                    .await
                    .map_err(|e| BridgeError::Unavailable {
                        bridge: ZIGBEE,
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// The device's public key.
    pub fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        match self {
            Bridge::Sim(sim) => sim.network.lock().ok()?.device_key(device),
            Bridge::Zigbee(zigbee) => Some(zigbee.device_keypair(device)?.public()),
            Bridge::Mqtt(mqtt) => mqtt.device_key(device),
            Bridge::Mesh(mesh) => Some(mesh.device_keypair(device)?.public()),
        }
    }

    /// Who a device becomes owned by when it is registered, if its bridge
    /// knows (an MQTT device's setup code names its owner).
    pub fn adoption(&self, device: &DeviceId) -> Option<(PublicKey, Signature)> {
        match self {
            Bridge::Mqtt(mqtt) => mqtt.adoption(device),
            _ => None,
        }
    }

    /// The device's public key and its signature over `payload` (the
    /// registration proof): the bulb's own for simulated bulbs, the
    /// gateway-held per-device key for Zigbee bulbs.
    pub fn sign_registration(
        &self,
        device: &DeviceId,
        payload: &[u8],
    ) -> Option<(PublicKey, Signature)> {
        match self {
            Bridge::Sim(sim) => {
                let network = sim.network.lock().ok()?;
                let key = network.device_key(device)?;
                let proof = network.sign(device, Domain::DeviceRegistration, payload)?;
                Some((key, proof))
            }
            Bridge::Zigbee(zigbee) => {
                let key = zigbee.device_keypair(device)?;
                Some((key.public(), key.sign(Domain::DeviceRegistration, payload)))
            }
            Bridge::Mesh(mesh) => {
                let key = mesh.device_keypair(device)?;
                Some((key.public(), key.sign(Domain::DeviceRegistration, payload)))
            }
            // The device signed its own at onboarding (over the same
            // payload; the chain checks).
            Bridge::Mqtt(mqtt) => mqtt.registration_proof(device),
        }
    }

    /// The model a device registers with.
    pub fn model(&self, device: &DeviceId) -> Model {
        let name = self.light(device).map(|l| l.model).unwrap_or_default();
        Model::new(name).unwrap_or_default()
    }

    /// Runs the bridge's event pump until `events` closes.
    pub async fn pump(self: Arc<Self>, events: mpsc::Sender<BridgeEvent>) {
        match &*self {
            Bridge::Sim(_) => self.pump_sim(events).await,
            Bridge::Mqtt(mqtt) => mqtt.pump(events).await,
            Bridge::Mesh(mesh) => mesh.pump(events).await,
            Bridge::Zigbee(zigbee) => {
                let mut native = zigbee.handle.events();
                loop {
                    let event = match native.recv().await {
                        Ok(NetEvent::Joined { ieee, .. }) => BridgeEvent::Joined {
                            device: zigbee_id(ieee),
                            bridge: ZIGBEE,
                        },
                        Ok(NetEvent::State { ieee, state }) => BridgeEvent::State {
                            device: zigbee_id(ieee),
                            state,
                        },
                        Ok(NetEvent::Ota { ieee, seq, message }) => BridgeEvent::Ota {
                            device: zigbee_id(ieee),
                            seq,
                            message,
                        },
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            continue
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn pump_sim(&self, events: mpsc::Sender<BridgeEvent>) {
        let Bridge::Sim(sim) = self else {
            return;
        };
        loop {
            let (out, next) = {
                let Ok(mut network) = sim.network.lock() else {
                    return;
                };
                let now = now_ms();
                network.handle_tick(now);
                let out: Vec<BridgeEvent> = std::iter::from_fn(|| network.poll_event())
                    .map(|event| match event {
                        SimEvent::Joined { device } => BridgeEvent::Joined {
                            device,
                            bridge: SIM,
                        },
                        SimEvent::Reported { device, state } => {
                            BridgeEvent::State { device, state }
                        }
                    })
                    .collect();
                (out, network.next_deadline(now))
            };
            for event in out {
                if events.send(event).await.is_err() {
                    return;
                }
            }
            let sleep = next.map_or(std::time::Duration::from_secs(1), |at| {
                std::time::Duration::from_millis(at.saturating_sub(now_ms()))
                    .min(std::time::Duration::from_secs(1))
            });
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = sim.ticks.notified() => {}
            }
        }
    }
}

impl ZigbeeBridge {
    /// The key this gateway keeps for a Zigbee bulb.
    fn device_keypair(&self, device: &DeviceId) -> Option<Keypair> {
        let ieee = zigbee_ieee(device)?;
        Some(Keypair::from_seed(
            Hash::digest_parts(&[b"itc-zigbee-device", &self.seed, &ieee.to_le_bytes()]).0,
        ))
    }
}

pub(super) fn poisoned(bridge: &'static str) -> BridgeError {
    BridgeError::Unavailable {
        bridge,
        reason: "its state is poisoned".into(),
    }
}
