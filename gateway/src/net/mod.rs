//! The network between gateways.
//!
//! Every gateway dials every other one (its sending channel to that peer)
//! and accepts their dials (its receiving channels), so each encrypted
//! channel ([`noise`]) has one owner and one direction. Sending never
//! blocks the replica: each peer has a bounded queue, and a message for a
//! full queue (a slow or unreachable peer) is dropped, which PBFT's
//! retransmission makes good. Dialers reconnect with exponential backoff.
//!
//! The peers are the validators the chain names, active or pending: a
//! validator-set change that commits adds or drops peers
//! ([`Network::set_peers`]), so a gateway that is joining is connected
//! (and learns the chain) before the epoch that makes it a validator, and
//! a removed one is cut off, its open channels included.
//!
//! Whatever a peer sends is decoded strictly; a message that does not
//! decode is logged and skipped, a channel that fails authentication or
//! decryption is closed. Nothing a peer sends can crash or stall the
//! replica: it only ever sees well-formed messages from authenticated
//! validators, through a bounded queue.

pub mod noise;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use itc_chain::codec::{decode, encode};
use itc_chain::crypto::{Keypair, PublicKey};
use itc_chain::dag::DagMessage;
use itc_chain::pbft::Message;
use itc_chain::tx::ChainId;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4_096;
/// Undecodable messages tolerated from one channel before it is closed.
const MAX_GARBAGE: u32 = 16;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A sender stops gathering queued messages into one write at this size.
const COALESCE_BYTES: usize = 256 * 1024;
/// A receiver's read buffer.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// A received message and its authenticated sender.
pub type Inbound = (PublicKey, Message);
/// A received DAG message and its authenticated sender.
pub type DagInbound = (PublicKey, DagMessage);

/// [`Envelope::Consensus`]'s tag: a tag and a message encode as the enum
/// does, without copying the message into one.
const CONSENSUS: u8 = 0;

/// A consensus message as it travels on a peer channel.
pub fn consensus_wire(message: &Message) -> Vec<u8> {
    encode(&(CONSENSUS, message))
}

/// What travels on a peer channel: consensus or the DAG's gossip.
#[derive(Debug, BorshSerialize, BorshDeserialize)]
enum Envelope {
    Consensus(Box<Message>),
    Dag(DagMessage),
}

/// Where received messages go: consensus traffic, relayed transactions,
/// and DAG gossip.
#[derive(Clone)]
pub struct Inboxes {
    pub consensus: mpsc::Sender<Inbound>,
    pub transactions: mpsc::Sender<Inbound>,
    pub dag: mpsc::Sender<DagInbound>,
}

/// The sending side of the network.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

struct Shared {
    key: Arc<Keypair>,
    chain: ChainId,
    /// Each peer's address and its dialer's queue; who may connect.
    peers: RwLock<HashMap<PublicKey, Peer>>,
}

struct Peer {
    addr: SocketAddr,
    queue: mpsc::Sender<Arc<Vec<u8>>>,
}

impl Shared {
    fn allows(&self, key: &PublicKey) -> bool {
        *key != self.key.public() && self.peers.read().is_ok_and(|p| p.contains_key(key))
    }
}

impl Network {
    /// Starts accepting on `listener` and dialing `peers`. Received
    /// consensus messages go to `inbound`, relayed client transactions to
    /// `transactions`: the node serves the first before the second, so a
    /// flood of transactions to verify never delays a round.
    ///
    /// The returned task accepts peers; aborting it closes the listener and
    /// every channel it accepted, so a restarted gateway can listen on the
    /// same address.
    pub fn start(
        key: Arc<Keypair>,
        chain: ChainId,
        listener: TcpListener,
        peers: Vec<(PublicKey, SocketAddr)>,
        inbound: Inboxes,
    ) -> (Network, tokio::task::JoinHandle<()>) {
        let network = Network {
            shared: Arc::new(Shared {
                key,
                chain,
                peers: RwLock::new(HashMap::new()),
            }),
        };
        network.set_peers(peers);
        let accepting = tokio::spawn(accept_loop(listener, network.shared.clone(), inbound));
        (network, accepting)
    }

    /// Makes `peers` the peer set: new ones are dialed (and may connect),
    /// a moved one is dialed at its new address, and the dialers and
    /// channels of those no longer listed end.
    pub fn set_peers(&self, peers: Vec<(PublicKey, SocketAddr)>) {
        let shared = &self.shared;
        let Ok(mut current) = shared.peers.write() else {
            return;
        };
        let me = shared.key.public();
        let wanted: HashMap<PublicKey, SocketAddr> =
            peers.into_iter().filter(|(k, _)| *k != me).collect();
        current.retain(|key, peer| wanted.get(key) == Some(&peer.addr));
        for (peer, addr) in wanted {
            if current.contains_key(&peer) {
                continue;
            }
            let (queue, rx) = mpsc::channel(PEER_QUEUE);
            current.insert(peer, Peer { addr, queue });
            let (key, chain) = (shared.key.clone(), shared.chain.clone());
            tokio::spawn(dial_loop(key, chain, peer, addr, rx));
        }
    }

    pub fn send(&self, to: &PublicKey, message: &Message) {
        self.enqueue(to, Arc::new(consensus_wire(message)));
    }

    pub fn broadcast(&self, message: &Message) {
        self.broadcast_bytes(Arc::new(consensus_wire(message)));
    }

    pub fn send_dag(&self, to: &PublicKey, message: DagMessage) {
        self.enqueue(to, Arc::new(encode(&Envelope::Dag(message))));
    }

    pub fn broadcast_dag(&self, message: DagMessage) {
        self.broadcast_bytes(Arc::new(encode(&Envelope::Dag(message))));
    }

    fn broadcast_bytes(&self, bytes: Arc<Vec<u8>>) {
        let Ok(peers) = self.shared.peers.read() else {
            return;
        };
        for (to, peer) in peers.iter() {
            enqueue(to, peer, bytes.clone());
        }
    }

    fn enqueue(&self, to: &PublicKey, bytes: Arc<Vec<u8>>) {
        let Ok(peers) = self.shared.peers.read() else {
            return;
        };
        if let Some(peer) = peers.get(to) {
            enqueue(to, peer, bytes);
        }
    }
}

fn enqueue(to: &PublicKey, peer: &Peer, bytes: Arc<Vec<u8>>) {
    if peer.queue.try_send(bytes).is_err() {
        tracing::debug!(peer = %to, "peer queue full; message dropped");
    }
}

async fn dial_loop(
    key: Arc<Keypair>,
    chain: ChainId,
    peer: PublicKey,
    addr: SocketAddr,
    mut queue: mpsc::Receiver<Arc<Vec<u8>>>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(&key, &chain, peer, addr).await {
            Ok((mut stream, mut channel)) => {
                tracing::info!(%peer, %addr, "connected");
                backoff = BACKOFF_MIN;
                let mut wire = Vec::new();
                loop {
                    let Some(bytes) = queue.recv().await else {
                        return;
                    };
                    // What queued behind it goes in the same write.
                    wire.clear();
                    let mut sealed = seal_queued(&mut channel, &bytes, &mut wire);
                    while sealed.is_ok() && wire.len() < COALESCE_BYTES {
                        let Ok(more) = queue.try_recv() else { break };
                        sealed = seal_queued(&mut channel, &more, &mut wire);
                    }
                    // What sealed before a failure still goes out.
                    let written = if wire.is_empty() {
                        Ok(())
                    } else {
                        stream.write_all(&wire).await
                    };
                    if let Err(error) = written.map_err(Into::into).and(sealed) {
                        tracing::info!(%peer, %error, "send failed; reconnecting");
                        break;
                    }
                }
            }
            Err(error) => tracing::debug!(%peer, %addr, %error, "dial failed"),
        }
        if queue.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Seals one queued message onto `wire`. One too large to send is dropped
/// with a warning (nothing of it was sealed, the channel is intact); any
/// other failure leaves `wire` as it was and ends the channel.
fn seal_queued(
    channel: &mut noise::Channel,
    bytes: &[u8],
    wire: &mut Vec<u8>,
) -> Result<(), noise::ChannelError> {
    let mark = wire.len();
    match channel.seal(bytes, wire) {
        Err(noise::ChannelError::TooLarge { len, max }) => {
            tracing::warn!(peer = %channel.peer, len, max, "message too large to send; dropped");
            Ok(())
        }
        Err(error) => {
            wire.truncate(mark);
            Err(error)
        }
        Ok(()) => Ok(()),
    }
}

async fn connect(
    key: &Keypair,
    chain: &ChainId,
    peer: PublicKey,
    addr: SocketAddr,
) -> Result<(TcpStream, noise::Channel), noise::ChannelError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let channel = noise::dial(&mut stream, key, chain, peer).await?;
        Ok((stream, channel))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, inbound: Inboxes) {
    // Dropped with this task: every accepted channel ends with it.
    let mut channels = tokio::task::JoinSet::new();
    loop {
        // Finished channels are reaped as they end.
        while channels.try_join_next().is_some() {}
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        channels.spawn(receive(stream, remote, shared.clone(), inbound.clone()));
    }
}

async fn receive(mut stream: TcpStream, remote: SocketAddr, shared: Arc<Shared>, inbound: Inboxes) {
    let _ = stream.set_nodelay(true);
    let is_allowed = |k: &PublicKey| shared.allows(k);
    let handshake = noise::accept(&mut stream, &shared.key, &shared.chain, &is_allowed);
    let mut channel = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            tracing::warn!(%remote, %error, "refused a peer");
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, "handshake timed out");
            return;
        }
    };
    let peer = channel.peer;
    let mut garbage = 0;
    // Frames are read in pieces (a length, then the frame): buffered, a
    // burst of them costs one read call, not two per frame.
    let mut stream = tokio::io::BufReader::with_capacity(RECEIVE_BUFFER, stream);
    loop {
        let bytes = match channel.recv(&mut stream).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::info!(%peer, %error, "channel closed");
                return;
            }
        };
        if !shared.allows(&peer) {
            tracing::info!(%peer, "no longer a peer; channel closed");
            return;
        }
        match decode::<Envelope>(&bytes) {
            Ok(Envelope::Consensus(message)) => {
                let message = *message;
                let inbox = match message {
                    Message::Transactions(_) => &inbound.transactions,
                    _ => &inbound.consensus,
                };
                if inbox.send((peer, message)).await.is_err() {
                    return;
                }
            }
            Ok(Envelope::Dag(message)) => {
                // Gossip waits for room, which slows this peer only.
                if inbound.dag.send((peer, message)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                garbage += 1;
                tracing::warn!(%peer, %error, "undecodable message ignored");
                if garbage > MAX_GARBAGE {
                    tracing::warn!(%peer, "too many undecodable messages; closing");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itc_chain::codec::BoundedVec;

    #[test]
    fn a_consensus_message_sent_without_copying_decodes_as_its_envelope() {
        let message = Message::Transactions(BoundedVec::new(vec![]).unwrap());
        let bytes = consensus_wire(&message);
        assert!(matches!(
            decode::<Envelope>(&bytes),
            Ok(Envelope::Consensus(m)) if *m == message
        ));
        let gossip = DagMessage::Request(BoundedVec::new(vec![]).unwrap());
        let bytes = encode(&Envelope::Dag(gossip.clone()));
        assert!(matches!(decode::<Envelope>(&bytes), Ok(Envelope::Dag(m)) if m == gossip));
        // An unknown kind is refused, not guessed at.
        let mut unknown = bytes;
        unknown[1] = 7;
        assert!(decode::<Envelope>(&unknown).is_err());
    }
}
