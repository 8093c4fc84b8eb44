//! A fake BlueZ on a private D-Bus bus: the objects and methods of
//! `org.bluez` that btleplug uses (BlueZ's doc/org.bluez.Adapter.rst,
//! Device.rst, GattService.rst and GattCharacteristic.rst), with
//! simulated mesh bulbs behind them in place of a radio.
//!
//! - `/` is an ObjectManager; devices and GATT objects come and go with
//!   InterfacesAdded and InterfacesRemoved, as BlueZ's do.
//! - `/org/bluez/hci0` is the adapter: StartDiscovery makes the bulbs'
//!   devices appear, each advertising what its [`SimMeshNode`] does
//!   (ServiceData and UUIDs).
//! - `Device1.Connect` resolves the service the bulb offers now (0x1827
//!   until provisioned, then 0x1828) with its Data In and Data Out;
//!   `Disconnect` takes it away and updates the advertisement.
//! - `WriteValue` on Data In is the bulb's `handle_write`; each PDU the
//!   bulb answers with becomes Data Out's new `Value`, announced by
//!   PropertiesChanged, which is how BlueZ delivers notifications.
//!
//! The bus itself is a real `dbus-daemon`, started with a private
//! configuration on a socket in a temporary directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::link::SharedNode;
use zbus::fdo;
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{interface, Connection};

pub type Bulb = SharedNode;

const ADAPTER: &str = "/org/bluez/hci0";
const CHARACTERISTIC: &str = "org.bluez.GattCharacteristic1";

/// A `dbus-daemon` on a socket of its own, killed when dropped.
pub struct PrivateBus {
    child: Child,
    pub address: String,
}

impl PrivateBus {
    /// Starts one in `dir`, or `None` if no `dbus-daemon` is installed.
    pub fn start(dir: &Path) -> Option<PrivateBus> {
        let socket = dir.join("system_bus_socket");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .ok()?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        Some(PrivateBus {
            child,
            address: line.trim().to_string(),
        })
    }
}

impl PrivateBus {
    /// The bus for a test, made the system bus of this process
    /// (`DBUS_SYSTEM_BUS_ADDRESS`, which btleplug's libdbus reads). Without
    /// a `dbus-daemon` the test is skipped, saying so — unless
    /// `ITC_REQUIRE_DBUS` is set (CI sets it), when that is a failure.
    /// Call it from a test binary's only test: the environment is the
    /// process's.
    pub fn for_test(dir: &Path) -> Option<PrivateBus> {
        let Some(bus) = PrivateBus::start(dir) else {
            assert!(
                std::env::var_os("ITC_REQUIRE_DBUS").is_none(),
                "dbus-daemon is required here (ITC_REQUIRE_DBUS is set)"
            );
            eprintln!("SKIPPED: no dbus-daemon on this machine (install dbus-daemon to run it)");
            return None;
        };
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        Some(bus)
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the fake on the bus at `address`, owning `org.bluez`.
pub async fn serve(address: &str, bulbs: Vec<Bulb>) -> zbus::Result<Connection> {
    let started = Instant::now();
    zbus::connection::Builder::address(address)?
        .name("org.bluez")?
        .serve_at("/", fdo::ObjectManager)?
        .serve_at(
            ADAPTER,
            Adapter {
                bulbs,
                discovering: false,
                powered: false,
                shown: false,
                started,
            },
        )?
        .build()
        .await
}

fn device_path(i: usize) -> String {
    format!("{ADAPTER}/dev_C0_FF_EE_00_00_{i:02X}")
}

/// The 128-bit form of a 16-bit SIG UUID, as BlueZ writes it.
fn uuid16(uuid: u16) -> String {
    format!("0000{uuid:04x}-0000-1000-8000-00805f9b34fb")
}

fn owned(value: Value<'_>) -> OwnedValue {
    value
        .try_to_owned()
        .expect("byte arrays hold no file descriptors")
}

fn path(path: &str) -> OwnedObjectPath {
    ObjectPath::try_from(path.to_string())
        .expect("the fake's paths are valid")
        .into()
}

struct Adapter {
    bulbs: Vec<Bulb>,
    discovering: bool,
    powered: bool,
    /// Whether the bulbs' devices are on the bus yet.
    shown: bool,
    started: Instant,
}

#[interface(name = "org.bluez.Adapter1")]
impl Adapter {
    async fn set_discovery_filter(&self, _filter: HashMap<String, OwnedValue>) {}

    async fn start_discovery(
        &mut self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        if !self.shown {
            for (i, bulb) in self.bulbs.iter().enumerate() {
                let device = Device {
                    index: i,
                    bulb: bulb.clone(),
                    connected: false,
                    started: self.started,
                };
                server.at(device_path(i), device).await?;
            }
            self.shown = true;
        }
        self.discovering = true;
        self.discovering_changed(&emitter).await?;
        Ok(())
    }

    async fn stop_discovery(
        &mut self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        self.discovering = false;
        self.discovering_changed(&emitter).await?;
        Ok(())
    }

    #[zbus(property)]
    fn address(&self) -> String {
        "00:1A:7D:DA:71:13".into()
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".into()
    }
    #[zbus(property)]
    fn name(&self) -> String {
        "itc-test".into()
    }
    #[zbus(property)]
    fn alias(&self) -> String {
        "itc-test".into()
    }
    #[zbus(property)]
    fn modalias(&self) -> String {
        "usb:v1D6Bp0246d0548".into()
    }
    #[zbus(property)]
    fn powered(&self) -> bool {
        self.powered
    }
    /// btleplug powers the adapter on before it scans.
    #[zbus(property)]
    fn set_powered(&mut self, on: bool) {
        self.powered = on;
    }
    #[zbus(property)]
    fn discovering(&self) -> bool {
        self.discovering
    }
}

struct Device {
    index: usize,
    bulb: Bulb,
    connected: bool,
    started: Instant,
}

impl Device {
    fn service_path(&self) -> String {
        format!("{}/service0010", device_path(self.index))
    }
    fn data_in_path(&self) -> String {
        format!("{}/char0011", self.service_path())
    }
    fn data_out_path(&self) -> String {
        format!("{}/char0013", self.service_path())
    }
}

#[interface(name = "org.bluez.Device1")]
impl Device {
    async fn connect(
        &mut self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        if self.connected {
            return Ok(());
        }
        let service = self.bulb.lock().expect("bulb").advertisement().0;
        let (data_in, data_out) = match service {
            0x1827 => (0x2adb, 0x2adc),
            _ => (0x2add, 0x2ade),
        };
        let service_path = self.service_path();
        server
            .at(
                service_path.as_str(),
                GattService {
                    uuid: uuid16(service),
                    device: path(&device_path(self.index)),
                },
            )
            .await?;
        server
            .at(
                self.data_in_path(),
                GattCharacteristic {
                    uuid: uuid16(data_in),
                    service: path(&service_path),
                    flags: vec!["write-without-response".into()],
                    value: Vec::new(),
                    notifying: false,
                    bulb: self.bulb.clone(),
                    notify_at: Some(self.data_out_path()),
                    started: self.started,
                },
            )
            .await?;
        server
            .at(
                self.data_out_path(),
                GattCharacteristic {
                    uuid: uuid16(data_out),
                    service: path(&service_path),
                    flags: vec!["notify".into()],
                    value: Vec::new(),
                    notifying: false,
                    bulb: self.bulb.clone(),
                    notify_at: None,
                    started: self.started,
                },
            )
            .await?;
        self.connected = true;
        self.connected_changed(&emitter).await?;
        self.services_resolved_changed(&emitter).await?;
        Ok(())
    }

    async fn disconnect(
        &mut self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        if !self.connected {
            return Ok(());
        }
        server
            .remove::<GattCharacteristic, _>(self.data_out_path())
            .await?;
        server
            .remove::<GattCharacteristic, _>(self.data_in_path())
            .await?;
        server.remove::<GattService, _>(self.service_path()).await?;
        self.bulb.lock().expect("bulb").subscribed = false;
        self.connected = false;
        self.connected_changed(&emitter).await?;
        self.services_resolved_changed(&emitter).await?;
        // A provisioned bulb now advertises its proxy.
        self.service_data_changed(&emitter).await?;
        self.u_u_i_ds_changed(&emitter).await?;
        Ok(())
    }

    #[zbus(property)]
    fn address(&self) -> String {
        format!("C0:FF:EE:00:00:{:02X}", self.index)
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "random".into()
    }
    #[zbus(property)]
    fn name(&self) -> String {
        format!("mesh bulb {}", self.index)
    }
    #[zbus(property)]
    fn alias(&self) -> String {
        self.name()
    }
    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn connected(&self) -> bool {
        self.connected
    }
    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        self.connected
    }
    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> i16 {
        -48 - self.index as i16
    }
    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        vec![uuid16(self.bulb.lock().expect("bulb").advertisement().0)]
    }
    #[zbus(property)]
    fn service_data(&self) -> HashMap<String, OwnedValue> {
        let (service, data) = self.bulb.lock().expect("bulb").advertisement();
        HashMap::from([(uuid16(service), owned(Value::from(data)))])
    }
}

struct GattService {
    uuid: String,
    device: OwnedObjectPath,
}

#[interface(name = "org.bluez.GattService1")]
impl GattService {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }
    #[zbus(property)]
    fn primary(&self) -> bool {
        true
    }
    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        self.device.clone()
    }
}

struct GattCharacteristic {
    uuid: String,
    service: OwnedObjectPath,
    flags: Vec<String>,
    value: Vec<u8>,
    notifying: bool,
    bulb: Bulb,
    /// Data In: the Data Out characteristic its answers are notified on.
    notify_at: Option<String>,
    started: Instant,
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl GattCharacteristic {
    async fn read_value(&self, _options: HashMap<String, OwnedValue>) -> Vec<u8> {
        self.value.clone()
    }

    async fn write_value(
        &mut self,
        value: Vec<u8>,
        _options: HashMap<String, OwnedValue>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<()> {
        let Some(out) = &self.notify_at else {
            return Err(fdo::Error::NotSupported("Data Out is not writable".into()));
        };
        let now_ms = self.started.elapsed().as_millis() as u64;
        let (answers, subscribed) = {
            let mut bulb = self.bulb.lock().expect("bulb");
            (bulb.handle_write(&value, now_ms), bulb.subscribed)
        };
        if !subscribed {
            return Ok(());
        }
        for answer in answers {
            let changed = HashMap::from([("Value", Value::from(answer))]);
            connection
                .emit_signal(
                    None::<()>,
                    out.as_str(),
                    "org.freedesktop.DBus.Properties",
                    "PropertiesChanged",
                    &(CHARACTERISTIC, changed, Vec::<String>::new()),
                )
                .await?;
        }
        Ok(())
    }

    async fn start_notify(
        &mut self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> fdo::Result<()> {
        if !self.flags.iter().any(|f| f == "notify") {
            return Err(fdo::Error::NotSupported("no notifications".into()));
        }
        self.notifying = true;
        self.bulb.lock().expect("bulb").subscribed = true;
        self.notifying_changed(&emitter).await?;
        Ok(())
    }

    async fn stop_notify(&mut self) {
        self.notifying = false;
        self.bulb.lock().expect("bulb").subscribed = false;
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }
    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        self.service.clone()
    }
    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.flags.clone()
    }
    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.value.clone()
    }
    #[zbus(property)]
    fn notifying(&self) -> bool {
        self.notifying
    }
}
