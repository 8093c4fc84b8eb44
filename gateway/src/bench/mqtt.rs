//! `itc-gateway bench mqtt`: one gateway holding many MQTT devices, and how
//! many signed device reports per second it accepts through its broker.
//!
//! The devices run in a child process (`bench mqtt-swarm`), so the
//! gateway's resident memory is its own: N devices are onboarded the real
//! way (setup code, challenge, signed hello, registration committed on
//! chain), connect with their permanent logins, and then publish
//! pre-signed state reports (QoS 1) as fast as the broker takes them.
//! The gateway checks every report's signature and sequence number before
//! it accepts it; the figure is accepted reports per second.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use itc_bridges::mqtt::device::{Onboarded, SimDevice};
use itc_bridges::mqtt::signed::Report;
use itc_bridges::mqtt::topics::Topics;
use itc_bridges::mqtt::z2m::state_json;
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::types::{DeviceId, Model};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use super::api::{admin, UNLIMITED};
use crate::app::{local_cluster, ClusterOptions};

#[derive(Debug, Serialize)]
pub struct MqttReport {
    pub devices: usize,
    pub onboarded: usize,
    pub onboard_s: f64,
    pub reports_sent: u64,
    pub accepted: u64,
    pub refused: u64,
    pub accept_s: f64,
    pub accepted_per_s: f64,
    /// This process (one gateway: replica, store, broker, front, bridge).
    pub rss_before_bytes: u64,
    pub rss_connected_bytes: u64,
    pub rss_after_load_bytes: u64,
}

/// The swarm's next line, read off the runtime's threads; the reader
/// comes back for the next one.
async fn line<R: BufRead + Send + 'static>(mut reader: R) -> anyhow::Result<(R, String)> {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        anyhow::ensure!(reader.read_line(&mut text)? > 0, "the swarm ended early");
        Ok((reader, text.trim().to_string()))
    })
    .await?
}

/// Waits for a line on stdin (or its end).
async fn stdin_line() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut text = String::new();
        let _ = std::io::stdin().read_line(&mut text);
    })
    .await;
}

pub async fn mqtt(devices: usize, reports: usize) -> anyhow::Result<MqttReport> {
    let rss_before = super::rss_bytes().unwrap_or(0);
    let cluster = local_cluster(ClusterOptions {
        gateways: 1,
        users: 1,
        mqtt: true,
        limits: UNLIMITED,
        ..ClusterOptions::default()
    })
    .await?;
    let owner = admin(&cluster, false).await?;
    let service = cluster.gateways[0].service.clone();
    let mut codes = Vec::with_capacity(devices);
    let mut front = String::new();
    for _ in 0..devices {
        let setup = owner.mqtt_setup_code().await?;
        front = setup.broker;
        codes.push(setup.code);
    }
    let dir = tempfile::tempdir()?;
    let codes_path = dir.path().join("codes");
    std::fs::write(&codes_path, codes.join("\n"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench", "mqtt-swarm", "--front", &front, "--reports"])
        .arg(reports.to_string())
        .arg("--codes")
        .arg(&codes_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let from = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    );
    let mut to = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let (from, onboarded) = line(from).await?;
    let mut parts = onboarded.split_whitespace().skip(1);
    let onboarded_count: usize = parts.next().unwrap_or("0").parse()?;
    let onboard_s: f64 = parts.next().unwrap_or("0").parse()?;
    let (from, connected) = line(from).await?;
    anyhow::ensure!(
        connected.starts_with("connected"),
        "the swarm did not connect"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = super::rss_bytes().unwrap_or(0);

    let (accepted0, refused0) = service.mqtt_reports().unwrap_or_default();
    writeln!(to, "go")?;
    let started = Instant::now();
    let (from, sent) = line(from).await?;
    let sent: u64 = sent.split_whitespace().nth(1).unwrap_or("0").parse()?;
    // Until every report is accepted or refused, or nothing moves for 2 s.
    let (mut last, mut last_change) = ((0, 0), Instant::now());
    let finished = loop {
        let (a, r) = service.mqtt_reports().unwrap_or_default();
        let now = (a - accepted0, r - refused0);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        if now.0 + now.1 >= sent || last_change.elapsed() > Duration::from_secs(2) {
            break last_change;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let accept_s = finished.duration_since(started).as_secs_f64();
    let rss_after = super::rss_bytes().unwrap_or(0);
    drop(to);
    drop(from);
    let _ = child.wait();
    cluster.shutdown().await?;
    Ok(MqttReport {
        devices,
        onboarded: onboarded_count,
        onboard_s,
        reports_sent: sent,
        accepted: last.0,
        refused: last.1,
        accept_s,
        accepted_per_s: last.0 as f64 / accept_s.max(1e-9),
        rss_before_bytes: rss_before,
        rss_connected_bytes: rss_connected,
        rss_after_load_bytes: rss_after,
    })
}

/// The devices' side, in the child process: onboard all, connect all,
/// wait for "go" on stdin, publish, report.
pub async fn swarm(front: SocketAddr, codes: Vec<String>, reports: usize) -> anyhow::Result<()> {
    let topics = Topics::new("itc").ok_or_else(|| anyhow::anyhow!("base topic"))?;
    let started = Instant::now();
    let lamps: Vec<(SimDevice, String)> = futures_util::stream::iter(codes.into_iter().enumerate())
        .map(|(i, code)| {
            let topics = topics.clone();
            async move {
                let key = Keypair::from_seed(Hash::digest(format!("bench-{i}").as_bytes()).0);
                let id = DeviceId::new(format!("mqtt:bench-{i}")).ok()?;
                let lamp = SimDevice::new(key, id, Model::new("bench-bulb").ok()?);
                let answer = lamp
                    .onboard(
                        front,
                        &topics,
                        &format!("bench-{i}"),
                        &code,
                        Duration::from_secs(120),
                    )
                    .await
                    .ok()?;
                match answer {
                    Onboarded::Ok { password, .. } => Some((lamp, password)),
                    Onboarded::Refused { reason } => {
                        eprintln!("bench-{i} refused: {reason}");
                        None
                    }
                }
            }
        })
        .buffer_unordered(64)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    println!(
        "onboarded {} {}",
        lamps.len(),
        started.elapsed().as_secs_f64()
    );

    // Connect every lamp; pre-sign its reports.
    let mut clients = Vec::new();
    for (lamp, password) in &lamps {
        let mut options = MqttOptions::new(lamp.id.as_str(), front.ip().to_string(), front.port());
        options.set_credentials(lamp.id.as_str(), password);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_inflight(64);
        let (client, mut events) = AsyncClient::new(options, reports + 8);
        let (up, is_up) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut up = Some(up);
            while let Ok(event) = events.poll().await {
                if let (Event::Incoming(Packet::ConnAck(_)), Some(up)) = (event, up.take()) {
                    let _ = up.send(());
                }
            }
        });
        let _ = is_up.await;
        let state = state_json(&lamp.state);
        let signed: Vec<Vec<u8>> = (1..=reports as u64)
            .map(|seq| {
                serde_json::to_vec(&Report::sign(&lamp.key, &lamp.id, seq, &state))
                    .unwrap_or_default()
            })
            .collect();
        clients.push((client, topics.device_report(lamp.id.as_str()), signed));
    }
    println!("connected {}", clients.len());
    stdin_line().await;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    for (client, topic, signed) in clients.clone() {
        sent += signed.len() as u64;
        tasks.push(tokio::spawn(async move {
            for report in signed {
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, report)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    println!("sent {sent} {}", started.elapsed().as_secs_f64());
    // Stay connected until the parent closes stdin.
    stdin_line().await;
    Ok(())
}
