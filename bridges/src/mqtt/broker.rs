//! The embedded rumqttd broker, reachable only by its front and the
//! gateway.
//!
//! It listens on a loopback port of its own and accepts one username with a
//! secret the gateway draws at start, so a local process that finds the
//! port still cannot connect; every outside client goes through
//! [`super::front`]. rumqttd runs its router and listener on threads of its
//! own (that is how it is built), which live as long as the process.

use std::net::SocketAddr;
use std::time::Duration;

use itc_chain::crypto::Hash;

/// The user the front and the gateway connect to the broker as.
pub const INTERNAL_USER: &str = "itc-internal";

/// Largest message the broker takes (device reports, discovery configs and
/// device lists fit with room to spare).
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// A running broker.
#[derive(Clone, Debug)]
pub struct Broker {
    pub addr: SocketAddr,
    secret: String,
}

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("could not find a loopback port for the broker: {0}")]
    Port(std::io::Error),
    #[error("the broker did not start: {0}")]
    Start(String),
    #[error("the broker did not listen on {addr} within {waited:?}")]
    NotListening { addr: SocketAddr, waited: Duration },
}

impl Broker {
    /// Starts a broker for up to `max_connections` clients, accepting
    /// [`INTERNAL_USER`] with `secret` only.
    pub async fn start(secret: String, max_connections: usize) -> Result<Broker, BrokerError> {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Port)?;
            probe.local_addr().map_err(BrokerError::Port)?
        };
        let expected = Hash::digest(secret.as_bytes());
        let mut connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        connections.set_auth_handler(move |_client: String, user: String, pass: String| {
            // Digests are compared, so the comparison leaks nothing about
            // the secret.
            let ok = user == INTERNAL_USER && Hash::digest(pass.as_bytes()) == expected;
            async move { ok }
        });
        let server = rumqttd::ServerSettings {
            name: "itc-internal".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections,
        };
        let config = rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: max_connections + 16,
                // rumqttd keeps recent messages in a commit log of
                // segments; a subscriber that falls further behind than
                // the log loses messages (tried: 2 × 256 KiB lost nine
                // reports in ten under load).
                max_outgoing_packet_count: 200,
                max_segment_size: 16 * 1024 * 1024,
                max_segment_count: 4,
                ..Default::default()
            },
            v4: Some([("internal".to_string(), server)].into_iter().collect()),
            ..Default::default()
        };
        let (started, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // `start` blocks for the broker's life; report only failure.
                if let Err(e) = broker.start() {
                    let _ = started.send(e.to_string());
                }
            })
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let waited = Duration::from_secs(5);
        let probe_secret = secret.clone();
        let listening = async move {
            loop {
                if probe(addr, &probe_secret).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            failed = result => if let Ok(reason) = failed {
                return Err(BrokerError::Start(reason));
            },
            done = tokio::time::timeout(waited, listening) => if done.is_err() {
                return Err(BrokerError::NotListening { addr, waited });
            },
        }
        Ok(Broker { addr, secret })
    }

    /// The internal login.
    pub fn login(&self) -> (String, String) {
        (INTERNAL_USER.into(), self.secret.clone())
    }
}

/// Logs in to the broker once: it is up and takes the internal login. (A
/// bare TCP connect would do, but the broker logs every connection that
/// sends no CONNECT as an error.)
async fn probe(addr: SocketAddr, secret: &str) -> std::io::Result<()> {
    use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut connect = Connect::new("itc-probe");
    connect.keep_alive = 120;
    connect.set_login(INTERNAL_USER, secret);
    let mut out = bytes::BytesMut::new();
    connect
        .write(&mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.write_all(&out).await?;
    let mut buf = bytes::BytesMut::with_capacity(64);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match rumqttc::mqttbytes::v4::read(&mut buf, 64) {
            Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => break,
            Ok(_) => return Err(std::io::Error::other("the broker refused the probe")),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => continue,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
    // Held open for the process's life, pinging: the broker logs a
    // disconnect of an internal link as an error.
    tokio::spawn(async move {
        let (mut rx, mut tx) = stream.into_split();
        let pings = async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                // PINGREQ.
                if tx.write_all(&[0xC0, 0x00]).await.is_err() {
                    return;
                }
            }
        };
        let drain = async move {
            let mut sink = [0u8; 64];
            while rx.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        };
        tokio::select! { () = pings => {}, () = drain => {} }
    });
    Ok(())
}
