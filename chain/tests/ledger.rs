//! The ledger's rules, end to end: every transaction kind, every refusal,
//! access checks, validator-set epochs and block validation.

use itc_chain::block::Block;
use itc_chain::codec::{BoundedVec, Bytes, Text};
use itc_chain::crypto::{Domain, Hash, Keypair};
use itc_chain::dag::tangle::roots;
use itc_chain::dag::{DagBody, DagKind, DagTx, DagTxError};
use itc_chain::ledger::StateRead;
use itc_chain::ledger::{Access, AccessError, BlockError, Ledger, TxError};
use itc_chain::merkle;
use itc_chain::state::{StateKey, StateValue};
use itc_chain::testkit::{Workload, USER_BALANCE};
use itc_chain::tx::{
    claim_payload, registration_payload, validator_change_payload, Approval, ChainId, DagAnchor,
    DeviceRegistration, FirmwareManifest, SignedTx, Tx, TxBody, ValidatorChange,
};
use itc_chain::types::{DeviceId, DeviceKind, FirmwareVersion, Rights};
use itc_chain::validators::Validator;

struct Env {
    work: Workload,
    ledger: Ledger,
}

impl Env {
    fn new() -> Env {
        let work = Workload::new(4, 8, 42);
        let (ledger, _) = Ledger::genesis(&work.genesis).unwrap();
        Env { work, ledger }
    }

    fn chain(&self) -> ChainId {
        self.work.genesis.chain_id.clone()
    }

    fn user(&self, i: usize) -> &Keypair {
        &self.work.users[i]
    }

    fn gateway(&self, i: usize) -> &Keypair {
        &self.work.validators[i]
    }

    fn now(&self) -> u64 {
        self.ledger.tip().time_ms
    }

    fn tx(&self, from: &Keypair, body: TxBody) -> SignedTx {
        let mut tx = Tx {
            chain_id: self.chain(),
            sender: from.public(),
            nonce: 0,
            body,
        };
        tx.nonce = tx.expected_nonce(
            self.ledger.account(&from.public()).nonce,
            self.ledger.height() + 1,
        );
        tx.sign(from)
    }

    /// Commits a block of `txs` (all must be accepted), checking that another
    /// replica executing the same block agrees.
    fn commit(&mut self, txs: Vec<SignedTx>) {
        let proposer = self.work.proposer(&self.ledger).public();
        let proposal = self
            .ledger
            .propose(txs, self.now() + 1_000, proposer)
            .unwrap();
        assert!(proposal.rejected.is_empty(), "{:?}", proposal.rejected);
        let replica = self.ledger.execute(&proposal.executed.block).unwrap();
        assert_eq!(replica.changes.root, proposal.executed.changes.root);
        // Both carry the ids of the block's transactions, in order.
        let ids = proposal.executed.block.tx_hashes();
        assert_eq!(proposal.executed.tx_ids(), ids);
        assert_eq!(replica.tx_ids(), ids);
        self.ledger.commit(&proposal.executed).unwrap();
    }

    /// Proposes `tx` alone and returns its refusal; the ledger must not change.
    fn refuse(&mut self, tx: SignedTx) -> TxError {
        let root = self.ledger.state_root();
        let proposer = self.work.proposer(&self.ledger).public();
        let mut proposal = self
            .ledger
            .propose(vec![tx.clone()], self.now() + 1_000, proposer)
            .unwrap();
        assert_eq!(proposal.executed.block.txs.len(), 0);
        let (hash, error) = proposal
            .rejected
            .pop()
            .expect("the transaction was accepted");
        assert_eq!(hash, tx.hash());
        assert_eq!(
            self.ledger.check_tx(&tx, self.now() + 1_000),
            Err(error.clone())
        );
        // The block without it leaves the state as it was.
        assert_eq!(proposal.executed.changes.root, root);
        error
    }

    fn register(&self, gateway: usize, device_seed: u8, id: &str) -> (SignedTx, Keypair) {
        let device_key = Keypair::from_seed([device_seed; 32]);
        let device = DeviceId::new(id).unwrap();
        let model = Text::new("LCT015").unwrap();
        let gw = self.gateway(gateway);
        let payload = registration_payload(
            &self.chain(),
            &gw.public(),
            &device,
            &device_key.public(),
            DeviceKind::Zigbee,
            &model,
        );
        let proof = device_key.sign(Domain::DeviceRegistration, &payload);
        let tx = self.tx(
            gw,
            TxBody::RegisterDevice(DeviceRegistration {
                device,
                device_key: device_key.public(),
                kind: DeviceKind::Zigbee,
                model,
                proof,
            }),
        );
        (tx, device_key)
    }

    fn claim(&self, claimant: &Keypair, authorizer: &Keypair, id: &str) -> SignedTx {
        let device = DeviceId::new(id).unwrap();
        let payload = claim_payload(&self.chain(), &device, &claimant.public());
        self.tx(
            claimant,
            TxBody::ClaimDevice {
                device,
                authorizer: authorizer.public(),
                authorization: authorizer.sign(Domain::DeviceClaim, &payload),
            },
        )
    }
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

#[test]
fn transfers_move_tokens_and_replays_are_refused() {
    let mut env = Env::new();
    let (a, b) = (env.user(0).clone(), env.user(1).clone());
    let t = env.tx(
        &a,
        TxBody::Transfer {
            to: b.public(),
            amount: 500,
        },
    );
    env.commit(vec![t.clone()]);
    assert_eq!(env.ledger.account(&a.public()).balance, USER_BALANCE - 500);
    assert_eq!(env.ledger.account(&b.public()).balance, USER_BALANCE + 500);
    assert_eq!(env.ledger.account(&a.public()).nonce, 1);

    // The same signed transaction again: its nonce is spent.
    assert_eq!(
        env.refuse(t),
        TxError::BadNonce {
            expected: 1,
            found: 0
        }
    );
    let too_much = env.tx(
        &a,
        TxBody::Transfer {
            to: b.public(),
            amount: USER_BALANCE,
        },
    );
    assert_eq!(
        env.refuse(too_much),
        TxError::InsufficientBalance {
            account: a.public(),
            balance: USER_BALANCE - 500,
            needed: USER_BALANCE
        }
    );
    assert_eq!(
        env.refuse(env.tx(
            &a,
            TxBody::Transfer {
                to: b.public(),
                amount: 0
            }
        )),
        TxError::ZeroAmount
    );
    // A tampered amount breaks the signature.
    let mut forged = env.tx(
        &a,
        TxBody::Transfer {
            to: b.public(),
            amount: 1,
        },
    );
    forged.tx.body = TxBody::Transfer {
        to: b.public(),
        amount: 1_000,
    };
    assert_eq!(env.refuse(forged), TxError::BadSignature);
    // Another chain's transaction.
    let mut other = Tx {
        chain_id: ChainId::new("itc-other").unwrap(),
        sender: a.public(),
        nonce: 1,
        body: TxBody::Transfer {
            to: b.public(),
            amount: 1,
        },
    }
    .sign(&a);
    assert!(matches!(
        env.refuse(other.clone()),
        TxError::WrongChain { .. }
    ));
    other.tx.chain_id = env.chain();
    assert_eq!(env.refuse(other), TxError::BadSignature);
}

#[test]
fn a_failed_transaction_changes_nothing_inside_a_block() {
    let mut env = Env::new();
    let (a, b) = (env.user(0).clone(), env.user(1).clone());
    let good = env.tx(
        &a,
        TxBody::Transfer {
            to: b.public(),
            amount: 1,
        },
    );
    let mut bad = Tx {
        chain_id: env.chain(),
        sender: a.public(),
        nonce: 1,
        body: TxBody::Transfer {
            to: b.public(),
            amount: USER_BALANCE * 2,
        },
    }
    .sign(&a);
    let proposer = env.work.proposer(&env.ledger).public();
    let proposal = env
        .ledger
        .propose(vec![good.clone(), bad.clone()], env.now() + 1, proposer)
        .unwrap();
    assert_eq!(
        proposal.executed.block.txs.as_slice(),
        std::slice::from_ref(&good)
    );
    assert_eq!(proposal.rejected.len(), 1);
    env.ledger.commit(&proposal.executed).unwrap();
    // Nonce 1 is still free: the failed transfer did not spend it.
    assert_eq!(env.ledger.account(&a.public()).nonce, 1);
    bad.tx.body = TxBody::Transfer {
        to: b.public(),
        amount: 2,
    };
    let bad = bad.tx.sign(&a);
    env.commit(vec![bad]);
    assert_eq!(env.ledger.account(&b.public()).balance, USER_BALANCE + 3);
}

#[test]
fn device_lifecycle_and_access() {
    let mut env = Env::new();
    let owner = env.user(0).clone();
    let friend = env.user(1).clone();
    let buyer = env.user(2).clone();
    let id = "zigbee:00124b0001";

    // Only a gateway of the set may register, with the device's own proof.
    let (reg, device_key) = env.register(0, 77, id);
    let mut by_user = reg.clone();
    by_user.tx.sender = owner.public();
    by_user.tx.nonce = 0;
    let by_user = by_user.tx.sign(&owner);
    assert_eq!(
        env.refuse(by_user),
        TxError::NotAGateway {
            account: owner.public()
        }
    );
    let (mut wrong_proof, _) = env.register(0, 77, id);
    if let TxBody::RegisterDevice(r) = &mut wrong_proof.tx.body {
        r.device_key = Keypair::from_seed([78; 32]).public();
    }
    let wrong_proof = wrong_proof.tx.sign(env.gateway(0));
    assert_eq!(
        env.refuse(wrong_proof),
        TxError::BadDeviceProof { device: dev(id) }
    );
    env.commit(vec![reg]);
    let (again, _) = env.register(1, 77, id);
    assert_eq!(env.refuse(again), TxError::DeviceExists { device: dev(id) });

    let now = env.now();
    assert_eq!(
        env.ledger
            .authorize(&owner.public(), &dev(id), Rights::CONTROL, now),
        Err(AccessError::NotClaimed { device: dev(id) })
    );

    // A claim needs the device's (or its gateway's) authorisation.
    let self_authorised = env.claim(&owner, &owner, id);
    assert_eq!(
        env.refuse(self_authorised),
        TxError::BadClaimAuthorization { device: dev(id) }
    );
    env.commit(vec![env.claim(&owner, &device_key, id)]);
    assert_eq!(
        env.refuse(env.claim(&buyer, env.gateway(0), id)),
        TxError::AlreadyClaimed {
            device: dev(id),
            owner: owner.public()
        }
    );
    let now = env.now();
    assert_eq!(
        env.ledger
            .authorize(&owner.public(), &dev(id), Rights::CONTROL, now),
        Ok(Access::Owner)
    );
    assert!(!env.ledger.can_control(&friend.public(), &dev(id), now));

    // Grants: only the owner gives them; they expire; they can be revoked.
    let expires = env.now() + 60_000;
    let grant = |env: &Env, from: &Keypair, rights| {
        env.tx(
            from,
            TxBody::GrantAccess {
                device: dev(id),
                grantee: friend.public(),
                rights,
                expires_at: expires,
            },
        )
    };
    assert_eq!(
        env.refuse(grant(&env, &buyer, Rights::CONTROL)),
        TxError::NotOwner {
            device: dev(id),
            account: buyer.public()
        }
    );
    assert_eq!(
        env.refuse(grant(&env, &owner, Rights::default())),
        TxError::NoRights
    );
    env.commit(vec![grant(&env, &owner, Rights::READ)]);
    let now = env.now();
    assert!(matches!(
        env.ledger
            .authorize(&friend.public(), &dev(id), Rights::CONTROL, now),
        Err(AccessError::MissingRight { .. })
    ));
    env.commit(vec![grant(
        &env,
        &owner,
        Rights::CONTROL.union(Rights::READ),
    )]);
    assert_eq!(
        env.ledger
            .authorize(&friend.public(), &dev(id), Rights::CONTROL, env.now()),
        Ok(Access::Grant {
            expires_at: expires
        })
    );
    assert_eq!(
        env.ledger
            .authorize(&friend.public(), &dev(id), Rights::CONTROL, expires),
        Err(AccessError::GrantExpired {
            device: dev(id),
            account: friend.public(),
            expired_at: expires
        })
    );
    let past = env.tx(
        &owner,
        TxBody::GrantAccess {
            device: dev(id),
            grantee: buyer.public(),
            rights: Rights::CONTROL,
            expires_at: env.now(),
        },
    );
    assert!(matches!(env.refuse(past), TxError::ExpiryInPast { .. }));
    assert_eq!(env.ledger.grants(&dev(id)).len(), 1);

    // Transfer: control moves to the buyer at once, and old grants end.
    let transfer = env.tx(
        &owner,
        TxBody::TransferDevice {
            device: dev(id),
            new_owner: buyer.public(),
        },
    );
    env.commit(vec![transfer]);
    let now = env.now();
    assert!(env.ledger.can_control(&buyer.public(), &dev(id), now));
    assert!(!env.ledger.can_control(&owner.public(), &dev(id), now));
    assert_eq!(
        env.ledger
            .authorize(&friend.public(), &dev(id), Rights::CONTROL, now),
        Err(AccessError::NoGrant {
            device: dev(id),
            account: friend.public()
        })
    );
    assert!(env.ledger.grants(&dev(id)).is_empty());

    // Revoke.
    let regrant = env.tx(
        &buyer,
        TxBody::GrantAccess {
            device: dev(id),
            grantee: friend.public(),
            rights: Rights::CONTROL,
            expires_at: expires,
        },
    );
    env.commit(vec![regrant]);
    assert!(env
        .ledger
        .can_control(&friend.public(), &dev(id), env.now()));
    let revoke = env.tx(
        &buyer,
        TxBody::RevokeAccess {
            device: dev(id),
            grantee: friend.public(),
        },
    );
    env.commit(vec![revoke]);
    assert!(!env
        .ledger
        .can_control(&friend.public(), &dev(id), env.now()));
    let revoke_again = env.tx(
        &buyer,
        TxBody::RevokeAccess {
            device: dev(id),
            grantee: friend.public(),
        },
    );
    assert_eq!(
        env.refuse(revoke_again),
        TxError::NoGrant {
            device: dev(id),
            grantee: friend.public()
        }
    );
    assert_eq!(
        env.ledger
            .authorize(&friend.public(), &dev("zigbee:none"), Rights::CONTROL, now),
        Err(AccessError::UnknownDevice {
            device: dev("zigbee:none")
        })
    );
}

#[test]
fn firmware_manifests() {
    let mut env = Env::new();
    let maker = env.user(5).clone();
    let manifest = FirmwareManifest {
        model: Text::new("LCT015").unwrap(),
        version: FirmwareVersion {
            major: 1,
            minor: 2,
            patch: 3,
        },
        image_hash: Hash::digest(b"image"),
        image_size: 1234,
    };
    env.commit(vec![
        env.tx(&maker, TxBody::PublishManifest(manifest.clone()))
    ]);
    let stored = env
        .ledger
        .manifest(&maker.public(), &manifest.model, manifest.version)
        .unwrap();
    assert_eq!(stored.manifest(&manifest.model, manifest.version), manifest);
    assert!(matches!(
        env.refuse(env.tx(&maker, TxBody::PublishManifest(manifest.clone()))),
        TxError::ManifestExists { .. }
    ));
    let empty = FirmwareManifest {
        image_size: 0,
        ..manifest
    };
    assert_eq!(
        env.refuse(env.tx(&maker, TxBody::PublishManifest(empty))),
        TxError::EmptyImage
    );
}

#[test]
fn validator_changes_need_a_quorum_and_wait_for_the_epoch() {
    let mut env = Env::new();
    let newcomer = Keypair::from_seed([200; 32]);
    let change = ValidatorChange::Add(Validator {
        key: newcomer.public(),
        addr: Text::new("127.0.0.1:7200").unwrap(),
    });
    let approve =
        |env: &Env, change: &ValidatorChange, signers: &[usize]| -> BoundedVec<Approval, 128> {
            let pending = env.ledger.validator_sets().pending.hash();
            let payload = validator_change_payload(&env.chain(), &pending, change);
            BoundedVec::new(
                signers
                    .iter()
                    .map(|&i| Approval {
                        validator: env.gateway(i).public(),
                        signature: env.gateway(i).sign(Domain::ValidatorChange, &payload),
                    })
                    .collect(),
            )
            .unwrap()
        };
    let submit = |env: &Env, change: &ValidatorChange, approvals| {
        env.tx(
            env.gateway(0),
            TxBody::ChangeValidators {
                change: change.clone(),
                approvals,
            },
        )
    };
    assert_eq!(
        env.refuse(submit(&env, &change, approve(&env, &change, &[0, 1]))),
        TxError::NotEnoughApprovals { have: 2, need: 3 }
    );
    assert_eq!(
        env.refuse(submit(&env, &change, approve(&env, &change, &[0, 1, 1]))),
        TxError::DuplicateApproval {
            approver: env.gateway(1).public()
        }
    );
    // A quorum cannot add a validator nobody could dial.
    let unreachable = ValidatorChange::Add(Validator {
        key: newcomer.public(),
        addr: Text::new("gateway-5:7200").unwrap(),
    });
    assert_eq!(
        env.refuse(submit(
            &env,
            &unreachable,
            approve(&env, &unreachable, &[0, 1, 2])
        )),
        TxError::BadValidatorAddress {
            key: newcomer.public(),
            addr: "gateway-5:7200".to_string(),
        }
    );
    let good = approve(&env, &change, &[0, 1, 2]);
    let before = env.ledger.validator_sets().active.hash();
    env.commit(vec![submit(&env, &change, good.clone())]);
    let sets = env.ledger.validator_sets();
    assert!(sets.pending.contains(&newcomer.public()));
    assert!(!sets.active.contains(&newcomer.public()));
    assert_eq!(env.ledger.tip().next_validators_hash, before);
    // The same approvals cannot be used twice: they were for the old pending set.
    assert!(matches!(
        env.refuse(submit(&env, &change, good)),
        TxError::BadApproval { .. }
    ));

    // At the epoch boundary (height 100) the pending set becomes active, and
    // that block's header announces it as the next signer set.
    while env.ledger.height() < 99 {
        env.commit(vec![]);
    }
    assert_eq!(env.ledger.tip().next_validators_hash, before);
    env.commit(vec![]);
    let sets = env.ledger.validator_sets();
    assert!(sets.active.contains(&newcomer.public()));
    assert_eq!(env.ledger.tip().validators_hash, before);
    assert_eq!(env.ledger.tip().next_validators_hash, sets.active.hash());
}

#[test]
fn dag_anchors_are_checked_and_committed_in_the_header() {
    let mut env = Env::new();
    let tips = vec![Hash::digest(b"tip-1"), Hash::digest(b"tip-2")];
    let anchor = DagAnchor {
        tips: BoundedVec::new(tips.clone()).unwrap(),
        root: merkle::root(&tips),
        payments: BoundedVec::new(vec![]).unwrap(),
    };
    let bad = DagAnchor {
        root: Hash::digest(b"wrong"),
        ..anchor.clone()
    };
    assert!(matches!(
        env.refuse(env.tx(env.gateway(1), TxBody::AnchorDag(bad))),
        TxError::BadAnchorRoot { .. }
    ));
    assert!(matches!(
        env.refuse(env.tx(env.user(0), TxBody::AnchorDag(anchor.clone()))),
        TxError::NotAGateway { .. }
    ));
    let anchoring = env.tx(env.gateway(1), TxBody::AnchorDag(anchor.clone()));
    let nonce = env.ledger.account(&env.gateway(1).public()).nonce;
    env.commit(vec![anchoring.clone()]);
    assert_eq!(env.ledger.tip().dag_root, merkle::root(&[anchor.root]));
    // It spent no account nonce, and cannot be replayed: its height passed.
    assert_eq!(env.ledger.account(&env.gateway(1).public()).nonce, nonce);
    assert_eq!(
        env.refuse(anchoring),
        TxError::BadNonce {
            expected: env.ledger.height() + 1,
            found: env.ledger.height()
        }
    );
}

/// A payment the device signed, from `from`, parents made up (the ledger
/// does not see the tangle).
fn dag_payment(
    key: &Keypair,
    id: &str,
    from: &Keypair,
    to: &Keypair,
    amount: u64,
    nonce: u64,
) -> DagTx {
    let body = DagBody {
        issuer: dev(id),
        kind: DagKind::Payment {
            from: from.public(),
            to: to.public(),
            amount,
            nonce,
        },
        parents: BoundedVec::new(roots().to_vec()).unwrap(),
        time_ms: 1,
        level: 1,
    };
    DagTx::issue(key, body, 0)
}

fn anchor_with(payments: Vec<DagTx>) -> DagAnchor {
    let tips = vec![Hash::digest(b"tip")];
    DagAnchor {
        root: merkle::root(&tips),
        tips: BoundedVec::new(tips).unwrap(),
        payments: BoundedVec::new(payments).unwrap(),
    }
}

#[test]
fn dag_payments_are_applied_once_from_the_devices_owner() {
    let mut env = Env::new();
    let owner = env.user(0).clone();
    let shop = env.user(1).clone();
    let stranger = env.user(2).clone();
    let id = "mqtt:meter-1";
    let (reg, device_key) = env.register(0, 91, id);
    env.commit(vec![reg]);
    env.commit(vec![env.claim(&owner, env.gateway(0), id)]);
    let before = (
        env.ledger.account(&owner.public()).balance,
        env.ledger.account(&shop.public()).balance,
    );

    let pay = dag_payment(&device_key, id, &owner, &shop, 7, 1);
    let double = dag_payment(&device_key, id, &owner, &stranger, 9, 1);
    let not_the_owners = dag_payment(&device_key, id, &stranger, &shop, 5, 2);
    let unfunded = dag_payment(&device_key, id, &owner, &shop, USER_BALANCE * 10, 3);
    let gw = env.gateway(1).clone();
    env.commit(vec![env.tx(
        &gw,
        TxBody::AnchorDag(anchor_with(vec![
            pay.clone(),
            double,
            not_the_owners,
            unfunded,
        ])),
    )]);
    // Only the first (payer, nonce) moved tokens; the rest were skipped.
    assert_eq!(env.ledger.account(&owner.public()).balance, before.0 - 7);
    assert_eq!(env.ledger.account(&shop.public()).balance, before.1 + 7);
    let spent = env.ledger.get(&StateKey::DagPayment {
        from: owner.public(),
        nonce: 1,
    });
    assert!(
        matches!(spent, Some(StateValue::DagPayment(r)) if r.tx == pay.id() && r.height == env.ledger.height())
    );
    assert!(env
        .ledger
        .get(&StateKey::DagPayment {
            from: owner.public(),
            nonce: 3
        })
        .is_none());

    // The same payment anchored again (a second anchor, a Byzantine
    // proposer) is not applied twice.
    env.commit(vec![
        env.tx(&gw, TxBody::AnchorDag(anchor_with(vec![pay.clone()])))
    ]);
    assert_eq!(env.ledger.account(&owner.public()).balance, before.0 - 7);

    // A payment altered on the way, or not a payment at all, refuses the
    // anchor.
    let mut altered = dag_payment(&device_key, id, &owner, &shop, 1, 4);
    if let DagKind::Payment { amount, .. } = &mut altered.body.kind {
        *amount = 1_000;
    }
    // (Its work covers the body too and is checked first, being cheap, so
    // the refusal names whichever of the two fails first.)
    assert!(matches!(
        env.refuse(env.tx(&gw, TxBody::AnchorDag(anchor_with(vec![altered])))),
        TxError::AnchorPayment {
            index: 0,
            error: DagTxError::BadSignature | DagTxError::Work { .. }
        }
    ));
    let mut report = pay;
    report.body.kind = DagKind::Reading {
        data: Bytes::new(vec![1]).unwrap(),
    };
    assert_eq!(
        env.refuse(env.tx(&gw, TxBody::AnchorDag(anchor_with(vec![report])))),
        TxError::AnchorPaymentKind { index: 0 }
    );
}

#[test]
fn received_blocks_are_checked_field_by_field() {
    let mut env = Env::new();
    let txs = env.work.transfers(&env.ledger, 10);
    let proposer = env.work.proposer(&env.ledger).public();
    let proposal = env.ledger.propose(txs, env.now() + 5, proposer).unwrap();
    let block = proposal.executed.block.clone();
    env.ledger.execute(&block).unwrap();

    let mut wrong_root = block.clone();
    wrong_root.header.state_root = Hash::digest(b"lie");
    assert!(matches!(
        env.ledger.execute(&wrong_root),
        Err(BlockError::HeaderMismatch {
            field: "state_root",
            ..
        })
    ));
    let mut wrong_height = block.clone();
    wrong_height.header.height = 5;
    assert_eq!(
        env.ledger.execute(&wrong_height).unwrap_err(),
        BlockError::WrongHeight {
            expected: 1,
            found: 5
        }
    );
    let mut outsider = block.clone();
    outsider.header.proposer = env.user(0).public();
    assert!(matches!(
        env.ledger.execute(&outsider),
        Err(BlockError::UnknownProposer { .. })
    ));
    // A block carrying an invalid transaction is refused whole.
    let mut txs = block.txs.clone().into_inner();
    txs[3].tx.nonce += 7;
    let with_bad_tx = Block {
        header: block.header.clone(),
        txs: BoundedVec::new(txs).unwrap(),
    };
    assert!(matches!(
        env.ledger.execute(&with_bad_tx),
        Err(BlockError::InvalidTx { index: 3, .. })
    ));
    // A forged signature among others checked in one batch is named by
    // its index and its reason.
    assert!(block.txs.as_slice().len() >= 4);
    let mut txs = block.txs.clone().into_inner();
    txs[2].signature.0[10] ^= 1;
    let forged = Block {
        header: block.header.clone(),
        txs: BoundedVec::new(txs).unwrap(),
    };
    assert!(matches!(
        env.ledger.execute(&forged),
        Err(BlockError::InvalidTx {
            index: 2,
            error: TxError::BadSignature,
            ..
        })
    ));
    // Dropping a transaction changes the tx root.
    let mut txs = block.txs.clone().into_inner();
    txs.pop();
    let shorter = Block {
        header: block.header.clone(),
        txs: BoundedVec::new(txs).unwrap(),
    };
    assert!(matches!(
        env.ledger.execute(&shorter),
        Err(BlockError::HeaderMismatch {
            field: "tx_root",
            ..
        })
    ));

    // Inclusion proofs for every transaction of the committed block.
    env.ledger.commit(&proposal.executed).unwrap();
    for (i, tx) in block.txs.as_slice().iter().enumerate() {
        let proof = block.prove_tx(i).unwrap();
        proof.verify(&tx.hash(), &env.ledger.tip().tx_root).unwrap();
    }
    // State proofs against the committed header.
    let key = StateKey::Account {
        account: env.user(0).public(),
    };
    let proof = env.ledger.prove(&key).unwrap();
    proof.verify(&env.ledger.tip().state_root).unwrap();
}

#[test]
fn an_adopted_device_is_owned_from_registration_with_its_owners_consent() {
    use itc_chain::tx::adoption_payload;
    let mut env = Env::new();
    let owner = Keypair::from_seed(*env.user(0).seed());
    let stranger = Keypair::from_seed(*env.user(1).seed());
    let gateway = Keypair::from_seed(*env.gateway(0).seed());
    let adopted = |env: &Env, signer: &Keypair, id: &str, seed: u8| {
        let (registration, _) = env.register(0, seed, id);
        let TxBody::RegisterDevice(registration) = registration.tx.body else {
            unreachable!()
        };
        let payload = adoption_payload(&env.chain(), &owner.public(), &gateway.public());
        env.tx(
            &gateway,
            TxBody::RegisterAdoptedDevice {
                registration,
                owner: owner.public(),
                consent: signer.sign(Domain::Adoption, &payload),
            },
        )
    };
    // Consent signed by someone else than the named owner: refused, and
    // nothing is registered.
    let forged = adopted(&env, &stranger, "zigbee:00124b0000000001", 11);
    assert!(matches!(
        env.refuse(forged),
        TxError::BadAdoptionConsent { .. }
    ));
    assert!(env.ledger.device(&dev("zigbee:00124b0000000001")).is_none());
    // The owner's consent: registered and owned in one step, controllable
    // at once.
    let tx = adopted(&env, &owner, "zigbee:00124b0000000001", 11);
    env.commit(vec![tx]);
    let record = env.ledger.device(&dev("zigbee:00124b0000000001")).unwrap();
    assert_eq!(record.owner, Some(owner.public()));
    assert_eq!(record.registrar, gateway.public());
    assert!(env
        .ledger
        .can_control(&owner.public(), &dev("zigbee:00124b0000000001"), env.now()));
    // The same consent does not let another gateway adopt for the owner.
    let (registration, _) = env.register(1, 12, "zigbee:00124b0000000002");
    let TxBody::RegisterDevice(registration) = registration.tx.body else {
        unreachable!()
    };
    let payload = adoption_payload(&env.chain(), &owner.public(), &gateway.public());
    let other_gateway = Keypair::from_seed(*env.gateway(1).seed());
    let replayed = env.tx(
        &other_gateway,
        TxBody::RegisterAdoptedDevice {
            registration,
            owner: owner.public(),
            consent: owner.sign(Domain::Adoption, &payload),
        },
    );
    assert!(matches!(
        env.refuse(replayed),
        TxError::BadAdoptionConsent { .. }
    ));
}

#[test]
fn equivocation_evidence_is_recorded_once_and_only_when_it_proves_something() {
    use itc_chain::evidence::{proposal_payload, EquivocationProof, EvidenceError, SignedDigest};
    let mut env = Env::new();
    let set = env.ledger.validator_sets().active;
    let view = 3;
    let primary = &env
        .work
        .validator_key(&set.primary(view).key)
        .unwrap()
        .clone();
    let chain = env.chain();
    let sign = |key: &Keypair, height: u64, d: u8| {
        let digest = Hash::digest(&[d]);
        SignedDigest {
            digest,
            signature: key.sign(
                Domain::Proposal,
                &proposal_payload(&chain, view, height, &digest),
            ),
        }
    };
    let proof = EquivocationProof {
        primary: primary.public(),
        view,
        height: 7,
        first: sign(primary, 7, 1),
        second: sign(primary, 7, 2),
    };
    let reporter = env.gateway(0).clone();
    let report = |env: &Env, from: &Keypair, proof: EquivocationProof| {
        env.tx(from, TxBody::ReportEquivocation(proof))
    };

    // A user is not a gateway; a forged second signature proves nothing.
    let by_user = report(&env, &env.user(0).clone(), proof.clone());
    assert!(matches!(env.refuse(by_user), TxError::NotAGateway { .. }));
    let forged = EquivocationProof {
        second: SignedDigest {
            signature: proof.first.signature,
            ..proof.second
        },
        ..proof.clone()
    };
    let forged = report(&env, &reporter, forged);
    assert!(matches!(
        env.refuse(forged),
        TxError::BadEvidence(EvidenceError::BadSignature { .. })
    ));

    // The real proof is recorded under (primary, view, height), spends no
    // nonce, and is listed in the accused's history.
    let nonce = env.ledger.account(&reporter.public()).nonce;
    let accepted = report(&env, &reporter, proof.clone());
    env.commit(vec![accepted.clone()]);
    assert_eq!(env.ledger.account(&reporter.public()).nonce, nonce);
    let key = StateKey::Equivocation {
        primary: primary.public(),
        view,
        height: 7,
    };
    let Some(StateValue::Equivocation(record)) = env.ledger.get(&key) else {
        panic!("the evidence is not on chain");
    };
    assert_eq!(
        (record.first, record.second),
        (proof.first.digest, proof.second.digest)
    );
    assert_eq!(record.reporter, reporter.public());
    assert!(itc_chain::store::involved_accounts(&accepted).contains(&primary.public()));

    // Reported again (by anyone, replayed or not): already known.
    let again = report(&env, env.gateway(1), proof);
    assert!(matches!(env.refuse(again), TxError::EvidenceKnown { .. }));
    assert!(matches!(
        env.refuse(accepted),
        TxError::EvidenceKnown { .. }
    ));
}

/// Pipelining: a block proposed and executed over a parent that is not
/// committed yet sees the parent's writes (its nonces), and commits after
/// it to the same state a replica that went block by block reaches.
#[test]
fn a_block_built_over_an_uncommitted_parent_commits_after_it() {
    let env = Env::new();
    let ledger = &env.ledger;
    let proposer = env.work.proposer(ledger).public();
    let mut txs = env.work.transfers(ledger, 40);
    let second = txs.split_off(20);
    let time = ledger.tip().time_ms + 10;
    let first = ledger.propose(txs, time, proposer).unwrap().executed;
    // Against the committed tip alone, the second half's nonces are early.
    let alone = ledger.propose(second.clone(), time, proposer).unwrap();
    assert!(alone.executed.block.txs.len() < second.len());
    let child = ledger
        .propose_on(&[&first], second.clone(), time + 1, proposer, &|_| false)
        .unwrap();
    assert!(child.rejected.is_empty(), "{:?}", child.rejected);
    assert_eq!(
        child.executed.block.header.prev_hash,
        first.block.header.hash()
    );
    // Another replica executes it over the same uncommitted parent.
    let backup = Ledger::genesis(&env.work.genesis).unwrap().0;
    let parent = backup.execute(&first.block).unwrap();
    let piped = backup
        .execute_on(&[&parent], &child.executed.block, &|_| false)
        .unwrap();
    // A parent that is not the block's refuses it.
    let other = backup.execute(&alone.executed.block).unwrap();
    assert!(matches!(
        backup.execute_on(&[&other], &child.executed.block, &|_| false),
        Err(BlockError::WrongParent { .. })
    ));
    // Committed in order, both end where block-by-block execution does.
    let mut in_order = Ledger::genesis(&env.work.genesis).unwrap().0;
    for block in [&first.block, &child.executed.block] {
        let executed = in_order.execute(block).unwrap();
        in_order.commit(&executed).unwrap();
    }
    let mut proposer_ledger = env.ledger.clone();
    proposer_ledger.commit(&first).unwrap();
    proposer_ledger.commit(&child.executed).unwrap();
    let mut backup = backup;
    backup.commit(&parent).unwrap();
    backup.commit(&piped).unwrap();
    for ledger in [&proposer_ledger, &backup] {
        assert_eq!(ledger.state_root(), in_order.state_root());
        assert_eq!(ledger.tip(), in_order.tip());
    }
    // Out of order, the child is refused and nothing changes.
    let mut wrong = Ledger::genesis(&env.work.genesis).unwrap().0;
    let root = wrong.state_root();
    assert!(wrong.commit(&child.executed).is_err());
    assert_eq!(wrong.state_root(), root);
}
