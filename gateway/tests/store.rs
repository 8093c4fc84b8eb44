//! The sqlite store round-trips what the ledger commits.

use itc_chain::codec::Text;
use itc_chain::crypto::{Domain, Keypair};
use itc_chain::ledger::Ledger;
use itc_chain::ledger::StateRead;
use itc_chain::store::{open_ledger, ChainStore, OpenError};
use itc_chain::testkit::Workload;
use itc_chain::tx::{claim_payload, registration_payload, DeviceRegistration, Tx, TxBody};
use itc_chain::types::{DeviceId, DeviceKind};
use itc_gateway::SqliteStore;
use sqlx::{Connection, Row};

async fn commit(
    store: &mut SqliteStore,
    work: &Workload,
    ledger: &mut Ledger,
    txs: Vec<itc_chain::SignedTx>,
) {
    let proposer = work.proposer(ledger).public();
    let proposal = ledger
        .propose(txs, ledger.tip().time_ms + 10, proposer)
        .unwrap();
    assert!(proposal.rejected.is_empty(), "{:?}", proposal.rejected);
    let cert = work.certify(&proposal.executed.block.header);
    store
        .commit_block(&proposal.executed, Some(&cert))
        .await
        .unwrap();
    ledger.commit(&proposal.executed).unwrap();
}

#[tokio::test]
async fn blocks_transactions_devices_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sqlite");
    let work = Workload::new(4, 4, 9);
    let mut store = SqliteStore::open(&path).await.unwrap();
    let mut ledger = open_ledger(&mut store, &work.genesis).await.unwrap();

    // A block of transfers, then a device registered and claimed.
    let transfers = work.transfers(&ledger, 25);
    commit(&mut store, &work, &mut ledger, transfers.clone()).await;

    let gw = &work.validators[0];
    let device_key = Keypair::from_seed([55; 32]);
    let device = DeviceId::new("zigbee:00124b00aa").unwrap();
    let model = Text::new("LCT015").unwrap();
    let chain = work.genesis.chain_id.clone();
    let payload = registration_payload(
        &chain,
        &gw.public(),
        &device,
        &device_key.public(),
        DeviceKind::Zigbee,
        &model,
    );
    let register = Tx {
        chain_id: chain.clone(),
        sender: gw.public(),
        nonce: 0,
        body: TxBody::RegisterDevice(DeviceRegistration {
            device: device.clone(),
            device_key: device_key.public(),
            kind: DeviceKind::Zigbee,
            model,
            proof: device_key.sign(Domain::DeviceRegistration, &payload),
        }),
    }
    .sign(gw);
    commit(&mut store, &work, &mut ledger, vec![register]).await;
    let owner = &work.users[3];
    let claim = Tx {
        chain_id: chain.clone(),
        sender: owner.public(),
        nonce: ledger.account(&owner.public()).nonce,
        body: TxBody::ClaimDevice {
            device: device.clone(),
            authorizer: gw.public(),
            authorization: gw.sign(
                Domain::DeviceClaim,
                &claim_payload(&chain, &device, &owner.public()),
            ),
        },
    }
    .sign(owner);
    commit(&mut store, &work, &mut ledger, vec![claim]).await;

    // Blocks and transactions come back as committed, with certificates.
    let (block, cert) = store.block(1).await.unwrap().unwrap();
    assert_eq!(block.txs.as_slice(), transfers.as_slice());
    cert.unwrap()
        .verify(&block.header, &ledger.validator_sets().active)
        .unwrap();
    let found = store
        .transaction(&transfers[7].hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.height, found.index), (1, 7));
    assert_eq!(found.tx, transfers[7]);
    assert!(store.block(99).await.unwrap().is_none());
    let headers = store.headers(0, 3).await.unwrap();
    assert_eq!(headers.len(), 4);
    assert!(headers[0].1.is_none(), "the genesis has no certificate");

    // The device projection follows the state.
    let row = sqlx::query("SELECT kind, owner FROM devices WHERE id = ?")
        .bind(device.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "zigbee");
    assert_eq!(row.get::<Vec<u8>, _>("owner"), owner.public().0.to_vec());
    // The by-account lookup names the sender and the recipient.
    let to = match &transfers[0].tx.body {
        TxBody::Transfer { to, .. } => *to,
        _ => unreachable!(),
    };
    let history = store.account_transactions(&to, None, 1_000).await.unwrap();
    assert!(history.iter().any(|t| t.tx == transfers[0]));
    assert!(history
        .iter()
        .all(|t| itc_chain::store::involved_accounts(&t.tx).contains(&to)));

    // Reopening resumes at the same height and root, with the device owned.
    store.close().await;
    let mut store = SqliteStore::open(&path).await.unwrap();
    let reopened = open_ledger(&mut store, &work.genesis).await.unwrap();
    assert_eq!(reopened.height(), 3);
    assert_eq!(reopened.state_root(), ledger.state_root());
    assert!(reopened.can_control(&owner.public(), &device, reopened.tip().time_ms));

    // Another genesis is refused rather than silently mixed in.
    let other = Workload::new(4, 4, 10);
    assert!(matches!(
        open_ledger(&mut store, &other.genesis).await,
        Err(OpenError::GenesisMismatch { .. })
    ));
}

#[tokio::test]
async fn a_block_that_fails_to_store_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let work = Workload::new(4, 4, 11);
    let mut store = SqliteStore::open(&dir.path().join("gw.sqlite"))
        .await
        .unwrap();
    let mut ledger = open_ledger(&mut store, &work.genesis).await.unwrap();
    let txs = work.transfers(&ledger, 5);
    commit(&mut store, &work, &mut ledger, txs).await;

    // Plant a row that block 2's fifth transaction row will collide with:
    // the header and four transaction rows are written first, then the
    // insert fails, and the whole block must roll back.
    let txs = work.transfers(&ledger, 5);
    let proposer = work.proposer(&ledger).public();
    let proposal = ledger
        .propose(txs.clone(), ledger.tip().time_ms + 10, proposer)
        .unwrap();
    sqlx::query("INSERT INTO transactions (seq, hash, tx) VALUES (?, ?, ?)")
        .bind((2i64 << 20) | 4)
        .bind(vec![0u8; 32])
        .bind(vec![0u8; 4])
        .execute(store.pool())
        .await
        .unwrap();
    let pool = store.pool().clone();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    let before = (
        count("headers").await,
        count("transactions").await,
        count("state").await,
    );
    let cert = work.certify(&proposal.executed.block.header);
    assert!(store
        .commit_block(&proposal.executed, Some(&cert))
        .await
        .is_err());
    let after = (
        count("headers").await,
        count("transactions").await,
        count("state").await,
    );
    assert_eq!(before, after);
    assert_eq!(store.tip_height().await.unwrap(), Some(1));
    let reopened = open_ledger(&mut store, &work.genesis).await.unwrap();
    assert_eq!(reopened.state_root(), ledger.state_root());
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

/// Lookups by id and by account give the same answers whether the
/// background indexer has caught up or not: before indexing, after it, and
/// with an indexed prefix plus an unindexed tail.
#[tokio::test]
async fn lookups_are_complete_while_the_indexer_lags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sqlite");
    let work = Workload::new(4, 6, 12);
    let mut store = SqliteStore::open_manual(&path).await.unwrap();
    let mut ledger = open_ledger(&mut store, &work.genesis).await.unwrap();
    let mut committed = Vec::new();
    for _ in 0..2 {
        let txs = work.transfers(&ledger, 8);
        committed.extend(txs.clone());
        commit(&mut store, &work, &mut ledger, txs).await;
    }
    // The indexes live in their own file beside the chain's.
    let index = itc_gateway::store::index_path(&path);
    let indexed = |_: &SqliteStore| {
        let index = index.clone();
        async move {
            let mut db = sqlx::SqliteConnection::connect(&format!("sqlite:{}", index.display()))
                .await
                .unwrap();
            sqlx::query("SELECT COUNT(*) FROM transaction_ids")
                .fetch_one(&mut db)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    assert_eq!(indexed(&store).await, 0, "nothing indexed yet");
    let snapshot = lookups(&mut store, &work, &committed).await;

    store.maintain_now().await.unwrap();
    assert_eq!(indexed(&store).await, 16);
    assert_eq!(lookups(&mut store, &work, &committed).await, snapshot);

    // One more block: an indexed prefix and an unindexed tail.
    let txs = work.transfers(&ledger, 8);
    committed.extend(txs.clone());
    commit(&mut store, &work, &mut ledger, txs).await;
    let mixed = lookups(&mut store, &work, &committed).await;
    store.maintain_now().await.unwrap();
    assert_eq!(indexed(&store).await, 24);
    assert_eq!(lookups(&mut store, &work, &committed).await, mixed);

    // Paging: newest first, strictly before the cursor, never a gap.
    let user = work.users[0].public();
    let all = store.account_transactions(&user, None, 100).await.unwrap();
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.account_transactions(&user, cursor, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some((last.height, last.index));
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(all
        .windows(2)
        .all(|w| (w[0].height, w[0].index) > (w[1].height, w[1].index)));

    // A new chain database beside the old index (an operator removed the
    // chain's file to start over): the stale index is not believed, and is
    // rebuilt from the new chain.
    store.close().await;
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let other = Workload::new(4, 6, 13);
    let mut store = SqliteStore::open_manual(&path).await.unwrap();
    let mut ledger = open_ledger(&mut store, &other.genesis).await.unwrap();
    let txs = other.transfers(&ledger, 8);
    commit(&mut store, &other, &mut ledger, txs.clone()).await;
    assert_eq!(
        indexed(&store).await,
        24,
        "the old chain's entries, still there"
    );
    let fresh = lookups(&mut store, &other, &txs).await;
    for tx in &committed {
        assert!(store.transaction(&tx.hash()).await.unwrap().is_none());
    }
    store.maintain_now().await.unwrap();
    assert_eq!(indexed(&store).await, 8, "rebuilt from the new chain");
    assert_eq!(lookups(&mut store, &other, &txs).await, fresh);
}

/// Every committed transaction found by id at its place, and every user's
/// history: exactly the committed transactions that concern them, newest
/// first.
async fn lookups(
    store: &mut SqliteStore,
    work: &Workload,
    committed: &[itc_chain::SignedTx],
) -> Vec<Vec<(u64, u32)>> {
    for tx in committed {
        let found = store.transaction(&tx.hash()).await.unwrap().unwrap();
        assert_eq!(&found.tx, tx);
    }
    assert!(store
        .transaction(&itc_chain::crypto::Hash::digest(b"never committed"))
        .await
        .unwrap()
        .is_none());
    let mut histories = Vec::new();
    for user in &work.users {
        let user = user.public();
        let history = store
            .account_transactions(&user, None, 1_000)
            .await
            .unwrap();
        let expected: Vec<_> = committed
            .iter()
            .rev()
            .filter(|tx| itc_chain::store::involved_accounts(tx).contains(&user))
            .collect();
        assert_eq!(history.iter().map(|t| &t.tx).collect::<Vec<_>>(), expected);
        histories.push(history.iter().map(|t| (t.height, t.index)).collect());
    }
    histories
}

/// The frames in the WAL since it last started over, as sqlite counts them
/// (a PASSIVE checkpoint reports them; it also copies them).
async fn wal_frames(store: &SqliteStore) -> u64 {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(store.pool())
        .await
        .unwrap();
    row.get::<i64, _>(1) as u64
}

/// Under steady writes the WAL still starts over after each maintenance
/// round, so it stays the size of a round's writes instead of growing with
/// the chain. Blocks, made beforehand, are stored back to back all through
/// each round and for two more after it: a checkpoint that only ran beside
/// the writer left the frames appended meanwhile behind, and sqlite never
/// started the WAL over.
#[tokio::test]
async fn the_wal_starts_over_while_blocks_keep_coming() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROUNDS: usize = 5;
    const BLOCKS: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sqlite");
    let work = Workload::new(4, 200, 14);
    let mut store = SqliteStore::open_manual(&path).await.unwrap();
    let mut ledger = open_ledger(&mut store, &work.genesis).await.unwrap();
    store.maintain_now().await.unwrap();
    // What a block adds to the WAL: the frames of four blocks written
    // after a complete checkpoint.
    for _ in 0..4 {
        let txs = work.transfers(&ledger, 5);
        commit(&mut store, &work, &mut ledger, txs).await;
    }
    let per_block = wal_frames(&store).await / 4;
    assert!(per_block > 0);
    let mut blocks = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        let proposer = work.proposer(&ledger).public();
        let txs = work.transfers(&ledger, 5);
        let executed = ledger
            .propose(txs, ledger.tip().time_ms + 10, proposer)
            .unwrap()
            .executed;
        ledger.commit(&executed).unwrap();
        let cert = work.certify(&executed.block.header);
        blocks.push((executed, cert));
    }

    let mut writer = store.clone();
    let mut next = blocks.iter();
    for _ in 0..ROUNDS {
        let maintained = AtomicBool::new(false);
        let write = async {
            let mut after = 0;
            while after < 2 {
                let (executed, cert) = next.next().expect("enough blocks made");
                writer.commit_block(executed, Some(cert)).await.unwrap();
                if maintained.load(Ordering::SeqCst) {
                    after += 1;
                }
            }
        };
        let maintain = async {
            let result = store.maintain_now().await;
            maintained.store(true, Ordering::SeqCst);
            result
        };
        let (_, result) = tokio::join!(write, maintain);
        result.unwrap();
    }
    // The last round left nothing behind, so the WAL holds only the few
    // blocks stored after it; never starting over, it would hold them all.
    let frames = wal_frames(&store).await;
    let most = per_block * 8;
    let stored = BLOCKS - next.len();
    assert!(
        frames <= most,
        "a WAL of {frames} frames after {stored} blocks of ~{per_block} frames; at most {most} expected",
    );
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}
