//! The chain store on sqlite (sqlx), implementing [`itc_chain::store::ChainStore`].
//!
//! - WAL journal. Replica records, the DAG's writes and blocks stored
//!   through [`ChainStore::commit_block`] are synced before their write
//!   returns (`synchronous = FULL`): they survive a crash *and* a power cut
//!   (a Raspberry Pi's SD card gets both). A replica's write of committed
//!   blocks alone survives a crash and is synced by the next synced write;
//!   why that is enough is at [`SqliteStore::commit_blocks_with_records`].
//! - One round trip to sqlx's worker thread per write ([`script`]).
//! - One sqlite transaction per block: the header, the certificate, every
//!   transaction, every state entry it changes, and the device projection
//!   commit together or not at all. Merkle tree nodes are not stored: they
//!   are derived from the entries and rebuilt on open.
//! - Transactions are appended in (height, index) order as rowids, so their
//!   inserts extend the table instead of splitting pages all over it.
//! - Lookup indexes and WAL checkpoints are kept off the commit path, in a
//!   background maintainer ([`indexer`]); the indexes live in a database
//!   file of their own, so indexing never holds this one's writer. Lookups
//!   stay complete meanwhile.
//! - Rows are written with multi-row statements (a few hundred rows per
//!   statement), because per-row round trips through sqlx's worker thread
//!   would dominate the time to store a block of 1,000 transactions.
//! - The schema lives in `migrations/` and is applied on open.

use std::path::Path;
use std::sync::Arc;

use itc_chain::block::{Block, CommitCertificate, Header};
use itc_chain::codec::{decode, encode, BoundedVec, DecodeError};
use itc_chain::crypto::{AccountId, Hash};
use itc_chain::ledger::Executed;
use itc_chain::state::{StateKey, StateValue};
use itc_chain::store::{ChainStore, Snapshot, TxLocation};
use itc_chain::types::{DeviceKind, Height};
use itc_chain::validators::ValidatorSet;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqliteConnection};
use tokio::sync::{mpsc, Mutex};

pub mod dag;
mod indexer;
pub use indexer::index_path;
pub mod mesh;
mod records;
mod script;
pub(crate) use script::{Durability, Script};

#[cfg(test)]
pub(crate) use records::tests::{store as test_store, voted as test_vote};

/// Rows per multi-row statement; each row binds at most 7 values, well under
/// sqlite's limit of 32,766 bound values per statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// sqlite's page cache per connection: 16 MiB (negative = KiB), small enough
/// for a Raspberry Pi, large enough to keep the hot index pages.
const CACHE_SIZE: &str = "-16384";

/// The bytes a WAL keeps on disk once it starts over (16 MiB).
const WAL_SIZE_LIMIT: &str = "16777216";

/// A stored pair of blobs: (encoded key, encoded value).
type BlobPair = (Vec<u8>, Vec<u8>);

/// A transaction row: (seq, id, encoded transaction).
pub(super) type TxRow = (i64, Vec<u8>, Vec<u8>);

/// Bits of `seq` that hold the index in the block: a block holds at most
/// 10,000 transactions, well under 2^20.
const SEQ_INDEX_BITS: u32 = 20;

/// `seq` of a transaction: height * 2^20 + index.
fn tx_seq(height: i64, index: usize) -> i64 {
    (height << SEQ_INDEX_BITS) | index as i64
}

/// Where the transaction with this `seq` sits: (height, index).
fn seq_location(seq: i64) -> (Height, u32) {
    (
        (seq >> SEQ_INDEX_BITS) as Height,
        (seq & ((1 << SEQ_INDEX_BITS) - 1)) as u32,
    )
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a stored {what} does not decode: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("the store is missing {what}")]
    Missing { what: String },
    #[error("a sealed secret: {reason}")]
    Sealed { reason: String },
}

/// The sqlite chain store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection the store's own writes go through (block
    /// commits, replica records, the DAG), held while
    /// writing, so writers queue in order instead of spinning in sqlite's
    /// busy handler. One connection, not any of the pool's: sqlite drops a
    /// connection's whole page cache when another connection wrote since
    /// its last transaction, so writers taking turns over the pool started
    /// every block on a cold cache, re-reading the B-tree pages they were
    /// about to change. The pool serves reads.
    writer: Arc<Mutex<SqliteConnection>>,
    /// The lookup indexes, in their own database file ([`indexer`]).
    index: Arc<indexer::Index>,
    /// Wakes the maintainer after a commit; when the last clone of the
    /// store is dropped, the maintainer ends.
    maintain: mpsc::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it and
    /// starts the background maintainer (see [`indexer`]).
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let (store, wake) = SqliteStore::open_inner(path).await?;
        tokio::spawn(indexer::maintain(
            store.pool.clone(),
            store.writer.clone(),
            store.index.clone(),
            wake,
        ));
        // Index whatever a crash left unindexed.
        let _ = store.maintain.try_send(());
        Ok(store)
    }

    /// Like [`SqliteStore::open`], without the background maintainer: the
    /// caller runs [`SqliteStore::maintain_now`] when it chooses (tests that
    /// must see the unindexed tail, offline tools). Until then lookups scan
    /// the unindexed rows and the WAL is not checkpointed.
    pub async fn open_manual(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore::open_inner(path).await?.0)
    }

    async fn open_inner(path: &Path) -> Result<(SqliteStore, mpsc::Receiver<()>), StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5))
            .pragma("cache_size", CACHE_SIZE)
            // Checkpoints are the maintainer's job, off the commit path.
            .pragma("wal_autocheckpoint", "0")
            // A WAL that grew (a reader held frames back) is cut back to
            // this when it starts over.
            .pragma("journal_size_limit", WAL_SIZE_LIMIT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let writer = options.connect().await?;
        let index = indexer::Index::open(&indexer::index_path(path)).await?;
        let (maintain, wake) = mpsc::channel(1);
        let store = SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(writer)),
            index: Arc::new(index),
            maintain,
        };
        Ok((store, wake))
    }

    /// Stores blocks (in height order) and replica records (in the order
    /// they were made) in one sqlite transaction: a node's writes that
    /// queued up while the disk was busy go together, in one round trip to
    /// sqlx's worker ([`script`]).
    ///
    /// The commit is synced when there are records, and only written when
    /// there are only blocks ([`Durability::Written`]). A replica's records
    /// are its promises (§4.2: what it prepared and what it voted to
    /// commit); they must survive a power cut before any message that
    /// depends on them leaves. A committed block need not: its prepared
    /// certificate, which carries the whole block, was synced in this
    /// replica's records before its COMMIT left, and in 2f+1 replicas'
    /// before it was committed. A power cut that takes the block's rows
    /// (and only those: the WAL is synced in order, by the next round's
    /// records at the latest) leaves a replica behind its own certificate,
    /// as a crash between the two writes always could, and it catches up
    /// from its peers; the block itself cannot change.
    pub async fn commit_blocks_with_records(
        &self,
        blocks: &[(&Executed, Option<&CommitCertificate>)],
        records: &[itc_chain::pbft::Record],
    ) -> Result<(), StoreError> {
        let durability = if records.is_empty() {
            Durability::Written
        } else {
            Durability::Synced
        };
        self.write(blocks, records, durability).await
    }

    /// Runs `script` on the writer connection, which all of the store's
    /// own writes go through.
    async fn run(&self, script: Script) -> Result<(), StoreError> {
        Ok(script.run(&mut *self.writer.lock().await).await?)
    }

    /// Blocks and records in one sqlite transaction, as durable as asked.
    async fn write(
        &self,
        blocks: &[(&Executed, Option<&CommitCertificate>)],
        records: &[itc_chain::pbft::Record],
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut script = Script::new(durability);
        for (executed, certificate) in blocks {
            push_block(&mut script, executed, *certificate);
        }
        records::push_records(&mut script, records);
        self.run(script).await?;
        if !blocks.is_empty() {
            // A full channel means the maintainer is already due to run.
            let _ = self.maintain.try_send(());
        }
        Ok(())
    }

    /// Does the maintainer's work now: indexes every committed transaction
    /// and checkpoints the WAL.
    pub async fn maintain_now(&self) -> Result<(), StoreError> {
        while indexer::index_batch(&self.pool, &self.index).await? > 0 {}
        indexer::checkpoint(&self.pool, &self.writer).await
    }

    /// Up to `limit` committed transactions concerning `account` (as sender
    /// or counterparty), newest first, strictly before `before` if given.
    pub async fn account_transactions(
        &self,
        account: &AccountId,
        before: Option<(Height, u32)>,
        limit: usize,
    ) -> Result<Vec<TxLocation>, StoreError> {
        let before = before.map_or(i64::MAX, |(height, index)| {
            tx_seq(height as i64, index as usize)
        });
        let found =
            indexer::account_transactions(&self.pool, &self.index, account, before, limit).await?;
        Ok(found
            .into_iter()
            .map(|(seq, tx)| {
                let (height, index) = seq_location(seq);
                TxLocation { height, index, tx }
            })
            .collect())
    }

    /// One entry of the latest stored state (written with its block, in
    /// the same sqlite transaction).
    pub async fn state_value(&self, key: &StateKey) -> Result<Option<StateValue>, StoreError> {
        let Some(row) = sqlx::query("SELECT value FROM state WHERE key = ?")
            .bind(encode(key))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let bytes: Vec<u8> = row.try_get(0)?;
        Ok(Some(decode(&bytes).map_err(corrupt("state entry"))?))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `PRAGMA integrity_check`'s verdict (`"ok"` when sound).
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let row = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// The height of the last committed block, if any.
    pub async fn tip_height(&self) -> Result<Option<Height>, StoreError> {
        let row = sqlx::query("SELECT MAX(height) FROM headers")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(|h| h as Height))
    }

    /// Headers with certificates for `from..=to`, in order.
    pub async fn headers(
        &self,
        from: Height,
        to: Height,
    ) -> Result<Vec<(Header, Option<CommitCertificate>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT header, certificate FROM headers WHERE height BETWEEN ? AND ? ORDER BY height",
        )
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(header_row).collect()
    }

    /// The validator set with this hash, if the chain ever named it.
    pub async fn validator_set(&self, hash: &Hash) -> Result<Option<ValidatorSet>, StoreError> {
        let row = sqlx::query("SELECT encoded FROM validator_sets WHERE hash = ?")
            .bind(hash.0.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let bytes: Vec<u8> = row.try_get(0)?;
            decode(&bytes).map_err(|source| StoreError::Corrupt {
                what: "validator set",
                source,
            })
        })
        .transpose()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.index.close().await;
    }
}

pub(crate) fn corrupt(what: &'static str) -> impl Fn(DecodeError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

fn header_row(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<(Header, Option<CommitCertificate>), StoreError> {
    let header: Vec<u8> = row.try_get("header")?;
    let certificate: Option<Vec<u8>> = row.try_get("certificate")?;
    let header = decode(&header).map_err(corrupt("header"))?;
    let certificate = certificate
        .map(|c| decode(&c).map_err(corrupt("certificate")))
        .transpose()?;
    Ok((header, certificate))
}

fn kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Zigbee => "zigbee",
        DeviceKind::BleMesh => "ble-mesh",
        DeviceKind::Mqtt => "mqtt",
    }
}

/// Adds a block's writes to `script`: its header and certificate, its
/// transactions, the state entries it changes and the device projection.
fn push_block(script: &mut Script, executed: &Executed, certificate: Option<&CommitCertificate>) {
    let block = &executed.block;
    let header = &block.header;
    let height = header.height as i64;

    script.insert_rows(
        "INSERT INTO headers (height, hash, header, certificate, time_ms, tx_count) ",
        "",
        [header],
        |mut row, header| {
            row.push_bind(height)
                .push_bind(header.hash().0.to_vec())
                .push_bind(encode(header))
                .push_bind(certificate.map(encode))
                .push_bind(header.time_ms as i64)
                .push_bind(block.txs.len() as i64);
        },
    );

    // Every set the block makes known (the genesis's, a change's pending
    // set, the one an epoch activates), kept for light clients.
    let sets = executed
        .changes
        .writes
        .iter()
        .filter_map(|(_, value)| match value {
            Some(StateValue::Validators(sets)) => Some([&sets.active, &sets.pending]),
            _ => None,
        });
    script.insert_rows(
        "INSERT OR IGNORE INTO validator_sets (hash, encoded) ",
        "",
        sets.flatten(),
        |mut row, set| {
            row.push_bind(set.hash().0.to_vec()).push_bind(encode(set));
        },
    );

    // Transactions, appended in order; the indexer derives their
    // lookup indexes after the commit.
    script.insert_rows(
        "INSERT INTO transactions (seq, hash, tx) ",
        "",
        block
            .txs
            .as_slice()
            .iter()
            .zip(executed.tx_ids())
            .enumerate(),
        |mut row, (i, (tx, id))| {
            row.push_bind(tx_seq(height, i))
                .push_bind(id.0.to_vec())
                .push_bind(encode(tx));
        },
    );

    // State entries (the tree is derived from them on open).
    let rows = executed.changes.rows();
    script.where_in("DELETE FROM state", "key", rows.deletes);
    script.insert_rows(
        "INSERT OR REPLACE INTO state (key, value) ",
        "",
        rows.upserts,
        |mut row, (k, v)| {
            row.push_bind(k).push_bind(v);
        },
    );

    // The device projection.
    let mut gone = Vec::new();
    let mut devices = Vec::new();
    for (key, value) in &executed.changes.writes {
        if let StateKey::Device { device } = key {
            match value {
                Some(StateValue::Device(d)) => devices.push((device, d)),
                _ => gone.push(device.as_str().to_owned()),
            }
        }
    }
    script.insert_rows(
        "INSERT OR REPLACE INTO devices \
             (id, device_key, kind, model, registrar, owner, registered_at) ",
        "",
        devices,
        |mut row, (device, d)| {
            row.push_bind(device.as_str().to_owned())
                .push_bind(d.key.0.to_vec())
                .push_bind(kind_name(d.kind))
                .push_bind(d.model.as_str().to_owned())
                .push_bind(d.registrar.0.to_vec())
                .push_bind(d.owner.map(|o| o.0.to_vec()))
                .push_bind(d.registered_at as i64);
        },
    );
    script.where_in("DELETE FROM devices", "id", gone);
}

impl ChainStore for SqliteStore {
    type Error = StoreError;

    async fn commit_block(
        &mut self,
        executed: &Executed,
        certificate: Option<&CommitCertificate>,
    ) -> Result<(), StoreError> {
        // A caller outside a replica has no certificate on disk to fall
        // back on: its block is synced.
        self.write(&[(executed, certificate)], &[], Durability::Synced)
            .await
    }

    async fn load(&mut self) -> Result<Option<Snapshot>, StoreError> {
        let genesis = sqlx::query("SELECT header FROM headers WHERE height = 0")
            .fetch_optional(&self.pool)
            .await?;
        let Some(genesis) = genesis else {
            return Ok(None);
        };
        // One read transaction, so the tip, state and nodes agree.
        let mut db = self.pool.begin().await?;
        let tip = sqlx::query("SELECT header FROM headers ORDER BY height DESC LIMIT 1")
            .fetch_one(&mut *db)
            .await?;
        let pairs = |rows: Vec<sqlx::sqlite::SqliteRow>| -> Result<Vec<BlobPair>, sqlx::Error> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        let state = pairs(
            sqlx::query("SELECT key, value FROM state")
                .fetch_all(&mut *db)
                .await?,
        )?;
        db.commit().await?;
        Ok(Some(Snapshot {
            genesis_header: genesis.try_get("header")?,
            tip_header: tip.try_get("header")?,
            state,
        }))
    }

    async fn block(
        &mut self,
        height: Height,
    ) -> Result<Option<(Block, Option<CommitCertificate>)>, StoreError> {
        let mut db = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT header, certificate FROM headers WHERE height = ?")
            .bind(height as i64)
            .fetch_optional(&mut *db)
            .await?
        else {
            return Ok(None);
        };
        let (header, certificate) = header_row(&row)?;
        let first = tx_seq(height as i64, 0);
        let rows =
            sqlx::query("SELECT tx FROM transactions WHERE seq BETWEEN ? AND ? ORDER BY seq")
                .bind(first)
                .bind(first | ((1 << SEQ_INDEX_BITS) - 1))
                .fetch_all(&mut *db)
                .await?;
        db.commit().await?;
        let txs = rows
            .iter()
            .map(|r| {
                let bytes: Vec<u8> = r.try_get(0)?;
                decode(&bytes).map_err(corrupt("transaction"))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let txs = BoundedVec::new(txs).map_err(|e| StoreError::Missing {
            what: format!("a valid body for block {height}: {e}"),
        })?;
        Ok(Some((Block { header, txs }, certificate)))
    }

    async fn transaction(&mut self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        let Some((seq, tx)) = indexer::find_transaction(&self.pool, &self.index, hash).await?
        else {
            return Ok(None);
        };
        let (height, index) = seq_location(seq);
        Ok(Some(TxLocation {
            height,
            index,
            tx: decode(&tx).map_err(corrupt("transaction"))?,
        }))
    }
}
