//! PBFT's messages, and the proofs built from them.
//!
//! Peers talk over authenticated channels (the gateway's network layer
//! names the sender of every message), so a message needs its own signature
//! only if it may be *forwarded* as proof to a third replica. Castro and
//! Liskov's OSDI '99 protocol signs exactly those: PRE-PREPARE and PREPARE
//! (inside the P set of a VIEW-CHANGE), CHECKPOINT (the C set) and
//! VIEW-CHANGE (inside NEW-VIEW). They are [`Signed`] here. A COMMIT carries
//! the sender's [`CommitSig`] over the header hash instead, because 2f+1 of
//! those form the block's commit certificate.
//!
//! Every signature is over the chain id and the message, under
//! [`Domain::Consensus`], so it transfers neither between chains nor
//! between purposes. The one exception is PRE-PREPARE: as in the paper,
//! the primary signs ⟨v, n, d⟩ with the block's header hash as d, under
//! [`Domain::Proposal`], and the block travels beside the signature. Two
//! such signatures for one slot are then compact evidence of equivocation
//! ([`crate::evidence`]).

use borsh::{BorshDeserialize, BorshSerialize};

use crate::block::{Block, CommitCertificate, CommitSig, MAX_BLOCK_TXS};
use crate::codec::{encode, BoundedVec};
use crate::crypto::{Domain, Hash, Keypair, PublicKey, Signature};
use crate::evidence::{proposal_payload, SignedDigest};
use crate::tx::{ChainId, SignedTx};
use crate::types::Height;
use crate::validators::{ValidatorSet, MAX_VALIDATORS};

/// A view number; the primary of view v is validator v mod n.
pub type View = u64;

/// Most prepared slots one VIEW-CHANGE may carry (the log window).
pub const MAX_PREPARED: usize = 256;

/// A message between replicas.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    /// Client transactions relayed from the replica that received them, so
    /// every replica knows the pending requests (and whichever is primary
    /// can order them).
    Transactions(BoundedVec<SignedTx, MAX_BLOCK_TXS>),
    /// §4.2: the primary assigns a block to a height in a view.
    PrePrepare(Signed<PrePrepare>),
    /// §4.2: a backup accepted that pre-prepare.
    Prepare(Signed<Prepare>),
    /// §4.2: the sender has the prepared certificate; its vote is over the
    /// header hash.
    Commit(Commit),
    /// §4.3: the sender executed up to `height` with this header.
    Checkpoint(Signed<Checkpoint>),
    /// §4.4: the sender moves to `new_view`.
    ViewChange(Signed<ViewChange>),
    /// §4.4: the new primary's proof that the view may start, with the
    /// pre-prepares that carry prepared blocks into it.
    NewView(NewView),
    /// Where the sender is, sent periodically: peers retransmit what it is
    /// missing, and serve it committed blocks if it is behind.
    Status(Status),
    /// State transfer: a committed block with its certificate. Trusted only
    /// after the certificate verifies.
    Block {
        block: Block,
        certificate: CommitCertificate,
    },
}

impl Message {
    /// Whether the sender must make its pending [`Record`]s durable before
    /// this message leaves. Every message states something its sender must
    /// not contradict after a restart, except three: relayed transactions,
    /// which state nothing, and a pre-prepare or a prepare, which leave
    /// without being persisted because a restarted replica neither proposes
    /// nor prepares in the view it restarted in (`Replica::new`).
    ///
    /// [`Record`]: super::Record
    pub fn waits_for_records(&self) -> bool {
        !matches!(
            self,
            Message::Transactions(_) | Message::PrePrepare(_) | Message::Prepare(_)
        )
    }
}

/// A message with its author's signature, forwardable as proof.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signed<T> {
    pub body: T,
    pub author: PublicKey,
    pub signature: Signature,
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("{author} is not a validator of this view's set")]
    NotAValidator { author: PublicKey },
    #[error("the signature of {author} does not verify")]
    BadSignature { author: PublicKey },
    #[error("{author} appears twice")]
    Duplicate { author: PublicKey },
    #[error("{have} distinct signers, {need} needed")]
    TooFew { have: usize, need: usize },
    #[error("the proof's messages disagree: {reason}")]
    Inconsistent { reason: &'static str },
}

/// What an author signs of a message, and under which domain.
pub trait Signable {
    fn signing_payload(&self, chain: &ChainId) -> (Domain, Vec<u8>);
}

macro_rules! signed_whole {
    ($($t:ty),*) => {$(
        impl Signable for $t {
            fn signing_payload(&self, chain: &ChainId) -> (Domain, Vec<u8>) {
                (Domain::Consensus, encode(&(chain, self)))
            }
        }
    )*};
}
signed_whole!(Prepare, Checkpoint, ViewChange);

impl Signable for PrePrepare {
    /// §4.2: ⟨PRE-PREPARE, v, n, d⟩ — the digest, not the block.
    fn signing_payload(&self, chain: &ChainId) -> (Domain, Vec<u8>) {
        let header = &self.block.header;
        let payload = proposal_payload(chain, self.view, header.height, &header.hash());
        (Domain::Proposal, payload)
    }
}

impl<T: Signable> Signed<T> {
    pub fn sign(key: &Keypair, chain: &ChainId, body: T) -> Signed<T> {
        let (domain, payload) = body.signing_payload(chain);
        let signature = key.sign(domain, &payload);
        Signed {
            body,
            author: key.public(),
            signature,
        }
    }

    /// Checks the signature, and that the author is in `set`.
    pub fn verify(&self, chain: &ChainId, set: &ValidatorSet) -> Result<(), ProofError> {
        if !set.contains(&self.author) {
            return Err(ProofError::NotAValidator {
                author: self.author,
            });
        }
        let (domain, payload) = self.body.signing_payload(chain);
        self.author
            .verify(domain, &payload, &self.signature)
            .map_err(|_| ProofError::BadSignature {
                author: self.author,
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PrePrepare {
    pub view: View,
    /// The height is the sequence number; the digest is the header hash.
    pub block: Block,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Prepare {
    pub view: View,
    pub height: Height,
    pub digest: Hash,
    /// The primary's signature over ⟨v, n, d⟩ as this backup received it.
    /// Not part of the paper's PREPARE: it lets a backup that was sent
    /// another block for the slot prove that the primary equivocated.
    pub proposal: Signature,
}

impl Prepare {
    /// The primary's signed assignment this prepare forwards.
    pub fn proposal(&self) -> SignedDigest {
        SignedDigest {
            digest: self.digest,
            signature: self.proposal,
        }
    }

    /// Whether it is a prepare for `digest` at (`view`, `height`).
    pub fn matches(&self, view: View, height: Height, digest: &Hash) -> bool {
        self.view == view && self.height == height && self.digest == *digest
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Commit {
    pub view: View,
    pub height: Height,
    pub digest: Hash,
    pub vote: CommitSig,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Checkpoint {
    pub height: Height,
    /// The header hash at `height`: it names the state root after it.
    pub digest: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ViewChange {
    pub new_view: View,
    /// C: the sender's latest stable checkpoint (`None` = the genesis).
    pub stable: Option<CheckpointProof>,
    /// P: a prepared certificate for every height above the stable
    /// checkpoint that the sender prepared, the highest view's for each.
    pub prepared: BoundedVec<PreparedProof, MAX_PREPARED>,
}

impl ViewChange {
    /// The stable checkpoint's height (0 for the genesis).
    pub fn stable_height(&self) -> Height {
        self.stable.as_ref().map_or(0, |c| c.height())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct NewView {
    pub view: View,
    /// V: 2f+1 view changes for `view`, from distinct replicas.
    pub view_changes: BoundedVec<Signed<ViewChange>, MAX_VALIDATORS>,
    /// O: pre-prepares in `view` for the heights above the checkpoint that
    /// some replica in V prepared, as the rule in §4.4 computes them.
    pub pre_prepares: BoundedVec<Signed<PrePrepare>, MAX_PREPARED>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Status {
    pub view: View,
    /// The sender's committed height.
    pub height: Height,
    /// Whether the sender is changing view (to `view`).
    pub changing_view: bool,
}

/// 2f+1 matching CHECKPOINT messages: the checkpoint is stable (§4.3).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CheckpointProof {
    pub checkpoints: BoundedVec<Signed<Checkpoint>, MAX_VALIDATORS>,
}

impl CheckpointProof {
    pub fn height(&self) -> Height {
        self.checkpoints
            .as_slice()
            .first()
            .map_or(0, |c| c.body.height)
    }

    pub fn digest(&self) -> Hash {
        self.checkpoints
            .as_slice()
            .first()
            .map_or(Hash::ZERO, |c| c.body.digest)
    }

    pub fn verify(&self, chain: &ChainId, set: &ValidatorSet) -> Result<(), ProofError> {
        let first = self.checkpoints.as_slice().first();
        let Some(first) = first else {
            return Err(ProofError::TooFew {
                have: 0,
                need: set.quorum(),
            });
        };
        if self
            .checkpoints
            .as_slice()
            .iter()
            .any(|c| c.body != first.body)
        {
            return Err(ProofError::Inconsistent {
                reason: "checkpoints for different heights or digests",
            });
        }
        distinct_quorum(self.checkpoints.as_slice(), chain, set, set.quorum())
    }
}

/// A prepared certificate (§4.2): the pre-prepare and 2f matching prepares
/// from distinct backups.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PreparedProof {
    pub pre_prepare: Signed<PrePrepare>,
    pub prepares: BoundedVec<Signed<Prepare>, MAX_VALIDATORS>,
}

impl PreparedProof {
    pub fn view(&self) -> View {
        self.pre_prepare.body.view
    }

    pub fn height(&self) -> Height {
        self.pre_prepare.body.block.header.height
    }

    pub fn digest(&self) -> Hash {
        self.pre_prepare.body.block.header.hash()
    }

    /// Checks the certificate against `set`: the pre-prepare is the
    /// primary's of its view, the prepares match it and come from 2f
    /// distinct backups, every signature verifies.
    pub fn verify(&self, chain: &ChainId, set: &ValidatorSet) -> Result<(), ProofError> {
        let view = self.view();
        if self.pre_prepare.author != set.primary(view).key {
            return Err(ProofError::Inconsistent {
                reason: "the pre-prepare is not from its view's primary",
            });
        }
        self.pre_prepare.verify(chain, set)?;
        let (height, digest) = (self.height(), self.digest());
        let prepares = self.prepares.as_slice();
        if prepares
            .iter()
            .any(|p| !p.body.matches(view, height, &digest))
        {
            return Err(ProofError::Inconsistent {
                reason: "a prepare does not match the pre-prepare",
            });
        }
        if prepares.iter().any(|p| p.author == self.pre_prepare.author) {
            return Err(ProofError::Inconsistent {
                reason: "the primary does not prepare",
            });
        }
        distinct_quorum(prepares, chain, set, set.quorum() - 1)
    }
}

/// At least `need` distinct members of `set` signed, and every signature
/// verifies.
fn distinct_quorum<T: Signable>(
    signed: &[Signed<T>],
    chain: &ChainId,
    set: &ValidatorSet,
    need: usize,
) -> Result<(), ProofError> {
    let mut seen = Vec::with_capacity(signed.len());
    for message in signed {
        if seen.contains(&message.author) {
            return Err(ProofError::Duplicate {
                author: message.author,
            });
        }
        message.verify(chain, set)?;
        seen.push(message.author);
    }
    if seen.len() < need {
        return Err(ProofError::TooFew {
            have: seen.len(),
            need,
        });
    }
    Ok(())
}
