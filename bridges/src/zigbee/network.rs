//! The Zigbee network as the gateway runs it, sans-IO: bringing the
//! coordinator up, the device table, the interview, light commands as ZCL
//! data requests, and reports folded into each light's state.
//!
//! Start-up, whenever the port (re)opens: a soft SYS_RESET_REQ (answered by
//! SYS_RESET_IND once the stick rebooted), SYS_PING, SYS_VERSION,
//! ZDO_STARTUP_FROM_APP (form or resume the network), wait for the state
//! change to coordinator, AF_REGISTER endpoint 1 (Home Automation). A
//! device that announces itself is interviewed (Basic: manufacturer and
//! model) and then reported joined. A light command becomes one ZCL
//! frame per cluster ([`zcl::commands_for`]); it is done when every frame's
//! AF_DATA_CONFIRM has come back, and failed if any did not — including
//! when the port goes away first.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::host::{Event, Host, HostError, Timing, Token};
use super::mt::{self, Indication, Request, Version};
use super::ota::{ClientMessage, ServerMessage};
use super::zcl::{self, FrameType, Global, Value};
use crate::light::{LightCommand, LightState};

/// Our endpoint on the coordinator.
pub const ENDPOINT: u8 = 1;
/// The lights' endpoint (the common case for Zigbee bulbs).
pub const LIGHT_ENDPOINT: u8 = 1;
/// Radius for unicasts (Z-Stack's default maximum).
const RADIUS: u8 = 30;

/// Names a light command or permit-join until it is done.
pub type CommandId = u64;

/// A device on the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    pub ieee: u64,
    pub nwk: u16,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub interviewed: bool,
    pub state: LightState,
    pub link_quality: u8,
    pub last_seen_ms: u64,
}

/// What the network tells the gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum NetEvent {
    /// The coordinator is up (after every (re)connection).
    Up { version: Version },
    /// A device joined and was interviewed.
    Joined { ieee: u64, model: String },
    /// A light's reported state changed.
    State { ieee: u64, state: LightState },
    /// A device's OTA Upgrade message (an image query, a block request,
    /// the end of a download); answer with [`Network::send_ota`].
    Ota {
        ieee: u64,
        seq: u8,
        message: ClientMessage,
    },
    /// A command finished.
    Done {
        id: CommandId,
        result: Result<(), HostError>,
    },
}

/// Why a command cannot be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetError {
    #[error("the coordinator is not up")]
    NotUp,
    #[error("no device 0x{ieee:016x} on the network")]
    UnknownDevice { ieee: u64 },
    #[error(transparent)]
    Command(#[from] crate::light::CommandError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Down,
    Reset,
    Ping,
    Version,
    Startup,
    AwaitCoordinator,
    Register,
    Up,
}

/// The network.
pub struct Network {
    host: Host,
    phase: Phase,
    step: Option<Token>,
    version: Option<Version>,
    devices: BTreeMap<u64, Device>,
    by_nwk: HashMap<u16, u64>,
    /// Data-request tokens → the command they belong to.
    parts: HashMap<Token, CommandId>,
    /// Commands → data requests still outstanding, and the first failure.
    commands: HashMap<CommandId, (usize, Option<HostError>)>,
    /// Interview read requests → the device.
    interviews: HashMap<Token, u64>,
    events: VecDeque<NetEvent>,
    next_command: CommandId,
    zcl_seq: u8,
}

impl Network {
    pub fn new(timing: Timing) -> Network {
        Network {
            host: Host::new(timing),
            phase: Phase::Down,
            step: None,
            version: None,
            devices: BTreeMap::new(),
            by_nwk: HashMap::new(),
            parts: HashMap::new(),
            commands: HashMap::new(),
            interviews: HashMap::new(),
            events: VecDeque::new(),
            next_command: 1,
            zcl_seq: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn device(&self, ieee: u64) -> Option<&Device> {
        self.devices.get(&ieee)
    }

    /// The port (re)opened: bring the coordinator up.
    pub fn connected(&mut self, now_ms: u64) {
        self.phase = Phase::Reset;
        self.step = Some(self.host.request(now_ms, Request::Reset { soft: true }));
    }

    /// The port is gone: everything in flight fails; the device table stays.
    pub fn disconnected(&mut self) {
        self.phase = Phase::Down;
        self.step = None;
        self.host.disconnected();
        self.drain_host(0);
    }

    /// Lets devices join for `seconds`.
    pub fn permit_join(&mut self, now_ms: u64, seconds: u8) -> Result<CommandId, NetError> {
        if !self.is_up() {
            return Err(NetError::NotUp);
        }
        let id = self.new_command(1);
        let token = self.host.request(now_ms, Request::PermitJoin { seconds });
        self.parts.insert(token, id);
        Ok(id)
    }

    /// Sends a light command to a device.
    pub fn send(
        &mut self,
        now_ms: u64,
        ieee: u64,
        command: &LightCommand,
    ) -> Result<CommandId, NetError> {
        command.validate()?;
        let nwk = self.reachable(ieee)?;
        let frames = zcl::commands_for(command);
        let id = self.new_command(frames.len());
        for lighting in frames {
            self.zcl_seq = self.zcl_seq.wrapping_add(1);
            let token = self.host.request(
                now_ms,
                data_request(
                    nwk,
                    lighting.cluster(),
                    lighting.frame(self.zcl_seq).encode(),
                ),
            );
            self.parts.insert(token, id);
        }
        if self.commands.get(&id).is_some_and(|(left, _)| *left == 0) {
            self.finish_command(id);
        }
        Ok(id)
    }

    /// Answers a device's OTA Upgrade message.
    pub fn send_ota(
        &mut self,
        now_ms: u64,
        ieee: u64,
        seq: u8,
        message: &ServerMessage,
    ) -> Result<CommandId, NetError> {
        let nwk = self.reachable(ieee)?;
        let id = self.new_command(1);
        let frame = message.frame(seq);
        let token = self
            .host
            .request(now_ms, data_request(nwk, zcl::cluster::OTA, frame.encode()));
        self.parts.insert(token, id);
        Ok(id)
    }

    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8]) {
        self.host.handle_bytes(now_ms, bytes);
        self.drain_host(now_ms);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.host.handle_timeout(now_ms);
        self.drain_host(now_ms);
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.host.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<NetEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<u64> {
        self.host.next_timeout()
    }

    /// The network address of a device the coordinator can reach now.
    fn reachable(&self, ieee: u64) -> Result<u16, NetError> {
        if !self.is_up() {
            return Err(NetError::NotUp);
        }
        self.devices
            .get(&ieee)
            .map(|d| d.nwk)
            .ok_or(NetError::UnknownDevice { ieee })
    }

    fn new_command(&mut self, parts: usize) -> CommandId {
        let id = self.next_command;
        self.next_command += 1;
        self.commands.insert(id, (parts, None));
        id
    }

    fn finish_command(&mut self, id: CommandId) {
        if let Some((_, failure)) = self.commands.remove(&id) {
            self.events.push_back(NetEvent::Done {
                id,
                result: failure.map_or(Ok(()), Err),
            });
        }
    }

    fn part_done(&mut self, token: Token, result: Result<(), HostError>) {
        let Some(id) = self.parts.remove(&token) else {
            return;
        };
        if let Some((left, failure)) = self.commands.get_mut(&id) {
            *left = left.saturating_sub(1);
            if let Err(error) = result {
                failure.get_or_insert(error);
            }
            if *left == 0 {
                self.finish_command(id);
            }
        }
    }

    fn drain_host(&mut self, now_ms: u64) {
        while let Some(event) = self.host.poll_event() {
            match event {
                Event::Response { token, data } => {
                    if Some(token) == self.step {
                        self.advance(now_ms, &data);
                    } else {
                        // Permit join's SRSP: status 0 is success.
                        let status = data.first().copied().unwrap_or(0xff);
                        let result = if status == 0 {
                            Ok(())
                        } else {
                            Err(HostError::Status { status })
                        };
                        self.part_done(token, result);
                    }
                }
                Event::Delivered { token } => {
                    self.interviews.remove(&token);
                    self.part_done(token, Ok(()));
                }
                Event::Failed { token, error } => {
                    if Some(token) == self.step {
                        // Start-up failed: try again from the top.
                        self.connected(now_ms);
                    }
                    self.interviews.remove(&token);
                    self.part_done(token, Err(error));
                }
                Event::Indication(indication) => self.handle_indication(now_ms, indication),
            }
        }
    }

    /// The next start-up step, after the current one answered `data`.
    fn advance(&mut self, now_ms: u64, data: &[u8]) {
        let next = match self.phase {
            Phase::Reset => {
                self.phase = Phase::Ping;
                Some(Request::Ping)
            }
            Phase::Ping => {
                self.phase = Phase::Version;
                Some(Request::Version)
            }
            Phase::Version => {
                self.version = Version::parse(data).ok();
                self.phase = Phase::Startup;
                Some(Request::StartupFromApp { delay_ms: 100 })
            }
            Phase::Startup => {
                self.phase = Phase::AwaitCoordinator;
                None
            }
            Phase::Register => {
                self.phase = Phase::Up;
                if let Some(version) = self.version {
                    self.events.push_back(NetEvent::Up { version });
                }
                None
            }
            _ => None,
        };
        self.step = next.map(|request| self.host.request(now_ms, request));
    }

    fn handle_indication(&mut self, now_ms: u64, indication: Indication) {
        match indication {
            Indication::StateChange { state }
                if state == mt::DEV_ZB_COORD && self.phase == Phase::AwaitCoordinator =>
            {
                self.phase = Phase::Register;
                self.step = Some(self.host.request(
                    now_ms,
                    Request::Register {
                        endpoint: ENDPOINT,
                        profile: mt::PROFILE_HA,
                        device_id: 0x0005,
                        version: 0,
                        in_clusters: vec![zcl::cluster::BASIC],
                        out_clusters: vec![
                            zcl::cluster::ON_OFF,
                            zcl::cluster::LEVEL,
                            zcl::cluster::COLOR,
                        ],
                    },
                ));
            }
            Indication::DeviceAnnounce { nwk, ieee, .. } => {
                self.by_nwk.insert(nwk, ieee);
                let device = self.devices.entry(ieee).or_insert(Device {
                    ieee,
                    nwk,
                    manufacturer: None,
                    model: None,
                    interviewed: false,
                    state: LightState::default(),
                    link_quality: 0,
                    last_seen_ms: now_ms,
                });
                device.nwk = nwk;
                device.last_seen_ms = now_ms;
                if !device.interviewed {
                    self.zcl_seq = self.zcl_seq.wrapping_add(1);
                    let read = Global::ReadAttributes(vec![
                        zcl::attribute::MANUFACTURER_NAME,
                        zcl::attribute::MODEL_ID,
                    ]);
                    let frame = zcl::Frame::to_device(
                        FrameType::Global,
                        self.zcl_seq,
                        read.command(),
                        read.encode(),
                    );
                    let token = self.host.request(
                        now_ms,
                        data_request(nwk, zcl::cluster::BASIC, frame.encode()),
                    );
                    self.interviews.insert(token, ieee);
                }
            }
            Indication::Incoming(message) => {
                let Some(&ieee) = self.by_nwk.get(&message.src) else {
                    return;
                };
                let Ok(frame) = zcl::Frame::decode(&message.data) else {
                    return;
                };
                if message.cluster == zcl::cluster::OTA {
                    if let Ok(message) = ClientMessage::decode(&frame) {
                        self.events.push_back(NetEvent::Ota {
                            ieee,
                            seq: frame.header.seq,
                            message,
                        });
                    }
                    return;
                }
                let Ok(Some(global)) = Global::decode(&frame) else {
                    return;
                };
                let Some(device) = self.devices.get_mut(&ieee) else {
                    return;
                };
                device.link_quality = message.link_quality;
                device.last_seen_ms = now_ms;
                let records: Vec<(u16, Value)> = match global {
                    Global::ReportAttributes(records) => records,
                    Global::ReadAttributesResponse(records) => records
                        .into_iter()
                        .filter_map(|r| r.value.map(|v| (r.attribute, v)))
                        .collect(),
                    _ => return,
                };
                if message.cluster == zcl::cluster::BASIC {
                    for (id, value) in &records {
                        if let Value::Str(bytes) = value {
                            let text = String::from_utf8_lossy(bytes).into_owned();
                            match *id {
                                zcl::attribute::MANUFACTURER_NAME => {
                                    device.manufacturer = Some(text)
                                }
                                zcl::attribute::MODEL_ID => device.model = Some(text),
                                _ => {}
                            }
                        }
                    }
                    if !device.interviewed && device.model.is_some() {
                        device.interviewed = true;
                        self.events.push_back(NetEvent::Joined {
                            ieee,
                            model: device.model.clone().unwrap_or_default(),
                        });
                    }
                } else if zcl::apply_attributes(&mut device.state, message.cluster, &records) {
                    self.events.push_back(NetEvent::State {
                        ieee,
                        state: device.state,
                    });
                }
            }
            _ => {}
        }
    }
}

fn data_request(dst: u16, cluster: u16, data: Vec<u8>) -> Request {
    Request::DataRequest {
        dst,
        dst_endpoint: LIGHT_ENDPOINT,
        src_endpoint: ENDPOINT,
        cluster,
        trans_id: 0,
        options: 0,
        radius: RADIUS,
        data,
    }
}

#[cfg(test)]
mod tests {
    //! The network against the simulated stick, in memory: every byte the
    //! host writes goes to the stick and back, with virtual time.

    use super::super::stick::{Stick, MODEL};
    use super::*;
    use crate::light::Color;

    struct Bench {
        net: Network,
        stick: Stick,
        now: u64,
        events: Vec<NetEvent>,
        connected: bool,
    }

    impl Bench {
        fn new(bulbs: usize) -> Bench {
            let mut bench = Bench {
                net: Network::new(Timing::default()),
                stick: Stick::new(bulbs, 7),
                now: 1_000,
                events: Vec::new(),
                connected: true,
            };
            bench.net.connected(bench.now);
            bench.pump();
            bench
        }

        /// Moves bytes both ways until both sides are quiet.
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                while let Some(bytes) = self.net.poll_transmit() {
                    moved = true;
                    if self.connected {
                        self.stick.handle_bytes(self.now, &bytes);
                    }
                }
                while let Some(bytes) = self.stick.poll_transmit() {
                    moved = true;
                    if self.connected {
                        self.net.handle_bytes(self.now, &bytes);
                    }
                }
                self.events
                    .extend(std::iter::from_fn(|| self.net.poll_event()));
                if !moved {
                    break;
                }
            }
        }

        fn advance(&mut self, ms: u64) {
            let end = self.now + ms;
            while self.now < end {
                self.now += 10;
                self.stick.handle_tick(self.now);
                self.net.handle_timeout(self.now);
                self.pump();
            }
        }

        fn done(&self, id: CommandId) -> Option<&Result<(), HostError>> {
            self.events.iter().find_map(|e| match e {
                NetEvent::Done { id: done, result } if *done == id => Some(result),
                _ => None,
            })
        }
    }

    #[test]
    fn comes_up_joins_interviews_commands_and_reports() {
        let mut bench = Bench::new(10);
        assert!(bench.net.is_up());
        assert!(matches!(bench.events[0], NetEvent::Up { .. }));
        let id = bench.net.permit_join(bench.now, 60).unwrap();
        bench.advance(2_000);
        assert_eq!(bench.done(id), Some(&Ok(())));
        let joined: Vec<u64> = bench
            .events
            .iter()
            .filter_map(|e| match e {
                NetEvent::Joined { ieee, model } => {
                    assert_eq!(model, MODEL);
                    Some(*ieee)
                }
                _ => None,
            })
            .collect();
        assert_eq!(joined.len(), 10);

        // A command reaches the right bulb as the right ZCL bytes.
        let target = joined[3];
        let before = bench.stick.delivered().len();
        let command = LightCommand {
            brightness: Some(100),
            xy: Some([0.3, 0.4]),
            transition_ms: Some(500),
            ..LightCommand::default()
        };
        let id = bench.net.send(bench.now, target, &command).unwrap();
        bench.pump();
        assert_eq!(bench.done(id), Some(&Ok(())));
        let sent = &bench.stick.delivered()[before..];
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|d| d.ieee == target));
        assert_eq!(sent[0].cluster, zcl::cluster::LEVEL);
        assert_eq!(&sent[0].zcl[2..], [0x04, 100, 5, 0]);
        assert_eq!(sent[1].cluster, zcl::cluster::COLOR);
        assert_eq!(&sent[1].zcl[2..], [0x07, 0xcd, 0x4c, 0x66, 0x66, 5, 0]);

        // When the transition settles the bulb reports, and the state the
        // network holds follows.
        bench.advance(600);
        let state = bench.net.device(target).unwrap().state;
        assert_eq!(state.brightness, 100);
        assert!(matches!(state.color, Color::Xy { .. }));
        let actual = bench.stick.bulb_state(target, bench.now).unwrap();
        assert!(actual.on);
        assert_eq!(actual.brightness, 100);
    }

    #[test]
    fn a_lost_port_fails_what_was_in_flight_and_recovers() {
        let mut bench = Bench::new(2);
        bench.net.permit_join(bench.now, 60).unwrap();
        bench.advance(500);
        let ieee = bench.net.devices().next().unwrap().ieee;
        // The stick is unplugged while a command is on its way.
        bench.connected = false;
        let id = bench
            .net
            .send(
                bench.now,
                ieee,
                &LightCommand {
                    on: Some(false),
                    ..LightCommand::default()
                },
            )
            .unwrap();
        bench.pump();
        bench.stick.unplug();
        bench.net.disconnected();
        bench.pump();
        assert_eq!(bench.done(id), Some(&Err(HostError::Disconnected)));
        assert!(
            bench.stick.bulb_state(ieee, bench.now).unwrap().on,
            "nothing was delivered"
        );
        assert_eq!(
            bench.net.send(
                bench.now,
                ieee,
                &LightCommand {
                    on: Some(false),
                    ..Default::default()
                }
            ),
            Err(NetError::NotUp)
        );
        // Plugged back in: it comes up again and commands work.
        bench.connected = true;
        bench.net.connected(bench.now);
        bench.pump();
        assert!(bench.net.is_up());
        let id = bench
            .net
            .send(
                bench.now,
                ieee,
                &LightCommand {
                    on: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
        bench.pump();
        assert_eq!(bench.done(id), Some(&Ok(())));
        assert!(!bench.stick.bulb_state(ieee, bench.now).unwrap().on);
    }

    #[test]
    fn an_unanswered_request_is_retried_then_fails() {
        let mut host = Host::new(Timing {
            response_ms: 100,
            retries: 2,
            confirm_ms: 1_000,
        });
        let token = host.request(0, Request::Ping);
        let first = host.poll_transmit().unwrap();
        host.handle_timeout(100);
        assert_eq!(host.poll_transmit(), Some(first.clone()));
        host.handle_timeout(200);
        assert_eq!(host.poll_transmit(), Some(first));
        host.handle_timeout(300);
        assert_eq!(
            host.poll_event(),
            Some(Event::Failed {
                token,
                error: HostError::Timeout { attempts: 3 }
            })
        );
    }
}
