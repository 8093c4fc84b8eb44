//! A write to one of the store's databases (the chain's, the lookup
//! indexes') as one script: every statement of one sqlite transaction,
//! sent to sqlx's worker in one round trip.
//!
//! Why: sqlx runs a sqlite connection on a thread of its own, and each
//! query executed is a hand-over to that thread and back: two context
//! switches, and while the cores are busy, a wait for one each way. A
//! block's write was eight such round trips (begin, header, transactions,
//! state deletes and upserts, devices, records, commit); at a thousand
//! transfers a second on two cores they were most of the process's
//! context switches (BENCHMARKS.md, "One round trip per write"). sqlx runs
//! every statement of one query string in order, binding the `?`
//! parameters across them by position, so a write here is built as one
//! string — `BEGIN IMMEDIATE; …; COMMIT` — and executed once.
//!
//! A script also says how durable its commit is ([`Durability`]), because
//! not every write needs the sync that `synchronous = FULL` costs. Every
//! write on a store's writer connection is a script, and each sets the
//! connection's sync level itself, so none depends on the one before.

use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::ROWS_PER_STATEMENT;

/// How a script's commit reaches the disk (sqlite's `synchronous` in WAL
/// mode, set by the script before it begins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced before the commit returns: survives a power cut.
    Synced,
    /// In the WAL, visible to readers, and synced by the next synced
    /// commit or checkpoint (the WAL is one file, synced in order). A power
    /// cut may lose it, and everything after it, but never reorders: the
    /// database stays as some earlier commit left it. A process crash loses
    /// nothing.
    Written,
}

/// The statements of one transaction, built before anything runs.
pub(crate) struct Script {
    query: QueryBuilder<'static, Sqlite>,
    statements: usize,
}

impl Script {
    pub(crate) fn new(durability: Durability) -> Script {
        let level = match durability {
            Durability::Synced => "FULL",
            Durability::Written => "NORMAL",
        };
        Script {
            query: QueryBuilder::new(format!("PRAGMA synchronous = {level}; BEGIN IMMEDIATE")),
            statements: 0,
        }
    }

    /// Whether no statement was added.
    fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// Starts a statement with `sql`; the caller pushes its binds (and any
    /// more SQL) on what this returns.
    pub(crate) fn statement(&mut self, sql: &str) -> &mut QueryBuilder<'static, Sqlite> {
        self.statements += 1;
        self.query.push("; ");
        self.query.push(sql);
        &mut self.query
    }

    /// Inserts `rows` with one multi-row statement per
    /// [`ROWS_PER_STATEMENT`]: `head` is the statement up to `VALUES`,
    /// `tail` follows the value list.
    pub(crate) fn insert_rows<T>(
        &mut self,
        head: &str,
        tail: &str,
        rows: impl IntoIterator<Item = T>,
        mut bind: impl FnMut(Separated<'_, 'static, Sqlite, &'static str>, T),
    ) {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            self.statement(head)
                .push_values(rows.by_ref().take(ROWS_PER_STATEMENT), &mut bind);
            self.query.push(tail);
        }
    }

    /// `statement` (a DELETE or UPDATE) on the rows whose `column` is one
    /// of `keys`.
    pub(crate) fn where_in<K>(&mut self, statement: &str, column: &str, keys: Vec<K>)
    where
        K: 'static + Send + sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite>,
    {
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let query = self.statement(&format!("{statement} WHERE {column} IN ("));
            let mut list = query.separated(", ");
            for key in keys.by_ref().take(ROWS_PER_STATEMENT) {
                list.push_bind(key);
            }
            self.query.push(")");
        }
    }

    /// Runs the script on `db` in one round trip: all of it commits, or
    /// none of it (a failed statement rolls the transaction back).
    pub(crate) async fn run(mut self, db: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if self.is_empty() {
            return Ok(());
        }
        self.query.push("; COMMIT");
        let ran = self.query.build().execute(&mut *db).await;
        if ran.is_err() {
            // The transaction the failure left open is undone; an error
            // here means there was none.
            let _ = sqlx::query("ROLLBACK").execute(&mut *db).await;
        }
        ran.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sqlx::{ConnectOptions, Row};

    async fn connection() -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("script.sqlite"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .execute(&mut db)
            .await
            .unwrap();
        (dir, db)
    }

    /// Adds an insert of `rows` into `t` to `script`.
    fn insert(script: &mut Script, rows: impl IntoIterator<Item = (i64, Vec<u8>)>) {
        script.insert_rows("INSERT INTO t (k, v) ", "", rows, |mut row, (k, v)| {
            row.push_bind(k).push_bind(v);
        });
    }

    async fn synchronous(db: &mut SqliteConnection) -> i64 {
        sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *db)
            .await
            .unwrap()
            .get(0)
    }

    async fn rows(db: &mut SqliteConnection) -> Vec<(i64, Vec<u8>)> {
        sqlx::query("SELECT k, v FROM t ORDER BY k")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    #[tokio::test]
    async fn binds_run_across_statements_and_chunks_in_order() {
        let (_dir, mut db) = connection().await;
        let mut script = Script::new(Durability::Written);
        let count = ROWS_PER_STATEMENT as i64 * 2 + 7;
        let value = |k: i64| k.to_be_bytes().to_vec();
        insert(&mut script, (0..count).map(|k| (k, value(k))));
        // More keys than one statement takes.
        let gone = ROWS_PER_STATEMENT as i64 + 3;
        script.where_in("DELETE FROM t", "v", (1..=gone).map(value).collect());
        script
            .statement("UPDATE t SET v = ")
            .push_bind(b"last".to_vec())
            .push(" WHERE k = ")
            .push_bind(0_i64);
        script.run(&mut db).await.unwrap();
        let left = rows(&mut db).await;
        let expected: Vec<(i64, Vec<u8>)> = std::iter::once((0, b"last".to_vec()))
            .chain((gone + 1..count).map(|k| (k, value(k))))
            .collect();
        assert_eq!(left, expected);
        assert_eq!(synchronous(&mut db).await, 1, "a written script: NORMAL");
        let mut script = Script::new(Durability::Synced);
        insert(&mut script, [(count, value(count))]);
        script.run(&mut db).await.unwrap();
        assert_eq!(synchronous(&mut db).await, 2, "a synced script: FULL");
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_back_the_whole_script() {
        let (_dir, mut db) = connection().await;
        let mut script = Script::new(Durability::Written);
        insert(&mut script, [(1, vec![1u8])]);
        // The same key again: a constraint violation after a good insert.
        insert(&mut script, [(1, vec![2u8])]);
        assert!(script.run(&mut db).await.is_err());
        assert_eq!(
            rows(&mut db).await,
            Vec::new(),
            "the first insert was undone"
        );
        // The connection takes the next script as usual.
        let mut script = Script::new(Durability::Synced);
        insert(&mut script, [(1, vec![3u8])]);
        script.run(&mut db).await.unwrap();
        assert_eq!(rows(&mut db).await, vec![(1, vec![3u8])]);
    }
}
