//! Any bytes from the serial port, in any chunking: the ZNP parser and the
//! MT decoders never panic, and whatever frames come out re-encode to
//! frames that parse back the same.
#![no_main]

use itc_bridges::zigbee::mt::{Indication, Request};
use itc_bridges::zigbee::znp::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(bytes.len());
    let mut parser = Parser::new();
    parser.handle_bytes(&bytes[..cut]);
    parser.handle_bytes(&bytes[cut..]);
    while let Some(frame) = parser.poll_frame() {
        let _ = Indication::parse(&frame);
        let _ = Request::parse(&frame);
        let wire = frame.encode().expect("a parsed frame fits");
        let mut again = Parser::new();
        again.handle_bytes(&wire);
        assert_eq!(again.poll_frame().as_ref(), Some(&frame));
    }
});
