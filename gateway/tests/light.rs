//! A light client syncing from gateways over their REST API: it verifies
//! every header, stores them in its own sqlite, resumes where it stopped,
//! leaves a gateway that is down, and checks who owns a device against the
//! headers it verified.

use std::time::Duration;

use itc_chain::crypto::Keypair;
use itc_chain::types::DeviceId;
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_gateway::light::{self, HeaderStore};
use itc_web::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_resume_and_verify_an_owner() {
    let cluster = local_cluster(ClusterOptions {
        users: 1,
        bulbs: 3,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let gateway = &cluster.gateways[0];
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    owner
        .claim_gateway(gateway.claim_code.as_deref().unwrap(), false)
        .await
        .unwrap();
    let mut lights = Vec::new();
    for _ in 0..200 {
        lights = owner.lights().await.unwrap();
        if lights.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = DeviceId::new(lights[0].id.as_str()).unwrap();
    owner.claim_device(&first).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = HeaderStore::open(&dir.path().join("headers.sqlite"))
        .await
        .unwrap();
    // The first source is down: named, left, and the next one serves.
    let urls = vec!["http://127.0.0.1:9".to_string(), gateway.url()];
    let report = light::sync(&urls, &store, &cluster.genesis, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, "http://127.0.0.1:9");
    assert!(report.to >= 2, "{report:?}");
    assert_eq!(store.count().await.unwrap(), report.to + 1);

    // The owner, proven against the stored headers (after catching up).
    let more = [DeviceId::new(lights[1].id.as_str()).unwrap()];
    owner.claim_device(&more[0]).await.unwrap();
    let again = light::sync(
        &[cluster.gateways[1].url()],
        &store,
        &cluster.genesis,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(again.from, report.to, "resumed from the stored tip");
    assert!(again.to > report.to);
    // Gateway 1 proves at its own tip; sync once more from it to be sure
    // the proof's header is stored.
    light::sync(
        &[cluster.gateways[1].url()],
        &store,
        &cluster.genesis,
        |_, _| {},
    )
    .await
    .unwrap();
    let proven = light::verify_owner(&cluster.gateways[1].url(), &store, &more[0])
        .await
        .unwrap();
    assert_eq!(proven, Some(owner.public()));
    let unowned = DeviceId::new(lights[2].id.as_str()).unwrap();
    assert_eq!(
        light::verify_owner(&cluster.gateways[1].url(), &store, &unowned)
            .await
            .unwrap(),
        None
    );
    // Any entry: the owner's account (balance and nonce), proven.
    let account = itc_chain::state::StateKey::Account {
        account: owner.public(),
    };
    match light::verify_entry(&cluster.gateways[1].url(), &store, &account)
        .await
        .unwrap()
    {
        Some(itc_chain::state::StateValue::Account(a)) => assert_eq!(a.nonce, 2),
        other => panic!("{other:?}"),
    }
    cluster.shutdown().await.unwrap();
}

mod mock {
    //! A gateway stand-in serving a pre-made certified chain (or a forged
    //! variant of it) on the two endpoints the light client reads.

    use std::sync::Arc;

    use axum::extract::{Path, Query, State};
    use axum::routing::get;
    use axum::{Json, Router};
    use itc_chain::block::{CommitCertificate, Header};
    use itc_chain::codec::encode;
    use itc_web::{BlockDetail, BlockSummary, ChainStatus};
    use serde::Deserialize;

    pub type Chain = Arc<Vec<(Header, CommitCertificate)>>;

    #[derive(Deserialize)]
    struct Range {
        from: u64,
        limit: u64,
    }

    async fn status(State(chain): State<Chain>) -> Json<ChainStatus> {
        let tip = &chain.last().unwrap().0;
        Json(ChainStatus {
            height: tip.height,
            head: tip.hash().to_string(),
            view: 0,
            changing_view: false,
            pending: 0,
        })
    }

    async fn blocks(
        State(chain): State<Chain>,
        Query(range): Query<Range>,
    ) -> Json<Vec<BlockSummary>> {
        Json(
            chain
                .iter()
                .filter(|(h, _)| h.height >= range.from && h.height < range.from + range.limit)
                .map(|(header, cert)| summary(header, cert))
                .collect(),
        )
    }

    async fn block(State(chain): State<Chain>, Path(height): Path<u64>) -> Json<BlockDetail> {
        let (header, cert) = &chain[height as usize - 1];
        Json(BlockDetail {
            summary: summary(header, cert),
            transactions: Vec::new(),
        })
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

    /// Serves `chain` on loopback; returns its base URL.
    pub async fn serve(chain: Chain) -> String {
        let app = Router::new()
            .route("/api/v1/chain/status", get(status))
            .route("/api/v1/chain/blocks", get(blocks))
            .route("/api/v1/chain/blocks/{height}", get(block))
            .with_state(chain);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

/// A certified chain of `blocks` empty blocks over the workload's genesis.
fn certified_chain(work: &itc_chain::testkit::Workload, blocks: usize) -> mock::Chain {
    std::sync::Arc::new(work.certified_chain(blocks).unwrap().1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_headers_killed_resumed_and_a_forging_gateway_left() {
    let work = itc_chain::testkit::Workload::new(4, 1, 0x5be);
    let chain = certified_chain(&work, 10_000);
    let honest = mock::serve(chain.clone()).await;
    // The forger serves the same chain with one header's state root
    // changed (say, to hand someone a device): its certificate no longer
    // matches.
    let mut forged: Vec<_> = chain.iter().cloned().collect();
    forged[4_321].0.state_root = itc_chain::crypto::Hash::digest(b"a forged state");
    let forger = mock::serve(std::sync::Arc::new(forged)).await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    // Killed part way: the task is aborted once a few batches are stored.
    {
        let store = HeaderStore::open(&path).await.unwrap();
        let genesis = work.genesis.clone();
        let url = honest.clone();
        let task =
            tokio::spawn(async move { light::sync(&[url], &store, &genesis, |_, _| {}).await });
        let watcher = HeaderStore::open(&path).await.unwrap();
        while watcher.count().await.unwrap() < 2_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        let _ = task.await;
    }
    // Resumed, first from the forger: it is named and left at the forged
    // height; the honest gateway finishes the sync.
    let store = HeaderStore::open(&path).await.unwrap();
    let stored = store.count().await.unwrap();
    assert!(stored > 1 && stored < 10_001, "{stored}");
    let honest_url = honest.clone();
    let report = light::sync(&[forger.clone(), honest], &store, &work.genesis, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.from, stored - 1, "resumed at the stored tip");
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, forger);
    assert!(
        report.refused[0].1.contains("height 4322"),
        "{}",
        report.refused[0].1
    );
    assert_eq!(report.to, 10_000);
    // The same result as an uninterrupted sync: the same tip, every header.
    let (tip, _) = store.tip().await.unwrap().unwrap();
    assert_eq!(tip.hash(), chain[9_999].0.hash());
    let mut missing = Vec::new();
    for h in 0..=10_000u64 {
        if store.header(h).await.unwrap().is_none() {
            missing.push(h);
        }
    }
    assert!(missing.is_empty(), "missing {missing:?}");
    assert_eq!(store.count().await.unwrap(), 10_001);
    assert_eq!(
        store.header(4_322).await.unwrap().unwrap().hash(),
        chain[4_321].0.hash()
    );

    // Skipping: from the genesis straight to height 10,000, vouched for
    // by the trusted set; two headers stored, the same tip.
    let skipping = HeaderStore::open(&dir.path().join("skipping.sqlite"))
        .await
        .unwrap();
    let report = light::sync_with(
        &[honest_url],
        &skipping,
        &work.genesis,
        light::Mode::Skipping {
            trusting_period_ms: u64::MAX / 2,
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((report.to, report.fetched), (10_000, 1));
    assert_eq!(skipping.count().await.unwrap(), 2);
    assert_eq!(
        skipping.tip().await.unwrap().unwrap().0.hash(),
        chain[9_999].0.hash()
    );
}
