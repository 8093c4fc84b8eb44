//! A simulated Bluetooth mesh bulb: the node side of everything the
//! gateway speaks, over the same bytes a GATT connection carries. It
//! advertises as unprovisioned, is provisioned over PB-GATT (the
//! provisionee state machine), then serves the proxy protocol: proxy
//! filter configuration, configuration with its device key (AppKey Add,
//! Model App Bind) and the lighting models (Generic OnOff and Level, Light
//! Lightness and CTL), answering acknowledged Sets and Gets with Status.
//! A model obeys only an application key bound to it. Used by tests and
//! by `dev` in place of a radio.

use ring::agreement::EphemeralPrivateKey;

use super::access::{model, Message};
use super::crypto::Key;
use super::provisioning::{DeviceStep, Provisionee};
use super::proxy::{self, MessageType, ProxyReassembler};
use super::stack::{DropCounts, KeyUse, Stack};

/// The light a node drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshLightState {
    pub on: bool,
    /// Light Lightness actual, 0–65535.
    pub lightness: u16,
    /// Kelvin, 800–20000.
    pub temperature: u16,
    /// The last transition asked for, in ms.
    pub transition_ms: u64,
}

/// A simulated node's lifecycle.
enum Phase {
    Unprovisioned(Provisionee),
    Provisioned(Box<Stack>),
}

pub struct SimMeshNode {
    phase: Phase,
    reassembler: ProxyReassembler,
    mtu: usize,
    pub state: MeshLightState,
    /// (model, app key index) bindings.
    bindings: Vec<(u16, u16)>,
    /// The last TID per source, so a retransmitted Set applies once.
    last_tid: Option<(u16, u8)>,
    /// Whether Data Out notifications are subscribed.
    pub subscribed: bool,
    /// The Device UUID it advertises while unprovisioned.
    pub uuid: [u8; 16],
}

impl SimMeshNode {
    /// A factory-new bulb; `private` and `random` are its provisioning
    /// randomness.
    pub fn new(private: EphemeralPrivateKey, random: Key) -> SimMeshNode {
        SimMeshNode {
            phase: Phase::Unprovisioned(Provisionee::new(1, private, random)),
            reassembler: ProxyReassembler::default(),
            mtu: 20,
            // Off, at full lightness when switched on (Light Lightness
            // Last, Mesh Model §6.1.2.3), neutral white.
            state: MeshLightState {
                on: false,
                lightness: 0xffff,
                temperature: 4_000,
                transition_ms: 0,
            },
            bindings: Vec::new(),
            last_tid: None,
            subscribed: false,
            uuid: random,
        }
    }

    /// What it advertises now (Mesh Profile §7): the service and its
    /// service data — the Device UUID and OOB information (none) while
    /// unprovisioned, then the Network ID (identification type 0x00).
    pub fn advertisement(&self) -> (u16, Vec<u8>) {
        match &self.phase {
            Phase::Unprovisioned(_) => {
                let mut data = self.uuid.to_vec();
                data.extend([0x00, 0x00]);
                (proxy::PROVISIONING_SERVICE, data)
            }
            Phase::Provisioned(stack) => {
                let mut data = vec![0x00];
                data.extend(stack.network_id());
                (proxy::PROXY_SERVICE, data)
            }
        }
    }

    /// Which GATT service it offers now: 0x1827 until provisioned, then
    /// 0x1828.
    pub fn service(&self) -> u16 {
        match self.phase {
            Phase::Unprovisioned(_) => proxy::PROVISIONING_SERVICE,
            Phase::Provisioned(_) => proxy::PROXY_SERVICE,
        }
    }

    pub fn address(&self) -> Option<u16> {
        match &self.phase {
            Phase::Provisioned(stack) => Some(stack.address),
            Phase::Unprovisioned(_) => None,
        }
    }

    pub fn dropped(&self) -> DropCounts {
        match &self.phase {
            Phase::Provisioned(stack) => stack.dropped,
            Phase::Unprovisioned(_) => DropCounts::default(),
        }
    }

    pub fn is_bound(&self, model: u16, app_index: u16) -> bool {
        self.bindings.contains(&(model, app_index))
    }

    /// A write to Data In (0x2ADB or 0x2ADD) at `now_ms`; returns the
    /// notifications it sends on Data Out.
    pub fn handle_write(&mut self, pdu: &[u8], now_ms: u64) -> Vec<Vec<u8>> {
        let Ok(Some((kind, message))) = self.reassembler.handle(pdu) else {
            return Vec::new();
        };
        let replies = match kind {
            MessageType::Provisioning => self.provisioning(&message),
            MessageType::Network => self.network(&message, now_ms),
            MessageType::Configuration => self.proxy_configuration(&message),
            MessageType::Beacon => Vec::new(),
        };
        replies
            .into_iter()
            .flat_map(|(kind, message)| proxy::segment(kind, &message, self.mtu))
            .collect()
    }

    fn provisioning(&mut self, pdu: &[u8]) -> Vec<(MessageType, Vec<u8>)> {
        let Phase::Unprovisioned(provisionee) = &mut self.phase else {
            return Vec::new();
        };
        match provisionee.handle(pdu) {
            Ok(DeviceStep::Send(pdus)) => pdus
                .into_iter()
                .map(|p| (MessageType::Provisioning, p))
                .collect(),
            Ok(DeviceStep::Provisioned {
                data,
                device_key,
                complete,
            }) => {
                let mut stack = Stack::new(data.net_key, data.iv_index, data.address);
                stack.add_device_key(data.address, device_key);
                self.phase = Phase::Provisioned(Box::new(stack));
                vec![(MessageType::Provisioning, complete)]
            }
            Err(error) => {
                let failed = Provisionee::failed(&error);
                vec![(MessageType::Provisioning, failed)]
            }
        }
    }

    fn proxy_configuration(&mut self, pdu: &[u8]) -> Vec<(MessageType, Vec<u8>)> {
        let Phase::Provisioned(stack) = &mut self.phase else {
            return Vec::new();
        };
        let Some(message) = stack.open_proxy_config(pdu) else {
            return Vec::new();
        };
        // Set Filter Type: answer with the filter's status (an empty list).
        match message.as_slice() {
            [0x00, kind @ (0x00 | 0x01)] => stack
                .proxy_config(vec![0x03, *kind, 0x00, 0x00])
                .map(|p| vec![(MessageType::Configuration, p)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn network(&mut self, pdu: &[u8], now_ms: u64) -> Vec<(MessageType, Vec<u8>)> {
        let Phase::Provisioned(stack) = &mut self.phase else {
            return Vec::new();
        };
        let received = stack.receive(pdu, now_ms);
        let mut out: Vec<(MessageType, Vec<u8>)> = received
            .send
            .into_iter()
            .map(|p| (MessageType::Network, p))
            .collect();
        let Some(delivered) = received.delivered else {
            return out;
        };
        let Ok(message) = Message::decode(&delivered.payload) else {
            return out;
        };
        if let Some((reply, key)) = self.apply(message, delivered.src, delivered.key) {
            let Phase::Provisioned(stack) = &mut self.phase else {
                return out;
            };
            if let Ok(pdus) = stack.send(delivered.src, key, &reply.encode()) {
                out.extend(pdus.into_iter().map(|p| (MessageType::Network, p)));
            }
        }
        out
    }

    /// Whether `key` may drive `model`.
    fn allowed(&self, model: u16, key: KeyUse) -> bool {
        matches!(key, KeyUse::App(index) if self.is_bound(model, index))
    }

    /// A TID seen from `src` just before is a retransmission: not applied
    /// again (Mesh Model §3.3.2.2.3).
    fn fresh(&mut self, src: u16, tid: u8) -> bool {
        let fresh = self.last_tid != Some((src, tid));
        self.last_tid = Some((src, tid));
        fresh
    }

    fn apply(&mut self, message: Message, src: u16, key: KeyUse) -> Option<(Message, KeyUse)> {
        match message {
            Message::AppKeyAdd {
                net_index,
                app_index,
                key: app_key,
            } if key == KeyUse::Device => {
                if let Phase::Provisioned(stack) = &mut self.phase {
                    stack.add_app_key(app_index, app_key);
                }
                Some((
                    Message::AppKeyStatus {
                        status: 0,
                        net_index,
                        app_index,
                    },
                    KeyUse::Device,
                ))
            }
            Message::ModelAppBind {
                element,
                app_index,
                model: m,
            } if key == KeyUse::Device => {
                let known = [
                    model::GENERIC_ONOFF_SERVER,
                    model::GENERIC_LEVEL_SERVER,
                    model::LIGHT_LIGHTNESS_SERVER,
                    model::LIGHT_CTL_SERVER,
                ];
                let has_key =
                    matches!(&self.phase, Phase::Provisioned(s) if s.app_key(app_index).is_some());
                // 0x02: invalid model; 0x03: invalid AppKey index.
                let status = match (known.contains(&m), has_key) {
                    (false, _) => 0x02,
                    (_, false) => 0x03,
                    _ => {
                        if !self.is_bound(m, app_index) {
                            self.bindings.push((m, app_index));
                        }
                        0x00
                    }
                };
                Some((
                    Message::ModelAppStatus {
                        status,
                        element,
                        app_index,
                        model: m,
                    },
                    KeyUse::Device,
                ))
            }
            Message::OnOffGet if self.allowed(model::GENERIC_ONOFF_SERVER, key) => {
                Some((self.onoff_status(), key))
            }
            Message::CtlGet if self.allowed(model::LIGHT_CTL_SERVER, key) => Some((
                Message::CtlStatus {
                    lightness: self.state.lightness,
                    temperature: self.state.temperature,
                    target: None,
                },
                key,
            )),
            Message::OnOffSet {
                on,
                tid,
                transition,
                ack,
            } if self.allowed(model::GENERIC_ONOFF_SERVER, key) => {
                if self.fresh(src, tid) {
                    self.state.on = on;
                    self.state.transition_ms = transition.and_then(|t| t.ms()).unwrap_or(0);
                }
                ack.then(|| (self.onoff_status(), key))
            }
            Message::LevelSet {
                level,
                tid,
                transition,
                ack,
            } if self.allowed(model::GENERIC_LEVEL_SERVER, key) => {
                if self.fresh(src, tid) {
                    // Generic Level binds to Lightness: level = lightness − 32768.
                    self.state.lightness = (i32::from(level) + 32_768) as u16;
                    self.state.on = self.state.lightness > 0;
                    self.state.transition_ms = transition.and_then(|t| t.ms()).unwrap_or(0);
                }
                ack.then(|| {
                    let present = (i32::from(self.state.lightness) - 32_768) as i16;
                    (
                        Message::LevelStatus {
                            present,
                            target: None,
                        },
                        key,
                    )
                })
            }
            Message::LightnessSet {
                lightness,
                tid,
                transition,
                ack,
            } if self.allowed(model::LIGHT_LIGHTNESS_SERVER, key) => {
                if self.fresh(src, tid) {
                    self.state.lightness = lightness;
                    self.state.on = lightness > 0;
                    self.state.transition_ms = transition.and_then(|t| t.ms()).unwrap_or(0);
                }
                ack.then_some((
                    Message::LightnessStatus {
                        present: self.state.lightness,
                        target: None,
                    },
                    key,
                ))
            }
            Message::CtlSet {
                lightness,
                temperature,
                tid,
                transition,
                ack,
                ..
            } if self.allowed(model::LIGHT_CTL_SERVER, key) => {
                if self.fresh(src, tid) {
                    self.state.lightness = lightness;
                    self.state.temperature = temperature.clamp(800, 20_000);
                    self.state.on = lightness > 0;
                    self.state.transition_ms = transition.and_then(|t| t.ms()).unwrap_or(0);
                }
                ack.then_some((
                    Message::CtlStatus {
                        lightness: self.state.lightness,
                        temperature: self.state.temperature,
                        target: None,
                    },
                    key,
                ))
            }
            _ => None,
        }
    }

    fn onoff_status(&self) -> Message {
        Message::OnOffStatus {
            present: self.state.on,
            target: None,
        }
    }
}
