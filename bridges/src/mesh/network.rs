//! The network layer (Mesh Profile 1.0.1 §3.4): the Network PDU, its
//! encryption with the network key's EncryptionKey (AES-CCM over DST and
//! the transport PDU, §3.8.7.2) and the obfuscation of its header with the
//! PrivacyKey (§3.8.7.3). Pure: keys, the IV index and sequence numbers
//! come in as arguments.

use super::crypto::{aes_ecb, ccm_decrypt, ccm_encrypt, k2, k3, Key, MicSize, Nonce};

/// A network key with what §3.8.6.3 derives from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetKey {
    pub key: Key,
    pub nid: u8,
    pub encryption: Key,
    pub privacy: Key,
    pub network_id: [u8; 8],
}

impl NetKey {
    pub fn new(key: Key) -> NetKey {
        let derived = k2(&key, &[0x00]);
        NetKey {
            key,
            nid: derived.nid,
            encryption: derived.encryption,
            privacy: derived.privacy,
            network_id: k3(&key),
        }
    }
}

/// Which nonce a PDU is sealed with: mesh traffic, or a proxy
/// configuration message between a proxy client and server (§3.8.5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceKind {
    Network,
    Proxy,
}

/// A Network PDU in the clear (§3.4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPdu {
    /// A transport control message (64-bit NetMIC) rather than an access
    /// message (32-bit).
    pub ctl: bool,
    pub ttl: u8,
    /// 24 bits.
    pub seq: u32,
    pub src: u16,
    pub dst: u16,
    pub transport: Vec<u8>,
}

/// Why a received Network PDU was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("a network PDU of {len} octets is shorter than its header, DST and MIC")]
    TooShort { len: usize },
    #[error("a network PDU of {len} octets is longer than the 29 an advertising bearer carries")]
    TooLong { len: usize },
    #[error("NID {found:#04x} is not this network's ({expected:#04x})")]
    OtherNetwork { found: u8, expected: u8 },
    #[error("the NetMIC does not verify (tampered, or another key or IV index)")]
    BadMic,
    #[error("the source {src:#06x} is not a unicast address")]
    SourceNotUnicast { src: u16 },
    #[error("TTL, sequence number or transport PDU out of range")]
    OutOfRange,
}

/// The longest Network PDU (§3.4.4: 29 octets on the advertising bearer).
pub const MAX_PDU: usize = 29;

pub fn is_unicast(address: u16) -> bool {
    address != 0 && address & 0x8000 == 0
}

fn mic_size(ctl: bool) -> MicSize {
    if ctl {
        MicSize::Bits64
    } else {
        MicSize::Bits32
    }
}

/// The network or proxy nonce (§3.8.5.1, §3.8.5.4).
fn nonce(kind: NonceKind, ctl: bool, ttl: u8, seq: u32, src: u16, iv_index: u32) -> Nonce {
    let mut n = [0u8; 13];
    match kind {
        NonceKind::Network => {
            n[0] = 0x00;
            n[1] = (u8::from(ctl) << 7) | (ttl & 0x7f);
        }
        NonceKind::Proxy => {
            n[0] = 0x03;
            n[1] = 0x00;
        }
    }
    n[2..5].copy_from_slice(&seq.to_be_bytes()[1..]);
    n[5..7].copy_from_slice(&src.to_be_bytes());
    n[9..13].copy_from_slice(&iv_index.to_be_bytes());
    n
}

/// PECB = e(PrivacyKey, 0x0000000000 || IV index || Privacy Random), the
/// first six octets (§3.8.7.3).
fn pecb(privacy: &Key, iv_index: u32, random: &[u8]) -> [u8; 6] {
    let mut block = [0u8; 16];
    block[5..9].copy_from_slice(&iv_index.to_be_bytes());
    block[9..16].copy_from_slice(&random[..7]);
    let out = aes_ecb(privacy, &block);
    let mut first = [0u8; 6];
    first.copy_from_slice(&out[..6]);
    first
}

impl NetworkPdu {
    /// Encrypts and obfuscates this PDU under `net` at `iv_index`.
    pub fn seal(
        &self,
        net: &NetKey,
        iv_index: u32,
        kind: NonceKind,
    ) -> Result<Vec<u8>, NetworkError> {
        let mic = mic_size(self.ctl);
        if self.ttl > 0x7f
            || self.seq > 0x00ff_ffff
            || 9 + self.transport.len() + mic.octets() > MAX_PDU
        {
            return Err(NetworkError::OutOfRange);
        }
        let nonce = nonce(kind, self.ctl, self.ttl, self.seq, self.src, iv_index);
        let mut plain = self.dst.to_be_bytes().to_vec();
        plain.extend_from_slice(&self.transport);
        let sealed = ccm_encrypt(&net.encryption, &nonce, &plain, &[], mic);
        let pecb = pecb(&net.privacy, iv_index, &sealed);
        let mut header = [0u8; 6];
        header[0] = (u8::from(self.ctl) << 7) | self.ttl;
        header[1..4].copy_from_slice(&self.seq.to_be_bytes()[1..]);
        header[4..6].copy_from_slice(&self.src.to_be_bytes());
        let mut out = Vec::with_capacity(7 + sealed.len());
        out.push(((iv_index as u8 & 1) << 7) | net.nid);
        out.extend(header.iter().zip(pecb).map(|(h, p)| h ^ p));
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Deobfuscates and decrypts `pdu`. The IVI bit picks the current IV
    /// index or the one before it (§3.10.5). Returns the PDU and the IV
    /// index it was sealed under.
    pub fn open(
        pdu: &[u8],
        net: &NetKey,
        iv_index: u32,
        kind: NonceKind,
    ) -> Result<(NetworkPdu, u32), NetworkError> {
        if pdu.len() > MAX_PDU {
            return Err(NetworkError::TooLong { len: pdu.len() });
        }
        // Header, DST, and the smaller MIC, with at least one transport octet.
        if pdu.len() < 7 + 2 + 1 + 4 {
            return Err(NetworkError::TooShort { len: pdu.len() });
        }
        let nid = pdu[0] & 0x7f;
        if nid != net.nid {
            return Err(NetworkError::OtherNetwork {
                found: nid,
                expected: net.nid,
            });
        }
        let ivi = u32::from(pdu[0] >> 7);
        let iv = if iv_index & 1 == ivi {
            iv_index
        } else {
            iv_index.checked_sub(1).ok_or(NetworkError::BadMic)?
        };
        let sealed = &pdu[7..];
        let pecb = pecb(&net.privacy, iv, sealed);
        let mut header = [0u8; 6];
        for (i, byte) in header.iter_mut().enumerate() {
            *byte = pdu[1 + i] ^ pecb[i];
        }
        let ctl = header[0] & 0x80 != 0;
        let ttl = header[0] & 0x7f;
        let seq = u32::from_be_bytes([0, header[1], header[2], header[3]]);
        let src = u16::from_be_bytes([header[4], header[5]]);
        let mic = mic_size(ctl);
        if sealed.len() < 2 + 1 + mic.octets() {
            return Err(NetworkError::TooShort { len: pdu.len() });
        }
        let nonce = nonce(kind, ctl, ttl, seq, src, iv);
        let plain =
            ccm_decrypt(&net.encryption, &nonce, sealed, &[], mic).ok_or(NetworkError::BadMic)?;
        if !is_unicast(src) {
            return Err(NetworkError::SourceNotUnicast { src });
        }
        let dst = u16::from_be_bytes([plain[0], plain[1]]);
        Ok((
            NetworkPdu {
                ctl,
                ttl,
                seq,
                src,
                dst,
                transport: plain[2..].to_vec(),
            },
            iv,
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Mesh Profile 1.0.1 §8.3, the message samples, byte-exact both ways.
    use super::*;

    pub(crate) fn sample_net() -> NetKey {
        NetKey::new(
            hex::decode("7dd7364cd842ad18c17c2b820c84c3d6")
                .unwrap()
                .try_into()
                .unwrap(),
        )
    }

    const IV: u32 = 0x1234_5678;

    fn both_ways(pdu: NetworkPdu, expected: &str) {
        let net = sample_net();
        let sealed = pdu.seal(&net, IV, NonceKind::Network).unwrap();
        assert_eq!(hex::encode(&sealed), expected);
        let (opened, iv) = NetworkPdu::open(&sealed, &net, IV, NonceKind::Network).unwrap();
        assert_eq!((opened, iv), (pdu, IV));
    }

    #[test]
    fn message_1_a_control_message_8_3_1() {
        both_ways(
            NetworkPdu {
                ctl: true,
                ttl: 0,
                seq: 1,
                src: 0x1201,
                dst: 0xfffd,
                transport: hex::decode("034b50057e400000010000").unwrap(),
            },
            "68eca487516765b5e5bfdacbaf6cb7fb6bff871f035444ce83a670df",
        );
    }

    #[test]
    fn message_18_an_access_message_8_3_18() {
        both_ways(
            NetworkPdu {
                ctl: false,
                ttl: 3,
                seq: 7,
                src: 0x1201,
                dst: 0xffff,
                transport: hex::decode("665a8bde6d9106ea078a").unwrap(),
            },
            "6848cba437860e5673728a627fb938535508e21a6baf57",
        );
    }

    #[test]
    fn message_6_segments_8_3_6() {
        for (seq, transport, expected) in [
            (
                0x3129ab,
                "8026ac01ee9dddfd2169326d23f3afdf",
                "68cab5c5348a230afba8c63d4e686364979deaf4fd40961145939cda0e",
            ),
            (
                0x3129ac,
                "8026ac21cfdc18c52fdef772e0e17308",
                "681615b5dd4a846cae0c032bf0746f44f1b8cc8ce5edc57e55beed49c0",
            ),
        ] {
            both_ways(
                NetworkPdu {
                    ctl: false,
                    ttl: 4,
                    seq,
                    src: 0x0003,
                    dst: 0x1201,
                    transport: hex::decode(transport).unwrap(),
                },
                expected,
            );
        }
    }

    #[test]
    fn tampered_foreign_and_short_pdus_are_refused() {
        let net = sample_net();
        let pdu = hex::decode("6848cba437860e5673728a627fb938535508e21a6baf57").unwrap();
        for i in 1..pdu.len() {
            let mut bad = pdu.clone();
            bad[i] ^= 0x10;
            assert!(
                NetworkPdu::open(&bad, &net, IV, NonceKind::Network).is_err(),
                "octet {i}"
            );
        }
        let mut other = pdu.clone();
        other[0] ^= 0x01;
        assert!(matches!(
            NetworkPdu::open(&other, &net, IV, NonceKind::Network),
            Err(NetworkError::OtherNetwork { .. })
        ));
        assert_eq!(
            NetworkPdu::open(&pdu[..13], &net, IV, NonceKind::Network),
            Err(NetworkError::TooShort { len: 13 })
        );
        // The IV index after an update still opens a PDU of the one before
        // (IVI tells), the one after that does not.
        assert!(NetworkPdu::open(&pdu, &net, IV + 1, NonceKind::Network).is_ok());
        assert_eq!(
            NetworkPdu::open(&pdu, &net, IV + 2, NonceKind::Network),
            Err(NetworkError::BadMic)
        );
        // The proxy nonce is not the network nonce.
        assert_eq!(
            NetworkPdu::open(&pdu, &net, IV, NonceKind::Proxy),
            Err(NetworkError::BadMic)
        );
    }
}
