//! A full provisioning-and-control run between the gateway's mesh client
//! and a simulated bulb, over the bytes a GATT connection carries (Proxy
//! PDUs in 20-octet writes): provision over PB-GATT, set the proxy filter,
//! add the application key and bind it to the lighting models, then turn
//! the light on, dim it and set its colour temperature. Replayed and
//! tampered PDUs are dropped and counted.

use itc_bridges::light::LightCommand;
use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::client::{ClientEvent, MeshClient, LIGHT_MODELS};
use itc_bridges::mesh::proxy;
use itc_bridges::mesh::sim::SimMeshNode;
use ring::agreement::{EphemeralPrivateKey, ECDH_P256};
use ring::rand::SystemRandom;

fn ephemeral() -> EphemeralPrivateKey {
    EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).unwrap()
}

/// Delivers `writes` to the node and its notifications back, until both
/// sides are quiet; returns the client's events.
fn exchange(
    client: &mut MeshClient,
    node: &mut SimMeshNode,
    writes: Vec<Vec<u8>>,
    log: &mut Vec<Vec<u8>>,
) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    let mut pending = writes;
    let mut now = 0;
    while !pending.is_empty() {
        let mut notifications = Vec::new();
        for write in pending.drain(..) {
            assert!(write.len() <= 20, "a write fits the default ATT MTU");
            log.push(write.clone());
            notifications.extend(node.handle_write(&write, now));
        }
        for note in notifications {
            assert!(note.len() <= 20);
            let (more_events, more_writes) = client.handle_notification(&note, now);
            events.extend(more_events);
            pending.extend(more_writes);
        }
        now += 10;
    }
    events
}

#[test]
fn provision_configure_and_control_a_mesh_bulb() {
    let net_key = [0x5a; 16];
    let app_key = [0xa5; 16];
    let mut client = MeshClient::new(net_key, 0x0000_0001, 0x0001, 0, app_key);
    let mut node = SimMeshNode::new(ephemeral(), [0x77; 16]);
    let mut log = Vec::new();
    assert_eq!(node.service(), proxy::PROVISIONING_SERVICE);

    // Provisioning over PB-GATT.
    let invite = client.provision(0x0100, ephemeral(), [0x11; 16]);
    let events = exchange(&mut client, &mut node, invite, &mut log);
    let [ClientEvent::Provisioned {
        address: 0x0100, ..
    }] = events.as_slice()
    else {
        panic!("provisioned: {events:?}");
    };
    assert_eq!(node.service(), proxy::PROXY_SERVICE);
    assert_eq!(node.address(), Some(0x0100));

    // The proxy filter, then the AppKey (segmented, device key) and the
    // bindings.
    let filter = client.set_filter().unwrap();
    let events = exchange(&mut client, &mut node, filter, &mut log);
    assert!(events.contains(&ClientEvent::FilterStatus {
        accept: true,
        addresses: 0
    }));
    let config = client.configure(0x0100).unwrap();
    let events = exchange(&mut client, &mut node, config, &mut log);
    assert!(events.contains(&ClientEvent::Status {
        src: 0x0100,
        message: Message::AppKeyStatus {
            status: 0,
            net_index: 0,
            app_index: 0
        }
    }));
    for m in LIGHT_MODELS {
        assert!(node.is_bound(m, 0), "model {m:#06x} bound");
        assert!(events.contains(&ClientEvent::Status {
            src: 0x0100,
            message: Message::ModelAppStatus {
                status: 0,
                element: 0x0100,
                app_index: 0,
                model: m
            }
        }));
    }

    // On, dim, colour temperature.
    let on = LightCommand {
        on: Some(true),
        ..LightCommand::default()
    };
    let messages = client.messages_for(&on, 0);
    let writes = client.send(0x0100, &messages).unwrap();
    let events = exchange(&mut client, &mut node, writes, &mut log);
    assert!(node.state.on);
    assert!(events.contains(&ClientEvent::Status {
        src: 0x0100,
        message: Message::OnOffStatus {
            present: true,
            target: None
        }
    }));
    let dim = LightCommand {
        brightness: Some(127),
        transition_ms: Some(400),
        ..LightCommand::default()
    };
    let messages = client.messages_for(&dim, 0xffff);
    let writes = client.send(0x0100, &messages).unwrap();
    exchange(&mut client, &mut node, writes, &mut log);
    assert_eq!(node.state.lightness, 32_768);
    assert_eq!(node.state.transition_ms, 400);
    let warm = LightCommand {
        color_temp: Some(370),
        ..LightCommand::default()
    };
    let messages = client.messages_for(&warm, node.state.lightness);
    let writes = client.send(0x0100, &messages).unwrap();
    let events = exchange(&mut client, &mut node, writes, &mut log);
    assert_eq!(node.state.temperature, 2_702);
    assert!(matches!(
        events.as_slice(),
        [ClientEvent::Status {
            message: Message::CtlStatus {
                temperature: 2_702,
                ..
            },
            ..
        }]
    ));
    assert_eq!(client.dropped(), Default::default());

    // Replays: every network write of the run again; none applies, each
    // is counted. A light switched off meanwhile stays off.
    let off = LightCommand {
        on: Some(false),
        ..LightCommand::default()
    };
    let messages = client.messages_for(&off, 0);
    let writes = client.send(0x0100, &messages).unwrap();
    exchange(&mut client, &mut node, writes, &mut log);
    assert!(!node.state.on);
    let network_writes: Vec<Vec<u8>> = log
        .iter()
        .filter(|w| w[0] & 0x3f == 0x00)
        .cloned()
        .collect();
    let before = node.dropped().replayed;
    for write in &network_writes {
        assert!(node.handle_write(write, 1_000).is_empty());
    }
    assert!(!node.state.on, "a replayed On did not turn it back on");
    assert!(node.dropped().replayed > before);

    // Tampered: a flipped bit anywhere after the header is refused.
    let messages = client.messages_for(&on, 0);
    let writes = client.send(0x0100, &messages).unwrap();
    for write in &writes {
        let mut bad = write.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        node.handle_write(&bad, 2_000);
    }
    assert!(!node.state.on);
    assert!(node.dropped().bad_network_mic >= 1);
}

#[test]
fn a_node_refuses_commands_before_it_is_configured() {
    let net_key = [0x5a; 16];
    let mut client = MeshClient::new(net_key, 1, 0x0001, 0, [0xa5; 16]);
    let mut node = SimMeshNode::new(ephemeral(), [0x78; 16]);
    let mut log = Vec::new();
    let invite = client.provision(0x0200, ephemeral(), [0x12; 16]);
    exchange(&mut client, &mut node, invite, &mut log);
    // No AppKey added, nothing bound: the On is not obeyed.
    let on = LightCommand {
        on: Some(true),
        ..LightCommand::default()
    };
    let messages = client.messages_for(&on, 0);
    let writes = client.send(0x0200, &messages).unwrap();
    let events = exchange(&mut client, &mut node, writes, &mut log);
    assert!(events.is_empty());
    assert!(!node.state.on);
    assert_eq!(node.dropped().bad_transport_mic, 1);
}
