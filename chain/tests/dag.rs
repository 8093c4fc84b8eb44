//! The DAG core: transactions, solidification, tip selection, rate limits,
//! anchoring and confirmation, double spends, a parasite chain, and
//! gateways that saw transactions in different orders across a partition.

use itc_chain::codec::{BoundedVec, Bytes};
use itc_chain::crypto::{Hash, Keypair};
use itc_chain::dag::tangle::roots;
use itc_chain::dag::{DagBody, DagError, DagKind, DagTx, DagTxError, Status, Tangle, TangleConfig};
use itc_chain::testkit::SplitMix64;
use itc_chain::types::DeviceId;

const T0: u64 = 1_764_000_000_000;

struct Device {
    key: Keypair,
    id: DeviceId,
}

fn device(i: u8) -> Device {
    Device {
        key: Keypair::from_seed([i; 32]),
        id: DeviceId::new(format!("mqtt:dev-{i}")).unwrap(),
    }
}

fn report(dev: &Device, parents: [Hash; 2], time_ms: u64, text: &str) -> DagTx {
    let body = DagBody {
        issuer: dev.id.clone(),
        kind: DagKind::StateReport {
            data: Bytes::new(text.as_bytes().to_vec()).unwrap(),
        },
        parents: BoundedVec::new(parents.to_vec()).unwrap(),
        time_ms,
        level: 1,
    };
    DagTx::issue(&dev.key, body, 0)
}

fn payment(dev: &Device, parents: [Hash; 2], time_ms: u64, nonce: u64, to: u8) -> DagTx {
    let body = DagBody {
        issuer: dev.id.clone(),
        kind: DagKind::Payment {
            from: dev.key.public(),
            to: Keypair::from_seed([to; 32]).public(),
            amount: 5,
            nonce,
        },
        parents: BoundedVec::new(parents.to_vec()).unwrap(),
        time_ms,
        level: 1,
    };
    DagTx::issue(&dev.key, body, 0)
}

/// Confirms as the chain does: the payments an anchor over `tips` lists
/// (the tangle's choice, as the primary's) are the ones the ledger applies.
fn confirm(
    tangle: &mut Tangle,
    tips: &[Hash],
    height: u64,
) -> Result<Vec<itc_chain::dag::Confirmed>, DagError> {
    let listed: Vec<Hash> = tangle.payments(tips).iter().map(DagTx::id).collect();
    tangle.confirm(tips, height, |id| listed.contains(id))
}

#[test]
fn a_transaction_is_signed_at_the_source_and_carries_its_work() {
    let dev = device(1);
    let tx = report(&dev, roots(), T0, "on");
    tx.check(&dev.key.public()).unwrap();
    // Another key, or an altered body: the signature fails.
    assert_eq!(
        tx.check(&device(2).key.public()),
        Err(DagTxError::BadSignature)
    );
    // The work is checked first (it is cheap), so the altered body gets
    // new work: only its signature is then wrong.
    let mut altered = tx.clone();
    altered.body.time_ms += 1;
    let outcome = (0u64..)
        .map(|nonce| {
            altered.nonce = nonce;
            altered.check(&dev.key.public())
        })
        .find(|outcome| !matches!(outcome, Err(DagTxError::Work { .. })));
    assert_eq!(outcome, Some(Err(DagTxError::BadSignature)));
    // Level 4 needs 16 zero bits: the issuer's nonce has them, the next
    // nonce without them is refused.
    let harder = DagTx::issue(
        &dev.key,
        DagBody {
            level: 4,
            ..tx.body.clone()
        },
        0,
    );
    harder.check(&dev.key.public()).unwrap();
    let short = (1u64..)
        .map(|k| DagTx {
            nonce: harder.nonce.wrapping_add(k),
            ..harder.clone()
        })
        .find(|t| itc_chain::dag::pow::leading_zero_bits(&t.work_hash()) < 16)
        .unwrap();
    assert!(matches!(
        short.check(&dev.key.public()),
        Err(DagTxError::Work {
            level: 4,
            need: 16,
            ..
        })
    ));
    let mut one_parent = tx.body.clone();
    one_parent.parents = BoundedVec::new(vec![roots()[0]]).unwrap();
    assert_eq!(
        DagTx::issue(&dev.key, one_parent, 0).check(&dev.key.public()),
        Err(DagTxError::Parents { count: 1 })
    );
    let mut twice = tx.body.clone();
    twice.parents = BoundedVec::new(vec![roots()[0], roots()[0]]).unwrap();
    assert_eq!(
        DagTx::issue(&dev.key, twice, 0).check(&dev.key.public()),
        Err(DagTxError::DuplicateParent)
    );
}

#[test]
fn out_of_order_arrivals_wait_for_their_parents() {
    let dev = device(1);
    let a = report(&dev, roots(), T0, "a");
    let b = report(&dev, [a.id(), roots()[0]], T0 + 10, "b");
    let c = report(&dev, [b.id(), a.id()], T0 + 20, "c");
    let mut tangle = Tangle::new(TangleConfig::default());
    let key = dev.key.public();
    tangle.handle_tx(c.clone(), &key, T0 + 30).unwrap();
    assert_eq!(tangle.status(&c.id()), Status::Pending { solid: false });
    let mut asked = tangle.poll_missing();
    asked.sort();
    let mut expected = vec![a.id(), b.id()];
    expected.sort();
    assert_eq!(asked, expected);
    tangle.handle_tx(b.clone(), &key, T0 + 30).unwrap();
    assert_eq!(tangle.status(&b.id()), Status::Pending { solid: false });
    tangle.handle_tx(a.clone(), &key, T0 + 30).unwrap();
    for tx in [&a, &b, &c] {
        assert_eq!(tangle.status(&tx.id()), Status::Pending { solid: true });
    }
    assert_eq!(tangle.tips(), vec![c.id()]);
    assert_eq!(
        tangle.handle_tx(a.clone(), &key, T0 + 30),
        Err(DagError::Duplicate { id: a.id() })
    );
}

#[test]
fn issuers_are_rate_limited() {
    let dev = device(3);
    let key = dev.key.public();
    let mut tangle = Tangle::new(TangleConfig {
        per_issuer: 3,
        window_ms: 1_000,
        ..TangleConfig::default()
    });
    for i in 0..3 {
        tangle
            .handle_tx(report(&dev, roots(), T0, &format!("{i}")), &key, T0)
            .unwrap();
    }
    assert!(matches!(
        tangle.handle_tx(report(&dev, roots(), T0, "4"), &key, T0 + 10),
        Err(DagError::RateLimited { limit: 3, .. })
    ));
    tangle
        .handle_tx(report(&dev, roots(), T0, "5"), &key, T0 + 1_500)
        .unwrap();
    assert!(matches!(
        tangle.handle_tx(report(&dev, roots(), T0 + 600_000, "x"), &key, T0),
        Err(DagError::FromTheFuture { .. })
    ));
}

#[test]
fn a_double_spend_is_applied_once_the_first_anchored_wins() {
    let payer = device(4);
    let key = payer.key.public();
    let mut tangle = Tangle::new(TangleConfig::default());
    let first = payment(&payer, roots(), T0, 7, 10);
    let second = payment(&payer, roots(), T0 + 1, 7, 11);
    tangle.handle_tx(first.clone(), &key, T0 + 5).unwrap();
    tangle.handle_tx(second.clone(), &key, T0 + 5).unwrap();
    // One anchor holding both: exactly one is applied, by the fixed order.
    let tips = tangle.tips();
    let confirmed = confirm(&mut tangle, &tips, 9).unwrap();
    assert_eq!(confirmed.len(), 2);
    assert_eq!(confirmed.iter().filter(|c| c.applied).count(), 1);
    let winner = confirmed.iter().find(|c| c.applied).unwrap().id;
    let loser = confirmed.iter().find(|c| !c.applied).unwrap().id;
    assert_eq!(tangle.status(&winner), Status::Confirmed { height: 9 });
    assert_eq!(tangle.status(&loser), Status::Conflicting { height: 9 });
    // A third spend of the same nonce, anchored later: conflicting too.
    let third = payment(&payer, [winner, loser], T0 + 10, 7, 12);
    tangle.handle_tx(third.clone(), &key, T0 + 20).unwrap();
    let later = confirm(&mut tangle, &[third.id()], 10).unwrap();
    assert_eq!(
        later,
        vec![itc_chain::dag::Confirmed {
            id: third.id(),
            applied: false
        }]
    );
    // Confirming again confirms nothing new.
    assert!(confirm(&mut tangle, &[third.id()], 11).unwrap().is_empty());
    assert!(matches!(
        confirm(&mut tangle, &[Hash::digest(b"nobody")], 12),
        Err(DagError::UnknownTip { .. })
    ));
}

#[test]
fn a_parasite_chain_changes_nothing_that_is_confirmed() {
    let honest = device(5);
    let attacker = device(6);
    let mut tangle = Tangle::new(TangleConfig::default());
    let (hk, ak) = (honest.key.public(), attacker.key.public());
    // The attacker's spend goes out early; the honest network moves on.
    let spend = payment(&attacker, roots(), T0, 1, 20);
    tangle.handle_tx(spend.clone(), &ak, T0).unwrap();
    let mut parents = tangle.select_parents(1);
    let mut time = T0;
    for i in 0..20 {
        time += 10_000;
        let tx = report(&honest, parents, time, &format!("h{i}"));
        tangle.handle_tx(tx, &hk, time).unwrap();
        parents = tangle.select_parents(i);
    }
    let tips = tangle.tips();
    let confirmed = confirm(&mut tangle, &tips, 1).unwrap();
    assert!(confirmed.iter().any(|c| c.id == spend.id() && c.applied));
    // Much later, a parasite chain hanging off the first transaction,
    // carrying a double spend: lazy, never a tip, never confirmed.
    let mut parasite = vec![spend.id(), roots()[1]];
    let late = time + 300_000;
    let double = payment(&attacker, [parasite[0], parasite[1]], late, 1, 21);
    tangle.handle_tx(double.clone(), &ak, late).unwrap();
    parasite = vec![double.id(), spend.id()];
    for i in 0..5 {
        let tx = report(
            &attacker,
            [parasite[0], parasite[1]],
            late + i,
            &format!("p{i}"),
        );
        parasite = vec![tx.id(), parasite[0]];
        tangle.handle_tx(tx, &ak, late + i).unwrap();
    }
    assert!(!tangle.tips().contains(&double.id()));
    assert!(!tangle.tips().contains(&parasite[0]));
    let tips = tangle.tips();
    let more = confirm(&mut tangle, &tips, 2).unwrap();
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(tangle.status(&double.id()), Status::Pending { solid: true });
    assert_eq!(tangle.status(&spend.id()), Status::Confirmed { height: 1 });
}

/// Three gateways, many issuers, a partition: each gateway sees its own
/// side's transactions first and the rest after the heal, in another
/// order. Anchored by the same committed blocks, all confirm the same
/// transactions in the same order.
#[test]
fn gateways_confirm_the_same_order_after_a_partition_heals() {
    let devices: Vec<Device> = (0..12).map(|i| device(30 + i)).collect();
    let mut rng = SplitMix64::new(0xda6);
    let mut issued: Vec<(usize, DagTx)> = Vec::new();
    // Each side grows its own part of the tangle during the partition.
    let mut sides: Vec<Tangle> = (0..2)
        .map(|_| Tangle::new(TangleConfig::default()))
        .collect();
    let mut time = T0;
    for i in 0..120 {
        time += 100;
        let side = (i % 2) as usize;
        let dev = &devices[rng.below(devices.len() as u64) as usize];
        let parents = sides[side].select_parents(rng.next_u64());
        let tx = if i % 17 == 0 {
            // Payments, some reusing a nonce across the two sides.
            payment(dev, parents, time, (i / 34) as u64, 1)
        } else {
            report(dev, parents, time, &format!("{i}"))
        };
        sides[side]
            .handle_tx(tx.clone(), &dev.key.public(), time)
            .unwrap();
        issued.push((side, tx));
    }
    let key_of = |tx: &DagTx| {
        devices
            .iter()
            .find(|d| d.id == tx.body.issuer)
            .unwrap()
            .key
            .public()
    };
    // After the heal: each gateway gets every transaction, in its own
    // (shuffled) order; out-of-order ones wait for parents.
    let mut gateways = Vec::new();
    for g in 0..3u64 {
        let mut tangle = Tangle::new(TangleConfig {
            per_issuer: 1_000,
            ..TangleConfig::default()
        });
        let mut order: Vec<&DagTx> = issued.iter().map(|(_, tx)| tx).collect();
        let mut shuffle = SplitMix64::new(g);
        for i in (1..order.len()).rev() {
            order.swap(i, shuffle.below(i as u64 + 1) as usize);
        }
        for tx in order {
            tangle.handle_tx(tx.clone(), &key_of(tx), time).unwrap();
        }
        assert!(tangle
            .poll_missing()
            .iter()
            .all(|m| tangle.get(m).is_some()));
        gateways.push(tangle);
    }
    // The committed anchors: the tips of both sides, then everything.
    let anchor = gateways[0].anchor().unwrap();
    assert_eq!(anchor.root, itc_chain::merkle::root(anchor.tips.as_slice()));
    let anchors = [
        sides[0].tips(),
        sides[1].tips(),
        anchor.tips.as_slice().to_vec(),
    ];
    let mut outcomes = Vec::new();
    for tangle in &mut gateways {
        let mut all = Vec::new();
        for (height, tips) in anchors.iter().enumerate() {
            all.extend(confirm(tangle, tips, height as u64 + 1).unwrap());
        }
        outcomes.push(all);
    }
    assert_eq!(outcomes[0].len(), 120);
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]));
    assert!(
        outcomes[0].iter().any(|c| !c.applied),
        "a double spend was caught"
    );
}

/// A tangle of `n` reports by a few devices, each on parents the tangle
/// suggests.
fn grown(n: usize, seed: u64) -> (Tangle, Vec<DagTx>, Vec<Device>) {
    let devices: Vec<Device> = (0..4).map(|i| device(80 + i)).collect();
    let mut tangle = Tangle::new(TangleConfig {
        per_issuer: 10_000,
        ..TangleConfig::default()
    });
    let mut rng = SplitMix64::new(seed);
    let mut txs = Vec::new();
    for i in 0..n {
        let dev = &devices[i % devices.len()];
        let tx = report(
            dev,
            tangle.select_parents(rng.next_u64()),
            T0 + i as u64,
            &format!("{i}"),
        );
        tangle
            .handle_tx(tx.clone(), &dev.key.public(), T0 + i as u64)
            .unwrap();
        txs.push(tx);
    }
    (tangle, txs, devices)
}

#[test]
fn a_confirmation_proof_links_a_transaction_to_the_certified_header() {
    use itc_chain::dag::{DagProof, DagProofError};
    use itc_chain::ledger::Ledger;
    use itc_chain::testkit::Workload;
    use itc_chain::tx::{Tx, TxBody};

    let (mut tangle, txs, _) = grown(40, 7);
    let work = Workload::new(4, 1, 3);
    let (ledger, _) = Ledger::genesis(&work.genesis).unwrap();
    let anchor = tangle.anchor().unwrap();
    let gateway = work.proposer(&ledger);
    let anchoring = Tx {
        chain_id: work.genesis.chain_id.clone(),
        sender: gateway.public(),
        nonce: ledger.height() + 1,
        body: TxBody::AnchorDag(anchor.clone()),
    }
    .sign(gateway);
    let proposal = ledger
        .propose(vec![anchoring], ledger.tip().time_ms + 1, gateway.public())
        .unwrap();
    assert!(proposal.rejected.is_empty(), "{:?}", proposal.rejected);
    let block = proposal.executed.block;
    let confirmed = confirm(&mut tangle, anchor.tips.as_slice(), block.header.height).unwrap();
    assert_eq!(confirmed.len(), txs.len());

    // Every transaction has a proof, from the oldest to the tips.
    for tx in &txs {
        let path = tangle.path_to(&tx.id(), anchor.tips.as_slice()).unwrap();
        let proof = DagProof::build(path, &block).unwrap();
        proof.verify(&tx.id(), &block.header).unwrap();
    }
    let first = txs[0].id();
    let proof = DagProof::build(
        tangle.path_to(&first, anchor.tips.as_slice()).unwrap(),
        &block,
    )
    .unwrap();
    assert!(proof.path.len() > 1, "the oldest is deep in the cone");
    // Lies are caught: another transaction, a link left out, a header at
    // another height or with another DAG root, a tip not in the anchor.
    assert!(matches!(
        proof.verify(&txs[1].id(), &block.header),
        Err(DagProofError::WrongStart { .. })
    ));
    let mut skipped = proof.clone();
    skipped.path.remove(1);
    assert!(matches!(
        skipped.verify(&first, &block.header),
        Err(DagProofError::Broken { step: 1 }) | Err(DagProofError::Tip(_))
    ));
    let mut other = block.header.clone();
    other.height += 1;
    assert!(matches!(
        proof.verify(&first, &other),
        Err(DagProofError::Height { .. })
    ));
    let mut other = block.header.clone();
    other.dag_root = Hash::digest(b"another root");
    assert!(matches!(
        proof.verify(&first, &other),
        Err(DagProofError::Anchor(_))
    ));
    let mut short = proof.clone();
    short.path.pop();
    assert!(short.verify(&first, &block.header).is_err());
}

#[test]
fn transactions_whose_parents_never_arrive_expire_with_a_reason() {
    let dev = device(3);
    let config = TangleConfig::default();
    let mut tangle = Tangle::new(config.clone());
    let lost = [Hash::digest(b"never-1"), Hash::digest(b"never-2")];
    let orphan = report(&dev, lost, T0, "orphan");
    tangle
        .handle_tx(orphan.clone(), &dev.key.public(), T0)
        .unwrap();
    assert_eq!(tangle.poll_missing().len(), 2);
    // Not yet: it may still come.
    assert!(tangle.expire(T0 + config.max_wait_ms).is_empty());
    let expired = tangle.expire(T0 + config.max_wait_ms + 1);
    assert_eq!(
        expired,
        vec![DagError::Orphaned {
            id: orphan.id(),
            missing: 2,
            waited_ms: config.max_wait_ms + 1
        }]
    );
    assert_eq!(tangle.status(&orphan.id()), Status::Unknown);
    assert!(tangle.poll_missing().is_empty());
    // It can come back once its parents do: nothing of it lingers.
    tangle
        .handle_tx(orphan, &dev.key.public(), T0 + 40_000)
        .unwrap();
}

#[test]
fn what_keeps_a_tip_from_being_solid_can_be_asked_for_again() {
    let dev = device(7);
    let key = dev.key.public();
    let mut tangle = Tangle::new(TangleConfig::default());
    // a ← b ← c, and c also approves x; only b and c arrive.
    let a = report(&dev, roots(), T0, "a");
    let x = report(&dev, roots(), T0, "x");
    let b = report(&dev, [a.id(), roots()[0]], T0 + 1, "b");
    let c = report(&dev, [b.id(), x.id()], T0 + 2, "c");
    tangle.handle_tx(c.clone(), &key, T0 + 3).unwrap();
    tangle.handle_tx(b.clone(), &key, T0 + 3).unwrap();
    let mut asked = tangle.poll_missing();
    asked.sort();
    let mut lost = vec![a.id(), x.id()];
    lost.sort();
    assert_eq!(asked, lost);
    // The answers are lost: asked once, the parents are not asked again,
    // but what keeps c from being solid still is.
    assert!(tangle.poll_missing().is_empty());
    assert_eq!(tangle.missing_beneath(&[c.id()]), lost);
    assert_eq!(tangle.missing_beneath(&[b.id()]), vec![a.id()]);
    tangle.handle_tx(a, &key, T0 + 4).unwrap();
    tangle.handle_tx(x, &key, T0 + 4).unwrap();
    assert!(tangle.missing_beneath(&[c.id()]).is_empty());
    assert!(tangle.is_solid(&c.id()));
    // c, the one tip, has waited since it arrived; once anchored, no tip
    // waits.
    assert_eq!(tangle.longest_tip_wait(T0 + 1_003), Some(1_000));
    let tips = tangle.tips();
    confirm(&mut tangle, &tips, 1).unwrap();
    assert_eq!(tangle.longest_tip_wait(T0 + 1_003), None);
}

#[test]
fn pruning_forgets_deep_history_and_keeps_the_tips() {
    let (mut tangle, txs, devices) = grown(30, 9);
    let tips = tangle.tips();
    confirm(&mut tangle, &tips, 1).unwrap();
    let pruned = tangle.prune(|height| height < 2);
    assert_eq!(pruned.len(), txs.len() - tips.len());
    assert_eq!(tangle.len(), tips.len());
    assert_eq!(tangle.tips(), tips);
    // The tangle grows on from its tips.
    let dev = &devices[0];
    let next = report(dev, tangle.select_parents(5), T0 + 100, "after");
    tangle
        .handle_tx(next.clone(), &dev.key.public(), T0 + 100)
        .unwrap();
    assert_eq!(tangle.status(&next.id()), Status::Pending { solid: true });
}

#[test]
fn a_restored_tangle_goes_on_as_the_original() {
    let (mut original, txs, devices) = grown(50, 11);
    let first_tips = original.tips();
    confirm(&mut original, &first_tips, 1).unwrap();
    let mut rng = SplitMix64::new(12);
    let mut more = Vec::new();
    for i in 0..20u64 {
        let dev = &devices[i as usize % devices.len()];
        let tx = report(
            dev,
            original.select_parents(rng.next_u64()),
            T0 + 100 + i,
            "more",
        );
        original
            .handle_tx(tx.clone(), &dev.key.public(), T0 + 100 + i)
            .unwrap();
        more.push(tx);
    }
    // A restart: the stored rows in arrival order, with their statuses.
    let mut restored = Tangle::new(TangleConfig::default());
    for tx in txs.iter().chain(&more) {
        restored.restore(tx.clone(), original.status(&tx.id()));
    }
    assert_eq!(restored.tips(), original.tips());
    let tips = original.tips();
    assert_eq!(
        confirm(&mut restored, &tips, 2).unwrap(),
        confirm(&mut original, &tips, 2).unwrap()
    );
}

/// A restart after pruning: what the store still holds comes back (deep
/// history's bodies are gone), and confirmed transactions whose parents
/// were pruned are not waiting for them — they stay solid, keep their
/// children solid, and nothing expires.
#[test]
fn a_tangle_restored_after_pruning_keeps_its_history_solid() {
    let (mut original, txs, devices) = grown(40, 21);
    let mut rng = SplitMix64::new(22);
    let mut all = txs.clone();
    let mut grow = |tangle: &mut Tangle, all: &mut Vec<DagTx>, n: u64, from: u64| {
        for i in from..from + n {
            let dev = &devices[i as usize % devices.len()];
            let tx = report(dev, tangle.select_parents(rng.next_u64()), T0 + i, "more");
            tangle
                .handle_tx(tx.clone(), &dev.key.public(), T0 + i)
                .unwrap();
            all.push(tx);
        }
    };
    let tips = original.tips();
    confirm(&mut original, &tips, 1).unwrap();
    grow(&mut original, &mut all, 20, 100);
    let tips = original.tips();
    confirm(&mut original, &tips, 2).unwrap();
    grow(&mut original, &mut all, 10, 200);
    assert!(!original.prune(|height| height < 2).is_empty());
    // The store keeps bodies confirmed at 2 or later, and pending ones.
    let mut restored = Tangle::new(TangleConfig::default());
    let mut kept = 0;
    for tx in &all {
        match original.status(&tx.id()) {
            Status::Unknown | Status::Confirmed { height: 1 } => continue,
            status => restored.restore(tx.clone(), status),
        }
        kept += 1;
    }
    assert!(kept < all.len());
    for tx in &all {
        let status = restored.status(&tx.id());
        if status != Status::Unknown {
            assert!(restored.is_solid(&tx.id()), "{status:?} is not solid");
        }
    }
    assert!(restored.poll_missing().is_empty(), "nothing to ask for");
    assert!(
        restored.expire(T0 + 10_000_000).is_empty(),
        "nothing expires"
    );
    assert_eq!(restored.tips(), original.tips());
    let tips = original.tips();
    assert_eq!(
        confirm(&mut restored, &tips, 3).unwrap(),
        confirm(&mut original, &tips, 3).unwrap()
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever order a tangle's transactions arrive in, every one ends
        /// solid, the missing parents asked for are exactly ones that then
        /// arrived, and the tips are the transactions nobody approves.
        #[test]
        fn solidification_does_not_depend_on_arrival_order(seed in any::<u64>(), n in 1usize..60) {
            let (source, txs, devices) = grown(n, seed);
            let key_of = |tx: &DagTx| {
                devices.iter().find(|d| d.id == tx.body.issuer).unwrap().key.public()
            };
            let mut order = txs.clone();
            let mut rng = SplitMix64::new(seed ^ 0xa5a5);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut tangle = Tangle::new(TangleConfig { per_issuer: 10_000, ..TangleConfig::default() });
            let mut asked = Vec::new();
            for tx in &order {
                tangle.handle_tx(tx.clone(), &key_of(tx), T0 + n as u64).unwrap();
                asked.extend(tangle.poll_missing());
            }
            for tx in &txs {
                prop_assert_eq!(tangle.status(&tx.id()), Status::Pending { solid: true });
            }
            for id in &asked {
                prop_assert!(tangle.get(id).is_some());
            }
            let approved: std::collections::HashSet<Hash> = txs
                .iter()
                .flat_map(|tx| tx.body.parents.as_slice().to_vec())
                .collect();
            let mut unapproved: Vec<Hash> = txs.iter().map(DagTx::id).filter(|id| !approved.contains(id)).collect();
            unapproved.sort();
            prop_assert_eq!(tangle.tips(), unapproved.clone());
            prop_assert_eq!(source.tips(), unapproved);
        }

        /// Tip selection gives two distinct current tips (or the roots and
        /// a tip's parent while there are fewer than two).
        #[test]
        fn selected_parents_are_two_distinct_tips(seed in any::<u64>(), n in 0usize..40, random in any::<u64>()) {
            let (tangle, _, _) = grown(n, seed);
            let [a, b] = tangle.select_parents(random);
            prop_assert_ne!(a, b);
            let tips = tangle.tips();
            if tips.len() >= 2 {
                prop_assert!(tips.contains(&a) && tips.contains(&b));
            } else {
                prop_assert!(tips.contains(&a) || roots().contains(&a));
            }
        }
    }
}
