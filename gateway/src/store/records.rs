//! The replica's write-ahead records on sqlite (`consensus_records`).
//!
//! Appends are one synced sqlite transaction per batch: the driver collects
//! the records a burst of input produced and writes them before it sends
//! the messages that depend on them. A stable checkpoint makes the votes and
//! certificates at or below it obsolete; the table's triggers delete them
//! with it, and keep only the latest view record.

use itc_chain::codec::{decode, encode};
use itc_chain::evidence::EquivocationProof;
use itc_chain::pbft::Record;
use sqlx::Row;

use super::{corrupt, Durability, Script, SqliteStore, StoreError};

fn kind(record: &Record) -> (&'static str, Option<i64>) {
    match record {
        Record::View { .. } => ("view", None),
        Record::Voted { height, .. } => ("voted", Some(*height as i64)),
        Record::Prepared(proof) => ("prepared", Some(proof.height() as i64)),
        Record::Stable(proof) => ("stable", Some(proof.height() as i64)),
    }
}

/// Adds `records` to `script`. What a stable checkpoint or a newer view
/// makes obsolete is pruned by the table's triggers (migration 0012).
pub(super) fn push_records(script: &mut Script, records: &[Record]) {
    script.insert_rows(
        "INSERT INTO consensus_records (kind, height, record) ",
        "",
        records,
        |mut row, record| {
            let (kind, height) = kind(record);
            row.push_bind(kind)
                .push_bind(height)
                .push_bind(encode(record));
        },
    );
}

impl SqliteStore {
    /// Appends `records` durably (synced), in order, all or none.
    pub async fn append_records(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut script = Script::new(Durability::Synced);
        push_records(&mut script, records);
        self.run(script).await
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
        let mut script = Script::new(Durability::Synced);
        script.insert_rows(
            "INSERT OR IGNORE INTO evidence (offender, view, height, evidence) ",
            "",
            [evidence],
            |mut row, evidence| {
                row.push_bind(evidence.primary.0.to_vec())
                    .push_bind(evidence.view as i64)
                    .push_bind(evidence.height as i64)
                    .push_bind(encode(evidence));
            },
        );
        self.run(script).await
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

#[cfg(test)]
pub(super) mod tests {
    use itc_chain::codec::BoundedVec;
    use itc_chain::crypto::{Hash, Keypair};
    use itc_chain::pbft::{Checkpoint, CheckpointProof, Signed, Vote};
    use itc_chain::tx::ChainId;

    use super::*;

    /// A commit vote at `height` (other stores' tests use it too).
    pub(crate) fn voted(height: u64) -> Record {
        Record::Voted {
            vote: Vote::Commit,
            view: 0,
            height,
            digest: Hash([height as u8; 32]),
        }
    }

    fn stable(height: u64) -> Record {
        let key = Keypair::from_seed([9; 32]);
        let chain = ChainId::new("itc-test").unwrap();
        let signed = Signed::sign(
            &key,
            &chain,
            Checkpoint {
                height,
                digest: Hash([height as u8; 32]),
            },
        );
        Record::Stable(CheckpointProof {
            checkpoints: BoundedVec::new(vec![signed]).unwrap(),
        })
    }

    /// A store of its own in a temporary directory (other stores' tests
    /// use it too).
    pub(crate) async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_manual(&dir.path().join("records.sqlite"))
            .await
            .unwrap();
        (dir, store)
    }

    fn view(view: u64) -> Record {
        Record::View {
            view,
            changing: false,
        }
    }

    #[tokio::test]
    async fn checkpoints_and_views_prune_in_record_order_within_a_batch() {
        let (_dir, store) = store().await;
        // The stable checkpoint at 2 removes the votes at 1 and 2 written
        // before it in the same batch, not the one at 4 after it.
        store
            .append_records(&[voted(1), voted(2), view(0), voted(3), stable(2), voted(4)])
            .await
            .unwrap();
        assert_eq!(
            store.load_records().await.unwrap(),
            vec![view(0), voted(3), stable(2), voted(4)]
        );
        // A newer view replaces the old; a newer checkpoint the old one.
        store.append_records(&[view(1), stable(3)]).await.unwrap();
        assert_eq!(
            store.load_records().await.unwrap(),
            vec![voted(4), view(1), stable(3)]
        );
    }

    #[tokio::test]
    async fn a_batch_longer_than_one_statement_is_written_whole_and_in_order() {
        let (_dir, store) = store().await;
        let batch: Vec<Record> = (1..=crate::store::ROWS_PER_STATEMENT as u64 + 3)
            .map(voted)
            .collect();
        store.append_records(&batch).await.unwrap();
        assert_eq!(store.load_records().await.unwrap(), batch);
    }
}
