//! The real btleplug path: btleplug talks D-Bus (libdbus, built vendored)
//! to a fake BlueZ on a private `dbus-daemon`, found through
//! `DBUS_SYSTEM_BUS_ADDRESS` as a real one would be. Behind the fake are
//! simulated mesh bulbs; everything between the gateway's mesh client and
//! them — scanning, connecting, service discovery, subscribing, writes
//! without response and notifications — is btleplug and D-Bus.
//!
//! Two bulbs are found unprovisioned, provisioned over PB-GATT, found again
//! as proxies of our network, and then configured and commanded through
//! their proxy service: on, dim, colour temperature. A replayed PDU and a
//! garbled write are dropped and counted, and the link carries on.
//!
//! Needs `dbus-daemon` (`.ci/run` installs it and sets
//! `ITC_REQUIRE_DBUS=1`, so CI never skips this). Without it, and without
//! that variable, the test says so and passes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use itc_bridges::light::LightCommand;
use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::ble::{Advert, Beacon, BleCentral};
use itc_bridges::mesh::client::{ClientEvent, MeshClient};
use itc_bridges::mesh::crypto::k3;
use itc_bridges::mesh::fake_bluez::{self, Bulb, PrivateBus};
use itc_bridges::mesh::link::{
    configured, exchange, filter_set, provisioned, status_from, MeshLink,
};
use itc_bridges::mesh::sim::SimMeshNode;
use ring::agreement::{EphemeralPrivateKey, ECDH_P256};
use ring::rand::SystemRandom;

const WAIT: Duration = Duration::from_secs(20);

fn ephemeral() -> EphemeralPrivateKey {
    EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).unwrap()
}

async fn run(
    client: &mut MeshClient,
    link: &mut MeshLink,
    writes: Vec<Vec<u8>>,
    done: impl Fn(&[ClientEvent]) -> bool,
) -> Vec<ClientEvent> {
    exchange(client, link, writes, 0, done, WAIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btleplug_provisions_and_controls_bulbs_through_bluez() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bus) = PrivateBus::for_test(dir.path()) else {
        return;
    };
    let bulbs: Vec<Bulb> = (0..2u8)
        .map(|i| Arc::new(Mutex::new(SimMeshNode::new(ephemeral(), [0x70 + i; 16]))))
        .collect();
    let _bluez = fake_bluez::serve(&bus.address, bulbs.clone())
        .await
        .unwrap();

    let net_key = [0x5a; 16];
    let mut client = MeshClient::new(net_key, 1, 0x0001, 0, [0xa5; 16]);
    let central = BleCentral::open().await.unwrap();

    // Both bulbs are found unprovisioned, with their Device UUIDs.
    let found = central
        .scan(
            |seen| {
                seen.iter()
                    .filter(|a| matches!(a.beacon, Beacon::Unprovisioned { .. }))
                    .count()
                    == 2
            },
            WAIT,
        )
        .await
        .unwrap();
    let uuids: Vec<[u8; 16]> = found
        .iter()
        .filter_map(|a| match a.beacon {
            Beacon::Unprovisioned { uuid, oob: 0 } => Some(uuid),
            _ => None,
        })
        .collect();
    assert_eq!(uuids, vec![[0x70; 16], [0x71; 16]]);

    // Provisioned over PB-GATT, one connection each.
    let addresses = [0x0100u16, 0x0101];
    for (advert, address) in found.iter().zip(addresses) {
        let mut link = central.connect(advert).await.unwrap();
        let invite = client.provision(address, ephemeral(), [0x11; 16]);
        let events = run(&mut client, &mut link, invite, provisioned(address)).await;
        assert!(
            matches!(events.as_slice(), [ClientEvent::Provisioned { address: a, .. }] if *a == address),
            "{events:?}"
        );
        link.close().await.unwrap();
    }
    for (bulb, address) in bulbs.iter().zip(addresses) {
        assert_eq!(bulb.lock().unwrap().address(), Some(address));
    }

    // Now they advertise a proxy of our network (its Network ID).
    let network_id = k3(&net_key).to_vec();
    let ours = |a: &Advert| {
        a.beacon
            == Beacon::Proxy {
                kind: 0,
                data: network_id.clone(),
            }
    };
    let proxies = central
        .scan(|seen| seen.iter().filter(|a| ours(a)).count() == 2, WAIT)
        .await
        .unwrap();
    assert_eq!(proxies.iter().filter(|a| ours(a)).count(), 2);

    for ((advert, bulb), address) in proxies.iter().zip(&bulbs).zip(addresses) {
        let mut link = central.connect(advert).await.unwrap();
        // The proxy filter, then the AppKey and the bindings.
        let filter = client.set_filter().unwrap();
        let events = run(&mut client, &mut link, filter, filter_set).await;
        assert!(events.contains(&ClientEvent::FilterStatus {
            accept: true,
            addresses: 0
        }));
        let config = client.configure(address).unwrap();
        let events = run(&mut client, &mut link, config, configured).await;
        assert!(events.contains(&ClientEvent::Status {
            src: address,
            message: Message::AppKeyStatus {
                status: 0,
                net_index: 0,
                app_index: 0
            }
        }));

        // On, dim, warm white.
        let on = LightCommand {
            on: Some(true),
            ..LightCommand::default()
        };
        let messages = client.messages_for(&on, 0);
        let writes = client.send(address, &messages).unwrap();
        let replay = writes.clone();
        run(&mut client, &mut link, writes, status_from(address)).await;
        assert!(bulb.lock().unwrap().state.on);
        let dim = LightCommand {
            brightness: Some(127),
            transition_ms: Some(400),
            ..LightCommand::default()
        };
        let messages = client.messages_for(&dim, 0xffff);
        let writes = client.send(address, &messages).unwrap();
        run(&mut client, &mut link, writes, status_from(address)).await;
        let warm = LightCommand {
            color_temp: Some(370),
            ..LightCommand::default()
        };
        let lightness = bulb.lock().unwrap().state.lightness;
        assert_eq!(lightness, 32_768);
        let messages = client.messages_for(&warm, lightness);
        let writes = client.send(address, &messages).unwrap();
        let events = run(&mut client, &mut link, writes, status_from(address)).await;
        assert!(
            events.iter().any(|e| matches!(
                e,
                ClientEvent::Status {
                    message: Message::CtlStatus {
                        temperature: 2_702,
                        ..
                    },
                    ..
                }
            )),
            "{events:?}"
        );
        assert_eq!(bulb.lock().unwrap().state.temperature, 2_702);

        // The first command again, byte for byte: dropped and counted.
        // A garbled write is dropped too; the link carries on.
        let before = bulb.lock().unwrap().dropped();
        for write in &replay {
            link.write(write).await.unwrap();
        }
        link.write(&[0x00, 0xde, 0xad]).await.unwrap();
        let off = LightCommand {
            on: Some(false),
            ..LightCommand::default()
        };
        let messages = client.messages_for(&off, 0);
        let writes = client.send(address, &messages).unwrap();
        run(&mut client, &mut link, writes, status_from(address)).await;
        let after = bulb.lock().unwrap().dropped();
        assert_eq!(after.replayed, before.replayed + 1, "{after:?}");
        assert!(after.malformed + after.not_for_us > before.malformed + before.not_for_us);
        assert!(!bulb.lock().unwrap().state.on);
        link.close().await.unwrap();
    }
}
