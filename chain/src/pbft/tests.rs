//! The replica in a lossless, instant network: the normal case, the
//! durability rule and equivocation evidence. Faulty networks and
//! Byzantine peers are the simulator's (`crate::sim`, `tests/pbft_sim.rs`).

use crate::ledger::StateRead;
use std::collections::VecDeque;

use super::*;
use crate::ledger::{Executed, Ledger};
use crate::testkit::Workload;
use crate::tx::SignedTx;
use crate::types::{Height, TimestampMs};

fn cluster(work: &Workload) -> Vec<Replica> {
    cluster_with(work, Params::default())
}

fn cluster_with(work: &Workload, params: Params) -> Vec<Replica> {
    let (ledger, _) = Ledger::genesis(&work.genesis).expect("genesis");
    cluster_of(work, &ledger, &params)
}

/// A replica per validator of `ledger`'s active set, all at `ledger`.
fn cluster_of(work: &Workload, ledger: &Ledger, params: &Params) -> Vec<Replica> {
    let set = ledger.validator_sets().active;
    set.validators()
        .iter()
        .map(|v| {
            let key = work.validator_keypair(&v.key).expect("a key per validator");
            Replica::new(key, params.clone(), ledger.clone(), Vec::new(), 0).expect("params")
        })
        .collect()
}

/// Delivers every message at once until quiet; returns each replica's
/// other outputs.
fn settle(replicas: &mut [Replica]) -> Vec<Vec<Output>> {
    settle_at(replicas, 1)
}

/// [`settle`], every message handled at `now`.
fn settle_at(replicas: &mut [Replica], now: TimestampMs) -> Vec<Vec<Output>> {
    deliver_at(replicas, Vec::new(), |_, _, _| true, now).other
}

/// The index of the primary (`true`) or of the first backup (`false`).
fn role(replicas: &[Replica], primary: bool) -> usize {
    replicas
        .iter()
        .position(|r| r.is_primary() == primary)
        .expect("a replica in that role")
}

#[test]
fn four_replicas_commit_a_batch_with_a_valid_certificate() {
    let work = Workload::new(4, 4, 21);
    let mut replicas = cluster(&work);
    let txs = work.transfers(replicas[0].ledger(), 3);
    // Submitted at a backup: relayed to the primary, which proposes.
    let backup = role(&replicas, false);
    replicas[backup].handle_transactions(1, txs.clone());
    let outputs = settle(&mut replicas);
    let mut headers = Vec::new();
    for (replica, outputs) in replicas.iter().zip(&outputs) {
        assert_eq!(replica.ledger().height(), 1);
        let committed: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Committed {
                    executed,
                    certificate,
                } => Some((executed, certificate)),
                _ => None,
            })
            .collect();
        assert_eq!(committed.len(), 1);
        let (executed, certificate) = committed[0];
        assert_eq!(executed.block.txs.as_slice(), txs.as_slice());
        let set = replica.ledger().validator_sets().active;
        certificate
            .verify(&executed.block.header, &set)
            .expect("certificate");
        // Votes were persisted before they were sent.
        assert!(outputs
            .iter()
            .any(|o| matches!(o, Output::Persist(Record::Voted { .. }))));
        headers.push(executed.block.header.hash());
    }
    assert!(headers.windows(2).all(|w| w[0] == w[1]));
    assert!(replicas.iter().all(|r| r.pending() == 0));
}

/// A power cut may take a committed block's rows (the gateway does not sync
/// them on their own), never the replica's records: restarted at the
/// parent, the replica still holds the block's prepared certificate, and
/// its view change carries the block into the next view (§4.4).
#[test]
fn a_block_whose_rows_were_lost_is_carried_by_its_certificate() {
    let work = Workload::new(4, 4, 24);
    let mut replicas = cluster(&work);
    let genesis = replicas[0].ledger().clone();
    let backup = role(&replicas, false);
    replicas[backup].handle_transactions(1, work.transfers(&genesis, 2));
    let outputs = settle(&mut replicas);
    assert_eq!(replicas[backup].ledger().height(), 1);
    let committed = replicas[backup].ledger().tip().hash();
    let records: Vec<Record> = outputs[backup]
        .iter()
        .filter_map(|o| match o {
            Output::Persist(record) => Some(record.clone()),
            _ => None,
        })
        .collect();

    // Restarted from its records over the ledger before the block.
    let key = work
        .validator_keypair(&replicas[backup].public())
        .expect("key");
    let mut restarted =
        Replica::new(key, Params::default(), genesis.clone(), records, 2).expect("params");
    assert_eq!(restarted.ledger().height(), 0);
    // A client's transfer, which no primary orders: it suspects the primary.
    restarted.handle_transactions(3, work.transfers(&genesis, 1));
    restarted.handle_timer(60_000, Timer::Progress);
    let mut carried = Vec::new();
    while let Some(output) = restarted.poll_output() {
        if let Output::Broadcast(Message::ViewChange(change)) = output {
            carried.extend(
                change
                    .body
                    .prepared
                    .as_slice()
                    .iter()
                    .map(|p| (p.height(), p.digest())),
            );
        }
    }
    assert_eq!(carried, vec![(1, committed)]);
}

/// A vote that arrives after its certificate formed is dropped unchecked:
/// a prepare after prepared, a commit after the height committed. Each
/// replica keeps exactly the votes its certificates needed.
#[test]
fn votes_after_their_certificate_formed_are_not_kept() {
    let work = Workload::new(4, 4, 23);
    let mut replicas = cluster(&work);
    let txs = work.transfers(replicas[0].ledger(), 2);
    let primary = role(&replicas, true);
    replicas[primary].handle_transactions(1, txs);
    settle(&mut replicas);
    for replica in &replicas {
        assert_eq!(replica.ledger().height(), 1);
        let quorum = replica.ledger().validator_sets().active.quorum();
        let slot = &replica.slots[&1];
        assert_eq!(slot.prepares[&0].len(), quorum - 1);
        assert_eq!(slot.commits[&0].len(), quorum);
    }
}

/// Client and relayed transactions admitted in one call: one signature
/// batch for all, only the client's admitted ones relayed on, only the
/// client's refusals reported (a relayed one's sender hears from its own
/// gateway).
#[test]
fn own_and_relayed_transactions_are_admitted_together_and_only_own_are_relayed() {
    let work = Workload::new(4, 8, 23);
    let mut replicas = cluster(&work);
    let backup = role(&replicas, false);
    let txs = work.transfers(replicas[backup].ledger(), 6);
    let forge = |tx: &SignedTx, other: &SignedTx| SignedTx {
        tx: tx.tx.clone(),
        signature: other.signature,
    };
    let own = vec![txs[0].clone(), forge(&txs[1], &txs[0]), txs[2].clone()];
    let relayed = vec![txs[3].clone(), forge(&txs[4], &txs[3]), txs[5].clone()];
    let replica = &mut replicas[backup];
    replica.admit(1, own, relayed);
    let mut relays = Vec::new();
    let mut refused = Vec::new();
    while let Some(output) = replica.poll_output() {
        match output {
            Output::Broadcast(Message::Transactions(batch)) => relays.push(batch.into_inner()),
            Output::Rejected { tx, .. } => refused.push(tx),
            _ => {}
        }
    }
    assert_eq!(relays, vec![vec![txs[0].clone(), txs[2].clone()]]);
    assert_eq!(refused, vec![forge(&txs[1], &txs[0]).hash()]);
    assert_eq!(replica.pending(), 4);
}

/// A backup that voted for one block, then restarted from its records,
/// refuses to vote for another block at the same view and height.
#[test]
fn a_restarted_replica_never_contradicts_its_vote() {
    let work = Workload::new(4, 4, 22);
    let replicas = cluster(&work);
    let primary = replicas.iter().find(|r| r.is_primary()).expect("primary");
    let primary_key = work.validator_key(&primary.public()).expect("key");
    let ledger = primary.ledger().clone();
    let chain = ledger.params().chain_id.clone();
    let block = |count: usize, time: u64| {
        let txs = work.transfers(&ledger, count);
        ledger
            .propose(txs, time, primary_key.public())
            .expect("proposal")
            .executed
            .block
    };
    let first = Signed::sign(
        primary_key,
        &chain,
        PrePrepare {
            view: 0,
            block: block(2, 5),
        },
    );
    let second = Signed::sign(
        primary_key,
        &chain,
        PrePrepare {
            view: 0,
            block: block(1, 6),
        },
    );

    let mut backup = cluster(&work)
        .into_iter()
        .find(|r| !r.is_primary())
        .expect("a backup");
    backup.handle_message(1, primary_key.public(), Message::PrePrepare(first));
    let mut records = Vec::new();
    let mut prepared = 0;
    while let Some(output) = backup.poll_output() {
        match output {
            Output::Persist(record) => records.push(record),
            Output::Broadcast(Message::Prepare(_)) => prepared += 1,
            _ => {}
        }
    }
    assert_eq!(prepared, 1);

    // Restart from the records; the other block must get no prepare.
    let key = work.validator_keypair(&backup.public()).expect("key");
    let mut restarted =
        Replica::new(key, Params::default(), ledger.clone(), records, 2).expect("params");
    restarted.handle_message(3, primary_key.public(), Message::PrePrepare(second));
    while let Some(output) = restarted.poll_output() {
        assert!(
            !matches!(output, Output::Broadcast(Message::Prepare(_))),
            "voted for a second block at the same view and height"
        );
    }
}

/// A backup's prepare leaves before anything is durable, so after a
/// restart it prepares nothing in that view: it cannot know which block it
/// prepared, and preparing another would be equivocation.
#[test]
fn a_backup_prepares_at_once_and_not_after_a_restart_in_that_view() {
    let work = Workload::new(4, 8, 31);
    let mut replicas = cluster(&work);
    for replica in replicas.iter_mut() {
        while replica.poll_output().is_some() {}
    }
    let (p, b) = (role(&replicas, true), role(&replicas, false));
    let ledger = replicas[p].ledger().clone();
    let txs = work.transfers(&ledger, 1);
    replicas[p].handle_transactions(1, txs);
    let mut pre_prepare = None;
    while let Some(output) = replicas[p].poll_output() {
        if let Output::Broadcast(m @ Message::PrePrepare(_)) = output {
            pre_prepare = Some(m);
        }
    }
    let pre_prepare = pre_prepare.expect("the primary proposed");
    let primary = replicas[p].public();
    let key = work.validator_keypair(&replicas[b].public()).expect("key");

    // Its prepare is sent with nothing to persist first, and does not wait.
    replicas[b].handle_message(2, primary, pre_prepare.clone());
    let outputs: Vec<Output> = std::iter::from_fn(|| replicas[b].poll_output()).collect();
    let prepare = outputs
        .iter()
        .find_map(|o| match o {
            Output::Broadcast(m @ Message::Prepare(_)) => Some(m),
            _ => None,
        })
        .expect("the backup prepared");
    assert!(!prepare.waits_for_records());
    assert!(!outputs.iter().any(|o| matches!(o, Output::Persist(_))));

    // Restarted in view 0 (its start's view record is all it kept), it is
    // sent the same pre-prepare again and stays silent.
    let records = vec![Record::View {
        view: 0,
        changing: false,
    }];
    let mut restarted = Replica::new(key, Params::default(), ledger, records, 3).expect("params");
    while restarted.poll_output().is_some() {}
    restarted.handle_message(4, primary, pre_prepare);
    while let Some(output) = restarted.poll_output() {
        assert!(
            !matches!(output, Output::Broadcast(Message::Prepare(_))),
            "prepared again in the view it restarted in"
        );
    }
}

/// A primary sends its pre-prepare before anything is durable, so after a
/// restart it proposes nothing in that view: it cannot know which heights
/// it assigned, and assigning one a second block would be equivocation.
#[test]
fn a_restarted_primary_proposes_nothing_in_the_view_it_restarted_in() {
    let work = Workload::new(4, 8, 29);
    let mut primary = cluster(&work)
        .into_iter()
        .find(|r| r.is_primary())
        .expect("a primary");
    let ledger = primary.ledger().clone();
    // Two first transfers of two senders: each alone makes a block.
    let all = work.transfers(&ledger, 8);
    let second = all
        .iter()
        .find(|t| t.tx.nonce == 0 && t.tx.sender != all[0].tx.sender)
        .expect("a second sender");
    let txs = [all[0].clone(), second.clone()];
    let mut records = Vec::new();
    let mut proposed = 0;
    primary.handle_transactions(1, txs[..1].to_vec());
    while let Some(output) = primary.poll_output() {
        match output {
            Output::Persist(record) => records.push(record),
            Output::Broadcast(Message::PrePrepare(pp)) => {
                assert_eq!(pp.body.block.header.height, 1);
                proposed += 1;
            }
            _ => {}
        }
    }
    assert_eq!(proposed, 1);
    // Its start left a view record, the pre-prepare none.
    assert!(matches!(
        records.as_slice(),
        [Record::View {
            view: 0,
            changing: false
        }]
    ));

    // Restarted from that record, it is offered a different batch.
    let key = work.validator_keypair(&primary.public()).expect("key");
    let mut restarted =
        Replica::new(key, Params::default(), ledger.clone(), records, 2).expect("params");
    assert!(restarted.is_primary());
    restarted.handle_transactions(3, txs[1..].to_vec());
    while let Some(output) = restarted.poll_output() {
        assert!(
            !matches!(output, Output::Broadcast(Message::PrePrepare(_))),
            "proposed again in the view it restarted in"
        );
    }

    // A fresh replica (no records at all) proposes at once.
    let key = work.validator_keypair(&primary.public()).expect("key");
    let mut fresh = Replica::new(key, Params::default(), ledger, Vec::new(), 2).expect("params");
    fresh.handle_transactions(3, txs[1..].to_vec());
    let mut proposed = false;
    while let Some(output) = fresh.poll_output() {
        proposed |= matches!(output, Output::Broadcast(Message::PrePrepare(_)));
    }
    assert!(proposed);
}

#[test]
fn an_equivocating_primary_leaves_evidence_and_is_replaced() {
    let work = Workload::new(4, 4, 23);
    let replicas = cluster(&work);
    let primary = replicas.iter().find(|r| r.is_primary()).expect("primary");
    let primary_key = work.validator_key(&primary.public()).expect("key");
    let ledger = primary.ledger().clone();
    let chain = ledger.params().chain_id.clone();
    let txs = work.transfers(&ledger, 2);
    let a = ledger
        .propose(txs.clone(), 5, primary_key.public())
        .expect("a")
        .executed
        .block;
    let b = ledger
        .propose(txs[..1].to_vec(), 5, primary_key.public())
        .expect("b")
        .executed
        .block;
    let mut backup = cluster(&work)
        .into_iter()
        .find(|r| !r.is_primary())
        .expect("a backup");
    for block in [a, b] {
        let signed = Signed::sign(primary_key, &chain, PrePrepare { view: 0, block });
        backup.handle_message(1, primary_key.public(), Message::PrePrepare(signed));
    }
    let mut evidence = 0;
    let mut view_change = false;
    while let Some(output) = backup.poll_output() {
        match output {
            Output::Equivocation(e) => {
                assert_ne!(e.first.digest, e.second.digest);
                assert_eq!(e.primary, primary_key.public());
                let set = backup.ledger().validator_sets().active;
                assert_eq!(e.verify(&chain, &set), Ok(()));
                evidence += 1;
            }
            Output::Broadcast(Message::ViewChange(vc)) => view_change = vc.body.new_view == 1,
            _ => {}
        }
    }
    assert_eq!(evidence, 1);
    assert!(view_change);
    assert_eq!(backup.evidence().len(), 1);
    assert!(backup.is_changing_view());
}

#[test]
fn an_equivocation_is_reported_and_lands_on_chain_after_the_view_change() {
    let work = Workload::new(4, 4, 29);
    let mut replicas = cluster(&work);
    let primary = role(&replicas, true);
    let primary_key = work
        .validator_key(&replicas[primary].public())
        .expect("key");
    let ledger = replicas[primary].ledger().clone();
    let chain = ledger.params().chain_id.clone();
    let txs = work.transfers(&ledger, 2);
    let blocks: Vec<_> = [2, 1]
        .into_iter()
        .map(|count| {
            ledger
                .propose(txs[..count].to_vec(), 5, primary_key.public())
                .expect("block")
                .executed
                .block
        })
        .collect();
    // The primary sends one block to two backups and the other block to
    // the third, and is then silent. No backup sees both pre-prepares; the
    // prepares carry the primary's signatures across.
    let signed: Vec<_> = blocks
        .into_iter()
        .map(|block| Signed::sign(primary_key, &chain, PrePrepare { view: 0, block }))
        .collect();
    let backups: Vec<usize> = (0..replicas.len()).filter(|i| *i != primary).collect();
    for (n, i) in backups.into_iter().enumerate() {
        let which = usize::from(n == 2);
        replicas[i].handle_message(
            1,
            primary_key.public(),
            Message::PrePrepare(signed[which].clone()),
        );
    }
    let mut honest: Vec<Replica> = replicas
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| (i != primary).then_some(r))
        .collect();
    settle(&mut honest);
    for replica in honest.iter_mut() {
        assert_eq!(replica.evidence().len(), 1, "every backup detected it");
        assert_eq!(replica.view(), 1, "the backups moved to view 1");
        replica.handle_timer(10_000, Timer::Batch);
    }
    settle(&mut honest);
    // Each backup reported; the first report committed, the rest are
    // refused as known. The record names both header hashes.
    let evidence = honest[0].evidence()[0].clone();
    let key = crate::state::StateKey::Equivocation {
        primary: primary_key.public(),
        view: 0,
        height: 1,
    };
    for replica in &honest {
        let Some(crate::state::StateValue::Equivocation(record)) = replica.ledger().get(&key)
        else {
            panic!("no evidence on chain at {}", replica.public());
        };
        assert_eq!(
            (record.first, record.second),
            (evidence.first.digest, evidence.second.digest)
        );
    }
}

/// Submits `txs` at `at` and settles; returns the certificates committed.
fn commit_round(
    replicas: &mut [Replica],
    at: usize,
    txs: Vec<crate::tx::SignedTx>,
) -> Vec<crate::block::CommitCertificate> {
    replicas[at].handle_transactions(1, txs);
    settle(replicas)
        .into_iter()
        .flatten()
        .filter_map(|o| match o {
            Output::Committed { certificate, .. } => Some(certificate),
            _ => None,
        })
        .collect()
}

#[test]
fn a_validator_added_on_chain_votes_from_the_epoch_boundary() {
    use crate::crypto::Keypair;

    let mut work = Workload::new(4, 4, 31);
    work.genesis.epoch_length = 10;
    let (ledger, _) = Ledger::genesis(&work.genesis).expect("genesis");
    let newcomer = Keypair::from_seed([77; 32]);
    let mut replicas = cluster_of(&work, &ledger, &Params::default());
    // The newcomer follows from the genesis, as a gateway that is about to
    // join does; its votes count for nothing yet.
    let learner = Keypair::from_seed([77; 32]);
    replicas.push(
        Replica::new(learner, Params::default(), ledger.clone(), Vec::new(), 0).expect("params"),
    );

    let tx = work
        .adding_validator(&ledger, newcomer.public(), "127.0.0.1:7400")
        .expect("change");
    commit_round(&mut replicas, 0, vec![tx]);
    for replica in &replicas {
        let sets = replica.ledger().validator_sets();
        assert!(sets.pending.contains(&newcomer.public()));
        assert!(!sets.active.contains(&newcomer.public()));
    }
    // A learner waiting on a request does not suspect the primary: it has
    // no vote, and alone in a later view it would stop following.
    let learner = replicas.len() - 1;
    let waiting = work.transfers(replicas[learner].ledger(), 1);
    replicas[learner].handle_transactions(2, waiting);
    replicas[learner].handle_timer(1_000_000, Timer::Progress);
    assert!(!replicas[learner].is_changing_view());
    assert_eq!(replicas[learner].view(), 0);
    // (Its relay of that request is dropped: the rounds below pick their own.)
    while replicas[learner].poll_output().is_some() {}

    // Up to the boundary the old four decide alone.
    while replicas[0].ledger().height() < 10 {
        let txs = work.transfers(replicas[0].ledger(), 1);
        for certificate in commit_round(&mut replicas, 0, txs) {
            assert!(certificate
                .signatures
                .as_slice()
                .iter()
                .all(|s| s.validator != newcomer.public()));
        }
    }
    for replica in &replicas {
        assert_eq!(replica.ledger().height(), 10);
        assert!(replica
            .ledger()
            .validator_sets()
            .active
            .contains(&newcomer.public()));
    }

    // After it, five validators need four votes. Take an original backup
    // away: the remaining three commit only with the newcomer's vote.
    let gone = replicas
        .iter()
        .position(|r| !r.is_primary() && r.public() != newcomer.public())
        .expect("an original backup");
    replicas.remove(gone);
    let at = role(&replicas, true);
    let txs = work.transfers(replicas[at].ledger(), 2);
    let certificates = commit_round(&mut replicas, at, txs);
    assert!(
        !certificates.is_empty(),
        "no block committed after the boundary"
    );
    for replica in &replicas {
        assert_eq!(replica.ledger().height(), 11);
    }
    for certificate in certificates {
        assert!(certificate
            .signatures
            .as_slice()
            .iter()
            .any(|s| s.validator == newcomer.public()));
    }
}

#[test]
fn a_validator_removed_on_chain_is_forgotten_from_the_epoch_boundary() {
    let mut work = Workload::new(4, 4, 32);
    work.genesis.epoch_length = 10;
    let (ledger, _) = Ledger::genesis(&work.genesis).expect("genesis");
    let mut replicas = cluster_of(&work, &ledger, &Params::default());
    let leaving = replicas
        .iter()
        .rposition(|r| !r.is_primary())
        .expect("a backup");
    let key = replicas[leaving].public();
    let tx = work
        .removing_validator(replicas[0].ledger(), key)
        .expect("change");
    let primary = role(&replicas, true);
    commit_round(&mut replicas, primary, vec![tx]);
    // Everyone reports its height; the others keep the leaving one's.
    for replica in replicas.iter_mut() {
        replica.handle_timer(1, Timer::Tick);
    }
    settle(&mut replicas);
    let staying = (leaving + 1) % replicas.len();
    assert!(replicas[staying].has_status_of(&key));

    while replicas[staying].ledger().height() < 10 {
        let at = role(&replicas, true);
        let txs = work.transfers(replicas[at].ledger(), 1);
        commit_round(&mut replicas, at, txs);
    }
    assert!(!replicas[staying]
        .ledger()
        .validator_sets()
        .active
        .contains(&key));
    assert!(!replicas[staying].has_status_of(&key));
    // A status it sends later is not kept either; the others' are.
    for replica in replicas.iter_mut() {
        replica.handle_timer(2, Timer::Tick);
    }
    settle(&mut replicas);
    assert!(!replicas[staying].has_status_of(&key));
    let other = (staying + 1..)
        .map(|i| i % replicas.len())
        .find(|i| *i != leaving)
        .expect("a third replica");
    assert!(replicas[staying].has_status_of(&replicas[other].public()));
}

/// A test's DAG: the tips a replica holds solid.
#[derive(Default)]
struct Held(std::sync::Mutex<std::collections::HashSet<crate::crypto::Hash>>);

impl AnchorAvailability for Held {
    fn is_solid(&self, tip: &crate::crypto::Hash) -> bool {
        self.0.lock().is_ok_and(|held| held.contains(tip))
    }
}

/// Four replicas with their own `Held` DAGs, a tip only the primary
/// holds, and that primary's anchor over it for height 1.
struct Anchoring {
    work: Workload,
    ledger: Ledger,
    held: Vec<std::sync::Arc<Held>>,
    replicas: Vec<Replica>,
    primary: usize,
    anchor: crate::tx::SignedTx,
}

fn anchoring(seed: u64, tip: crate::crypto::Hash) -> Anchoring {
    use crate::tx::{DagAnchor, Tx, TxBody};
    use std::sync::Arc;

    let work = Workload::new(4, 4, seed);
    let (ledger, _) = Ledger::genesis(&work.genesis).expect("genesis");
    let held: Vec<Arc<Held>> = (0..4).map(|_| Arc::new(Held::default())).collect();
    let replicas: Vec<Replica> = cluster_of(&work, &ledger, &Params::default())
        .into_iter()
        .zip(&held)
        .map(|(r, h)| r.with_availability(h.clone()))
        .collect();
    let primary = role(&replicas, true);
    held[primary].0.lock().expect("lock").insert(tip);
    let gateway = work
        .validator_key(&replicas[primary].public())
        .expect("key");
    let anchor = Tx {
        chain_id: ledger.params().chain_id.clone(),
        sender: gateway.public(),
        nonce: 1,
        body: TxBody::AnchorDag(DagAnchor {
            tips: crate::codec::BoundedVec::new(vec![tip]).expect("tips"),
            root: crate::merkle::root(&[tip]),
            payments: crate::codec::BoundedVec::new(vec![]).expect("payments"),
        }),
    }
    .sign(gateway);
    Anchoring {
        work,
        ledger,
        held,
        replicas,
        primary,
        anchor,
    }
}

#[test]
fn backups_prepare_an_anchor_only_once_they_hold_its_tips() {
    let tip = crate::crypto::Hash::digest(b"a DAG tip only the primary has");
    let Anchoring {
        held,
        mut replicas,
        primary,
        anchor,
        ..
    } = anchoring(41, tip);
    replicas[primary].handle_transactions(1, vec![anchor]);
    settle(&mut replicas);
    // Nobody else holds the tip: no backup prepares, nothing commits.
    assert!(replicas.iter().all(|r| r.ledger().height() == 0));

    // One backup gets it: still short of 2f prepares.
    let backups: Vec<usize> = (0..4).filter(|i| *i != primary).collect();
    held[backups[0]].0.lock().expect("lock").insert(tip);
    replicas[backups[0]].handle_available(2);
    settle(&mut replicas);
    assert!(replicas.iter().all(|r| r.ledger().height() == 0));

    // A second: the block prepares and commits everywhere, the third
    // backup (still without the data) included.
    held[backups[1]].0.lock().expect("lock").insert(tip);
    replicas[backups[1]].handle_available(3);
    settle(&mut replicas);
    assert!(replicas.iter().all(|r| r.ledger().height() == 1));
}

#[test]
fn an_anchor_only_a_faulty_primary_holds_is_left_out_after_the_view_change() {
    // The faulty primary anchors a tip it never gossips.
    let tip = crate::crypto::Hash::digest(b"a DAG tip nobody else will ever have");
    let Anchoring {
        work,
        ledger,
        mut replicas,
        primary,
        anchor,
        ..
    } = anchoring(43, tip);
    let gateway = anchor.tx.sender;
    let mut txs = vec![anchor];
    txs.extend(work.transfers(&ledger, 2));
    replicas[primary].handle_transactions(1, txs);
    settle(&mut replicas);
    assert!(replicas.iter().all(|r| r.ledger().height() == 0));

    // The backups' timers run out (§4.4): view 1, whose primary holds
    // the anchor in its mempool (it was relayed) but not the tip.
    for (i, replica) in replicas.iter_mut().enumerate() {
        if i != primary {
            replica.handle_timer(2_000, Timer::Progress);
        }
    }
    settle(&mut replicas);
    let backups: Vec<&Replica> = (0..4)
        .filter(|i| *i != primary)
        .map(|i| &replicas[i])
        .collect();
    for replica in &backups {
        assert_eq!(replica.view(), 1);
        assert_eq!(replica.ledger().height(), 1, "the transfers commit");
    }
    let block = &backups[0].ledger().tip().clone();
    assert_eq!(block.height, 1);
    // The anchor stays pending with the primary that could not vouch for
    // it, and stays out of the block.
    assert!(backups
        .iter()
        .all(|r| r.ledger().account(&gateway).nonce == 0));
}

#[test]
fn blocks_go_to_a_peer_that_is_stuck_or_far_behind_not_to_one_still_progressing() {
    let work = Workload::new(4, 4, 23);
    let mut replicas = cluster(&work);
    for _ in 0..2 {
        let txs = work.transfers(replicas[0].ledger(), 2);
        replicas[0].handle_transactions(1, txs);
        settle(&mut replicas);
    }
    assert!(replicas.iter().all(|r| r.ledger().height() == 2));
    let tick = Params::default().tick_ms;
    let (one_behind, far_behind) = (replicas[1].public(), replicas[2].public());
    let ahead = &mut replicas[0];
    let status = |height| {
        Message::Status(Status {
            view: 0,
            height,
            changing_view: false,
        })
    };
    let served = |replica: &mut Replica, now, from, height| {
        replica.handle_message(now, from, status(height));
        std::iter::from_fn(|| replica.poll_output())
            .filter_map(|o| match o {
                Output::ServeBlocks {
                    to,
                    from,
                    to_height,
                } => Some((to, from, to_height)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // One height behind: it may be committing that block right now.
    assert!(served(ahead, 1_000, one_behind, 1).is_empty());
    assert!(served(ahead, 1_000 + tick - 1, one_behind, 1).is_empty());
    // Still there a tick later: stuck, so it gets the block.
    assert_eq!(
        served(ahead, 1_000 + tick, one_behind, 1),
        vec![(one_behind, 2, 2)]
    );
    // Two heights behind (restarted, cut off): served at once.
    assert_eq!(
        served(ahead, 5_000, far_behind, 0),
        vec![(far_behind, 1, 2)]
    );
    // Having moved up to one behind, its clock starts again.
    assert!(served(ahead, 5_000 + tick, far_behind, 1).is_empty());
    assert_eq!(
        served(ahead, 5_000 + 2 * tick, far_behind, 1),
        vec![(far_behind, 2, 2)]
    );
}

/// A backup cut off for longer than the log window catches up by certified
/// blocks, and then the latest stable checkpoint, which lies beyond its
/// old window, reaches it as well: it votes again in the current view
/// without waiting for a view change to bring it a checkpoint.
#[test]
fn a_backup_that_caught_up_past_its_window_votes_again_without_a_view_change() {
    let work = Workload::new(4, 4, 25);
    let mut replicas = cluster(&work);
    let laggard = role(&replicas, false);
    let last = replicas.len() - 1;
    replicas.swap(laggard, last);
    let params = Params::default();
    let behind = 2 * params.log_window + params.checkpoint_interval;
    // The others commit `behind` blocks without it (a quorum of three).
    let mut blocks = Vec::new();
    for _ in 0..behind {
        let txs = work.transfers(replicas[0].ledger(), 1);
        replicas[0].handle_transactions(1, txs);
        let outputs = settle(&mut replicas[..last]);
        blocks.extend(outputs[0].iter().filter_map(|o| match o {
            Output::Committed {
                executed,
                certificate,
            } => Some((executed.block.clone(), certificate.clone())),
            _ => None,
        }));
    }
    assert_eq!(blocks.len() as u64, behind);
    // State transfer: the blocks, trusted through their certificates.
    let source = replicas[0].public();
    for (block, certificate) in blocks {
        replicas[last].handle_message(2, source, Message::Block { block, certificate });
    }
    assert_eq!(replicas[last].ledger().height(), behind);
    assert_eq!(replicas[last].low_mark(), 0);
    // The others retransmit their latest checkpoints on their ticks.
    for i in 0..last {
        replicas[i].handle_timer(3, Timer::Tick);
        let from = replicas[i].public();
        let checkpoints: Vec<Message> = std::iter::from_fn(|| replicas[i].poll_output())
            .filter_map(|o| match o {
                Output::Broadcast(m @ Message::Checkpoint(_)) => Some(m),
                _ => None,
            })
            .collect();
        for message in checkpoints {
            replicas[last].handle_message(3, from, message);
        }
    }
    assert_eq!(replicas[last].low_mark(), behind);
    // The next block commits at every replica through the normal case,
    // the laggard's prepare and commit among the votes.
    settle(&mut replicas);
    let txs = work.transfers(replicas[0].ledger(), 1);
    let certificates = commit_round(&mut replicas, 0, txs);
    assert!(replicas.iter().all(|r| r.ledger().height() == behind + 1));
    let laggard_key = replicas[last].public();
    assert!(certificates.iter().any(|c| c
        .signatures
        .as_slice()
        .iter()
        .any(|v| v.validator == laggard_key)));
}

/// A backup that asked for view v alone while cut off, and missed the
/// NEW-VIEW with which the others entered v, gets that NEW-VIEW when its
/// status shows it still changing to v (§4.4): it does not wait for the
/// next view change to vote again.
#[test]
fn a_backup_changing_to_the_current_view_is_sent_its_new_view() {
    let work = Workload::new(4, 4, 26);
    let mut replicas = cluster_with(&work, pipelined());
    let set = replicas[0].ledger().validator_sets().active;
    let laggard = replicas
        .iter()
        .position(|r| r.public() != set.primary(0).key && r.public() != set.primary(1).key)
        .expect("a backup of both views");
    let last = replicas.len() - 1;
    replicas.swap(laggard, last);
    // Cut off, it suspects the primary alone; what it says is lost.
    replicas[last].start_view_change(10_000, 1);
    while replicas[last].poll_output().is_some() {}
    // The others move to view 1 without it.
    for replica in &mut replicas[..last] {
        replica.start_view_change(10_000, 1);
    }
    settle(&mut replicas[..last]);
    assert!(replicas[..last]
        .iter()
        .all(|r| r.view() == 1 && !r.is_changing_view()));
    assert!(replicas[last].is_changing_view());
    // Reconnected, it reports its status; a peer answers with the NEW-VIEW.
    replicas[last].handle_timer(10_100, Timer::Tick);
    let status = std::iter::from_fn(|| replicas[last].poll_output())
        .find_map(|o| match o {
            Output::Broadcast(m @ Message::Status(_)) => Some(m),
            _ => None,
        })
        .expect("a status");
    let laggard_key = replicas[last].public();
    let from = replicas[0].public();
    replicas[0].handle_message(10_100, laggard_key, status);
    let answers: Vec<Message> = std::iter::from_fn(|| replicas[0].poll_output())
        .filter_map(|o| match o {
            Output::Send { to, message } if to == laggard_key => Some(message),
            _ => None,
        })
        .collect();
    for message in answers {
        replicas[last].handle_message(10_100, from, message);
    }
    assert_eq!(replicas[last].view(), 1);
    assert!(!replicas[last].is_changing_view());
}

/// What [`deliver`] did: messages it held back (from, to, message), every
/// message a replica sent (from, message), and the other outputs.
#[derive(Default)]
struct Delivery {
    held: Vec<(usize, usize, Message)>,
    sent: Vec<(usize, Message)>,
    other: Vec<Vec<Output>>,
}

/// Delivers `wire` and all that follows until quiet, each message to each
/// recipient only if `pass` lets it through; the rest are held. Unicast is
/// only used for status replies, which these tests drop.
fn deliver(
    replicas: &mut [Replica],
    wire: Vec<(usize, usize, Message)>,
    pass: impl Fn(usize, usize, &Message) -> bool,
) -> Delivery {
    deliver_at(replicas, wire, pass, 1)
}

/// [`deliver`], every message handled at `now`.
fn deliver_at(
    replicas: &mut [Replica],
    wire: Vec<(usize, usize, Message)>,
    pass: impl Fn(usize, usize, &Message) -> bool,
    now: TimestampMs,
) -> Delivery {
    let mut wire: VecDeque<(usize, usize, Message)> = wire.into();
    let mut done = Delivery {
        other: replicas.iter().map(|_| Vec::new()).collect(),
        ..Delivery::default()
    };
    let n = replicas.len();
    loop {
        for (i, replica) in replicas.iter_mut().enumerate() {
            while let Some(output) = replica.poll_output() {
                match output {
                    Output::Broadcast(m) => {
                        done.sent.push((i, m.clone()));
                        for to in (0..n).filter(|&to| to != i) {
                            wire.push_back((i, to, m.clone()));
                        }
                    }
                    Output::Send { .. } => {}
                    o => done.other[i].push(o),
                }
            }
        }
        let Some((from, to, message)) = wire.pop_front() else {
            return done;
        };
        if pass(from, to, &message) {
            let from_key = replicas[from].public();
            replicas[to].handle_message(now, from_key, message);
        } else {
            done.held.push((from, to, message));
        }
    }
}

fn pipelined() -> Params {
    Params {
        pipeline_depth: 2,
        ..Params::default()
    }
}

fn is_commit(message: &Message, at: Height) -> bool {
    matches!(message, Message::Commit(c) if c.height == at)
}

fn is_prepare(message: &Message, at: Height) -> bool {
    matches!(message, Message::Prepare(p) if p.body.height == at)
}

/// Pipelining: once block 1 is prepared, the primary proposes block 2 on
/// top of it before it commits; every replica prepares and commit-votes
/// block 2 while neither is committed, and then both commit, in order.
#[test]
fn a_primary_proposes_above_a_prepared_block_and_both_commit_in_order() {
    let work = Workload::new(4, 4, 26);
    let mut replicas = cluster_with(&work, pipelined());
    let primary = role(&replicas, true);
    let mut txs = work.transfers(replicas[0].ledger(), 4);
    let later = txs.split_off(2);
    let no_commits = |_: usize, _: usize, m: &Message| !matches!(m, Message::Commit(_));
    replicas[primary].handle_transactions(1, txs);
    let first = deliver(&mut replicas, Vec::new(), no_commits);
    replicas[primary].handle_transactions(2, later.clone());
    let second = deliver(&mut replicas, Vec::new(), no_commits);
    assert!(replicas.iter().all(|r| r.ledger().height() == 0));
    for i in 0..replicas.len() {
        assert!(first.sent.iter().any(|(f, m)| *f == i && is_commit(m, 1)));
        assert!(second.sent.iter().any(|(f, m)| *f == i && is_commit(m, 2)));
    }
    // Block 2's commits arrive first: they wait for block 1's, and those
    // beyond a quorum are not kept (nor checked).
    let held = second.held.into_iter().chain(first.held).collect();
    let last = deliver(&mut replicas, held, |_, _, _| true);
    let quorum = replicas[0].ledger().validator_sets().active.quorum();
    for replica in &replicas {
        assert_eq!(replica.slots[&2].commits[&0].len(), quorum);
    }
    let mut heads = Vec::new();
    for (replica, other) in replicas.iter().zip(&last.other) {
        assert_eq!(replica.ledger().height(), 2);
        let committed: Vec<&Executed> = other
            .iter()
            .filter_map(|o| match o {
                Output::Committed { executed, .. } => Some(&**executed),
                _ => None,
            })
            .collect();
        assert_eq!(committed.len(), 2);
        assert_eq!(committed[1].block.txs.as_slice(), later.as_slice());
        heads.push(replica.ledger().tip().hash());
    }
    assert!(heads.windows(2).all(|w| w[0] == w[1]));
}

/// Pipelining's one rule: a backup that accepted block 2 over block 1
/// sends no PREPARE for it until block 1 is prepared here too; then it
/// does, and both commit.
#[test]
fn a_backup_prepares_above_a_block_only_once_that_block_is_prepared_here() {
    let work = Workload::new(4, 4, 27);
    let mut replicas = cluster_with(&work, pipelined());
    let primary = role(&replicas, true);
    let slow = role(&replicas, false);
    let mut txs = work.transfers(replicas[0].ledger(), 4);
    let later = txs.split_off(2);
    // The slow backup gets no prepares, and nobody gets commits.
    let pass = |_: usize, to: usize, m: &Message| {
        let held = match m {
            Message::Commit(_) => true,
            Message::Prepare(_) => to == slow,
            _ => false,
        };
        !held
    };
    replicas[primary].handle_transactions(1, txs);
    let first = deliver(&mut replicas, Vec::new(), pass);
    replicas[primary].handle_transactions(2, later);
    let second = deliver(&mut replicas, Vec::new(), pass);
    // Block 2 was proposed, and the other backups prepared it.
    assert!(second
        .sent
        .iter()
        .any(|(f, m)| *f == primary && matches!(m, Message::PrePrepare(_))));
    let prepared_2 = |sent: &[(usize, Message)], who: usize| {
        sent.iter().any(|(f, m)| *f == who && is_prepare(m, 2))
    };
    for i in (0..replicas.len()).filter(|&i| i != primary && i != slow) {
        assert!(prepared_2(&second.sent, i));
    }
    assert!(!prepared_2(&second.sent, slow));
    // The prepares for block 1 reach it: it prepares block 2 as well.
    let held = first.held.into_iter().chain(second.held).collect();
    let last = deliver(&mut replicas, held, |_, _, _| true);
    assert!(prepared_2(&last.sent, slow));
    assert!(replicas.iter().all(|r| r.ledger().height() == 2));
}

/// Batching under steady load: the next batch is due `batch_delay_ms`
/// after its oldest transaction arrived, not after the mempool last stood
/// empty. A transaction that arrives while block 1 is in flight keeps the
/// mempool from ever emptying; it still waits out its own delay.
#[test]
fn a_batch_waits_its_delay_from_its_own_oldest_transaction() {
    let work = Workload::new(4, 4, 27);
    let params = Params {
        batch_delay_ms: 50,
        ..Params::default()
    };
    let mut replicas = cluster_with(&work, params);
    let primary = role(&replicas, true);
    let txs = work.transfers(replicas[0].ledger(), 2);
    replicas[primary].handle_transactions(0, vec![txs[0].clone()]);
    settle_at(&mut replicas, 10);
    assert!(
        replicas.iter().all(|r| r.ledger().height() == 0),
        "not due yet"
    );
    replicas[primary].handle_timer(50, Timer::Batch);
    // Proposed; the second arrives before block 1 commits.
    replicas[primary].handle_transactions(55, vec![txs[1].clone()]);
    settle_at(&mut replicas, 60);
    assert!(replicas.iter().all(|r| r.ledger().height() == 1));
    replicas[primary].handle_timer(104, Timer::Batch);
    settle_at(&mut replicas, 104);
    assert!(
        replicas.iter().all(|r| r.ledger().height() == 1),
        "block 2 waits for its own transaction's delay"
    );
    replicas[primary].handle_timer(105, Timer::Batch);
    settle_at(&mut replicas, 105);
    for replica in &replicas {
        assert_eq!(replica.ledger().height(), 2);
        assert_eq!(replica.pending(), 0);
    }
}
