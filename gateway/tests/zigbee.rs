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

/// A ZCL frame as delivered: its cluster, and the bytes after frame
/// control and sequence number.
type Sent = (u16, Vec<u8>);

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
    // A consent that is not the caller's is refused, and the code stays
    // unused.
    let forged = Keypair::from_seed([8; 32]).sign(itc_chain::crypto::Domain::Adoption, b"x");
    let refused = owner
        .call::<itc_web::GatewayInfo>(
            reqwest::Method::POST,
            "/api/v1/gateway/claim",
            Some(&itc_web::ClaimGateway {
                code: gateway.claim_code.clone().unwrap(),
                adoption: Some(forged.to_string()),
            }),
        )
        .await;
    assert_eq!(
        refused.unwrap_err().status(),
        Some(reqwest::StatusCode::BAD_REQUEST)
    );
    // Claimed with adoption: what the gateway pairs from now on is the
    // owner's from registration.
    owner
        .claim_gateway(gateway.claim_code.as_deref().unwrap(), true)
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

    let mine = owner.public().to_string();
    assert!(devices
        .iter()
        .all(|d| d.owner.as_deref() == Some(mine.as_str())));
    let id = DeviceId::new(devices[1].id.as_str()).unwrap();
    let ieee = u64::from_str_radix(id.as_str().trim_start_matches("zigbee:"), 16).unwrap();
    assert_eq!(owner.owner_proof(&id).await.unwrap().owner, Some(mine));

    // Each REST command reaches that bulb, and only it, as the right ZCL
    // bytes (after frame control and sequence number).
    let cases: Vec<(LightCommand, Vec<Sent>)> = vec![
        (
            LightCommand {
                on: Some(false),
                ..LightCommand::default()
            },
            vec![(cluster::ON_OFF, vec![0x00])],
        ),
        (
            LightCommand {
                on: Some(true),
                ..LightCommand::default()
            },
            vec![(cluster::ON_OFF, vec![0x01])],
        ),
        (
            LightCommand {
                xy: Some([0.5, 0.25]),
                transition_ms: Some(100),
                ..LightCommand::default()
            },
            vec![(cluster::COLOR, vec![0x07, 0x00, 0x80, 0x00, 0x40, 1, 0])],
        ),
        (
            LightCommand {
                brightness: Some(42),
                color_temp: Some(400),
                ..LightCommand::default()
            },
            vec![
                (cluster::LEVEL, vec![0x04, 42, 0, 0]),
                (cluster::COLOR, vec![0x0a, 0x90, 0x01, 0, 0]),
            ],
        ),
    ];
    for (command, expected) in cases {
        let before = stick.delivered().len();
        let set = owner.set_light(&id, &command).await.unwrap();
        if let Some(on) = command.on {
            assert_eq!(set.target.on, on);
        }
        let sent: Vec<Sent> = stick.delivered()[before..]
            .iter()
            .map(|d| {
                assert_eq!(d.ieee, ieee, "the claimed bulb, no other");
                (d.cluster, d.zcl[2..].to_vec())
            })
            .collect();
        assert_eq!(sent, expected, "{command:?}");
    }

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

/// Publishes a firmware manifest (a chain transaction signed by
/// `manufacturer`) and waits until gateway 0 has committed it.
async fn publish(
    base: &str,
    manufacturer: &Keypair,
    nonce: u64,
    version: (u16, u16, u16),
    image: &[u8],
) {
    use itc_chain::codec::encode;
    use itc_chain::crypto::Hash;
    use itc_chain::tx::{ChainId, FirmwareManifest, Tx, TxBody};
    use itc_chain::types::{FirmwareVersion, Model};
    let tx = Tx {
        chain_id: ChainId::new("itc-test").unwrap(),
        sender: manufacturer.public(),
        nonce,
        body: TxBody::PublishManifest(FirmwareManifest {
            model: Model::new(itc_bridges::zigbee::stick::MODEL).unwrap(),
            version: FirmwareVersion {
                major: version.0,
                minor: version.1,
                patch: version.2,
            },
            image_hash: Hash::digest(image),
            image_size: image.len() as u64,
        }),
    }
    .sign(manufacturer);
    let id = tx.hash();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/transactions"))
        .json(&serde_json::json!({ "txs": [hex::encode(encode(&tx))] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let reader = Client::new(base, Keypair::from_seed([3; 32]));
    for _ in 0..200 {
        if reader.transaction(&id).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the manifest did not commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulb_gets_only_firmware_that_matches_a_trusted_manifest() {
    use itc_bridges::zigbee::ota::{file_version, QueryNextImage};
    use itc_gateway::service::firmware::FirmwareConfig;
    let images = tempfile::tempdir().unwrap();
    let work = itc_chain::testkit::Workload::new(4, 3, 0x11c7);
    let trusted = Keypair::from_seed(*work.users[1].seed());
    let untrusted = Keypair::from_seed(*work.users[2].seed());
    let cluster = local_cluster(ClusterOptions {
        users: 3,
        zigbee_bulbs: 1,
        firmware: Some(FirmwareConfig {
            dir: images.path().to_path_buf(),
            manufacturers: vec![trusted.public()],
        }),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(cluster.users[1].public(), trusted.public(), "same workload");
    let gateway = &cluster.gateways[0];
    let stick = gateway.sim_stick.as_ref().unwrap();
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    owner
        .claim_gateway(gateway.claim_code.as_deref().unwrap(), false)
        .await
        .unwrap();
    owner.permit_join(60).await.unwrap();
    let mut devices = Vec::new();
    for _ in 0..200 {
        devices = owner.devices().await.unwrap();
        if devices.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ieee = u64::from_str_radix(devices[0].id.trim_start_matches("zigbee:"), 16).unwrap();

    // 1.2.0: file and manifest agree. 1.3.0: the file on disk was tampered
    // with. 2.0.0: matches, but from a manufacturer this gateway does not
    // trust.
    let model = itc_bridges::zigbee::stick::MODEL;
    let good = vec![0x5a; 4_096];
    std::fs::write(images.path().join(format!("{model}-1.2.0.ota")), &good).unwrap();
    std::fs::write(
        images.path().join(format!("{model}-1.3.0.ota")),
        vec![0x66; 4_096],
    )
    .unwrap();
    std::fs::write(images.path().join(format!("{model}-2.0.0.ota")), &good).unwrap();
    let base = gateway.url();
    publish(&base, &trusted, 0, (1, 2, 0), &good).await;
    publish(&base, &trusted, 1, (1, 3, 0), &[0x77; 4_096]).await;
    publish(&base, &untrusted, 0, (2, 0, 0), &good).await;

    let ask = |version: u32| QueryNextImage {
        manufacturer: 0x1234,
        image_type: 0x0101,
        file_version: version,
        hardware_version: None,
    };
    for (current, expected) in [
        (file_version(1, 0, 0), Some(file_version(1, 2, 0))),
        (file_version(1, 2, 0), None),
    ] {
        let before = stick.offers().len();
        assert!(stick.query_image(ieee, &ask(current)));
        let mut offers = stick.offers();
        for _ in 0..200 {
            if offers.len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            offers = stick.offers();
        }
        let (to, offer) = offers[before];
        assert_eq!(to, ieee);
        assert_eq!(offer.map(|o| o.file_version), expected);
        if let Some(offer) = offer {
            assert_eq!(offer.image_size, 4_096);
            assert_eq!((offer.manufacturer, offer.image_type), (0x1234, 0x0101));
            // The bulb downloads it block by block and installs it: the
            // bytes it got are exactly the image the manifest names.
            let mut upgrades = stick.upgrades();
            for _ in 0..500 {
                if !upgrades.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                upgrades = stick.upgrades();
            }
            assert_eq!(upgrades.len(), 1, "the download finished");
            assert_eq!(upgrades[0].ieee, ieee);
            assert_eq!(upgrades[0].file_version, file_version(1, 2, 0));
            assert_eq!(
                upgrades[0].image_hash,
                itc_chain::crypto::Hash::digest(&good)
            );
            assert_eq!(
                upgrades[0].blocks,
                4_096usize.div_ceil(usize::from(itc_bridges::zigbee::stick::OTA_BLOCK))
            );
        }
    }
    cluster.shutdown().await.unwrap();
}
