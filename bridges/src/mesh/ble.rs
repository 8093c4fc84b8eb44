//! The Bluetooth LE transport for mesh, over `btleplug` (BlueZ on Linux,
//! through D-Bus).
//!
//! This is the IO half of the mesh bridge; everything it carries is made
//! and read by the pure layers ([`super::client`]). It:
//!
//! - scans for the two mesh advertisements (Mesh Profile 1.0.1 §7): an
//!   unprovisioned device advertises the Mesh Provisioning service 0x1827
//!   with service data of its Device UUID (16 octets) and OOB information
//!   (2 octets, big-endian); a provisioned node's proxy advertises the Mesh
//!   Proxy service 0x1828 with service data of an identification type and
//!   its Network ID or Node Identity (§7.2.2.2);
//! - connects, finds the service's Data In and Data Out characteristics
//!   (0x2ADB/0x2ADC for provisioning, 0x2ADD/0x2ADE for the proxy) and
//!   subscribes to Data Out;
//! - writes Proxy PDUs to Data In without response and hands Data Out's
//!   notifications back in order.
//!
//! A [`BleLink`] is one kind of [`super::link::MeshLink`]; the client
//! talks through [`super::link::exchange`] whatever carries it.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use btleplug::api::bleuuid::uuid_from_u16;
use btleplug::api::{
    Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    ValueNotification, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::link::{LinkError, MeshLink};
use super::proxy;

/// A mesh advertisement seen in a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beacon {
    /// A device waiting to be provisioned (§7.1.2.2.1).
    Unprovisioned { uuid: [u8; 16], oob: u16 },
    /// A node's proxy: the identification type (0x00 Network ID, 0x01
    /// Node Identity) and what follows it (§7.2.2.2).
    Proxy { kind: u8, data: Vec<u8> },
}

/// A device a scan found.
#[derive(Clone, Debug)]
pub struct Advert {
    pub id: PeripheralId,
    /// The BLE address, as the platform prints it.
    pub address: String,
    pub beacon: Beacon,
}

impl Advert {
    /// The GATT service to connect to for it.
    pub fn service(&self) -> u16 {
        match self.beacon {
            Beacon::Unprovisioned { .. } => proxy::PROVISIONING_SERVICE,
            Beacon::Proxy { .. } => proxy::PROXY_SERVICE,
        }
    }
}

/// Reads the mesh advertisement out of a device's service data, if it
/// carries one; malformed data is not a beacon.
pub fn beacon(service_data: &HashMap<Uuid, Vec<u8>>) -> Option<Beacon> {
    if let Some(data) = service_data.get(&uuid_from_u16(proxy::PROVISIONING_SERVICE)) {
        let uuid: [u8; 16] = data.get(..16)?.try_into().ok()?;
        let oob = u16::from_be_bytes(data.get(16..18)?.try_into().ok()?);
        return Some(Beacon::Unprovisioned { uuid, oob });
    }
    let data = service_data.get(&uuid_from_u16(proxy::PROXY_SERVICE))?;
    let (&kind, rest) = data.split_first()?;
    Some(Beacon::Proxy {
        kind,
        data: rest.to_vec(),
    })
}

/// The first Bluetooth adapter, for scanning and connecting.
pub struct BleCentral {
    adapter: Adapter,
}

impl BleCentral {
    /// Opens the platform's Bluetooth (BlueZ over the system D-Bus on
    /// Linux, found through `DBUS_SYSTEM_BUS_ADDRESS` if set).
    pub async fn open() -> Result<BleCentral, LinkError> {
        let manager = Manager::new().await?;
        let adapter = manager
            .adapters()
            .await?
            .into_iter()
            .next()
            .ok_or(LinkError::NoAdapter)?;
        Ok(BleCentral { adapter })
    }

    /// Scans for mesh devices until `enough` says the ones seen so far
    /// suffice, or `timeout` passes; returns what it saw.
    pub async fn scan(
        &self,
        enough: impl Fn(&[Advert]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Advert>, LinkError> {
        let mut events = self.adapter.events().await?;
        let services = [proxy::PROVISIONING_SERVICE, proxy::PROXY_SERVICE]
            .map(uuid_from_u16)
            .to_vec();
        self.adapter.start_scan(ScanFilter { services }).await?;
        let mut seen: HashMap<PeripheralId, Advert> = HashMap::new();
        // Devices the adapter knew already count as seen.
        for peripheral in self.adapter.peripherals().await? {
            if let Some(advert) = advert_of(&peripheral).await? {
                seen.insert(advert.id.clone(), advert);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let adverts: Vec<Advert> = seen.values().cloned().collect();
            if enough(&adverts) {
                break;
            }
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => break,
            };
            let id = match event {
                CentralEvent::DeviceDiscovered(id)
                | CentralEvent::DeviceUpdated(id)
                | CentralEvent::ServiceDataAdvertisement { id, .. } => id,
                _ => continue,
            };
            let peripheral = self.adapter.peripheral(&id).await?;
            match advert_of(&peripheral).await? {
                Some(advert) => seen.insert(id, advert),
                None => seen.remove(&id),
            };
        }
        self.adapter.stop_scan().await?;
        let mut adverts: Vec<Advert> = seen.into_values().collect();
        adverts.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(adverts)
    }

    /// Connects to the device of `advert` and subscribes to its Data Out.
    pub async fn connect(&self, advert: &Advert) -> Result<MeshLink, LinkError> {
        let peripheral = self.adapter.peripheral(&advert.id).await?;
        let link = BleLink::open(peripheral, advert.address.clone(), advert.service()).await?;
        Ok(MeshLink::Ble(Box::new(link)))
    }
}

async fn advert_of(peripheral: &Peripheral) -> Result<Option<Advert>, LinkError> {
    let Some(properties) = peripheral.properties().await? else {
        return Ok(None);
    };
    Ok(beacon(&properties.service_data).map(|beacon| Advert {
        id: peripheral.id(),
        address: properties.address.to_string(),
        beacon,
    }))
}

type Notifications = Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;

/// One GATT connection to a mesh node's provisioning or proxy service.
pub struct BleLink {
    peripheral: Peripheral,
    data_in: Characteristic,
    data_out: Uuid,
    notifications: Notifications,
    address: String,
}

impl BleLink {
    async fn open(
        peripheral: Peripheral,
        address: String,
        service: u16,
    ) -> Result<Self, LinkError> {
        let (data_in, data_out) = match service {
            proxy::PROVISIONING_SERVICE => {
                (proxy::PROVISIONING_DATA_IN, proxy::PROVISIONING_DATA_OUT)
            }
            _ => (proxy::PROXY_DATA_IN, proxy::PROXY_DATA_OUT),
        };
        if !peripheral.is_connected().await? {
            peripheral.connect().await?;
        }
        peripheral.discover_services().await?;
        let service_uuid = uuid_from_u16(service);
        let find = |uuid: u16| {
            peripheral
                .characteristics()
                .into_iter()
                .find(|c| c.service_uuid == service_uuid && c.uuid == uuid_from_u16(uuid))
        };
        let (Some(data_in), Some(data_out)) = (find(data_in), find(data_out)) else {
            return Err(LinkError::NoMeshService { address, service });
        };
        // Subscribe before the first write, so no answer is missed.
        let notifications = peripheral.notifications().await?;
        peripheral.subscribe(&data_out).await?;
        Ok(BleLink {
            peripheral,
            data_in,
            data_out: data_out.uuid,
            notifications,
            address,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Writes one Proxy PDU to Data In (write without response).
    pub async fn write(&mut self, pdu: &[u8]) -> Result<(), LinkError> {
        self.peripheral
            .write(&self.data_in, pdu, WriteType::WithoutResponse)
            .await?;
        Ok(())
    }

    /// The next Data Out notification, or `None` if none comes by
    /// `deadline`.
    pub async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        loop {
            match tokio::time::timeout_at(deadline, self.notifications.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(LinkError::Disconnected),
                Ok(Some(note)) if note.uuid == self.data_out => return Ok(Some(note.value)),
                Ok(Some(_)) => continue,
            }
        }
    }

    pub async fn disconnect(self) -> Result<(), LinkError> {
        self.peripheral.disconnect().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_are_read_from_service_data() {
        // §7.1.2.2.1: Device UUID then OOB Information, big-endian.
        let mut data = HashMap::new();
        let mut unprovisioned = vec![0x77; 16];
        unprovisioned.extend([0x00, 0x20]);
        data.insert(uuid_from_u16(0x1827), unprovisioned);
        assert_eq!(
            beacon(&data),
            Some(Beacon::Unprovisioned {
                uuid: [0x77; 16],
                oob: 0x0020
            })
        );
        // Too short to be one: not a beacon.
        data.insert(uuid_from_u16(0x1827), vec![0x77; 17]);
        assert_eq!(beacon(&data), None);
        // §7.2.2.2.2: type 0x00 and the 8-octet Network ID.
        let mut data = HashMap::new();
        data.insert(uuid_from_u16(0x1828), vec![0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            beacon(&data),
            Some(Beacon::Proxy {
                kind: 0,
                data: vec![1, 2, 3, 4, 5, 6, 7, 8]
            })
        );
        data.insert(uuid_from_u16(0x1828), vec![]);
        assert_eq!(beacon(&data), None);
        assert_eq!(beacon(&HashMap::new()), None);
    }
}
