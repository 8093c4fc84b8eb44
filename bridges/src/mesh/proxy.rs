//! The proxy protocol (Mesh Profile 1.0.1 §6): how mesh PDUs cross a GATT
//! connection. Each Proxy PDU starts with SAR (2 bits) and a message type
//! (6 bits); a PDU longer than the connection allows is split into first,
//! continuation and last segments (§6.3.1), reassembled in order at the
//! other end. Proxy configuration messages (§6.5) set the server's filter;
//! they travel as network PDUs sealed with the proxy nonce, CTL = 1,
//! TTL 0, DST unassigned.

/// The Mesh Proxy service and its characteristics (§7.2).
pub const PROXY_SERVICE: u16 = 0x1828;
pub const PROXY_DATA_IN: u16 = 0x2add;
pub const PROXY_DATA_OUT: u16 = 0x2ade;
/// The Mesh Provisioning service and its characteristics (§7.1).
pub const PROVISIONING_SERVICE: u16 = 0x1827;
pub const PROVISIONING_DATA_IN: u16 = 0x2adb;
pub const PROVISIONING_DATA_OUT: u16 = 0x2adc;

/// What a Proxy PDU carries (§6.3.1, Table 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Network = 0x00,
    Beacon = 0x01,
    Configuration = 0x02,
    Provisioning = 0x03,
}

impl MessageType {
    fn from_bits(bits: u8) -> Option<MessageType> {
        match bits {
            0x00 => Some(MessageType::Network),
            0x01 => Some(MessageType::Beacon),
            0x02 => Some(MessageType::Configuration),
            0x03 => Some(MessageType::Provisioning),
            _ => None,
        }
    }
}

const COMPLETE: u8 = 0b00;
const FIRST: u8 = 0b01;
const CONTINUATION: u8 = 0b10;
const LAST: u8 = 0b11;

/// The longest message reassembled (a provisioning PDU is at most 65
/// octets, a network PDU 29; this leaves room for both).
pub const MAX_MESSAGE: usize = 128;

/// Splits `message` into Proxy PDUs of at most `mtu` octets (an ATT write
/// without response carries ATT_MTU − 3: 20 with the default MTU of 23).
pub fn segment(kind: MessageType, message: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let room = mtu.saturating_sub(1).max(1);
    if message.len() <= room {
        let mut pdu = vec![(COMPLETE << 6) | kind as u8];
        pdu.extend_from_slice(message);
        return vec![pdu];
    }
    let chunks: Vec<&[u8]> = message.chunks(room).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let sar = match i {
                0 => FIRST,
                i if i == last => LAST,
                _ => CONTINUATION,
            };
            let mut pdu = vec![(sar << 6) | kind as u8];
            pdu.extend_from_slice(chunk);
            pdu
        })
        .collect()
}

/// Why a Proxy PDU was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("an empty proxy PDU")]
    Empty,
    #[error("message type {bits:#04x} is reserved")]
    ReservedType { bits: u8 },
    #[error("a continuation or last segment with no first segment before it")]
    Unexpected,
    #[error("a segment of another message type arrived mid-message")]
    TypeChanged,
    #[error("a segmented message grew past {MAX_MESSAGE} octets")]
    TooLong,
}

/// Proxy PDUs in, whole messages out (one connection, one direction).
#[derive(Debug, Default)]
pub struct ProxyReassembler {
    pending: Option<(MessageType, Vec<u8>)>,
}

impl ProxyReassembler {
    /// Takes one PDU; a whole message comes out when one is complete. An
    /// error drops whatever was half-assembled (§6.3.2: the connection's
    /// next message starts afresh).
    pub fn handle(&mut self, pdu: &[u8]) -> Result<Option<(MessageType, Vec<u8>)>, ProxyError> {
        let result = self.take(pdu);
        if result.is_err() {
            self.pending = None;
        }
        result
    }

    fn take(&mut self, pdu: &[u8]) -> Result<Option<(MessageType, Vec<u8>)>, ProxyError> {
        let (&head, body) = pdu.split_first().ok_or(ProxyError::Empty)?;
        let bits = head & 0x3f;
        let kind = MessageType::from_bits(bits).ok_or(ProxyError::ReservedType { bits })?;
        match head >> 6 {
            COMPLETE => {
                // A complete PDU in the middle of a segmented one is a
                // protocol error; the half message is dropped.
                if self.pending.is_some() {
                    return Err(ProxyError::Unexpected);
                }
                Ok(Some((kind, body.to_vec())))
            }
            FIRST => {
                self.pending = Some((kind, body.to_vec()));
                Ok(None)
            }
            sar => {
                let (pending_kind, buffer) = self.pending.as_mut().ok_or(ProxyError::Unexpected)?;
                if *pending_kind != kind {
                    return Err(ProxyError::TypeChanged);
                }
                if buffer.len() + body.len() > MAX_MESSAGE {
                    return Err(ProxyError::TooLong);
                }
                buffer.extend_from_slice(body);
                if sar == LAST {
                    Ok(self.pending.take())
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// The proxy filter types (§6.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    /// Only the listed destinations are forwarded to the client.
    Accept = 0x00,
    /// All but the listed ones are.
    Reject = 0x01,
}

/// Set Filter Type (opcode 0x00).
pub fn set_filter_type(filter: FilterType) -> Vec<u8> {
    vec![0x00, filter as u8]
}

/// Add Addresses to Filter (opcode 0x01).
pub fn add_addresses(addresses: &[u16]) -> Vec<u8> {
    let mut pdu = vec![0x01];
    for a in addresses {
        pdu.extend_from_slice(&a.to_be_bytes());
    }
    pdu
}

/// Remove Addresses from Filter (opcode 0x02).
pub fn remove_addresses(addresses: &[u16]) -> Vec<u8> {
    let mut pdu = vec![0x02];
    for a in addresses {
        pdu.extend_from_slice(&a.to_be_bytes());
    }
    pdu
}

/// Filter Status (opcode 0x03): the filter's type and its list's length.
pub fn parse_filter_status(pdu: &[u8]) -> Option<(FilterType, u16)> {
    match pdu {
        [0x03, kind, hi, lo] => {
            let kind = match kind {
                0x00 => FilterType::Accept,
                0x01 => FilterType::Reject,
                _ => return None,
            };
            Some((kind, u16::from_be_bytes([*hi, *lo])))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_pdu_splits_into_20_octet_writes_and_back() {
        // §8.3.18's network PDU, 23 octets: one complete PDU at a large
        // MTU, first + last at the default ATT MTU (20-octet writes).
        let pdu = hex::decode("6848cba437860e5673728a627fb938535508e21a6baf57").unwrap();
        let whole = segment(MessageType::Network, &pdu, 64);
        assert_eq!(
            hex::encode(&whole[0]),
            "006848cba437860e5673728a627fb938535508e21a6baf57"
        );
        let parts = segment(MessageType::Network, &pdu, 20);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 20));
        assert_eq!(parts[0][0], 0x40);
        assert_eq!(parts[1][0], 0xc0);
        let mut r = ProxyReassembler::default();
        assert_eq!(r.handle(&parts[0]), Ok(None));
        assert_eq!(
            r.handle(&parts[1]),
            Ok(Some((MessageType::Network, pdu.clone())))
        );
        // Three segments: first, continuation, last.
        let parts = segment(MessageType::Provisioning, &[7; 45], 20);
        assert_eq!(
            parts.iter().map(|p| p[0] >> 6).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn out_of_order_reserved_and_oversized_pdus_are_refused() {
        let mut r = ProxyReassembler::default();
        assert_eq!(r.handle(&[]), Err(ProxyError::Empty));
        assert_eq!(r.handle(&[0x04]), Err(ProxyError::ReservedType { bits: 4 }));
        assert_eq!(r.handle(&[0xc0, 1]), Err(ProxyError::Unexpected));
        assert_eq!(r.handle(&[0x40, 1]), Ok(None));
        assert_eq!(r.handle(&[0xc3, 1]), Err(ProxyError::TypeChanged));
        // The half message is gone: the next complete PDU stands alone.
        assert_eq!(
            r.handle(&[0x00, 9]),
            Ok(Some((MessageType::Network, vec![9])))
        );
        assert_eq!(r.handle(&[0x40, 1]), Ok(None));
        let big = [0x80u8; 100];
        assert_eq!(r.handle(&big), Ok(None));
        assert_eq!(r.handle(&big), Err(ProxyError::TooLong));
    }

    #[test]
    fn filter_messages() {
        assert_eq!(set_filter_type(FilterType::Accept), [0, 0]);
        assert_eq!(
            add_addresses(&[0x1201, 0xc000]),
            [1, 0x12, 0x01, 0xc0, 0x00]
        );
        assert_eq!(
            parse_filter_status(&[3, 0, 0, 2]),
            Some((FilterType::Accept, 2))
        );
        assert_eq!(parse_filter_status(&[3, 5, 0, 2]), None);
    }
}
