//! Queries against committed state, written once for every holder of it.
//!
//! The ledger answers them for the replica, and the gateway answers the
//! same ones for its API from a plain copy of the entries
//! ([`Entries`](crate::state::Entries)) that it keeps in step with each
//! commit, so a control command is authorised without waiting on the
//! consensus task. Both go through [`StateRead`], so the rule for who may
//! use a device is written in exactly one place.

use crate::crypto::{AccountId, PublicKey};
use crate::state::{
    Account, DeviceRecord, Entries, GrantRecord, ManifestRecord, Overlay, State, StateKey,
    StateValue, ValidatorSets,
};
use crate::types::{DeviceId, FirmwareVersion, Model, Rights, TimestampMs};

use super::exec::{self, grant_allows, GrantCheck};
use super::{Access, AccessError, Ledger};

/// Read access to committed state entries.
pub trait StateRead {
    fn get(&self, key: &StateKey) -> Option<&StateValue>;

    /// Entries in key order from `from` (inclusive).
    fn entries_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> Box<dyn Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a>;

    fn account(&self, account: &AccountId) -> Account {
        match self.get(&StateKey::Account { account: *account }) {
            Some(StateValue::Account(a)) => *a,
            _ => Account::default(),
        }
    }

    fn device(&self, device: &DeviceId) -> Option<&DeviceRecord> {
        match self.get(&StateKey::Device {
            device: device.clone(),
        }) {
            Some(StateValue::Device(d)) => Some(d),
            _ => None,
        }
    }

    fn grant(&self, device: &DeviceId, grantee: &AccountId) -> Option<&GrantRecord> {
        match self.get(&StateKey::Grant {
            device: device.clone(),
            grantee: *grantee,
        }) {
            Some(StateValue::Grant(g)) => Some(g),
            _ => None,
        }
    }

    /// Every grant on `device`, expired ones included.
    fn grants(&self, device: &DeviceId) -> Vec<(AccountId, GrantRecord)> {
        let from = StateKey::Grant {
            device: device.clone(),
            grantee: PublicKey([0; 32]),
        };
        self.entries_from(&from)
            .map_while(|(key, value)| match (key, value) {
                (StateKey::Grant { device: d, grantee }, StateValue::Grant(g)) if d == device => {
                    Some((*grantee, *g))
                }
                _ => None,
            })
            .collect()
    }

    fn manifest(
        &self,
        manufacturer: &AccountId,
        model: &Model,
        version: FirmwareVersion,
    ) -> Option<&ManifestRecord> {
        match self.get(&StateKey::Manifest {
            manufacturer: *manufacturer,
            model: model.clone(),
            version,
        }) {
            Some(StateValue::Manifest(m)) => Some(m),
            _ => None,
        }
    }

    fn validator_sets(&self) -> ValidatorSets {
        match self.get(&StateKey::Validators) {
            Some(StateValue::Validators(sets)) => sets.clone(),
            _ => exec::unreachable_validators(),
        }
    }

    /// May `account` use `device` with `need` at time `now`? The owner may do
    /// anything; anyone else needs an unexpired grant with the right.
    fn authorize(
        &self,
        account: &AccountId,
        device: &DeviceId,
        need: Rights,
        now: TimestampMs,
    ) -> Result<Access, AccessError> {
        let record = self
            .device(device)
            .ok_or_else(|| AccessError::UnknownDevice {
                device: device.clone(),
            })?;
        let owner = record.owner.ok_or_else(|| AccessError::NotClaimed {
            device: device.clone(),
        })?;
        if &owner == account {
            return Ok(Access::Owner);
        }
        let grant = self
            .grant(device, account)
            .ok_or_else(|| AccessError::NoGrant {
                device: device.clone(),
                account: *account,
            })?;
        match grant_allows(grant, need, now) {
            GrantCheck::Allowed(expires_at) => Ok(Access::Grant { expires_at }),
            GrantCheck::Expired(expired_at) => Err(AccessError::GrantExpired {
                device: device.clone(),
                account: *account,
                expired_at,
            }),
            GrantCheck::Missing(have) => Err(AccessError::MissingRight {
                device: device.clone(),
                account: *account,
                have,
                need,
            }),
        }
    }

    /// May `account` control `device` at `now`?
    fn can_control(&self, account: &AccountId, device: &DeviceId, now: TimestampMs) -> bool {
        self.authorize(account, device, Rights::CONTROL, now)
            .is_ok()
    }
}

impl StateRead for State {
    fn get(&self, key: &StateKey) -> Option<&StateValue> {
        State::get(self, key)
    }

    fn entries_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> Box<dyn Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a> {
        Box::new(self.range_from(from))
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &StateKey) -> Option<&StateValue> {
        Overlay::get(self, key)
    }

    fn entries_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> Box<dyn Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a> {
        Box::new(self.range_from(from))
    }
}

impl StateRead for Entries {
    fn get(&self, key: &StateKey) -> Option<&StateValue> {
        Entries::get(self, key)
    }

    fn entries_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> Box<dyn Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a> {
        Box::new(self.range_from(from))
    }
}

impl StateRead for Ledger {
    fn get(&self, key: &StateKey) -> Option<&StateValue> {
        self.state().get(key)
    }

    fn entries_from<'a>(
        &'a self,
        from: &StateKey,
    ) -> Box<dyn Iterator<Item = (&'a StateKey, &'a StateValue)> + 'a> {
        Box::new(self.state().range_from(from))
    }
}
