//! The access layer (Mesh Profile 1.0.1 §3.7) and the messages a lighting
//! provisioner speaks: configuration with the device key (AppKey Add,
//! Model App Bind, Mesh Profile §4.3.2) and the lighting models (Mesh
//! Model 1.0.1: Generic OnOff, Generic Level, Light Lightness, Light CTL),
//! each with Set, Set Unacknowledged and Status, a transaction identifier
//! and an optional transition. Model parameters are little-endian.

/// The SIG model ids (Mesh Model §7.3).
pub mod model {
    pub const GENERIC_ONOFF_SERVER: u16 = 0x1000;
    pub const GENERIC_LEVEL_SERVER: u16 = 0x1002;
    pub const LIGHT_LIGHTNESS_SERVER: u16 = 0x1300;
    pub const LIGHT_CTL_SERVER: u16 = 0x1303;
}

/// Opcodes (Mesh Profile §4.3.4, Mesh Model §7.1).
pub mod opcode {
    pub const APPKEY_ADD: u32 = 0x00;
    pub const APPKEY_STATUS: u32 = 0x8003;
    pub const MODEL_APP_BIND: u32 = 0x803d;
    pub const MODEL_APP_STATUS: u32 = 0x803e;
    pub const ONOFF_GET: u32 = 0x8201;
    pub const ONOFF_SET: u32 = 0x8202;
    pub const ONOFF_SET_UNACK: u32 = 0x8203;
    pub const ONOFF_STATUS: u32 = 0x8204;
    pub const LEVEL_SET: u32 = 0x8206;
    pub const LEVEL_SET_UNACK: u32 = 0x8207;
    pub const LEVEL_STATUS: u32 = 0x8208;
    pub const LIGHTNESS_SET: u32 = 0x824c;
    pub const LIGHTNESS_SET_UNACK: u32 = 0x824d;
    pub const LIGHTNESS_STATUS: u32 = 0x824e;
    pub const CTL_GET: u32 = 0x825d;
    pub const CTL_SET: u32 = 0x825e;
    pub const CTL_SET_UNACK: u32 = 0x825f;
    pub const CTL_STATUS: u32 = 0x8260;
}

/// A transition: how long (encoded as in Mesh Model §3.1.3) and a delay
/// in 5 ms steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub time: u8,
    pub delay: u8,
}

impl Transition {
    /// The nearest encodable transition time to `ms` (steps of 100 ms up
    /// to 6.2 s, then 1 s, 10 s, 10 min).
    pub fn from_ms(ms: u64) -> Transition {
        let time = [(100u64, 0u8), (1_000, 1), (10_000, 2), (600_000, 3)]
            .iter()
            .find_map(|&(step, resolution)| {
                let steps = ms.div_ceil(step);
                (steps <= 0x3e).then_some(((resolution << 6) | steps as u8, steps))
            })
            .map_or(0x3e | (3 << 6), |(t, _)| t);
        Transition { time, delay: 0 }
    }

    /// The transition time in milliseconds (`None`: unknown, 0x3f steps).
    pub fn ms(self) -> Option<u64> {
        let steps = u64::from(self.time & 0x3f);
        if steps == 0x3f {
            return None;
        }
        let step = [100, 1_000, 10_000, 600_000][usize::from(self.time >> 6)];
        Some(steps * step)
    }
}

/// An access message this bridge sends or understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    AppKeyAdd {
        net_index: u16,
        app_index: u16,
        key: [u8; 16],
    },
    AppKeyStatus {
        status: u8,
        net_index: u16,
        app_index: u16,
    },
    ModelAppBind {
        element: u16,
        app_index: u16,
        model: u16,
    },
    ModelAppStatus {
        status: u8,
        element: u16,
        app_index: u16,
        model: u16,
    },
    OnOffGet,
    OnOffSet {
        on: bool,
        tid: u8,
        transition: Option<Transition>,
        ack: bool,
    },
    OnOffStatus {
        present: bool,
        target: Option<(bool, u8)>,
    },
    LevelSet {
        level: i16,
        tid: u8,
        transition: Option<Transition>,
        ack: bool,
    },
    LevelStatus {
        present: i16,
        target: Option<(i16, u8)>,
    },
    LightnessSet {
        lightness: u16,
        tid: u8,
        transition: Option<Transition>,
        ack: bool,
    },
    LightnessStatus {
        present: u16,
        target: Option<(u16, u8)>,
    },
    CtlGet,
    CtlSet {
        lightness: u16,
        temperature: u16,
        delta_uv: i16,
        tid: u8,
        transition: Option<Transition>,
        ack: bool,
    },
    CtlStatus {
        lightness: u16,
        temperature: u16,
        target: Option<(u16, u16, u8)>,
    },
}

/// Why an access payload did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("an empty access payload")]
    Empty,
    #[error("opcode {opcode:#06x} is not one this bridge handles")]
    UnknownOpcode { opcode: u32 },
    #[error("opcode {opcode:#06x} with {len} octets of parameters")]
    BadParameters { opcode: u32, len: usize },
    #[error("the reserved opcode 0x7f")]
    Reserved,
}

/// Encodes an opcode in one, two or three octets (§3.7.3.1).
pub fn encode_opcode(opcode: u32, out: &mut Vec<u8>) {
    match opcode {
        0..=0x7e => out.push(opcode as u8),
        0x8000..=0xbfff => out.extend_from_slice(&(opcode as u16).to_be_bytes()),
        _ => out.extend_from_slice(&opcode.to_be_bytes()[1..]),
    }
}

/// Splits an access payload into its opcode and parameters.
pub fn decode_opcode(payload: &[u8]) -> Result<(u32, &[u8]), AccessError> {
    let first = *payload.first().ok_or(AccessError::Empty)?;
    let (len, opcode) = match first >> 6 {
        0 | 1 if first == 0x7f => return Err(AccessError::Reserved),
        0 | 1 => (1, u32::from(first)),
        2 => {
            let second = *payload.get(1).ok_or(AccessError::BadParameters {
                opcode: u32::from(first),
                len: 0,
            })?;
            (2, u32::from(u16::from_be_bytes([first, second])))
        }
        _ => {
            let rest = payload.get(1..3).ok_or(AccessError::BadParameters {
                opcode: u32::from(first),
                len: 0,
            })?;
            (3, u32::from_be_bytes([0, first, rest[0], rest[1]]))
        }
    };
    Ok((opcode, &payload[len..]))
}

fn key_indexes(net: u16, app: u16) -> [u8; 3] {
    let packed = u32::from(net & 0x0fff) | (u32::from(app & 0x0fff) << 12);
    let b = packed.to_le_bytes();
    [b[0], b[1], b[2]]
}

fn unpack_indexes(b: &[u8]) -> (u16, u16) {
    let packed = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    ((packed & 0x0fff) as u16, ((packed >> 12) & 0x0fff) as u16)
}

fn push_le(out: &mut Vec<u8>, values: &[u16]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A Set or Set Unacknowledged: the opcode the `ack` flag picks, the
/// model's values, the TID and the optional transition.
fn set(
    out: &mut Vec<u8>,
    (ack, acked, unacked): (bool, u32, u32),
    values: &[u8],
    tid: u8,
    transition: Option<Transition>,
) {
    encode_opcode(if ack { acked } else { unacked }, out);
    out.extend_from_slice(values);
    out.push(tid);
    if let Some(t) = transition {
        out.extend_from_slice(&[t.time, t.delay]);
    }
}

/// A Status: the present values, then optionally the target values and
/// the remaining time.
fn status(out: &mut Vec<u8>, op: u32, present: &[u16], target: Option<(Vec<u16>, u8)>) {
    encode_opcode(op, out);
    push_le(out, present);
    if let Some((target, remaining)) = target {
        push_le(out, &target);
        out.push(remaining);
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        match self {
            Message::AppKeyAdd {
                net_index,
                app_index,
                key,
            } => {
                encode_opcode(opcode::APPKEY_ADD, &mut out);
                out.extend_from_slice(&key_indexes(*net_index, *app_index));
                out.extend_from_slice(key);
            }
            Message::AppKeyStatus {
                status,
                net_index,
                app_index,
            } => {
                encode_opcode(opcode::APPKEY_STATUS, &mut out);
                out.push(*status);
                out.extend_from_slice(&key_indexes(*net_index, *app_index));
            }
            Message::ModelAppBind {
                element,
                app_index,
                model,
            } => {
                encode_opcode(opcode::MODEL_APP_BIND, &mut out);
                push_le(&mut out, &[*element, *app_index, *model]);
            }
            Message::ModelAppStatus {
                status,
                element,
                app_index,
                model,
            } => {
                encode_opcode(opcode::MODEL_APP_STATUS, &mut out);
                out.push(*status);
                push_le(&mut out, &[*element, *app_index, *model]);
            }
            Message::OnOffGet => encode_opcode(opcode::ONOFF_GET, &mut out),
            Message::CtlGet => encode_opcode(opcode::CTL_GET, &mut out),
            Message::OnOffSet {
                on,
                tid,
                transition,
                ack,
            } => set(
                &mut out,
                (*ack, opcode::ONOFF_SET, opcode::ONOFF_SET_UNACK),
                &[u8::from(*on)],
                *tid,
                *transition,
            ),
            Message::OnOffStatus { present, target } => {
                encode_opcode(opcode::ONOFF_STATUS, &mut out);
                out.push(u8::from(*present));
                if let Some((target, remaining)) = target {
                    out.extend_from_slice(&[u8::from(*target), *remaining]);
                }
            }
            Message::LevelSet {
                level,
                tid,
                transition,
                ack,
            } => set(
                &mut out,
                (*ack, opcode::LEVEL_SET, opcode::LEVEL_SET_UNACK),
                &level.to_le_bytes(),
                *tid,
                *transition,
            ),
            Message::LevelStatus { present, target } => status(
                &mut out,
                opcode::LEVEL_STATUS,
                &[*present as u16],
                target.map(|(t, r)| (vec![t as u16], r)),
            ),
            Message::LightnessSet {
                lightness,
                tid,
                transition,
                ack,
            } => set(
                &mut out,
                (*ack, opcode::LIGHTNESS_SET, opcode::LIGHTNESS_SET_UNACK),
                &lightness.to_le_bytes(),
                *tid,
                *transition,
            ),
            Message::LightnessStatus { present, target } => status(
                &mut out,
                opcode::LIGHTNESS_STATUS,
                &[*present],
                target.map(|(t, r)| (vec![t], r)),
            ),
            Message::CtlSet {
                lightness,
                temperature,
                delta_uv,
                tid,
                transition,
                ack,
            } => {
                let mut values = Vec::with_capacity(6);
                push_le(&mut values, &[*lightness, *temperature, *delta_uv as u16]);
                set(
                    &mut out,
                    (*ack, opcode::CTL_SET, opcode::CTL_SET_UNACK),
                    &values,
                    *tid,
                    *transition,
                )
            }
            Message::CtlStatus {
                lightness,
                temperature,
                target,
            } => status(
                &mut out,
                opcode::CTL_STATUS,
                &[*lightness, *temperature],
                target.map(|(l, t, r)| (vec![l, t], r)),
            ),
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Message, AccessError> {
        let (op, p) = decode_opcode(payload)?;
        let bad = AccessError::BadParameters {
            opcode: op,
            len: p.len(),
        };
        let transition = |at: usize| -> Result<Option<Transition>, AccessError> {
            match p.len() - at {
                0 => Ok(None),
                2 => Ok(Some(Transition {
                    time: p[at],
                    delay: p[at + 1],
                })),
                _ => Err(bad),
            }
        };
        let message = match op {
            opcode::APPKEY_ADD if p.len() == 19 => {
                let (net_index, app_index) = unpack_indexes(p);
                let mut key = [0u8; 16];
                key.copy_from_slice(&p[3..]);
                Message::AppKeyAdd {
                    net_index,
                    app_index,
                    key,
                }
            }
            opcode::APPKEY_STATUS if p.len() == 4 => {
                let (net_index, app_index) = unpack_indexes(&p[1..]);
                Message::AppKeyStatus {
                    status: p[0],
                    net_index,
                    app_index,
                }
            }
            opcode::MODEL_APP_BIND if p.len() == 6 => Message::ModelAppBind {
                element: le16(p, 0),
                app_index: le16(p, 2),
                model: le16(p, 4),
            },
            opcode::MODEL_APP_STATUS if p.len() == 7 => Message::ModelAppStatus {
                status: p[0],
                element: le16(p, 1),
                app_index: le16(p, 3),
                model: le16(p, 5),
            },
            opcode::ONOFF_GET if p.is_empty() => Message::OnOffGet,
            opcode::CTL_GET if p.is_empty() => Message::CtlGet,
            opcode::ONOFF_SET | opcode::ONOFF_SET_UNACK if p.len() >= 2 && p[0] <= 1 => {
                Message::OnOffSet {
                    on: p[0] == 1,
                    tid: p[1],
                    transition: transition(2)?,
                    ack: op == opcode::ONOFF_SET,
                }
            }
            opcode::ONOFF_STATUS if p.len() == 1 || p.len() == 3 => Message::OnOffStatus {
                present: p[0] == 1,
                target: (p.len() == 3).then(|| (p[1] == 1, p[2])),
            },
            opcode::LEVEL_SET | opcode::LEVEL_SET_UNACK if p.len() >= 3 => Message::LevelSet {
                level: le16(p, 0) as i16,
                tid: p[2],
                transition: transition(3)?,
                ack: op == opcode::LEVEL_SET,
            },
            opcode::LEVEL_STATUS if p.len() == 2 || p.len() == 5 => Message::LevelStatus {
                present: le16(p, 0) as i16,
                target: (p.len() == 5).then(|| (le16(p, 2) as i16, p[4])),
            },
            opcode::LIGHTNESS_SET | opcode::LIGHTNESS_SET_UNACK if p.len() >= 3 => {
                Message::LightnessSet {
                    lightness: le16(p, 0),
                    tid: p[2],
                    transition: transition(3)?,
                    ack: op == opcode::LIGHTNESS_SET,
                }
            }
            opcode::LIGHTNESS_STATUS if p.len() == 2 || p.len() == 5 => Message::LightnessStatus {
                present: le16(p, 0),
                target: (p.len() == 5).then(|| (le16(p, 2), p[4])),
            },
            opcode::CTL_SET | opcode::CTL_SET_UNACK if p.len() >= 7 => Message::CtlSet {
                lightness: le16(p, 0),
                temperature: le16(p, 2),
                delta_uv: le16(p, 4) as i16,
                tid: p[6],
                transition: transition(7)?,
                ack: op == opcode::CTL_SET,
            },
            opcode::CTL_STATUS if p.len() == 4 || p.len() == 9 => Message::CtlStatus {
                lightness: le16(p, 0),
                temperature: le16(p, 2),
                target: (p.len() == 9).then(|| (le16(p, 4), le16(p, 6), p[8])),
            },
            opcode::APPKEY_ADD
            | opcode::APPKEY_STATUS
            | opcode::MODEL_APP_BIND
            | opcode::MODEL_APP_STATUS
            | opcode::ONOFF_GET
            | opcode::ONOFF_SET
            | opcode::ONOFF_SET_UNACK
            | opcode::ONOFF_STATUS
            | opcode::LEVEL_SET
            | opcode::LEVEL_SET_UNACK
            | opcode::LEVEL_STATUS
            | opcode::LIGHTNESS_SET
            | opcode::LIGHTNESS_SET_UNACK
            | opcode::LIGHTNESS_STATUS
            | opcode::CTL_SET
            | opcode::CTL_SET_UNACK
            | opcode::CTL_STATUS => return Err(bad),
            _ => return Err(AccessError::UnknownOpcode { opcode: op }),
        };
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_access_payloads_8_3() {
        // §8.3.6: Config AppKey Add, NetKeyIndex 0x456, AppKeyIndex 0x123.
        let add = Message::AppKeyAdd {
            net_index: 0x456,
            app_index: 0x123,
            key: hex::decode("63964771734fbd76e3b40519d1d94a48")
                .unwrap()
                .try_into()
                .unwrap(),
        };
        assert_eq!(
            hex::encode(add.encode()),
            "0056341263964771734fbd76e3b40519d1d94a48"
        );
        assert_eq!(Message::decode(&add.encode()).unwrap(), add);
        // §8.3.16: Config AppKey Status, success.
        let status = Message::AppKeyStatus {
            status: 0,
            net_index: 0x456,
            app_index: 0x123,
        };
        assert_eq!(hex::encode(status.encode()), "800300563412");
        assert_eq!(Message::decode(&status.encode()).unwrap(), status);
    }

    #[test]
    fn every_message_round_trips() {
        let t = Some(Transition::from_ms(1_500));
        for m in [
            Message::ModelAppBind {
                element: 0x0100,
                app_index: 1,
                model: model::LIGHT_CTL_SERVER,
            },
            Message::ModelAppStatus {
                status: 0,
                element: 0x0100,
                app_index: 1,
                model: 0x1000,
            },
            Message::OnOffGet,
            Message::OnOffSet {
                on: true,
                tid: 9,
                transition: t,
                ack: true,
            },
            Message::OnOffSet {
                on: false,
                tid: 10,
                transition: None,
                ack: false,
            },
            Message::OnOffStatus {
                present: false,
                target: Some((true, 3)),
            },
            Message::LevelSet {
                level: -1200,
                tid: 1,
                transition: t,
                ack: true,
            },
            Message::LevelStatus {
                present: 5,
                target: None,
            },
            Message::LightnessSet {
                lightness: 0x8000,
                tid: 2,
                transition: None,
                ack: true,
            },
            Message::LightnessStatus {
                present: 1,
                target: Some((0xffff, 0x41)),
            },
            Message::CtlSet {
                lightness: 0xffff,
                temperature: 2_700,
                delta_uv: 0,
                tid: 3,
                transition: t,
                ack: false,
            },
            Message::CtlStatus {
                lightness: 5,
                temperature: 6_500,
                target: Some((9, 2_700, 1)),
            },
        ] {
            assert_eq!(Message::decode(&m.encode()), Ok(m.clone()), "{m:?}");
        }
        assert_eq!(hex::encode(Message::OnOffGet.encode()), "8201");
        // Mesh Model 1.0.1 §7.1: Light CTL Get is 0x82 0x5D, no parameters.
        assert_eq!(hex::encode(Message::CtlGet.encode()), "825d");
        assert_eq!(Message::decode(&[0x82, 0x5d]), Ok(Message::CtlGet));
    }

    #[test]
    fn transitions_and_bad_payloads() {
        assert_eq!(Transition::from_ms(1_500).ms(), Some(1_500));
        assert_eq!(Transition::from_ms(20_000).ms(), Some(20_000));
        assert_eq!(Transition::from_ms(0).ms(), Some(0));
        assert_eq!(Message::decode(&[]), Err(AccessError::Empty));
        assert_eq!(Message::decode(&[0x7f]), Err(AccessError::Reserved));
        assert_eq!(
            Message::decode(&[0x82]),
            Err(AccessError::BadParameters {
                opcode: 0x82,
                len: 0
            })
        );
        assert!(matches!(
            Message::decode(&[0x82, 0x02, 5, 1]),
            Err(AccessError::BadParameters { .. })
        ));
        assert!(matches!(
            Message::decode(&[0x82, 0x02, 1, 1, 1]),
            Err(AccessError::BadParameters { .. })
        ));
        assert_eq!(
            Message::decode(&[0x82, 0x99]),
            Err(AccessError::UnknownOpcode { opcode: 0x8299 })
        );
    }
}
