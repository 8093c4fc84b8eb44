//! Identities and hashes: Ed25519 keys and signatures and SHA-256.
//!
//! Keys, signing and hashing are `ring`'s. A signature is checked by
//! [`crate::rfc8032`]: `ring`'s rule, computed faster (that module says
//! why).
//!
//! Every actor on the chain — user, gateway, device, manufacturer — is an
//! account named by its Ed25519 public key. There is no separate address
//! scheme to get wrong.
//!
//! Every signature is made over a *domain-separated* message (see
//! [`signing_message`]), so a signature for one purpose (say, a commit vote)
//! can never be replayed as another (say, a transaction).
//!
//! The core takes no randomness of its own: a key is made from a seed the
//! caller provides (the gateway draws it from the OS).

use borsh::{BorshDeserialize, BorshSerialize};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// A SHA-256 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used where a field has nothing to commit to (the
    /// previous hash of the genesis header).
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Self::digest_parts(&[data])
    }

    /// SHA-256 of the concatenation of `parts`, without building it.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Hash(out)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The gateway's [`itc_verify::Backend`]: the checks `itc-chain` shares
/// with the microcontroller verifier run on the same primitives as the rest
/// of the gateway (`ring`'s SHA-256, [`crate::rfc8032`]'s signature check).
#[derive(Debug, Clone, Copy, Default)]
pub struct Host;

impl itc_verify::Backend for Host {
    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        Hash::digest_parts(parts).0
    }

    fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        crate::rfc8032::verify(public_key, message, signature)
    }
}

/// An Ed25519 public key. Accounts are named by these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An account is its public key.
pub type AccountId = PublicKey;

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("signature does not verify under key {key}")]
    BadSignature { key: PublicKey },
    #[error("invalid Ed25519 seed")]
    BadSeed,
}

impl PublicKey {
    /// Verifies `signature` over the domain-separated message for `domain`
    /// and `payload`.
    pub fn verify(
        &self,
        domain: Domain,
        payload: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let message = signing_message(domain, payload);
        if crate::rfc8032::verify(&self.0, &message, &signature.0) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature { key: *self })
        }
    }
}

/// What a signature is for. Each domain has its own prefix, so signatures do
/// not transfer between purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A chain transaction, signed by its sender.
    Transaction,
    /// A device proving it holds its key when a gateway registers it.
    DeviceRegistration,
    /// A device or its registering gateway authorising a first owner.
    DeviceClaim,
    /// A current validator approving a validator-set change.
    ValidatorChange,
    /// A validator's commit vote over a block header hash.
    Commit,
    /// A consensus message that may be forwarded as proof (pre-prepare,
    /// prepare, checkpoint, view change).
    Consensus,
    /// A gateway binding its key to a network channel's key.
    Peer,
    /// A user signing a REST request to a gateway's API.
    ApiRequest,
    /// A user letting a gateway make them the first owner of the devices
    /// it registers.
    Adoption,
    /// A new device answering a gateway's onboarding challenge.
    DeviceOnboarding,
    /// A device's own report of its state.
    DeviceReport,
    /// A device's transaction on the DAG side chain.
    DagTransaction,
    /// A primary assigning a block (by its header hash) to a view and
    /// height: PBFT's ⟨PRE-PREPARE, v, n, d⟩.
    Proposal,
}

impl Domain {
    fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Transaction => b"ITC/v1/transaction\0",
            Domain::DeviceRegistration => b"ITC/v1/device-registration\0",
            Domain::DeviceClaim => b"ITC/v1/device-claim\0",
            Domain::ValidatorChange => b"ITC/v1/validator-change\0",
            Domain::Commit => itc_verify::COMMIT_DOMAIN,
            Domain::Consensus => b"ITC/v1/consensus\0",
            Domain::Peer => b"ITC/v1/peer\0",
            Domain::ApiRequest => b"ITC/v1/api-request\0",
            Domain::Adoption => b"ITC/v1/adoption\0",
            Domain::DeviceOnboarding => b"ITC/v1/device-onboarding\0",
            Domain::DeviceReport => b"ITC/v1/device-report\0",
            Domain::DagTransaction => b"ITC/v1/dag-transaction\0",
            Domain::Proposal => b"ITC/v1/proposal\0",
        }
    }
}

/// The exact bytes signed for `domain` and `payload`.
pub fn signing_message(domain: Domain, payload: &[u8]) -> Vec<u8> {
    let prefix = domain.prefix();
    let mut message = Vec::with_capacity(prefix.len() + payload.len());
    message.extend_from_slice(prefix);
    message.extend_from_slice(payload);
    message
}

/// An Ed25519 key pair. Keeps its seed so that it can be saved to a key file.
pub struct Keypair {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl Keypair {
    /// The key pair for a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        // `from_seed_unchecked` fails only for a seed of the wrong length,
        // which the array type rules out; fall back defensively anyway.
        let pair = match Ed25519KeyPair::from_seed_unchecked(&seed) {
            Ok(pair) => pair,
            Err(_) => unreachable_seed(),
        };
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Keypair {
            seed,
            pair,
            public: PublicKey(public),
        }
    }

    /// A fresh key pair from the caller's source of randomness.
    pub fn generate(rng: &dyn ring::rand::SecureRandom) -> Result<Keypair, CryptoError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| CryptoError::BadSeed)?;
        Ok(Keypair::from_seed(seed))
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Signs the domain-separated message for `domain` and `payload`.
    pub fn sign(&self, domain: Domain, payload: &[u8]) -> Signature {
        let sig = self.pair.sign(&signing_message(domain, payload));
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        Signature(out)
    }
}

#[cold]
fn unreachable_seed() -> ! {
    // A [u8; 32] is always a valid Ed25519 seed (RFC 8032 §5.1.5).
    panic!("ring rejected a 32-byte Ed25519 seed")
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair::from_seed(self.seed)
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the seed.
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, TEST 1: the public key for the all-`9d61…` seed.
    #[test]
    fn rfc8032_test1_public_key_and_signature() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let pair = Keypair::from_seed(seed);
        assert_eq!(
            hex::encode(pair.public().0),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        // The raw (undomained) signature of the empty message, from the RFC.
        let raw = pair.pair.sign(b"");
        assert_eq!(
            hex::encode(raw.as_ref()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    /// FIPS 180-2 "abc" vector.
    #[test]
    fn sha256_abc() {
        assert_eq!(
            hex::encode(Hash::digest(b"abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::digest_parts(&[b"a", b"bc"]), Hash::digest(b"abc"));
    }

    #[test]
    fn signatures_do_not_cross_domains() {
        let pair = Keypair::from_seed([7; 32]);
        let sig = pair.sign(Domain::Transaction, b"payload");
        assert!(pair
            .public()
            .verify(Domain::Transaction, b"payload", &sig)
            .is_ok());
        assert!(pair
            .public()
            .verify(Domain::Commit, b"payload", &sig)
            .is_err());
        assert!(pair
            .public()
            .verify(Domain::Transaction, b"payloae", &sig)
            .is_err());
        let other = Keypair::from_seed([8; 32]);
        assert_eq!(
            other.public().verify(Domain::Transaction, b"payload", &sig),
            Err(CryptoError::BadSignature {
                key: other.public()
            })
        );
    }
}
