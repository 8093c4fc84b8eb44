//! Any bytes from a GATT peer: Proxy PDUs through the reassembler, then
//! whatever comes out (or the raw bytes) as a Network PDU, a lower
//! transport PDU and an access payload, and through a whole node. Nothing
//! panics; what the sample network key opens must re-seal to the same
//! bytes.
#![no_main]

use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::network::{NetKey, NetworkPdu, NonceKind};
use itc_bridges::mesh::proxy::ProxyReassembler;
use itc_bridges::mesh::stack::Stack;
use itc_bridges::mesh::transport::LowerPdu;
use libfuzzer_sys::fuzz_target;

const NET: [u8; 16] = [0x7d, 0xd7, 0x36, 0x4c, 0xd8, 0x42, 0xad, 0x18, 0xc1, 0x7c, 0x2b, 0x82, 0x0c, 0x84, 0xc3, 0xd6];

fuzz_target!(|data: &[u8]| {
    let mut reassembler = ProxyReassembler::default();
    let mut messages = Vec::new();
    for chunk in data.chunks(20) {
        if let Ok(Some((_, message))) = reassembler.handle(chunk) {
            messages.push(message);
        }
    }
    messages.push(data.to_vec());
    let net = NetKey::new(NET);
    let mut node = Stack::new(NET, 0x1234_5678, 0x1201);
    for message in &messages {
        for kind in [NonceKind::Network, NonceKind::Proxy] {
            if let Ok((pdu, iv)) = NetworkPdu::open(message, &net, 0x1234_5678, kind) {
                assert_eq!(pdu.seal(&net, iv, kind).as_deref(), Ok(message.as_slice()));
            }
        }
        let _ = node.receive(message, 0);
        for ctl in [false, true] {
            let _ = LowerPdu::parse(ctl, message);
        }
        if let Ok(decoded) = Message::decode(message) {
            assert_eq!(Message::decode(&decoded.encode()), Ok(decoded));
        }
    }
});
