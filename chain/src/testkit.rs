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
use crate::codec::Text;
use crate::crypto::{AccountId, Keypair, PublicKey};
use crate::genesis::{Genesis, GenesisBalance};
use crate::ledger::Ledger;
use crate::tx::{ChainId, SignedTx, Tx, TxBody};
use crate::validators::Validator;

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
        let hash = header.hash();
        let quorum = self.validators.len() * 2 / 3 + 1;
        let sigs = self
            .validators
            .iter()
            .take(quorum)
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
        let (mut ledger, genesis) = Ledger::genesis(&self.genesis).ok()?;
        let mut out = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let proposer = self.proposer(&ledger).public();
            let time = ledger.tip().time_ms + 1_000;
            let proposal = ledger.propose(Vec::new(), time, proposer).ok()?;
            let header = proposal.executed.block.header.clone();
            out.push((header.clone(), self.certify(&header)));
            ledger.commit(proposal.executed).ok()?;
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
