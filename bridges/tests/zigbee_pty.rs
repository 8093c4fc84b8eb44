//! The Zigbee driver against the simulated Z-Stack stick over a real
//! pseudo-terminal: 10 bulbs join and are interviewed, light commands
//! reach the right bulb as the right ZCL bytes, reports change the state
//! the driver serves, and the stick is pulled out mid-run and plugged back
//! in: the driver recovers, and no command it acknowledged was lost.

use std::time::Duration;

use itc_bridges::light::{Color, LightCommand};
use itc_bridges::zigbee::driver::{self, DriverConfig, DriverError};
use itc_bridges::zigbee::host::HostError;
use itc_bridges::zigbee::network::NetEvent;
use itc_bridges::zigbee::sim_port::SimPort;
use itc_bridges::zigbee::stick::MODEL;
use itc_bridges::zigbee::zcl::cluster;

/// A ZCL frame as delivered: its cluster, and the bytes after frame
/// control and sequence number.
type Sent = (u16, Vec<u8>);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulbs_join_obey_report_and_survive_an_unplugged_stick() {
    let dir = tempfile::tempdir().unwrap();
    let stick = SimPort::start(dir.path().join("ttyZNP"), 10, 7);
    let (zigbee, _task) = driver::spawn(DriverConfig::new(stick.path()));
    let mut events = zigbee.events();
    within("the coordinator comes up", zigbee.wait_up()).await;

    // Joining permitted: all 10 join and are interviewed.
    zigbee.permit_join(60).await.unwrap();
    let mut joined = Vec::new();
    while joined.len() < 10 {
        if let NetEvent::Joined { ieee, model } = within("joins", events.recv()).await.unwrap() {
            assert_eq!(model, MODEL);
            joined.push(ieee);
        }
    }
    assert_eq!(stick.joined(), 10);

    // Commands reach the right bulb as the right ZCL bytes.
    let bulb = joined[4];
    let cases: [(LightCommand, Vec<Sent>); 4] = [
        (
            LightCommand {
                on: Some(false),
                ..Default::default()
            },
            vec![(cluster::ON_OFF, vec![0x00])],
        ),
        (
            LightCommand {
                brightness: Some(77),
                ..Default::default()
            },
            vec![(cluster::LEVEL, vec![0x04, 77, 0, 0])],
        ),
        (
            LightCommand {
                color_temp: Some(250),
                transition_ms: Some(200),
                ..Default::default()
            },
            vec![(cluster::COLOR, vec![0x0a, 0xfa, 0x00, 2, 0])],
        ),
        (
            LightCommand {
                xy: Some([0.5, 0.25]),
                ..Default::default()
            },
            vec![(cluster::COLOR, vec![0x07, 0x00, 0x80, 0x00, 0x40, 0, 0])],
        ),
    ];
    for (command, expected) in cases {
        let before = stick.delivered().len();
        zigbee.send(bulb, command).await.unwrap();
        let sent: Vec<Sent> = stick.delivered()[before..]
            .iter()
            .map(|d| {
                assert_eq!(d.ieee, bulb, "the right bulb");
                // Skip frame control and sequence number.
                (d.cluster, d.zcl[2..].to_vec())
            })
            .collect();
        assert_eq!(sent, expected);
    }

    // Reports change the state the driver serves.
    let state = within("the report of the last command", async {
        loop {
            let state = zigbee
                .devices()
                .into_iter()
                .find(|d| d.ieee == bulb)
                .unwrap()
                .state;
            if matches!(state.color, Color::Xy { .. }) {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(state.on);
    assert_eq!(state.brightness, 77);

    // A burst of commands, with the stick pulled out as they go: whatever
    // the driver acknowledged must really have reached its bulb.
    let burst: Vec<_> = (0..20u8)
        .map(|i| {
            let zigbee = zigbee.clone();
            let ieee = joined[usize::from(i) % 10];
            tokio::spawn(async move {
                let command = LightCommand {
                    brightness: Some(100 + i),
                    ..Default::default()
                };
                (ieee, 100 + i, zigbee.send(ieee, command).await)
            })
        })
        .collect();
    // And one command surely in flight: the stick stops answering, the
    // command goes out and waits for its response.
    stick.set_responsive(false);
    let stuck = {
        let zigbee = zigbee.clone();
        tokio::spawn(async move {
            zigbee
                .send(
                    bulb,
                    LightCommand {
                        brightness: Some(3),
                        ..Default::default()
                    },
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    stick.unplug();
    let mut refused = 0;
    for task in burst {
        let (ieee, level, result) = task.await.unwrap();
        match result {
            Ok(()) => assert!(
                stick
                    .delivered()
                    .iter()
                    .any(|d| d.ieee == ieee && d.zcl[2..] == [0x04, level, 0, 0]),
                "command to {ieee:x} acknowledged but never delivered"
            ),
            Err(_) => refused += 1,
        }
    }
    let stuck = within("the stuck command's outcome", stuck).await.unwrap();
    assert_eq!(stuck, Err(DriverError::Host(HostError::Disconnected)));
    assert!(
        !stick
            .delivered()
            .iter()
            .any(|d| d.zcl[2..] == [0x04, 3, 0, 0]),
        "the stuck command never reached a bulb"
    );
    within("the driver notices", async {
        while zigbee.is_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let down = zigbee
        .send(
            bulb,
            LightCommand {
                on: Some(true),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(down, Err(DriverError::Network(_))), "{down:?}");
    eprintln!("{refused} of 20 burst commands failed with the stick");

    // Plugged back in: the driver reopens, restarts the coordinator, and
    // the bulbs (kept in the stick's network) obey again.
    stick.set_responsive(true);
    stick.plug();
    within("the coordinator comes back", zigbee.wait_up()).await;
    zigbee
        .send(
            bulb,
            LightCommand {
                on: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!stick.bulb_state(bulb).unwrap().on);
}
