//! Any ZCL payload from a device: the header, global and lighting
//! decoders never panic, and a decoded frame re-encodes to its bytes.
#![no_main]

use itc_bridges::light::LightState;
use itc_bridges::zigbee::zcl::{apply_attributes, Frame, Global, Lighting};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cluster, bytes)) = data.split_at_checked(2) else {
        return;
    };
    let cluster = u16::from_le_bytes([cluster[0], cluster[1]]);
    let Ok(frame) = Frame::decode(bytes) else {
        return;
    };
    assert_eq!(frame.encode(), bytes);
    if let Ok(Some(Global::ReportAttributes(records))) = Global::decode(&frame) {
        let mut state = LightState::default();
        apply_attributes(&mut state, cluster, &records);
    }
    let _ = Lighting::decode(cluster, &frame);
});
