//! A node's writer: consensus records and committed blocks go to sqlite in
//! the background, so the replica's driver never waits on the disk.
//!
//! Why: a sync takes a millisecond or more (an SD card, a VM's disk), and
//! the block's rows as much again. A driver that waited for them took in
//! no peer's vote meanwhile, so every replica's write lengthened every
//! round (BENCHMARKS.md, "Consensus"). Now the driver hands each batch of
//! records, and each committed block, to this task and gets a ticket; it
//! holds back only what must follow the write (a message that
//! [waits for records](itc_chain::pbft::Message::waits_for_records), a
//! block's publication, serving blocks from the store) until its ticket is
//! durable.
//!
//! Batches queued while a write is in flight go out together in the next
//! sqlite transaction, one sync for all (group commit). Tickets count
//! batches, and batches are written in order, so ticket `t` durable means
//! every batch up to `t` is: its records synced, its blocks stored (a
//! write of blocks alone is not synced, see
//! [`SqliteStore::commit_blocks_with_records`]).

use std::sync::Arc;

use itc_chain::block::CommitCertificate;
use itc_chain::ledger::Executed;
use itc_chain::pbft::Record;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::NodeError;
use crate::store::{SqliteStore, StoreError};

/// A committed block and its certificate, shared by the writer and the
/// driver that publishes it once stored.
pub(super) type CommittedPair = Arc<(Executed, CommitCertificate)>;

/// A ticket: batches handed over so far.
pub(super) type Ticket = u64;

/// Batches the writer may fall behind by before a hand-over waits for it
/// (a disk that stalls slows the driver down instead of filling memory).
const QUEUE: usize = 1_024;

struct Batch {
    records: Vec<Record>,
    block: Option<CommittedPair>,
}

pub(super) struct Persister {
    batches: Option<mpsc::Sender<Batch>>,
    submitted: Ticket,
    durable: watch::Receiver<Ticket>,
    task: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Persister {
    pub(super) fn start(store: SqliteStore) -> Persister {
        let (batches, queue) = mpsc::channel(QUEUE);
        let (durable_tx, durable) = watch::channel(0);
        Persister {
            batches: Some(batches),
            submitted: 0,
            durable,
            task: Some(tokio::spawn(write(store, queue, durable_tx))),
        }
    }

    /// Hands `records` (and a committed block) to the writer, waiting
    /// while it is [`QUEUE`] batches behind; returns the ticket that is
    /// durable once they are (nothing to write: the last ticket). `None` if
    /// the writer has stopped: then nothing handed over may be counted on
    /// ([`Persister::failure`] says why).
    pub(super) async fn submit(
        &mut self,
        records: Vec<Record>,
        block: Option<CommittedPair>,
    ) -> Option<Ticket> {
        if records.is_empty() && block.is_none() {
            return Some(self.submitted);
        }
        self.batches
            .as_ref()?
            .send(Batch { records, block })
            .await
            .ok()?;
        self.submitted += 1;
        Some(self.submitted)
    }

    /// The ticket of everything handed over so far.
    pub(super) fn submitted(&self) -> Ticket {
        self.submitted
    }

    /// The ticket durable so far.
    pub(super) fn durable_ticket(&self) -> Ticket {
        *self.durable.borrow()
    }

    /// A receiver that changes whenever more is durable, and fails once
    /// the writer stopped (see [`Persister::failure`]).
    pub(super) fn durable(&self) -> watch::Receiver<Ticket> {
        self.durable.clone()
    }

    /// Waits until `ticket` is durable.
    pub(super) async fn wait_for(&mut self, ticket: Ticket) -> Result<(), NodeError> {
        let mut durable = self.durable.clone();
        while *durable.borrow_and_update() < ticket {
            if durable.changed().await.is_err() {
                return Err(self.failure().await);
            }
        }
        Ok(())
    }

    /// Why the writer stopped: its error, once its receiver failed.
    pub(super) async fn failure(&mut self) -> NodeError {
        self.join().await.err().unwrap_or(NodeError::WriterStopped)
    }

    /// Writes everything handed over, then stops the writer.
    pub(super) async fn finish(&mut self) -> Result<(), NodeError> {
        self.batches = None;
        self.join().await
    }

    /// Waits for the writer's end (at once if it was already joined): its
    /// error, if it failed.
    async fn join(&mut self) -> Result<(), NodeError> {
        match self.task.take() {
            Some(task) => Ok(task
                .await
                .map_err(|join| NodeError::WriterPanicked(join.to_string()))??),
            None => Ok(()),
        }
    }
}

/// The writer: each time it wakes, everything queued in one transaction.
async fn write(
    store: SqliteStore,
    mut queue: mpsc::Receiver<Batch>,
    durable: watch::Sender<Ticket>,
) -> Result<(), StoreError> {
    let mut done: Ticket = 0;
    let mut taken = Vec::new();
    while queue.recv_many(&mut taken, QUEUE).await > 0 {
        let records: Vec<Record> = taken
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.records))
            .collect();
        let blocks: Vec<_> = taken
            .iter()
            .filter_map(|b| b.block.as_ref())
            .map(|pair| (&pair.0, Some(&pair.1)))
            .collect();
        store.commit_blocks_with_records(&blocks, &records).await?;
        done += taken.len() as Ticket;
        taken.clear();
        durable.send_replace(done);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{test_store, test_vote as voted};

    #[tokio::test]
    async fn batches_become_durable_in_order_and_finish_writes_the_rest() {
        let (_dir, store) = test_store().await;
        let mut persister = Persister::start(store.clone());
        let mut durable = persister.durable();
        assert_eq!(
            persister.submit(Vec::new(), None).await,
            Some(0),
            "nothing, no ticket"
        );
        let first = persister.submit(vec![voted(1)], None).await.unwrap();
        let second = persister
            .submit(vec![voted(2), voted(3)], None)
            .await
            .unwrap();
        assert_eq!((first, second, persister.submitted()), (1, 2, 2));
        persister.wait_for(first).await.unwrap();
        assert!(*durable.borrow_and_update() >= first);
        let third = persister.submit(vec![voted(4)], None).await.unwrap();
        persister.finish().await.unwrap();
        assert_eq!(*persister.durable().borrow(), third);
        assert_eq!(
            store.load_records().await.unwrap(),
            (1..=4).map(voted).collect::<Vec<_>>()
        );
        // Stopped: once the last ticket is seen its receiver fails, and it
        // says why.
        assert_eq!(*durable.borrow_and_update(), third);
        assert!(durable.changed().await.is_err());
        assert!(matches!(
            persister.failure().await,
            NodeError::WriterStopped
        ));
    }
}
