//! Payloads in the conventions users already rely on: Zigbee2MQTT's light
//! state and `set` messages, its bridge messages, and Home Assistant's MQTT
//! discovery (JSON schema lights).
//!
//! Zigbee2MQTT states are JSON like
//! `{"state":"ON","brightness":200,"color_temp":300,"color_mode":"color_temp"}`
//! with `color` as `{"x":..,"y":..}` or `{"hue":..,"saturation":..}`;
//! brightness is 0–254 and `transition` is in seconds. Home Assistant's JSON
//! schema sends `color` as `{"h":..,"s":..}` for hue/saturation; both
//! spellings are read.

use serde::Deserialize;
use serde_json::{json, Value};

use super::topics::Topics;
use crate::light::{Color, LightCommand, LightState, MAX_MIREDS, MIN_BRIGHTNESS, MIN_MIREDS};

/// A light's state as Zigbee2MQTT publishes it.
pub fn state_json(state: &LightState) -> Value {
    let mut out = json!({
        "state": if state.on { "ON" } else { "OFF" },
        "brightness": state.brightness,
    });
    match state.color {
        Color::Temperature { mireds } => {
            out["color_mode"] = "color_temp".into();
            out["color_temp"] = mireds.into();
        }
        Color::Xy { x, y } => {
            out["color_mode"] = "xy".into();
            out["color"] = json!({ "x": x, "y": y });
        }
        Color::HueSat { hue, saturation } => {
            out["color_mode"] = "hs".into();
            out["color"] =
                json!({ "hue": hue, "saturation": saturation, "h": hue, "s": saturation });
        }
    }
    out
}

/// Reads a state a device reports (the same shape).
pub fn parse_state(value: &Value) -> Result<LightState, PayloadError> {
    let set: SetMessage =
        serde_json::from_value(value.clone()).map_err(|e| PayloadError::Json(e.to_string()))?;
    let on = match set.state.as_deref() {
        Some("ON") => true,
        Some("OFF") => false,
        other => return Err(PayloadError::State(other.unwrap_or_default().into())),
    };
    let command = set.command(false)?;
    let color = match (
        command.color_temp,
        command.xy,
        command.hue,
        command.saturation,
    ) {
        (Some(mireds), _, _, _) => Color::Temperature { mireds },
        (_, Some([x, y]), _, _) => Color::Xy { x, y },
        (_, _, Some(hue), Some(saturation)) => Color::HueSat { hue, saturation },
        _ => return Err(PayloadError::NoColor),
    };
    Ok(LightState {
        on,
        brightness: command.brightness.unwrap_or(MIN_BRIGHTNESS),
        color,
    })
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("not the expected JSON: {0}")]
    Json(String),
    #[error("state must be ON, OFF or TOGGLE, not {0:?}")]
    State(String),
    #[error("brightness 0 means off; send \"state\":\"OFF\" (or a brightness of 1–254)")]
    ZeroBrightness,
    #[error("transition {0} s is not a duration")]
    Transition(f64),
    #[error("a state needs a colour (color_temp or color)")]
    NoColor,
    #[error("the command is not valid: {0}")]
    Command(#[from] crate::light::CommandError),
}

#[derive(Debug, Default, Deserialize)]
struct ColorField {
    x: Option<f64>,
    y: Option<f64>,
    hue: Option<u16>,
    saturation: Option<u8>,
    h: Option<f64>,
    s: Option<f64>,
}

/// A `<base>/<friendly>/set` message.
#[derive(Debug, Default, Deserialize)]
pub struct SetMessage {
    state: Option<String>,
    brightness: Option<u8>,
    color_temp: Option<u16>,
    color: Option<ColorField>,
    transition: Option<f64>,
}

impl SetMessage {
    pub fn parse(payload: &[u8]) -> Result<SetMessage, PayloadError> {
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))
    }

    /// The command, given whether the light is on now (for `TOGGLE`).
    pub fn command(&self, on_now: bool) -> Result<LightCommand, PayloadError> {
        let on = match self.state.as_deref() {
            None => None,
            Some("ON") => Some(true),
            Some("OFF") => Some(false),
            Some("TOGGLE") => Some(!on_now),
            Some(other) => return Err(PayloadError::State(other.into())),
        };
        if self.brightness == Some(0) {
            return Err(PayloadError::ZeroBrightness);
        }
        let transition_ms = match self.transition {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => {
                Some((s * 1000.0).round().min(u32::MAX as f64) as u32)
            }
            Some(s) => return Err(PayloadError::Transition(s)),
        };
        let color = self.color.as_ref();
        let xy = color.and_then(|c| Some([c.x?, c.y?]));
        let hue = color.and_then(|c| c.hue.or(c.h.map(|h| h.round().clamp(0.0, 359.0) as u16)));
        let saturation = color.and_then(|c| {
            c.saturation
                .or(c.s.map(|s| s.round().clamp(0.0, 100.0) as u8))
        });
        let command = LightCommand {
            on,
            brightness: self.brightness,
            color_temp: self.color_temp,
            xy,
            hue,
            saturation,
            transition_ms,
        };
        command.validate()?;
        Ok(command)
    }
}

/// A level that is safe in a Home Assistant object id: `[A-Za-z0-9_-]`.
pub fn object_id(device: &str) -> String {
    device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What discovery says about a light.
pub struct LightInfo<'a> {
    pub device: &'a str,
    pub model: &'a str,
    pub bridge: &'a str,
}

/// The retained discovery config for one light (Home Assistant's MQTT
/// light, JSON schema), and the topic it goes to.
pub fn discovery(topics: &Topics, gateway: &str, light: &LightInfo<'_>) -> (String, Value) {
    let unique_id = format!("itc_{}", object_id(light.device));
    let config = json!({
        "schema": "json",
        "name": null,
        "unique_id": unique_id,
        "object_id": unique_id,
        "state_topic": topics.state(light.device),
        "command_topic": topics.set(light.device),
        "availability": [
            { "topic": topics.bridge("state"), "value_template": "{{ value_json.state }}" },
            { "topic": topics.availability(light.device), "value_template": "{{ value_json.state }}" }
        ],
        "availability_mode": "all",
        "brightness": true,
        "brightness_scale": 254,
        "supported_color_modes": ["color_temp", "xy", "hs"],
        "min_mireds": MIN_MIREDS,
        "max_mireds": MAX_MIREDS,
        "device": {
            "identifiers": [unique_id],
            "name": light.device,
            "model": light.model,
            "manufacturer": format!("ITC ({} bridge)", light.bridge),
            "via_device": format!("itc_gateway_{}", object_id(gateway)),
        },
        "origin": { "name": "ITC gateway" },
    });
    (topics.discovery(&unique_id), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_messages_in_both_dialects() {
        let z2m = SetMessage::parse(
            br#"{"state":"ON","brightness":200,"color_temp":300,"transition":1.5}"#,
        )
        .unwrap()
        .command(false)
        .unwrap();
        assert_eq!(
            z2m,
            LightCommand {
                on: Some(true),
                brightness: Some(200),
                color_temp: Some(300),
                transition_ms: Some(1500),
                ..LightCommand::default()
            }
        );
        let ha = SetMessage::parse(br#"{"state":"ON","color":{"h":120.4,"s":55.6}}"#)
            .unwrap()
            .command(false)
            .unwrap();
        assert_eq!((ha.hue, ha.saturation), (Some(120), Some(56)));
        let xy = SetMessage::parse(br#"{"color":{"x":0.3,"y":0.4}}"#)
            .unwrap()
            .command(true)
            .unwrap();
        assert_eq!(xy.xy, Some([0.3, 0.4]));
        let toggle = SetMessage::parse(br#"{"state":"TOGGLE"}"#).unwrap();
        assert_eq!(toggle.command(true).unwrap().on, Some(false));
        assert_eq!(toggle.command(false).unwrap().on, Some(true));
    }

    #[test]
    fn bad_set_messages_say_why() {
        let parse = |p: &[u8]| SetMessage::parse(p).and_then(|m| m.command(false));
        assert!(matches!(parse(b"{not json"), Err(PayloadError::Json(_))));
        assert!(matches!(
            parse(br#"{"state":"DIM"}"#),
            Err(PayloadError::State(_))
        ));
        assert!(matches!(
            parse(br#"{"brightness":0}"#),
            Err(PayloadError::ZeroBrightness)
        ));
        assert!(matches!(
            parse(br#"{"color_temp":20}"#),
            Err(PayloadError::Command(_))
        ));
        assert!(matches!(
            parse(br#"{"transition":-1}"#),
            Err(PayloadError::Transition(_))
        ));
        assert!(matches!(
            parse(br#"{"brightness":300}"#),
            Err(PayloadError::Json(_))
        ));
    }

    #[test]
    fn states_round_trip() {
        for color in [
            Color::Temperature { mireds: 250 },
            Color::Xy { x: 0.25, y: 0.5 },
            Color::HueSat {
                hue: 200,
                saturation: 80,
            },
        ] {
            let state = LightState {
                on: false,
                brightness: 77,
                color,
            };
            assert_eq!(parse_state(&state_json(&state)).unwrap(), state);
        }
    }

    #[test]
    fn discovery_names_the_topics() {
        let topics = Topics::new("itc").unwrap();
        let light = LightInfo {
            device: "zigbee:00124b00",
            model: "bulb",
            bridge: "zigbee",
        };
        let (topic, config) = discovery(&topics, "itcpk1gw", &light);
        assert_eq!(topic, "homeassistant/light/itc_zigbee_00124b00/config");
        assert_eq!(config["command_topic"], "itc/zigbee:00124b00/set");
        assert_eq!(config["state_topic"], "itc/zigbee:00124b00");
        assert_eq!(config["schema"], "json");
        assert_eq!(config["supported_color_modes"][0], "color_temp");
    }
}
