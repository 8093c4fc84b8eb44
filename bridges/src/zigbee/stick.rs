//! A simulated Z-Stack coordinator stick with virtual bulbs behind it,
//! speaking ZNP byte for byte, so the host driver's real serial path can be
//! exercised without hardware (over a pseudo-terminal, see the driver).
//!
//! It answers what the host driver sends — ping, version, reset (with
//! SYS_RESET_IND), ZDO_STARTUP_FROM_APP (with the state change to
//! coordinator), AF_REGISTER, permit join, AF_DATA_REQUEST (SRSP, then
//! AF_DATA_CONFIRM) — and an unknown SREQ with an RPC error, as Z-Stack
//! does. Its bulbs join one per tick while joining is permitted (trust
//! centre indication, then device announce), answer Basic-cluster reads
//! (the interview), apply On/Off, Level and Color commands with their
//! transitions ([`crate::light`]) and report their attributes when a
//! transition settles.
//!
//! Sans-IO: bytes in with [`Stick::handle_bytes`], time in with
//! [`Stick::handle_tick`], bytes out with [`Stick::poll_transmit`].

use std::collections::VecDeque;

use super::mt::{self, IncomingMsg, Indication, Request, Version};
use super::ota::{ClientMessage, ImageId, ImageOffer, QueryNextImage, ServerMessage};
use super::zcl::{self, FrameType, Global, Lighting, ReadRecord, Value};
use super::znp::{Frame, Kind, Parser, Subsystem};
use crate::light::{Light, LightState};

/// The firmware the stick claims (a Z-Stack 3.x.0 build).
pub const VERSION: Version = Version {
    transport: 2,
    product: 1,
    major: 2,
    minor: 7,
    maint: 1,
    revision: 20_210_708,
};
/// The manufacturer and model its bulbs report.
pub const MANUFACTURER: &str = "ITC";
pub const MODEL: &str = "itc-sim-zigbee-bulb";

/// How often a waiting bulb joins while the network is open.
pub const JOIN_INTERVAL_MS: u64 = 100;

/// Z-Stack's status for "no route to the destination" (NWK_NO_ROUTE).
const NO_ROUTE: u8 = 0xcd;

/// A firmware download in progress.
struct Download {
    image: ImageId,
    size: u32,
    data: Vec<u8>,
}

/// A bulb that downloaded and installed an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub ieee: u64,
    pub file_version: u32,
    /// SHA-256 of the bytes it received.
    pub image_hash: itc_chain::crypto::Hash,
    pub blocks: usize,
}

/// The largest block a bulb asks for (fits a ZCL frame in one AF payload).
pub const OTA_BLOCK: u8 = 48;

struct Bulb {
    ieee: u64,
    download: Option<Download>,
    blocks: usize,
    nwk: u16,
    joined: bool,
    light: Light,
    report_due: bool,
    seq: u8,
}

/// One ZCL frame the stick delivered to a bulb: what a test checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub ieee: u64,
    pub cluster: u16,
    pub zcl: Vec<u8>,
}

/// The simulated stick.
pub struct Stick {
    parser: Parser,
    out: VecDeque<u8>,
    started: bool,
    endpoints: Vec<u8>,
    permit_until_ms: u64,
    next_join_ms: u64,
    bulbs: Vec<Bulb>,
    delivered: Vec<Delivered>,
    /// Image offers (or refusals) the bulbs received, by IEEE address.
    offers: Vec<(u64, Option<ImageOffer>)>,
    upgrades: Vec<Upgrade>,
    timestamp: u32,
}

impl Stick {
    /// A stick with `bulbs` factory-new bulbs in range (they join when
    /// permitted). Their IEEE addresses derive from `seed`.
    pub fn new(bulbs: usize, seed: u64) -> Stick {
        let bulbs = (0..bulbs)
            .map(|i| Bulb {
                ieee: 0x0012_4b00_0000_0000 | ((seed & 0xffff) << 16) | (i as u64 + 1),
                download: None,
                blocks: 0,
                nwk: 0x1000 + i as u16,
                joined: false,
                light: Light::new(LightState::default()),
                report_due: false,
                seq: 0,
            })
            .collect();
        Stick {
            parser: Parser::new(),
            out: VecDeque::new(),
            started: false,
            endpoints: Vec::new(),
            permit_until_ms: 0,
            next_join_ms: 0,
            bulbs,
            delivered: Vec::new(),
            offers: Vec::new(),
            upgrades: Vec::new(),
            timestamp: 0,
        }
    }

    /// Bytes from the host.
    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8]) {
        self.parser.handle_bytes(bytes);
        while let Some(frame) = self.parser.poll_frame() {
            self.handle_frame(now_ms, &frame);
        }
    }

    /// Lets time pass: joins and settled transitions' reports.
    pub fn handle_tick(&mut self, now_ms: u64) {
        if self.started && now_ms < self.permit_until_ms && now_ms >= self.next_join_ms {
            if let Some(bulb) = self.bulbs.iter_mut().find(|b| !b.joined) {
                bulb.joined = true;
                let (nwk, ieee) = (bulb.nwk, bulb.ieee);
                self.next_join_ms = now_ms + JOIN_INTERVAL_MS;
                self.send(Indication::TrustCenterDevice {
                    nwk,
                    ieee,
                    parent: 0,
                });
                self.send(Indication::DeviceAnnounce {
                    src: nwk,
                    nwk,
                    ieee,
                    capabilities: 0x8e,
                });
            }
        }
        for index in 0..self.bulbs.len() {
            let bulb = &self.bulbs[index];
            if bulb.joined && bulb.report_due && bulb.light.settles_at() <= now_ms {
                self.bulbs[index].report_due = false;
                self.report(index);
            }
        }
    }

    /// The next time a tick has work.
    pub fn next_deadline(&self, now_ms: u64) -> Option<u64> {
        let settles = self
            .bulbs
            .iter()
            .filter(|b| b.report_due)
            .map(|b| b.light.settles_at())
            .min();
        let joins =
            (self.started && now_ms < self.permit_until_ms && self.bulbs.iter().any(|b| !b.joined))
                .then_some(self.next_join_ms.max(now_ms));
        settles.into_iter().chain(joins).min()
    }

    /// Bytes for the host.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            return None;
        }
        Some(self.out.drain(..).collect())
    }

    /// The stick is unplugged: its half-read input and unsent output are
    /// gone, and it must be started again; the network it formed and the
    /// bulbs that joined it stay (Z-Stack keeps them in NV).
    pub fn unplug(&mut self) {
        self.parser = Parser::new();
        self.out.clear();
        self.started = false;
        self.endpoints.clear();
    }

    /// Bulb `ieee` asks the gateway for a newer image (OTA Upgrade, Query
    /// Next Image Request). False if no such joined bulb.
    pub fn query_image(&mut self, ieee: u64, query: &QueryNextImage) -> bool {
        let Some(index) = self.bulbs.iter().position(|b| b.joined && b.ieee == ieee) else {
            return false;
        };
        self.ota_to_host(index, &ClientMessage::Query(*query));
        true
    }

    /// Bulb `index` sends an OTA message to the gateway.
    fn ota_to_host(&mut self, index: usize, message: &ClientMessage) {
        let bulb = &mut self.bulbs[index];
        bulb.seq = bulb.seq.wrapping_add(1);
        let zcl = message.frame(bulb.seq).encode();
        self.incoming(index, 1, 1, zcl::cluster::OTA, zcl);
    }

    /// Bulb `index` handles the gateway's OTA answer: an offer starts a
    /// download, each block asks for the next, the last ends it, the end
    /// response installs the image.
    fn ota_from_host(&mut self, index: usize, message: ServerMessage) {
        let ieee = self.bulbs[index].ieee;
        let next = match message {
            ServerMessage::QueryResponse(offer) => {
                self.offers.push((ieee, offer));
                offer.map(|offer| {
                    let image = ImageId {
                        manufacturer: offer.manufacturer,
                        image_type: offer.image_type,
                        file_version: offer.file_version,
                    };
                    self.bulbs[index].download = Some(Download {
                        image,
                        size: offer.image_size,
                        data: Vec::new(),
                    });
                    self.bulbs[index].blocks = 0;
                    ClientMessage::Block {
                        image,
                        offset: 0,
                        max_size: OTA_BLOCK,
                    }
                })
            }
            ServerMessage::Block { data: None, .. } => {
                self.bulbs[index].download = None;
                None
            }
            ServerMessage::Block {
                offset,
                data: Some(data),
                ..
            } => {
                let bulb = &mut self.bulbs[index];
                match &mut bulb.download {
                    Some(download) if offset as usize == download.data.len() => {
                        download.data.extend_from_slice(&data);
                        bulb.blocks += 1;
                        if download.data.len() as u32 >= download.size {
                            Some(ClientMessage::End {
                                status: zcl::SUCCESS,
                                image: download.image,
                            })
                        } else {
                            Some(ClientMessage::Block {
                                image: download.image,
                                offset: download.data.len() as u32,
                                max_size: OTA_BLOCK,
                            })
                        }
                    }
                    _ => None,
                }
            }
            ServerMessage::EndResponse { image } => {
                let bulb = &mut self.bulbs[index];
                if let Some(download) = bulb.download.take() {
                    if download.image == image {
                        self.upgrades.push(Upgrade {
                            ieee,
                            file_version: image.file_version,
                            image_hash: itc_chain::crypto::Hash::digest(&download.data),
                            blocks: bulb.blocks,
                        });
                    }
                }
                None
            }
        };
        if let Some(message) = next {
            self.ota_to_host(index, &message);
        }
    }

    /// The upgrades the bulbs completed so far.
    pub fn upgrades(&self) -> &[Upgrade] {
        &self.upgrades
    }

    /// The image offers the bulbs received so far.
    pub fn offers(&self) -> &[(u64, Option<ImageOffer>)] {
        &self.offers
    }

    /// Every ZCL frame delivered to a bulb so far.
    pub fn delivered(&self) -> &[Delivered] {
        &self.delivered
    }

    /// A bulb's state (by IEEE address) at `now_ms`.
    pub fn bulb_state(&self, ieee: u64, now_ms: u64) -> Option<LightState> {
        self.bulbs
            .iter()
            .find(|b| b.ieee == ieee)
            .map(|b| b.light.state_at(now_ms))
    }

    pub fn joined(&self) -> usize {
        self.bulbs.iter().filter(|b| b.joined).count()
    }

    fn send(&mut self, indication: Indication) {
        self.push(indication.frame());
    }

    fn push(&mut self, frame: Frame) {
        if let Ok(bytes) = frame.encode() {
            self.out.extend(bytes);
        }
    }

    fn srsp(&mut self, request: &Frame, data: Vec<u8>) {
        self.push(Frame::new(
            Kind::Srsp,
            request.subsystem,
            request.command,
            data,
        ));
    }

    fn handle_frame(&mut self, now_ms: u64, frame: &Frame) {
        let request = match Request::parse(frame) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => {
                if frame.kind == Kind::Sreq {
                    // RPC error: invalid command id, with CMD0 and CMD1.
                    self.push(Frame::new(
                        Kind::Srsp,
                        Subsystem::RpcError,
                        0,
                        vec![2, frame.cmd0(), frame.command],
                    ));
                }
                return;
            }
        };
        match request {
            Request::Ping => self.srsp(frame, vec![0x79, 0x01]),
            Request::Version => self.srsp(frame, VERSION.encode()),
            Request::Reset { .. } => {
                // A reboot: the stack stops (and must be started again);
                // the network and its bulbs stay in NV.
                self.started = false;
                self.endpoints.clear();
                self.permit_until_ms = 0;
                self.send(Indication::Reset {
                    reason: 0,
                    version: [
                        VERSION.transport,
                        VERSION.product,
                        VERSION.major,
                        VERSION.minor,
                        VERSION.maint,
                    ],
                });
            }
            Request::StartupFromApp { .. } => {
                // 0: restored a network; 1: formed a new one.
                let formed = !self.bulbs.iter().any(|b| b.joined);
                self.srsp(frame, vec![u8::from(formed)]);
                self.started = true;
                self.send(Indication::StateChange {
                    state: mt::DEV_ZB_COORD,
                });
            }
            Request::Register { endpoint, .. } => {
                // 0xb8: already registered (ZApsDuplicateEntry).
                let status = if self.endpoints.contains(&endpoint) {
                    0xb8
                } else {
                    self.endpoints.push(endpoint);
                    0
                };
                self.srsp(frame, vec![status]);
            }
            Request::PermitJoin { seconds } => {
                self.permit_until_ms = now_ms + u64::from(seconds) * 1_000;
                self.next_join_ms = now_ms;
                self.srsp(frame, vec![0]);
            }
            Request::DataRequest {
                dst,
                dst_endpoint,
                src_endpoint,
                cluster,
                trans_id,
                data,
                ..
            } => {
                if !self.started {
                    // The stack is not up: "invalid parameter" at once.
                    self.srsp(frame, vec![0x02]);
                    return;
                }
                self.srsp(frame, vec![0]);
                let Some(index) = self.bulbs.iter().position(|b| b.joined && b.nwk == dst) else {
                    self.send(Indication::DataConfirm {
                        status: NO_ROUTE,
                        endpoint: src_endpoint,
                        trans_id,
                    });
                    return;
                };
                self.send(Indication::DataConfirm {
                    status: 0,
                    endpoint: src_endpoint,
                    trans_id,
                });
                self.delivered.push(Delivered {
                    ieee: self.bulbs[index].ieee,
                    cluster,
                    zcl: data.clone(),
                });
                self.bulb_receives(now_ms, index, dst_endpoint, src_endpoint, cluster, &data);
            }
        }
    }

    /// A bulb handles a ZCL frame from the host.
    fn bulb_receives(
        &mut self,
        now_ms: u64,
        index: usize,
        endpoint: u8,
        host_endpoint: u8,
        cluster_id: u16,
        bytes: &[u8],
    ) {
        let Ok(frame) = zcl::Frame::decode(bytes) else {
            return;
        };
        let seq = frame.header.seq;
        if cluster_id == zcl::cluster::OTA {
            if let Ok(message) = ServerMessage::decode(&frame) {
                self.ota_from_host(index, message);
            }
            return;
        }
        match frame.header.frame_type {
            FrameType::Cluster => {
                // Unsupported commands always get a default response;
                // carried-out ones unless the sender disabled it.
                let status = match Lighting::decode(cluster_id, &frame) {
                    Ok(Some(command)) => {
                        let bulb = &mut self.bulbs[index];
                        let state = bulb.light.state_at(now_ms);
                        let light_command = zcl::light_command(&command, &state);
                        bulb.light.apply(now_ms, &light_command);
                        bulb.report_due = true;
                        (!frame.header.disable_default_response).then_some(zcl::SUCCESS)
                    }
                    _ => Some(zcl::UNSUP_CLUSTER_COMMAND),
                };
                if let Some(status) = status {
                    self.answer(
                        index,
                        endpoint,
                        host_endpoint,
                        cluster_id,
                        seq,
                        default_response(frame.header.command, status),
                    );
                }
                if status == Some(zcl::UNSUP_CLUSTER_COMMAND) {
                    return;
                }
                if self.bulbs[index].light.settles_at() <= now_ms {
                    self.bulbs[index].report_due = false;
                    self.report(index);
                }
            }
            FrameType::Global => {
                if let Ok(Some(Global::ReadAttributes(ids))) = Global::decode(&frame) {
                    let state = self.bulbs[index].light.state_at(now_ms);
                    let records = ids
                        .iter()
                        .map(|id| read_attribute(cluster_id, *id, &state))
                        .collect();
                    let response = Global::ReadAttributesResponse(records);
                    self.answer(
                        index,
                        endpoint,
                        host_endpoint,
                        cluster_id,
                        seq,
                        (response.command(), response.encode()),
                    );
                }
            }
        }
    }

    /// Sends a global ZCL frame from bulb `index` to the host.
    fn answer(
        &mut self,
        index: usize,
        endpoint: u8,
        host_endpoint: u8,
        cluster_id: u16,
        seq: u8,
        (command, payload): (u8, Vec<u8>),
    ) {
        let zcl = zcl::Frame::from_device(FrameType::Global, seq, command, payload).encode();
        self.incoming(index, endpoint, host_endpoint, cluster_id, zcl);
    }

    fn incoming(
        &mut self,
        index: usize,
        endpoint: u8,
        host_endpoint: u8,
        cluster: u16,
        data: Vec<u8>,
    ) {
        self.timestamp = self.timestamp.wrapping_add(1);
        let bulb = &self.bulbs[index];
        let message = IncomingMsg {
            group: 0,
            cluster,
            src: bulb.nwk,
            src_endpoint: endpoint,
            dst_endpoint: host_endpoint,
            was_broadcast: false,
            link_quality: 180 - (index as u8 % 60),
            security: false,
            timestamp: self.timestamp,
            seq: 0,
            data,
        };
        self.send(Indication::Incoming(message));
    }

    /// Bulb `index` reports its On/Off, Level and Color attributes.
    fn report(&mut self, index: usize) {
        let state = self.bulbs[index].light.target();
        for (cluster_id, records) in zcl::report_for(&state) {
            let bulb = &mut self.bulbs[index];
            bulb.seq = bulb.seq.wrapping_add(1);
            let seq = bulb.seq;
            let report = Global::ReportAttributes(records);
            let zcl =
                zcl::Frame::from_device(FrameType::Global, seq, report.command(), report.encode())
                    .encode();
            self.incoming(index, 1, 1, cluster_id, zcl);
        }
    }
}

fn default_response(command: u8, status: u8) -> (u8, Vec<u8>) {
    let response = Global::DefaultResponse { command, status };
    (response.command(), response.encode())
}

fn read_attribute(cluster_id: u16, id: u16, state: &LightState) -> ReadRecord {
    let value = match (cluster_id, id) {
        (zcl::cluster::BASIC, zcl::attribute::MANUFACTURER_NAME) => {
            Some(Value::Str(MANUFACTURER.as_bytes().to_vec()))
        }
        (zcl::cluster::BASIC, zcl::attribute::MODEL_ID) => {
            Some(Value::Str(MODEL.as_bytes().to_vec()))
        }
        _ => zcl::report_for(state)
            .into_iter()
            .find(|(c, _)| *c == cluster_id)
            .and_then(|(_, records)| records.into_iter().find(|(a, _)| *a == id))
            .map(|(_, v)| v),
    };
    match value {
        Some(value) => ReadRecord {
            attribute: id,
            status: zcl::SUCCESS,
            value: Some(value),
        },
        None => ReadRecord {
            attribute: id,
            status: zcl::UNSUPPORTED_ATTRIBUTE,
            value: None,
        },
    }
}
