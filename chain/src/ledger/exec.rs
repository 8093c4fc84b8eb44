//! Transaction execution: the rules of every transaction kind.
//!
//! Writes go through two layers of buffering over the committed [`State`]:
//! a [`BlockWrites`] collects what the block's accepted transactions wrote,
//! and each transaction runs in a [`TxScope`] whose writes are merged into the
//! block only if the transaction succeeds. So a rejected transaction changes
//! nothing, whatever step it failed at — no handler has to order its checks
//! before its writes to stay correct.

use std::collections::BTreeMap;

use super::StateRead;
use crate::crypto::{AccountId, Domain, Hash, PublicKey, Signature};
use crate::dag::{DagKind, DagTx};
use crate::evidence::EquivocationProof;
use crate::merkle;
use crate::state::{
    Account, DagPaymentRecord, DeviceRecord, EquivocationRecord, GrantRecord, ManifestRecord,
    StateKey, StateValue, ValidatorSets,
};
use crate::tx::{
    adoption_payload, claim_payload, registration_payload, validator_change_payload, Approval,
    ChainId, DeviceRegistration, FirmwareManifest, SignedTx, Tx, TxBody, ValidatorChange,
};
use crate::types::{Amount, DeviceId, Height, Rights, TimestampMs};

use super::error::TxError;

/// Pending writes: `None` deletes.
pub(crate) type Writes = BTreeMap<StateKey, Option<StateValue>>;

/// What a block's accepted transactions wrote so far.
pub(crate) struct BlockWrites<'a> {
    pub(crate) state: &'a dyn StateRead,
    pub(crate) writes: Writes,
    pub(crate) chain_id: &'a ChainId,
    pub(crate) height: Height,
    pub(crate) time_ms: TimestampMs,
    /// Transactions whose signatures this replica has already checked
    /// itself (at admission to its mempool); theirs are not checked again.
    pub(crate) verified: &'a dyn Fn(&Hash) -> bool,
}

/// Nothing is known to be verified.
pub(crate) fn none_verified(_: &Hash) -> bool {
    false
}

impl<'a> BlockWrites<'a> {
    pub(crate) fn new(
        state: &'a dyn StateRead,
        chain_id: &'a ChainId,
        height: Height,
        time_ms: TimestampMs,
    ) -> Self {
        BlockWrites {
            state,
            writes: Writes::new(),
            chain_id,
            height,
            time_ms,
            verified: &none_verified,
        }
    }

    /// Runs one transaction, whose hash is `id`; keeps its writes only if
    /// it succeeds.
    pub(crate) fn apply(&mut self, signed: &SignedTx, id: &Hash) -> Result<(), TxError> {
        let mut scope = TxScope {
            block: self,
            writes: Writes::new(),
        };
        scope.run(signed, id)?;
        let writes = scope.writes;
        self.writes.extend(writes);
        Ok(())
    }

    pub(crate) fn get(&self, key: &StateKey) -> Option<&StateValue> {
        match self.writes.get(key) {
            Some(written) => written.as_ref(),
            None => self.state.get(key),
        }
    }

    pub(crate) fn validator_sets(&self) -> ValidatorSets {
        match self.get(&StateKey::Validators) {
            Some(StateValue::Validators(sets)) => sets.clone(),
            // The genesis always writes the sets, and nothing deletes them.
            _ => unreachable_validators(),
        }
    }

    pub(crate) fn put(&mut self, key: StateKey, value: Option<StateValue>) {
        self.writes.insert(key, value);
    }
}

#[cold]
pub(crate) fn unreachable_validators() -> ! {
    panic!("the state has no validator sets: it was not made from a genesis")
}

/// One transaction's view: its own writes over the block's.
struct TxScope<'b, 'a> {
    block: &'b BlockWrites<'a>,
    writes: Writes,
}

impl TxScope<'_, '_> {
    fn get(&self, key: &StateKey) -> Option<&StateValue> {
        match self.writes.get(key) {
            Some(written) => written.as_ref(),
            None => self.block.get(key),
        }
    }

    fn put(&mut self, key: StateKey, value: Option<StateValue>) {
        self.writes.insert(key, value);
    }

    fn account(&self, account: &AccountId) -> Account {
        match self.get(&StateKey::Account { account: *account }) {
            Some(StateValue::Account(a)) => *a,
            _ => Account::default(),
        }
    }

    fn put_account(&mut self, account: AccountId, value: Account) {
        self.put(
            StateKey::Account { account },
            Some(StateValue::Account(value)),
        );
    }

    fn device(&self, device: &DeviceId) -> Result<DeviceRecord, TxError> {
        match self.get(&StateKey::Device {
            device: device.clone(),
        }) {
            Some(StateValue::Device(d)) => Ok(d.clone()),
            _ => Err(TxError::UnknownDevice {
                device: device.clone(),
            }),
        }
    }

    fn put_device(&mut self, device: DeviceId, record: DeviceRecord) {
        self.put(
            StateKey::Device { device },
            Some(StateValue::Device(record)),
        );
    }

    /// The device, if `sender` owns it.
    fn owned_device(&self, device: &DeviceId, sender: &AccountId) -> Result<DeviceRecord, TxError> {
        let record = self.device(device)?;
        if record.owner.as_ref() != Some(sender) {
            return Err(TxError::NotOwner {
                device: device.clone(),
                account: *sender,
            });
        }
        Ok(record)
    }

    fn validator_sets(&self) -> ValidatorSets {
        match self.get(&StateKey::Validators) {
            Some(StateValue::Validators(sets)) => sets.clone(),
            _ => self.block.validator_sets(),
        }
    }

    fn require_gateway(&self, account: &AccountId) -> Result<(), TxError> {
        if self.validator_sets().active.contains(account) {
            Ok(())
        } else {
            Err(TxError::NotAGateway { account: *account })
        }
    }

    /// Every grantee of `device`, through all layers.
    fn grantees(&self, device: &DeviceId) -> Vec<AccountId> {
        let from = StateKey::Grant {
            device: device.clone(),
            grantee: PublicKey([0; 32]),
        };
        let on_device = |key: &StateKey| match key {
            StateKey::Grant { device: d, grantee } if d == device => Some(*grantee),
            _ => None,
        };
        let mut grantees: Vec<AccountId> = self
            .block
            .state
            .entries_from(&from)
            .map_while(|(k, _)| on_device(k))
            .chain(
                self.block
                    .writes
                    .range(from.clone()..)
                    .map_while(|(k, _)| on_device(k)),
            )
            .chain(
                self.writes
                    .range(from.clone()..)
                    .map_while(|(k, _)| on_device(k)),
            )
            .collect();
        grantees.sort();
        grantees.dedup();
        grantees.retain(|g| {
            self.get(&StateKey::Grant {
                device: device.clone(),
                grantee: *g,
            })
            .is_some()
        });
        grantees
    }

    /// Chain, signature and nonce first (the envelope), then the body; the
    /// nonce advances only when the body succeeds.
    fn run(&mut self, signed: &SignedTx, id: &Hash) -> Result<(), TxError> {
        let tx = &signed.tx;
        if &tx.chain_id != self.block.chain_id {
            return Err(TxError::WrongChain {
                expected: self.block.chain_id.to_string(),
                found: tx.chain_id.to_string(),
            });
        }
        if !(self.block.verified)(id) {
            signed
                .verify_signature()
                .map_err(|_| TxError::BadSignature)?;
        }
        let expected = tx.expected_nonce(self.account(&tx.sender).nonce, self.block.height);
        if tx.nonce != expected {
            return Err(TxError::BadNonce {
                expected,
                found: tx.nonce,
            });
        }
        self.body(tx)?;
        if tx.spends_nonce() {
            let mut sender = self.account(&tx.sender);
            sender.nonce += 1;
            self.put_account(tx.sender, sender);
        }
        Ok(())
    }

    fn body(&mut self, tx: &Tx) -> Result<(), TxError> {
        let sender = tx.sender;
        match &tx.body {
            TxBody::Transfer { to, amount } => self.transfer(sender, *to, *amount),
            TxBody::RegisterDevice(registration) => self.register(sender, registration, None),
            TxBody::RegisterAdoptedDevice {
                registration,
                owner,
                consent,
            } => self.register(sender, registration, Some((owner, consent))),
            TxBody::ClaimDevice {
                device,
                authorizer,
                authorization,
            } => {
                let mut record = self.device(device)?;
                if let Some(owner) = record.owner {
                    return Err(TxError::AlreadyClaimed {
                        device: device.clone(),
                        owner,
                    });
                }
                let bad = || TxError::BadClaimAuthorization {
                    device: device.clone(),
                };
                if authorizer != &record.key && authorizer != &record.registrar {
                    return Err(bad());
                }
                let payload = claim_payload(self.block.chain_id, device, &sender);
                authorizer
                    .verify(Domain::DeviceClaim, &payload, authorization)
                    .map_err(|_| bad())?;
                record.owner = Some(sender);
                self.put_device(device.clone(), record);
                Ok(())
            }
            TxBody::TransferDevice { device, new_owner } => {
                let mut record = self.owned_device(device, &sender)?;
                if new_owner == &sender {
                    return Err(TxError::SameOwner {
                        device: device.clone(),
                        owner: sender,
                    });
                }
                // Grants were the old owner's to give; they end with the transfer.
                for grantee in self.grantees(device) {
                    self.put(
                        StateKey::Grant {
                            device: device.clone(),
                            grantee,
                        },
                        None,
                    );
                }
                record.owner = Some(*new_owner);
                self.put_device(device.clone(), record);
                Ok(())
            }
            TxBody::GrantAccess {
                device,
                grantee,
                rights,
                expires_at,
            } => {
                self.owned_device(device, &sender)?;
                if grantee == &sender {
                    return Err(TxError::GrantToOwner {
                        device: device.clone(),
                    });
                }
                if rights.is_empty() {
                    return Err(TxError::NoRights);
                }
                if *expires_at <= self.block.time_ms {
                    return Err(TxError::ExpiryInPast {
                        expires_at: *expires_at,
                        now: self.block.time_ms,
                    });
                }
                let grant = GrantRecord {
                    rights: *rights,
                    expires_at: *expires_at,
                    granted_at: self.block.height,
                };
                self.put(
                    StateKey::Grant {
                        device: device.clone(),
                        grantee: *grantee,
                    },
                    Some(StateValue::Grant(grant)),
                );
                Ok(())
            }
            TxBody::RevokeAccess { device, grantee } => {
                self.owned_device(device, &sender)?;
                let key = StateKey::Grant {
                    device: device.clone(),
                    grantee: *grantee,
                };
                if self.get(&key).is_none() {
                    return Err(TxError::NoGrant {
                        device: device.clone(),
                        grantee: *grantee,
                    });
                }
                self.put(key, None);
                Ok(())
            }
            TxBody::PublishManifest(manifest) => self.publish(sender, manifest),
            TxBody::ChangeValidators { change, approvals } => {
                self.change_validators(change, approvals.as_slice())
            }
            TxBody::AnchorDag(anchor) => {
                self.require_gateway(&sender)?;
                if anchor.tips.is_empty() {
                    return Err(TxError::EmptyAnchor);
                }
                let computed = merkle::root(anchor.tips.as_slice());
                if computed != anchor.root {
                    return Err(TxError::BadAnchorRoot {
                        claimed: anchor.root,
                        computed,
                    });
                }
                for (index, payment) in anchor.payments.as_slice().iter().enumerate() {
                    self.dag_payment(index, payment)?;
                }
                Ok(())
            }
            TxBody::ReportEquivocation(proof) => self.equivocation(sender, proof),
        }
    }

    /// A gateway's report of an equivocating primary, checked against the
    /// active set (evidence from an earlier epoch is not accepted: its
    /// primary may no longer be known) and recorded once.
    fn equivocation(
        &mut self,
        sender: AccountId,
        proof: &EquivocationProof,
    ) -> Result<(), TxError> {
        self.require_gateway(&sender)?;
        proof.verify(self.block.chain_id, &self.validator_sets().active)?;
        let key = StateKey::Equivocation {
            primary: proof.primary,
            view: proof.view,
            height: proof.height,
        };
        if self.get(&key).is_some() {
            return Err(TxError::EvidenceKnown {
                primary: proof.primary,
                view: proof.view,
                height: proof.height,
            });
        }
        let record = EquivocationRecord {
            first: proof.first.digest,
            second: proof.second.digest,
            reporter: sender,
            recorded_at: self.block.height,
        };
        self.put(key, Some(StateValue::Equivocation(record)));
        Ok(())
    }

    /// One payment an anchor carries. A payment that is not one, or that
    /// its issuer did not sign with enough work, refuses the anchor (the
    /// proposer built it wrongly); one the ledger cannot honour — an
    /// unknown issuer, a payer that is not the device's owner, a (payer,
    /// nonce) spent already, too little balance — is skipped, and the
    /// (payer, nonce) stays unspent.
    fn dag_payment(&mut self, index: usize, payment: &DagTx) -> Result<(), TxError> {
        let DagKind::Payment {
            from,
            to,
            amount,
            nonce,
        } = &payment.body.kind
        else {
            return Err(TxError::AnchorPaymentKind { index });
        };
        let Ok(device) = self.device(&payment.body.issuer) else {
            return Ok(());
        };
        payment
            .check(&device.key)
            .map_err(|error| TxError::AnchorPayment { index, error })?;
        let spent = StateKey::DagPayment {
            from: *from,
            nonce: *nonce,
        };
        if device.owner.as_ref() != Some(from) || self.get(&spent).is_some() {
            return Ok(());
        }
        if self.transfer(*from, *to, *amount).is_ok() {
            let record = DagPaymentRecord {
                tx: payment.id(),
                height: self.block.height,
            };
            self.put(spent, Some(StateValue::DagPayment(record)));
        }
        Ok(())
    }

    fn transfer(&mut self, from: AccountId, to: AccountId, amount: Amount) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        if from == to {
            return Err(TxError::SelfTransfer);
        }
        let mut sender = self.account(&from);
        sender.balance =
            sender
                .balance
                .checked_sub(amount)
                .ok_or(TxError::InsufficientBalance {
                    account: from,
                    balance: sender.balance,
                    needed: amount,
                })?;
        let mut recipient = self.account(&to);
        recipient.balance = recipient
            .balance
            .checked_add(amount)
            .ok_or(TxError::BalanceOverflow { account: to })?;
        self.put_account(from, sender);
        self.put_account(to, recipient);
        Ok(())
    }

    /// Registers a device, with its first owner if one consented to this
    /// gateway adopting devices for them.
    fn register(
        &mut self,
        gateway: AccountId,
        reg: &DeviceRegistration,
        adopted_by: Option<(&AccountId, &Signature)>,
    ) -> Result<(), TxError> {
        self.require_gateway(&gateway)?;
        if self.device(&reg.device).is_ok() {
            return Err(TxError::DeviceExists {
                device: reg.device.clone(),
            });
        }
        let payload = registration_payload(
            self.block.chain_id,
            &gateway,
            &reg.device,
            &reg.device_key,
            reg.kind,
            &reg.model,
        );
        reg.device_key
            .verify(Domain::DeviceRegistration, &payload, &reg.proof)
            .map_err(|_| TxError::BadDeviceProof {
                device: reg.device.clone(),
            })?;
        let owner = match adopted_by {
            Some((owner, consent)) => {
                let payload = adoption_payload(self.block.chain_id, owner, &gateway);
                owner
                    .verify(Domain::Adoption, &payload, consent)
                    .map_err(|_| TxError::BadAdoptionConsent {
                        device: reg.device.clone(),
                        owner: *owner,
                    })?;
                Some(*owner)
            }
            None => None,
        };
        let record = DeviceRecord {
            key: reg.device_key,
            kind: reg.kind,
            model: reg.model.clone(),
            registrar: gateway,
            owner,
            registered_at: self.block.height,
        };
        self.put_device(reg.device.clone(), record);
        Ok(())
    }

    fn publish(&mut self, manufacturer: AccountId, m: &FirmwareManifest) -> Result<(), TxError> {
        if m.image_size == 0 {
            return Err(TxError::EmptyImage);
        }
        let key = StateKey::Manifest {
            manufacturer,
            model: m.model.clone(),
            version: m.version,
        };
        if self.get(&key).is_some() {
            return Err(TxError::ManifestExists {
                manufacturer,
                model: m.model.clone(),
                version: m.version,
            });
        }
        let record = ManifestRecord {
            image_hash: m.image_hash,
            image_size: m.image_size,
            published_at: self.block.height,
        };
        self.put(key, Some(StateValue::Manifest(record)));
        Ok(())
    }

    fn change_validators(
        &mut self,
        change: &ValidatorChange,
        approvals: &[Approval],
    ) -> Result<(), TxError> {
        let mut sets = self.validator_sets();
        let payload = validator_change_payload(self.block.chain_id, &sets.pending.hash(), change);
        let mut approvers: Vec<PublicKey> = Vec::with_capacity(approvals.len());
        for approval in approvals {
            let approver = approval.validator;
            if !sets.active.contains(&approver) {
                return Err(TxError::NotAValidator { key: approver });
            }
            if approvers.contains(&approver) {
                return Err(TxError::DuplicateApproval { approver });
            }
            approver
                .verify(Domain::ValidatorChange, &payload, &approval.signature)
                .map_err(|_| TxError::BadApproval { approver })?;
            approvers.push(approver);
        }
        let need = sets.active.quorum();
        if approvers.len() < need {
            return Err(TxError::NotEnoughApprovals {
                have: approvers.len(),
                need,
            });
        }
        sets.pending = match change {
            ValidatorChange::Add(validator) => {
                if sets.pending.contains(&validator.key) {
                    return Err(TxError::AlreadyValidator { key: validator.key });
                }
                // Gateways dial validators at this address; one that does
                // not parse would leave the newcomer unreachable, so the
                // chain refuses it as the node refuses it in a genesis.
                if validator.socket_addr().is_err() {
                    return Err(TxError::BadValidatorAddress {
                        key: validator.key,
                        addr: validator.addr.as_str().to_string(),
                    });
                }
                sets.pending.with(validator.clone())?
            }
            ValidatorChange::Remove { key } => {
                if !sets.pending.contains(key) {
                    return Err(TxError::NotAValidator { key: *key });
                }
                sets.pending.without(key)?
            }
        };
        self.put(StateKey::Validators, Some(StateValue::Validators(sets)));
        Ok(())
    }
}

/// Checks the grant `rights` a caller needs; kept here beside the rules that
/// write grants.
pub(crate) fn grant_allows(grant: &GrantRecord, need: Rights, now: TimestampMs) -> GrantCheck {
    if grant.expires_at <= now {
        GrantCheck::Expired(grant.expires_at)
    } else if !grant.rights.contains(need) {
        GrantCheck::Missing(grant.rights)
    } else {
        GrantCheck::Allowed(grant.expires_at)
    }
}

pub(crate) enum GrantCheck {
    Allowed(TimestampMs),
    Expired(TimestampMs),
    Missing(Rights),
}
