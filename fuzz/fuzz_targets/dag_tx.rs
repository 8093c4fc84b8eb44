//! Any bytes a peer or a device hands over as a DAG transaction or as
//! gossip: the strict decoder never panics, and whatever decodes
//! re-encodes to the same bytes (one encoding per value), so a
//! transaction's id cannot be changed by re-encoding it.
#![no_main]

use itc_chain::codec::{decode, encode};
use itc_chain::dag::{DagMessage, DagTx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode::<DagTx>(data) {
        assert_eq!(encode(&tx), data);
        let _ = tx.id();
    }
    if let Ok(message) = decode::<DagMessage>(data) {
        assert_eq!(encode(&message), data);
    }
});
