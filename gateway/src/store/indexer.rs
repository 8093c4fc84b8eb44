//! The store's background maintainer, and the lookups it serves.
//!
//! A block commit writes only what must be atomic with the block: header,
//! certificate, transaction rows (appended in order), state entries and the
//! device projection. Two kinds of work are kept off that path, because
//! their cost grows with the chain and is paid in WAL pages and fsyncs:
//!
//! - **Lookup indexes** (transaction by id, transactions by account). Their
//!   keys are random, so a block's inserts dirty one page each. The
//!   maintainer derives them from `transactions` in batches, each in its own
//!   sqlite transaction together with the `indexed_seq` watermark, so a crash
//!   mid-batch leaves either the whole batch or none of it. Readers look in
//!   the index *and* scan the rows above the watermark in one statement, so
//!   a lookup is complete even while the indexer lags (geth's transaction
//!   indexer makes the same trade).
//! - **WAL checkpoints**. sqlite's automatic checkpoint runs inside the
//!   commit that crosses its threshold; a 1,000-transaction block crosses it
//!   every time. Here a PASSIVE checkpoint runs after indexing instead. It
//!   never blocks readers or the writer, and durability does not depend on
//!   it: a commit is durable once its WAL frames are synced.
//!
//! The maintainer runs at most every half second, not after every block:
//! each round syncs the disk, and on a busy chain those syncs would queue
//! in front of the commits that consensus waits for.
//!
//! Writers (block commits and index batches) share the store's one writer
//! connection behind an async mutex, so they queue in order instead of
//! spinning in sqlite's busy handler.

use std::sync::Arc;

use itc_chain::codec::decode;
use itc_chain::crypto::{AccountId, Hash};
use itc_chain::store::involved_accounts;
use itc_chain::tx::SignedTx;
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, Mutex};

use super::{corrupt, StoreError, ROWS_PER_STATEMENT};

/// Transactions indexed per sqlite transaction: small enough that a block
/// commit waiting behind a batch waits only a few milliseconds.
const INDEX_BATCH: i64 = 1_000;

/// The least time between two maintenance rounds.
const MAINTAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The indexed key of a 32-byte id (a hash or an account): its first 8
/// bytes as a big-endian integer.
pub(super) fn index_key(id: &[u8; 32]) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id[..8]);
    i64::from_be_bytes(first)
}

/// Runs until every clone of the store (every sender of `wake`) is gone.
pub(super) async fn maintain(
    pool: SqlitePool,
    writer: Arc<Mutex<SqliteConnection>>,
    mut wake: mpsc::Receiver<()>,
) {
    while wake.recv().await.is_some() {
        // Work in rounds at most every MAINTAIN_INTERVAL: each round costs
        // fsyncs, which would otherwise compete with every block's commit.
        tokio::time::sleep(MAINTAIN_INTERVAL).await;
        loop {
            if pool.is_closed() {
                return;
            }
            match index_batch(&writer).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "indexing failed; the next commit retries");
                    break;
                }
            }
        }
        if let Err(error) = checkpoint(&pool).await {
            tracing::warn!(%error, "WAL checkpoint failed; the next commit retries");
        }
    }
}

/// Copies committed WAL frames into the database file without blocking
/// anyone (a PASSIVE checkpoint).
pub(super) async fn checkpoint(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await?;
    Ok(())
}

/// Indexes the next batch of transactions above the watermark; returns how
/// many it indexed.
pub(super) async fn index_batch(writer: &Mutex<SqliteConnection>) -> Result<usize, StoreError> {
    let mut writer = writer.lock().await;
    let mut db = writer.begin().await?;
    let rows = sqlx::query(
        "SELECT seq, hash, tx FROM transactions \
         WHERE seq > (SELECT indexed_seq FROM indexer) ORDER BY seq LIMIT ?",
    )
    .bind(INDEX_BATCH)
    .fetch_all(&mut *db)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let last: i64 = last.try_get("seq")?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut accounts = Vec::with_capacity(rows.len() * 2);
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Missing {
            what: format!("a 32-byte id for transaction {seq}"),
        })?;
        ids.push((index_key(&hash), seq));
        let tx: SignedTx =
            decode(row.try_get::<&[u8], _>("tx")?).map_err(corrupt("transaction"))?;
        accounts.extend(
            involved_accounts(&tx)
                .iter()
                .map(|account| (index_key(&account.0), seq)),
        );
    }
    // Two accounts of one transaction may share a key.
    accounts.sort_unstable();
    accounts.dedup();
    for (table, column, pairs) in [
        ("transaction_ids", "hash_key", &ids),
        ("account_transactions", "account_key", &accounts),
    ] {
        for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
            let mut builder: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("INSERT INTO {table} ({column}, seq) "));
            builder.push_values(chunk, |mut b, (key, seq)| {
                b.push_bind(*key).push_bind(*seq);
            });
            builder.build().execute(&mut *db).await?;
        }
    }
    sqlx::query("UPDATE indexer SET indexed_seq = ?")
        .bind(last)
        .execute(&mut *db)
        .await?;
    db.commit().await?;
    Ok(rows.len())
}

/// A committed transaction by id: (seq, encoded transaction).
pub(super) async fn find_transaction(
    pool: &SqlitePool,
    hash: &Hash,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    // One statement, so the index and the tail are read at one snapshot.
    let row = sqlx::query(
        "SELECT t.seq, t.tx FROM transaction_ids i JOIN transactions t ON t.seq = i.seq \
         WHERE i.hash_key = ?1 AND t.hash = ?2 \
         UNION ALL \
         SELECT seq, tx FROM transactions \
         WHERE seq > (SELECT indexed_seq FROM indexer) AND hash = ?2 \
         LIMIT 1",
    )
    .bind(index_key(&hash.0))
    .bind(hash.0.to_vec())
    .fetch_optional(pool)
    .await?;
    row.map(|row| Ok((row.try_get("seq")?, row.try_get("tx")?)))
        .transpose()
}

/// Up to `limit` transactions concerning `account` with seq below `before`,
/// newest first, as (seq, transaction).
pub(super) async fn account_transactions(
    pool: &SqlitePool,
    account: &AccountId,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, SignedTx)>, StoreError> {
    let mut found = Vec::new();
    let mut cursor = before;
    // Candidates share the account's 8-byte key or are not indexed yet; the
    // full account is checked here, a page of candidates at a time.
    let page = limit.max(1) as i64;
    while found.len() < limit {
        let rows = sqlx::query(
            "SELECT seq, tx FROM ( \
               SELECT t.seq, t.tx FROM account_transactions a \
               JOIN transactions t ON t.seq = a.seq \
               WHERE a.account_key = ?1 AND a.seq < ?2 \
               UNION ALL \
               SELECT seq, tx FROM transactions \
               WHERE seq > (SELECT indexed_seq FROM indexer) AND seq < ?2 \
             ) ORDER BY seq DESC LIMIT ?3",
        )
        .bind(index_key(&account.0))
        .bind(cursor)
        .bind(page)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let tx: SignedTx =
                decode(row.try_get::<&[u8], _>("tx")?).map_err(corrupt("transaction"))?;
            cursor = seq;
            if found.len() < limit && involved_accounts(&tx).contains(account) {
                found.push((seq, tx));
            }
        }
        if (rows.len() as i64) < page {
            break;
        }
    }
    Ok(found)
}
