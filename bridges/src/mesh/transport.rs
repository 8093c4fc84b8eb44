//! The transport layers (Mesh Profile 1.0.1 §3.5–3.6): the upper
//! transport encrypts an access message with an application key or a
//! device key (§3.8.7.1); the lower transport carries it in one
//! unsegmented PDU or in segments of 12 octets, reassembled at the other
//! end and acknowledged with a block mask (§3.5.3). Pure: sequence
//! numbers, the IV index and time are arguments.

use std::collections::HashMap;

use super::crypto::{ccm_decrypt, ccm_encrypt, k4, Key, MicSize, Nonce};

/// Which key secures an access message: an application key (`AKF` = 1,
/// with its 6-bit AID) or the destination's device key (`AKF` = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKey {
    App { key: Key, aid: u8 },
    Device(Key),
}

impl AccessKey {
    pub fn app(key: Key) -> AccessKey {
        AccessKey::App { key, aid: k4(&key) }
    }

    pub fn key(&self) -> &Key {
        match self {
            AccessKey::App { key, .. } | AccessKey::Device(key) => key,
        }
    }

    /// The lower transport header's AKF and AID bits.
    fn akf_aid(&self) -> u8 {
        match self {
            AccessKey::App { aid, .. } => 0x40 | (aid & 0x3f),
            AccessKey::Device(_) => 0x00,
        }
    }
}

/// The application or device nonce (§3.8.5.2, §3.8.5.3).
fn nonce(key: &AccessKey, szmic: bool, seq_auth: u32, src: u16, dst: u16, iv_index: u32) -> Nonce {
    let mut n = [0u8; 13];
    n[0] = match key {
        AccessKey::App { .. } => 0x01,
        AccessKey::Device(_) => 0x02,
    };
    n[1] = u8::from(szmic) << 7;
    n[2..5].copy_from_slice(&seq_auth.to_be_bytes()[1..]);
    n[5..7].copy_from_slice(&src.to_be_bytes());
    n[7..9].copy_from_slice(&dst.to_be_bytes());
    n[9..13].copy_from_slice(&iv_index.to_be_bytes());
    n
}

/// An access message's addressing and sequence, as both ends know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessMeta {
    pub src: u16,
    pub dst: u16,
    /// The sequence number of the first segment (SeqAuth's low 24 bits).
    pub seq: u32,
    pub iv_index: u32,
}

/// Most octets of an access message in one unsegmented PDU (15 octets of
/// upper transport PDU less the 32-bit TransMIC).
pub const MAX_UNSEGMENTED_ACCESS: usize = 11;
/// Octets of upper transport PDU per segment.
pub const SEGMENT: usize = 12;
/// Most segments of one message (SegN is 5 bits).
pub const MAX_SEGMENTS: usize = 32;

/// Why an access message could not be sent or was dropped on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("an access message of {len} octets is longer than 32 segments carry")]
    TooLong { len: usize },
    #[error("a lower transport PDU of {len} octets is malformed")]
    Malformed { len: usize },
    #[error("the TransMIC does not verify under any key held for this message")]
    BadMic,
    #[error("segment {seg_o} of {seg_n} does not fit the message being reassembled")]
    BadSegment { seg_o: u8, seg_n: u8 },
}

/// Encrypts `access` and splits it into lower transport PDUs: one
/// unsegmented PDU if it fits, else segments (SZMIC 0, a 32-bit TransMIC).
/// Segment `i` goes out with sequence number `meta.seq + i`.
pub fn seal_access(
    key: &AccessKey,
    meta: &AccessMeta,
    access: &[u8],
) -> Result<Vec<Vec<u8>>, TransportError> {
    if access.len() + 4 > SEGMENT * MAX_SEGMENTS {
        return Err(TransportError::TooLong { len: access.len() });
    }
    let nonce = nonce(key, false, meta.seq, meta.src, meta.dst, meta.iv_index);
    let upper = ccm_encrypt(key.key(), &nonce, access, &[], MicSize::Bits32);
    if access.len() <= MAX_UNSEGMENTED_ACCESS {
        let mut pdu = vec![key.akf_aid()];
        pdu.extend_from_slice(&upper);
        return Ok(vec![pdu]);
    }
    let seq_zero = (meta.seq & 0x1fff) as u16;
    let chunks: Vec<&[u8]> = upper.chunks(SEGMENT).collect();
    let seg_n = (chunks.len() - 1) as u8;
    Ok(chunks
        .iter()
        .enumerate()
        .map(|(seg_o, chunk)| {
            let header = segment_header(false, seq_zero, seg_o as u8, seg_n);
            let mut pdu = vec![0x80 | key.akf_aid()];
            pdu.extend_from_slice(&header);
            pdu.extend_from_slice(chunk);
            pdu
        })
        .collect())
}

/// SZMIC (1) | SeqZero (13) | SegO (5) | SegN (5), big-endian.
fn segment_header(szmic: bool, seq_zero: u16, seg_o: u8, seg_n: u8) -> [u8; 3] {
    let bits = (u32::from(szmic) << 23)
        | (u32::from(seq_zero & 0x1fff) << 10)
        | (u32::from(seg_o & 0x1f) << 5)
        | u32::from(seg_n & 0x1f);
    let b = bits.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Decrypts an upper transport access PDU with whichever of `keys`
/// matches its AKF/AID (§3.6.4.1).
pub fn open_access(
    akf_aid: u8,
    szmic: bool,
    keys: &[AccessKey],
    meta: &AccessMeta,
    upper: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let mic = if szmic {
        MicSize::Bits64
    } else {
        MicSize::Bits32
    };
    if upper.len() <= mic.octets() {
        return Err(TransportError::Malformed { len: upper.len() });
    }
    keys.iter()
        .filter(|k| k.akf_aid() == akf_aid & 0x7f)
        .find_map(|k| {
            let nonce = nonce(k, szmic, meta.seq, meta.src, meta.dst, meta.iv_index);
            ccm_decrypt(k.key(), &nonce, upper, &[], mic)
        })
        .ok_or(TransportError::BadMic)
}

/// A lower transport PDU as received (§3.5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LowerPdu {
    /// An access message in one PDU.
    Unsegmented { akf_aid: u8, upper: Vec<u8> },
    /// One segment of an access message.
    Segment {
        akf_aid: u8,
        szmic: bool,
        seq_zero: u16,
        seg_o: u8,
        seg_n: u8,
        data: Vec<u8>,
    },
    /// A Segment Acknowledgment (control opcode 0x00, §3.5.2.3.1).
    Ack {
        obo: bool,
        seq_zero: u16,
        block: u32,
    },
    /// Another transport control message (opcode, parameters).
    Control { opcode: u8, params: Vec<u8> },
}

impl LowerPdu {
    pub fn parse(ctl: bool, pdu: &[u8]) -> Result<LowerPdu, TransportError> {
        let malformed = TransportError::Malformed { len: pdu.len() };
        let (&first, rest) = pdu.split_first().ok_or(malformed)?;
        let seg = first & 0x80 != 0;
        match (ctl, seg) {
            (false, false) => {
                if rest.len() < 5 {
                    return Err(malformed);
                }
                Ok(LowerPdu::Unsegmented {
                    akf_aid: first & 0x7f,
                    upper: rest.to_vec(),
                })
            }
            (false, true) => {
                if rest.len() < 4 {
                    return Err(malformed);
                }
                let bits = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]);
                let (seg_o, seg_n) = (((bits >> 5) & 0x1f) as u8, (bits & 0x1f) as u8);
                if seg_o > seg_n {
                    return Err(TransportError::BadSegment { seg_o, seg_n });
                }
                Ok(LowerPdu::Segment {
                    akf_aid: first & 0x7f,
                    szmic: bits & 0x80_0000 != 0,
                    seq_zero: ((bits >> 10) & 0x1fff) as u16,
                    seg_o,
                    seg_n,
                    data: rest[3..].to_vec(),
                })
            }
            (true, false) if first & 0x7f == 0x00 => {
                if rest.len() != 6 {
                    return Err(malformed);
                }
                let head = u16::from_be_bytes([rest[0], rest[1]]);
                Ok(LowerPdu::Ack {
                    obo: head & 0x8000 != 0,
                    seq_zero: (head >> 2) & 0x1fff,
                    block: u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]),
                })
            }
            (true, false) => Ok(LowerPdu::Control {
                opcode: first & 0x7f,
                params: rest.to_vec(),
            }),
            // Segmented control messages are not used by a proxy client.
            (true, true) => Err(malformed),
        }
    }
}

/// A Segment Acknowledgment's transport PDU (CTL = 1).
pub fn ack_pdu(seq_zero: u16, block: u32) -> Vec<u8> {
    let head = (seq_zero & 0x1fff) << 2;
    let mut pdu = vec![0x00];
    pdu.extend_from_slice(&head.to_be_bytes());
    pdu.extend_from_slice(&block.to_be_bytes());
    pdu
}

/// How long an incomplete message is kept (§3.5.3.4: at least 10 s).
pub const INCOMPLETE_TIMEOUT_MS: u64 = 10_000;

struct Partial {
    akf_aid: u8,
    szmic: bool,
    seg_n: u8,
    seq_auth: u32,
    parts: Vec<Option<Vec<u8>>>,
    started_ms: u64,
}

/// A message [`Reassembly`] completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    pub akf_aid: u8,
    pub szmic: bool,
    /// The first segment's sequence number (SeqAuth's low 24 bits).
    pub seq_auth: u32,
    pub upper: Vec<u8>,
}

/// Segments in, whole upper transport PDUs and acknowledgments out
/// (§3.5.3.3–3.5.3.4), per source.
#[derive(Default)]
pub struct Reassembly {
    partial: HashMap<u16, Partial>,
}

/// What a received segment did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentOutcome {
    /// The message, once every segment is in.
    pub done: Option<Reassembled>,
    /// The block mask to acknowledge (SeqZero, BlockAck).
    pub ack: (u16, u32),
}

impl Reassembly {
    /// Takes one segment from `src`, received in a network PDU with
    /// sequence number `seq`, at `now_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_segment(
        &mut self,
        src: u16,
        seq: u32,
        akf_aid: u8,
        szmic: bool,
        seq_zero: u16,
        seg_o: u8,
        seg_n: u8,
        data: &[u8],
        now_ms: u64,
    ) -> Result<SegmentOutcome, TransportError> {
        // SeqAuth: the sequence number whose low 13 bits are SeqZero, at
        // or below this segment's (§3.5.3.1).
        let delta = (seq.wrapping_sub(u32::from(seq_zero))) & 0x1fff;
        let seq_auth = seq.wrapping_sub(delta) & 0x00ff_ffff;
        let fresh = match self.partial.get(&src) {
            Some(p) => {
                p.seq_auth != seq_auth
                    || now_ms.saturating_sub(p.started_ms) > INCOMPLETE_TIMEOUT_MS
            }
            None => true,
        };
        if fresh {
            self.partial.insert(
                src,
                Partial {
                    akf_aid,
                    szmic,
                    seg_n,
                    seq_auth,
                    parts: vec![None; usize::from(seg_n) + 1],
                    started_ms: now_ms,
                },
            );
        }
        let partial = self
            .partial
            .get_mut(&src)
            .ok_or(TransportError::BadSegment { seg_o, seg_n })?;
        let last = seg_o == seg_n;
        if partial.seg_n != seg_n
            || seg_o > seg_n
            || data.is_empty()
            || data.len() > SEGMENT
            || (!last && data.len() != SEGMENT)
        {
            return Err(TransportError::BadSegment { seg_o, seg_n });
        }
        partial.parts[usize::from(seg_o)] = Some(data.to_vec());
        let block = partial
            .parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .fold(0u32, |mask, (i, _)| mask | (1 << i));
        let ack = (seq_zero, block);
        if partial.parts.iter().all(Option::is_some) {
            let upper = partial.parts.iter().flatten().flatten().copied().collect();
            let done = Reassembled {
                akf_aid: partial.akf_aid,
                szmic: partial.szmic,
                seq_auth: partial.seq_auth,
                upper,
            };
            self.partial.remove(&src);
            return Ok(SegmentOutcome {
                done: Some(done),
                ack,
            });
        }
        Ok(SegmentOutcome { done: None, ack })
    }

    /// Drops messages incomplete for longer than the timeout.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.partial.len();
        self.partial
            .retain(|_, p| now_ms.saturating_sub(p.started_ms) <= INCOMPLETE_TIMEOUT_MS);
        before - self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    //! Mesh Profile 1.0.1 §8.3, the message samples' transport layers.
    use super::*;

    fn key(text: &str) -> Key {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    const IV: u32 = 0x1234_5678;

    fn device_key() -> AccessKey {
        AccessKey::Device(key("9d6dd0e96eb25dc19a40ed9914f8f03f"))
    }

    fn app_key() -> AccessKey {
        AccessKey::app(key("63964771734fbd76e3b40519d1d94a48"))
    }

    #[test]
    fn message_6_config_appkey_add_segmented_with_the_device_key_8_3_6() {
        let meta = AccessMeta {
            src: 0x0003,
            dst: 0x1201,
            seq: 0x3129ab,
            iv_index: IV,
        };
        let access = hex::decode("0056341263964771734fbd76e3b40519d1d94a48").unwrap();
        let pdus = seal_access(&device_key(), &meta, &access).unwrap();
        let hexes: Vec<String> = pdus.iter().map(hex::encode).collect();
        assert_eq!(
            hexes,
            [
                "8026ac01ee9dddfd2169326d23f3afdf",
                "8026ac21cfdc18c52fdef772e0e17308"
            ]
        );
        // And back: reassembled (out of order), acknowledged, decrypted.
        let mut reassembly = Reassembly::default();
        let mut last = None;
        for (i, pdu) in pdus.iter().enumerate().rev() {
            let LowerPdu::Segment {
                akf_aid,
                szmic,
                seq_zero,
                seg_o,
                seg_n,
                data,
            } = LowerPdu::parse(false, pdu).unwrap()
            else {
                panic!("a segment");
            };
            let outcome = reassembly
                .handle_segment(
                    0x0003,
                    meta.seq + i as u32,
                    akf_aid,
                    szmic,
                    seq_zero,
                    seg_o,
                    seg_n,
                    &data,
                    0,
                )
                .unwrap();
            last = Some(outcome);
        }
        let outcome = last.unwrap();
        assert_eq!(outcome.ack, (0x09ab, 0b11));
        let done = outcome.done.unwrap();
        assert_eq!(done.seq_auth, 0x3129ab);
        let opened = open_access(
            done.akf_aid,
            done.szmic,
            &[app_key(), device_key()],
            &meta,
            &done.upper,
        )
        .unwrap();
        assert_eq!(opened, access);
    }

    #[test]
    fn message_16_config_appkey_status_with_the_device_key_8_3_16() {
        let meta = AccessMeta {
            src: 0x1201,
            dst: 0x0003,
            seq: 0x000006,
            iv_index: IV,
        };
        let access = hex::decode("800300563412").unwrap();
        let pdus = seal_access(&device_key(), &meta, &access).unwrap();
        assert_eq!(hex::encode(&pdus[0]), "0089511bf1d1a81c11dcef");
    }

    #[test]
    fn message_18_health_current_status_with_the_application_key_8_3_18() {
        let meta = AccessMeta {
            src: 0x1201,
            dst: 0xffff,
            seq: 0x000007,
            iv_index: IV,
        };
        let app = app_key();
        assert!(matches!(app, AccessKey::App { aid: 0x26, .. }));
        let pdus = seal_access(&app, &meta, &hex::decode("0400000000").unwrap()).unwrap();
        assert_eq!(hex::encode(&pdus[0]), "665a8bde6d9106ea078a");
        let LowerPdu::Unsegmented { akf_aid, upper } = LowerPdu::parse(false, &pdus[0]).unwrap()
        else {
            panic!("unsegmented");
        };
        assert_eq!(
            open_access(akf_aid, false, &[device_key(), app], &meta, &upper).unwrap(),
            hex::decode("0400000000").unwrap()
        );
        // Another sequence number (a replay re-stamped, a forged header)
        // does not open.
        let other = AccessMeta { seq: 8, ..meta };
        assert_eq!(
            open_access(akf_aid, false, &[app], &other, &upper),
            Err(TransportError::BadMic)
        );
    }

    #[test]
    fn acknowledgments_round_trip() {
        let pdu = ack_pdu(0x09ab, 0b11);
        assert_eq!(
            LowerPdu::parse(true, &pdu).unwrap(),
            LowerPdu::Ack {
                obo: false,
                seq_zero: 0x09ab,
                block: 0b11
            }
        );
    }

    #[test]
    fn stale_partial_messages_expire_and_bad_segments_are_refused() {
        let mut r = Reassembly::default();
        let first = r
            .handle_segment(5, 100, 0x40, false, 100, 0, 2, &[0; 12], 0)
            .unwrap();
        assert_eq!(first.ack, (100, 0b1));
        assert!(first.done.is_none());
        // A segment claiming a different count, or a short middle one.
        assert!(r
            .handle_segment(5, 101, 0x40, false, 100, 1, 3, &[0; 12], 1)
            .is_err());
        assert!(r
            .handle_segment(5, 101, 0x40, false, 100, 1, 2, &[0; 5], 1)
            .is_err());
        assert_eq!(r.expire(INCOMPLETE_TIMEOUT_MS), 0);
        assert_eq!(r.expire(INCOMPLETE_TIMEOUT_MS + 1), 1);
    }
}
