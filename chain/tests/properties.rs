//! Property tests:
//! - two independent replicas fed the same random transaction sequences
//!   (valid and invalid mixed) reach identical state roots at every height;
//! - every state proof verifies, and every tampered proof (one flipped bit,
//!   another key, another root) fails unless what it then claims is true (an
//!   absence proof may also cover a neighbouring absent key);
//! - decoding random or mutated bytes never panics.

use itc_chain::block::{Block, CommitCertificate, Header};
use itc_chain::codec::{decode, encode, Text};
use itc_chain::crypto::{Domain, Hash, Keypair};
use itc_chain::ledger::StateRead;
use itc_chain::ledger::{Executed, Ledger};
use itc_chain::state::{StateKey, StateProof, StateValue};
use itc_chain::testkit::Workload;
use itc_chain::tx::{
    claim_payload, registration_payload, DeviceRegistration, SignedTx, Tx, TxBody,
};
use itc_chain::types::{DeviceId, DeviceKind, Rights};
use proptest::prelude::*;

const USERS: usize = 6;
const DEVICES: u8 = 4;

/// One random action, by index into the workload's actors.
#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Register {
        gateway: usize,
        device: u8,
    },
    Claim {
        user: usize,
        device: u8,
    },
    Grant {
        user: usize,
        device: u8,
        grantee: usize,
        rights: u8,
        ttl: u64,
    },
    Revoke {
        user: usize,
        device: u8,
        grantee: usize,
    },
    Give {
        user: usize,
        device: u8,
        to: usize,
    },
    /// A transaction with a stale or future nonce.
    BadNonce {
        from: usize,
        delta: i8,
    },
    /// Ends the current block.
    Cut,
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let device = 0..DEVICES;
    prop_oneof![
        4 => (user.clone(), user.clone(), 0u64..2_000_000_000).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        2 => (0usize..4, device.clone()).prop_map(|(gateway, device)| Op::Register { gateway, device }),
        2 => (user.clone(), device.clone()).prop_map(|(user, device)| Op::Claim { user, device }),
        2 => (user.clone(), device.clone(), user.clone(), 0u8..4, 0u64..5_000).prop_map(|(user, device, grantee, rights, ttl)| Op::Grant { user, device, grantee, rights, ttl }),
        1 => (user.clone(), device.clone(), user.clone()).prop_map(|(user, device, grantee)| Op::Revoke { user, device, grantee }),
        1 => (user.clone(), device.clone(), user.clone()).prop_map(|(user, device, to)| Op::Give { user, device, to }),
        1 => (user, -2i8..3).prop_map(|(from, delta)| Op::BadNonce { from, delta }),
        2 => Just(Op::Cut),
    ]
}

fn device_id(d: u8) -> DeviceId {
    DeviceId::new(format!("mqtt:bulb-{d}")).unwrap()
}

fn device_key(d: u8) -> Keypair {
    Keypair::from_seed([100 + d; 32])
}

/// Turns ops into signed transactions against `ledger` (nonces taken from
/// the committed state plus what this block already used).
struct Builder<'a> {
    work: &'a Workload,
    used: std::collections::HashMap<usize, u64>,
    gw_used: std::collections::HashMap<usize, u64>,
}

impl Builder<'_> {
    fn sign(&mut self, ledger: &Ledger, who: &Keypair, slot: u64, body: TxBody) -> SignedTx {
        Tx {
            chain_id: self.work.genesis.chain_id.clone(),
            sender: who.public(),
            nonce: ledger.account(&who.public()).nonce + slot,
            body,
        }
        .sign(who)
    }

    fn user_tx(&mut self, ledger: &Ledger, user: usize, body: TxBody) -> SignedTx {
        let slot = *self.used.get(&user).unwrap_or(&0);
        self.used.insert(user, slot + 1);
        let key = &self.work.users[user];
        self.sign(ledger, key, slot, body)
    }

    fn build(&mut self, ledger: &Ledger, op: &Op) -> Option<SignedTx> {
        let chain = self.work.genesis.chain_id.clone();
        let users = &self.work.users;
        Some(match op {
            Op::Transfer { from, to, amount } => self.user_tx(
                ledger,
                *from,
                TxBody::Transfer {
                    to: users[*to].public(),
                    amount: *amount,
                },
            ),
            Op::Register { gateway, device } => {
                let gw = &self.work.validators[*gateway];
                let model = Text::new("ESP-BULB").unwrap();
                let payload = registration_payload(
                    &chain,
                    &gw.public(),
                    &device_id(*device),
                    &device_key(*device).public(),
                    DeviceKind::Mqtt,
                    &model,
                );
                let slot = *self.gw_used.get(gateway).unwrap_or(&0);
                self.gw_used.insert(*gateway, slot + 1);
                self.sign(
                    ledger,
                    gw,
                    slot,
                    TxBody::RegisterDevice(DeviceRegistration {
                        device: device_id(*device),
                        device_key: device_key(*device).public(),
                        kind: DeviceKind::Mqtt,
                        model,
                        proof: device_key(*device).sign(Domain::DeviceRegistration, &payload),
                    }),
                )
            }
            Op::Claim { user, device } => {
                let payload = claim_payload(&chain, &device_id(*device), &users[*user].public());
                self.user_tx(
                    ledger,
                    *user,
                    TxBody::ClaimDevice {
                        device: device_id(*device),
                        authorizer: device_key(*device).public(),
                        authorization: device_key(*device).sign(Domain::DeviceClaim, &payload),
                    },
                )
            }
            Op::Grant {
                user,
                device,
                grantee,
                rights,
                ttl,
            } => self.user_tx(
                ledger,
                *user,
                TxBody::GrantAccess {
                    device: device_id(*device),
                    grantee: users[*grantee].public(),
                    rights: Rights::from_bits(*rights)?,
                    expires_at: ledger.tip().time_ms + ttl,
                },
            ),
            Op::Revoke {
                user,
                device,
                grantee,
            } => self.user_tx(
                ledger,
                *user,
                TxBody::RevokeAccess {
                    device: device_id(*device),
                    grantee: users[*grantee].public(),
                },
            ),
            Op::Give { user, device, to } => self.user_tx(
                ledger,
                *user,
                TxBody::TransferDevice {
                    device: device_id(*device),
                    new_owner: users[*to].public(),
                },
            ),
            Op::BadNonce { from, delta } => {
                let key = &self.work.users[*from];
                let nonce = ledger.account(&key.public()).nonce as i64 + *delta as i64;
                Tx {
                    chain_id: chain,
                    sender: key.public(),
                    nonce: nonce.max(0) as u64,
                    body: TxBody::Transfer {
                        to: users[(*from + 1) % USERS].public(),
                        amount: 1,
                    },
                }
                .sign(key)
            }
            Op::Cut => return None,
        })
    }
}

/// Runs `ops` on a proposer and an independent replica; checks they agree
/// at every height and returns the proposer's ledger.
fn run(ops: &[Op]) -> (Workload, Ledger) {
    let work = Workload::new(4, USERS, 7);
    let (mut proposer, _) = Ledger::genesis(&work.genesis).unwrap();
    let (mut replica, _) = Ledger::genesis(&work.genesis).unwrap();
    // A pipelining replica: it executes each block over up to two parents
    // it has not committed yet.
    let (mut piped, _) = Ledger::genesis(&work.genesis).unwrap();
    let mut uncommitted: std::collections::VecDeque<Executed> = Default::default();
    let mut blocks = ops.split(|op| matches!(op, Op::Cut)).peekable();
    while let Some(chunk) = blocks.next() {
        let mut builder = Builder {
            work: &work,
            used: Default::default(),
            gw_used: Default::default(),
        };
        let txs: Vec<SignedTx> = chunk
            .iter()
            .filter_map(|op| builder.build(&proposer, op))
            .collect();
        let primary = work.proposer(&proposer).public();
        let proposal = proposer
            .propose(txs, proposer.tip().time_ms + 500, primary)
            .unwrap();
        let block: Block = decode(&encode(&proposal.executed.block)).unwrap();
        let executed = replica.execute(&block).unwrap();
        replica.commit(&executed).unwrap();
        let parents: Vec<&Executed> = uncommitted.iter().collect();
        let pipelined = piped.execute_on(&parents, &block, &|_| false).unwrap();
        uncommitted.push_back(pipelined);
        if uncommitted.len() > 2 {
            piped.commit(&uncommitted.pop_front().unwrap()).unwrap();
        }
        proposer.commit(&proposal.executed).unwrap();
        assert_eq!(proposer.state_root(), replica.state_root());
        assert_eq!(proposer.tip(), replica.tip());
        if blocks.peek().is_none() {
            break;
        }
    }
    for executed in uncommitted {
        piped.commit(&executed).unwrap();
    }
    assert_eq!(proposer.state_root(), piped.state_root());
    assert_eq!(proposer.tip(), piped.tip());
    (work, proposer)
}

fn interesting_keys(work: &Workload) -> Vec<StateKey> {
    let mut keys: Vec<StateKey> = work
        .users
        .iter()
        .map(|u| StateKey::Account {
            account: u.public(),
        })
        .collect();
    keys.push(StateKey::Account {
        account: Keypair::from_seed([250; 32]).public(),
    });
    for d in 0..DEVICES + 1 {
        keys.push(StateKey::Device {
            device: device_id(d),
        });
        for u in &work.users {
            keys.push(StateKey::Grant {
                device: device_id(d),
                grantee: u.public(),
            });
        }
    }
    keys.push(StateKey::Validators);
    keys
}

proptest! {
    // A fixed seed: the same cases on every run, so CI is deterministic.
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x17c_2026),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn independent_replicas_reach_identical_roots(ops in prop::collection::vec(op(), 1..80)) {
        let (work, a) = run(&ops);
        // A second, fully independent run of the same ops agrees too.
        let (_, b) = run(&ops);
        prop_assert_eq!(a.state_root(), b.state_root());
        prop_assert_eq!(a.tip().hash(), b.tip().hash());
        // Balances are conserved.
        let total: u64 = work.users.iter().map(|u| a.account(&u.public()).balance).sum();
        prop_assert_eq!(total, itc_chain::testkit::USER_BALANCE * USERS as u64);
    }

    #[test]
    fn proofs_verify_and_tampered_proofs_fail(
        ops in prop::collection::vec(op(), 1..60),
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let (work, ledger) = run(&ops);
        let root = ledger.tip().state_root;
        let keys = interesting_keys(&work);
        let key = pick.get(&keys).clone();
        let proof = ledger.prove(&key).unwrap();
        prop_assert_eq!(proof.value.as_ref(), ledger.state().get(&key));
        proof.verify(&root).unwrap();

        // Moved to another key, the proof may verify only if what it then
        // claims is true (an absence proof can cover a neighbouring absent
        // key); a false claim never verifies.
        let other_key = other.get(&keys).clone();
        let moved = StateProof { key: other_key.clone(), ..proof.clone() };
        if moved.verify(&root).is_ok() {
            prop_assert_eq!(moved.value.as_ref(), ledger.state().get(&other_key));
        }
        // Nor does it verify under another root.
        prop_assert!(proof.verify(&Hash::digest(b"another root")).is_err());
        // A claimed value that is not the stored one fails.
        let lie = StateProof {
            value: Some(StateValue::Account(itc_chain::state::Account { balance: u64::MAX, nonce: 0 })),
            ..proof.clone()
        };
        prop_assert!(lie.verify(&root).is_err());

        // One flipped bit anywhere in the encoding: it no longer decodes, or
        // it no longer verifies — unless the flip only moved an absence proof
        // to another key that is absent too, which is still the truth.
        let mut bytes = encode(&proof);
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        if let Ok(tampered) = decode::<StateProof>(&bytes) {
            if tampered.verify(&root).is_ok() {
                prop_assert!(proof.value.is_none(), "an inclusion proof survived flipping bit {}", i);
                prop_assert_eq!(tampered.value.as_ref(), None);
                prop_assert_eq!(ledger.state().get(&tampered.key), None);
            }
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<SignedTx>(&bytes);
        let _ = decode::<Block>(&bytes);
        let _ = decode::<Header>(&bytes);
        let _ = decode::<CommitCertificate>(&bytes);
        let _ = decode::<StateKey>(&bytes);
        let _ = decode::<StateValue>(&bytes);
        let _ = decode::<StateProof>(&bytes);
    }

    #[test]
    fn decoding_mutated_transactions_never_panics_and_never_verifies_changed(
        ops in prop::collection::vec(op(), 1..10),
        flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let work = Workload::new(4, USERS, 7);
        let (ledger, _) = Ledger::genesis(&work.genesis).unwrap();
        let mut builder = Builder { work: &work, used: Default::default(), gw_used: Default::default() };
        for tx in ops.iter().filter_map(|op| builder.build(&ledger, op)) {
            let original = encode(&tx);
            let mut bytes = original.clone();
            for flip in &flips {
                let i = flip.index(bytes.len() * 8);
                bytes[i / 8] ^= 1 << (i % 8);
            }
            if bytes == original {
                continue;
            }
            if let Ok(changed) = decode::<SignedTx>(&bytes) {
                // Whatever decodes differently must not carry a valid signature.
                prop_assert!(changed != tx);
                prop_assert!(changed.verify_signature().is_err());
            }
        }
    }
}
