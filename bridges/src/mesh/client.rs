//! The gateway's side of a mesh: provisioner, configuration client and
//! lighting client over one proxy connection, pure. Writes to the node's
//! Data In come out as Proxy PDUs already split to the connection's MTU;
//! notifications from Data Out go in through
//! [`MeshClient::handle_notification`].

use ring::agreement::EphemeralPrivateKey;

use super::access::{model, Message, Transition};
use super::crypto::Key;
use super::provisioning::{Provisioner, ProvisioningData, ProvisioningError, Step};
use super::proxy::{self, FilterType, MessageType, ProxyReassembler};
use super::stack::{DropCounts, KeyUse, Stack, StackError};
use crate::light::LightCommand;

/// The models the gateway binds its application key to on every bulb.
pub const LIGHT_MODELS: [u16; 4] = [
    model::GENERIC_ONOFF_SERVER,
    model::GENERIC_LEVEL_SERVER,
    model::LIGHT_LIGHTNESS_SERVER,
    model::LIGHT_CTL_SERVER,
];

/// What the client learnt from the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Provisioned {
        address: u16,
        device_key: Key,
    },
    ProvisioningFailed(ProvisioningError),
    /// A status (configuration or model) from `src`.
    Status {
        src: u16,
        message: Message,
    },
    FilterStatus {
        accept: bool,
        addresses: u16,
    },
}

pub struct MeshClient {
    stack: Stack,
    net_key: Key,
    app_index: u16,
    reassembler: ProxyReassembler,
    mtu: usize,
    tid: u8,
    provisioning: Option<(Provisioner, u16)>,
}

impl MeshClient {
    /// The gateway as element `address` of the network `net_key`, with
    /// the application key it binds lights to.
    pub fn new(
        net_key: Key,
        iv_index: u32,
        address: u16,
        app_index: u16,
        app_key: Key,
    ) -> MeshClient {
        let mut stack = Stack::new(net_key, iv_index, address);
        stack.add_app_key(app_index, app_key);
        MeshClient {
            stack,
            net_key,
            app_index,
            reassembler: ProxyReassembler::default(),
            mtu: 20,
            tid: 0,
            provisioning: None,
        }
    }

    pub fn dropped(&self) -> DropCounts {
        self.stack.dropped
    }

    /// The sequence number to persist, and to resume from.
    pub fn next_seq(&self) -> u32 {
        self.stack.next_seq()
    }

    pub fn resume_seq(&mut self, seq: u32) {
        self.stack.resume_seq(seq);
    }

    /// A node provisioned before (its device key from the store).
    pub fn add_node(&mut self, address: u16, device_key: Key) {
        self.stack.add_device_key(address, device_key);
    }

    fn writes(&self, kind: MessageType, messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        messages
            .iter()
            .flat_map(|m| proxy::segment(kind, m, self.mtu))
            .collect()
    }

    /// Starts provisioning the connected unprovisioned device as
    /// `address`; returns the writes.
    pub fn provision(
        &mut self,
        address: u16,
        private: EphemeralPrivateKey,
        random: Key,
    ) -> Vec<Vec<u8>> {
        let data = ProvisioningData {
            net_key: self.net_key,
            key_index: 0,
            flags: 0,
            iv_index: self.stack.iv_index,
            address,
        };
        let (provisioner, invite) = Provisioner::new(data, 0, private, random);
        self.provisioning = Some((provisioner, address));
        self.writes(MessageType::Provisioning, vec![invite])
    }

    /// The configuration a freshly provisioned bulb gets: the application
    /// key, then a binding of it to each lighting model.
    pub fn configure(&mut self, node: u16) -> Result<Vec<Vec<u8>>, StackError> {
        let key = self
            .stack
            .app_key(self.app_index)
            .ok_or(StackError::NoAppKey {
                index: self.app_index,
            })?;
        let mut messages = vec![Message::AppKeyAdd {
            net_index: 0,
            app_index: self.app_index,
            key,
        }];
        messages.extend(LIGHT_MODELS.iter().map(|&m| Message::ModelAppBind {
            element: node,
            app_index: self.app_index,
            model: m,
        }));
        let mut pdus = Vec::new();
        for message in messages {
            pdus.extend(self.stack.send(node, KeyUse::Device, &message.encode())?);
        }
        Ok(self.writes(MessageType::Network, pdus))
    }

    /// Asks the proxy server to forward only what is addressed to the
    /// gateway (an accept list with its address).
    pub fn set_filter(&mut self) -> Result<Vec<Vec<u8>>, StackError> {
        let set = self
            .stack
            .proxy_config(proxy::set_filter_type(FilterType::Accept))?;
        let add = self
            .stack
            .proxy_config(proxy::add_addresses(&[self.stack.address]))?;
        Ok(self.writes(MessageType::Configuration, vec![set, add]))
    }

    fn next_tid(&mut self) -> u8 {
        self.tid = self.tid.wrapping_add(1);
        self.tid
    }

    /// The model messages a light command becomes: on/off, lightness from
    /// brightness (1–254 → 0–65535), CTL from a colour temperature.
    pub fn messages_for(&mut self, command: &LightCommand, current_lightness: u16) -> Vec<Message> {
        let transition = command
            .transition_ms
            .map(|ms| Transition::from_ms(u64::from(ms)));
        let mut out = Vec::new();
        let lightness = command
            .brightness
            .map(|b| ((u32::from(b) * 65_535 + 127) / 254) as u16); // rounded both ways
        if let Some(mireds) = command.color_temp.filter(|m| *m > 0) {
            let temperature = (1_000_000 / u32::from(mireds)).clamp(800, 20_000) as u16;
            let tid = self.next_tid();
            out.push(Message::CtlSet {
                lightness: lightness.unwrap_or(current_lightness),
                temperature,
                delta_uv: 0,
                tid,
                transition,
                ack: true,
            });
        } else if let Some(lightness) = lightness {
            let tid = self.next_tid();
            out.push(Message::LightnessSet {
                lightness,
                tid,
                transition,
                ack: true,
            });
        }
        if let Some(on) = command.on {
            let tid = self.next_tid();
            out.push(Message::OnOffSet {
                on,
                tid,
                transition,
                ack: true,
            });
        }
        out
    }

    /// Sends model messages to `node` under the application key.
    pub fn send(&mut self, node: u16, messages: &[Message]) -> Result<Vec<Vec<u8>>, StackError> {
        let mut pdus = Vec::new();
        for message in messages {
            pdus.extend(
                self.stack
                    .send(node, KeyUse::App(self.app_index), &message.encode())?,
            );
        }
        Ok(self.writes(MessageType::Network, pdus))
    }

    /// A notification from the node's Data Out: what it means, and writes
    /// to answer with (the next provisioning step, acknowledgments).
    pub fn handle_notification(
        &mut self,
        pdu: &[u8],
        now_ms: u64,
    ) -> (Vec<ClientEvent>, Vec<Vec<u8>>) {
        let Ok(Some((kind, message))) = self.reassembler.handle(pdu) else {
            return (Vec::new(), Vec::new());
        };
        match kind {
            MessageType::Provisioning => self.provisioning_step(&message),
            MessageType::Network => {
                let received = self.stack.receive(&message, now_ms);
                let writes = self.writes(MessageType::Network, received.send);
                let events = received
                    .delivered
                    .and_then(|d| Message::decode(&d.payload).ok().map(|m| (d.src, m)))
                    .map(|(src, message)| ClientEvent::Status { src, message })
                    .into_iter()
                    .collect();
                (events, writes)
            }
            MessageType::Configuration => {
                let events = match self.stack.open_proxy_config(&message).as_deref() {
                    Some([0x03, kind, hi, lo]) => vec![ClientEvent::FilterStatus {
                        accept: *kind == 0,
                        addresses: u16::from_be_bytes([*hi, *lo]),
                    }],
                    _ => Vec::new(),
                };
                (events, Vec::new())
            }
            MessageType::Beacon => (Vec::new(), Vec::new()),
        }
    }

    fn provisioning_step(&mut self, pdu: &[u8]) -> (Vec<ClientEvent>, Vec<Vec<u8>>) {
        let Some((provisioner, address)) = self.provisioning.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let address = *address;
        match provisioner.handle(pdu) {
            Ok(Step::Send(pdus)) => (Vec::new(), self.writes(MessageType::Provisioning, pdus)),
            Ok(Step::Complete { device_key }) => {
                self.provisioning = None;
                self.stack.add_device_key(address, device_key);
                (
                    vec![ClientEvent::Provisioned {
                        address,
                        device_key,
                    }],
                    Vec::new(),
                )
            }
            Err(error) => {
                self.provisioning = None;
                (vec![ClientEvent::ProvisioningFailed(error)], Vec::new())
            }
        }
    }
}
