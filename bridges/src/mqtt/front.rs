//! The front every MQTT client connects to: authentication, then a topic
//! check on every PUBLISH, SUBSCRIBE and will, then the broker.
//!
//! Per connection: the first packet must be an MQTT 3.1.1 CONNECT with a
//! username and password, which the gateway's [`Authenticator`] turns into
//! a [`Role`] (or a refusal, answered with CONNACK "bad user name or
//! password" / "not authorized"). The CONNECT goes on to the broker with
//! the internal login and a client id that names the role, so no client can
//! take over another's session. After that, client packets are parsed with
//! rumqttc's codec: an integration's commands are routed to the gateway
//! under its name ([`Acl::route`]); a PUBLISH outside the role's topics
//! closes the connection (MQTT 3.1.1 has no other way to refuse one); a SUBSCRIBE with
//! a filter outside them is answered with failure codes and not passed on;
//! a will outside them is dropped. Everything else, and everything the
//! broker sends, passes through unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    self, ConnAck, ConnectReturnCode, Login, Packet, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::broker::{Broker, MAX_PAYLOAD};
use super::topics::{plain_level, Acl, Role};

/// How long a client has to send its CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's side of authentication.
pub trait Authenticator: Send + Sync + 'static {
    /// The role these credentials give, or `None` to refuse.
    fn authenticate(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Option<Role>> + Send;

    /// A client with `role` is connected to the broker.
    fn connected(&self, role: &Role);

    /// That client is gone.
    fn disconnected(&self, role: &Role);

    /// A client was refused or cut off, and why (for logs and metrics).
    fn refused(&self, peer: &str, reason: &str);
}

/// Accepts clients on `listener` until the task is dropped; with `tls`,
/// each connection must complete a TLS handshake first.
pub async fn serve<A: Authenticator>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Broker,
    acl: Acl,
    auth: Arc<A>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (broker, acl, auth, tls) = (broker.clone(), acl.clone(), auth.clone(), tls.clone());
        tokio::spawn(async move {
            let peer = peer.to_string();
            let result = match tls {
                None => connection(stream, &broker, &acl, &*auth).await,
                Some(tls) => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, &broker, &acl, &*auth).await,
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                        Err(_) => Err("no TLS handshake in time".into()),
                    }
                }
            };
            if let Err(reason) = result {
                auth.refused(&peer, &reason);
            }
        });
    }
}

/// Reads one whole packet: its raw bytes and its parse.
async fn next_packet(
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
) -> Result<Option<(BytesMut, Packet)>, String> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PAYLOAD) {
            Ok(header) => {
                let raw = buf.split_to(header.frame_length());
                let packet = v4::read(&mut raw.clone(), MAX_PAYLOAD)
                    .map_err(|e| format!("malformed packet: {e}"))?;
                return Ok(Some((raw, packet)));
            }
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Ok(None);
        }
    }
}

async fn refuse(stream: &mut (impl AsyncWrite + Unpin), code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

async fn connection<A: Authenticator, S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut client: S,
    broker: &Broker,
    acl: &Acl,
    auth: &A,
) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, next_packet(&mut client, &mut buf))
        .await
        .map_err(|_| "no CONNECT in time".to_string())??;
    let Some((_, Packet::Connect(mut connect))) = first else {
        return Err("the first packet was not a CONNECT".into());
    };
    if connect.protocol != Protocol::V4 {
        refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
        return Err("only MQTT 3.1.1 is spoken".into());
    }
    let Some(login) = connect.login.take() else {
        refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
        return Err(format!("anonymous client {:?} refused", connect.client_id));
    };
    if !plain_level(&connect.client_id) {
        refuse(&mut client, ConnectReturnCode::BadClientId).await;
        return Err(format!(
            "client id {:?} is not one topic level",
            connect.client_id
        ));
    }
    let Some(role) = auth
        .authenticate(&connect.client_id, &login.username, &login.password)
        .await
    else {
        refuse(&mut client, ConnectReturnCode::BadUserNamePassword).await;
        return Err(format!("bad credentials for user {:?}", login.username));
    };
    connect.client_id = match &role {
        Role::Device { device } => format!("d:{device}"),
        Role::Integration { name } => format!("i:{name}:{}", connect.client_id),
        Role::Provisioning { client, .. } => format!("p:{client}"),
    };
    if connect
        .last_will
        .as_ref()
        .is_some_and(|will| !acl.may_publish(&role, &will.topic))
    {
        connect.last_will = None;
    }
    let (user, pass) = broker.login();
    connect.login = Some(Login::new(user, pass));

    let mut upstream = TcpStream::connect(broker.addr)
        .await
        .map_err(|e| format!("broker unreachable: {e}"))?;
    let mut out = BytesMut::new();
    connect
        .write(&mut out)
        .map_err(|e| format!("re-encoding CONNECT: {e}"))?;
    upstream.write_all(&out).await.map_err(|e| e.to_string())?;
    let _ = upstream.set_nodelay(true);

    auth.connected(&role);
    let result = relay(client, upstream, buf, &role, acl).await;
    auth.disconnected(&role);
    result
}

/// Passes packets both ways, checking the client's.
async fn relay<S: AsyncRead + AsyncWrite + Unpin + Send>(
    client: S,
    upstream: TcpStream,
    mut buf: BytesMut,
    role: &Role,
    acl: &Acl,
) -> Result<(), String> {
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::channel::<BytesMut>(8);

    // Broker → client, with the front's own answers (refused SUBSCRIBEs)
    // in between.
    let down = async move {
        let mut chunk = vec![0u8; 4 * 1024];
        loop {
            tokio::select! {
                n = up_rx.read(&mut chunk) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if client_tx.write_all(&chunk[..n]).await.is_err() { return },
                },
                Some(reply) = reply_rx.recv() => {
                    if client_tx.write_all(&reply).await.is_err() { return }
                }
            }
        }
    };
    let up = async {
        loop {
            let Some((raw, packet)) = next_packet(&mut client_rx, &mut buf).await? else {
                return Ok(());
            };
            let mut raw = raw;
            match &packet {
                Packet::Publish(publish) => match acl.route(role, &publish.topic) {
                    None => {
                        return Err(format!("{role:?} may not publish to {:?}", publish.topic));
                    }
                    Some(topic) if topic != publish.topic => {
                        let mut routed = publish.clone();
                        routed.topic = topic;
                        raw = BytesMut::new();
                        routed.write(&mut raw).map_err(|e| e.to_string())?;
                    }
                    Some(_) => {}
                },
                Packet::Subscribe(sub)
                    if sub
                        .filters
                        .iter()
                        .any(|f| !acl.may_subscribe(role, &f.path)) =>
                {
                    let codes = sub
                        .filters
                        .iter()
                        .map(|_| SubscribeReasonCode::Failure)
                        .collect();
                    let mut out = BytesMut::new();
                    SubAck::new(sub.pkid, codes)
                        .write(&mut out)
                        .map_err(|e| e.to_string())?;
                    let _ = reply_tx.send(out).await;
                    continue;
                }
                Packet::Connect(_) => return Err("a second CONNECT".into()),
                _ => {}
            }
            up_tx.write_all(&raw).await.map_err(|e| e.to_string())?;
            if matches!(packet, Packet::Disconnect) {
                return Ok(());
            }
        }
    };
    tokio::select! {
        result = up => result,
        () = down => Ok(()),
    }
}
