//! The MQTT front over real sockets: the embedded rumqttd broker, the
//! front, and rumqttc clients on loopback.

use std::sync::Arc;
use std::time::Duration;

use itc_bridges::mqtt::broker::Broker;
use itc_bridges::mqtt::front::{self, Authenticator};
use itc_bridges::mqtt::topics::{Acl, Role, Topics};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};

struct Users;

impl Authenticator for Users {
    async fn authenticate(&self, client_id: &str, user: &str, pass: &str) -> Option<Role> {
        match (user, pass) {
            ("mqtt:lamp-a", "secret-a") => Some(Role::Device {
                device: user.into(),
            }),
            ("mqtt:lamp-b", "secret-b") => Some(Role::Device {
                device: user.into(),
            }),
            ("ha", "secret-ha") => Some(Role::Integration { name: "ha".into() }),
            ("setup", "code-1") => Some(Role::Provisioning {
                session: 0,
                client: client_id.into(),
            }),
            _ => None,
        }
    }
    fn connected(&self, _: &Role) {}
    fn disconnected(&self, _: &Role) {}
    fn refused(&self, _: &str, _: &str) {}
}

async fn start() -> (Broker, u16) {
    let broker = Broker::start("internal-secret-for-this-test".into(), 64)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acl = Acl::new(Topics::new("itc").unwrap());
    tokio::spawn(front::serve(
        listener,
        None,
        broker.clone(),
        acl,
        Arc::new(Users),
    ));
    (broker, port)
}

fn client(id: &str, port: u16, login: Option<(&str, &str)>) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((user, pass)) = login {
        options.set_credentials(user, pass);
    }
    AsyncClient::new(options, 16)
}

/// Polls until the connection is accepted or refused.
async fn connect(events: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        match events.poll().await? {
            Event::Incoming(Packet::ConnAck(_)) => return Ok(()),
            _ => continue,
        }
    }
}

/// Polls until `want` matches an incoming packet (or 5 s pass).
async fn wait_for(events: &mut EventLoop, want: impl Fn(&Packet) -> bool) -> Option<Packet> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(p)) if want(&p) => return Some(p),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_wrong_credentials_are_refused() {
    let (broker, port) = start().await;
    let (_c, mut anonymous) = client("nobody", port, None);
    assert!(matches!(
        connect(&mut anonymous).await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        ))
    ));
    let (_c, mut wrong) = client("lamp", port, Some(("mqtt:lamp-a", "guess")));
    assert!(matches!(
        connect(&mut wrong).await,
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
        ))
    ));
    // The broker itself takes only the internal login.
    let mut direct = MqttOptions::new("direct", "127.0.0.1", broker.addr.port());
    direct.set_credentials("mqtt:lamp-a", "secret-a");
    let (_c, mut direct) = AsyncClient::new(direct, 4);
    assert!(connect(&mut direct).await.is_err());
    let (_c, mut good) = client("lamp", port, Some(("mqtt:lamp-a", "secret-a")));
    connect(&mut good).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_on_another_devices_topic() {
    let (broker, port) = start().await;
    // The gateway's own view: connected straight to the broker.
    let (user, pass) = broker.login();
    let mut options = MqttOptions::new("gateway", "127.0.0.1", broker.addr.port());
    options.set_credentials(user, pass);
    let (gateway, mut gateway_events) = AsyncClient::new(options, 16);
    connect(&mut gateway_events).await.unwrap();
    gateway
        .subscribe("itc-device/+/report", QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_for(&mut gateway_events, |p| matches!(p, Packet::SubAck(_)))
        .await
        .unwrap();

    let (lamp_a, mut a_events) = client("lamp-a", port, Some(("mqtt:lamp-a", "secret-a")));
    connect(&mut a_events).await.unwrap();
    lamp_a
        .publish(
            "itc-device/mqtt:lamp-a/report",
            QoS::AtLeastOnce,
            false,
            "mine",
        )
        .await
        .unwrap();
    wait_for(&mut a_events, |p| matches!(p, Packet::PubAck(_)))
        .await
        .unwrap();
    let got = wait_for(&mut gateway_events, |p| matches!(p, Packet::Publish(_))).await;
    match got {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "itc-device/mqtt:lamp-a/report");
            assert_eq!(&p.payload[..], b"mine");
        }
        other => panic!("{other:?}"),
    }

    // Lamp A posing as lamp B: cut off, and nothing reaches the gateway.
    lamp_a
        .publish(
            "itc-device/mqtt:lamp-b/report",
            QoS::AtLeastOnce,
            false,
            "forged",
        )
        .await
        .unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if a_events.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the front must close the connection");
    let leaked = tokio::time::timeout(Duration::from_millis(300), async {
        wait_for(&mut gateway_events, |p| matches!(p, Packet::Publish(_))).await
    })
    .await;
    assert!(!matches!(leaked, Ok(Some(_))), "{leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_outside_a_role_are_refused() {
    let (_broker, port) = start().await;
    let (ha, mut events) = client("ha-1", port, Some(("ha", "secret-ha")));
    connect(&mut events).await.unwrap();
    ha.subscribe("#", QoS::AtMostOnce).await.unwrap();
    match wait_for(&mut events, |p| matches!(p, Packet::SubAck(_))).await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Failure])
        }
        other => panic!("{other:?}"),
    }
    ha.subscribe("itc/#", QoS::AtMostOnce).await.unwrap();
    match wait_for(&mut events, |p| matches!(p, Packet::SubAck(_))).await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(
                ack.return_codes,
                vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
            )
        }
        other => panic!("{other:?}"),
    }
    // A new device may see only its own onboarding exchange.
    let (setup, mut setup_events) = client("esp-9", port, Some(("setup", "code-1")));
    connect(&mut setup_events).await.unwrap();
    setup
        .subscribe("itc-provision/esp-8/response", QoS::AtMostOnce)
        .await
        .unwrap();
    match wait_for(&mut setup_events, |p| matches!(p, Packet::SubAck(_))).await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Failure])
        }
        other => panic!("{other:?}"),
    }
}

/// Sends a CONNECT with `login` over `stream` and returns the CONNACK code.
async fn connack_over(
    stream: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    login: (&str, &str),
) -> ConnectReturnCode {
    use rumqttc::mqttbytes::v4::{self, Connect};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connect = Connect::new("tls-client");
    connect.set_login(login.0, login.1);
    let mut out = bytes::BytesMut::new();
    connect.write(&mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        assert!(
            stream.read_buf(&mut buf).await.unwrap() > 0,
            "closed before CONNACK"
        );
        match v4::read(&mut buf, 1024) {
            Ok(v4::Packet::ConnAck(ack)) => return ack.code,
            Ok(other) => panic!("{other:?}"),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_speaks_tls_when_configured() {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.key_pair.serialize_pem()).unwrap();
    // Files that are not PEM are refused with the reason.
    assert!(itc_bridges::mqtt::tls::acceptor(&key, &key).is_err());
    let acceptor = itc_bridges::mqtt::tls::acceptor(&cert, &key).unwrap();

    let broker = Broker::start("internal-secret-for-tls".into(), 8)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acl = Acl::new(Topics::new("itc").unwrap());
    tokio::spawn(front::serve(
        listener,
        Some(acceptor),
        broker,
        acl,
        Arc::new(Users),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(issued.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    for (login, expected) in [
        (("mqtt:lamp-a", "secret-a"), ConnectReturnCode::Success),
        (
            ("mqtt:lamp-a", "guess"),
            ConnectReturnCode::BadUserNamePassword,
        ),
    ] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(connack_over(&mut tls, login).await, expected);
    }
    // Plain MQTT to the TLS port gets nowhere.
    let (_c, mut plain) = client("plain", addr.port(), Some(("mqtt:lamp-a", "secret-a")));
    assert!(connect(&mut plain).await.is_err());
}
