//! `itc-gateway bench api`: signed control requests against a gateway of a
//! four-gateway loopback cluster, through real HTTP, measuring requests per
//! second and the time from sending the REST call to receiving the answer,
//! which the gateway sends after the simulated bulb has taken the new
//! state. `bench rss` measures one gateway's memory with many bulbs.
//!
//! The per-key rate limit is lifted for the run (the bench is one user
//! hammering on purpose); everything else — signature, replay guard,
//! authorisation against committed chain state — is as in production.

use std::time::{Duration, Instant};

use itc_bridges::light::LightCommand;
use itc_chain::crypto::Keypair;
use itc_chain::types::DeviceId;
use itc_web::client::Client;
use itc_web::Limits;
use serde::Serialize;

use crate::app::{local_cluster, ClusterOptions, LocalCluster};

pub(crate) const UNLIMITED: Limits = Limits {
    per_second: 1_000_000_000,
    burst: 1_000_000_000,
};

#[derive(Debug, Serialize)]
pub struct ApiReport {
    /// `sim` (simulated bulbs in the gateway) or `zigbee` (bulbs behind
    /// the simulated Z-Stack stick, over a PTY, each command awaited to
    /// its delivery confirm).
    pub bridge: &'static str,
    pub seconds: u64,
    pub concurrency: usize,
    pub lights: usize,
    pub requests: usize,
    pub errors: usize,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// users[0], made administrator of gateway 0 with its claim code.
pub(crate) async fn admin(cluster: &LocalCluster, adopt: bool) -> anyhow::Result<Client> {
    let gateway = &cluster.gateways[0];
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    let code = gateway
        .claim_code
        .clone()
        .ok_or_else(|| anyhow::anyhow!("a new gateway has a claim code"))?;
    owner.claim_gateway(&code, adopt).await?;
    Ok(owner)
}

/// Claims gateway 0 and `count` of its lights for users[0]: Zigbee bulbs
/// are paired (and adopted), simulated ones claimed one by one.
async fn claim_lights(
    cluster: &LocalCluster,
    count: usize,
    zigbee: bool,
) -> anyhow::Result<(Client, Vec<DeviceId>)> {
    let owner = admin(cluster, zigbee).await?;
    if zigbee {
        owner.permit_join(60).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let lights = loop {
        let lights = owner.lights().await?;
        if lights.len() >= count {
            break lights;
        }
        anyhow::ensure!(Instant::now() < deadline, "bulbs were not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut ids = Vec::new();
    for light in lights.iter().take(count) {
        let id = DeviceId::new(light.id.as_str())?;
        if light.owner.is_none() {
            let outcome = owner.claim_device(&id).await?;
            anyhow::ensure!(outcome.committed, "claiming {id} did not commit");
        }
        ids.push(id);
    }
    Ok((owner, ids))
}

pub async fn api(
    seconds: u64,
    concurrency: usize,
    lights: usize,
    zigbee: bool,
) -> anyhow::Result<ApiReport> {
    let lights = lights.max(1);
    let cluster = local_cluster(ClusterOptions {
        users: 1,
        bulbs: if zigbee { 0 } else { lights },
        zigbee_bulbs: if zigbee { lights } else { 0 },
        limits: UNLIMITED,
        ..ClusterOptions::default()
    })
    .await?;
    let (owner, ids) = claim_lights(&cluster, lights, zigbee).await?;
    eprintln!(
        "{} lights claimed; {concurrency} callers for {seconds} s…",
        ids.len()
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let owner = owner.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut k = worker;
            while Instant::now() < end {
                let command = LightCommand {
                    brightness: Some(1 + (k % 254) as u8),
                    ..LightCommand::default()
                };
                let sent = Instant::now();
                match owner.set_light(&ids[k % ids.len()], &command).await {
                    Ok(light) if light.target.brightness == command.brightness.unwrap_or(0) => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1_000.0)
                    }
                    _ => errors += 1,
                }
                k += concurrency;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mine, failed) = task.await?;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    cluster.shutdown().await?;
    Ok(ApiReport {
        bridge: if zigbee { "zigbee" } else { "sim" },
        seconds,
        concurrency,
        lights: ids.len(),
        requests: latencies.len(),
        errors,
        requests_per_s: latencies.len() as f64 / elapsed,
        p50_ms: super::quantile(&latencies, 0.50),
        p99_ms: super::quantile(&latencies, 0.99),
    })
}

#[derive(Debug, Serialize)]
pub struct RssReport {
    pub bulbs: usize,
    pub registered: usize,
    pub rss_before_bytes: u64,
    pub rss_bytes: u64,
}

/// One gateway (a one-validator chain) with `bulbs` simulated bulbs, all
/// registered on chain, its administrator claimed: this process's RSS.
pub async fn rss(bulbs: usize) -> anyhow::Result<RssReport> {
    let rss_before = super::rss_bytes().unwrap_or(0);
    let cluster = local_cluster(ClusterOptions {
        gateways: 1,
        users: 1,
        bulbs,
        limits: UNLIMITED,
        ..ClusterOptions::default()
    })
    .await?;
    let owner = admin(&cluster, false).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let devices = loop {
        let devices = owner.devices().await?;
        if devices.iter().filter(|d| d.registered).count() >= bulbs {
            break devices;
        }
        anyhow::ensure!(Instant::now() < deadline, "bulbs were not all registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let registered = devices.iter().filter(|d| d.registered).count();
    let rss = super::rss_bytes().unwrap_or(0);
    cluster.shutdown().await?;
    Ok(RssReport {
        bulbs,
        registered,
        rss_before_bytes: rss_before,
        rss_bytes: rss,
    })
}
