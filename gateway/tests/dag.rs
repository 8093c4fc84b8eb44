//! The DAG side chain across four real gateways: devices' transactions
//! submitted over REST to different gateways, gossiped, anchored by the
//! primary and confirmed by every gateway in the same order; a double
//! spend applied once; a confirmation proof checked against a certified
//! header; bad transactions refused with the right status.

use std::collections::HashMap;
use std::time::Duration;

use itc_chain::block::{CommitCertificate, Header};
use itc_chain::codec::{decode, BoundedVec, Bytes};
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::dag::{DagBody, DagKind, DagProof, DagTx};
use itc_chain::types::DeviceId;
use itc_chain::validators::ValidatorSet;
use itc_gateway::app::{local_cluster, ClusterOptions};
use itc_gateway::dag::Confirmation;
use itc_web::client::Client;
use reqwest::StatusCode;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn parents(client: &Client) -> [Hash; 2] {
    let p = client.dag_parents().await.unwrap().parents;
    [p[0].parse().unwrap(), p[1].parse().unwrap()]
}

fn issue(key: &Keypair, device: &DeviceId, kind: DagKind, parents: [Hash; 2]) -> DagTx {
    let body = DagBody {
        issuer: device.clone(),
        kind,
        parents: BoundedVec::new(parents.to_vec()).unwrap(),
        time_ms: now_ms(),
        level: 1,
    };
    DagTx::issue(key, body, 0)
}

/// `count` MQTT devices named `name-i`, with keys from seeds `seed + i`.
fn devices(name: &str, seed: u8, count: u8) -> Vec<(DeviceId, Keypair)> {
    (0..count)
        .map(|i| {
            (
                DeviceId::new(format!("mqtt:{name}-{i}")).unwrap(),
                Keypair::from_seed([seed + i; 32]),
            )
        })
        .collect()
}

fn reading(i: usize) -> DagKind {
    DagKind::Reading {
        data: Bytes::new(format!("{{\"watts\":{i}}}").into_bytes()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_confirm_device_transactions_alike_with_proofs() {
    let cluster = local_cluster(ClusterOptions::default()).await.unwrap();
    let owner = Keypair::from_seed(*cluster.users[0].seed());
    let shop = cluster.users[1].public();
    let devices = devices("meter", 0x60, 3);
    cluster.register_devices(0, &devices, &owner).await.unwrap();
    let clients: Vec<Client> = cluster
        .gateways
        .iter()
        .map(|g| Client::new(g.url(), Keypair::from_seed(*owner.seed())))
        .collect();
    let mut streams: Vec<_> = cluster
        .gateways
        .iter()
        .map(|g| g.dag.confirmations())
        .collect();
    let balance_before = clients[0].account(&shop).await.unwrap().balance;

    // Readings through every gateway, and one payment spent twice through
    // two gateways at once.
    let mut ids = Vec::new();
    for i in 0..24 {
        let client = &clients[i % 4];
        let (device, key) = &devices[i % 3];
        let tx = issue(key, device, reading(i), parents(client).await);
        let accepted = client.dag_submit(&tx).await.unwrap();
        assert_eq!(accepted.id, tx.id().to_string());
        ids.push(tx.id());
    }
    let pay = |to: &Keypair, parents| {
        let (device, key) = &devices[0];
        let kind = DagKind::Payment {
            from: owner.public(),
            to: to.public(),
            amount: 5,
            nonce: 1,
        };
        issue(key, device, kind, parents)
    };
    let first = pay(&cluster.users[1], parents(&clients[1]).await);
    let elsewhere = Keypair::from_seed([0x77; 32]);
    let second = pay(&elsewhere, parents(&clients[2]).await);
    // A payment the owner cannot fund: confirmed, and not applied.
    let owner_balance = clients[0].account(&owner.public()).await.unwrap().balance;
    let unfunded = {
        let (device, key) = &devices[1];
        let kind = DagKind::Payment {
            from: owner.public(),
            to: shop,
            amount: owner_balance + 1,
            nonce: 2,
        };
        issue(key, device, kind, parents(&clients[0]).await)
    };
    clients[0].dag_submit(&unfunded).await.unwrap();
    ids.push(unfunded.id());
    let (a, b) = tokio::join!(
        clients[1].dag_submit(&first),
        clients[2].dag_submit(&second)
    );
    a.unwrap();
    b.unwrap();
    ids.extend([first.id(), second.id()]);

    // Every gateway confirms all of them, in one order.
    let mut orders: Vec<Vec<Confirmation>> = Vec::new();
    for stream in &mut streams {
        let mut seen: Vec<Confirmation> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ids.iter().all(|id| seen.iter().any(|c| c.id == *id)) {
            let batch = tokio::time::timeout_at(deadline, stream.recv())
                .await
                .expect("every transaction is confirmed within 60 s")
                .unwrap();
            seen.extend(batch.iter().cloned());
        }
        orders.push(seen);
    }
    let shortest = orders.iter().map(Vec::len).min().unwrap();
    for order in &orders[1..] {
        assert_eq!(order[..shortest], orders[0][..shortest]);
    }

    // The double spend: exactly one applied, the balance moved once.
    let outcome: HashMap<Hash, bool> = orders[0].iter().map(|c| (c.id, c.applied)).collect();
    assert!(outcome[&first.id()] ^ outcome[&second.id()]);
    let balance_after = clients[0].account(&shop).await.unwrap().balance;
    let paid_shop = outcome[&first.id()];
    assert_eq!(
        balance_after,
        balance_before + if paid_shop { 5 } else { 0 }
    );
    let elsewhere_balance = clients[0]
        .account(&elsewhere.public())
        .await
        .unwrap()
        .balance;
    assert_eq!(elsewhere_balance, if paid_shop { 0 } else { 5 });
    let loser = if paid_shop { &second } else { &first };
    let status = clients[3].dag_status(&loser.id()).await.unwrap();
    assert_eq!(status.status, "conflicting");
    // The ledger could not honour the unfunded one: every gateway says it
    // was not applied, as the ledger did.
    assert!(orders
        .iter()
        .all(|order| order.iter().any(|c| c.id == unfunded.id() && !c.applied)));
    let status = clients[2].dag_status(&unfunded.id()).await.unwrap();
    assert_eq!(status.status, "conflicting");

    // A confirmation proof, from a gateway that did not take the
    // transaction, checks against the certified header.
    let id = ids[4];
    let status = clients[3].dag_status(&id).await.unwrap();
    assert_eq!(status.status, "confirmed", "{status:?}");
    let block = status.block.unwrap();
    let header: Header = decode(&hex::decode(&block.header).unwrap()).unwrap();
    let certificate: CommitCertificate =
        decode(&hex::decode(block.certificate.unwrap()).unwrap()).unwrap();
    let set = ValidatorSet::new(cluster.genesis.validators.clone()).unwrap();
    certificate.verify(&header, &set).unwrap();
    let proof: DagProof = serde_json::from_value(status.proof).unwrap();
    proof.verify(&id, &header).unwrap();
    assert_eq!(Some(header.height), status.height);
    // The proof is for this transaction only.
    assert!(proof.verify(&ids[5], &header).is_err());

    // Refusals: a duplicate (409), a forged signature, an unregistered
    // issuer, a transaction from the future (400); nothing is taken.
    let again = issue(
        &devices[1].1,
        &devices[1].0,
        reading(99),
        parents(&clients[0]).await,
    );
    clients[0].dag_submit(&again).await.unwrap();
    let status_of = |e: itc_web::client::ClientError| e.status().unwrap();
    assert_eq!(
        status_of(clients[0].dag_submit(&again).await.unwrap_err()),
        StatusCode::CONFLICT
    );
    let forged = issue(
        &Keypair::from_seed([1; 32]),
        &devices[1].0,
        reading(1),
        parents(&clients[0]).await,
    );
    assert_eq!(
        status_of(clients[0].dag_submit(&forged).await.unwrap_err()),
        StatusCode::BAD_REQUEST
    );
    let stranger = DeviceId::new("mqtt:nobody").unwrap();
    let unknown = issue(
        &devices[1].1,
        &stranger,
        reading(2),
        parents(&clients[0]).await,
    );
    assert_eq!(
        status_of(clients[0].dag_submit(&unknown).await.unwrap_err()),
        StatusCode::BAD_REQUEST
    );
    let mut body = again.body.clone();
    body.time_ms += 3_600_000;
    let future = DagTx::issue(&devices[1].1, body, 0);
    assert_eq!(
        status_of(clients[0].dag_submit(&future).await.unwrap_err()),
        StatusCode::BAD_REQUEST
    );
    for tx in [&forged, &unknown, &future] {
        assert_eq!(
            clients[0].dag_status(&tx.id()).await.unwrap().status,
            "unknown"
        );
    }
    cluster.shutdown().await.unwrap();
}

/// Polls gateway `client` until `id` is confirmed there.
async fn confirmed(client: &Client, id: &Hash) -> itc_web::model::DagTxStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.dag_status(id).await.unwrap();
        if status.status == "confirmed" {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} was not confirmed within 60 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With a depth of two blocks, a gateway forgets old history (bodies go,
/// outcomes stay) and restarts: what it kept is solid at once — its tips
/// are the real ones, not the roots — and the tangle grows on through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_after_pruning_grows_on_from_its_tips() {
    let mut options = ClusterOptions::default();
    options.dag.depth = 2;
    let mut cluster = local_cluster(options).await.unwrap();
    let owner = Keypair::from_seed(*cluster.users[0].seed());
    let devices = vec![(
        DeviceId::new("mqtt:meter-9").unwrap(),
        Keypair::from_seed([0x69; 32]),
    )];
    cluster.register_devices(0, &devices, &owner).await.unwrap();
    let (device, key) = &devices[0];
    let client = |cluster: &itc_gateway::app::LocalCluster, g: usize| {
        Client::new(cluster.gateways[g].url(), Keypair::from_seed(*owner.seed()))
    };

    // One reading per block, each on the last, through gateway 3.
    let mut ids = Vec::new();
    let mut heights = Vec::new();
    for i in 0..6 {
        let at = client(&cluster, 3);
        let tx = issue(key, device, reading(i), parents(&at).await);
        at.dag_submit(&tx).await.unwrap();
        heights.push(confirmed(&at, &tx.id()).await.height.unwrap());
        ids.push(tx.id());
    }
    assert!(heights.windows(2).all(|w| w[0] < w[1]), "{heights:?}");
    // The oldest is pruned: its outcome stays, its body and proof go.
    let at = client(&cluster, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !at.dag_status(&ids[0]).await.unwrap().tx.is_null() {
        assert!(tokio::time::Instant::now() < deadline, "nothing was pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = at.dag_status(&ids[0]).await.unwrap();
    assert_eq!(
        (old.status.as_str(), old.height),
        ("confirmed", Some(heights[0]))
    );
    assert!(old.proof.is_null());

    cluster.restart(3).await.unwrap();
    let at = client(&cluster, 3);
    let old = at.dag_status(&ids[0]).await.unwrap();
    assert_eq!(old.status, "confirmed");
    // The newest is the tip it offers, not a root; a reading on it
    // confirms everywhere, with a proof from the restarted gateway.
    let offered = parents(&at).await;
    assert_eq!(offered[0], ids[5], "{offered:?}");
    let tx = issue(key, device, reading(6), offered);
    at.dag_submit(&tx).await.unwrap();
    for g in 0..4 {
        confirmed(&client(&cluster, g), &tx.id()).await;
    }
    let status = confirmed(&at, &tx.id()).await;
    let proof: DagProof = serde_json::from_value(status.proof).unwrap();
    let block = status.block.unwrap();
    let header: Header = decode(&hex::decode(&block.header).unwrap()).unwrap();
    proof.verify(&tx.id(), &header).unwrap();
    assert_eq!(at.dag_status(&ids[5]).await.unwrap().status, "confirmed");
    cluster.shutdown().await.unwrap();
}

/// A faulty primary anchors a tip it never gossips (it claims to hold
/// it; nobody else ever will). No backup prepares that block, the view
/// changes, the next primary leaves the relayed anchor out, and devices'
/// transactions go on confirming at every gateway, the faulty one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_anchoring_data_nobody_has_is_replaced_and_the_dag_goes_on() {
    use itc_chain::tx::{DagAnchor, Tx, TxBody};

    let cluster = local_cluster(ClusterOptions::default()).await.unwrap();
    let owner = Keypair::from_seed(*cluster.users[0].seed());
    let devices = vec![(
        DeviceId::new("mqtt:meter-7").unwrap(),
        Keypair::from_seed([0x67; 32]),
    )];
    cluster.register_devices(0, &devices, &owner).await.unwrap();
    let faulty = (0..4)
        .find(|g| cluster.gateways[*g].node.status().primary)
        .expect("a primary");
    let view = cluster.gateways[faulty].node.status().view;
    let tip = Hash::digest(b"a DAG tip the faulty primary never gossips");
    cluster.gateways[faulty].solid.add(vec![tip]);
    let height = cluster.gateways[faulty].node.status().height;
    let anchor = Tx {
        chain_id: cluster.genesis.chain_id.clone(),
        sender: cluster.keys[faulty].public(),
        nonce: height + 1,
        body: TxBody::AnchorDag(DagAnchor {
            tips: BoundedVec::new(vec![tip]).unwrap(),
            root: itc_chain::merkle::root(&[tip]),
            payments: BoundedVec::new(vec![]).unwrap(),
        }),
    }
    .sign(&cluster.keys[faulty]);
    let honest: Vec<usize> = (0..4).filter(|g| *g != faulty).collect();
    let mut commits = cluster.gateways[honest[0]].node.commits();
    assert!(
        cluster.gateways[faulty]
            .node
            .submit(vec![anchor.clone()])
            .await
    );

    // The backups' timers run out and they move to a view with another
    // primary.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let moved = honest.iter().all(|g| {
            let status = cluster.gateways[*g].node.status();
            status.view > view && !status.changing_view
        });
        if moved {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no view change within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cluster.gateways[honest[0]].node.status().height,
        height,
        "the faulty block did not commit"
    );

    // A device's reading through an honest gateway confirms everywhere.
    let (device, key) = &devices[0];
    let client =
        |g: usize| Client::new(cluster.gateways[g].url(), Keypair::from_seed(*owner.seed()));
    let at = client(honest[1]);
    let tx = issue(key, device, reading(1), parents(&at).await);
    at.dag_submit(&tx).await.unwrap();
    for g in 0..4 {
        confirmed(&client(g), &tx.id()).await;
    }
    // The faulty anchor never committed.
    while let Ok(block) = commits.try_recv() {
        assert!(!block.txs.contains(&anchor.hash()), "at {}", block.height);
    }
    // All four end on one head once the chain is quiet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<_> = cluster.gateways.iter().map(|g| g.node.status()).collect();
        if statuses.windows(2).all(|w| w[0].height == w[1].height) {
            assert!(
                statuses.windows(2).all(|w| w[0].head == w[1].head),
                "{statuses:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await.unwrap();
}

/// Many callers at once: what queued up behind the first is checked with
/// it in one batch, and each caller still gets exactly its own outcomes,
/// in its own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_submitting_at_once_each_get_their_own_outcomes() {
    let cluster = local_cluster(ClusterOptions::default()).await.unwrap();
    let owner = Keypair::from_seed(*cluster.users[0].seed());
    let devices = devices("crowd", 0x90, 8);
    cluster.register_devices(0, &devices, &owner).await.unwrap();
    let stranger = DeviceId::new("mqtt:stranger").unwrap();
    let roots = itc_chain::dag::tangle::roots();
    // 16 callers with 24 transactions each; one in eight is from a device
    // not on chain and one in eight was altered after it was signed.
    let batches: Vec<Vec<(DagTx, bool)>> = (0..16)
        .map(|caller| {
            (0..24)
                .map(|i| {
                    let n = caller * 24 + i;
                    let (device, key) = &devices[n % devices.len()];
                    match n % 8 {
                        3 => (issue(key, &stranger, reading(n), roots), false),
                        5 => {
                            let mut tx = issue(key, device, reading(n), roots);
                            tx.body.kind = reading(n + 10_000);
                            (tx, false)
                        }
                        _ => (issue(key, device, reading(n), roots), true),
                    }
                })
                .collect()
        })
        .collect();
    let dag = &cluster.gateways[0].dag;
    let replies = futures_util::future::join_all(
        batches
            .iter()
            .map(|batch| dag.submit(batch.iter().map(|(tx, _)| tx.clone()).collect())),
    )
    .await;
    for (batch, reply) in batches.iter().zip(replies) {
        let reply = reply.unwrap();
        assert_eq!(reply.len(), batch.len());
        for ((tx, good), outcome) in batch.iter().zip(reply) {
            if *good {
                assert_eq!(outcome.unwrap(), tx.id());
            } else {
                assert!(outcome.is_err(), "{tx:?} was taken");
            }
        }
    }
    cluster.shutdown().await.unwrap();
}
