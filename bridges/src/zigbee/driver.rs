//! The coordinator driver: the sans-IO [`Network`] on a real serial port
//! (tokio-serial, 115200 8N1).
//!
//! One task owns the port and the network. It opens the port (retrying
//! until it exists — a stick can be plugged in later), brings the
//! coordinator up, then moves bytes both ways, fires timeouts and carries
//! out commands. When the port fails (the stick is unplugged), everything
//! in flight fails — a command is reported done only after the radio's
//! delivery confirm — and the task goes back to opening the port, so the
//! stick can be plugged back in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_serial::SerialPortBuilderExt;

use super::host::{HostError, Timing};
use super::network::{CommandId, Device, NetError, NetEvent, Network};
use super::ota::ServerMessage;
use crate::light::LightCommand;

/// How to reach the stick.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub path: PathBuf,
    pub baud: u32,
    pub timing: Timing,
    /// How long to wait before trying to open the port again.
    pub reopen: Duration,
}

impl DriverConfig {
    pub fn new(path: impl Into<PathBuf>) -> DriverConfig {
        DriverConfig {
            path: path.into(),
            baud: 115_200,
            timing: Timing::default(),
            reopen: Duration::from_millis(200),
        }
    }
}

/// Why a command did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Network(#[from] NetError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("the Zigbee driver has stopped")]
    Stopped,
}

enum Command {
    Send {
        ieee: u64,
        command: LightCommand,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    PermitJoin {
        seconds: u8,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Ota {
        ieee: u64,
        seq: u8,
        message: ServerMessage,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
}

/// What the rest of the gateway holds.
#[derive(Clone)]
pub struct ZigbeeHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    devices: Arc<Mutex<BTreeMap<u64, Device>>>,
    up: watch::Receiver<bool>,
}

impl ZigbeeHandle {
    /// Sends a light command; returns once every ZCL frame of it was
    /// delivered (or failed).
    pub async fn send(&self, ieee: u64, command: LightCommand) -> Result<(), DriverError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Send {
                ieee,
                command,
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped)?;
        answer.await.map_err(|_| DriverError::Stopped)?
    }

    pub async fn permit_join(&self, seconds: u8) -> Result<(), DriverError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::PermitJoin { seconds, reply })
            .await
            .map_err(|_| DriverError::Stopped)?;
        answer.await.map_err(|_| DriverError::Stopped)?
    }

    /// Answers a device's OTA Upgrade message.
    pub async fn send_ota(
        &self,
        ieee: u64,
        seq: u8,
        message: ServerMessage,
    ) -> Result<(), DriverError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Ota {
                ieee,
                seq,
                message,
                reply,
            })
            .await
            .map_err(|_| DriverError::Stopped)?;
        answer.await.map_err(|_| DriverError::Stopped)?
    }

    /// The devices as last seen (last-seen times in unix ms).
    pub fn devices(&self) -> Vec<Device> {
        self.devices
            .lock()
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One device as last seen.
    pub fn device(&self, ieee: u64) -> Option<Device> {
        self.devices.lock().ok()?.get(&ieee).cloned()
    }

    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Waits until the coordinator is up.
    pub async fn wait_up(&self) {
        let mut up = self.up.clone();
        let _ = up.wait_for(|up| *up).await;
    }
}

/// Starts the driver.
pub fn spawn(config: DriverConfig) -> (ZigbeeHandle, JoinHandle<()>) {
    let (commands, inbox) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1_024);
    let devices = Arc::new(Mutex::new(BTreeMap::new()));
    let (up_tx, up) = watch::channel(false);
    let handle = ZigbeeHandle {
        commands,
        events: events.clone(),
        devices: devices.clone(),
        up,
    };
    let driver = Driver {
        config: config.clone(),
        network: Network::new(config.timing),
        waiting: HashMap::new(),
        events,
        devices,
        up: up_tx,
        epoch: Instant::now(),
        epoch_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    (handle, tokio::spawn(driver.run(inbox)))
}

struct Driver {
    config: DriverConfig,
    network: Network,
    waiting: HashMap<CommandId, oneshot::Sender<Result<(), DriverError>>>,
    events: broadcast::Sender<NetEvent>,
    devices: Arc<Mutex<BTreeMap<u64, Device>>>,
    up: watch::Sender<bool>,
    epoch: Instant,
    /// Wall-clock time at `epoch`, unix ms: devices' last-seen times are
    /// handed out in it.
    epoch_unix_ms: u64,
}

impl Driver {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        loop {
            let port = tokio_serial::new(self.config.path.to_string_lossy(), self.config.baud)
                .open_native_async();
            match port {
                Ok(port) => {
                    tracing::info!(path = %self.config.path.display(), "Zigbee coordinator port open");
                    let stopped = self.serve(port, &mut inbox).await;
                    self.network.disconnected();
                    self.settle();
                    if stopped {
                        return;
                    }
                    tracing::warn!(path = %self.config.path.display(), "Zigbee coordinator port lost; reopening");
                }
                Err(error) => {
                    tracing::debug!(%error, "Zigbee coordinator port not there yet");
                }
            }
            // While the port is down commands are refused at once.
            let reopen = tokio::time::sleep(self.config.reopen);
            tokio::pin!(reopen);
            loop {
                tokio::select! {
                    _ = &mut reopen => break,
                    command = inbox.recv() => match command {
                        Some(command) => self.command(command),
                        None => return,
                    },
                }
            }
        }
    }

    /// Runs on an open port until it fails (false) or the handle is gone
    /// (true).
    async fn serve(
        &mut self,
        mut port: tokio_serial::SerialStream,
        inbox: &mut mpsc::Receiver<Command>,
    ) -> bool {
        let now = self.now();
        self.network.connected(now);
        let mut buf = [0u8; 512];
        loop {
            while let Some(bytes) = self.network.poll_transmit() {
                if port.write_all(&bytes).await.is_err() {
                    return false;
                }
            }
            self.settle();
            let deadline = self
                .network
                .next_timeout()
                .map(|at| self.epoch + Duration::from_millis(at));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = port.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        let now = self.now();
                        self.network.handle_bytes(now, &buf[..n]);
                    }
                },
                command = inbox.recv() => match command {
                    Some(command) => self.command(command),
                    None => return true,
                },
                _ = sleep => {
                    let now = self.now();
                    self.network.handle_timeout(now);
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Send {
                ieee,
                command,
                reply,
            } => match self.network.send(now, ieee, &command) {
                Ok(id) => {
                    self.waiting.insert(id, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::Ota {
                ieee,
                seq,
                message,
                reply,
            } => match self.network.send_ota(now, ieee, seq, &message) {
                Ok(id) => {
                    self.waiting.insert(id, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::PermitJoin { seconds, reply } => {
                match self.network.permit_join(now, seconds) {
                    Ok(id) => {
                        self.waiting.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
        }
        self.settle();
    }

    /// Hands out the network's events.
    fn settle(&mut self) {
        while let Some(event) = self.network.poll_event() {
            match &event {
                NetEvent::Done { id, result } => {
                    if let Some(reply) = self.waiting.remove(id) {
                        let _ = reply.send(result.clone().map_err(DriverError::from));
                    }
                    continue;
                }
                NetEvent::Up { version } => {
                    tracing::info!(
                        major = version.major,
                        minor = version.minor,
                        revision = version.revision,
                        "Zigbee coordinator up"
                    );
                }
                // Only the device the event is about is copied out.
                NetEvent::Joined { ieee, .. } | NetEvent::State { ieee, .. } => {
                    if let (Some(device), Ok(mut devices)) =
                        (self.network.device(*ieee), self.devices.lock())
                    {
                        devices.insert(
                            *ieee,
                            Device {
                                last_seen_ms: device.last_seen_ms + self.epoch_unix_ms,
                                ..device.clone()
                            },
                        );
                    }
                }
                NetEvent::Ota { .. } => {}
            }
            let _ = self.events.send(event);
        }
        let up = self.network.is_up();
        if *self.up.borrow() != up {
            let _ = self.up.send(up);
        }
    }
}
