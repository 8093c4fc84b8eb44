//! The MQTT bridge inside the gateway: Wi-Fi bulbs onboarded with setup
//! codes, their signed reports, commands to them, and what integrations
//! see (Zigbee2MQTT topics and Home Assistant discovery for every light of
//! every bridge).
//!
//! The broker and its front are `itc_bridges::mqtt`; here is what the
//! gateway decides:
//!
//! - **Logins** ([`FrontAuth`]): setup codes, devices and integrations from
//!   `crate::mqtt::logins`; nothing else gets in.
//! - **Onboarding**: a device with a setup code gets a fresh challenge; its
//!   signed hello is checked, the code is spent, and the device is
//!   registered on chain through the same path as other bulbs (one nonce
//!   sequence for the gateway's transactions), owned by the code's owner
//!   through their adoption consent. Once that commits, it gets its
//!   permanent login. Every refusal is answered on its response topic and
//!   registers nothing.
//! - **Reports** are accepted only with the device's signature (its key on
//!   chain) and a growing sequence number; then the gateway publishes the
//!   state on the Zigbee2MQTT topic.
//! - **Commands** from integrations arrive routed under their name; they
//!   run through the same authorisation as REST calls, as the account the
//!   integration acts for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use itc_bridges::light::{LightCommand, LightState};
use itc_bridges::mqtt::broker::Broker;
use itc_bridges::mqtt::device::Onboarded;
use itc_bridges::mqtt::front::{self, Authenticator};
use itc_bridges::mqtt::signed::{Challenge, DagReply, Hello, Report};
use itc_bridges::mqtt::topics::{Acl, Role, Topics};
use itc_bridges::mqtt::z2m::{self, SetMessage};
use itc_chain::crypto::{AccountId, PublicKey, Signature};
use itc_chain::ledger::StateRead;
use itc_chain::state::{StateKey, StateValue};
use itc_chain::types::{DeviceId, DeviceKind};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::bridge::{BridgeEvent, BridgeLight};
use super::{now_ms, Service};
use crate::mqtt::logins::{self, Login, SetupGrant};

/// The bridge's name and id prefix.
pub const MQTT: &str = "mqtt";

/// How long onboarding waits for the registration to commit.
const REGISTRATION_WAIT: Duration = Duration::from_secs(15);

/// How the MQTT side is set up.
pub struct MqttConfig {
    /// Where devices and integrations connect (the front).
    pub listener: TcpListener,
    pub base_topic: String,
    /// TLS on the front, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What the MQTT side tells the service.
#[derive(Clone, Debug, PartialEq)]
pub enum MqttInbound {
    /// The gateway's own connection to the broker is (again) up.
    Up,
    Connected(Role),
    Disconnected(Role),
    Hello {
        client: String,
        payload: Vec<u8>,
    },
    Integration {
        name: String,
        topic: String,
        payload: Vec<u8>,
    },
    /// A device's DAG transaction (empty: it asks for parents).
    Dag {
        device: String,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
struct MqttDevice {
    key: PublicKey,
    model: String,
    state: LightState,
    last_seen_ms: u64,
    last_seq: Option<u64>,
    online: bool,
    /// Until it is on chain: its registration proof and first owner.
    pending: Option<(Signature, SetupGrant)>,
}

/// A device being onboarded, by the client id it connected with.
#[derive(Clone, Debug, Default)]
struct Onboarding {
    /// The connection it belongs to (a later one with the same client id
    /// replaces it; the earlier one's end must not remove it).
    session: u64,
    code: String,
    challenge: Option<String>,
    /// A hello is being handled; repeats are ignored.
    busy: bool,
}

/// The gateway's MQTT bridge.
pub struct MqttBridge {
    client: AsyncClient,
    events: tokio::sync::Mutex<Option<(EventLoop, mpsc::UnboundedReceiver<MqttInbound>)>>,
    topics: Topics,
    devices: Mutex<HashMap<DeviceId, MqttDevice>>,
    onboarding: Arc<Mutex<HashMap<String, Onboarding>>>,
    pub front: SocketAddr,
    /// Reports accepted and refused since start.
    reports: [std::sync::atomic::AtomicU64; 2],
    /// What the gateway publishes, in order, drained by one task: the
    /// service never waits on the broker, and nothing is dropped.
    outbound: mpsc::UnboundedSender<(String, bool, Vec<u8>)>,
    list_dirty: std::sync::atomic::AtomicBool,
    /// Sequence numbers accepted since they were last saved.
    unsaved_seqs: Mutex<HashMap<DeviceId, u64>>,
}

/// Logins for the front.
pub struct FrontAuth {
    pool: SqlitePool,
    sessions: std::sync::atomic::AtomicU64,
    onboarding: Arc<Mutex<HashMap<String, Onboarding>>>,
    to_service: mpsc::UnboundedSender<MqttInbound>,
}

impl Authenticator for FrontAuth {
    async fn authenticate(&self, client_id: &str, username: &str, password: &str) -> Option<Role> {
        match logins::authenticate(&self.pool, username, password).await {
            Ok(Some(Login::Device { device })) => Some(Role::Device { device }),
            Ok(Some(Login::Integration { name, .. })) => Some(Role::Integration { name }),
            Ok(Some(Login::Setup)) => {
                let session = self
                    .sessions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut onboarding) = self.onboarding.lock() {
                    onboarding.insert(
                        client_id.to_string(),
                        Onboarding {
                            session,
                            code: password.trim().to_string(),
                            challenge: None,
                            busy: false,
                        },
                    );
                }
                Some(Role::Provisioning {
                    client: client_id.into(),
                    session,
                })
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "checking an MQTT login");
                None
            }
        }
    }

    fn connected(&self, role: &Role) {
        let _ = self.to_service.send(MqttInbound::Connected(role.clone()));
    }

    fn disconnected(&self, role: &Role) {
        let _ = self
            .to_service
            .send(MqttInbound::Disconnected(role.clone()));
    }

    fn refused(&self, peer: &str, reason: &str) {
        tracing::info!(peer, reason, "MQTT client refused");
    }
}

fn mqtt_device(device: &DeviceId) -> bool {
    device.as_str().starts_with("mqtt:")
}

impl MqttBridge {
    /// Starts the broker and its front, and connects the gateway to it.
    /// `known` are the MQTT devices this gateway registered on chain (key,
    /// model).
    pub async fn start(
        config: MqttConfig,
        pool: SqlitePool,
        secret: String,
        known: Vec<(DeviceId, PublicKey, String)>,
    ) -> Result<MqttBridge, String> {
        let sequences = logins::report_sequences(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let topics = Topics::new(&config.base_topic)
            .ok_or_else(|| format!("{:?} is not a usable base topic", config.base_topic))?;
        let broker = Broker::start(secret, 10_000)
            .await
            .map_err(|e| e.to_string())?;
        let front = config.listener.local_addr().map_err(|e| e.to_string())?;
        let onboarding = Arc::new(Mutex::new(HashMap::new()));
        let (to_service, from_front) = mpsc::unbounded_channel();
        let auth = FrontAuth {
            pool,
            sessions: std::sync::atomic::AtomicU64::new(0),
            onboarding: onboarding.clone(),
            to_service,
        };
        tokio::spawn(front::serve(
            config.listener,
            config.tls,
            broker.clone(),
            Acl::new(topics.clone()),
            Arc::new(auth),
        ));
        let (user, pass) = broker.login();
        let mut options = MqttOptions::new(
            "itc-gateway",
            broker.addr.ip().to_string(),
            broker.addr.port(),
        );
        options.set_credentials(user, pass);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(
            itc_bridges::mqtt::broker::MAX_PAYLOAD,
            itc_bridges::mqtt::broker::MAX_PAYLOAD,
        );
        options.set_clean_session(true);
        let (client, eventloop) = AsyncClient::new(options, 1_024);
        let (outbound, mut queued) = mpsc::unbounded_channel::<(String, bool, Vec<u8>)>();
        let sender = client.clone();
        tokio::spawn(async move {
            while let Some((topic, retain, payload)) = queued.recv().await {
                if sender
                    .publish(topic, QoS::AtLeastOnce, retain, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let now = now_ms();
        let devices = known
            .into_iter()
            .map(|(id, key, model)| {
                let device = MqttDevice {
                    key,
                    model,
                    state: LightState::default(),
                    last_seen_ms: now,
                    last_seq: sequences.get(id.as_str()).copied(),
                    online: false,
                    pending: None,
                };
                (id, device)
            })
            .collect();
        Ok(MqttBridge {
            client,
            events: tokio::sync::Mutex::new(Some((eventloop, from_front))),
            topics,
            devices: Mutex::new(devices),
            onboarding,
            front,
            reports: Default::default(),
            outbound,
            list_dirty: Default::default(),
            unsaved_seqs: Default::default(),
        })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    fn light_of(id: &DeviceId, device: &MqttDevice) -> BridgeLight {
        BridgeLight {
            id: id.clone(),
            bridge: MQTT,
            kind: DeviceKind::Mqtt,
            model: device.model.clone(),
            link_quality: if device.online { 255 } else { 0 },
            last_seen_ms: device.last_seen_ms,
            state: device.state,
            target: device.state,
        }
    }

    pub fn lights(&self) -> Vec<BridgeLight> {
        self.devices
            .lock()
            .map(|d| d.iter().map(|(id, dev)| Self::light_of(id, dev)).collect())
            .unwrap_or_default()
    }

    pub fn light(&self, id: &DeviceId) -> Option<BridgeLight> {
        let devices = self.devices.lock().ok()?;
        devices.get(id).map(|dev| Self::light_of(id, dev))
    }

    pub fn device_key(&self, id: &DeviceId) -> Option<PublicKey> {
        self.devices.lock().ok()?.get(id).map(|d| d.key)
    }

    /// The proof the device signed at onboarding (the gateway cannot sign
    /// for an MQTT device).
    pub fn registration_proof(&self, id: &DeviceId) -> Option<(PublicKey, Signature)> {
        let devices = self.devices.lock().ok()?;
        let device = devices.get(id)?;
        device
            .pending
            .as_ref()
            .map(|(proof, _)| (device.key, *proof))
    }

    /// Who the device's setup code was made for.
    pub fn adoption(&self, id: &DeviceId) -> Option<(AccountId, Signature)> {
        let devices = self.devices.lock().ok()?;
        let (_, grant) = devices.get(id)?.pending.as_ref()?;
        Some((grant.owner, grant.consent))
    }

    /// Sends a command to the device's command topic.
    pub async fn send(&self, id: &DeviceId, command: &LightCommand) -> Result<LightState, String> {
        let current = self
            .devices
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .get(id)
            .map(|d| d.state)
            .ok_or_else(|| format!("no MQTT light {id}"))?;
        let payload = set_payload(command);
        self.client
            .publish(
                self.topics.device_command(id.as_str()),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(command.target(&current))
    }

    /// Publishes (QoS 1), in order, without waiting for the broker.
    pub fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) {
        let _ = self.outbound.send((topic, retain, payload));
    }

    fn list_changed(&self) {
        self.list_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs the gateway's connection to the broker; reports, hellos and
    /// integration messages become events.
    pub async fn pump(&self, events: mpsc::Sender<BridgeEvent>) {
        let Some((mut eventloop, mut from_front)) = self.events.lock().await.take() else {
            return;
        };
        loop {
            let event = tokio::select! {
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Reports come at QoS 0 from the broker (a loopback
                        // hop; a lost report is superseded by the next one,
                        // and QoS 1 here costs a round trip per report,
                        // which capped acceptance near 2,800/s); hellos and
                        // commands at QoS 1.
                        let _ = self
                            .client
                            .try_subscribe(self.topics.report_filter(), QoS::AtMostOnce);
                        for filter in [
                            self.topics.hello_filter(),
                            self.topics.integration_filter(),
                            self.topics.dag_filter(),
                        ] {
                            let _ = self.client.try_subscribe(filter, QoS::AtLeastOnce);
                        }
                        Some(BridgeEvent::Mqtt(MqttInbound::Up))
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => self.classify(publish),
                    Ok(_) => None,
                    Err(error) => {
                        tracing::warn!(%error, "the gateway's broker connection");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        None
                    }
                },
                Some(from_front) = from_front.recv() => Some(BridgeEvent::Mqtt(from_front)),
            };
            if let Some(event) = event {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    }

    fn classify(&self, publish: rumqttc::Publish) -> Option<BridgeEvent> {
        let topics = &self.topics;
        if let Some(device) = topics.parse_report(&publish.topic) {
            return self.report(device, &publish.payload);
        }
        let inbound = if let Some(client) = topics.parse_hello(&publish.topic) {
            MqttInbound::Hello {
                client: client.into(),
                payload: publish.payload.to_vec(),
            }
        } else if let Some(device) = topics.parse_dag(&publish.topic) {
            MqttInbound::Dag {
                device: device.into(),
                payload: publish.payload.to_vec(),
            }
        } else if let Some((name, topic)) = topics.parse_integration(&publish.topic) {
            MqttInbound::Integration {
                name: name.into(),
                topic: topic.into(),
                payload: publish.payload.to_vec(),
            }
        } else {
            return None;
        };
        Some(BridgeEvent::Mqtt(inbound))
    }

    /// Checks a device's signed report and takes its state.
    fn report(&self, device: &str, payload: &[u8]) -> Option<BridgeEvent> {
        let id = DeviceId::new(device).ok()?;
        let known = self
            .devices
            .lock()
            .ok()?
            .get(&id)
            .map(|d| (d.key, d.last_seq));
        let Some((key, last_seq)) = known else {
            tracing::info!(device, "a report from an unknown device, dropped");
            return None;
        };
        // The signature is checked outside the lock (REST reads take it
        // too); only this task takes reports, so nothing moves meanwhile.
        let checked = Report::parse(payload)
            .and_then(|report| Ok((report.seq, report.verify(&id, &key, last_seq)?)));
        let outcome = checked.map(|(seq, json)| (seq, z2m::parse_state(&json)));
        let counter = usize::from(!matches!(outcome, Ok((_, Ok(_)))));
        self.reports[counter].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Ok((seq, Ok(state))) => {
                let mut devices = self.devices.lock().ok()?;
                let known = devices.get_mut(&id)?;
                known.last_seq = Some(seq);
                if let Ok(mut unsaved) = self.unsaved_seqs.lock() {
                    unsaved.insert(id.clone(), seq);
                }
                known.state = state;
                known.last_seen_ms = now_ms();
                known.online = true;
                Some(BridgeEvent::State { device: id, state })
            }
            Ok((_, Err(error))) => {
                tracing::info!(device, %error, "a report with a bad state");
                None
            }
            Err(error) => {
                tracing::info!(device, %error, "a report refused");
                None
            }
        }
    }
}

/// A command as a Zigbee2MQTT `set` message.
fn set_payload(command: &LightCommand) -> Vec<u8> {
    let mut out = serde_json::Map::new();
    if let Some(on) = command.on {
        out.insert("state".into(), if on { "ON" } else { "OFF" }.into());
    }
    if let Some(b) = command.brightness {
        out.insert("brightness".into(), b.into());
    }
    if let Some(m) = command.color_temp {
        out.insert("color_temp".into(), m.into());
    }
    if let Some([x, y]) = command.xy {
        out.insert("color".into(), serde_json::json!({ "x": x, "y": y }));
    }
    if let (Some(hue), Some(saturation)) = (command.hue, command.saturation) {
        out.insert(
            "color".into(),
            serde_json::json!({ "hue": hue, "saturation": saturation }),
        );
    }
    if let Some(ms) = command.transition_ms {
        out.insert("transition".into(), (f64::from(ms) / 1000.0).into());
    }
    serde_json::Value::Object(out).to_string().into_bytes()
}

impl Service {
    fn mqtt(&self) -> Option<&MqttBridge> {
        self.inner.bridges.iter().find_map(|b| b.as_mqtt())
    }

    /// Where MQTT devices and integrations connect, if MQTT is on.
    pub fn mqtt_front(&self) -> Option<SocketAddr> {
        self.mqtt().map(|m| m.front)
    }

    /// Device reports accepted and refused since start, if MQTT is on.
    pub fn mqtt_reports(&self) -> Option<(u64, u64)> {
        let mqtt = self.mqtt()?;
        let load = |i: usize| mqtt.reports[i].load(std::sync::atomic::Ordering::Relaxed);
        Some((load(0), load(1)))
    }

    /// The MQTT devices this gateway registered, from chain state.
    pub(super) fn mqtt_devices_on_chain(
        view: &crate::node::CommittedView,
        gateway: &PublicKey,
    ) -> Vec<(DeviceId, PublicKey, String)> {
        let Ok(first) = DeviceId::new("mqtt:") else {
            return Vec::new();
        };
        view.entries
            .range_from(&StateKey::Device { device: first })
            .map_while(|(key, value)| match (key, value) {
                (StateKey::Device { device }, StateValue::Device(record))
                    if mqtt_device(device) =>
                {
                    Some((device, record))
                }
                _ => None,
            })
            .filter(|(_, record)| record.registrar == *gateway)
            .map(|(device, record)| (device.clone(), record.key, record.model.to_string()))
            .collect()
    }

    /// Publishes a light's state where integrations read it.
    pub(super) fn mqtt_state(&self, device: &DeviceId, state: &LightState) {
        if let Some(mqtt) = self.mqtt() {
            let payload = z2m::state_json(state).to_string().into_bytes();
            mqtt.publish(mqtt.topics().state(device.as_str()), true, payload);
        }
    }

    /// Publishes the bridge state, the device list, and every light's
    /// discovery config, state and availability.
    pub(super) fn mqtt_announce(&self) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        mqtt.publish(
            mqtt.topics().bridge("state"),
            true,
            br#"{"state":"online"}"#.to_vec(),
        );
        for light in self.all_lights() {
            self.mqtt_announce_light(&light);
        }
        mqtt.list_changed();
    }

    /// Publishes one light's discovery config, availability and state, and
    /// marks the device list for republishing.
    pub(super) fn mqtt_announce_light(&self, light: &BridgeLight) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        let topics = mqtt.topics();
        let info = z2m::LightInfo {
            device: light.id.as_str(),
            model: &light.model,
            bridge: light.bridge,
        };
        let (topic, config) = z2m::discovery(topics, &self.public().to_string(), &info);
        mqtt.publish(topic, true, config.to_string().into_bytes());
        let online = light.bridge != MQTT || light.link_quality > 0;
        mqtt.publish(
            topics.availability(light.id.as_str()),
            true,
            availability(online),
        );
        self.mqtt_state(&light.id, &light.state);
        mqtt.list_changed();
    }

    /// Once a second: saves the report sequence numbers accepted since the
    /// last time, and republishes `bridge/devices` if it changed (it lists
    /// every light, so not once per join).
    pub(super) async fn mqtt_housekeeping(self) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // Sequence numbers are saved once a second, not per report
            // (thousands a second): a gateway killed mid-second may take a
            // replay of that last second's reports after it restarts.
            let unsaved: Vec<(String, u64)> = mqtt
                .unsaved_seqs
                .lock()
                .map(|mut u| u.drain().map(|(d, s)| (d.to_string(), s)).collect())
                .unwrap_or_default();
            if !unsaved.is_empty() {
                if let Err(error) =
                    logins::save_report_sequences(self.inner.node.store.pool(), &unsaved).await
                {
                    tracing::warn!(%error, "saving MQTT report sequence numbers");
                }
            }
            if !mqtt
                .list_dirty
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                continue;
            }
            let list: Vec<serde_json::Value> = self
                .all_lights()
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "friendly_name": l.id.as_str(),
                        "ieee_address": l.id.as_str(),
                        "type": "Router",
                        "supported": true,
                        "definition": { "model": l.model, "vendor": format!("ITC ({})", l.bridge) },
                    })
                })
                .collect();
            mqtt.publish(
                mqtt.topics().bridge("devices"),
                true,
                serde_json::Value::Array(list).to_string().into_bytes(),
            );
        }
    }

    /// Acts on what the MQTT side reported.
    pub(super) fn mqtt_event(&self, inbound: MqttInbound) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        match inbound {
            MqttInbound::Up => self.mqtt_announce(),
            MqttInbound::Connected(Role::Provisioning { client, session }) => {
                let Ok(challenge) = logins::new_secret(&self.inner.rng) else {
                    return;
                };
                let current = mqtt.onboarding.lock().is_ok_and(|mut o| {
                    o.get_mut(&client)
                        .filter(|o| o.session == session)
                        .map(|o| o.challenge = Some(challenge.clone()))
                        .is_some()
                });
                if !current {
                    // A newer connection with this client id took over.
                    return;
                }
                let chain_id = self.view(|v| v.chain_id.to_string()).unwrap_or_default();
                let message = Challenge {
                    challenge,
                    chain_id,
                    gateway: self.public().to_string(),
                };
                let payload = serde_json::to_vec(&message).unwrap_or_default();
                mqtt.publish(mqtt.topics().provision(&client, "challenge"), true, payload);
            }
            MqttInbound::Disconnected(Role::Provisioning { client, session }) => {
                let current = mqtt.onboarding.lock().is_ok_and(|mut o| {
                    let current = o.get(&client).is_some_and(|o| o.session == session);
                    if current {
                        o.remove(&client);
                    }
                    current
                });
                if current {
                    // Clears the retained challenge.
                    mqtt.publish(
                        mqtt.topics().provision(&client, "challenge"),
                        true,
                        Vec::new(),
                    );
                }
            }
            MqttInbound::Connected(Role::Device { device }) => self.mqtt_online(&device, true),
            MqttInbound::Disconnected(Role::Device { device }) => self.mqtt_online(&device, false),
            MqttInbound::Connected(_) | MqttInbound::Disconnected(_) => {}
            MqttInbound::Hello { client, payload } => {
                tokio::spawn(self.clone().onboard(client, payload));
            }
            MqttInbound::Integration {
                name,
                topic,
                payload,
            } => {
                tokio::spawn(self.clone().integration(name, topic, payload));
            }
            MqttInbound::Dag { device, payload } => {
                tokio::spawn(self.clone().mqtt_dag(device, payload));
            }
        }
    }

    /// Submits a device's DAG transaction on its behalf (only its own:
    /// the issuer must be the device whose login published it), and
    /// answers with the outcome and parents for the next one.
    async fn mqtt_dag(self, device: String, payload: Vec<u8>) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        let mut reply = DagReply::default();
        if !payload.is_empty() {
            let outcome = match itc_chain::codec::decode::<itc_chain::dag::DagTx>(&payload) {
                Ok(tx) if tx.body.issuer.as_str() == device => {
                    match self.inner.dag.submit(vec![tx]).await {
                        Ok(mut results) => results
                            .pop()
                            .map(|r| r.map_err(|e| e.to_string()))
                            .unwrap_or_else(|| Err("no answer".into())),
                        Err(error) => Err(error.to_string()),
                    }
                }
                Ok(tx) => Err(format!(
                    "{device} may submit only its own transactions, not {}'s",
                    tx.body.issuer
                )),
                Err(error) => Err(format!("not a DAG transaction: {error}")),
            };
            match outcome {
                Ok(id) => reply.id = Some(id.to_string()),
                Err(error) => {
                    tracing::info!(%device, %error, "a device's DAG transaction refused");
                    reply.error = Some(error);
                }
            }
        }
        if let Ok(parents) = self.inner.dag.parents().await {
            reply.parents = parents.iter().map(ToString::to_string).collect();
        }
        let payload = serde_json::to_vec(&reply).unwrap_or_default();
        mqtt.publish(mqtt.topics().device_dag_reply(&device), false, payload);
    }

    fn mqtt_online(&self, device: &str, online: bool) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        if let (Ok(id), Ok(mut devices)) = (DeviceId::new(device), mqtt.devices.lock()) {
            if let Some(d) = devices.get_mut(&id) {
                d.online = online;
            }
        }
        mqtt.publish(
            mqtt.topics().availability(device),
            true,
            availability(online),
        );
    }

    /// Onboards a device from its hello; answers on its response topic.
    async fn onboard(self, client: String, payload: Vec<u8>) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        // One hello per session at a time, and only for the current
        // challenge: a repeat, or an answer to a challenge this session has
        // replaced, gets no second (and contradictory) answer.
        let Ok(hello) = Hello::parse(&payload) else {
            let answer = Onboarded::Refused {
                reason: "the hello is not the expected JSON".into(),
            };
            let payload = serde_json::to_vec(&answer).unwrap_or_default();
            mqtt.publish(mqtt.topics().provision(&client, "response"), false, payload);
            return;
        };
        let started = mqtt
            .onboarding
            .lock()
            .is_ok_and(|mut o| match o.get_mut(&client) {
                Some(session)
                    if !session.busy && session.challenge.as_ref() == Some(&hello.challenge) =>
                {
                    session.busy = true;
                    true
                }
                _ => false,
            });
        if !started {
            tracing::debug!(client, "a repeated or stale hello, ignored");
            return;
        }
        let answer = match self.try_onboard(mqtt, &client, &hello).await {
            Ok((device, password)) => {
                tracing::info!(%device, "MQTT device onboarded");
                Onboarded::Ok {
                    username: device.to_string(),
                    device: device.to_string(),
                    password,
                }
            }
            Err(reason) => {
                tracing::info!(client, reason, "MQTT onboarding refused");
                Onboarded::Refused { reason }
            }
        };
        let payload = serde_json::to_vec(&answer).unwrap_or_default();
        mqtt.publish(mqtt.topics().provision(&client, "response"), false, payload);
        if let Ok(mut onboarding) = mqtt.onboarding.lock() {
            if let Some(session) = onboarding.get_mut(&client) {
                session.busy = false;
            }
        }
    }

    async fn try_onboard(
        &self,
        mqtt: &MqttBridge,
        client: &str,
        hello: &Hello,
    ) -> Result<(DeviceId, String), String> {
        let pending = mqtt
            .onboarding
            .lock()
            .ok()
            .and_then(|o| o.get(client).cloned())
            .ok_or("no onboarding session for this client; connect with the setup code first")?;
        let challenge = pending
            .challenge
            .ok_or("no challenge was issued yet; wait for it on the challenge topic")?;
        let (chain_id, gateway) = (
            self.view(|v| v.chain_id.clone())
                .map_err(|e| e.to_string())?,
            self.public(),
        );
        let registration = hello
            .verify(&challenge, &chain_id, &gateway)
            .map_err(|e| e.to_string())?;
        let device = registration.device.clone();
        if !mqtt_device(&device) {
            return Err(format!("{device}: MQTT device ids start with \"mqtt:\""));
        }
        let taken = self
            .view(|v| v.entries.device(&device).is_some())
            .map_err(|e| e.to_string())?;
        if taken || mqtt.device_key(&device).is_some() {
            return Err(format!("{device} is already registered"));
        }
        let grant = logins::take_setup_code(self.inner.node.store.pool(), &pending.code, now_ms())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let owner = grant.owner;
        if let Ok(mut devices) = mqtt.devices.lock() {
            devices.insert(
                device.clone(),
                MqttDevice {
                    key: registration.device_key,
                    model: registration.model.to_string(),
                    state: LightState::default(),
                    last_seen_ms: now_ms(),
                    last_seq: None,
                    online: false,
                    pending: Some((registration.proof, grant)),
                },
            );
        }
        self.inner.registration.notify_one();
        let deadline = tokio::time::Instant::now() + REGISTRATION_WAIT;
        let mut commits = self.inner.node.commits();
        loop {
            let registered = self
                .view(|v| v.entries.device(&device).map(|d| d.owner))
                .map_err(|e| e.to_string())?;
            if let Some(current) = registered {
                if let Ok(mut devices) = mqtt.devices.lock() {
                    if let Some(d) = devices.get_mut(&device) {
                        d.pending = None;
                    }
                }
                if current != Some(owner) {
                    return Err(format!(
                        "{device} was registered, but not to the code's owner"
                    ));
                }
                break;
            }
            if tokio::time::timeout_at(deadline, commits.recv())
                .await
                .is_err()
            {
                if let Ok(mut devices) = mqtt.devices.lock() {
                    devices.remove(&device);
                }
                return Err("the registration did not commit in time".into());
            }
        }
        let password = logins::add_device(
            self.inner.node.store.pool(),
            &self.inner.rng,
            device.as_str(),
            now_ms(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let _ = self.inner.events.send(itc_web::Event::DeviceJoined {
            device: device.to_string(),
            bridge: MQTT.into(),
        });
        if let Some(light) = mqtt.light(&device) {
            self.mqtt_announce_light(&light);
        }
        Ok((device, password))
    }

    /// A command or request from an integration, as its account.
    async fn integration(self, name: String, topic: String, payload: Vec<u8>) {
        let Some(mqtt) = self.mqtt() else {
            return;
        };
        let account = match logins::integration_account(self.inner.node.store.pool(), &name).await {
            Ok(Some(account)) => account,
            _ => {
                tracing::warn!(name, "a message from an unknown integration");
                return;
            }
        };
        if let Some(friendly) = mqtt.topics().parse_set(&topic) {
            let result = self.integration_set(account, friendly, &payload).await;
            if let Err(error) = result {
                tracing::info!(name, device = friendly, %error, "an integration's command refused");
                self.inner.metrics.refused_commands.inc();
            }
            return;
        }
        if topic == mqtt.topics().bridge("request/permit_join") {
            let seconds = serde_json::from_slice::<serde_json::Value>(&payload)
                .ok()
                .map(|v| match (&v["value"], &v["time"]) {
                    (serde_json::Value::Bool(false), _) => 0,
                    (_, serde_json::Value::Number(n)) => n.as_u64().unwrap_or(254),
                    _ => 254,
                })
                .unwrap_or(254)
                .min(254) as u32;
            let answer = match itc_web::Gateway::permit_join(&self, account, seconds).await {
                Ok(_) => serde_json::json!({
                    "data": { "value": seconds > 0, "time": seconds },
                    "status": "ok",
                }),
                Err(error) => {
                    serde_json::json!({ "data": {}, "status": "error", "error": error.to_string() })
                }
            };
            mqtt.publish(
                mqtt.topics().bridge("response/permit_join"),
                false,
                answer.to_string().into_bytes(),
            );
        }
    }

    async fn integration_set(
        &self,
        account: AccountId,
        friendly: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        let device = DeviceId::new(friendly).map_err(|e| e.to_string())?;
        let on_now = self
            .bridge_for(&device)
            .and_then(|b| b.light(&device))
            .map(|l| l.target.on)
            .unwrap_or(false);
        let command = SetMessage::parse(payload)
            .and_then(|m| m.command(on_now))
            .map_err(|e| e.to_string())?;
        itc_web::Gateway::set_light(self, account, device, command)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Makes a setup code for an administrator, who will own the device.
pub(super) async fn setup_code(
    service: &Service,
    caller: PublicKey,
    request: itc_web::NewSetupCode,
) -> itc_web::ApiResult<itc_web::SetupCode> {
    use itc_web::ApiError;
    let mqtt = service
        .mqtt()
        .ok_or_else(|| ApiError::unavailable("this gateway runs no MQTT broker"))?;
    if !service.is_admin(&caller) {
        return Err(ApiError::forbidden(
            "only this gateway's administrator may add devices to it",
        ));
    }
    let consent: Signature = request
        .adoption
        .parse()
        .map_err(|e| ApiError::bad_request("Bad adoption consent", format!("{e}")))?;
    let chain_id = service.view(|v| v.chain_id.clone())?;
    let payload = itc_chain::tx::adoption_payload(&chain_id, &caller, &service.public());
    caller
        .verify(itc_chain::crypto::Domain::Adoption, &payload, &consent)
        .map_err(|_| {
            ApiError::bad_request(
                "Bad adoption consent",
                "the signature is not the caller's consent for this gateway",
            )
        })?;
    let grant = SetupGrant {
        owner: caller,
        consent,
    };
    let (code, expires_ms) = logins::issue_setup_code(
        service.inner.node.store.pool(),
        &service.inner.rng,
        &grant,
        now_ms(),
    )
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(itc_web::SetupCode {
        code,
        expires_ms,
        broker: mqtt.front.to_string(),
        base_topic: mqtt.topics().base().to_string(),
    })
}

fn availability(online: bool) -> Vec<u8> {
    if online {
        br#"{"state":"online"}"#.to_vec()
    } else {
        br#"{"state":"offline"}"#.to_vec()
    }
}
