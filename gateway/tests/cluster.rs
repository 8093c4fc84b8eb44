//! Four gateway nodes in one process, over real TCP on loopback with Noise
//! channels and real sqlite stores: they commit what clients submit, and a
//! peer sending garbage, or a stranger, changes nothing.

use itc_chain::ledger::StateRead;
use std::time::Duration;

use itc_chain::codec::Text;
use itc_chain::crypto::Keypair;
use itc_chain::pbft::Params;
use itc_chain::testkit::Workload;
use itc_gateway::node::{self, NodeConfig, NodeHandle};
use itc_gateway::SqliteStore;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

async fn cluster(work: &mut Workload, dir: &std::path::Path) -> Vec<NodeHandle> {
    let mut listeners = Vec::new();
    for v in work.genesis.validators.iter_mut() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        v.addr = Text::new(listener.local_addr().unwrap().to_string()).unwrap();
        listeners.push(listener);
    }
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let key = work
            .validator_keypair(&work.genesis.validators[i].key)
            .unwrap();
        let store = SqliteStore::open(&dir.join(format!("gw{i}.sqlite")))
            .await
            .unwrap();
        let (handle, _task) = node::start(NodeConfig {
            key,
            genesis: work.genesis.clone(),
            store,
            listener,
            params: Params::default(),
            availability: None,
        })
        .await
        .unwrap();
        handles.push(handle);
    }
    handles
}

async fn block(
    store: &SqliteStore,
    height: u64,
) -> (itc_chain::Block, Option<itc_chain::CommitCertificate>) {
    use itc_chain::store::ChainStore;
    store.clone().block(height).await.unwrap().unwrap()
}

async fn wait_for_height(nodes: &[NodeHandle], height: u64) {
    for node in nodes {
        let mut status = node.status_watch();
        tokio::time::timeout(Duration::from_secs(30), async {
            while status.borrow().height < height {
                status.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("stuck at {:?}", node.status()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_commit_and_shrug_off_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut work = Workload::new(4, 8, 31);
    let nodes = cluster(&mut work, dir.path()).await;

    // A stranger's raw bytes, and garbage from nowhere, at every node.
    for v in &work.genesis.validators {
        let mut stream = TcpStream::connect(v.addr.as_str()).await.unwrap();
        let _ = stream.write_all(&[0xff; 300]).await;
        let mut stream = TcpStream::connect(v.addr.as_str()).await.unwrap();
        let _ = stream.write_all(&[0, 0]).await;
    }
    // A well-formed Noise handshake from a key that is not a validator.
    let stranger = Keypair::from_seed([9; 32]);
    let mut stream = TcpStream::connect(work.genesis.validators[0].addr.as_str())
        .await
        .unwrap();
    let refused = itc_gateway::net::noise::dial(
        &mut stream,
        &stranger,
        &work.genesis.chain_id,
        work.genesis.validators[0].key,
    )
    .await;
    // The dialer sees the node's identity; the node then refuses it, so
    // nothing it sends is ever read.
    if refused.is_ok() {
        let _ = stream.write_all(b"not a frame").await;
    }

    // Transactions submitted at one node commit everywhere.
    let (ledger, _) = itc_chain::Ledger::genesis(&work.genesis).unwrap();
    let txs = work.transfers(&ledger, 50);
    assert!(nodes[1].submit(txs).await);
    wait_for_height(&nodes, 1).await;
    let mut total = 0;
    let mut height = 0;
    while total < 50 {
        height += 1;
        wait_for_height(&nodes, height).await;
        let (committed, cert) = block(&nodes[0].store, height).await;
        total += committed.txs.len();
        assert!(cert.is_some());
    }
    assert_eq!(total, 50);
    let heads: Vec<_> = nodes.iter().map(|n| n.status()).collect();
    let target = heads.iter().map(|s| s.height).min().unwrap();
    for node in &nodes {
        let (mine, _) = block(&node.store, target).await;
        let (first, _) = block(&nodes[0].store, target).await;
        assert_eq!(mine.header.hash(), first.header.hash());
    }

    // A validator's authenticated channel carrying garbage, then a primary
    // equivocating to one node: the garbage is ignored, the two signed
    // pre-prepares are kept as evidence, and the cluster commits on.
    let (ledger, set) = {
        let mut store = nodes[0].store.clone();
        let ledger = itc_chain::store::open_ledger(&mut store, &work.genesis)
            .await
            .unwrap();
        let set = ledger.validator_sets().active;
        (ledger, set)
    };
    let primary_key = set.primary(nodes[0].status().view).key;
    let primary = work.validator_key(&primary_key).unwrap();
    let victim = nodes.iter().position(|n| n.public != primary_key).unwrap();
    let victim_addr = work
        .genesis
        .validators
        .iter()
        .find(|v| v.key == nodes[victim].public)
        .unwrap()
        .addr
        .to_string();
    let mut stream = TcpStream::connect(&victim_addr).await.unwrap();
    let mut channel = itc_gateway::net::noise::dial(
        &mut stream,
        primary,
        &work.genesis.chain_id,
        nodes[victim].public,
    )
    .await
    .unwrap();
    channel.send(&mut stream, b"\x01garbage").await.unwrap();
    channel.send(&mut stream, &[]).await.unwrap();
    let view = nodes[victim].status().view;
    let txs = work.transfers(&ledger, 2);
    for count in [2, 1] {
        let block = ledger
            .propose(txs[..count].to_vec(), ledger.tip().time_ms + 1, primary_key)
            .unwrap()
            .executed
            .block;
        let message = itc_chain::pbft::Message::PrePrepare(itc_chain::pbft::Signed::sign(
            primary,
            &work.genesis.chain_id,
            itc_chain::pbft::PrePrepare { view, block },
        ));
        channel
            .send(&mut stream, &itc_gateway::net::consensus_wire(&message))
            .await
            .unwrap();
    }
    let store = nodes[victim].store.clone();
    tokio::time::timeout(Duration::from_secs(20), async {
        while store.evidence().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the equivocation was not kept");
    let evidence = store.evidence().await.unwrap();
    assert_eq!(evidence[0].primary, primary_key);
    assert_ne!(evidence[0].first.digest, evidence[0].second.digest);
    // It lands on chain at every node once a primary orders it. The victim
    // reports it, or another honest node that saw the same primary sign a
    // second block for the slot (the victim's PREPARE carries the forged
    // pre-prepare's signature to it) and reported first.
    let key = itc_chain::state::StateKey::Equivocation {
        primary: primary_key,
        view,
        height: evidence[0].height,
    };
    for node in &nodes {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let recorded = node.committed().read().unwrap().entries.get(&key).cloned();
                if let Some(itc_chain::state::StateValue::Equivocation(record)) = recorded {
                    assert_ne!(record.reporter, primary_key);
                    assert!(nodes.iter().any(|n| n.public == record.reporter));
                    assert_ne!(record.first, record.second);
                    // Whoever reported, one of the two blocks is one the
                    // victim was sent: the slot is the victim's.
                    let sent = [evidence[0].first.digest, evidence[0].second.digest];
                    assert!(sent.contains(&record.first) || sent.contains(&record.second));
                    if record.reporter == nodes[victim].public {
                        assert_eq!(record.first, evidence[0].first.digest);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the equivocation did not reach the chain");
    }

    let before = nodes.iter().map(|n| n.status().height).max().unwrap();
    let more = {
        let mut store = nodes[0].store.clone();
        let ledger = itc_chain::store::open_ledger(&mut store, &work.genesis)
            .await
            .unwrap();
        work.transfers(&ledger, 5)
    };
    assert!(nodes[0].submit(more).await);
    wait_for_height(&nodes, before + 1).await;
    for node in &nodes {
        node.shutdown();
    }
}

/// One transfer from user 0 with `nonce`.
fn payment(work: &Workload, nonce: u64) -> itc_chain::tx::SignedTx {
    itc_chain::tx::Tx {
        chain_id: work.genesis.chain_id.clone(),
        sender: work.users[0].public(),
        nonce,
        body: itc_chain::tx::TxBody::Transfer {
            to: work.users[1].public(),
            amount: 1,
        },
    }
    .sign(&work.users[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_added_on_chain_joins_and_votes_from_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut work = Workload::new(4, 8, 37);
    work.genesis.epoch_length = 10;
    let mut nodes = cluster(&mut work, dir.path()).await;

    // The newcomer starts from the same genesis, which does not name it:
    // nobody accepts its channels yet, so it waits.
    let newcomer = Keypair::from_seed([201; 32]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (joining, _task) = node::start(NodeConfig {
        key: Keypair::from_seed([201; 32]),
        genesis: work.genesis.clone(),
        store: SqliteStore::open(&dir.path().join("newcomer.sqlite"))
            .await
            .unwrap(),
        listener,
        params: Params::default(),
        availability: None,
    })
    .await
    .unwrap();

    // Three of the four approve adding it; the change commits at height 1.
    let (ledger, _) = itc_chain::Ledger::genesis(&work.genesis).unwrap();
    let change = work
        .adding_validator(&ledger, newcomer.public(), &addr)
        .unwrap();
    assert!(nodes[0].submit(vec![change]).await);
    wait_for_height(&nodes, 1).await;

    // The old four drive the chain to the epoch boundary; the newcomer,
    // now a peer, follows.
    let mut nonce = 0;
    nodes.push(joining.clone());
    while nodes[0].status().height < 12 {
        let height = nodes[0].status().height;
        assert!(nodes[0].submit(vec![payment(&work, nonce)]).await);
        nonce += 1;
        wait_for_height(&nodes[..4], height + 1).await;
    }
    wait_for_height(&nodes, 12).await;
    let joined = joining.committed().read().unwrap().tip.clone();
    assert!(joined.height >= 12);

    // Five validators need four votes. With an original backup gone, the
    // other three commit only with the newcomer's.
    let gone = nodes
        .iter()
        .position(|n| !n.status().primary && n.public != newcomer.public())
        .unwrap();
    nodes[gone].shutdown();
    nodes.remove(gone);
    let before = nodes.iter().map(|n| n.status().height).max().unwrap();
    let submit_at = nodes
        .iter()
        .position(|n| n.public != newcomer.public())
        .unwrap();
    assert!(nodes[submit_at].submit(vec![payment(&work, nonce)]).await);
    wait_for_height(&nodes, before + 1).await;
    let (_, certificate) = block(&joining.store, before + 1).await;
    let signers: Vec<_> = certificate
        .unwrap()
        .signatures
        .as_slice()
        .iter()
        .map(|s| s.validator)
        .collect();
    assert!(signers.contains(&newcomer.public()), "{signers:?}");
    for node in &nodes {
        node.shutdown();
    }
}
