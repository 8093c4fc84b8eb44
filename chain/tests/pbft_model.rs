//! A model of PBFT's agreement, checked exhaustively with `stateright`.
//!
//! n = 4, f = 1; replica 0 is Byzantine *and* the primary of view 0, so it
//! may equivocate, vote for anything, and assemble view changes from any
//! prepared certificate it has seen. Views 0 and 1 (replica 1 is view 1's
//! primary), one sequence number, two candidate blocks (A and B). The
//! network delivers any sent message to any replica, any number of times,
//! in any order; honest replicas time out at any moment (asynchrony).
//!
//! The model follows `itc_chain::pbft` at the level of the protocol (§4.2
//! and §4.4 of Castro and Liskov): accept one pre-prepare per view;
//! prepared = pre-prepare + 2f matching prepares from backups;
//! committed-local = prepared + 2f+1 matching commits; a view change
//! carries the sender's prepared certificate; the new primary re-proposes
//! the value prepared in the highest view among 2f+1 view changes (any
//! value if none), and backups check that choice. Signatures are modelled
//! by message authorship: nobody can send a message as another replica,
//! and a prepared certificate can be claimed only if its messages exist.
//!
//! Checked: no two honest replicas commit different blocks; and (to show
//! the model is not vacuous) some run does commit.

use std::collections::BTreeSet;

use stateright::{Checker, Model, Property};

const N: u8 = 4;
const QUORUM: usize = 3; // 2f + 1
const BYZANTINE: u8 = 0;
const MAX_VIEW: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Block {
    A,
    B,
}

const BLOCKS: [Block; 2] = [Block::A, Block::B];

type Cert = Option<(u8, Block)>; // (view, block) prepared

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    PrePrepare {
        view: u8,
        block: Block,
        from: u8,
    },
    Prepare {
        view: u8,
        block: Block,
        from: u8,
    },
    Commit {
        view: u8,
        block: Block,
        from: u8,
    },
    ViewChange {
        view: u8,
        cert: Cert,
        from: u8,
    },
    NewView {
        view: u8,
        vcs: BTreeSet<(u8, Cert)>,
        block: Block,
        from: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Replica {
    view: u8,
    changing: bool,
    accepted: Option<(u8, Block)>,
    prepared: Cert,
    committed: Option<Block>,
}

/// Replicas act on the messages in the network when they choose to: the
/// predicates are monotone in the set of messages received, and every
/// step is optional, so this covers every order of delivery (and every
/// loss, since a replica may never act).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    replicas: Vec<Replica>, // index 0 is the Byzantine replica's (unused)
    network: BTreeSet<Msg>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// §4.2: accept the view's pre-prepare for `block` (and prepare it).
    Accept(u8, Block),
    /// §4.2: prepared — send COMMIT.
    Prepared(u8),
    /// §4.2: committed-local — execute.
    Commit(u8),
    /// §4.4: time out and ask for the next view.
    Timeout(u8),
    /// §4.4: the new primary sends NEW-VIEW from these view changes.
    NewView(BTreeSet<(u8, Cert)>, Block),
    /// §4.4: a backup accepts a NEW-VIEW and enters the view.
    EnterView(u8, Msg),
}

fn primary(view: u8) -> u8 {
    view % N
}

const HONEST: [u8; 3] = [1, 2, 3];

/// The block a new primary must propose given view changes (§4.4): the
/// one prepared in the highest view, or free when none was prepared.
fn chosen(vcs: &BTreeSet<(u8, Cert)>) -> Option<Block> {
    vcs.iter()
        .filter_map(|(_, cert)| *cert)
        .max_by_key(|(view, _)| *view)
        .map(|(_, block)| block)
}

fn count(network: &BTreeSet<Msg>, keep: impl Fn(&Msg) -> bool) -> usize {
    network.iter().filter(|m| keep(m)).count()
}

fn prepares(network: &BTreeSet<Msg>, view: u8, block: Block) -> usize {
    count(
        network,
        |m| matches!(m, Msg::Prepare { view: v, block: b, from } if *v == view && *b == block && *from != primary(view)),
    )
}

fn commits(network: &BTreeSet<Msg>, view: u8, block: Block) -> usize {
    count(
        network,
        |m| matches!(m, Msg::Commit { view: v, block: b, .. } if *v == view && *b == block),
    )
}

/// The Byzantine replica sends everything it can, as soon as it can:
/// with monotone predicates and optional steps, sending more earlier only
/// gives the honest replicas more choices.
fn byzantine_closure(network: &mut BTreeSet<Msg>) {
    for block in BLOCKS {
        network.insert(Msg::PrePrepare {
            view: 0,
            block,
            from: BYZANTINE,
        });
        for view in 0..=MAX_VIEW {
            network.insert(Msg::Prepare {
                view,
                block,
                from: BYZANTINE,
            });
            network.insert(Msg::Commit {
                view,
                block,
                from: BYZANTINE,
            });
        }
    }
    network.insert(Msg::ViewChange {
        view: 1,
        cert: None,
        from: BYZANTINE,
    });
    // A view change claiming a certificate it could assemble from signed
    // messages that exist (its own pre-prepare, 2f prepares).
    for block in BLOCKS {
        if prepares(network, 0, block) >= QUORUM - 1 {
            network.insert(Msg::ViewChange {
                view: 1,
                cert: Some((0, block)),
                from: BYZANTINE,
            });
        }
    }
}

struct Pbft;

impl Model for Pbft {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let replica = Replica {
            view: 0,
            changing: false,
            accepted: None,
            prepared: None,
            committed: None,
        };
        let mut network = BTreeSet::new();
        byzantine_closure(&mut network);
        vec![State {
            replicas: vec![replica; N as usize],
            network,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for me in HONEST {
            let r = &state.replicas[me as usize];
            if !r.changing && r.accepted.is_none_or(|(v, _)| v < r.view) {
                for block in BLOCKS {
                    let pre_prepare = Msg::PrePrepare {
                        view: r.view,
                        block,
                        from: primary(r.view),
                    };
                    if state.network.contains(&pre_prepare) {
                        actions.push(Action::Accept(me, block));
                    }
                }
            }
            if let Some((view, block)) = r.accepted {
                if !r.changing
                    && view == r.view
                    && r.prepared != Some((view, block))
                    && prepares(&state.network, view, block) >= QUORUM - 1
                {
                    actions.push(Action::Prepared(me));
                }
                if !r.changing
                    && r.committed.is_none()
                    && r.prepared == Some((view, block))
                    && commits(&state.network, view, block) >= QUORUM
                {
                    actions.push(Action::Commit(me));
                }
            }
            if r.view < MAX_VIEW {
                actions.push(Action::Timeout(me));
            }
            for msg in &state.network {
                if let Msg::NewView { view, .. } = msg {
                    if *view > r.view || (*view == r.view && r.changing) {
                        actions.push(Action::EnterView(me, msg.clone()));
                    }
                }
            }
        }
        // The primary of view 1 (honest), changing to it, picks any 2f+1
        // view changes that exist.
        let p = primary(1) as usize;
        if state.replicas[p].view == 1 && state.replicas[p].changing {
            let vcs: Vec<(u8, Cert)> = state
                .network
                .iter()
                .filter_map(|m| match m {
                    Msg::ViewChange {
                        view: 1,
                        cert,
                        from,
                    } => Some((*from, *cert)),
                    _ => None,
                })
                .collect();
            let own = vcs.iter().find(|(f, _)| *f == p as u8).copied();
            if let Some(own) = own {
                let others: Vec<(u8, Cert)> =
                    vcs.iter().filter(|(f, _)| *f != p as u8).copied().collect();
                for i in 0..others.len() {
                    for j in i + 1..others.len() {
                        if others[i].0 == others[j].0 {
                            continue;
                        }
                        let set: BTreeSet<(u8, Cert)> =
                            [own, others[i], others[j]].into_iter().collect();
                        let options = match chosen(&set) {
                            Some(block) => vec![block],
                            None => BLOCKS.to_vec(),
                        };
                        for block in options {
                            actions.push(Action::NewView(set.clone(), block));
                        }
                    }
                }
            }
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        let mut next = state.clone();
        match action {
            Action::Accept(me, block) => {
                let r = &mut next.replicas[me as usize];
                let view = r.view;
                r.accepted = Some((view, block));
                if me != primary(view) {
                    next.network.insert(Msg::Prepare {
                        view,
                        block,
                        from: me,
                    });
                }
            }
            Action::Prepared(me) => {
                let r = &mut next.replicas[me as usize];
                let (view, block) = r.accepted?;
                r.prepared = Some((view, block));
                next.network.insert(Msg::Commit {
                    view,
                    block,
                    from: me,
                });
            }
            Action::Commit(me) => {
                let r = &mut next.replicas[me as usize];
                r.committed = r.accepted.map(|(_, b)| b);
            }
            Action::Timeout(me) => {
                let r = &mut next.replicas[me as usize];
                r.view += 1;
                r.changing = true;
                let (view, cert) = (r.view, r.prepared);
                next.network.insert(Msg::ViewChange {
                    view,
                    cert,
                    from: me,
                });
            }
            Action::NewView(vcs, block) => {
                let view = 1;
                let me = primary(view);
                next.network.insert(Msg::NewView {
                    view,
                    vcs,
                    block,
                    from: me,
                });
                next.network.insert(Msg::PrePrepare {
                    view,
                    block,
                    from: me,
                });
                let r = &mut next.replicas[me as usize];
                r.changing = false;
                r.accepted = Some((view, block));
            }
            Action::EnterView(me, msg) => {
                let Msg::NewView {
                    view,
                    vcs,
                    block,
                    from,
                } = msg
                else {
                    return None;
                };
                // The backup's checks: from the view's primary, 2f+1
                // distinct genuine view changes, and the block they
                // dictate.
                let senders: BTreeSet<u8> = vcs.iter().map(|(f, _)| *f).collect();
                let genuine = vcs.iter().all(|(f, cert)| {
                    next.network.contains(&Msg::ViewChange {
                        view,
                        cert: *cert,
                        from: *f,
                    })
                });
                if from != primary(view)
                    || senders.len() < QUORUM
                    || senders.len() != vcs.len()
                    || !genuine
                    || chosen(&vcs).is_some_and(|b| b != block)
                {
                    return None;
                }
                let r = &mut next.replicas[me as usize];
                r.view = view;
                r.changing = false;
                if me != primary(view) {
                    r.accepted = Some((view, block));
                    next.network.insert(Msg::Prepare {
                        view,
                        block,
                        from: me,
                    });
                }
            }
        }
        byzantine_closure(&mut next.network);
        (next != *state).then_some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("agreement", |_, state: &State| {
                let committed: BTreeSet<Block> = HONEST
                    .iter()
                    .filter_map(|i| state.replicas[*i as usize].committed)
                    .collect();
                committed.len() <= 1
            }),
            Property::sometimes("something commits", |_, state: &State| {
                HONEST
                    .iter()
                    .any(|i| state.replicas[*i as usize].committed.is_some())
            }),
            Property::sometimes("a commit in view 1", |_, state: &State| {
                HONEST.iter().any(|i| {
                    let r = &state.replicas[*i as usize];
                    r.committed.is_some() && r.view == 1 && r.accepted.is_some_and(|(v, _)| v == 1)
                })
            }),
        ]
    }
}

#[test]
fn agreement_holds_with_a_byzantine_primary() {
    let checker = Pbft.checker().spawn_bfs().join();
    let states = checker.unique_state_count();
    eprintln!(
        "PBFT model (n = 4, f = 1, Byzantine primary of view 0, views 0..=1): \
         {states} states explored"
    );
    checker.assert_properties();
    assert!(states > 1_000, "the model explored suspiciously little");
}
