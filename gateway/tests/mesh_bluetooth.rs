//! Bluetooth mesh bulbs through the real btleplug path: a gateway with
//! `[mesh] bluetooth = true` talks to a fake BlueZ on a private
//! `dbus-daemon` (simulated bulbs behind it, no radio). Opening the network
//! provisions the bulbs found unprovisioned, connects to each one's proxy
//! and configures it; they are registered on chain and commanded over
//! REST. After a restart the gateway knows them from its store (device
//! keys sealed), reconnects to a bulb's proxy when commanded, reads its
//! state, and its
//! sequence numbers resume above what the bulbs saw, so nothing it sends
//! is taken for a replay.
//!
//! Needs `dbus-daemon`; `.ci/run` installs it and sets `ITC_REQUIRE_DBUS=1`
//! so CI never skips this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use itc_bridges::light::{Color, LightCommand};
use itc_bridges::mesh::fake_bluez::{self, Bulb, PrivateBus};
use itc_bridges::mesh::sim::SimMeshNode;
use itc_chain::crypto::Keypair;
use itc_chain::types::DeviceId;
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_web::client::Client;
use ring::agreement::{EphemeralPrivateKey, ECDH_P256};
use ring::rand::SystemRandom;

fn ephemeral() -> EphemeralPrivateKey {
    EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_mesh_bulbs_join_obey_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bus) = PrivateBus::for_test(dir.path()) else {
        return;
    };
    let bulbs: Vec<Bulb> = (0..2u8)
        .map(|i| Arc::new(Mutex::new(SimMeshNode::new(ephemeral(), [0x90 + i; 16]))))
        .collect();
    let _bluez = fake_bluez::serve(&bus.address, bulbs.clone())
        .await
        .unwrap();

    let mut cluster = local_cluster(ClusterOptions {
        gateways: 1,
        mesh_bluetooth: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let owner_key = *cluster.users[0].seed();
    let owner = |cluster: &itc_gateway::app::LocalCluster| {
        Client::new(cluster.gateways[0].url(), Keypair::from_seed(owner_key))
    };
    let gateway = &cluster.gateways[0];
    owner(&cluster)
        .claim_gateway(gateway.claim_code.as_deref().unwrap(), false)
        .await
        .unwrap();
    assert!(owner(&cluster).devices().await.unwrap().is_empty());
    owner(&cluster).permit_join(60).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..600 {
        devices = owner(&cluster).devices().await.unwrap();
        if devices.len() == 2 && devices.iter().all(|d| d.registered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(devices.len(), 2, "{devices:?}");
    // Their ids are their Device UUIDs.
    let mut ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            format!("mesh:{}", hex::encode([0x90; 16])),
            format!("mesh:{}", hex::encode([0x91; 16]))
        ]
    );
    let id = DeviceId::new(ids[0].as_str()).unwrap();
    let bulb = &bulbs[0];
    assert!(owner(&cluster).claim_device(&id).await.unwrap().committed);

    let on = LightCommand {
        on: Some(true),
        ..LightCommand::default()
    };
    owner(&cluster).set_light(&id, &on).await.unwrap();
    assert!(bulb.lock().unwrap().state.on);
    let warm = LightCommand {
        brightness: Some(127),
        color_temp: Some(370),
        ..LightCommand::default()
    };
    owner(&cluster).set_light(&id, &warm).await.unwrap();
    let state = owner(&cluster).light(&id).await.unwrap().state;
    assert_eq!(state.color, Color::Temperature { mireds: 370 });
    assert_eq!(bulb.lock().unwrap().state.temperature, 2_702);

    // A restart: the bulbs are known from the store, and obey.
    cluster.restart(0).await.unwrap();
    let devices = owner(&cluster).devices().await.unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    // Reconnecting, the gateway reads what the bulb is doing, so a colour
    // change keeps the dimmed lightness rather than a default.
    let cooler = LightCommand {
        color_temp: Some(250),
        ..LightCommand::default()
    };
    owner(&cluster).set_light(&id, &cooler).await.unwrap();
    assert_eq!(bulb.lock().unwrap().state.lightness, 32_768);
    assert_eq!(bulb.lock().unwrap().state.temperature, 4_000);
    let state = owner(&cluster).light(&id).await.unwrap().state;
    assert_eq!(state.brightness, 127);
    let off = LightCommand {
        on: Some(false),
        ..LightCommand::default()
    };
    owner(&cluster).set_light(&id, &off).await.unwrap();
    assert!(!bulb.lock().unwrap().state.on);
    assert_eq!(bulb.lock().unwrap().dropped().replayed, 0);
    cluster.shutdown().await.unwrap();
}
