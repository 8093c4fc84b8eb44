//! Bluetooth mesh bulbs in a gateway: provisioned and configured over the
//! proxy protocol when the administrator opens the network, listed like
//! any light, registered on
//! chain by their gateway, claimed by its administrator, and commanded over
//! REST — turned on, dimmed and set to a colour temperature — only by
//! whoever chain state allows.

use std::time::Duration;

use itc_bridges::light::{Color, LightCommand};
use itc_chain::crypto::Keypair;
use itc_chain::types::DeviceId;
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_web::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_bulbs_are_provisioned_registered_and_commanded() {
    let cluster = local_cluster(ClusterOptions {
        mesh_bulbs: 2,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let gateway = &cluster.gateways[0];
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    let stranger = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[1].seed()));
    owner
        .claim_gateway(gateway.claim_code.as_deref().unwrap(), false)
        .await
        .unwrap();
    // Factory-new bulbs wait until the network is opened.
    assert!(owner.devices().await.unwrap().is_empty());
    owner.permit_join(60).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..300 {
        devices = owner.devices().await.unwrap();
        if devices.len() == 2 && devices.iter().all(|d| d.registered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(devices
        .iter()
        .all(|d| d.bridge == "mesh" && d.registered && d.id.starts_with("mesh:")));
    let id = DeviceId::new(devices[0].id.as_str()).unwrap();
    assert!(owner.claim_device(&id).await.unwrap().committed);

    // Nobody else may command it.
    let on = LightCommand {
        on: Some(true),
        ..LightCommand::default()
    };
    assert!(stranger.set_light(&id, &on).await.is_err());
    assert!(!owner.light(&id).await.unwrap().state.on);

    // The owner: on, dimmed, warmer — each answered by the bulb's status.
    owner.set_light(&id, &on).await.unwrap();
    assert!(owner.light(&id).await.unwrap().state.on);
    let dim = LightCommand {
        brightness: Some(127),
        transition_ms: Some(400),
        ..LightCommand::default()
    };
    owner.set_light(&id, &dim).await.unwrap();
    assert_eq!(owner.light(&id).await.unwrap().state.brightness, 127);
    let warm = LightCommand {
        color_temp: Some(370),
        ..LightCommand::default()
    };
    owner.set_light(&id, &warm).await.unwrap();
    let state = owner.light(&id).await.unwrap().state;
    assert_eq!(state.color, Color::Temperature { mireds: 370 });
    assert_eq!(state.brightness, 127);
    cluster.shutdown().await.unwrap();
}
