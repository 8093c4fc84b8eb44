//! ZNP framing: how Z-Stack's Monitor and Test (MT) commands travel over a
//! serial line (TI's "Unified NPI" transport).
//!
//! ```text
//! SOF 0xFE | LEN | CMD0 = type << 5 | subsystem | CMD1 | DATA (LEN bytes) | FCS
//! ```
//!
//! FCS is the XOR of LEN, CMD0, CMD1 and DATA (Z-Stack Monitor and Test API,
//! §2.1.1 "General Frame Format"). LEN is one byte and Z-Stack limits DATA
//! to 250 bytes.
//!
//! [`Parser`] is a streaming, sans-IO parser: bytes go in as they arrive
//! from the port, in any chunking; whole frames come out. Anything before a
//! SOF is skipped, a frame whose FCS does not match is dropped (and
//! counted), and parsing resumes at the next SOF after the dropped frame's
//! first byte, so one corrupted frame never costs the ones after it.

use std::collections::VecDeque;

/// Start of frame.
pub const SOF: u8 = 0xFE;
/// Most DATA bytes in a frame (Z-Stack's MT_MAX_PAYLOAD-style bound).
pub const MAX_DATA: usize = 250;

/// MT command types (the top three bits of CMD0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Poll = 0,
    /// Synchronous request: answered by an SRSP.
    Sreq = 1,
    /// Asynchronous request or indication.
    Areq = 2,
    /// Synchronous response.
    Srsp = 3,
}

/// MT subsystems (the low five bits of CMD0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subsystem {
    RpcError = 0,
    Sys = 1,
    Mac = 2,
    Nwk = 3,
    Af = 4,
    Zdo = 5,
    Sapi = 6,
    Util = 7,
    Debug = 8,
    App = 9,
    AppConfig = 15,
    GreenPower = 21,
}

impl Kind {
    fn from_bits(bits: u8) -> Option<Kind> {
        Some(match bits {
            0 => Kind::Poll,
            1 => Kind::Sreq,
            2 => Kind::Areq,
            3 => Kind::Srsp,
            _ => return None,
        })
    }
}

impl Subsystem {
    fn from_bits(bits: u8) -> Option<Subsystem> {
        Some(match bits {
            0 => Subsystem::RpcError,
            1 => Subsystem::Sys,
            2 => Subsystem::Mac,
            3 => Subsystem::Nwk,
            4 => Subsystem::Af,
            5 => Subsystem::Zdo,
            6 => Subsystem::Sapi,
            7 => Subsystem::Util,
            8 => Subsystem::Debug,
            9 => Subsystem::App,
            15 => Subsystem::AppConfig,
            21 => Subsystem::GreenPower,
            _ => return None,
        })
    }
}

/// One MT frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub subsystem: Subsystem,
    pub command: u8,
    pub data: Vec<u8>,
}

/// Why a frame cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{len} data bytes; a ZNP frame carries at most {MAX_DATA}")]
    TooLong { len: usize },
}

fn fcs(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

impl Frame {
    pub fn new(kind: Kind, subsystem: Subsystem, command: u8, data: Vec<u8>) -> Frame {
        Frame {
            kind,
            subsystem,
            command,
            data,
        }
    }

    /// CMD0.
    pub fn cmd0(&self) -> u8 {
        ((self.kind as u8) << 5) | self.subsystem as u8
    }

    /// The frame on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        if self.data.len() > MAX_DATA {
            return Err(FrameError::TooLong {
                len: self.data.len(),
            });
        }
        let mut out = Vec::with_capacity(self.data.len() + 5);
        out.push(SOF);
        out.push(self.data.len() as u8);
        out.push(self.cmd0());
        out.push(self.command);
        out.extend_from_slice(&self.data);
        out.push(fcs(&out[1..]));
        Ok(out)
    }
}

/// What the parser has seen go wrong, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Bytes skipped while looking for a SOF.
    pub skipped: u64,
    /// Frames dropped for a bad check byte.
    pub bad_fcs: u64,
    /// Frames dropped for an unknown type or subsystem.
    pub unknown: u64,
    /// Length bytes over [`MAX_DATA`]: not a frame start.
    pub too_long: u64,
}

/// The streaming frame parser.
#[derive(Default)]
pub struct Parser {
    buffer: VecDeque<u8>,
    frames: VecDeque<Frame>,
    stats: ParserStats,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds bytes as they came off the wire.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.buffer.extend(bytes);
        while self.step() {}
        // A partial frame is at most 255 + 5 bytes; anything longer
        // would have been consumed or skipped by `step`.
    }

    /// The next whole frame, if any.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Consumes one frame or one skipped byte; false when it needs more.
    fn step(&mut self) -> bool {
        // Skip to a SOF.
        while let Some(&byte) = self.buffer.front() {
            if byte == SOF {
                break;
            }
            self.buffer.pop_front();
            self.stats.skipped += 1;
        }
        if self.buffer.len() < 2 {
            return false;
        }
        let len = usize::from(self.buffer[1]);
        if len > MAX_DATA {
            // No Z-Stack frame is that long: this SOF is noise.
            self.buffer.pop_front();
            self.stats.too_long += 1;
            return true;
        }
        let total = len + 5;
        if self.buffer.len() < total {
            return false;
        }
        let frame: Vec<u8> = self.buffer.iter().take(total).copied().collect();
        if fcs(&frame[1..total - 1]) != frame[total - 1] {
            // Not a frame after all (or a corrupted one): drop this SOF and
            // look for the next.
            self.buffer.pop_front();
            self.stats.bad_fcs += 1;
            return true;
        }
        self.buffer.drain(..total);
        let (kind, subsystem) = (
            Kind::from_bits(frame[2] >> 5),
            Subsystem::from_bits(frame[2] & 0x1f),
        );
        match (kind, subsystem) {
            (Some(kind), Some(subsystem)) => self.frames.push_back(Frame {
                kind,
                subsystem,
                command: frame[3],
                data: frame[4..total - 1].to_vec(),
            }),
            _ => self.stats.unknown += 1,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(chunks: &[&[u8]]) -> (Vec<Frame>, ParserStats) {
        let mut parser = Parser::new();
        for chunk in chunks {
            parser.handle_bytes(chunk);
        }
        (
            std::iter::from_fn(|| parser.poll_frame()).collect(),
            parser.stats(),
        )
    }

    /// zigbee-herdsman, test/adapter/z-stack/unpi.test.ts, "Parse simple
    /// message": an SRSP to SYS_VERSION.
    const VERSION_SRSP: [u8; 19] = [
        0xfe, 0x0e, 0x61, 0x02, 0x02, 0x00, 0x02, 0x06, 0x03, 0xd9, 0x14, 0x34, 0x01, 0x02, 0x00,
        0x00, 0x00, 0x00, 0x92,
    ];
    /// Same file, "Parse two messages": the second, an SRSP to SYS 0x08.
    const NV_READ_SRSP: [u8; 8] = [0xfe, 0x03, 0x61, 0x08, 0x00, 0x01, 0x55, 0x3e];

    #[test]
    fn herdsman_simple_message() {
        let (frames, _) = parse(&[&VERSION_SRSP]);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, Kind::Srsp);
        assert_eq!(frames[0].subsystem, Subsystem::Sys);
        assert_eq!(frames[0].command, 2);
        assert_eq!(
            frames[0].data,
            [2, 0, 2, 6, 3, 217, 20, 52, 1, 2, 0, 0, 0, 0]
        );
    }

    #[test]
    fn herdsman_two_messages_and_split_chunks() {
        let both: Vec<u8> = VERSION_SRSP.iter().chain(&NV_READ_SRSP).copied().collect();
        let (frames, _) = parse(&[&both]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].data, [0, 1, 85]);
        // "Message in two chunks" and "fcs as separate".
        let (frames, _) = parse(&[&NV_READ_SRSP[..6], &NV_READ_SRSP[6..]]);
        assert_eq!(frames.len(), 1);
        let (frames, _) = parse(&[&NV_READ_SRSP[..7], &NV_READ_SRSP[7..]]);
        assert_eq!(frames[0].command, 8);
    }

    #[test]
    fn herdsman_bad_fcs_is_dropped_and_parsing_continues() {
        // "Dont throw error on fcs mismatch".
        let (frames, stats) = parse(&[&[0xfe, 0x03, 0x61, 0x08, 0x00, 0x01, 0x55, 0x3f]]);
        assert!(frames.is_empty());
        assert_eq!(stats.bad_fcs, 1);
        // "Continue parsing on fcs mismatch": noise, a bad frame, noise,
        // then a good frame split over two reads.
        let (frames, _) = parse(&[
            &[
                0x01, 0x02, 0xfe, 0x03, 0x61, 0x08, 0x00, 0x01, 0x55, 0x3f, 0x08, 0x09, 0x12,
            ],
            &[0x08, 0x09, 0x12],
            &[0x08, 0x09, 0x12, 0xfe, 0x0e, 0x61, 0x02],
            &VERSION_SRSP[4..],
        ]);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].command, 2);
    }

    #[test]
    fn herdsman_garbage_before_the_first_sof() {
        // "Parse message when it doenst start with SOF": indications from a
        // live stick (ZDO 0xC4, AF_INCOMING_MSG) behind stray bytes.
        let bytes = [
            95, 27, 37, 254, 3, 69, 196, 212, 23, 0, 65, 254, 27, 68, 129, 0, 0, 8, 0, 212, 23, 1,
            1, 0, 55, 0, 153, 178, 219, 0, 0, 7, 8, 122, 10, 0, 0, 32, 243, 212, 23, 29, 160, 254,
            7, 69, 196, 111, 244, 2, 122, 155, 246, 95, 87, 254, 27, 68, 129, 0, 0, 6, 0, 111, 244,
            1, 1, 0, 118, 0, 245, 236, 220, 0, 0, 7, 8, 2, 10, 0, 0, 16, 0, 246, 95, 27, 85,
        ];
        let (frames, stats) = parse(&[&bytes]);
        assert_eq!(frames.len(), 4);
        assert_eq!(stats.skipped, 3);
        assert_eq!(
            (frames[0].kind, frames[0].subsystem),
            (Kind::Areq, Subsystem::Zdo)
        );
        assert_eq!(frames[0].command, 196);
        assert_eq!(frames[0].data, [0xd4, 0x17, 0x00]);
        assert_eq!(
            (frames[1].subsystem, frames[1].command),
            (Subsystem::Af, 129)
        );
        assert_eq!(frames[1].data.len(), 27);
    }

    #[test]
    fn a_length_over_the_limit_is_not_a_frame() {
        // Found by the znp_parser fuzz target: LEN 251 with a matching FCS
        // used to parse into a frame that could not be encoded again.
        let mut bytes = vec![SOF, 251, 0x61, 0x01];
        bytes.extend([0u8; 251]);
        bytes.push(fcs(&bytes[1..]));
        bytes.extend(NV_READ_SRSP);
        let (frames, stats) = parse(&[&bytes]);
        assert_eq!(stats.too_long, 1);
        assert_eq!(frames.len(), 1, "the good frame after it still parses");
        assert_eq!(frames[0].data, [0, 1, 85]);
    }

    #[test]
    fn herdsman_frame_to_buffer() {
        // Frame "To buffer": SRSP SYS 3 with [0x06, 0x01].
        let frame = Frame::new(Kind::Srsp, Subsystem::Sys, 3, vec![0x06, 0x01]);
        assert_eq!(
            frame.encode().unwrap(),
            [0xfe, 0x02, 0x61, 0x03, 0x06, 0x01, 0x67]
        );
        let too_long = Frame::new(Kind::Sreq, Subsystem::Af, 1, vec![0; 251]);
        assert_eq!(too_long.encode(), Err(FrameError::TooLong { len: 251 }));
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        (
            prop::sample::select(vec![Kind::Poll, Kind::Sreq, Kind::Areq, Kind::Srsp]),
            prop::sample::select(vec![
                Subsystem::Sys,
                Subsystem::Af,
                Subsystem::Zdo,
                Subsystem::Util,
                Subsystem::AppConfig,
            ]),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..=MAX_DATA),
        )
            .prop_map(|(kind, subsystem, command, data)| Frame::new(kind, subsystem, command, data))
    }

    proptest! {
        /// Any frames, encoded back to back and cut into any chunks, come
        /// out whole and in order.
        #[test]
        fn frames_round_trip_through_any_chunking(
            frames in prop::collection::vec(any_frame(), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len())).collect();
            points.sort_unstable();
            let mut parser = Parser::new();
            let mut last = 0;
            for point in points.into_iter().chain([wire.len()]) {
                parser.handle_bytes(&wire[last..point]);
                last = point;
            }
            let parsed: Vec<Frame> = std::iter::from_fn(|| parser.poll_frame()).collect();
            prop_assert_eq!(parsed, frames);
            prop_assert_eq!(parser.pending(), 0);
        }

        /// Arbitrary bytes never panic the parser and never leave it
        /// holding more than one frame's worth.
        #[test]
        fn garbage_is_survived(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
            let mut parser = Parser::new();
            parser.handle_bytes(&bytes);
            while parser.poll_frame().is_some() {}
            prop_assert!(parser.pending() < 255 + 5);
        }
    }
}
