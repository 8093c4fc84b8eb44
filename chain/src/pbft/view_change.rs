//! The view change (§4.4, with the liveness rules of §4.5.2).
//!
//! A replica that suspects the primary moves to view v+1 and multicasts
//! VIEW-CHANGE with its stable checkpoint (C) and its prepared certificates
//! above it (P). The primary of v+1, with 2f+1 of them (V), computes O: for
//! every height between the highest stable checkpoint in V (min-s) and the
//! highest prepared height (max-s), a pre-prepare in v+1 for the block
//! prepared in the highest view. Every backup recomputes O from V, so a
//! faulty new primary cannot slip anything else in.
//!
//! PBFT fills a height that nobody prepared with a null request. Blocks are
//! chained by their parent's hash, so a later block cannot sit on a null
//! one: O stops at the first such gap instead. With honest quorums no gap
//! occurs — a height is prepared only on top of a committed parent — and
//! what follows a gap could not have committed anyway.

use std::collections::BTreeMap;

use crate::block::Block;
use crate::codec::BoundedVec;
use crate::crypto::PublicKey;
use crate::types::{Height, TimestampMs};

use super::message::{
    CheckpointProof, Message, NewView, PrePrepare, PreparedProof, Signed, View, ViewChange,
};
use super::replica::{Record, Replica, Vote};

/// What V determines: the stable checkpoint to start from, and the blocks
/// to re-propose above it.
struct Reproposal {
    stable: Option<CheckpointProof>,
    blocks: Vec<Block>,
}

impl Replica {
    /// §4.4: stop accepting normal-case messages for the old view, and ask
    /// to move to `new_view`.
    pub(super) fn start_view_change(&mut self, now: TimestampMs, new_view: View) {
        if new_view <= self.view {
            return;
        }
        self.view = new_view;
        self.changing = true;
        self.persist(Record::View {
            view: new_view,
            changing: true,
        });
        self.send_view_change(now);
    }

    /// Multicasts VIEW-CHANGE for the view being changed to: C is the
    /// stable checkpoint, P the prepared certificates above it.
    pub(super) fn send_view_change(&mut self, now: TimestampMs) {
        let new_view = self.view;
        let low = self.low_mark();
        let prepared: Vec<PreparedProof> = self
            .slots
            .iter()
            .filter(|(h, _)| **h > low)
            .filter_map(|(_, slot)| slot.prepared.clone())
            .take(super::message::MAX_PREPARED)
            .collect();
        let prepared = BoundedVec::new(prepared).unwrap_or_default();
        let signed = Signed::sign(
            &self.key,
            &self.chain,
            ViewChange {
                new_view,
                stable: self.stable.clone(),
                prepared,
            },
        );
        self.view_changes.insert(self.public(), signed.clone());
        self.outputs
            .push_back(super::replica::Output::Broadcast(Message::ViewChange(
                signed,
            )));
        self.disarm_progress();
        self.arm_view_change_timer(now);
        self.try_new_view(now);
    }

    /// §4.5.2: a replica changing to view v starts its timer only once it
    /// has 2f+1 view changes for v, so that it does not run ahead alone
    /// into v+1 while the others are still gathering for v. A replica that
    /// has already asked for a later view counts too: it will not come back
    /// to v, so waiting for it without a timer could wait forever.
    fn arm_view_change_timer(&mut self, now: TimestampMs) {
        if !self.changing {
            return;
        }
        let view = self.view;
        let gathered = self
            .view_changes
            .values()
            .filter(|s| s.body.new_view >= view)
            .count();
        if gathered >= self.set.quorum() {
            self.arm_timer(now);
        }
    }

    /// Checks a VIEW-CHANGE's signature and every proof in it.
    fn check_view_change(&self, signed: &Signed<ViewChange>) -> bool {
        if signed.verify(&self.chain, &self.set).is_err() {
            return false;
        }
        let body = &signed.body;
        let stable = body.stable_height();
        if let Some(proof) = &body.stable {
            if proof.verify(&self.chain, &self.set).is_err() {
                return false;
            }
        }
        body.prepared.as_slice().iter().all(|p| {
            p.height() > stable
                && p.view() < body.new_view
                && p.verify(&self.chain, &self.set).is_ok()
        })
    }

    pub(super) fn on_view_change(&mut self, now: TimestampMs, signed: Signed<ViewChange>) {
        let new_view = signed.body.new_view;
        if new_view < self.view || (new_view == self.view && !self.changing) {
            return;
        }
        if self
            .view_changes
            .get(&signed.author)
            .is_some_and(|old| old.body.new_view >= new_view)
        {
            return;
        }
        if !self.check_view_change(&signed) {
            return;
        }
        self.view_changes.insert(signed.author, signed);
        self.arm_view_change_timer(now);
        // §4.5.2: f+1 replicas asking for views above ours cannot all be
        // faulty; join the smallest of those views.
        let above: Vec<View> = self
            .view_changes
            .values()
            .map(|v| v.body.new_view)
            .filter(|v| *v > self.view)
            .collect();
        if above.len() > self.set.max_faulty() {
            if let Some(target) = above.iter().min() {
                self.start_view_change(now, *target);
            }
        }
        self.try_new_view(now);
    }

    /// The new primary, with 2f+1 view changes for its view, sends
    /// NEW-VIEW and enters the view.
    fn try_new_view(&mut self, now: TimestampMs) {
        if !self.changing || self.primary(self.view) != self.public() {
            return;
        }
        let view = self.view;
        let v: Vec<Signed<ViewChange>> = self
            .view_changes
            .values()
            .filter(|s| s.body.new_view == view)
            .cloned()
            .collect();
        if v.len() < self.set.quorum() {
            return;
        }
        let reproposal = reproposal(&v);
        let mut pre_prepares = Vec::with_capacity(reproposal.blocks.len());
        for block in reproposal.blocks {
            let height = block.header.height;
            let digest = block.header.hash();
            self.persist(Record::Voted {
                vote: Vote::PrePrepare,
                view,
                height,
                digest,
            });
            self.slot(height).voted.insert((view, 0), digest);
            pre_prepares.push(Signed::sign(
                &self.key,
                &self.chain,
                PrePrepare { view, block },
            ));
        }
        let (Ok(view_changes), Ok(pre_prepares)) =
            (BoundedVec::new(v), BoundedVec::new(pre_prepares))
        else {
            return;
        };
        let new_view = NewView {
            view,
            view_changes,
            pre_prepares,
        };
        self.outputs
            .push_back(super::replica::Output::Broadcast(Message::NewView(
                new_view.clone(),
            )));
        self.enter_view(now, new_view, reproposal.stable);
    }

    /// §4.4: a backup accepts NEW-VIEW if V is 2f+1 valid view changes for
    /// the view and O is what V determines. It may come from the primary or
    /// be forwarded by a peer: everything in it is signed.
    pub(super) fn on_new_view(&mut self, now: TimestampMs, _from: PublicKey, new_view: NewView) {
        let view = new_view.view;
        if view < self.view || (view == self.view && !self.changing) {
            return;
        }
        let v = new_view.view_changes.as_slice();
        let mut authors: Vec<PublicKey> = v.iter().map(|s| s.author).collect();
        authors.sort();
        authors.dedup();
        if authors.len() != v.len() || v.len() < self.set.quorum() {
            return;
        }
        if !v
            .iter()
            .all(|s| s.body.new_view == view && self.check_view_change(s))
        {
            return;
        }
        let reproposal = reproposal(v);
        let o = new_view.pre_prepares.as_slice();
        let primary = self.primary(view);
        let matches = o.len() == reproposal.blocks.len()
            && o.iter().zip(&reproposal.blocks).all(|(pp, block)| {
                pp.body.view == view
                    && pp.body.block == *block
                    && pp.author == primary
                    && pp.verify(&self.chain, &self.set).is_ok()
            });
        if !matches {
            return;
        }
        self.enter_view(now, new_view, reproposal.stable);
    }

    fn enter_view(&mut self, now: TimestampMs, new_view: NewView, stable: Option<CheckpointProof>) {
        let view = new_view.view;
        self.view = view;
        self.changing = false;
        self.persist(Record::View {
            view,
            changing: false,
        });
        self.view_changes.retain(|_, s| s.body.new_view > view);
        let pre_prepares = new_view.pre_prepares.as_slice().to_vec();
        self.new_view = Some(new_view);
        self.rearm_progress(now);
        if let Some(stable) = stable {
            self.make_stable(now, stable);
        }
        for pre_prepare in pre_prepares {
            if pre_prepare.body.block.header.height > self.ledger.height() {
                self.accept_pre_prepare(now, pre_prepare);
            }
        }
        self.after_progress(now);
    }
}

/// O from V (§4.4): the highest stable checkpoint, then for each height
/// above it the block prepared in the highest view, up to the first gap.
fn reproposal(v: &[Signed<ViewChange>]) -> Reproposal {
    let stable = v
        .iter()
        .filter_map(|s| s.body.stable.clone())
        .max_by_key(|p| p.height());
    let min_s = stable.as_ref().map_or(0, |p| p.height());
    let mut best: BTreeMap<Height, &PreparedProof> = BTreeMap::new();
    for proof in v.iter().flat_map(|s| s.body.prepared.as_slice()) {
        if proof.height() <= min_s {
            continue;
        }
        let entry = best.entry(proof.height()).or_insert(proof);
        if proof.view() > entry.view() {
            *entry = proof;
        }
    }
    let mut blocks = Vec::new();
    let mut next = min_s + 1;
    while let Some(proof) = best.get(&next) {
        blocks.push(proof.pre_prepare.body.block.clone());
        next += 1;
    }
    Reproposal { stable, blocks }
}
