//! Transaction signatures, checked one at a time or many at once, under
//! one rule: ZIP-215.
//!
//! Why a second Ed25519 rule. Every gateway checks every chain transaction
//! and every DAG transaction itself, so their signature checks are most of
//! a gateway's work under load (`BENCHMARKS.md`). Batch verification checks
//! n signatures with one multiscalar multiplication, for about half the
//! cost of n single checks. But the batch equation is *cofactored* (it
//! multiplies by 8) while RFC 8032's single check as `ring` does it is
//! cofactorless, so a crafted signature can pass one and fail the other
//! (Chalkias et al., "Taming the many EdDSAs", 2020). Replicas that
//! disagree on a transaction's validity disagree on a block, so both paths
//! must use the same rule. ZIP-215 (Zcash) fixes that rule: cofactored
//! checks, canonical `s`, any decodable `A` and `R`; `ed25519-zebra`
//! implements it, "so batch verification always agrees with individual
//! verification" (its `batch` docs). Every signature valid under RFC 8032
//! is valid under ZIP-215, so honest signers (all of which sign with
//! `ring`) see no difference.
//!
//! Where it applies: a transaction's sender signature
//! ([`crate::tx::SignedTx::verify_signature`]) and a DAG transaction's
//! issuer signature ([`crate::dag::DagTx`]). Consensus messages and commit
//! certificates stay on RFC 8032's cofactorless rule ([`crate::rfc8032`],
//! `ring`'s verdicts), which is also what light clients and the
//! microcontroller verifier check; they are few per block and never checked
//! in bulk.
//!
//! The batch's random coefficients come from a ChaCha20 stream seeded with
//! SHA-256 over every (key, signature, message) in the batch: a signer
//! cannot predict them without fixing the whole batch first (the
//! Fiat–Shamir argument), and the core draws no randomness of its own.
//!
//! Why the batch equation is written here and not taken from
//! `ed25519-zebra`'s `batch::Verifier`: that verifier decodes every key
//! from its 32 bytes in every batch, and decoding a point is a square root
//! in the field (~250 squarings), as costly as a third of a batched check.
//! A saturated replica spent 15 % of its CPU decoding points, half of them
//! the same few thousand senders' keys again and again (`BENCHMARKS.md`).
//! The crate has no way to hand it decoded keys, so this module writes out
//! ZIP-215's two equations (single and batch, as that crate's docs give
//! them) over `curve25519-dalek`, whose point arithmetic does the work, and
//! takes keys from a [`KeyCache`]. `ed25519-zebra` stays as the reference:
//! the tests check both equations against it on valid signatures and on
//! each kind of damage, the small-order cases included.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::crypto::{signing_message, CryptoError, Domain, PublicKey, Signature};

/// Below this many, single checks are as cheap as a batch.
const BATCH_FROM: usize = 4;

/// Domain of the seed for a batch's coefficients.
const SEED_DOMAIN: &[u8] = b"ITC/v1/zip215-batch-seed\0";

/// Checks one signature over `domain` and `payload` under ZIP-215.
pub fn verify(
    key: &PublicKey,
    domain: Domain,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let message = signing_message(domain, payload);
    if single_holds(key, &message, signature, &mut KeyCache::new(0)) {
        Ok(())
    } else {
        Err(CryptoError::BadSignature { key: *key })
    }
}

/// One signature to check in a batch.
pub struct Signed<'a> {
    pub key: PublicKey,
    pub domain: Domain,
    pub payload: &'a [u8],
    pub signature: Signature,
}

/// Decoded public keys, kept between batches so that a sender who signs
/// again is not decoded again. Bounded: when full it starts over, which
/// costs one decode per key and keeps the memory fixed (~200 B per key).
/// What it holds never changes a verdict, only what a check costs.
#[derive(Debug, Clone)]
pub struct KeyCache {
    points: HashMap<[u8; 32], EdwardsPoint>,
    capacity: usize,
}

impl KeyCache {
    /// A cache of at most `capacity` keys (0: decode every time).
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            points: HashMap::new(),
            capacity,
        }
    }

    /// The point `key` encodes, or `None` when it encodes none. Any
    /// encoding that decodes is accepted (ZIP-215), as `ed25519-zebra`
    /// accepts it.
    fn point(&mut self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        if let Some(point) = self.points.get(key) {
            return Some(*point);
        }
        let point = CompressedEdwardsY(*key).decompress()?;
        if self.capacity > 0 {
            if self.points.len() >= self.capacity {
                self.points.clear();
            }
            self.points.insert(*key, point);
        }
        Some(point)
    }
}

/// Checks every signature in `items`; the verdicts are in their order, and
/// each is exactly what [`verify`] says of that item. One batch check
/// first, with keys from `keys`; if it fails, each item is checked alone
/// to find the bad ones.
pub fn verify_all(items: &[Signed<'_>], keys: &mut KeyCache) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = items
        .iter()
        .map(|item| signing_message(item.domain, item.payload))
        .collect();
    if items.len() >= BATCH_FROM && batch_holds(items, &messages, keys) {
        return vec![true; items.len()];
    }
    items
        .iter()
        .zip(&messages)
        .map(|(item, message)| single_holds(&item.key, message, &item.signature, keys))
        .collect()
}

/// ZIP-215's single equation, as `ed25519-zebra` states it:
/// `8·(s·B − k·A − R) = 0` with `k = H(R‖A‖M)`, canonical `s`, and any
/// `R` and `A` that decode.
fn single_holds(
    key: &PublicKey,
    message: &[u8],
    signature: &Signature,
    keys: &mut KeyCache,
) -> bool {
    let Some((r_bytes, r, s)) = decode_signature(signature) else {
        return false;
    };
    let Some(a) = keys.point(&key.0) else {
        return false;
    };
    let k = challenge(&r_bytes, &key.0, message);
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s) - r)
        .mul_by_cofactor()
        .is_identity()
}

/// ZIP-215's batch equation, as `ed25519-zebra` states it:
/// `8·(−Σ zᵢsᵢ)·B + 8·Σ zᵢ·Rᵢ + 8·Σ (zᵢkᵢ)·Aᵢ = 0`, with `kᵢ = H(Rᵢ‖Aᵢ‖Mᵢ)`,
/// random 128-bit `zᵢ`, and the terms of one key folded into one. False
/// when any `s` is not canonical or any `R` or `A` does not decode, which
/// the single checks then report item by item.
fn batch_holds(items: &[Signed<'_>], messages: &[Vec<u8>], keys: &mut KeyCache) -> bool {
    let mut rng = ChaCha20Rng::from_seed(batch_seed(items, messages));
    let mut b_coefficient = Scalar::ZERO;
    let mut r_coefficients = Vec::with_capacity(items.len());
    let mut r_points = Vec::with_capacity(items.len());
    let mut a_coefficients: Vec<Scalar> = Vec::new();
    let mut a_points: Vec<EdwardsPoint> = Vec::new();
    let mut a_index: HashMap<[u8; 32], usize> = HashMap::new();
    for (item, message) in items.iter().zip(messages) {
        let Some((r_bytes, r, s)) = decode_signature(&item.signature) else {
            return false;
        };
        let slot = match a_index.get(&item.key.0) {
            Some(slot) => *slot,
            None => {
                let Some(a) = keys.point(&item.key.0) else {
                    return false;
                };
                a_points.push(a);
                a_coefficients.push(Scalar::ZERO);
                a_index.insert(item.key.0, a_points.len() - 1);
                a_points.len() - 1
            }
        };
        let k = challenge(&r_bytes, &item.key.0, message);
        let mut z = [0u8; 32];
        rng.fill_bytes(&mut z[..16]);
        let z = Scalar::from_bytes_mod_order(z);
        b_coefficient -= z * s;
        a_coefficients[slot] += z * k;
        r_coefficients.push(z);
        r_points.push(r);
    }
    EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(&b_coefficient)
            .chain(&a_coefficients)
            .chain(&r_coefficients),
        std::iter::once(&ED25519_BASEPOINT_POINT)
            .chain(&a_points)
            .chain(&r_points),
    )
    .mul_by_cofactor()
    .is_identity()
}

/// The batch's coefficient seed: SHA-256 over everything in it.
fn batch_seed(items: &[Signed<'_>], messages: &[Vec<u8>]) -> [u8; 32] {
    let mut seed = ring::digest::Context::new(&ring::digest::SHA256);
    seed.update(SEED_DOMAIN);
    for (item, message) in items.iter().zip(messages) {
        seed.update(&item.key.0);
        seed.update(&item.signature.0);
        seed.update(&(message.len() as u64).to_le_bytes());
        seed.update(message);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(seed.finish().as_ref());
    digest
}

/// `k = SHA-512(R ‖ A ‖ M) mod ℓ` (RFC 8032 §5.1.7).
fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA512);
    hash.update(r);
    hash.update(key);
    hash.update(message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(hash.finish().as_ref());
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// A signature as both equations read it, by one rule: `R`'s encoding, the
/// point it decodes to (any encoding that decodes), and `s` when it is
/// canonical (below ℓ). `None` when either fails.
fn decode_signature(signature: &Signature) -> Option<([u8; 32], EdwardsPoint, Scalar)> {
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature.0[..32]);
    s_bytes.copy_from_slice(&signature.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    Some((r_bytes, r, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn keys(n: u8) -> Vec<Keypair> {
        (0..n).map(|i| Keypair::from_seed([i + 1; 32])).collect()
    }

    fn signed(keys: &[Keypair], messages: &[Vec<u8>]) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        keys.iter()
            .zip(messages)
            .map(|(k, m)| (k.public(), m.clone(), k.sign(Domain::Transaction, m)))
            .collect()
    }

    fn items(signed: &[(PublicKey, Vec<u8>, Signature)]) -> Vec<Signed<'_>> {
        signed
            .iter()
            .map(|(key, payload, signature)| Signed {
                key: *key,
                domain: Domain::Transaction,
                payload,
                signature: *signature,
            })
            .collect()
    }

    fn messages(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("transfer {i}").into_bytes())
            .collect()
    }

    #[test]
    fn ring_signatures_verify_alone_and_in_a_batch() {
        let keys = keys(16);
        let signed = signed(&keys, &messages(16));
        for (key, payload, signature) in &signed {
            assert_eq!(verify(key, Domain::Transaction, payload, signature), Ok(()));
        }
        assert_eq!(
            verify_all(&items(&signed), &mut KeyCache::new(16)),
            vec![true; 16]
        );
    }

    #[test]
    fn a_batch_names_exactly_the_bad_signatures() {
        let keys = keys(12);
        let mut signed = signed(&keys, &messages(12));
        // A flipped bit in s, a signature over another message, the wrong
        // key, and a domain mix-up.
        signed[2].2 .0[40] ^= 1;
        signed[5].1 = b"something else".to_vec();
        signed[7].0 = keys[8].public();
        let mut items = items(&signed);
        items[10].domain = Domain::DagTransaction;
        let verdicts = verify_all(&items, &mut KeyCache::new(16));
        let bad: Vec<usize> = (0..12).filter(|i| !verdicts[*i]).collect();
        assert_eq!(bad, vec![2, 5, 7, 10]);
        for (i, item) in items.iter().enumerate() {
            let alone = verify(&item.key, item.domain, item.payload, &item.signature).is_ok();
            assert_eq!(alone, verdicts[i], "item {i}");
        }
    }

    #[test]
    fn a_non_canonical_s_is_refused_both_ways() {
        // ZIP-215 keeps RFC 8032's rule that s < ℓ: adding ℓ to s gives an
        // equivalent scalar the rule must refuse (no malleability).
        const ELL: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let keys = keys(6);
        let mut signed = signed(&keys, &messages(6));
        let s = &mut signed[3].2 .0[32..];
        let mut carry = 0u16;
        for (byte, add) in s.iter_mut().zip(ELL) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let (key, payload, signature) = &signed[3];
        assert!(verify(key, Domain::Transaction, payload, signature).is_err());
        assert_eq!(
            verify_all(&items(&signed), &mut KeyCache::new(16)),
            vec![true, true, true, false, true, true]
        );
    }

    #[test]
    fn the_small_order_identity_key_follows_the_same_rule_both_ways() {
        // The identity point (y = 1) as key and as R, with s = 0: the
        // edge case the EdDSA papers list first. Whatever ZIP-215 says of
        // it, a batch must say the same.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let key = PublicKey(identity);
        let signature = Signature(sig);
        let alone = verify(&key, Domain::Transaction, b"anything", &signature).is_ok();
        let keys = keys(5);
        let honest = signed(&keys, &messages(5));
        let mut batch = items(&honest);
        batch.push(Signed {
            key,
            domain: Domain::Transaction,
            payload: b"anything",
            signature,
        });
        let verdicts = verify_all(&batch, &mut KeyCache::new(16));
        assert_eq!(verdicts[..5], [true; 5]);
        assert_eq!(verdicts[5], alone);
        assert_eq!(alone, zebra_single(&batch[5]));
    }

    #[test]
    fn the_verdicts_do_not_depend_on_the_batch_they_are_in() {
        let keys = keys(9);
        let mut signed = signed(&keys, &messages(9));
        signed[4].2 .0[0] ^= 0x80;
        let all = verify_all(&items(&signed), &mut KeyCache::new(16));
        for split in 1..9 {
            let mut parts = verify_all(&items(&signed[..split]), &mut KeyCache::new(16));
            parts.extend(verify_all(&items(&signed[split..]), &mut KeyCache::new(16)));
            assert_eq!(parts, all, "split at {split}");
        }
    }

    /// A signed item as the tests hold it: key, payload, signature.
    type Triple = (PublicKey, Vec<u8>, Signature);

    /// A way to spoil one signed item.
    type Damage = Box<dyn Fn(&mut Triple)>;

    use ed25519_zebra::{Signature as ZebraSignature, VerificationKey, VerificationKeyBytes};

    /// `ed25519-zebra`'s single check, the reference for [`single_holds`].
    fn zebra_single(item: &Signed<'_>) -> bool {
        let message = signing_message(item.domain, item.payload);
        VerificationKey::try_from(VerificationKeyBytes::from(item.key.0))
            .and_then(|vk| vk.verify(&ZebraSignature::from(item.signature.0), &message))
            .is_ok()
    }

    /// `ed25519-zebra`'s own batch verifier on the same items.
    fn zebra_batch(items: &[Signed<'_>]) -> bool {
        let mut verifier = ed25519_zebra::batch::Verifier::new();
        for item in items {
            let message = signing_message(item.domain, item.payload);
            verifier.queue((
                VerificationKeyBytes::from(item.key.0),
                ZebraSignature::from(item.signature.0),
                &message,
            ));
        }
        verifier.verify(ChaCha20Rng::from_seed([7; 32])).is_ok()
    }

    #[test]
    fn both_equations_say_what_ed25519_zebra_says() {
        // Ten signatures by four keys (so terms fold), then each kind of
        // damage in turn: the two batch checks must agree on every one.
        let keys = keys(4);
        let messages = messages(10);
        let mut signed: Vec<Triple> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let key = &keys[i % 4];
                (key.public(), m.clone(), key.sign(Domain::Transaction, m))
            })
            .collect();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let damages: Vec<Damage> = vec![
            Box::new(|_| {}),
            Box::new(|s| s.2 .0[33] ^= 4),
            Box::new(|s| s.2 .0[5] ^= 1),
            Box::new(|s| s.2 .0[63] |= 0xf0),
            Box::new(|s| s.1.push(0)),
            Box::new(|s| s.0 = Keypair::from_seed([99; 32]).public()),
            Box::new(move |s| s.0 = PublicKey(identity)),
            Box::new(|s| s.0 .0 = [0xff; 32]),
        ];
        for (n, damage) in damages.iter().enumerate() {
            let original = signed[6].clone();
            damage(&mut signed[6]);
            let items = items(&signed);
            let messages: Vec<Vec<u8>> = items
                .iter()
                .map(|item| signing_message(item.domain, item.payload))
                .collect();
            let ours = batch_holds(&items, &messages, &mut KeyCache::new(0));
            assert_eq!(ours, zebra_batch(&items), "damage {n}");
            assert_eq!(ours, n == 0, "damage {n}");
            for (item, message) in items.iter().zip(&messages) {
                let alone =
                    single_holds(&item.key, message, &item.signature, &mut KeyCache::new(0));
                assert_eq!(alone, zebra_single(item), "damage {n}");
            }
            signed[6] = original;
        }
    }

    #[test]
    fn a_warm_cache_changes_no_verdict_and_stays_within_its_bound() {
        let keys = keys(9);
        let mut signed = signed(&keys, &messages(9));
        signed[3].2 .0[10] ^= 2;
        let cold = verify_all(&items(&signed), &mut KeyCache::new(0));
        let mut cache = KeyCache::new(5);
        for round in 0..3 {
            assert_eq!(
                verify_all(&items(&signed), &mut cache),
                cold,
                "round {round}"
            );
            assert!(cache.points.len() <= 5);
            assert!(!cache.points.is_empty());
        }
        assert_eq!(cold.iter().filter(|ok| !**ok).count(), 1);
    }

    #[test]
    fn a_key_with_a_small_order_part_passes_the_cofactored_rule_both_ways() {
        // A = a·B + T with T of order 8, R = r·B, s = r + k·a: then
        // s·B − k·A − R = −k·T, which is the identity only after the
        // multiplication by 8. ZIP-215 accepts it (RFC 8032's cofactorless
        // check, `ring`'s, would refuse it unless 8 divides k); both of
        // this module's equations must say what `ed25519-zebra` says.
        use curve25519_dalek::constants::EIGHT_TORSION;
        let a = Scalar::from_bytes_mod_order([3; 32]);
        let r = Scalar::from_bytes_mod_order([5; 32]);
        let key = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1])
            .compress()
            .0;
        let r_bytes = (ED25519_BASEPOINT_POINT * r).compress().0;
        let payload = b"mixed-order key";
        let message = signing_message(Domain::Transaction, payload);
        let k = challenge(&r_bytes, &key, &message);
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r_bytes);
        signature[32..].copy_from_slice((r + k * a).as_bytes());
        let odd = Signed {
            key: PublicKey(key),
            domain: Domain::Transaction,
            payload,
            signature: Signature(signature),
        };
        assert!(zebra_single(&odd));
        assert!(single_holds(
            &odd.key,
            &message,
            &odd.signature,
            &mut KeyCache::new(0)
        ));
        let keys = keys(4);
        let honest = signed(&keys, &messages(4));
        let mut batch = items(&honest);
        batch.push(odd);
        assert_eq!(verify_all(&batch, &mut KeyCache::new(8)), vec![true; 5]);
        assert!(zebra_batch(&batch));
    }
}
