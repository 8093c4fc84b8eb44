//! Encrypted, authenticated channels between gateways: Noise XX
//! (`Noise_XX_25519_ChaChaPoly_SHA256`, via `snow`) with each side's
//! Ed25519 gateway key bound to its Noise static key.
//!
//! Noise authenticates X25519 static keys, but a gateway is known by its
//! Ed25519 genesis key. As in libp2p's Noise handshake, each side sends, in
//! its encrypted handshake payload, its Ed25519 key and a signature over the
//! chain id and its Noise static key ([`Domain::Peer`]). The receiver checks
//! the signature against the static key the handshake authenticated, so a
//! channel is bound to exactly one gateway key, and it checks that key is a
//! validator (and, when dialing, the one it meant to reach).
//!
//! Framing: a Noise message is at most 65,535 bytes, so an application
//! message is sent as a 4-byte length (encrypted with the first chunk) and
//! chunks of at most [`CHUNK`] bytes, each a 2-byte length plus ciphertext.
//! A length above [`MAX_MESSAGE`] ends the connection before anything is
//! allocated.

use itc_chain::codec::{decode, encode};
use itc_chain::crypto::{Domain, Keypair, PublicKey, Signature};
use itc_chain::tx::ChainId;
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Largest Noise message.
const NOISE_MAX: usize = 65_535;
/// ChaCha20-Poly1305's tag.
const TAG: usize = 16;
/// Plaintext per chunk.
pub const CHUNK: usize = NOISE_MAX - TAG;
/// Largest application message (the codec's own limit).
pub const MAX_MESSAGE: usize = itc_chain::codec::MAX_ENCODED_LEN;

/// Why a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    #[error("the peer's identity does not decode: {0}")]
    Identity(#[from] itc_chain::codec::DecodeError),
    #[error("{key} did not prove it holds its gateway key")]
    BadIdentity { key: PublicKey },
    #[error("{key} is not a validator")]
    NotAValidator { key: PublicKey },
    #[error("reached {found}, expected {expected}")]
    WrongPeer {
        expected: PublicKey,
        found: PublicKey,
    },
    #[error("a message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed framing: {reason}")]
    Malformed { reason: &'static str },
}

/// The handshake payload: a gateway key and its signature over the Noise
/// static key.
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct Identity {
    key: PublicKey,
    signature: Signature,
}

fn binding(chain: &ChainId, static_key: &[u8]) -> Vec<u8> {
    encode(&(chain, static_key.to_vec()))
}

fn identity(key: &Keypair, chain: &ChainId, static_key: &[u8]) -> Vec<u8> {
    encode(&Identity {
        key: key.public(),
        signature: key.sign(Domain::Peer, &binding(chain, static_key)),
    })
}

fn check_identity(
    payload: &[u8],
    chain: &ChainId,
    static_key: Option<&[u8]>,
    allowed: &(dyn Fn(&PublicKey) -> bool + Sync),
) -> Result<PublicKey, ChannelError> {
    let id: Identity = decode(payload)?;
    let static_key = static_key.ok_or(ChannelError::BadIdentity { key: id.key })?;
    id.key
        .verify(Domain::Peer, &binding(chain, static_key), &id.signature)
        .map_err(|_| ChannelError::BadIdentity { key: id.key })?;
    if !allowed(&id.key) {
        return Err(ChannelError::NotAValidator { key: id.key });
    }
    Ok(id.key)
}

async fn write_frame<S: AsyncWrite + Unpin>(io: &mut S, frame: &[u8]) -> std::io::Result<()> {
    let len = frame.len() as u16;
    let mut buf = Vec::with_capacity(2 + frame.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(frame);
    io.write_all(&buf).await
}

async fn read_frame<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    buf.resize(u16::from_be_bytes(len) as usize, 0);
    io.read_exact(buf).await.map(|_| ())
}

/// An established channel's two halves of Noise state.
pub struct Channel {
    pub peer: PublicKey,
    state: TransportState,
    /// One Noise message's worth of room, reused by every seal and open
    /// (a fresh 64 KiB buffer per message was a memset per message).
    scratch: Vec<u8>,
    /// The received frame, reused likewise.
    frame: Vec<u8>,
}

fn builder() -> Result<snow::Builder<'static>, ChannelError> {
    Ok(snow::Builder::new(PATTERN.parse()?))
}

/// A fresh Noise static key (one per channel; the gateway key is bound to
/// it by signature) and the handshake state for one side.
fn handshake(initiator: bool) -> Result<(snow::Keypair, HandshakeState), ChannelError> {
    let static_key = builder()?.generate_keypair()?;
    let builder = builder()?.local_private_key(&static_key.private);
    let hs = if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    Ok((static_key, hs))
}

/// Runs the initiator's side of the handshake and checks that the peer is
/// `expected`.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &Keypair,
    chain: &ChainId,
    expected: PublicKey,
) -> Result<Channel, ChannelError> {
    let (static_key, mut hs) = handshake(true)?;
    let (mut out, mut buf, mut payload) = (vec![0u8; NOISE_MAX], Vec::new(), vec![0u8; NOISE_MAX]);
    // -> e
    let n = hs.write_message(&[], &mut out)?;
    write_frame(io, &out[..n]).await?;
    // <- e, ee, s, es (+ responder identity)
    read_frame(io, &mut buf).await?;
    let n = hs.read_message(&buf, &mut payload)?;
    let peer = check_identity(&payload[..n], chain, hs.get_remote_static(), &|k| {
        *k == expected
    })
    .map_err(|e| match e {
        ChannelError::NotAValidator { key } => ChannelError::WrongPeer {
            expected,
            found: key,
        },
        e => e,
    })?;
    // -> s, se (+ initiator identity)
    let me = identity(key, chain, &static_key.public);
    let n = hs.write_message(&me, &mut out)?;
    write_frame(io, &out[..n]).await?;
    Ok(Channel {
        peer,
        state: hs.into_transport_mode()?,
        scratch: vec![0u8; NOISE_MAX],
        frame: Vec::new(),
    })
}

/// Runs the responder's side; `allowed` says which gateway keys may
/// connect.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &Keypair,
    chain: &ChainId,
    allowed: &(dyn Fn(&PublicKey) -> bool + Sync),
) -> Result<Channel, ChannelError> {
    let (static_key, mut hs) = handshake(false)?;
    let (mut out, mut buf, mut payload) = (vec![0u8; NOISE_MAX], Vec::new(), vec![0u8; NOISE_MAX]);
    read_frame(io, &mut buf).await?;
    hs.read_message(&buf, &mut payload)?;
    let me = identity(key, chain, &static_key.public);
    let n = hs.write_message(&me, &mut out)?;
    write_frame(io, &out[..n]).await?;
    read_frame(io, &mut buf).await?;
    let n = hs.read_message(&buf, &mut payload)?;
    let peer = check_identity(&payload[..n], chain, hs.get_remote_static(), allowed)?;
    Ok(Channel {
        peer,
        state: hs.into_transport_mode()?,
        scratch: vec![0u8; NOISE_MAX],
        frame: Vec::new(),
    })
}

impl Channel {
    /// Sends one application message. A gateway sends on the channels it
    /// dialed and receives on the ones it accepted, so each channel has one
    /// owner and one direction.
    pub async fn send<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        message: &[u8],
    ) -> Result<(), ChannelError> {
        let mut wire = Vec::new();
        self.seal(message, &mut wire)?;
        io.write_all(&wire).await?;
        Ok(())
    }

    /// Appends one application message, encrypted and framed, to `wire`:
    /// a sender with several queued writes them with one `write`.
    pub fn seal(&mut self, message: &[u8], wire: &mut Vec<u8>) -> Result<(), ChannelError> {
        if message.len() > MAX_MESSAGE {
            return Err(ChannelError::TooLarge {
                len: message.len(),
                max: MAX_MESSAGE,
            });
        }
        let length = (message.len() as u32).to_be_bytes();
        let first = message.len().min(CHUNK - length.len());
        let mut plain = Vec::with_capacity(length.len() + first);
        plain.extend_from_slice(&length);
        plain.extend_from_slice(&message[..first]);
        let chunks = std::iter::once(plain.as_slice()).chain(message[first..].chunks(CHUNK));
        for chunk in chunks {
            let n = self.state.write_message(chunk, &mut self.scratch)?;
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&self.scratch[..n]);
        }
        Ok(())
    }

    /// Reads one application message.
    pub async fn recv<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
    ) -> Result<Vec<u8>, ChannelError> {
        read_frame(io, &mut self.frame).await?;
        let plain = &mut self.scratch;
        let n = self.state.read_message(&self.frame, plain)?;
        if n < 4 {
            return Err(ChannelError::Malformed {
                reason: "a first chunk shorter than its length prefix",
            });
        }
        let len = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(ChannelError::TooLarge {
                len,
                max: MAX_MESSAGE,
            });
        }
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&plain[4..n]);
        while message.len() < len {
            read_frame(io, &mut self.frame).await?;
            let n = self.state.read_message(&self.frame, &mut self.scratch)?;
            message.extend_from_slice(&self.scratch[..n]);
        }
        if message.len() != len {
            return Err(ChannelError::Malformed {
                reason: "chunks longer than the announced length",
            });
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dialed and an accepted channel over an in-memory pipe.
    async fn pair() -> (
        Channel,
        tokio::io::DuplexStream,
        Channel,
        tokio::io::DuplexStream,
    ) {
        let chain = ChainId::new("itc-test").expect("chain id");
        let (a, b) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let (mut near, mut far) = tokio::io::duplex(1 << 20);
        let b_key = b.public();
        let allowed = |_: &PublicKey| true;
        let (dialed, accepted) = tokio::join!(
            dial(&mut near, &a, &chain, b_key),
            accept(&mut far, &b, &chain, &allowed)
        );
        (dialed.expect("dial"), near, accepted.expect("accept"), far)
    }

    #[tokio::test]
    async fn messages_sealed_into_one_write_arrive_whole_and_in_order() {
        let (mut sender, mut near, mut receiver, far) = pair().await;
        // Empty, small, and one spanning three Noise messages.
        let messages = [Vec::new(), b"prepare".to_vec(), vec![7u8; 2 * CHUNK + 10]];
        let mut wire = Vec::new();
        for message in &messages {
            sender.seal(message, &mut wire).expect("seal");
        }
        let before = wire.len();
        let too_large = vec![0u8; MAX_MESSAGE + 1];
        assert!(matches!(
            sender.seal(&too_large, &mut wire),
            Err(ChannelError::TooLarge { .. })
        ));
        assert_eq!(wire.len(), before, "a refused message adds nothing");
        near.write_all(&wire).await.expect("write");
        sender.send(&mut near, b"after").await.expect("send");
        let mut reader = tokio::io::BufReader::new(far);
        for message in &messages {
            assert_eq!(&receiver.recv(&mut reader).await.expect("recv"), message);
        }
        assert_eq!(receiver.recv(&mut reader).await.expect("recv"), b"after");
    }
}
