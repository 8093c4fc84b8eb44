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
    // Committed at gateway 0; wait until gateway 1 has it too.
    let other = Client::new(cluster.gateways[1].url(), Keypair::from_seed([3; 32]));
    for _ in 0..400 {
        if other.status().await.unwrap().height > report.to {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    // The same proof as a device reads it (`portable`), checked by the
    // device's verifier against the header it came with.
    let view = owner.state_proof(&account).await.unwrap();
    let header: itc_chain::block::Header =
        itc_chain::codec::decode(&hex::decode(&view.block.header).unwrap()).unwrap();
    let portable =
        itc_verify::wire::StateProof::decode(&hex::decode(&view.portable).unwrap()).unwrap();
    assert_eq!(portable.key, itc_chain::codec::encode(&account));
    portable
        .proof
        .verify::<itc_verify::Software>(
            &header.state_root.0,
            &portable.key,
            portable.value.as_deref(),
        )
        .unwrap();
    // The gateway serves the sets the chain named, by hash; an unknown
    // hash is a 404.
    let genesis_set =
        itc_chain::validators::ValidatorSet::new(cluster.genesis.validators.clone()).unwrap();
    let served = owner.validator_set(&genesis_set.hash()).await.unwrap();
    assert_eq!(
        served.encoded,
        hex::encode(itc_chain::codec::encode(&genesis_set))
    );
    assert_eq!(served.validators.len(), 4);
    match owner
        .validator_set(&itc_chain::crypto::Hash::digest(b"no such set"))
        .await
    {
        Err(itc_web::client::ClientError::Api { status, .. }) => assert_eq!(status.as_u16(), 404),
        other => panic!("{other:?}"),
    }
    cluster.shutdown().await.unwrap();
}

/// A certified chain of `blocks` empty blocks over the workload's genesis.
fn certified_chain(
    work: &itc_chain::testkit::Workload,
    blocks: usize,
) -> itc_gateway::bench::light::Chain {
    std::sync::Arc::new(work.certified_chain(blocks).unwrap().1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_headers_killed_resumed_and_a_forging_gateway_left() {
    let work = itc_chain::testkit::Workload::new(4, 1, 0x5be);
    let chain = certified_chain(&work, 10_000);
    let honest = itc_gateway::bench::light::serve(chain.clone())
        .await
        .unwrap();
    // The forger serves the same chain with one header's state root
    // changed (say, to hand someone a device): its certificate no longer
    // matches.
    let mut forged: Vec<_> = chain.iter().cloned().collect();
    forged[4_321].0.state_root = itc_chain::crypto::Hash::digest(b"a forged state");
    let forger = itc_gateway::bench::light::serve(std::sync::Arc::new(forged))
        .await
        .unwrap();

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

/// A validator joins at the first epoch boundary: a gateway that serves
/// the new set carries the light client across; one that does not is
/// named, and the client keeps what it verified before the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_across_a_validator_set_change() {
    let work = itc_chain::testkit::Workload::new(4, 1, 0x5e7);
    let newcomer = Keypair::from_seed([42; 32]);
    let (_, headers) = work.certified_chain_adding(130, &newcomer).unwrap();
    let chain = std::sync::Arc::new(headers);
    let old = itc_chain::validators::ValidatorSet::new(work.genesis.validators.clone()).unwrap();
    let new = old
        .with(itc_chain::validators::Validator {
            key: newcomer.public(),
            addr: itc_chain::codec::Text::new("127.0.0.1:7999").unwrap(),
        })
        .unwrap();
    let silent = itc_gateway::bench::light::serve(chain.clone())
        .await
        .unwrap();
    let serving = itc_gateway::bench::light::serve_with_sets(chain.clone(), vec![new.clone()])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = HeaderStore::open(&dir.path().join("headers.sqlite"))
        .await
        .unwrap();
    match light::sync(
        std::slice::from_ref(&silent),
        &store,
        &work.genesis,
        |_, _| {},
    )
    .await
    {
        Err(light::LightSyncError::NoGoodSource(refused)) => {
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, silent);
            assert!(
                refused[0].1.contains("no validator set"),
                "{}",
                refused[0].1
            );
        }
        other => panic!("expected the gateway to be left, got {other:?}"),
    }
    assert_eq!(store.tip().await.unwrap().unwrap().0.height, 100);

    let report = light::sync(&[serving], &store, &work.genesis, |_, _| {})
        .await
        .unwrap();
    assert_eq!((report.from, report.to), (100, 130));
    let (tip, set) = store.tip().await.unwrap().unwrap();
    assert_eq!(tip.hash(), chain[129].0.hash());
    assert_eq!(set, new);
}
