//! MQTT devices and integrations against a real gateway cluster: the
//! embedded broker behind its front, rumqttc clients on loopback, the
//! chain deciding ownership and control.

use std::net::SocketAddr;
use std::time::Duration;

use itc_bridges::light::LightCommand;
use itc_bridges::mqtt::device::{Onboarded, SimDevice};
use itc_bridges::mqtt::topics::Topics;
use itc_chain::crypto::Keypair;
use itc_chain::types::{DeviceId, Model};
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_gateway::mqtt::logins;
use itc_web::client::Client;
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};

const WAIT: Duration = Duration::from_secs(20);

fn lamp(seed: u8, id: &str) -> SimDevice {
    SimDevice::new(
        Keypair::from_seed([seed; 32]),
        DeviceId::new(id).unwrap(),
        Model::new("esp-bulb").unwrap(),
    )
}

async fn refused_with(front: SocketAddr, user: Option<(&str, &str)>) -> Option<ConnectReturnCode> {
    let mut options = MqttOptions::new("someone", front.ip().to_string(), front.port());
    if let Some((u, p)) = user {
        options.set_credentials(u, p);
    }
    let (_client, mut events) = AsyncClient::new(options, 4);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return None,
            Ok(_) => continue,
            Err(ConnectionError::ConnectionRefused(code)) => return Some(code),
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// Polls `check` until it holds or `WAIT` passes.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_control_and_home_assistant() {
    let cluster = local_cluster(ClusterOptions {
        users: 2,
        bulbs: 1,
        mqtt: true,
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
    // Only the administrator makes setup codes.
    assert!(stranger.mqtt_setup_code().await.is_err());
    let setup = owner.mqtt_setup_code().await.unwrap();
    let front: SocketAddr = setup.broker.parse().unwrap();
    let topics = Topics::new(&setup.base_topic).unwrap();

    // Nobody anonymous, nobody with a guessed login, no unknown code.
    assert_eq!(
        refused_with(front, None).await,
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert_eq!(
        refused_with(front, Some(("mqtt:lamp-1", "guess"))).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        refused_with(front, Some(("setup", "not-a-code"))).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );

    // A wrong signature: refused, nothing registered, the code unspent.
    let lamp1 = lamp(1, "mqtt:lamp-1");
    let forged = lamp1
        .onboard_with(front, &topics, "esp-1", &setup.code, WAIT, |hello| {
            hello.public_key = Keypair::from_seed([9; 32]).public().to_string();
        })
        .await
        .unwrap();
    match forged {
        Onboarded::Refused { reason } => assert!(reason.contains("signature"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let id1 = DeviceId::new("mqtt:lamp-1").unwrap();
    assert_eq!(owner.owner_proof(&id1).await.unwrap().owner, None);

    // The real onboarding: registered on chain as the owner's.
    let password = match lamp1
        .onboard(front, &topics, "esp-1", &setup.code, WAIT)
        .await
        .unwrap()
    {
        Onboarded::Ok {
            username, password, ..
        } => {
            assert_eq!(username, "mqtt:lamp-1");
            password
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        owner.owner_proof(&id1).await.unwrap().owner,
        Some(owner.public().to_string())
    );
    let devices = owner.devices().await.unwrap();
    let listed = devices
        .iter()
        .find(|d| d.id == "mqtt:lamp-1")
        .expect("in the device list");
    assert_eq!(listed.bridge, "mqtt");
    assert!(listed.registered);

    // The code again: spent.
    let again = lamp(2, "mqtt:lamp-2")
        .onboard(front, &topics, "esp-2", &setup.code, WAIT)
        .await
        .unwrap();
    match again {
        Onboarded::Refused { reason } => assert!(reason.contains("used"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An expired code.
    let late = owner.mqtt_setup_code().await.unwrap();
    sqlx::query("UPDATE mqtt_setup_codes SET expires_ms = 1 WHERE used_ms IS NULL")
        .execute(gateway.node.store.pool())
        .await
        .unwrap();
    match lamp(2, "mqtt:lamp-2")
        .onboard(front, &topics, "esp-2", &late.code, WAIT)
        .await
        .unwrap()
    {
        Onboarded::Refused { reason } => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A device id that is taken, with a fresh code and another key.
    let fresh = owner.mqtt_setup_code().await.unwrap();
    match lamp(3, "mqtt:lamp-1")
        .onboard(front, &topics, "esp-3", &fresh.code, WAIT)
        .await
        .unwrap()
    {
        Onboarded::Refused { reason } => assert!(reason.contains("already registered"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let id2 = DeviceId::new("mqtt:lamp-2").unwrap();
    assert_eq!(owner.owner_proof(&id2).await.unwrap().owner, None);
    assert!(!owner
        .devices()
        .await
        .unwrap()
        .iter()
        .any(|d| d.id == "mqtt:lamp-2"));

    // The lamp at work: its signed reports reach the REST API, and a REST
    // command reaches it. Its states also go to the DAG, signed and worked
    // by the lamp, submitted by the gateway on its behalf.
    let mut confirmations = gateway.dag.confirmations();
    let lamp_password = password.clone();
    tokio::spawn(lamp1.run(front, topics.clone(), password));
    eventually("the lamp reports", || async {
        owner.light(&id1).await.is_ok_and(|l| l.link_quality > 0)
    })
    .await;
    // The owner dims the lamp over REST and waits for its report.
    let dim = |level: u8| {
        let (owner, id1) = (&owner, &id1);
        async move {
            let command = LightCommand {
                brightness: Some(level),
                ..LightCommand::default()
            };
            owner.set_light(id1, &command).await.unwrap();
            eventually("the lamp took the command", || async {
                owner
                    .light(id1)
                    .await
                    .is_ok_and(|l| l.state.brightness == level)
            })
            .await;
        }
    };
    dim(42).await;
    // Its dimmed state is confirmed on the DAG, as the lamp's own
    // transaction carrying what it reported.
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !reports.iter().any(|s| s["brightness"] == 42) {
        let batch = tokio::time::timeout_at(deadline, confirmations.recv())
            .await
            .expect("the lamp's DAG reports are confirmed")
            .unwrap();
        for confirmed in batch.iter() {
            let status = owner.dag_status(&confirmed.id).await.unwrap();
            assert_eq!(status.status, "confirmed");
            assert_eq!(status.tx["body"]["issuer"], "mqtt:lamp-1");
            let data = status.tx["body"]["kind"]["data"]
                .as_str()
                .unwrap()
                .to_string();
            let state: serde_json::Value =
                serde_json::from_slice(&hex::decode(data).unwrap()).unwrap();
            reports.push(state);
        }
    }

    // Home Assistant: logged in as an integration acting for the owner.
    let pool = gateway.node.store.pool();
    let rng = ring::rand::SystemRandom::new();
    let ha_password = logins::add_integration(pool, &rng, "home-assistant", &owner.public(), 0)
        .await
        .unwrap();
    let mut options = MqttOptions::new("ha", front.ip().to_string(), front.port());
    options.set_credentials("home-assistant", ha_password);
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    let (ha, mut ha_events) = AsyncClient::new(options, 64);
    ha.subscribe("homeassistant/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    ha.subscribe("itc/#", QoS::AtLeastOnce).await.unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = ha_events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = seen_tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    let mut configs = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while configs.len() < 2 {
        let (topic, payload) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .expect("discovery configs")
            .unwrap();
        if topic.starts_with("homeassistant/light/") {
            let config: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            configs.push((topic, config));
        }
    }
    let lamp_config = configs
        .iter()
        .find(|(t, _)| t == "homeassistant/light/itc_mqtt_lamp-1/config")
        .map(|(_, c)| c.clone());
    // Both the MQTT lamp and the simulated bulb are announced.
    assert!(
        configs.iter().any(|(t, _)| t.contains("itc_sim_")),
        "{configs:?}"
    );
    let lamp_config = match lamp_config {
        Some(c) => c,
        None => {
            // Discovery configs are retained: wait for the lamp's.
            loop {
                let (topic, payload) = tokio::time::timeout_at(deadline, seen.recv())
                    .await
                    .expect("the lamp's config")
                    .unwrap();
                if topic == "homeassistant/light/itc_mqtt_lamp-1/config" {
                    break serde_json::from_slice(&payload).unwrap();
                }
            }
        }
    };
    let command_topic = lamp_config["command_topic"].as_str().unwrap().to_string();
    assert_eq!(command_topic, "itc/mqtt:lamp-1/set");
    ha.publish(
        &command_topic,
        QoS::AtLeastOnce,
        false,
        r#"{"state":"OFF"}"#,
    )
    .await
    .unwrap();
    eventually("Home Assistant switched the lamp off", || async {
        owner.light(&id1).await.is_ok_and(|l| !l.state.on)
    })
    .await;

    // An integration acting for someone who does not own the lamp: its
    // command is refused by chain state, and the lamp stays off.
    let other = logins::add_integration(pool, &rng, "neighbour", &stranger.public(), 0)
        .await
        .unwrap();
    let mut options = MqttOptions::new("nb", front.ip().to_string(), front.port());
    options.set_credentials("neighbour", other);
    let (nb, mut nb_events) = AsyncClient::new(options, 16);
    nb.publish(&command_topic, QoS::AtLeastOnce, false, r#"{"state":"ON"}"#)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = nb_events.poll().await.unwrap() {
            break;
        }
    }
    // The owner's own later command goes through; the neighbour's (sent
    // first) must not have.
    dim(77).await;
    // Give a late-running command time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !owner.light(&id1).await.unwrap().state.on,
        "the neighbour switched it on"
    );

    // The lamp's login can put only the lamp's own transactions on the
    // DAG: one issued by another device (even validly signed by it) is
    // refused with the reason, and garbage is refused too.
    let mut options = MqttOptions::new("lamp", front.ip().to_string(), front.port());
    options.set_credentials("mqtt:lamp-1", lamp_password);
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    let (lamp_login, mut lamp_events) = AsyncClient::new(options, 16);
    lamp_login
        .subscribe(topics.device_dag_reply("mqtt:lamp-1"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let other = lamp(4, "mqtt:lamp-4");
    let body = itc_chain::dag::DagBody {
        issuer: other.id.clone(),
        kind: itc_chain::dag::DagKind::Reading {
            data: itc_chain::codec::Bytes::new(vec![1]).unwrap(),
        },
        parents: itc_chain::codec::BoundedVec::new(itc_chain::dag::tangle::roots().to_vec())
            .unwrap(),
        time_ms: 1,
        level: 1,
    };
    let foreign = itc_chain::dag::DagTx::issue(&other.key, body, 0);
    let mut replies = Vec::new();
    for payload in [itc_chain::codec::encode(&foreign), b"garbage".to_vec()] {
        lamp_login
            .publish(
                topics.device_dag("mqtt:lamp-1"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
        let reply = tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::Publish(p)) = lamp_events.poll().await.unwrap() {
                    break serde_json::from_slice::<itc_bridges::mqtt::signed::DagReply>(
                        &p.payload,
                    )
                    .unwrap();
                }
            }
        })
        .await
        .expect("a reply to the lamp's DAG publish");
        replies.push(reply);
    }
    assert!(
        replies[0]
            .error
            .as_deref()
            .unwrap()
            .contains("only its own"),
        "{replies:?}"
    );
    assert!(replies[1]
        .error
        .as_deref()
        .unwrap()
        .contains("not a DAG transaction"));
    assert!(replies
        .iter()
        .all(|r| r.id.is_none() && r.parents.len() == 2));
    assert_eq!(
        owner.dag_status(&foreign.id()).await.unwrap().status,
        "unknown"
    );
    cluster.shutdown().await.unwrap();
}
