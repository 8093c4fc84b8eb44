//! The DAG side chain's rows (`dag_txs`, `dag_progress`).
//!
//! The DAG service writes in batches — the transactions it took and the
//! confirmations of the blocks it processed, with the height reached — one
//! sqlite transaction each, so a restart resumes from a height whose
//! confirmations are all stored. Pruning drops the bodies of what the
//! tangle forgot (confirmed history older than the depth, tips aside) and
//! keeps the outcome.

use itc_chain::codec::{decode, encode};
use itc_chain::crypto::Hash;
use itc_chain::dag::{DagTx, Status};
use itc_chain::types::Height;
use sqlx::Row;

use super::{corrupt, Durability, Script, SqliteStore, StoreError};

/// What one batch writes.
#[derive(Debug, Default)]
pub struct DagBatch {
    /// (id, transaction), as the tangle took them.
    pub taken: Vec<(Hash, DagTx)>,
    /// (id, height, applied).
    pub confirmed: Vec<(Hash, Height, bool)>,
    pub height: Option<Height>,
    /// Pruned from the tangle: their bodies go, their outcomes stay.
    pub forgotten: Vec<Hash>,
}

impl DagBatch {
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
            && self.confirmed.is_empty()
            && self.height.is_none()
            && self.forgotten.is_empty()
    }
}

/// A stored transaction and its outcome, if confirmed.
pub type StoredDagTx = (DagTx, Option<Status>);

/// A status row: the body (gone once pruned) and the outcome.
pub type DagRow = (Option<DagTx>, Option<Status>);

/// A row's outcome: confirmed, or conflicting, at its height.
fn outcome(row: &sqlx::sqlite::SqliteRow) -> Result<Option<Status>, StoreError> {
    let height: Option<i64> = row.try_get("height")?;
    let applied: Option<i64> = row.try_get("applied")?;
    Ok(height.map(|h| {
        let height = h as Height;
        match applied == Some(1) {
            true => Status::Confirmed { height },
            false => Status::Conflicting { height },
        }
    }))
}

impl SqliteStore {
    pub async fn dag_write(&self, batch: &DagBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut script = Script::new(Durability::Synced);
        script.insert_rows(
            "INSERT OR IGNORE INTO dag_txs (id, tx) ",
            "",
            &batch.taken,
            |mut row, (id, tx)| {
                row.push_bind(id.0.to_vec()).push_bind(encode(tx));
            },
        );
        // The rows exist (taken before they were confirmed): each upsert
        // updates its outcome.
        script.insert_rows(
            "INSERT INTO dag_txs (id, height, applied) ",
            " ON CONFLICT (id) DO UPDATE SET height = excluded.height, applied = excluded.applied",
            &batch.confirmed,
            |mut row, (id, height, applied)| {
                row.push_bind(id.0.to_vec())
                    .push_bind(*height as i64)
                    .push_bind(i64::from(*applied));
            },
        );
        let forgotten: Vec<Vec<u8>> = batch.forgotten.iter().map(|id| id.0.to_vec()).collect();
        script.where_in("UPDATE dag_txs SET tx = NULL", "id", forgotten);
        if let Some(height) = batch.height {
            script
                .statement("INSERT OR REPLACE INTO dag_progress (id, height) VALUES (0, ")
                .push_bind(height as i64)
                .push(")");
        }
        self.run(script).await
    }

    /// Every transaction with its body, in arrival order, and the height
    /// confirmations reached.
    pub async fn dag_load(&self) -> Result<(Vec<StoredDagTx>, Height), StoreError> {
        let rows = sqlx::query(
            "SELECT tx, height, applied FROM dag_txs WHERE tx IS NOT NULL ORDER BY rowid",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let bytes: Vec<u8> = row.try_get("tx")?;
            out.push((
                decode(&bytes).map_err(corrupt("DAG transaction"))?,
                outcome(row)?,
            ));
        }
        let height = sqlx::query("SELECT height FROM dag_progress WHERE id = 0")
            .fetch_optional(self.pool())
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0);
        Ok((out, height as Height))
    }

    pub async fn dag_row(&self, id: &Hash) -> Result<Option<DagRow>, StoreError> {
        let Some(row) = sqlx::query("SELECT tx, height, applied FROM dag_txs WHERE id = ?")
            .bind(id.0.to_vec())
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = row.try_get("tx")?;
        let tx = bytes
            .map(|b| decode(&b).map_err(corrupt("DAG transaction")))
            .transpose()?;
        Ok(Some((tx, outcome(&row)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itc_chain::codec::{BoundedVec, Bytes};
    use itc_chain::crypto::Keypair;
    use itc_chain::dag::tangle::roots;
    use itc_chain::dag::{DagBody, DagKind};
    use itc_chain::types::DeviceId;

    fn tx(i: u8, parents: [Hash; 2]) -> DagTx {
        let body = DagBody {
            issuer: DeviceId::new("mqtt:meter").unwrap(),
            kind: DagKind::Reading {
                data: Bytes::new(vec![i]).unwrap(),
            },
            parents: BoundedVec::new(parents.to_vec()).unwrap(),
            time_ms: 1,
            level: 0,
        };
        DagTx::issue(&Keypair::from_seed([9; 32]), body, 0)
    }

    #[tokio::test]
    async fn the_dag_survives_a_reopen_and_pruning_keeps_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dag.sqlite");
        let a = tx(1, roots());
        let b = tx(2, [a.id(), roots()[0]]);
        let c = tx(3, [b.id(), a.id()]);
        {
            let store = SqliteStore::open_manual(&path).await.unwrap();
            let taken = [&a, &b, &c, &a].map(|t| (t.id(), t.clone())).to_vec();
            let mut batch = DagBatch {
                taken,
                ..DagBatch::default()
            };
            store.dag_write(&batch).await.unwrap();
            batch = DagBatch {
                confirmed: vec![(a.id(), 1, true), (b.id(), 2, false)],
                height: Some(2),
                ..DagBatch::default()
            };
            store.dag_write(&batch).await.unwrap();
            store.close().await;
        }
        let store = SqliteStore::open_manual(&path).await.unwrap();
        let (rows, height) = store.dag_load().await.unwrap();
        assert_eq!(height, 2);
        assert_eq!(
            rows,
            vec![
                (a.clone(), Some(Status::Confirmed { height: 1 })),
                (b.clone(), Some(Status::Conflicting { height: 2 })),
                (c.clone(), None)
            ]
        );
        // Forgetting a drops its body, not its outcome; b and c stay.
        let batch = DagBatch {
            forgotten: vec![a.id()],
            ..DagBatch::default()
        };
        store.dag_write(&batch).await.unwrap();
        assert_eq!(
            store.dag_row(&a.id()).await.unwrap(),
            Some((None, Some(Status::Confirmed { height: 1 })))
        );
        assert_eq!(
            store.dag_row(&b.id()).await.unwrap(),
            Some((Some(b.clone()), Some(Status::Conflicting { height: 2 })))
        );
        let (rows, _) = store.dag_load().await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(store.dag_row(&Hash::digest(b"none")).await.unwrap(), None);
    }
}
