//! `itc-gateway bench dag`: the DAG side chain on a loopback cluster of
//! real gateways (PBFT over Noise, sqlite), in two phases.
//!
//! - **Ingest**: transactions issued beforehand (signed by registered
//!   devices, with level-1 work, forming a valid tangle) are handed to one
//!   gateway as fast as it takes them. Each is checked there — the
//!   issuer's key from chain state, the Ed25519 signature, the work — and
//!   attached; the figure is what that gateway took per second, while the
//!   others check every one again from gossip on the same two cores.
//! - **Confirmation**: devices issue transactions live at an offered rate,
//!   spread over the gateways, each on parents its gateway suggests; the
//!   latency is from handing one to its gateway to that gateway confirming
//!   it (a block anchoring its past cone committed and processed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use itc_chain::codec::{BoundedVec, Bytes};
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::dag::{DagBody, DagKind, DagTx, Tangle, TangleConfig};
use itc_chain::types::DeviceId;
use serde::Serialize;

use super::quantile;
use crate::app::{local_cluster, ClusterOptions};
use crate::dag::DagConfig;
use crate::service::now_ms;

#[derive(Debug, Serialize)]
pub struct DagReport {
    pub nodes: usize,
    pub devices: usize,
    pub ingest_txs: usize,
    /// Taken per second by the gateway they were handed to.
    pub ingest_tx_per_s: f64,
    /// All `ingest_txs` confirmed by every gateway, per second from the
    /// first hand-over.
    pub ingest_confirmed_tx_per_s: f64,
    pub offered_tx_per_s: u64,
    pub seconds: u64,
    pub confirmed: usize,
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub confirm_max_ms: f64,
}

fn reading(device: &DeviceId, key: &Keypair, parents: [Hash; 2], i: u64) -> DagTx {
    let body = DagBody {
        issuer: device.clone(),
        kind: DagKind::Reading {
            data: Bytes::new(i.to_le_bytes().to_vec()).unwrap_or_default(),
        },
        parents: BoundedVec::new(parents.to_vec()).unwrap_or_else(|_| unreachable!()),
        time_ms: now_ms(),
        level: 1,
    };
    DagTx::issue(key, body, i << 20)
}

pub async fn dag(
    nodes: usize,
    devices: usize,
    ingest: usize,
    seconds: u64,
    rate: u64,
) -> anyhow::Result<DagReport> {
    let config = DagConfig {
        tangle: TangleConfig {
            // The bench's devices talk far more than bulbs do.
            per_issuer: 100_000,
            ..TangleConfig::default()
        },
        ..DagConfig::default()
    };
    let cluster = local_cluster(ClusterOptions {
        gateways: nodes,
        dag: config.clone(),
        ..ClusterOptions::default()
    })
    .await?;
    let owner = Keypair::from_seed(*cluster.users[0].seed());
    let issuers: Vec<(DeviceId, Keypair)> = (0..devices)
        .map(|i| {
            let mut seed = [0x5a; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (
                DeviceId::new(format!("mqtt:bench-{i}")),
                Keypair::from_seed(seed),
            )
        })
        .map(|(id, key)| Ok((id?, key)))
        .collect::<Result<_, itc_chain::codec::BoundError>>()?;
    cluster
        .register_devices(0, &issuers, &owner)
        .await
        .map_err(anyhow::Error::msg)?;

    tracing::info!(devices, "bench devices registered");
    // Ingest: a valid tangle issued beforehand, handed to gateway 0.
    let issued = tokio::task::spawn_blocking({
        let issuers = issuers.clone();
        let tangle_config = config.tangle.clone();
        move || {
            let mut local = Tangle::new(tangle_config);
            let mut txs = Vec::with_capacity(ingest);
            for i in 0..ingest as u64 {
                let (device, key) = &issuers[i as usize % issuers.len()];
                let tx = reading(
                    device,
                    key,
                    local.select_parents(i.wrapping_mul(0x9e37_79b9)),
                    i,
                );
                if local.handle_tx(tx.clone(), &key.public(), now_ms()).is_ok() {
                    txs.push(tx);
                }
            }
            txs
        }
    })
    .await?;
    let streams: Vec<_> = cluster
        .gateways
        .iter()
        .map(|g| g.dag.confirmations())
        .collect();
    let started = Instant::now();
    for chunk in issued.chunks(256) {
        let outcome = cluster.gateways[0].dag.submit(chunk.to_vec()).await?;
        anyhow::ensure!(
            outcome.iter().all(Result::is_ok),
            "a bench transaction was refused: {:?}",
            outcome.iter().find(|r| r.is_err())
        );
    }
    let ingest_tx_per_s = issued.len() as f64 / started.elapsed().as_secs_f64();
    tracing::info!(ingest_tx_per_s, "ingest handed over");
    // Every gateway's confirmations are read at once, so none falls behind
    // its channel while another is read.
    let total = issued.len();
    let readers = streams.into_iter().enumerate().map(|(g, mut stream)| {
        tokio::spawn(async move {
            let mut left = total;
            while left > 0 {
                let batch = tokio::time::timeout(Duration::from_secs(120), stream.recv())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "gateway {g} did not confirm {left} of the ingested transactions"
                        )
                    })??;
                left = left.saturating_sub(batch.len());
            }
            anyhow::Ok(())
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        if let Err(error) = reader.await? {
            for (g, gateway) in cluster.gateways.iter().enumerate() {
                let status = gateway.node.status();
                let (_, dag_height) = gateway.node.store.dag_load().await?;
                tracing::error!(
                    g,
                    height = status.height,
                    view = status.view,
                    changing_view = status.changing_view,
                    pending = status.pending,
                    primary = status.primary,
                    dag_height,
                    "where each gateway is"
                );
            }
            return Err(error);
        }
    }
    let ingest_confirmed_tx_per_s = issued.len() as f64 / started.elapsed().as_secs_f64();

    // Confirmation latency at an offered rate, spread over the gateways.
    // Each transaction is timed at the gateway it was handed to.
    let sent: Arc<Mutex<HashMap<Hash, (usize, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut listeners = Vec::new();
    for (g, gateway) in cluster.gateways.iter().enumerate() {
        let mut stream = gateway.dag.confirmations();
        let (sent, latencies) = (sent.clone(), latencies.clone());
        listeners.push(tokio::spawn(async move {
            while let Ok(batch) = stream.recv().await {
                let now = Instant::now();
                let Ok(mut sent) = sent.lock() else { return };
                let Ok(mut latencies) = latencies.lock() else {
                    return;
                };
                for c in batch.iter() {
                    if let Some(&(at_gateway, at)) = sent.get(&c.id) {
                        if at_gateway == g {
                            sent.remove(&c.id);
                            latencies.push((now - at).as_secs_f64() * 1_000.0);
                        }
                    }
                }
            }
        }));
    }
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let mut handed = 0u64;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let g = i as usize % cluster.gateways.len();
        let gateway = &cluster.gateways[g];
        let (device, key) = &issuers[(i as usize * 7) % issuers.len()];
        let parents = gateway.dag.parents().await?;
        let tx = reading(device, key, parents, (1 << 40) + i);
        let id = tx.id();
        if let Ok(mut sent) = sent.lock() {
            sent.insert(id, (g, Instant::now()));
        }
        // The gateway's answer is not awaited in line: the next device
        // does not wait for this one.
        let dag = gateway.dag.clone();
        tokio::spawn(async move { dag.submit(vec![tx]).await });
        handed += 1;
    }
    // Stragglers get a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.lock().map(|s| !s.is_empty()).unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for listener in listeners {
        listener.abort();
    }
    let mut samples = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    samples.sort_by(f64::total_cmp);
    cluster.shutdown().await?;
    tracing::info!(handed, confirmed = samples.len(), "bench dag done");
    Ok(DagReport {
        nodes,
        devices,
        ingest_txs: issued.len(),
        ingest_tx_per_s,
        ingest_confirmed_tx_per_s,
        offered_tx_per_s: rate,
        seconds,
        confirmed: samples.len(),
        confirm_p50_ms: quantile(&samples, 0.5),
        confirm_p99_ms: quantile(&samples, 0.99),
        confirm_max_ms: samples.last().copied().unwrap_or(f64::NAN),
    })
}
