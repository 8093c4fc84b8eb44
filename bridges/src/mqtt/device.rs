//! A Wi-Fi bulb that speaks MQTT, for `dev` and the tests: a real rumqttc
//! client doing what firmware on an ESP module would — onboarding with a
//! setup code and a signed hello, then taking commands on its command
//! topic and publishing signed state reports. Only the lamp is simulated.

use std::time::Duration;

use itc_chain::crypto::Keypair;
use itc_chain::types::{DeviceId, Model};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};

use super::signed::{Challenge, DagReply, Hello, Report};
use super::topics::Topics;
use super::z2m::{state_json, SetMessage};
use crate::light::LightState;

/// The gateway's answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Onboarded {
    Ok {
        device: String,
        username: String,
        password: String,
    },
    Refused {
        reason: String,
    },
}

/// Why a simulated device stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("MQTT: {0}")]
    Connection(#[from] rumqttc::ConnectionError),
    #[error("MQTT client: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("the gateway did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the gateway sent something unusable: {0}")]
    Invalid(String),
}

/// A simulated MQTT bulb.
pub struct SimDevice {
    pub key: Keypair,
    pub id: DeviceId,
    pub model: Model,
    pub state: LightState,
    seq: u64,
    /// Parents the gateway suggested for the next DAG transaction.
    parents: Option<[itc_chain::crypto::Hash; 2]>,
}

/// The security level of a bulb's DAG transactions: level 1, 4 bits of
/// work (16 hashes on average), as befits a trusted household device.
pub const DAG_LEVEL: u8 = 1;

fn options(client_id: &str, addr: std::net::SocketAddr, user: &str, pass: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(user, pass);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    options
}

/// The bulb's clock, unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The next publish, or the connection's end.
async fn next_publish(events: &mut EventLoop) -> Result<rumqttc::Publish, DeviceError> {
    loop {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
            return Ok(p);
        }
    }
}

impl SimDevice {
    pub fn new(key: Keypair, id: DeviceId, model: Model) -> SimDevice {
        SimDevice {
            key,
            id,
            model,
            state: LightState::default(),
            seq: 0,
            parents: None,
        }
    }

    /// Onboards through the front at `addr` with a setup `code`: waits for
    /// the challenge, answers with a signed hello, returns the answer.
    pub async fn onboard(
        &self,
        addr: std::net::SocketAddr,
        topics: &Topics,
        client_id: &str,
        code: &str,
        wait: Duration,
    ) -> Result<Onboarded, DeviceError> {
        self.onboard_with(addr, topics, client_id, code, wait, |_| {})
            .await
    }

    /// [`SimDevice::onboard`], with `alter` applied to the hello before it
    /// is sent (tests use it to send wrong ones).
    pub async fn onboard_with(
        &self,
        addr: std::net::SocketAddr,
        topics: &Topics,
        client_id: &str,
        code: &str,
        wait: Duration,
        alter: impl Fn(&mut Hello),
    ) -> Result<Onboarded, DeviceError> {
        let (client, mut events) = AsyncClient::new(options(client_id, addr, "setup", code), 8);
        client
            .subscribe(topics.provision(client_id, "challenge"), QoS::AtLeastOnce)
            .await?;
        client
            .subscribe(topics.provision(client_id, "response"), QoS::AtLeastOnce)
            .await?;
        let exchange = async {
            loop {
                let publish = next_publish(&mut events).await?;
                if publish.payload.is_empty() {
                    continue;
                }
                if publish.topic == topics.provision(client_id, "challenge") {
                    let challenge: Challenge = serde_json::from_slice(&publish.payload)
                        .map_err(|e| DeviceError::Invalid(e.to_string()))?;
                    let mut hello = Hello::sign(&self.key, &self.id, &self.model, &challenge);
                    alter(&mut hello);
                    let payload = serde_json::to_vec(&hello)
                        .map_err(|e| DeviceError::Invalid(e.to_string()))?;
                    client
                        .publish(
                            topics.provision(client_id, "hello"),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await?;
                } else if publish.topic == topics.provision(client_id, "response") {
                    return serde_json::from_slice(&publish.payload)
                        .map_err(|e| DeviceError::Invalid(e.to_string()));
                }
            }
        };
        let answer = tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| DeviceError::Timeout(wait))?;
        let _ = client.disconnect().await;
        answer
    }

    /// A signed report of the current state.
    fn report(&mut self) -> Report {
        let now = now_ms();
        // Never below the last one, even across restarts of the lamp.
        self.seq = (self.seq + 1).max(now);
        Report::sign(&self.key, &self.id, self.seq, &state_json(&self.state))
    }

    /// Its current state as a DAG state report, signed and worked, on the
    /// parents the gateway suggested last (none yet: nothing to send).
    fn dag_report(&self) -> Option<Vec<u8>> {
        let parents = self.parents?;
        let now = now_ms();
        let data = state_json(&self.state).to_string().into_bytes();
        let body = itc_chain::dag::DagBody {
            issuer: self.id.clone(),
            kind: itc_chain::dag::DagKind::StateReport {
                data: itc_chain::codec::Bytes::new(data).ok()?,
            },
            parents: itc_chain::codec::BoundedVec::new(parents.to_vec()).ok()?,
            time_ms: now,
            level: DAG_LEVEL,
        };
        let tx = itc_chain::dag::DagTx::issue(&self.key, body, self.seq);
        Some(itc_chain::codec::encode(&tx))
    }

    /// Connects with its permanent credentials, reports its state (signed
    /// reports, and the same state as a DAG transaction once it has
    /// parents), and carries out commands until the connection ends.
    pub async fn run(
        mut self,
        addr: std::net::SocketAddr,
        topics: Topics,
        password: String,
    ) -> Result<(), DeviceError> {
        let (client, mut events) = AsyncClient::new(
            options(self.id.as_str(), addr, self.id.as_str(), &password),
            16,
        );
        let id = self.id.as_str().to_string();
        client
            .subscribe(topics.device_command(&id), QoS::AtLeastOnce)
            .await?;
        client
            .subscribe(topics.device_dag_reply(&id), QoS::AtLeastOnce)
            .await?;
        let report_topic = topics.device_report(&id);
        let dag_topic = topics.device_dag(&id);
        let first = serde_json::to_vec(&self.report()).unwrap_or_default();
        client
            .publish(&report_topic, QoS::AtLeastOnce, false, first)
            .await?;
        // Parents for the first DAG report.
        client
            .publish(&dag_topic, QoS::AtLeastOnce, false, Vec::new())
            .await?;
        let mut unsent = true;
        loop {
            let publish = next_publish(&mut events).await?;
            if publish.topic == topics.device_dag_reply(&id) {
                let Ok(reply) = serde_json::from_slice::<DagReply>(&publish.payload) else {
                    continue;
                };
                if let Some(error) = reply.error {
                    tracing::debug!(device = %id, %error, "DAG transaction refused");
                }
                let parents: Vec<itc_chain::crypto::Hash> = reply
                    .parents
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                self.parents = parents.try_into().ok();
                // The state it had before it had parents goes out now.
                if std::mem::take(&mut unsent) {
                    if let Some(tx) = self.dag_report() {
                        client
                            .publish(&dag_topic, QoS::AtLeastOnce, false, tx)
                            .await?;
                    }
                }
                continue;
            }
            let Ok(set) = SetMessage::parse(&publish.payload) else {
                continue;
            };
            let Ok(command) = set.command(self.state.on) else {
                continue;
            };
            self.state = command.target(&self.state);
            let report = serde_json::to_vec(&self.report()).unwrap_or_default();
            client
                .publish(&report_topic, QoS::AtLeastOnce, false, report)
                .await?;
            if let Some(tx) = self.dag_report() {
                client
                    .publish(&dag_topic, QoS::AtLeastOnce, false, tx)
                    .await?;
            }
        }
    }
}
