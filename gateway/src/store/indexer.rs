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
//!   mid-batch leaves either the whole batch or none of it. They live in a
//!   database file of their own ([`index_path`], `migrations/index/`),
//!   written with `synchronous = NORMAL` by a writer of its own: a batch
//!   never holds the chain's writer, which block commits and the replica's
//!   records queue for, and never syncs the chain's file. (In the chain's
//!   file, a batch held that writer for 5–19 ms every half second, the
//!   largest source of PBFT's p99 at 1,000 tx/s; see BENCHMARKS.md.)
//!   Readers take the index's watermark and entries at one snapshot, then
//!   scan the chain's rows above the watermark, so a lookup is complete
//!   even while the indexer lags (geth's transaction indexer makes the same
//!   trade). The watermark names the id of the transaction it stops at: an
//!   index left beside a chain database it was not made from is ignored,
//!   then rebuilt.
//! - **WAL checkpoints**. sqlite's automatic checkpoint runs inside the
//!   commit that crosses its threshold; a 1,000-transaction block crosses it
//!   every time. Here the maintainer checkpoints after indexing instead, in
//!   two passes ([`checkpoint`]). The first is PASSIVE and runs beside the
//!   writer: it copies most frames and blocks no one. But frames appended
//!   while it runs stay behind, and sqlite starts the WAL over only when
//!   every frame is in the database file, so under steady load the WAL
//!   never started over: it grew by about 10 MB a second per replica at
//!   1,000 tx/s, each write extending the file (BENCHMARKS.md). The second
//!   pass holds the chain's writer, so nothing is appended while it copies
//!   the few frames left; the next write then starts the WAL from its
//!   beginning. Durability does not depend on either: a commit is durable
//!   once its WAL frames are synced.
//!
//! The maintainer runs at most every half second, not after every block:
//! a checkpoint syncs the disk, and on a busy chain those syncs would queue
//! in front of the commits that consensus waits for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use itc_chain::codec::decode;
use itc_chain::crypto::{AccountId, Hash};
use itc_chain::store::involved_accounts;
use itc_chain::tx::SignedTx;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, Mutex};

use super::{corrupt, Durability, Script, StoreError, TxRow};

/// Transactions indexed per sqlite transaction: it bounds what one batch
/// holds in memory, and how much a crash can make the indexer redo.
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

/// Where the lookup indexes of the chain database at `chain` live: beside
/// it, named after it (`gw.sqlite` → `gw.sqlite-index`).
pub fn index_path(chain: &Path) -> PathBuf {
    let mut name = chain.file_name().unwrap_or_default().to_os_string();
    name.push("-index");
    chain.with_file_name(name)
}

/// The lookup indexes' database: a pool for readers, and the one writer
/// the indexer uses.
pub(super) struct Index {
    pool: SqlitePool,
    writer: Mutex<SqliteConnection>,
}

impl Index {
    /// Opens (creating if needed) and migrates the index database at
    /// `path`.
    pub(super) async fn open(path: &Path) -> Result<Index, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Derived data, written by scripts that say so themselves
            // (`Durability::Written`).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations/index").run(&pool).await?;
        let writer = Mutex::new(options.connect().await?);
        Ok(Index { pool, writer })
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs until every clone of the store (every sender of `wake`) is gone.
pub(super) async fn maintain(
    chain: SqlitePool,
    writer: Arc<Mutex<SqliteConnection>>,
    index: Arc<Index>,
    mut wake: mpsc::Receiver<()>,
) {
    while wake.recv().await.is_some() {
        // Work in rounds at most every MAINTAIN_INTERVAL: a checkpoint
        // syncs the disk, which every block's commit also waits for.
        tokio::time::sleep(MAINTAIN_INTERVAL).await;
        loop {
            if chain.is_closed() {
                return;
            }
            match index_batch(&chain, &index).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "indexing failed; the next commit retries");
                    break;
                }
            }
        }
        if let Err(error) = checkpoint(&chain, &writer).await {
            tracing::warn!(%error, "WAL checkpoint failed; the next commit retries");
        }
    }
}

/// Copies the WAL into the database file, so that the next write starts
/// the WAL over: first beside the writer (a PASSIVE checkpoint, blocking
/// no one), then, for the frames appended meanwhile, holding the chain's
/// writer. A reader still on an older snapshot can hold frames back; the
/// next round gets them.
pub(super) async fn checkpoint(
    pool: &SqlitePool,
    writer: &Mutex<SqliteConnection>,
) -> Result<(), StoreError> {
    const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    sqlx::query(CHECKPOINT).execute(pool).await?;
    sqlx::query(CHECKPOINT)
        .execute(&mut *writer.lock().await)
        .await?;
    Ok(())
}

/// The index's watermark: (indexed_seq, id of the transaction there).
async fn watermark(db: &mut SqliteConnection) -> Result<(i64, Option<Vec<u8>>), StoreError> {
    let row = sqlx::query("SELECT indexed_seq, indexed_hash FROM indexer")
        .fetch_one(&mut *db)
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Whether the chain's transaction at `seq` has the id the index recorded
/// for it, that is, whether the index was made from this chain database.
async fn made_from(chain: &SqlitePool, seq: i64, id: Option<&[u8]>) -> Result<bool, StoreError> {
    if seq < 0 {
        return Ok(true);
    }
    let found: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM transactions WHERE seq = ?")
        .bind(seq)
        .fetch_optional(chain)
        .await?;
    Ok(found.is_some() && found.as_deref() == id)
}

/// Indexes the next batch of transactions above the watermark; returns how
/// many it indexed. The chain database is only read, through its pool.
pub(super) async fn index_batch(chain: &SqlitePool, index: &Index) -> Result<usize, StoreError> {
    let mut writer = index.writer.lock().await;
    let (mut indexed, id) = watermark(&mut writer).await?;
    if !made_from(chain, indexed, id.as_deref()).await? {
        tracing::warn!("the chain database is not the one indexed; rebuilding its lookup indexes");
        let mut script = Script::new(Durability::Written);
        for statement in [
            "DELETE FROM transaction_ids",
            "DELETE FROM account_transactions",
            "UPDATE indexer SET indexed_seq = -1, indexed_hash = NULL",
        ] {
            script.statement(statement);
        }
        script.run(&mut writer).await?;
        indexed = -1;
    }
    let rows =
        sqlx::query("SELECT seq, hash, tx FROM transactions WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(indexed)
            .bind(INDEX_BATCH)
            .fetch_all(chain)
            .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let last_seq: i64 = last.try_get("seq")?;
    let last_id: Vec<u8> = last.try_get("hash")?;
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
    // Derived data: a crash may lose the last batches, and their entries
    // go with their watermark (one transaction each).
    let mut script = Script::new(Durability::Written);
    for (table, column, pairs) in [
        ("transaction_ids", "hash_key", ids),
        ("account_transactions", "account_key", accounts),
    ] {
        script.insert_rows(
            &format!("INSERT INTO {table} ({column}, seq) "),
            "",
            pairs,
            |mut row, (key, seq)| {
                row.push_bind(key).push_bind(seq);
            },
        );
    }
    script
        .statement("UPDATE indexer SET indexed_seq = ")
        .push_bind(last_seq)
        .push(", indexed_hash = ")
        .push_bind(last_id);
    script.run(&mut writer).await?;
    Ok(rows.len())
}

/// The seqs the index holds under `key` in `table` below `before`, newest
/// first (at most `limit`; -1: all), and the watermark they are complete
/// up to, read at one snapshot of the index. An index not made from this
/// chain database counts as empty (watermark -1) until it is rebuilt.
async fn indexed(
    chain: &SqlitePool,
    index: &Index,
    (table, column): (&str, &str),
    key: i64,
    before: i64,
    limit: i64,
) -> Result<(i64, Vec<i64>), StoreError> {
    let mut db = index.pool.begin().await?;
    let (mark, id) = watermark(&mut db).await?;
    let seqs: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT seq FROM {table} WHERE {column} = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
    ))
    .bind(key)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
    db.commit().await?;
    if !made_from(chain, mark, id.as_deref()).await? {
        return Ok((-1, Vec::new()));
    }
    Ok((mark, seqs))
}

/// The chain's rows with these seqs, newest first.
async fn rows_at(chain: &SqlitePool, seqs: &[i64]) -> Result<Vec<TxRow>, StoreError> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let mut query: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT seq, hash, tx FROM transactions WHERE seq IN (");
    let mut list = query.separated(", ");
    for seq in seqs {
        list.push_bind(*seq);
    }
    query.push(") ORDER BY seq DESC");
    let rows = query.build().fetch_all(chain).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect()
}

/// A committed transaction by id: (seq, encoded transaction).
pub(super) async fn find_transaction(
    chain: &SqlitePool,
    index: &Index,
    hash: &Hash,
) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    // The index first, then the chain: every row at or below the
    // watermark is in the index, and the chain's snapshot, taken later,
    // holds every row above it.
    let (mark, seqs) = indexed(
        chain,
        index,
        ("transaction_ids", "hash_key"),
        index_key(&hash.0),
        i64::MAX,
        -1,
    )
    .await?;
    let id = hash.0.to_vec();
    // The indexed candidates (rowid lookups; an 8-byte key may be shared),
    // then the tail (a rowid range).
    if let Some((seq, _, tx)) = rows_at(chain, &seqs)
        .await?
        .into_iter()
        .find(|(_, found, _)| *found == id)
    {
        return Ok(Some((seq, tx)));
    }
    let row = sqlx::query("SELECT seq, tx FROM transactions WHERE seq > ? AND hash = ? LIMIT 1")
        .bind(mark)
        .bind(id)
        .fetch_optional(chain)
        .await?;
    row.map(|row| Ok((row.try_get("seq")?, row.try_get("tx")?)))
        .transpose()
}

/// Up to `limit` transactions concerning `account` with seq below `before`,
/// newest first, as (seq, transaction).
pub(super) async fn account_transactions(
    chain: &SqlitePool,
    index: &Index,
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
        let (mark, mut seqs) = indexed(
            chain,
            index,
            ("account_transactions", "account_key"),
            index_key(&account.0),
            cursor,
            page,
        )
        .await?;
        let tail: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM transactions WHERE seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(mark)
        .bind(cursor)
        .bind(page)
        .fetch_all(chain)
        .await?;
        // The newest page of both (they do not overlap: the index ends at
        // the watermark, the tail starts above it).
        seqs.extend(tail);
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.truncate(page as usize);
        for (seq, _, tx) in rows_at(chain, &seqs).await? {
            let tx: SignedTx = decode(&tx).map_err(corrupt("transaction"))?;
            if found.len() < limit && involved_accounts(&tx).contains(account) {
                found.push((seq, tx));
            }
        }
        match seqs.last() {
            Some(last) if seqs.len() as i64 == page => cursor = *last,
            _ => break,
        }
    }
    Ok(found)
}
