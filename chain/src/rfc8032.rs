//! Ed25519 verification by RFC 8032's cofactorless equation, exactly as
//! `ring` decides it, computed by `ed25519-dalek`.
//!
//! Why not `ring` itself. Consensus messages (pre-prepares, prepares,
//! commit votes, checkpoints, view changes) and commit certificates are
//! checked one signature at a time, several per block on every replica. At
//! 1,000 tx/s offered to four replicas that was 15 % of all CPU: `ring`
//! does the double scalar multiplication with portable 64-bit field
//! arithmetic. `ed25519-dalek` (on `curve25519-dalek`, already here for
//! [`crate::zip215`]) uses AVX2 where the CPU has it, and checks a
//! signature in about three quarters of the time (`cargo bench -p
//! itc-chain --bench ledger -- ed25519_verify`; figures in
//! `BENCHMARKS.md`).
//!
//! Why its verdicts are `ring`'s. A commit certificate a replica forms
//! must verify for every light client and for the microcontroller
//! verifier, which check RFC 8032 without the cofactor; a cofactored rule
//! could accept a crafted signature they refuse (Chalkias et al., "Taming
//! the many EdDSAs", 2020). `ed25519-dalek`'s `verify` (not
//! `verify_strict`, which refuses more, and without its
//! `legacy_compatibility` feature, which accepts non-canonical `s`) takes
//! `ring`'s steps (ring 0.17, `ed25519/verification.rs`): `s` must be below
//! ℓ; `A` must decode, any encoding that does, the top bit choosing the
//! sign of `x`; `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the bytes as given; and
//! the encoding of `s·B − k·A` must equal `R`'s bytes, so `R` is never
//! decoded. The tests below hold the two to the same verdicts on valid,
//! tampered and malformed signatures, small-order and non-canonical keys,
//! and random bytes.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

/// Whether `signature` is `key`'s signature of `message` under RFC 8032
/// (cofactorless), as `ring` decides it.
pub fn verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key).is_ok_and(|key| {
        key.verify(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

    fn by_ring(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, key)
            .verify(message, signature)
            .is_ok()
    }

    /// Both rules on one case; returns the common verdict.
    fn agree(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let ours = verify(key, message, signature);
        assert_eq!(
            ours,
            by_ring(key, message, signature),
            "verdicts differ: key {key:02x?} signature {signature:02x?}"
        );
        ours
    }

    fn pair(seed: u8) -> ([u8; 32], Ed25519KeyPair) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed");
        let mut key = [0u8; 32];
        key.copy_from_slice(pair.public_key().as_ref());
        (key, pair)
    }

    fn sign(pair: &Ed25519KeyPair, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(pair.sign(message).as_ref());
        signature
    }

    /// The non-canonical encodings: `y + p` for each `y < 19` (the only
    /// values for which that stays below 2^255), with either sign bit.
    fn non_canonical_encodings() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for y in 0..19u8 {
            let mut encoding = [0xffu8; 32];
            encoding[0] = 0xed + y;
            encoding[31] = 0x7f;
            out.push(encoding);
            encoding[31] |= 0x80;
            out.push(encoding);
        }
        out
    }

    #[test]
    fn rfc8032_test_1_verifies() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let key: [u8; 32] = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let signature: [u8; 64] = hex(concat!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ));
        assert!(agree(&key, b"", &signature));
        assert!(!agree(&key, b"x", &signature));
    }

    fn hex<const N: usize>(text: &str) -> [u8; N] {
        hex::decode(text).expect("hex").try_into().expect("length")
    }

    #[test]
    fn valid_and_tampered_signatures_get_the_same_verdicts() {
        for seed in 0..16u8 {
            let (key, pair) = pair(seed);
            let message = [seed; 40];
            let signature = sign(&pair, &message);
            assert!(agree(&key, &message, &signature));
            for bit in [0, 7, 200, 255, 256, 300, 511] {
                let mut bad = signature;
                bad[bit / 8] ^= 1 << (bit % 8);
                agree(&key, &message, &bad);
            }
            let mut other = message;
            other[0] ^= 1;
            assert!(!agree(&key, &other, &signature));
        }
    }

    #[test]
    fn s_at_or_above_the_group_order_is_refused_by_both() {
        let (key, pair) = pair(3);
        let signature = sign(&pair, b"m");
        let (r, s) = signature.split_at(32);
        // s + ℓ satisfies the same equation, and both refuse it.
        let order: [u8; 32] =
            hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut wide = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = s[i] as u16 + order[i] as u16 + carry;
            wide[i] = sum as u8;
            carry = sum >> 8;
        }
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(r);
        forged[32..].copy_from_slice(&wide);
        assert!(!agree(&key, b"m", &forged));
    }

    #[test]
    fn small_order_and_non_canonical_keys_get_the_same_verdicts() {
        // The eight small-order points, with either sign bit, and every
        // non-canonical encoding, as keys and as R; with s = 0, s·B − k·A
        // is itself a small-order point, so some of these verify under the
        // cofactorless equation and most do not: the cases where libraries
        // part ways.
        let mut keys: Vec<[u8; 32]> = Vec::new();
        for point in EIGHT_TORSION {
            let key = point.compress().0;
            let mut flipped = key;
            flipped[31] ^= 0x80;
            keys.extend([key, flipped]);
        }
        keys.extend(non_canonical_encodings());
        let mut valid = 0;
        for key in &keys {
            for message in [&b""[..], b"a", b"itc"] {
                for r in keys.iter().chain([&[0u8; 32], &[1u8; 32]]) {
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(r);
                    valid += usize::from(agree(key, message, &signature));
                    signature[32] = 1;
                    agree(key, message, &signature);
                }
            }
        }
        assert!(valid > 0, "no case verified, so the cases test little");
    }

    proptest! {
        #[test]
        fn random_bytes_get_the_same_verdicts(
            key in prop::array::uniform32(any::<u8>()),
            r in prop::array::uniform32(any::<u8>()),
            s in prop::array::uniform32(any::<u8>()),
            message in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&r);
            signature[32..].copy_from_slice(&s);
            agree(&key, &message, &signature);
        }

        #[test]
        fn signatures_with_one_byte_changed_get_the_same_verdicts(
            seed in any::<u8>(),
            message in prop::collection::vec(any::<u8>(), 0..64),
            at in 0usize..96,
            to in any::<u8>(),
        ) {
            let (mut key, pair) = pair(seed);
            let mut signature = sign(&pair, &message);
            if at < 64 {
                signature[at] = to;
            } else {
                key[at - 64] = to;
            }
            agree(&key, &message, &signature);
        }
    }
}
