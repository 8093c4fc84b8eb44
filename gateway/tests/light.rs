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
    cluster.shutdown().await.unwrap();
}
