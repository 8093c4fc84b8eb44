//! One mesh element's layers stacked (Mesh Profile 1.0.1 §3): an access
//! message goes down through the upper transport (application or device
//! key), the lower transport (one PDU, or 12-octet segments) and the
//! network layer (encryption, obfuscation, a fresh sequence number each);
//! a received Network PDU comes up through the replay list, reassembly
//! (with an acknowledgment for every segment) and decryption. What is
//! dropped on the way is counted by reason. Both the gateway's proxy
//! client and the simulated node run this; it does no IO.

use std::collections::HashMap;

use super::crypto::Key;
use super::network::{NetKey, NetworkError, NetworkPdu, NonceKind};
use super::replay::{ReplayCache, ReplayError};
use super::transport::{
    ack_pdu, open_access, seal_access, AccessKey, AccessMeta, LowerPdu, Reassembly, TransportError,
};

/// Which key an access message is (to be) secured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// The application key with this index.
    App(u16),
    /// The device key of the peer (or, on a node, its own).
    Device,
}

/// Counters of what was dropped and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// The NetMIC did not verify: tampered, or not this network's key.
    pub bad_network_mic: u64,
    /// Another network (NID), or too short or long.
    pub not_for_us: u64,
    /// A sequence number at or below one already taken from its source.
    pub replayed: u64,
    pub malformed: u64,
    /// The TransMIC did not verify under any key held.
    pub bad_transport_mic: u64,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("no application key with index {index}")]
    NoAppKey { index: u16 },
    #[error("no device key for {address:#06x}")]
    NoDeviceKey { address: u16 },
    #[error("the sequence numbers are used up for this IV index")]
    SequenceExhausted,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// An access message that came up the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub src: u16,
    pub dst: u16,
    pub key: KeyUse,
    pub payload: Vec<u8>,
}

/// What one received Network PDU produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub delivered: Option<Delivered>,
    /// Network PDUs to send back (segment acknowledgments).
    pub send: Vec<Vec<u8>>,
}

/// The layers of one element.
pub struct Stack {
    net: NetKey,
    pub iv_index: u32,
    pub address: u16,
    seq: u32,
    app_keys: Vec<(u16, AccessKey)>,
    device_keys: HashMap<u16, Key>,
    replay: ReplayCache,
    reassembly: Reassembly,
    pub dropped: DropCounts,
    pub default_ttl: u8,
}

/// The largest sequence number before an IV update is due (§3.10.5).
const MAX_SEQ: u32 = 0x00ff_ffff;

impl Stack {
    /// The Network ID a proxy advertises (k3 of the NetKey, §3.8.6.3.2).
    pub fn network_id(&self) -> [u8; 8] {
        self.net.network_id
    }

    pub fn new(net_key: Key, iv_index: u32, address: u16) -> Stack {
        Stack {
            net: NetKey::new(net_key),
            iv_index,
            address,
            seq: 0,
            app_keys: Vec::new(),
            device_keys: HashMap::new(),
            replay: ReplayCache::new(1_024),
            reassembly: Reassembly::default(),
            dropped: DropCounts::default(),
            default_ttl: 5,
        }
    }

    pub fn add_app_key(&mut self, index: u16, key: Key) {
        self.app_keys.retain(|(i, _)| *i != index);
        self.app_keys.push((index, AccessKey::app(key)));
    }

    fn access_key(&self, index: u16) -> Option<AccessKey> {
        self.app_keys
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, k)| *k)
    }

    pub fn app_key(&self, index: u16) -> Option<Key> {
        self.access_key(index).map(|k| *k.key())
    }

    /// The device key of `address` (a provisioned node's, on the client;
    /// its own, on a node).
    pub fn add_device_key(&mut self, address: u16, key: Key) {
        self.device_keys.insert(address, key);
    }

    /// The sequence number the next PDU will carry (to persist it).
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// Resumes after a restart past every sequence number used before.
    pub fn resume_seq(&mut self, seq: u32) {
        self.seq = self.seq.max(seq);
    }

    fn device_key_for(&self, peer: u16) -> Option<Key> {
        self.device_keys
            .get(&peer)
            .or_else(|| self.device_keys.get(&self.address))
            .copied()
    }

    /// Seals `payload` for `dst` under `key`: the Network PDUs to send.
    pub fn send(
        &mut self,
        dst: u16,
        key: KeyUse,
        payload: &[u8],
    ) -> Result<Vec<Vec<u8>>, StackError> {
        let access_key = match key {
            KeyUse::App(index) => self
                .access_key(index)
                .ok_or(StackError::NoAppKey { index })?,
            KeyUse::Device => AccessKey::Device(
                self.device_key_for(dst)
                    .ok_or(StackError::NoDeviceKey { address: dst })?,
            ),
        };
        let meta = AccessMeta {
            src: self.address,
            dst,
            seq: self.seq,
            iv_index: self.iv_index,
        };
        let lower = seal_access(&access_key, &meta, payload)?;
        self.network(false, dst, lower)
    }

    /// Transport PDUs into Network PDUs, one sequence number each.
    fn network(
        &mut self,
        ctl: bool,
        dst: u16,
        lower: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, StackError> {
        if self.seq + lower.len() as u32 > MAX_SEQ {
            return Err(StackError::SequenceExhausted);
        }
        lower
            .into_iter()
            .map(|transport| {
                let pdu = NetworkPdu {
                    ctl,
                    ttl: if ctl { 0 } else { self.default_ttl },
                    seq: self.seq,
                    src: self.address,
                    dst,
                    transport,
                };
                self.seq += 1;
                Ok(pdu.seal(&self.net, self.iv_index, NonceKind::Network)?)
            })
            .collect()
    }

    /// Seals a proxy configuration message (§6.5: proxy nonce, CTL 1,
    /// TTL 0, DST unassigned).
    pub fn proxy_config(&mut self, message: Vec<u8>) -> Result<Vec<u8>, StackError> {
        let pdu = NetworkPdu {
            ctl: true,
            ttl: 0,
            seq: self.seq,
            src: self.address,
            dst: 0,
            transport: message,
        };
        self.seq += 1;
        Ok(pdu.seal(&self.net, self.iv_index, NonceKind::Proxy)?)
    }

    /// Opens a proxy configuration message.
    pub fn open_proxy_config(&mut self, pdu: &[u8]) -> Option<Vec<u8>> {
        match NetworkPdu::open(pdu, &self.net, self.iv_index, NonceKind::Proxy) {
            Ok((open, iv)) => match self.replay.accept(open.src, iv, open.seq) {
                Ok(()) => Some(open.transport),
                Err(_) => {
                    self.dropped.replayed += 1;
                    None
                }
            },
            Err(_) => {
                self.dropped.bad_network_mic += 1;
                None
            }
        }
    }

    /// Takes a received Network PDU at `now_ms`.
    pub fn receive(&mut self, pdu: &[u8], now_ms: u64) -> Received {
        let (open, iv) = match NetworkPdu::open(pdu, &self.net, self.iv_index, NonceKind::Network) {
            Ok(opened) => opened,
            Err(NetworkError::BadMic) => {
                self.dropped.bad_network_mic += 1;
                return Received::default();
            }
            Err(_) => {
                self.dropped.not_for_us += 1;
                return Received::default();
            }
        };
        // Our own PDUs echoed back, and those for other unicast
        // addresses, are not ours to take.
        if open.src == self.address || (open.dst & 0x8000 == 0 && open.dst != self.address) {
            self.dropped.not_for_us += 1;
            return Received::default();
        }
        match self.replay.accept(open.src, iv, open.seq) {
            Ok(()) => {}
            Err(ReplayError::Replayed { .. }) | Err(ReplayError::Full { .. }) => {
                self.dropped.replayed += 1;
                return Received::default();
            }
        }
        let lower = match LowerPdu::parse(open.ctl, &open.transport) {
            Ok(lower) => lower,
            Err(_) => {
                self.dropped.malformed += 1;
                return Received::default();
            }
        };
        let mut out = Received::default();
        let (akf_aid, szmic, seq_auth, upper) = match lower {
            LowerPdu::Unsegmented { akf_aid, upper } => (akf_aid, false, open.seq, upper),
            LowerPdu::Segment {
                akf_aid,
                szmic,
                seq_zero,
                seg_o,
                seg_n,
                data,
            } => {
                let outcome = match self.reassembly.handle_segment(
                    open.src, open.seq, akf_aid, szmic, seq_zero, seg_o, seg_n, &data, now_ms,
                ) {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.dropped.malformed += 1;
                        return out;
                    }
                };
                // Segments to a unicast address are acknowledged.
                if open.dst == self.address {
                    let (seq_zero, block) = outcome.ack;
                    if let Ok(acks) = self.network(true, open.src, vec![ack_pdu(seq_zero, block)]) {
                        out.send = acks;
                    }
                }
                match outcome.done {
                    Some(done) => (done.akf_aid, done.szmic, done.seq_auth, done.upper),
                    None => return out,
                }
            }
            // Acknowledgments of what this element sent, and other
            // control messages, end here (no retransmission over a proxy
            // link; see the module docs).
            LowerPdu::Ack { .. } | LowerPdu::Control { .. } => return out,
        };
        let meta = AccessMeta {
            src: open.src,
            dst: open.dst,
            seq: seq_auth,
            iv_index: iv,
        };
        let device = self.device_key_for(open.src).map(AccessKey::Device);
        let candidates: Vec<AccessKey> = self
            .app_keys
            .iter()
            .map(|(_, k)| *k)
            .chain(device)
            .collect();
        match open_access(akf_aid, szmic, &candidates, &meta, &upper) {
            Ok(payload) => {
                let key = match akf_aid & 0x40 {
                    0 => KeyUse::Device,
                    _ => self
                        .app_keys
                        .iter()
                        .find(|(_, k)| matches!(k, AccessKey::App { aid, .. } if *aid == akf_aid & 0x3f))
                        .map_or(KeyUse::Device, |(i, _)| KeyUse::App(*i)),
                };
                out.delivered = Some(Delivered {
                    src: open.src,
                    dst: open.dst,
                    key,
                    payload,
                });
            }
            Err(_) => self.dropped.bad_transport_mic += 1,
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stack, Stack) {
        let net = [0x11; 16];
        let mut client = Stack::new(net, 9, 0x0001);
        let mut node = Stack::new(net, 9, 0x0100);
        client.add_device_key(0x0100, [0x22; 16]);
        node.add_device_key(0x0100, [0x22; 16]);
        client.add_app_key(0, [0x33; 16]);
        node.add_app_key(0, [0x33; 16]);
        (client, node)
    }

    #[test]
    fn long_messages_are_segmented_acknowledged_and_delivered() {
        let (mut client, mut node) = pair();
        let payload = vec![0x00; 20];
        let pdus = client.send(0x0100, KeyUse::Device, &payload).unwrap();
        assert_eq!(pdus.len(), 2);
        let first = node.receive(&pdus[0], 0);
        assert_eq!(first.delivered, None);
        assert_eq!(first.send.len(), 1);
        let second = node.receive(&pdus[1], 1);
        assert_eq!(
            second.delivered,
            Some(Delivered {
                src: 1,
                dst: 0x0100,
                key: KeyUse::Device,
                payload
            })
        );
        // The acknowledgments reach the client and end there.
        assert_eq!(client.receive(&second.send[0], 2), Received::default());
        assert_eq!(client.dropped, DropCounts::default());
    }

    #[test]
    fn replays_and_tampering_are_dropped_and_counted() {
        let (mut client, mut node) = pair();
        let pdus = client.send(0x0100, KeyUse::App(0), &[0x82, 0x01]).unwrap();
        assert!(node.receive(&pdus[0], 0).delivered.is_some());
        assert!(node.receive(&pdus[0], 1).delivered.is_none());
        assert_eq!(node.dropped.replayed, 1);
        let mut bad = client
            .send(0x0100, KeyUse::App(0), &[0x82, 0x01])
            .unwrap()
            .remove(0);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(node.receive(&bad, 2).delivered.is_none());
        assert_eq!(node.dropped.bad_network_mic, 1);
        // An app key the node does not hold.
        client.add_app_key(1, [0x44; 16]);
        let other = client.send(0x0100, KeyUse::App(1), &[0x82, 0x01]).unwrap();
        assert!(node.receive(&other[0], 3).delivered.is_none());
        assert_eq!(node.dropped.bad_transport_mic, 1);
        assert_eq!(
            client.send(0x0100, KeyUse::App(7), &[1]),
            Err(StackError::NoAppKey { index: 7 })
        );
    }
}
