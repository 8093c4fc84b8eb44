//! Where hashes and signature checks come from.
//!
//! The verifier needs only SHA-256 and Ed25519 verification. The gateway
//! already links `ring`, so `itc-chain` implements [`Backend`] with it; a
//! microcontroller uses [`Software`].

/// SHA-256 and Ed25519 verification.
pub trait Backend {
    /// SHA-256 of the concatenation of `parts`.
    fn sha256(parts: &[&[u8]]) -> [u8; 32];

    /// Whether `signature` is `public_key`'s Ed25519 signature over
    /// `message`.
    fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool;
}

/// Pure-Rust SHA-256 (`sha2`) and Ed25519 (`ed25519-dalek`, strict
/// verification: small-order keys and non-canonical encodings are refused).
#[cfg(feature = "software")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Software;

#[cfg(feature = "software")]
impl Backend for Software {
    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }
}

#[cfg(all(test, feature = "software"))]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sha256_matches_the_fips_vector() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        let digest = Software::sha256(&[b"a", b"bc"]);
        assert_eq!(
            crate::Hex32(digest).to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ed25519_checks_the_rfc8032_vector() {
        // RFC 8032 §7.1, TEST 2 (one-byte message 0x72).
        let key: [u8; 32] =
            hex32("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&hex32(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
        ));
        sig[32..].copy_from_slice(&hex32(
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ));
        assert!(Software::verify_ed25519(&key, &[0x72], &sig));
        assert!(!Software::verify_ed25519(&key, &[0x73], &sig));
        sig[0] ^= 1;
        assert!(!Software::verify_ed25519(&key, &[0x72], &sig));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
