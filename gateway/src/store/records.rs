//! The replica's write-ahead records on sqlite (`consensus_records`).
//!
//! Appends are one fsync'd transaction per batch: the driver collects the
//! records a burst of input produced and writes them before it sends the
//! messages that depend on them. A stable checkpoint makes the votes and
//! certificates at or below it obsolete; they are deleted with it, and only
//! the latest view record is kept.

use itc_chain::codec::{decode, encode};
use itc_chain::evidence::EquivocationProof;
use itc_chain::pbft::Record;
use sqlx::{Row, Sqlite, Transaction};

use super::{corrupt, SqliteStore, StoreError};

fn kind(record: &Record) -> (&'static str, Option<i64>) {
    match record {
        Record::View { .. } => ("view", None),
        Record::Voted { height, .. } => ("voted", Some(*height as i64)),
        Record::Prepared(proof) => ("prepared", Some(proof.height() as i64)),
        Record::Stable(proof) => ("stable", Some(proof.height() as i64)),
    }
}

/// Writes `records` into `db`, pruning what a stable checkpoint or a newer
/// view makes obsolete.
pub(super) async fn write_records(
    db: &mut Transaction<'_, Sqlite>,
    records: &[Record],
) -> Result<(), StoreError> {
    for record in records {
        let (kind, height) = kind(record);
        sqlx::query("INSERT INTO consensus_records (kind, height, record) VALUES (?, ?, ?)")
            .bind(kind)
            .bind(height)
            .bind(encode(record))
            .execute(&mut **db)
            .await?;
        if let (Record::Stable(_), Some(height)) = (record, height) {
            sqlx::query(
                "DELETE FROM consensus_records WHERE \
                 (kind IN ('voted', 'prepared') AND height <= ?1) \
                 OR (kind = 'stable' AND height < ?1)",
            )
            .bind(height)
            .execute(&mut **db)
            .await?;
        }
        if let Record::View { .. } = record {
            sqlx::query(
                "DELETE FROM consensus_records WHERE kind = 'view' \
                 AND seq < (SELECT MAX(seq) FROM consensus_records WHERE kind = 'view')",
            )
            .execute(&mut **db)
            .await?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Appends `records` durably, in order, in one transaction.
    pub async fn append_records(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let _writing = self.writer.lock().await;
        let mut db = self.pool.begin().await?;
        write_records(&mut db, records).await?;
        db.commit().await?;
        Ok(())
    }

    /// Every record, oldest first.
    pub async fn load_records(&self) -> Result<Vec<Record>, StoreError> {
        self.decode_all(
            "SELECT record FROM consensus_records ORDER BY seq",
            "consensus record",
        )
        .await
    }

    /// Keeps an equivocation (once per offender, view and height).
    pub async fn record_evidence(&self, evidence: &EquivocationProof) -> Result<(), StoreError> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT OR IGNORE INTO evidence (offender, view, height, evidence) VALUES (?, ?, ?, ?)",
        )
        .bind(evidence.primary.0.to_vec())
        .bind(evidence.view as i64)
        .bind(evidence.height as i64)
        .bind(encode(evidence))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every equivocation kept, oldest view first.
    pub async fn evidence(&self) -> Result<Vec<EquivocationProof>, StoreError> {
        self.decode_all(
            "SELECT evidence FROM evidence ORDER BY view, height",
            "evidence",
        )
        .await
    }

    /// The first column of every row `sql` selects, decoded.
    async fn decode_all<T: borsh::BorshDeserialize + borsh::BorshSerialize>(
        &self,
        sql: &str,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let bytes: &[u8] = row.try_get(0)?;
                decode(bytes).map_err(corrupt(what))
            })
            .collect()
    }
}
