//! A simulated radio network of bulbs, for `itc-gateway dev`, tests and
//! benchmarks until real radios are attached.
//!
//! The bulbs behave like lights, not like stubs: each holds its own Ed25519
//! key (and signs its registration, as a real ITC bulb signs at the source),
//! moves through transitions ([`crate::light`]), reports its state when a
//! transition settles, has a link quality that drifts, and a last-seen
//! time. Factory-new bulbs wait to join and do so, one per tick, only while
//! the network is open ([`SimNetwork::permit_join`]).
//!
//! Like every core in this crate it is sans-IO: time comes in with each
//! call, randomness comes from the seed given at construction, and events
//! go out through [`SimNetwork::poll_event`].

use std::collections::{BTreeMap, VecDeque};

use itc_chain::crypto::{Domain, Hash, Keypair, PublicKey, Signature};
use itc_chain::types::{DeviceId, DeviceKind, Model, TimestampMs};
use serde::Serialize;

use crate::light::{CommandError, Light, LightCommand, LightState};

/// The model name simulated bulbs register with.
pub const SIM_MODEL: &str = "itc-sim-bulb";

/// What a bridge reports about one of its devices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub bridge: &'static str,
    pub kind: DeviceKind,
    pub model: String,
    /// 0–255, as Zigbee's LQI.
    pub link_quality: u8,
    pub last_seen_ms: TimestampMs,
    pub state: LightState,
}

/// Something the network tells the gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum SimEvent {
    /// A bulb joined while the network was open.
    Joined { device: DeviceId },
    /// A bulb reports the state it settled in.
    Reported { device: DeviceId, state: LightState },
}

/// Why the network could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("no bulb {device} on this network")]
    UnknownDevice { device: DeviceId },
    #[error(transparent)]
    Command(#[from] CommandError),
}

struct SimBulb {
    key: Keypair,
    light: Light,
    link_quality: u8,
    last_seen_ms: TimestampMs,
    /// A report is due when the transition settles.
    report_due: bool,
}

/// The simulated network.
pub struct SimNetwork {
    joined: BTreeMap<DeviceId, SimBulb>,
    waiting: VecDeque<(DeviceId, SimBulb)>,
    permit_until_ms: TimestampMs,
    events: VecDeque<SimEvent>,
    rng: u64,
}

impl SimNetwork {
    /// `joined` bulbs already on the network and `waiting` factory-new ones,
    /// all derived from `seed`, so a gateway restarted with the same seed
    /// finds the same bulbs.
    pub fn new(seed: [u8; 32], joined: usize, waiting: usize, now_ms: TimestampMs) -> SimNetwork {
        let mut network = SimNetwork {
            joined: BTreeMap::new(),
            waiting: VecDeque::new(),
            permit_until_ms: 0,
            events: VecDeque::new(),
            rng: u64::from_le_bytes([
                seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
            ]) | 1,
        };
        for index in 0..joined + waiting {
            let key = Keypair::from_seed(
                Hash::digest_parts(&[b"itc-sim-bulb", &seed, &(index as u64).to_le_bytes()]).0,
            );
            let id = device_id(&key.public());
            let bulb = SimBulb {
                key,
                light: Light::new(LightState::default()),
                link_quality: network.next_link_quality(),
                last_seen_ms: now_ms,
                report_due: false,
            };
            if index < joined {
                network.joined.insert(id, bulb);
            } else {
                network.waiting.push_back((id, bulb));
            }
        }
        network
    }

    /// Opens the network for joining until `now_ms + duration_ms`; 0 closes
    /// it.
    pub fn permit_join(&mut self, now_ms: TimestampMs, duration_ms: u64) {
        self.permit_until_ms = now_ms + duration_ms;
    }

    /// Until when joining is permitted (in the past when closed).
    pub fn permit_until(&self) -> TimestampMs {
        self.permit_until_ms
    }

    /// Sends a command to a bulb; returns the state it is moving to.
    pub fn handle_command(
        &mut self,
        now_ms: TimestampMs,
        device: &DeviceId,
        command: &LightCommand,
    ) -> Result<LightState, SimError> {
        command.validate()?;
        let bulb = self
            .joined
            .get_mut(device)
            .ok_or_else(|| SimError::UnknownDevice {
                device: device.clone(),
            })?;
        let target = bulb.light.apply(now_ms, command);
        bulb.last_seen_ms = now_ms;
        if bulb.light.settles_at() <= now_ms {
            bulb.report_due = false;
            self.events.push_back(SimEvent::Reported {
                device: device.clone(),
                state: target,
            });
        } else {
            bulb.report_due = true;
        }
        Ok(target)
    }

    /// Lets time pass: settled transitions report, one waiting bulb joins if
    /// the network is open.
    pub fn handle_tick(&mut self, now_ms: TimestampMs) {
        for (id, bulb) in &mut self.joined {
            if bulb.report_due && bulb.light.settles_at() <= now_ms {
                bulb.report_due = false;
                bulb.last_seen_ms = now_ms;
                self.events.push_back(SimEvent::Reported {
                    device: id.clone(),
                    state: bulb.light.target(),
                });
            }
        }
        if now_ms < self.permit_until_ms {
            if let Some((id, mut bulb)) = self.waiting.pop_front() {
                bulb.last_seen_ms = now_ms;
                bulb.link_quality = self.next_link_quality();
                self.events
                    .push_back(SimEvent::Joined { device: id.clone() });
                self.joined.insert(id, bulb);
            }
        }
    }

    /// The earliest time a tick has something to do, if any.
    pub fn next_deadline(&self, now_ms: TimestampMs) -> Option<TimestampMs> {
        let settles = self
            .joined
            .values()
            .filter(|b| b.report_due)
            .map(|b| b.light.settles_at())
            .min();
        let joins = (now_ms < self.permit_until_ms && !self.waiting.is_empty())
            .then_some(now_ms + JOIN_INTERVAL_MS);
        settles.into_iter().chain(joins).min()
    }

    pub fn poll_event(&mut self) -> Option<SimEvent> {
        self.events.pop_front()
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceId> {
        self.joined.keys()
    }

    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// A bulb as the gateway sees it at `now_ms`.
    pub fn info(&self, device: &DeviceId, now_ms: TimestampMs) -> Option<DeviceInfo> {
        let bulb = self.joined.get(device)?;
        Some(DeviceInfo {
            id: device.clone(),
            bridge: "sim",
            kind: DeviceKind::Zigbee,
            model: SIM_MODEL.into(),
            link_quality: bulb.link_quality,
            last_seen_ms: bulb.last_seen_ms,
            state: bulb.light.state_at(now_ms),
        })
    }

    /// Where a bulb's current transition ends.
    pub fn target(&self, device: &DeviceId) -> Option<LightState> {
        self.joined.get(device).map(|b| b.light.target())
    }

    /// The bulb's public key, to register it on chain.
    pub fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        self.joined.get(device).map(|b| b.key.public())
    }

    /// The bulb signs `payload` with its own key under `domain` (its proof
    /// of holding the key when a gateway registers it).
    pub fn sign(&self, device: &DeviceId, domain: Domain, payload: &[u8]) -> Option<Signature> {
        self.joined.get(device).map(|b| b.key.sign(domain, payload))
    }

    /// The model every simulated bulb reports.
    pub fn model() -> Model {
        // A constant well within the bound; the fallback is unreachable.
        Model::new(SIM_MODEL).unwrap_or_else(|_| Model::default())
    }

    fn next_link_quality(&mut self) -> u8 {
        // xorshift64: cheap, seeded, good enough for a signal reading.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        120 + (self.rng % 136) as u8
    }
}

/// How often a waiting bulb joins while the network is open.
pub const JOIN_INTERVAL_MS: u64 = 500;

/// A simulated bulb's id: `sim:` and its key's first 8 bytes, like a radio's
/// IEEE address.
pub fn device_id(key: &PublicKey) -> DeviceId {
    let mut id = String::from("sim:");
    for byte in &key.0[..8] {
        id.push_str(&format!("{byte:02x}"));
    }
    // 20 characters from [a-z0-9:]; always a valid id.
    DeviceId::new(id).unwrap_or_else(|_| unreachable!("a hex id is a valid device id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> SimNetwork {
        SimNetwork::new([7; 32], 3, 2, 1_000)
    }

    #[test]
    fn the_same_seed_gives_the_same_bulbs() {
        let a: Vec<_> = network().devices().cloned().collect();
        let b: Vec<_> = network().devices().cloned().collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        let other: Vec<_> = SimNetwork::new([8; 32], 3, 0, 0)
            .devices()
            .cloned()
            .collect();
        assert_ne!(a, other);
    }

    #[test]
    fn a_command_moves_the_bulb_and_it_reports_when_settled() {
        let mut net = network();
        let id = net.devices().next().cloned().unwrap();
        let command = LightCommand {
            brightness: Some(100),
            transition_ms: Some(1_000),
            ..LightCommand::default()
        };
        let target = net.handle_command(2_000, &id, &command).unwrap();
        assert_eq!(target.brightness, 100);
        assert_eq!(net.next_deadline(2_000), Some(3_000));
        net.handle_tick(2_500);
        assert_eq!(net.poll_event(), None);
        assert!(net.info(&id, 2_500).unwrap().state.brightness > 100);
        net.handle_tick(3_000);
        assert_eq!(
            net.poll_event(),
            Some(SimEvent::Reported {
                device: id.clone(),
                state: target
            })
        );
        assert_eq!(net.info(&id, 3_000).unwrap().last_seen_ms, 3_000);
    }

    #[test]
    fn bulbs_join_only_while_the_network_is_open() {
        let mut net = network();
        net.handle_tick(5_000);
        assert_eq!(net.poll_event(), None);
        net.permit_join(5_000, 10_000);
        net.handle_tick(5_100);
        net.handle_tick(5_600);
        net.handle_tick(6_100);
        let joined: Vec<_> = std::iter::from_fn(|| net.poll_event()).collect();
        assert_eq!(joined.len(), 2, "both waiting bulbs joined");
        assert_eq!(net.len(), 5);
        assert!(matches!(joined[0], SimEvent::Joined { .. }));
    }

    #[test]
    fn unknown_bulbs_and_bad_commands_are_refused() {
        let mut net = network();
        let stranger = DeviceId::new("sim:0000000000000000").unwrap();
        let on = LightCommand {
            on: Some(true),
            ..LightCommand::default()
        };
        assert!(matches!(
            net.handle_command(0, &stranger, &on),
            Err(SimError::UnknownDevice { .. })
        ));
        let id = net.devices().next().cloned().unwrap();
        let bad = LightCommand {
            brightness: Some(255),
            ..LightCommand::default()
        };
        assert!(matches!(
            net.handle_command(0, &id, &bad),
            Err(SimError::Command(CommandError::Brightness { value: 255 }))
        ));
    }
}
