//! The genesis file: what a chain starts from.
//!
//! ```toml
//! chain_id = "itc-home"
//! genesis_time_ms = 1764000000000
//! epoch_length = 100          # blocks; validator changes apply at multiples
//!
//! [[validators]]
//! key = "itcpk1…"
//! addr = "10.0.0.2:7100"
//!
//! [[balances]]
//! account = "itcpk1…"
//! amount = 1000000            # base units
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::crypto::AccountId;
use crate::tx::ChainId;
use crate::types::{Amount, TimestampMs};
use crate::validators::{Validator, ValidatorSet, ValidatorSetError};

/// A chain's starting point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub genesis_time_ms: TimestampMs,
    /// Validator-set changes take effect after blocks whose height is a
    /// multiple of this (PBFT checkpoint boundaries).
    pub epoch_length: u64,
    pub validators: Vec<Validator>,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

/// An initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub account: AccountId,
    pub amount: Amount,
}

/// Why a genesis is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis TOML: {reason}")]
    Toml { reason: String },
    #[error("genesis chain_id must not be empty")]
    EmptyChainId,
    #[error("genesis validators: {0}")]
    Validators(#[from] ValidatorSetError),
    #[error("epoch_length must be at least 1")]
    ZeroEpoch,
    #[error("account {account} has two genesis balances")]
    DuplicateBalance { account: AccountId },
    #[error("the genesis balances overflow the token supply")]
    SupplyOverflow,
    #[error("genesis state: {reason}")]
    State { reason: String },
}

impl Genesis {
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = toml::from_str(text).map_err(|e| GenesisError::Toml {
            reason: e.to_string(),
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_toml(&self) -> Result<String, GenesisError> {
        toml::to_string_pretty(self).map_err(|e| GenesisError::Toml {
            reason: e.to_string(),
        })
    }

    /// The validator set, checked.
    pub fn validator_set(&self) -> Result<ValidatorSet, GenesisError> {
        Ok(ValidatorSet::new(self.validators.clone())?)
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.as_str().is_empty() {
            return Err(GenesisError::EmptyChainId);
        }
        if self.epoch_length == 0 {
            return Err(GenesisError::ZeroEpoch);
        }
        self.validator_set()?;
        let mut seen = BTreeSet::new();
        let mut total: Amount = 0;
        for balance in &self.balances {
            if !seen.insert(balance.account) {
                return Err(GenesisError::DuplicateBalance {
                    account: balance.account,
                });
            }
            total = total
                .checked_add(balance.amount)
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Text;
    use crate::crypto::Keypair;

    fn sample() -> Genesis {
        Genesis {
            chain_id: ChainId::new("itc-test").unwrap(),
            genesis_time_ms: 1_764_000_000_000,
            epoch_length: 10,
            validators: (1..=4u8)
                .map(|i| Validator {
                    key: Keypair::from_seed([i; 32]).public(),
                    addr: Text::new(format!("127.0.0.1:{}", 7100 + i as u16)).unwrap(),
                })
                .collect(),
            balances: vec![GenesisBalance {
                account: Keypair::from_seed([9; 32]).public(),
                amount: 5_000_000,
            }],
        }
    }

    #[test]
    fn toml_round_trip() {
        let g = sample();
        let text = g.to_toml().unwrap();
        assert!(text.contains("itcpk1"), "{text}");
        assert_eq!(Genesis::from_toml(&text).unwrap(), g);
    }

    #[test]
    fn rejects_bad_genesis() {
        let mut g = sample();
        g.epoch_length = 0;
        assert_eq!(
            Genesis::from_toml(&g.to_toml().unwrap()),
            Err(GenesisError::ZeroEpoch)
        );
        let mut g = sample();
        g.balances.push(g.balances[0].clone());
        assert!(matches!(
            Genesis::from_toml(&g.to_toml().unwrap()),
            Err(GenesisError::DuplicateBalance { .. })
        ));
        let mut g = sample();
        g.validators.clear();
        assert_eq!(
            Genesis::from_toml(&g.to_toml().unwrap()),
            Err(GenesisError::Validators(ValidatorSetError::Empty))
        );
        let text = sample()
            .to_toml()
            .unwrap()
            .replace("chain_id", "chain_name");
        assert!(matches!(
            Genesis::from_toml(&text),
            Err(GenesisError::Toml { .. })
        ));
    }
}
