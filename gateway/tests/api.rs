//! The REST API against four gateways on loopback (PBFT among them, sqlite
//! stores, simulated bulbs), through a real HTTP client. Requests are
//! signed by `itc_web::client`, the code the CLI uses.

use std::time::Duration;

use itc_bridges::light::{Color, LightCommand};
use itc_chain::codec::decode;
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::merkle::InclusionProof;
use itc_chain::state::StateProof;
use itc_chain::types::{DeviceId, Rights};
use itc_chain::validators::ValidatorSet;
use itc_chain::{CommitCertificate, Header};
use itc_gateway::app::{local_cluster, ClusterOptions, LocalCluster};
use itc_gateway::service::now_ms;
use itc_web::auth::authorization;
use itc_web::client::{Client, ClientError};
use itc_web::{AccessView, Limits};
use reqwest::{Method, StatusCode};

fn brightness(level: u8) -> LightCommand {
    LightCommand {
        brightness: Some(level),
        ..LightCommand::default()
    }
}

fn status_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> StatusCode {
    result
        .expect_err("the gateway should have refused")
        .status()
        .expect("an HTTP refusal")
}

/// Waits until `client` sees `count` lights (they are registered on chain
/// by the gateway shortly after it starts).
async fn registered_lights(client: &Client, count: usize) -> Vec<DeviceId> {
    for _ in 0..300 {
        let lights = client.lights().await.unwrap();
        if lights.len() >= count {
            return lights
                .iter()
                .map(|l| DeviceId::new(l.id.as_str()).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway's bulbs were not registered");
}

/// Gateway 0 claimed by users[0], who then claims every light on it.
async fn claimed(cluster: &LocalCluster, bulbs: usize) -> (Client, Vec<DeviceId>) {
    let gateway = &cluster.gateways[0];
    let owner = Client::new(gateway.url(), Keypair::from_seed(*cluster.users[0].seed()));
    let code = gateway
        .claim_code
        .clone()
        .expect("a new gateway shows a code");
    assert!(owner.claim_gateway(&code, false).await.unwrap().admin);
    let lights = registered_lights(&owner, bulbs).await;
    for light in &lights {
        let outcome = owner.claim_device(light).await.unwrap();
        assert!(outcome.committed, "{outcome:?}");
    }
    (owner, lights)
}

fn user(cluster: &LocalCluster, index: usize) -> Client {
    Client::new(
        cluster.gateways[0].url(),
        Keypair::from_seed(*cluster.users[index].seed()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_fresh_authorised_requests_are_obeyed() {
    let cluster = local_cluster(ClusterOptions {
        users: 3,
        bulbs: 2,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let (owner, lights) = claimed(&cluster, 2).await;
    let friend = user(&cluster, 1);
    let stranger = user(&cluster, 2);
    let light = &lights[0];
    let path = format!("/api/v1/lights/{light}/state");
    let url = format!("{}{path}", owner.base());
    let body = br#"{"brightness": 50}"#.to_vec();
    let http = reqwest::Client::new();

    // The claim code was for one use only.
    let code = cluster.gateways[0].claim_code.clone().unwrap();
    assert_eq!(
        status_of(stranger.claim_gateway(&code, false).await),
        StatusCode::CONFLICT
    );

    // The owner is obeyed, and the bulb moves.
    let set = owner.set_light(light, &brightness(80)).await.unwrap();
    assert_eq!(set.state.brightness, 80);
    assert_eq!(owner.light(light).await.unwrap().state.brightness, 80);

    // Unsigned.
    let response = http.put(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // Signed by one key, claiming to be another.
    let header = authorization(
        &Keypair::from_seed(*cluster.users[2].seed()),
        "PUT",
        &path,
        "",
        &body,
        now_ms(),
        [1; 16],
    )
    .replace(&stranger.public().to_string(), &owner.public().to_string());
    let response = http
        .put(&url)
        .header("authorization", header)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Stale: signed a minute ago.
    let owner_key = Keypair::from_seed(*cluster.users[0].seed());
    let stale = authorization(
        &owner_key,
        "PUT",
        &path,
        "",
        &body,
        now_ms() - 60_000,
        [2; 16],
    );
    let response = http
        .put(&url)
        .header("authorization", stale)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Replayed: the same signed request twice.
    let fresh = authorization(&owner_key, "PUT", &path, "", &body, now_ms(), [3; 16]);
    for expected in [StatusCode::OK, StatusCode::UNAUTHORIZED] {
        let response = http
            .put(&url)
            .header("authorization", fresh.clone())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }

    // Not the owner, no grant.
    assert_eq!(
        status_of(stranger.set_light(light, &brightness(10)).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_of(stranger.light(light).await),
        StatusCode::FORBIDDEN
    );
    assert!(stranger.lights().await.unwrap().is_empty());

    // Malformed JSON, an out-of-range value, an oversize body.
    let response = owner
        .signed(Method::PUT, &path, b"{\"brightness\": ".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        status_of(owner.set_light(light, &brightness(0)).await),
        StatusCode::BAD_REQUEST
    );
    let response = owner
        .signed(Method::PUT, &path, vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A grant that runs out: obeyed before, refused after.
    let expires = now_ms() + 2_000;
    let outcome = owner
        .share(light, &friend.public(), Rights::CONTROL, expires)
        .await
        .unwrap();
    assert!(outcome.committed);
    let seen = friend.set_light(light, &brightness(120)).await.unwrap();
    assert_eq!(seen.access, AccessView::Grant);
    let grants = owner.grants(light).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].grantee, friend.public().to_string());
    tokio::time::sleep(Duration::from_millis(
        expires.saturating_sub(now_ms()) + 100,
    ))
    .await;
    assert_eq!(
        status_of(friend.set_light(light, &brightness(121)).await),
        StatusCode::FORBIDDEN
    );
    assert!(owner.grants(light).await.unwrap()[0].expired);

    // A grant that is revoked.
    owner
        .share(
            light,
            &friend.public(),
            Rights::CONTROL,
            now_ms() + 3_600_000,
        )
        .await
        .unwrap();
    friend.set_light(light, &brightness(130)).await.unwrap();
    assert!(
        owner
            .revoke(light, &friend.public())
            .await
            .unwrap()
            .committed
    );
    assert_eq!(
        status_of(friend.set_light(light, &brightness(131)).await),
        StatusCode::FORBIDDEN
    );

    // Only the owner may hand the light on; the chain's reason comes back.
    assert_eq!(
        status_of(stranger.transfer(light, &stranger.public()).await),
        StatusCode::FORBIDDEN
    );

    // A transfer moves control as soon as its block commits.
    let outcome = owner.transfer(light, &friend.public()).await.unwrap();
    assert!(outcome.committed);
    let now_theirs = friend.set_light(light, &brightness(200)).await.unwrap();
    assert_eq!(now_theirs.access, AccessView::Owner);
    assert_eq!(
        status_of(owner.set_light(light, &brightness(1)).await),
        StatusCode::FORBIDDEN
    );

    // Another gateway agrees once it has the block: it refuses the old
    // owner a claim consent (it is not its admin) but shows the new owner.
    let proof = Client::new(cluster.gateways[1].url(), Keypair::from_seed([9; 32]));
    let mut owner_there = None;
    for _ in 0..100 {
        owner_there = proof.owner_proof(light).await.unwrap().owner;
        if owner_there.as_deref() == Some(&friend.public().to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(owner_there, Some(friend.public().to_string()));

    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_scenes_events_and_proofs() {
    let cluster = local_cluster(ClusterOptions {
        users: 2,
        bulbs: 3,
        spare_bulbs: 1,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let (owner, lights) = claimed(&cluster, 3).await;
    let stranger = user(&cluster, 1);

    // Live events: subscribe, then change a light.
    let mut events = owner.events().await.unwrap();
    // A stranger's stream says nothing about the owner's lights.
    let mut strangers = stranger.events().await.unwrap();

    // A group, a group command, a scene stored and recalled.
    let group = owner.create_group("living room", &lights).await.unwrap();
    assert_eq!(group.lights.len(), 3);
    assert_eq!(
        status_of(stranger.create_group("mine now", &lights).await),
        StatusCode::FORBIDDEN
    );
    let warm = LightCommand {
        color_temp: Some(450),
        brightness: Some(60),
        ..LightCommand::default()
    };
    let set = owner.set_group(group.id, &warm).await.unwrap();
    assert!(set.iter().all(|l| l.target.brightness == 60));
    let scene = owner.store_scene(group.id, "evening").await.unwrap();
    owner.set_group(group.id, &brightness(254)).await.unwrap();
    let recalled = owner.recall_scene(scene.id, None).await.unwrap();
    for light in &recalled {
        assert_eq!(light.state.brightness, 60);
        assert_eq!(light.state.color, Color::Temperature { mireds: 450 });
    }
    assert_eq!(
        status_of(stranger.recall_scene(scene.id, None).await),
        StatusCode::NOT_FOUND
    );

    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event arrives")
            .unwrap()
            .expect("the stream stays open");
        if let itc_web::Event::LightStateChanged { device, state } = event {
            assert!(lights.iter().any(|l| l.as_str() == device));
            assert!(state.brightness >= 1);
            break;
        }
    }
    assert_eq!(
        owner.scenes(group.id).await.unwrap(),
        std::slice::from_ref(&scene)
    );

    // Opening the network lets the waiting bulb join; only the admin may.
    assert_eq!(
        status_of(stranger.permit_join(30).await),
        StatusCode::FORBIDDEN
    );
    owner.permit_join(30).await.unwrap();
    let mut joined = Vec::new();
    for _ in 0..200 {
        joined = owner.devices().await.unwrap();
        if joined.len() == 4 && joined.iter().all(|d| d.registered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(joined.len(), 4);
    assert!(joined.iter().all(|d| d.registered));

    // Chain: a claim transaction's inclusion proof and the owner's state
    // proof verify against a header certified by a quorum of the genesis
    // validators.
    let set = ValidatorSet::new(cluster.genesis.validators.clone()).unwrap();
    let proof = owner.owner_proof(&lights[0]).await.unwrap();
    assert_eq!(proof.owner, Some(owner.public().to_string()));
    let header: Header = decode(&hex::decode(&proof.block.header).unwrap()).unwrap();
    let certificate: CommitCertificate =
        decode(&hex::decode(proof.block.certificate.as_ref().unwrap()).unwrap()).unwrap();
    certificate.verify(&header, &set).unwrap();
    let state: StateProof = decode(&hex::decode(&proof.proof).unwrap()).unwrap();
    state.verify(&header.state_root).unwrap();

    let blocks = owner.blocks(Some(1), 100).await.unwrap();
    let claim = blocks.iter().find(|b| b.height > 0).unwrap();
    let detail = owner.block(claim.height).await.unwrap();
    let id: Hash = detail.transactions[0].parse().unwrap();
    let tx = owner.transaction(&id).await.unwrap();
    let header: Header = decode(&hex::decode(&tx.block.header).unwrap()).unwrap();
    let inclusion: InclusionProof = decode(&hex::decode(&tx.proof).unwrap()).unwrap();
    inclusion.verify(&id, &header.tx_root).unwrap();
    assert_eq!(
        status_of(owner.transaction(&Hash::digest(b"nothing")).await),
        StatusCode::NOT_FOUND
    );

    // Unsigned documents: health, OpenAPI, metrics.
    let http = reqwest::Client::new();
    let base = owner.base();
    let openapi: serde_json::Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert!(openapi["paths"]["/api/v1/lights/{id}/state"]["put"].is_object());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("itc_light_commands_total"), "{metrics}");
    assert!(metrics.contains("itc_http_requests_total"));

    // The stranger saw commits, but no light of the owner's.
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_millis(200), strangers.next()).await
    {
        assert!(
            matches!(event, itc_web::Event::TransactionCommitted { .. }),
            "{event:?}"
        );
    }

    // Groups can be deleted, with their scenes.
    owner.delete_group(group.id).await.unwrap();
    assert!(owner.groups().await.unwrap().is_empty());
    assert_eq!(
        status_of(owner.scenes(group.id).await),
        StatusCode::NOT_FOUND
    );

    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_is_told_to_slow_down() {
    let limits = Limits {
        per_second: 1,
        burst: 3,
    };
    let cluster = local_cluster(ClusterOptions {
        users: 1,
        limits,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let client = user(&cluster, 0);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(match client.status().await {
            Ok(_) => StatusCode::OK,
            Err(error) => error.status().unwrap(),
        });
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert!(
        statuses[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Another caller has its own budget.
    let other = Client::new(cluster.gateways[0].url(), Keypair::from_seed([5; 32]));
    assert!(other.status().await.is_ok());
    cluster.shutdown().await.unwrap();
}
