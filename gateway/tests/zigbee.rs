//! Zigbee through the whole gateway: four gateways on loopback, each with a
//! simulated Z-Stack stick on a real PTY. Through the REST API the owner
//! opens the network, the bulbs join, are interviewed and registered on
//! chain, the owner claims one, and light commands reach that bulb as the
//! right ZCL bytes; its reports change the state the API serves.

use std::time::Duration;

use itc_bridges::light::{Color, LightCommand};
use itc_bridges::zigbee::zcl::cluster;
use itc_chain::crypto::Keypair;
use itc_chain::types::DeviceId;
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_web::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_commands_reach_zigbee_bulbs_and_reports_come_back() {
    let cluster = local_cluster(ClusterOptions {
        users: 1,
        zigbee_bulbs: 3,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let gateway = &cluster.gateways[0];
    let stick = gateway.sim_stick.as_ref().expect("a simulated stick");
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    owner
        .claim_gateway(gateway.claim_code.as_deref().unwrap())
        .await
        .unwrap();

    // Factory-new bulbs: nothing until the network is opened.
    assert!(owner.devices().await.unwrap().is_empty());
    owner.permit_join(60).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..200 {
        devices = owner.devices().await.unwrap();
        if devices.len() == 3 && devices.iter().all(|d| d.registered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(devices.len(), 3, "{devices:?}");
    assert!(devices.iter().all(|d| d.registered && d.bridge == "zigbee"));
    assert!(devices
        .iter()
        .all(|d| d.model == itc_bridges::zigbee::stick::MODEL));

    let id = DeviceId::new(devices[1].id.as_str()).unwrap();
    let ieee = u64::from_str_radix(id.as_str().trim_start_matches("zigbee:"), 16).unwrap();
    assert!(owner.claim_device(&id).await.unwrap().committed);

    let before = stick.delivered().len();
    let set = owner
        .set_light(
            &id,
            &LightCommand {
                brightness: Some(42),
                color_temp: Some(400),
                ..LightCommand::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(set.target.brightness, 42);
    let sent: Vec<(u16, Vec<u8>)> = stick.delivered()[before..]
        .iter()
        .map(|d| {
            assert_eq!(d.ieee, ieee, "the claimed bulb, no other");
            (d.cluster, d.zcl[2..].to_vec())
        })
        .collect();
    assert_eq!(
        sent,
        [
            (cluster::LEVEL, vec![0x04, 42, 0, 0]),
            (cluster::COLOR, vec![0x0a, 0x90, 0x01, 0, 0]),
        ]
    );

    // The bulb's report is what the API serves.
    let mut light = owner.light(&id).await.unwrap();
    for _ in 0..100 {
        if light.state.brightness == 42 && light.state.color == (Color::Temperature { mireds: 400 })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        light = owner.light(&id).await.unwrap();
    }
    assert_eq!(light.state.brightness, 42);
    assert_eq!(light.state.color, Color::Temperature { mireds: 400 });
    assert_eq!(stick.bulb_state(ieee).unwrap().brightness, 42);

    cluster.shutdown().await.unwrap();
}
