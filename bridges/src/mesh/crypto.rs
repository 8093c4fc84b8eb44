//! The mesh security toolbox (Mesh Profile 1.0.1 §3.8.2): AES-CMAC, the
//! salt function s1 and the key derivation functions k1–k4, AES-CCM with
//! a 32- or 64-bit MIC, and the AES-ECB block that header obfuscation
//! uses. AES, CMAC and CCM are RustCrypto's; only the mesh's compositions
//! of them are written here.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{Aead, Payload};
use ccm::consts::{U13, U4, U8};
use cmac::{Cmac, Mac};

/// A 128-bit key.
pub type Key = [u8; 16];
/// A CCM nonce (13 octets, §3.8.5).
pub type Nonce = [u8; 13];

/// AES-CMAC (RFC 4493) of the concatenation of `parts` under `key`.
pub fn aes_cmac(key: &Key, parts: &[&[u8]]) -> Key {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(GenericArray::from_slice(key));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// e(key, block): one AES-128 block (§3.8.2.1).
pub fn aes_ecb(key: &Key, block: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let mut block = GenericArray::clone_from_slice(block);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// s1, the salt generation function (§3.8.2.4).
pub fn s1(m: &[u8]) -> Key {
    aes_cmac(&[0; 16], &[m])
}

/// k1, the derivation function (§3.8.2.5).
pub fn k1(n: &[u8], salt: &Key, p: &[u8]) -> Key {
    let t = aes_cmac(salt, &[n]);
    aes_cmac(&t, &[p])
}

/// What k2 derives from a network key (§3.8.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct K2 {
    pub nid: u8,
    pub encryption: Key,
    pub privacy: Key,
}

/// k2, the network key material derivation function (§3.8.2.6); `p` is
/// 0x00 for the master credentials.
pub fn k2(n: &Key, p: &[u8]) -> K2 {
    let t = aes_cmac(&s1(b"smk2"), &[n]);
    let t1 = aes_cmac(&t, &[p, &[0x01]]);
    let t2 = aes_cmac(&t, &[&t1, p, &[0x02]]);
    let t3 = aes_cmac(&t, &[&t2, p, &[0x03]]);
    K2 {
        nid: t1[15] & 0x7f,
        encryption: t2,
        privacy: t3,
    }
}

/// k3, the derivation function of the 64-bit network ID (§3.8.2.7).
pub fn k3(n: &Key) -> [u8; 8] {
    let t = aes_cmac(&s1(b"smk3"), &[n]);
    let full = aes_cmac(&t, &[b"id64", &[0x01]]);
    let mut out = [0; 8];
    out.copy_from_slice(&full[8..]);
    out
}

/// k4, the derivation function of the 6-bit application key ID
/// (§3.8.2.8).
pub fn k4(n: &Key) -> u8 {
    let t = aes_cmac(&s1(b"smk4"), &[n]);
    aes_cmac(&t, &[b"id6", &[0x01]])[15] & 0x3f
}

/// The MIC sizes the mesh uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicSize {
    Bits32,
    Bits64,
}

impl MicSize {
    pub fn octets(self) -> usize {
        match self {
            MicSize::Bits32 => 4,
            MicSize::Bits64 => 8,
        }
    }
}

/// AES-CCM (RFC 3610) as the mesh uses it (§3.8.2.3): the ciphertext
/// followed by the MIC.
pub fn ccm_encrypt(key: &Key, nonce: &Nonce, plain: &[u8], aad: &[u8], mic: MicSize) -> Vec<u8> {
    let payload = Payload { msg: plain, aad };
    let nonce = GenericArray::from_slice(nonce);
    let key = GenericArray::from_slice(key);
    // Encryption fails only for messages longer than CCM's length field
    // allows (2^16 octets here); mesh PDUs are far shorter.
    let sealed = match mic {
        MicSize::Bits32 => ccm::Ccm::<Aes128, U4, U13>::new(key).encrypt(nonce, payload),
        MicSize::Bits64 => ccm::Ccm::<Aes128, U8, U13>::new(key).encrypt(nonce, payload),
    };
    sealed.unwrap_or_default()
}

/// The inverse of [`ccm_encrypt`]: `None` if the MIC does not verify.
pub fn ccm_decrypt(
    key: &Key,
    nonce: &Nonce,
    sealed: &[u8],
    aad: &[u8],
    mic: MicSize,
) -> Option<Vec<u8>> {
    if sealed.len() < mic.octets() {
        return None;
    }
    let payload = Payload { msg: sealed, aad };
    let nonce = GenericArray::from_slice(nonce);
    let key = GenericArray::from_slice(key);
    match mic {
        MicSize::Bits32 => ccm::Ccm::<Aes128, U4, U13>::new(key).decrypt(nonce, payload),
        MicSize::Bits64 => ccm::Ccm::<Aes128, U8, U13>::new(key).decrypt(nonce, payload),
    }
    .ok()
}

#[cfg(test)]
mod tests {
    //! Mesh Profile 1.0.1 §8.1, sample data for the security functions.
    use super::*;

    fn key(hex_text: &str) -> Key {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    #[test]
    fn s1_sample_8_1_1() {
        assert_eq!(hex::encode(s1(b"test")), "b73cefbd641ef2ea598c2b6efb62f79c");
    }

    #[test]
    fn k1_sample_8_1_2() {
        let n = hex::decode("3216d1509884b533248541792b877f98").unwrap();
        let salt = key("2ba14ffa0df84a2831938d57d276cab4");
        let p = hex::decode("5a09d60797eeb4478aada59db3352a0d").unwrap();
        assert_eq!(
            hex::encode(k1(&n, &salt, &p)),
            "f6ed15a8934afbe7d83e8dcb57fcf5d7"
        );
    }

    #[test]
    fn k2_samples_8_1_3() {
        let n = key("f7a2a44f8e8a8029064f173ddc1e2b00");
        let master = k2(&n, &[0x00]);
        assert_eq!(master.nid, 0x7f);
        assert_eq!(
            hex::encode(master.encryption),
            "9f589181a0f50de73c8070c7a6d27f46"
        );
        assert_eq!(
            hex::encode(master.privacy),
            "4c715bd4a64b938f99b453351653124f"
        );
        let friendship = k2(&n, &hex::decode("010203040506070809").unwrap());
        assert_eq!(friendship.nid, 0x73);
        assert_eq!(
            hex::encode(friendship.encryption),
            "11efec0642774992510fb5929646df49"
        );
        assert_eq!(
            hex::encode(friendship.privacy),
            "d4d7cc0dfa772d836a8df9df5510d7a7"
        );
    }

    #[test]
    fn k3_sample_8_1_5() {
        assert_eq!(
            hex::encode(k3(&key("f7a2a44f8e8a8029064f173ddc1e2b00"))),
            "ff046958233db014"
        );
    }

    #[test]
    fn k4_sample_8_1_6() {
        assert_eq!(k4(&key("3216d1509884b533248541792b877f98")), 0x38);
    }

    #[test]
    fn the_message_samples_keys_8_2() {
        // §8.2.2: the network key of the message samples; §8.2.1 its
        // application key.
        let net = k2(&key("7dd7364cd842ad18c17c2b820c84c3d6"), &[0]);
        assert_eq!(net.nid, 0x68);
        assert_eq!(
            hex::encode(net.encryption),
            "0953fa93e7caac9638f58820220a398e"
        );
        assert_eq!(hex::encode(net.privacy), "8b84eedec100067d670971dd2aa700cf");
        assert_eq!(k4(&key("63964771734fbd76e3b40519d1d94a48")), 0x26);
    }

    #[test]
    fn ccm_round_trips_and_refuses_a_flipped_bit() {
        let k = key("0953fa93e7caac9638f58820220a398e");
        let nonce = [7u8; 13];
        for mic in [MicSize::Bits32, MicSize::Bits64] {
            let sealed = ccm_encrypt(&k, &nonce, b"lights on", b"", mic);
            assert_eq!(sealed.len(), 9 + mic.octets());
            assert_eq!(
                ccm_decrypt(&k, &nonce, &sealed, b"", mic).unwrap(),
                b"lights on"
            );
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert_eq!(ccm_decrypt(&k, &nonce, &bad, b"", mic), None);
        }
        assert_eq!(ccm_decrypt(&k, &nonce, &[1, 2], b"", MicSize::Bits32), None);
    }
}
