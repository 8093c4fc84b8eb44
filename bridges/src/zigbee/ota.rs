//! The OTA Upgrade cluster (0x0019): the query-next-image handshake, pure.
//!
//! A device (the OTA client) asks the gateway (the OTA server) whether a
//! newer image exists (ZCL specification, chapter 11 "OTA Upgrade", §11.13.4
//! Query Next Image Request, command 0x01 client → server: field control,
//! manufacturer code, image type, current file version, and the hardware
//! version if field-control bit 0 is set). The server answers (§11.13.5
//! Query Next Image Response, command 0x02: status, then — on SUCCESS only —
//! manufacturer code, image type, file version, image size). Status 0x98 is
//! NO_IMAGE_AVAILABLE.
//!
//! Then the device downloads it block by block (§11.13.6 Image Block
//! Request 0x03: field control, manufacturer, image type, file version,
//! file offset, maximum data size; §11.13.8 Image Block Response 0x05:
//! status, then the same identifiers, the offset, the data size and the
//! data; ABORT 0x95 stops it), and reports the result (§11.13.9 Upgrade End
//! Request 0x06: status and identifiers; §11.13.9.6 Upgrade End Response
//! 0x07: identifiers, current time and upgrade time, 0 meaning now).
//!
//! The gateway offers an image only if a firmware manifest on chain names
//! exactly its SHA-256 (see the gateway's firmware module); this module
//! only speaks the frames. [`ClientMessage`] is what a device sends,
//! [`ServerMessage`] what the gateway answers.

use super::zcl::{self, FrameType};

/// Query Next Image Request.
pub const QUERY_NEXT_IMAGE_REQUEST: u8 = 0x01;
/// Query Next Image Response.
pub const QUERY_NEXT_IMAGE_RESPONSE: u8 = 0x02;
/// ZCL status NO_IMAGE_AVAILABLE.
pub const NO_IMAGE_AVAILABLE: u8 = 0x98;
/// Image Block Request / Response.
pub const IMAGE_BLOCK_REQUEST: u8 = 0x03;
pub const IMAGE_BLOCK_RESPONSE: u8 = 0x05;
/// Upgrade End Request / Response.
pub const UPGRADE_END_REQUEST: u8 = 0x06;
pub const UPGRADE_END_RESPONSE: u8 = 0x07;
/// ZCL status ABORT.
pub const ABORT: u8 = 0x95;

/// Which image a block or end message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageId {
    pub manufacturer: u16,
    pub image_type: u16,
    pub file_version: u32,
}

impl ImageId {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.manufacturer.to_le_bytes());
        out.extend(self.image_type.to_le_bytes());
        out.extend(self.file_version.to_le_bytes());
    }

    fn decode(bytes: &[u8], at: usize) -> Result<ImageId, OtaError> {
        Ok(ImageId {
            manufacturer: u16_at(bytes, at)?,
            image_type: u16_at(bytes, at + 2)?,
            file_version: u32_at(bytes, at + 4)?,
        })
    }
}

/// What a device (the OTA client) sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Query(QueryNextImage),
    /// Image Block Request: up to `max_size` bytes from `offset`.
    Block {
        image: ImageId,
        offset: u32,
        max_size: u8,
    },
    /// Upgrade End Request: the download ended with `status` (0: the image
    /// is complete and valid).
    End {
        status: u8,
        image: ImageId,
    },
}

/// What the gateway (the OTA server) answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    QueryResponse(Option<ImageOffer>),
    /// Image Block Response: `data` from `offset`, or ABORT (`None`).
    Block {
        image: ImageId,
        offset: u32,
        data: Option<Vec<u8>>,
    },
    /// Upgrade End Response: upgrade now.
    EndResponse {
        image: ImageId,
    },
}

impl ClientMessage {
    pub fn frame(&self, seq: u8) -> zcl::Frame {
        match self {
            ClientMessage::Query(query) => query.frame(seq),
            ClientMessage::Block {
                image,
                offset,
                max_size,
            } => {
                let mut payload = vec![0];
                image.encode(&mut payload);
                payload.extend(offset.to_le_bytes());
                payload.push(*max_size);
                zcl::Frame::to_device(FrameType::Cluster, seq, IMAGE_BLOCK_REQUEST, payload)
            }
            ClientMessage::End { status, image } => {
                let mut payload = vec![*status];
                image.encode(&mut payload);
                zcl::Frame::to_device(FrameType::Cluster, seq, UPGRADE_END_REQUEST, payload)
            }
        }
    }

    pub fn decode(frame: &zcl::Frame) -> Result<ClientMessage, OtaError> {
        let p = &frame.payload;
        match frame.header.command {
            QUERY_NEXT_IMAGE_REQUEST => QueryNextImage::decode(frame).map(ClientMessage::Query),
            IMAGE_BLOCK_REQUEST => Ok(ClientMessage::Block {
                image: ImageId::decode(p, 1)?,
                offset: u32_at(p, 9)?,
                max_size: field(p, 13, 1)?[0],
            }),
            UPGRADE_END_REQUEST => Ok(ClientMessage::End {
                status: field(p, 0, 1)?[0],
                image: ImageId::decode(p, 1)?,
            }),
            command => Err(OtaError::NotQuery { command }),
        }
    }
}

impl ServerMessage {
    pub fn frame(&self, seq: u8) -> zcl::Frame {
        let (command, payload) = match self {
            ServerMessage::QueryResponse(offer) => return response(seq, offer.as_ref()),
            ServerMessage::Block {
                image,
                offset,
                data,
            } => {
                let mut payload = Vec::new();
                match data {
                    Some(data) => {
                        payload.push(zcl::SUCCESS);
                        image.encode(&mut payload);
                        payload.extend(offset.to_le_bytes());
                        payload.push(data.len() as u8);
                        payload.extend_from_slice(data);
                    }
                    None => payload.push(ABORT),
                }
                (IMAGE_BLOCK_RESPONSE, payload)
            }
            ServerMessage::EndResponse { image } => {
                let mut payload = Vec::new();
                image.encode(&mut payload);
                payload.extend(0u32.to_le_bytes()); // current time
                payload.extend(0u32.to_le_bytes()); // upgrade time: now
                (UPGRADE_END_RESPONSE, payload)
            }
        };
        let mut frame = zcl::Frame::from_device(FrameType::Cluster, seq, command, payload);
        frame.header.disable_default_response = false;
        frame
    }

    pub fn decode(frame: &zcl::Frame) -> Result<ServerMessage, OtaError> {
        let p = &frame.payload;
        match frame.header.command {
            QUERY_NEXT_IMAGE_RESPONSE => decode_response(frame).map(ServerMessage::QueryResponse),
            IMAGE_BLOCK_RESPONSE => {
                let status = field(p, 0, 1)?[0];
                if status != zcl::SUCCESS {
                    return Ok(ServerMessage::Block {
                        image: ImageId {
                            manufacturer: 0,
                            image_type: 0,
                            file_version: 0,
                        },
                        offset: 0,
                        data: None,
                    });
                }
                let image = ImageId::decode(p, 1)?;
                let offset = u32_at(p, 9)?;
                let size = usize::from(field(p, 13, 1)?[0]);
                Ok(ServerMessage::Block {
                    image,
                    offset,
                    data: Some(field(p, 14, size)?.to_vec()),
                })
            }
            UPGRADE_END_RESPONSE => Ok(ServerMessage::EndResponse {
                image: ImageId::decode(p, 0)?,
            }),
            command => Err(OtaError::NotQuery { command }),
        }
    }
}

/// Why an OTA frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtaError {
    #[error("the OTA frame ends after {len} bytes, {need} needed")]
    Short { len: usize, need: usize },
    #[error("not a query-next-image frame (command 0x{command:02x})")]
    NotQuery { command: u8 },
}

/// What a device asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryNextImage {
    pub manufacturer: u16,
    pub image_type: u16,
    pub file_version: u32,
    pub hardware_version: Option<u16>,
}

/// What the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageOffer {
    pub manufacturer: u16,
    pub image_type: u16,
    pub file_version: u32,
    pub image_size: u32,
}

fn field(bytes: &[u8], at: usize, n: usize) -> Result<&[u8], OtaError> {
    bytes.get(at..at + n).ok_or(OtaError::Short {
        len: bytes.len(),
        need: at + n,
    })
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, OtaError> {
    let b = field(bytes, at, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, OtaError> {
    let b = field(bytes, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl QueryNextImage {
    /// The request as the device sends it.
    pub fn frame(&self, seq: u8) -> zcl::Frame {
        let mut payload = vec![u8::from(self.hardware_version.is_some())];
        payload.extend(self.manufacturer.to_le_bytes());
        payload.extend(self.image_type.to_le_bytes());
        payload.extend(self.file_version.to_le_bytes());
        if let Some(hw) = self.hardware_version {
            payload.extend(hw.to_le_bytes());
        }
        zcl::Frame::to_device(FrameType::Cluster, seq, QUERY_NEXT_IMAGE_REQUEST, payload)
    }

    pub fn decode(frame: &zcl::Frame) -> Result<QueryNextImage, OtaError> {
        if frame.header.frame_type != FrameType::Cluster
            || frame.header.command != QUERY_NEXT_IMAGE_REQUEST
        {
            return Err(OtaError::NotQuery {
                command: frame.header.command,
            });
        }
        let p = &frame.payload;
        let control = field(p, 0, 1)?[0];
        Ok(QueryNextImage {
            manufacturer: u16_at(p, 1)?,
            image_type: u16_at(p, 3)?,
            file_version: u32_at(p, 5)?,
            hardware_version: if control & 1 != 0 {
                Some(u16_at(p, 9)?)
            } else {
                None
            },
        })
    }
}

/// The server's answer: an offer, or NO_IMAGE_AVAILABLE.
pub fn response(seq: u8, offer: Option<&ImageOffer>) -> zcl::Frame {
    let mut payload = Vec::new();
    match offer {
        Some(offer) => {
            payload.push(zcl::SUCCESS);
            payload.extend(offer.manufacturer.to_le_bytes());
            payload.extend(offer.image_type.to_le_bytes());
            payload.extend(offer.file_version.to_le_bytes());
            payload.extend(offer.image_size.to_le_bytes());
        }
        None => payload.push(NO_IMAGE_AVAILABLE),
    }
    let mut frame =
        zcl::Frame::from_device(FrameType::Cluster, seq, QUERY_NEXT_IMAGE_RESPONSE, payload);
    // Sent by the server; the device may answer with a default response.
    frame.header.disable_default_response = false;
    frame
}

/// Decodes a Query Next Image Response (the device's side).
pub fn decode_response(frame: &zcl::Frame) -> Result<Option<ImageOffer>, OtaError> {
    if frame.header.command != QUERY_NEXT_IMAGE_RESPONSE {
        return Err(OtaError::NotQuery {
            command: frame.header.command,
        });
    }
    let p = &frame.payload;
    if field(p, 0, 1)?[0] != zcl::SUCCESS {
        return Ok(None);
    }
    Ok(Some(ImageOffer {
        manufacturer: u16_at(p, 1)?,
        image_type: u16_at(p, 3)?,
        file_version: u32_at(p, 5)?,
        image_size: u32_at(p, 9)?,
    }))
}

/// ITC firmware versions as OTA file versions: major, minor and patch in
/// the top, middle and low bytes (each at most 255).
pub fn file_version(major: u16, minor: u16, patch: u16) -> u32 {
    (u32::from(major.min(255)) << 16) | (u32::from(minor.min(255)) << 8) | u32::from(patch.min(255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_response_round_trip_with_the_spec_layout() {
        let query = QueryNextImage {
            manufacturer: 0x117c,
            image_type: 0x2101,
            file_version: 0x0001_0203,
            hardware_version: None,
        };
        let bytes = query.frame(9).encode();
        // Cluster-specific, client to server; field control 0, then the
        // little-endian fields.
        assert_eq!(
            bytes,
            [0x01, 9, 0x01, 0x00, 0x7c, 0x11, 0x01, 0x21, 0x03, 0x02, 0x01, 0x00]
        );
        let decoded = QueryNextImage::decode(&zcl::Frame::decode(&bytes).unwrap()).unwrap();
        assert_eq!(decoded, query);

        let offer = ImageOffer {
            manufacturer: 0x117c,
            image_type: 0x2101,
            file_version: 0x0001_0300,
            image_size: 123_456,
        };
        let frame = zcl::Frame::decode(&response(9, Some(&offer)).encode()).unwrap();
        assert!(frame.header.server_to_client);
        assert_eq!(decode_response(&frame).unwrap(), Some(offer));
        let none = zcl::Frame::decode(&response(9, None).encode()).unwrap();
        assert_eq!(none.payload, [NO_IMAGE_AVAILABLE]);
        assert_eq!(decode_response(&none).unwrap(), None);
    }

    #[test]
    fn blocks_and_end_round_trip() {
        let image = ImageId {
            manufacturer: 0x1234,
            image_type: 1,
            file_version: 0x0001_0200,
        };
        let messages = [
            ClientMessage::Block {
                image,
                offset: 96,
                max_size: 48,
            },
            ClientMessage::End { status: 0, image },
        ];
        for message in messages {
            let frame = zcl::Frame::decode(&message.frame(3).encode()).unwrap();
            assert_eq!(ClientMessage::decode(&frame).unwrap(), message);
        }
        let answers = [
            ServerMessage::Block {
                image,
                offset: 96,
                data: Some(vec![7; 48]),
            },
            ServerMessage::EndResponse { image },
            ServerMessage::QueryResponse(None),
        ];
        for answer in answers {
            let frame = zcl::Frame::decode(&answer.frame(3).encode()).unwrap();
            assert_eq!(ServerMessage::decode(&frame).unwrap(), answer);
        }
        // The block request's layout: field control, ids, offset, size.
        let bytes = ClientMessage::Block {
            image,
            offset: 96,
            max_size: 48,
        }
        .frame(3)
        .encode();
        assert_eq!(
            &bytes[3..],
            [0, 0x34, 0x12, 1, 0, 0x00, 0x02, 0x01, 0x00, 96, 0, 0, 0, 48]
        );
    }

    #[test]
    fn truncated_queries_are_errors() {
        let mut frame = QueryNextImage {
            manufacturer: 1,
            image_type: 2,
            file_version: 3,
            hardware_version: Some(4),
        }
        .frame(1);
        frame.payload.truncate(10);
        assert!(matches!(
            QueryNextImage::decode(&frame),
            Err(OtaError::Short { .. })
        ));
        assert_eq!(file_version(1, 2, 3), 0x0001_0203);
    }
}
