//! A light: its state, the commands it takes and its transitions.
//!
//! Units follow the Zigbee Cluster Library, which the other bridges map
//! onto as well: brightness is the Level Control cluster's 1–254, colour
//! temperature is in mireds (Color Control, ColorTemperatureMireds; 153–500
//! covers 6500 K to 2000 K, what common white-spectrum bulbs offer), colour
//! is either CIE 1931 xy or hue (degrees) and saturation (percent), and a
//! transition time is given in milliseconds (ZCL counts tenths of a
//! second; the bridge rounds).
//!
//! A [`Light`] is a pure value: [`Light::apply`] starts a transition at the
//! time given, and [`Light::state_at`] says where the light is at any later
//! time, so a simulator, a driver and a test all see the same light.

use serde::{Deserialize, Serialize};

/// Dimmest and brightest level (ZCL Level Control: 0x01–0xFE).
pub const MIN_BRIGHTNESS: u8 = 1;
pub const MAX_BRIGHTNESS: u8 = 254;
/// Coolest and warmest colour temperature, in mireds.
pub const MIN_MIREDS: u16 = 153;
pub const MAX_MIREDS: u16 = 500;
/// Longest transition: ZCL's 16-bit count of tenths of a second.
pub const MAX_TRANSITION_MS: u32 = 65_535 * 100;

/// A light's colour.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Color {
    /// White at a colour temperature.
    Temperature { mireds: u16 },
    /// CIE 1931 chromaticity.
    Xy { x: f64, y: f64 },
    /// Hue in degrees (0–359) and saturation in percent (0–100).
    HueSat { hue: u16, saturation: u8 },
}

/// What a light shows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LightState {
    pub on: bool,
    pub brightness: u8,
    pub color: Color,
}

impl Default for LightState {
    /// A bulb fresh from the box: on, full brightness, warm white.
    fn default() -> Self {
        LightState {
            on: true,
            brightness: MAX_BRIGHTNESS,
            color: Color::Temperature { mireds: 370 },
        }
    }
}

/// A command: every field is optional; what is left out stays as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LightCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness: Option<u8>,
    /// Colour temperature in mireds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_temp: Option<u16>,
    /// CIE 1931 `[x, y]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xy: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hue: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_ms: Option<u32>,
}

/// Why a command cannot be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("brightness {value} is outside {MIN_BRIGHTNESS}..={MAX_BRIGHTNESS}")]
    Brightness { value: u8 },
    #[error("colour temperature {value} mireds is outside {MIN_MIREDS}..={MAX_MIREDS}")]
    ColorTemp { value: u16 },
    #[error("xy ({x}, {y}) is not a chromaticity: both must lie in 0..=1")]
    Xy { x: f64, y: f64 },
    #[error("hue {value} is outside 0..=359 degrees")]
    Hue { value: u16 },
    #[error("saturation {value} is outside 0..=100 percent")]
    Saturation { value: u8 },
    #[error("hue and saturation must be given together")]
    HalfHueSat,
    #[error("give one colour: color_temp, xy, or hue with saturation")]
    TwoColors,
    #[error("transition of {value} ms is longer than {MAX_TRANSITION_MS} ms")]
    Transition { value: u32 },
    #[error("the command changes nothing: give at least one field")]
    Empty,
}

impl LightCommand {
    /// Checks every field's range and that at most one colour is given.
    pub fn validate(&self) -> Result<(), CommandError> {
        if let Some(value) = self.brightness {
            if !(MIN_BRIGHTNESS..=MAX_BRIGHTNESS).contains(&value) {
                return Err(CommandError::Brightness { value });
            }
        }
        if let Some(value) = self.color_temp {
            if !(MIN_MIREDS..=MAX_MIREDS).contains(&value) {
                return Err(CommandError::ColorTemp { value });
            }
        }
        if let Some([x, y]) = self.xy {
            if !((0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y)) {
                return Err(CommandError::Xy { x, y });
            }
        }
        if let Some(value) = self.hue {
            if value > 359 {
                return Err(CommandError::Hue { value });
            }
        }
        if let Some(value) = self.saturation {
            if value > 100 {
                return Err(CommandError::Saturation { value });
            }
        }
        if self.hue.is_some() != self.saturation.is_some() {
            return Err(CommandError::HalfHueSat);
        }
        let colors = [
            self.color_temp.is_some(),
            self.xy.is_some(),
            self.hue.is_some(),
        ];
        if colors.iter().filter(|c| **c).count() > 1 {
            return Err(CommandError::TwoColors);
        }
        if let Some(value) = self.transition_ms {
            if value > MAX_TRANSITION_MS {
                return Err(CommandError::Transition { value });
            }
        }
        if self.on.is_none() && self.brightness.is_none() && self.color().is_none() {
            return Err(CommandError::Empty);
        }
        Ok(())
    }

    fn color(&self) -> Option<Color> {
        if let Some(mireds) = self.color_temp {
            Some(Color::Temperature { mireds })
        } else if let Some([x, y]) = self.xy {
            Some(Color::Xy { x, y })
        } else {
            match (self.hue, self.saturation) {
                (Some(hue), Some(saturation)) => Some(Color::HueSat { hue, saturation }),
                _ => None,
            }
        }
    }

    /// The state this command leads to from `state`.
    pub fn target(&self, state: &LightState) -> LightState {
        LightState {
            on: self.on.unwrap_or(state.on),
            brightness: self.brightness.unwrap_or(state.brightness),
            color: self.color().unwrap_or(state.color),
        }
    }

    /// The command that takes any light to `state` (a scene's entry).
    pub fn to_state(state: &LightState, transition_ms: Option<u32>) -> LightCommand {
        let mut command = LightCommand {
            on: Some(state.on),
            brightness: Some(state.brightness),
            transition_ms,
            ..LightCommand::default()
        };
        match state.color {
            Color::Temperature { mireds } => command.color_temp = Some(mireds),
            Color::Xy { x, y } => command.xy = Some([x, y]),
            Color::HueSat { hue, saturation } => {
                command.hue = Some(hue);
                command.saturation = Some(saturation);
            }
        }
        command
    }
}

/// A light moving from one state to another over a time span (or resting,
/// when the span is over).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Light {
    from: LightState,
    to: LightState,
    start_ms: u64,
    end_ms: u64,
}

impl Light {
    pub fn new(state: LightState) -> Light {
        Light {
            from: state,
            to: state,
            start_ms: 0,
            end_ms: 0,
        }
    }

    /// Starts moving towards the command's target from wherever the light
    /// is at `now_ms`. What the command leaves out keeps heading where it
    /// was going (a colour change does not cut a running fade short; on a
    /// bulb these are separate clusters). Returns the target; the command
    /// must be valid.
    pub fn apply(&mut self, now_ms: u64, command: &LightCommand) -> LightState {
        let from = self.state_at(now_ms);
        let to = command.target(&self.to);
        *self = Light {
            from,
            to,
            start_ms: now_ms,
            end_ms: now_ms + u64::from(command.transition_ms.unwrap_or(0)),
        };
        to
    }

    /// Where the transition ends.
    pub fn target(&self) -> LightState {
        self.to
    }

    /// When the current transition ends.
    pub fn settles_at(&self) -> u64 {
        self.end_ms
    }

    /// The light's state at `now_ms`. Brightness fades through the
    /// transition (a light turning on rises from its dimmest level, one
    /// turning off fades to it and goes out at the end); a colour in the
    /// same mode fades too, a change of mode switches at the start.
    pub fn state_at(&self, now_ms: u64) -> LightState {
        if now_ms >= self.end_ms {
            return self.to;
        }
        let progress =
            (now_ms.saturating_sub(self.start_ms)) as f64 / (self.end_ms - self.start_ms) as f64;
        let level = |s: &LightState| {
            if s.on {
                f64::from(s.brightness)
            } else {
                f64::from(MIN_BRIGHTNESS)
            }
        };
        let brightness = lerp(level(&self.from), level(&self.to), progress)
            .round()
            .clamp(f64::from(MIN_BRIGHTNESS), f64::from(MAX_BRIGHTNESS))
            as u8;
        LightState {
            on: self.from.on || self.to.on,
            brightness,
            color: blend(self.from.color, self.to.color, progress),
        }
    }
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

fn blend(from: Color, to: Color, t: f64) -> Color {
    match (from, to) {
        (Color::Temperature { mireds: a }, Color::Temperature { mireds: b }) => {
            Color::Temperature {
                mireds: lerp(f64::from(a), f64::from(b), t).round() as u16,
            }
        }
        (Color::Xy { x: x0, y: y0 }, Color::Xy { x: x1, y: y1 }) => Color::Xy {
            x: lerp(x0, x1, t),
            y: lerp(y0, y1, t),
        },
        (
            Color::HueSat {
                hue: h0,
                saturation: s0,
            },
            Color::HueSat {
                hue: h1,
                saturation: s1,
            },
        ) => {
            // The short way round the colour wheel.
            let mut delta = f64::from(h1) - f64::from(h0);
            if delta > 180.0 {
                delta -= 360.0;
            } else if delta < -180.0 {
                delta += 360.0;
            }
            let hue = (f64::from(h0) + delta * t).round().rem_euclid(360.0) as u16;
            Color::HueSat {
                hue,
                saturation: lerp(f64::from(s0), f64::from(s1), t).round() as u8,
            }
        }
        (_, to) => to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fade_passes_through_the_middle_and_ends_on_target() {
        let mut light = Light::new(LightState {
            on: true,
            brightness: 54,
            color: Color::Temperature { mireds: 200 },
        });
        let command = LightCommand {
            brightness: Some(254),
            color_temp: Some(400),
            transition_ms: Some(1_000),
            ..LightCommand::default()
        };
        let target = light.apply(10_000, &command);
        let middle = light.state_at(10_500);
        assert_eq!(middle.brightness, 154);
        assert_eq!(middle.color, Color::Temperature { mireds: 300 });
        assert_eq!(light.state_at(11_000), target);
        assert_eq!(target.brightness, 254);
    }

    #[test]
    fn turning_off_fades_then_goes_out() {
        let mut light = Light::new(LightState::default());
        let command = LightCommand {
            on: Some(false),
            transition_ms: Some(400),
            ..LightCommand::default()
        };
        light.apply(0, &command);
        assert!(light.state_at(200).on);
        assert!(light.state_at(200).brightness < MAX_BRIGHTNESS);
        let end = light.state_at(400);
        assert!(!end.on);
        // The level is kept for the next time it is turned on.
        assert_eq!(end.brightness, MAX_BRIGHTNESS);
    }

    #[test]
    fn hue_takes_the_short_way_round() {
        let mut light = Light::new(LightState {
            on: true,
            brightness: 100,
            color: Color::HueSat {
                hue: 350,
                saturation: 100,
            },
        });
        light.apply(
            0,
            &LightCommand {
                hue: Some(10),
                saturation: Some(100),
                transition_ms: Some(100),
                ..LightCommand::default()
            },
        );
        assert_eq!(
            light.state_at(50).color,
            Color::HueSat {
                hue: 0,
                saturation: 100
            }
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let bad = [
            (
                LightCommand {
                    brightness: Some(0),
                    ..Default::default()
                },
                CommandError::Brightness { value: 0 },
            ),
            (
                LightCommand {
                    color_temp: Some(100),
                    ..Default::default()
                },
                CommandError::ColorTemp { value: 100 },
            ),
            (
                LightCommand {
                    hue: Some(10),
                    ..Default::default()
                },
                CommandError::HalfHueSat,
            ),
            (
                LightCommand {
                    color_temp: Some(300),
                    xy: Some([0.3, 0.3]),
                    ..Default::default()
                },
                CommandError::TwoColors,
            ),
            (LightCommand::default(), CommandError::Empty),
        ];
        for (command, error) in bad {
            assert_eq!(command.validate(), Err(error));
        }
        let json = r#"{"on": true, "flash": "long"}"#;
        assert!(serde_json::from_str::<LightCommand>(json).is_err());
    }

    proptest! {
        /// Brightness never leaves the range and moves monotonically
        /// between the two ends of a fade.
        #[test]
        fn fades_stay_between_their_ends(
            from in MIN_BRIGHTNESS..=MAX_BRIGHTNESS,
            to in MIN_BRIGHTNESS..=MAX_BRIGHTNESS,
            duration in 1u32..10_000,
            at in 0u64..12_000,
        ) {
            let mut light = Light::new(LightState { brightness: from, ..LightState::default() });
            light.apply(0, &LightCommand {
                brightness: Some(to),
                transition_ms: Some(duration),
                ..LightCommand::default()
            });
            let b = light.state_at(at).brightness;
            prop_assert!(b >= from.min(to) && b <= from.max(to));
            prop_assert_eq!(light.state_at(u64::from(duration)).brightness, to);
        }
    }
}
