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
//! certificates stay on RFC 8032 through `ring` and `itc-verify`, which is
//! also what light clients and the microcontroller verifier check; they are
//! few per block and never checked in bulk.
//!
//! The batch's random coefficients come from a ChaCha20 stream seeded with
//! SHA-256 over every (key, signature, message) in the batch: a signer
//! cannot predict them without fixing the whole batch first (the
//! Fiat–Shamir argument), and the core draws no randomness of its own.

use ed25519_zebra::batch;
use ed25519_zebra::{Signature as ZebraSignature, VerificationKey, VerificationKeyBytes};
use rand_chacha::rand_core::SeedableRng;
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
    VerificationKey::try_from(VerificationKeyBytes::from(key.0))
        .and_then(|vk| vk.verify(&ZebraSignature::from(signature.0), &message))
        .map_err(|_| CryptoError::BadSignature { key: *key })
}

/// One signature to check in a batch.
pub struct Signed<'a> {
    pub key: PublicKey,
    pub domain: Domain,
    pub payload: &'a [u8],
    pub signature: Signature,
}

/// Checks every signature in `items`; the verdicts are in their order, and
/// each is exactly what [`verify`] says of that item. One batch check
/// first; if it fails, each item is checked alone to find the bad ones.
pub fn verify_all(items: &[Signed<'_>]) -> Vec<bool> {
    let mut seed = ring::digest::Context::new(&ring::digest::SHA256);
    seed.update(SEED_DOMAIN);
    let prepared: Vec<batch::Item> = items
        .iter()
        .map(|item| {
            let message = signing_message(item.domain, item.payload);
            seed.update(&item.key.0);
            seed.update(&item.signature.0);
            seed.update(&(message.len() as u64).to_le_bytes());
            seed.update(&message);
            batch::Item::from((
                VerificationKeyBytes::from(item.key.0),
                ZebraSignature::from(item.signature.0),
                &message,
            ))
        })
        .collect();
    if prepared.len() >= BATCH_FROM {
        let mut verifier = batch::Verifier::new();
        for item in &prepared {
            verifier.queue(item.clone());
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(seed.finish().as_ref());
        if verifier.verify(ChaCha20Rng::from_seed(digest)).is_ok() {
            return vec![true; prepared.len()];
        }
    }
    prepared
        .into_iter()
        .map(|item| item.verify_single().is_ok())
        .collect()
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
        assert_eq!(verify_all(&items(&signed)), vec![true; 16]);
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
        let verdicts = verify_all(&items);
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
            verify_all(&items(&signed)),
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
        let verdicts = verify_all(&batch);
        assert_eq!(verdicts[..5], [true; 5]);
        assert_eq!(verdicts[5], alone);
    }

    #[test]
    fn the_verdicts_do_not_depend_on_the_batch_they_are_in() {
        let keys = keys(9);
        let mut signed = signed(&keys, &messages(9));
        signed[4].2 .0[0] ^= 0x80;
        let all = verify_all(&items(&signed));
        for split in 1..9 {
            let mut parts = verify_all(&items(&signed[..split]));
            parts.extend(verify_all(&items(&signed[split..])));
            assert_eq!(parts, all, "split at {split}");
        }
    }
}
