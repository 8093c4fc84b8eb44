//! The replica in a lossless, instant network: the normal case, the
//! durability rule and equivocation evidence. Faulty networks and
//! Byzantine peers are the simulator's (`crate::sim`, `tests/pbft_sim.rs`).

use crate::ledger::StateRead;
use std::collections::VecDeque;

use super::*;
use crate::ledger::Ledger;
use crate::testkit::Workload;

fn cluster(work: &Workload) -> Vec<Replica> {
    let (ledger, _) = Ledger::genesis(&work.genesis).expect("genesis");
    let set = ledger.validator_sets().active;
    set.validators()
        .iter()
        .map(|v| {
            let key = work.validator_keypair(&v.key).expect("a key per validator");
            Replica::new(key, Params::default(), ledger.clone(), Vec::new(), 0).expect("params")
        })
        .collect()
}

/// Delivers every message at once until quiet; returns each replica's
/// other outputs.
fn settle(replicas: &mut [Replica]) -> Vec<Vec<Output>> {
    let mut other: Vec<Vec<Output>> = replicas.iter().map(|_| Vec::new()).collect();
    let mut wire: VecDeque<(usize, Option<usize>, Message)> = VecDeque::new();
    loop {
        for (i, replica) in replicas.iter_mut().enumerate() {
            while let Some(output) = replica.poll_output() {
                match output {
                    Output::Broadcast(m) => wire.push_back((i, None, m)),
                    Output::Send { to, message } => {
                        wire.push_back((i, Some(to_index(&to)), message));
                    }
                    o => other[i].push(o),
                }
            }
        }
        let Some((from, to, message)) = wire.pop_front() else {
            return other;
        };
        let from_key = replicas[from].public();
        for (j, replica) in replicas.iter_mut().enumerate() {
            if j != from && to.is_none_or(|t| t == j) {
                replica.handle_message(1, from_key, message.clone());
            }
        }
    }
}

fn to_index(_: &crate::crypto::PublicKey) -> usize {
    usize::MAX // unicast is only used for status replies, which these tests drop
}

#[test]
fn four_replicas_commit_a_batch_with_a_valid_certificate() {
    let work = Workload::new(4, 4, 21);
    let mut replicas = cluster(&work);
    let txs = work.transfers(replicas[0].ledger(), 3);
    // Submitted at a backup: relayed to the primary, which proposes.
    let backup = replicas
        .iter()
        .position(|r| !r.is_primary())
        .expect("a backup");
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
                assert_ne!(e.first.body.block, e.second.body.block);
                assert_eq!(e.first.author, primary_key.public());
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
