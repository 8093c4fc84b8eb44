//! `itc-gateway bench light-sync`: how long a light client takes to become
//! current from far behind, skipping and header by header, against a
//! stand-in gateway that serves a pre-made certified chain over real HTTP on
//! the endpoints the light client reads. The tests use the stand-in too,
//! with forged variants of the chain.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use itc_chain::block::{CommitCertificate, Header};
use itc_chain::codec::encode;
use itc_chain::validators::ValidatorSet;
use itc_web::{BlockDetail, BlockSummary, ChainStatus, ValidatorSetView, ValidatorView};
use serde::{Deserialize, Serialize};

use crate::light::{sync_with, HeaderStore, Mode};

pub type Chain = Arc<Vec<(Header, CommitCertificate)>>;

/// What the stand-in serves: the chain, and the validator sets it names
/// beyond the genesis's.
#[derive(Clone)]
struct Served {
    chain: Chain,
    sets: Arc<Vec<ValidatorSet>>,
}

#[derive(Deserialize)]
struct Range {
    from: u64,
    limit: u64,
}

async fn status(State(Served { chain, .. }): State<Served>) -> Json<ChainStatus> {
    let tip = chain.last().map(|(header, _)| header);
    Json(ChainStatus {
        height: tip.map_or(0, |h| h.height),
        head: tip.map(|h| h.hash().to_string()).unwrap_or_default(),
        view: 0,
        changing_view: false,
        pending: 0,
    })
}

async fn blocks(
    State(Served { chain, .. }): State<Served>,
    Query(range): Query<Range>,
) -> Json<Vec<BlockSummary>> {
    let end = range.from.saturating_add(range.limit);
    Json(
        chain
            .iter()
            .filter(|(h, _)| h.height >= range.from && h.height < end)
            .map(|(header, cert)| summary(header, cert))
            .collect(),
    )
}

async fn block(
    State(Served { chain, .. }): State<Served>,
    Path(height): Path<u64>,
) -> Result<Json<BlockDetail>, StatusCode> {
    let (header, cert) = chain
        .iter()
        .find(|(h, _)| h.height == height)
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(BlockDetail {
        summary: summary(header, cert),
        transactions: Vec::new(),
    }))
}

fn summary(header: &Header, cert: &CommitCertificate) -> BlockSummary {
    BlockSummary {
        height: header.height,
        hash: header.hash().to_string(),
        time_ms: header.time_ms,
        header: hex::encode(encode(header)),
        certificate: Some(hex::encode(encode(cert))),
    }
}

async fn validator_set(
    State(Served { sets, .. }): State<Served>,
    Path(hash): Path<String>,
) -> Result<Json<ValidatorSetView>, StatusCode> {
    let set = sets
        .iter()
        .find(|set| set.hash().to_string() == hash)
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(ValidatorSetView {
        hash,
        validators: set
            .validators()
            .iter()
            .map(|v| ValidatorView {
                key: v.key.to_string(),
                addr: v.addr.to_string(),
            })
            .collect(),
        encoded: hex::encode(encode(set)),
    }))
}

/// Serves `chain` (headers after the genesis, in order) on loopback;
/// returns its base URL.
pub async fn serve(chain: Chain) -> std::io::Result<String> {
    serve_with_sets(chain, Vec::new()).await
}

/// [`serve`], also serving `sets` (those the chain changes to).
pub async fn serve_with_sets(chain: Chain, sets: Vec<ValidatorSet>) -> std::io::Result<String> {
    let app = Router::new()
        .route("/api/v1/chain/status", get(status))
        .route("/api/v1/chain/blocks", get(blocks))
        .route("/api/v1/chain/blocks/{height}", get(block))
        .route("/api/v1/chain/validator-sets/{hash}", get(validator_set))
        .with_state(Served {
            chain,
            sets: Arc::new(sets),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// What `light-sync` measured.
#[derive(Debug, Serialize)]
pub struct LightSyncReport {
    pub behind: u64,
    /// Making and certifying the chain (not part of the sync).
    pub chain_build_s: f64,
    /// From the genesis to the tip by skipping: headers fetched and time.
    pub skipping_fetched: u64,
    pub skipping_ms: f64,
    /// Every header in order, verified and stored.
    pub sequential_s: f64,
    pub sequential_headers_per_s: f64,
    /// The sequential store's sqlite file size (after a WAL checkpoint)
    /// divided by the headers in it.
    pub stored_bytes_per_header: f64,
}

/// Syncs a light client from `behind` blocks behind, both ways.
pub async fn light_sync(behind: usize) -> anyhow::Result<LightSyncReport> {
    let work = itc_chain::testkit::Workload::new(4, 1, 0x100_000);
    let started = Instant::now();
    let (_, headers) = work
        .certified_chain(behind)
        .ok_or_else(|| anyhow::anyhow!("the workload could not build a chain"))?;
    let chain_build_s = started.elapsed().as_secs_f64();
    let url = serve(Arc::new(headers)).await?;
    let urls = [url];
    let dir = tempfile::tempdir()?;

    // The genesis is old by the wall clock, so the trusting period is set
    // wide; the benchmark measures the work, not the clock rule.
    let skipping = HeaderStore::open(&dir.path().join("skipping.sqlite")).await?;
    let started = Instant::now();
    let skip = sync_with(
        &urls,
        &skipping,
        &work.genesis,
        Mode::Skipping {
            trusting_period_ms: u64::MAX / 2,
        },
        |_, _| {},
    )
    .await?;
    let skipping_ms = started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(skip.to == behind as u64, "skipping stopped at {}", skip.to);

    let path = dir.path().join("sequential.sqlite");
    let sequential = HeaderStore::open(&path).await?;
    let started = Instant::now();
    let seq = sync_with(
        &urls,
        &sequential,
        &work.genesis,
        Mode::Sequential,
        |_, _| {},
    )
    .await?;
    let sequential_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(seq.to == behind as u64, "sequential stopped at {}", seq.to);
    let count = sequential.count().await?;
    sequential.close().await;
    let bytes = std::fs::metadata(&path)?.len();

    Ok(LightSyncReport {
        behind: behind as u64,
        chain_build_s,
        skipping_fetched: skip.fetched,
        skipping_ms,
        sequential_s,
        sequential_headers_per_s: behind as f64 / sequential_s,
        stored_bytes_per_header: bytes as f64 / count.max(1) as f64,
    })
}
