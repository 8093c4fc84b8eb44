//! A deterministic workload: keys, a genesis, signed transactions and commit
//! certificates, all derived from a seed.
//!
//! Tests, benchmarks and simulations use it to produce the same chain twice
//! (for example, to replay what a killed process stored and compare roots).
//! It is plain library code with no IO, so the gateway's tests and benches
//! can use it too.

use crate::ledger::StateRead;
use std::collections::HashMap;

use crate::block::{CommitCertificate, CommitSig, Header};
use crate::codec::{BoundedVec, Text};
use crate::crypto::{AccountId, Domain, Hash, Keypair, PublicKey};
use crate::genesis::{Genesis, GenesisBalance};
use crate::ledger::Ledger;
use crate::tx::{
    validator_change_payload, Approval, ChainId, SignedTx, Tx, TxBody, ValidatorChange,
};
use crate::validators::{Validator, ValidatorSet};

/// Headers with their commit certificates, in height order.
pub type CertifiedHeaders = Vec<(Header, CommitCertificate)>;

/// SplitMix64: a tiny, well-known deterministic generator for workloads.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn key_from(seed: u64, role: u8, index: u64) -> Keypair {
    let mut s = [0u8; 32];
    s[0] = role;
    s[1..9].copy_from_slice(&seed.to_le_bytes());
    s[9..17].copy_from_slice(&index.to_le_bytes());
    Keypair::from_seed(s)
}

/// Validators, funded users and a genesis, from a seed.
pub struct Workload {
    pub validators: Vec<Keypair>,
    pub users: Vec<Keypair>,
    pub genesis: Genesis,
    seed: u64,
}

/// Every user starts with this many base units.
pub const USER_BALANCE: u64 = 1_000_000_000;

impl Workload {
    pub fn new(validators: usize, users: usize, seed: u64) -> Workload {
        let validators: Vec<Keypair> = (0..validators as u64)
            .map(|i| key_from(seed, 1, i))
            .collect();
        let users: Vec<Keypair> = (0..users as u64).map(|i| key_from(seed, 2, i)).collect();
        let genesis = Genesis {
            chain_id: ChainId::new("itc-test").unwrap_or_default(),
            genesis_time_ms: 1_764_000_000_000,
            epoch_length: 100,
            validators: validators
                .iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    key: k.public(),
                    addr: Text::new(format!("127.0.0.1:{}", 7100 + i)).unwrap_or_default(),
                })
                .collect(),
            balances: users
                .iter()
                .map(|k| GenesisBalance {
                    account: k.public(),
                    amount: USER_BALANCE,
                })
                .collect(),
        };
        Workload {
            validators,
            users,
            genesis,
            seed,
        }
    }

    /// `count` signed transfers for the block after `ledger`'s tip, with
    /// valid nonces, chosen deterministically from the seed and the height.
    pub fn transfers(&self, ledger: &Ledger, count: usize) -> Vec<SignedTx> {
        let mut rng = SplitMix64::new(self.seed ^ ledger.height().wrapping_mul(0x2545_f491));
        let mut nonces: HashMap<AccountId, u64> = HashMap::new();
        let n = self.users.len() as u64;
        (0..count)
            .map(|_| {
                let from = &self.users[rng.below(n) as usize];
                let mut to = rng.below(n);
                if self.users[to as usize].public() == from.public() {
                    to = (to + 1) % n;
                }
                let nonce = nonces
                    .entry(from.public())
                    .or_insert_with(|| ledger.account(&from.public()).nonce);
                let tx = Tx {
                    chain_id: self.genesis.chain_id.clone(),
                    sender: from.public(),
                    nonce: *nonce,
                    body: TxBody::Transfer {
                        to: self.users[to as usize].public(),
                        amount: 1 + rng.below(1000),
                    },
                };
                *nonce += 1;
                tx.sign(from)
            })
            .collect()
    }

    /// A certificate for `header` signed by the first quorum of validators.
    pub fn certify(&self, header: &Header) -> CommitCertificate {
        match ValidatorSet::new(self.genesis.validators.clone()) {
            Ok(set) => self.certify_by(header, &set, &[]),
            // The workload's genesis always holds a valid set.
            Err(_) => CommitCertificate {
                height: header.height,
                header_hash: header.hash(),
                signatures: Default::default(),
            },
        }
    }

    /// A certificate for `header` from the first quorum of `set` among
    /// `extra` (first) and the workload's validators.
    pub fn certify_by(
        &self,
        header: &Header,
        set: &ValidatorSet,
        extra: &[&Keypair],
    ) -> CommitCertificate {
        let hash = header.hash();
        let sigs = extra
            .iter()
            .copied()
            .chain(self.validators.iter())
            .filter(|k| set.contains(&k.public()))
            .take(set.quorum())
            .map(|k| CommitSig::sign(k, &hash))
            .collect();
        // A quorum is never more than the bound on signatures.
        match CommitCertificate::new(header, sigs) {
            Ok(cert) => cert,
            Err(_) => CommitCertificate {
                height: header.height,
                header_hash: hash,
                signatures: Default::default(),
            },
        }
    }

    /// The genesis header and `blocks` empty blocks' headers after it, each
    /// with a certificate from a quorum: a chain for light clients to
    /// follow. `None` if the ledger refused a block (it does not).
    pub fn certified_chain(&self, blocks: usize) -> Option<(Header, CertifiedHeaders)> {
        self.chain_with(blocks, |_| Vec::new(), &[])
    }

    /// Like [`Workload::certified_chain`], with `newcomer` joining the
    /// validators: block 1 carries the change, approved by a quorum; it
    /// takes effect at the first epoch boundary, and from then on headers
    /// are certified by a quorum of the new set with the newcomer signing.
    pub fn certified_chain_adding(
        &self,
        blocks: usize,
        newcomer: &Keypair,
    ) -> Option<(Header, CertifiedHeaders)> {
        let first_block = |ledger: &Ledger| {
            self.adding_validator(ledger, newcomer.public(), "127.0.0.1:7999")
                .into_iter()
                .collect()
        };
        self.chain_with(blocks, first_block, &[newcomer])
    }

    /// A transaction adding `key` (reached at `addr`) to the validators on
    /// top of `ledger`: sent by the first validator, approved by a quorum
    /// of the active set.
    pub fn adding_validator(
        &self,
        ledger: &Ledger,
        key: PublicKey,
        addr: &str,
    ) -> Option<SignedTx> {
        let change = ValidatorChange::Add(Validator {
            key,
            addr: Text::new(addr).ok()?,
        });
        self.changing_validators(ledger, change)
    }

    /// A transaction removing `key` from the validators on top of
    /// `ledger`, sent and approved as in [`Workload::adding_validator`].
    pub fn removing_validator(&self, ledger: &Ledger, key: PublicKey) -> Option<SignedTx> {
        self.changing_validators(ledger, ValidatorChange::Remove { key })
    }

    fn changing_validators(&self, ledger: &Ledger, change: ValidatorChange) -> Option<SignedTx> {
        let sender = self.validators.first()?;
        let sets = ledger.validator_sets();
        let payload =
            validator_change_payload(&self.genesis.chain_id, &sets.pending.hash(), &change);
        let approvals = self
            .validators
            .iter()
            .filter(|k| sets.active.contains(&k.public()))
            .take(sets.active.quorum())
            .map(|k| Approval {
                validator: k.public(),
                signature: k.sign(Domain::ValidatorChange, &payload),
            })
            .collect();
        let tx = Tx {
            chain_id: self.genesis.chain_id.clone(),
            sender: sender.public(),
            nonce: ledger.account(&sender.public()).nonce,
            body: TxBody::ChangeValidators {
                change,
                approvals: BoundedVec::new(approvals).ok()?,
            },
        };
        Some(tx.sign(sender))
    }

    fn chain_with(
        &self,
        blocks: usize,
        first_block: impl FnOnce(&Ledger) -> Vec<SignedTx>,
        extra: &[&Keypair],
    ) -> Option<(Header, CertifiedHeaders)> {
        let (mut ledger, genesis) = Ledger::genesis(&self.genesis).ok()?;
        let mut sets: HashMap<Hash, ValidatorSet> = HashMap::new();
        let mut first_block = Some(first_block);
        let mut out = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let known = ledger.validator_sets();
            sets.insert(known.active.hash(), known.active);
            sets.insert(known.pending.hash(), known.pending);
            let txs = first_block.take().map_or_else(Vec::new, |f| f(&ledger));
            let proposer = self.proposer(&ledger).public();
            let time = ledger.tip().time_ms + 1_000;
            let proposal = ledger.propose(txs, time, proposer).ok()?;
            if !proposal.rejected.is_empty() {
                return None;
            }
            let header = proposal.executed.block.header.clone();
            let set = sets.get(&header.validators_hash)?;
            out.push((header.clone(), self.certify_by(&header, set, extra)));
            ledger.commit(&proposal.executed).ok()?;
        }
        Some((genesis.block.header, out))
    }

    /// The proposer of the next block (round-robin, as PBFT's primary).
    pub fn proposer(&self, ledger: &Ledger) -> &Keypair {
        let set = ledger.validator_sets().active;
        let key = set.primary(ledger.height() + 1).key;
        self.validator_key(&key).unwrap_or(&self.validators[0])
    }

    /// The key pair of the validator whose public key is `key`.
    pub fn validator_key(&self, key: &PublicKey) -> Option<&Keypair> {
        self.validators.iter().find(|k| k.public() == *key)
    }

    /// An owned copy of that key pair (a replica or a node takes one).
    pub fn validator_keypair(&self, key: &PublicKey) -> Option<Keypair> {
        self.validator_key(key)
            .map(|k| Keypair::from_seed(*k.seed()))
    }
}
