//! Provisioning over PB-GATT (Mesh Profile 1.0.1 §5), both roles, pure.
//!
//! The provisioner invites, reads the device's capabilities, starts with no
//! OOB authentication (the AuthValue is zero: these bulbs have no display
//! or button), and both sides exchange P-256 public keys (ECDH through
//! `ring`; the private key is ephemeral and passed in, so the randomness
//! comes from the caller), commit to a random with a confirmation, reveal
//! it, and derive the session key, the session nonce and the device key
//! from the ECDH secret (§5.4.2.5). The provisioner then sends the network
//! key, its index, the IV index and the unicast address, AES-CCM-sealed
//! with a 64-bit MIC. A confirmation that does not match, or a PDU out of
//! order, ends the run with a typed reason (§5.4.4).

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};

use super::crypto::{aes_cmac, ccm_decrypt, ccm_encrypt, k1, s1, Key, MicSize, Nonce};

/// The provisioning PDU types (§5.4.1).
pub mod pdu_type {
    pub const INVITE: u8 = 0x00;
    pub const CAPABILITIES: u8 = 0x01;
    pub const START: u8 = 0x02;
    pub const PUBLIC_KEY: u8 = 0x03;
    pub const CONFIRMATION: u8 = 0x05;
    pub const RANDOM: u8 = 0x06;
    pub const DATA: u8 = 0x07;
    pub const COMPLETE: u8 = 0x08;
    pub const FAILED: u8 = 0x09;
}

/// What the network gives a new node (§5.4.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvisioningData {
    pub net_key: Key,
    pub key_index: u16,
    /// Key refresh (bit 0) and IV update (bit 1) flags.
    pub flags: u8,
    pub iv_index: u32,
    pub address: u16,
}

impl ProvisioningData {
    pub fn encode(&self) -> [u8; 25] {
        let mut out = [0u8; 25];
        out[..16].copy_from_slice(&self.net_key);
        out[16..18].copy_from_slice(&self.key_index.to_be_bytes());
        out[18] = self.flags;
        out[19..23].copy_from_slice(&self.iv_index.to_be_bytes());
        out[23..25].copy_from_slice(&self.address.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<ProvisioningData> {
        let bytes: &[u8; 25] = bytes.try_into().ok()?;
        Some(ProvisioningData {
            net_key: bytes[..16].try_into().ok()?,
            key_index: u16::from_be_bytes([bytes[16], bytes[17]]),
            flags: bytes[18],
            iv_index: u32::from_be_bytes([bytes[19], bytes[20], bytes[21], bytes[22]]),
            address: u16::from_be_bytes([bytes[23], bytes[24]]),
        })
    }
}

/// The keys one provisioning run derives (§5.4.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    pub confirmation_salt: Key,
    pub confirmation_key: Key,
    pub provisioning_salt: Key,
    pub session_key: Key,
    pub session_nonce: Nonce,
    pub device_key: Key,
}

/// ConfirmationInputs: the invite, capabilities and start parameters and
/// both public keys (§5.4.2.4).
pub fn confirmation_inputs(
    invite: &[u8],
    capabilities: &[u8],
    start: &[u8],
    provisioner_key: &[u8],
    device_key: &[u8],
) -> Vec<u8> {
    [invite, capabilities, start, provisioner_key, device_key].concat()
}

/// ConfirmationSalt and ConfirmationKey.
pub fn confirmation_key(inputs: &[u8], ecdh: &[u8; 32]) -> (Key, Key) {
    let salt = s1(inputs);
    (salt, k1(ecdh, &salt, b"prck"))
}

/// Confirmation = AES-CMAC_ConfirmationKey(Random || AuthValue).
pub fn confirmation(key: &Key, random: &Key, auth: &Key) -> Key {
    aes_cmac(key, &[random, auth])
}

/// Everything after both randoms are known.
pub fn session_keys(
    confirmation_salt: &Key,
    confirmation_key: &Key,
    ecdh: &[u8; 32],
    random_provisioner: &Key,
    random_device: &Key,
) -> SessionKeys {
    let provisioning_salt =
        s1(&[&confirmation_salt[..], random_provisioner, random_device].concat());
    let nonce_full = k1(ecdh, &provisioning_salt, b"prsn");
    let mut session_nonce = [0u8; 13];
    session_nonce.copy_from_slice(&nonce_full[3..]);
    SessionKeys {
        confirmation_salt: *confirmation_salt,
        confirmation_key: *confirmation_key,
        provisioning_salt,
        session_key: k1(ecdh, &provisioning_salt, b"prsk"),
        session_nonce,
        device_key: k1(ecdh, &provisioning_salt, b"prdk"),
    }
}

/// Why a provisioning run failed (§5.4.1.10's error codes where they
/// apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvisioningError {
    #[error("PDU type {found:#04x} arrived while {expected:#04x} was expected")]
    Unexpected { expected: u8, found: u8 },
    #[error("a provisioning PDU of type {kind:#04x} has the wrong length {len}")]
    BadLength { kind: u8, len: usize },
    #[error("the peer's public key is not a point on P-256")]
    BadPublicKey,
    #[error("the peer's confirmation does not match its random")]
    ConfirmationFailed,
    #[error("the provisioning data does not decrypt")]
    DecryptionFailed,
    #[error("the device has no elements or does not support FIPS P-256 with no OOB")]
    Unsupported,
    #[error("the peer failed the run with error code {code:#04x}")]
    PeerFailed { code: u8 },
}

fn expect(pdu: &[u8], kind: u8, len: usize) -> Result<&[u8], ProvisioningError> {
    match pdu.split_first() {
        Some((&k, rest)) if k == kind && rest.len() == len => Ok(rest),
        Some((&k, rest)) if k == kind => Err(ProvisioningError::BadLength {
            kind,
            len: rest.len(),
        }),
        Some((&pdu_type::FAILED, [code])) => Err(ProvisioningError::PeerFailed { code: *code }),
        Some((&k, _)) => Err(ProvisioningError::Unexpected {
            expected: kind,
            found: k,
        }),
        None => Err(ProvisioningError::BadLength { kind, len: 0 }),
    }
}

/// A 16-octet PDU body (a confirmation or a random).
fn key16(pdu: &[u8], kind: u8) -> Result<Key, ProvisioningError> {
    expect(pdu, kind, 16)?
        .try_into()
        .map_err(|_| ProvisioningError::BadLength {
            kind,
            len: pdu.len(),
        })
}

/// A PDU of `kind` with `body`.
fn pdu_of(kind: u8, body: &[u8]) -> Vec<u8> {
    [&[kind][..], body].concat()
}

fn ecdh(private: EphemeralPrivateKey, peer_xy: &[u8]) -> Result<[u8; 32], ProvisioningError> {
    let mut uncompressed = vec![0x04];
    uncompressed.extend_from_slice(peer_xy);
    agreement::agree_ephemeral(
        private,
        &UnparsedPublicKey::new(&ECDH_P256, uncompressed),
        |secret| {
            let mut out = [0u8; 32];
            out.copy_from_slice(secret);
            out
        },
    )
    .map_err(|_| ProvisioningError::BadPublicKey)
}

/// X || Y of a ring P-256 public key (the mesh drops the 0x04 prefix).
fn xy(private: &EphemeralPrivateKey) -> Result<Vec<u8>, ProvisioningError> {
    let public = private
        .compute_public_key()
        .map_err(|_| ProvisioningError::BadPublicKey)?;
    Ok(public.as_ref()[1..].to_vec())
}

const ZERO_AUTH: Key = [0; 16];

/// Capabilities a device must offer for this provisioner: at least one
/// element, the FIPS P-256 algorithm, and no-OOB start (§5.4.1.2).
fn check_capabilities(capabilities: &[u8]) -> Result<(), ProvisioningError> {
    let elements = capabilities[0];
    let algorithms = u16::from_be_bytes([capabilities[1], capabilities[2]]);
    if elements == 0 || algorithms & 0x0001 == 0 {
        return Err(ProvisioningError::Unsupported);
    }
    Ok(())
}

/// Start: FIPS P-256, no OOB public key, no OOB authentication (§5.4.1.3).
const START: [u8; 5] = [0x00, 0x00, 0x00, 0x00, 0x00];

enum ProvisionerState {
    Invited {
        invite: u8,
        private: EphemeralPrivateKey,
    },
    KeySent {
        inputs: Vec<u8>,
        private: EphemeralPrivateKey,
    },
    Confirming {
        salt: Key,
        key: Key,
        ecdh: [u8; 32],
    },
    Revealed {
        salt: Key,
        key: Key,
        ecdh: [u8; 32],
        theirs: Key,
    },
    DataSent {
        device_key: Key,
    },
    Done,
}

/// What a provisioner step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// PDUs to send, in order.
    Send(Vec<Vec<u8>>),
    /// Provisioned: the device key to configure it with.
    Complete { device_key: Key },
}

/// The provisioner's side (§5.4.2). Each PDU the device sends goes to
/// [`Provisioner::handle`], which answers with what to send next.
pub struct Provisioner {
    state: ProvisionerState,
    data: ProvisioningData,
    random: Key,
}

impl Provisioner {
    /// Starts a run; returns the Invite PDU to send. `private` and
    /// `random` are the caller's fresh randomness.
    pub fn new(
        data: ProvisioningData,
        attention_s: u8,
        private: EphemeralPrivateKey,
        random: Key,
    ) -> (Provisioner, Vec<u8>) {
        let provisioner = Provisioner {
            state: ProvisionerState::Invited {
                invite: attention_s,
                private,
            },
            data,
            random,
        };
        (provisioner, vec![pdu_type::INVITE, attention_s])
    }

    pub fn handle(&mut self, pdu: &[u8]) -> Result<Step, ProvisioningError> {
        let state = std::mem::replace(&mut self.state, ProvisionerState::Done);
        let (next, step) = self.advance(state, pdu)?;
        self.state = next;
        Ok(step)
    }

    fn advance(
        &self,
        state: ProvisionerState,
        pdu: &[u8],
    ) -> Result<(ProvisionerState, Step), ProvisioningError> {
        match state {
            ProvisionerState::Invited { invite, private } => {
                let capabilities = expect(pdu, pdu_type::CAPABILITIES, 11)?;
                check_capabilities(capabilities)?;
                let public = xy(&private)?;
                let mut inputs = confirmation_inputs(&[invite], capabilities, &START, &public, &[]);
                inputs.truncate(1 + 11 + 5 + 64);
                let send = vec![
                    pdu_of(pdu_type::START, &START),
                    pdu_of(pdu_type::PUBLIC_KEY, &public),
                ];
                Ok((
                    ProvisionerState::KeySent { inputs, private },
                    Step::Send(send),
                ))
            }
            ProvisionerState::KeySent {
                mut inputs,
                private,
            } => {
                let device_public = expect(pdu, pdu_type::PUBLIC_KEY, 64)?;
                inputs.extend_from_slice(device_public);
                let ecdh = ecdh(private, device_public)?;
                let (salt, key) = confirmation_key(&inputs, &ecdh);
                let mine = confirmation(&key, &self.random, &ZERO_AUTH);
                let send = vec![pdu_of(pdu_type::CONFIRMATION, &mine)];
                Ok((
                    ProvisionerState::Confirming { salt, key, ecdh },
                    Step::Send(send),
                ))
            }
            ProvisionerState::Confirming { salt, key, ecdh } => {
                let theirs: Key = key16(pdu, pdu_type::CONFIRMATION)?;
                let send = vec![pdu_of(pdu_type::RANDOM, &self.random)];
                Ok((
                    ProvisionerState::Revealed {
                        salt,
                        key,
                        ecdh,
                        theirs,
                    },
                    Step::Send(send),
                ))
            }
            ProvisionerState::Revealed {
                salt,
                key,
                ecdh,
                theirs,
            } => {
                let random: Key = key16(pdu, pdu_type::RANDOM)?;
                if confirmation(&key, &random, &ZERO_AUTH) != theirs {
                    return Err(ProvisioningError::ConfirmationFailed);
                }
                let keys = session_keys(&salt, &key, &ecdh, &self.random, &random);
                let sealed = ccm_encrypt(
                    &keys.session_key,
                    &keys.session_nonce,
                    &self.data.encode(),
                    &[],
                    MicSize::Bits64,
                );
                let send = vec![pdu_of(pdu_type::DATA, &sealed)];
                Ok((
                    ProvisionerState::DataSent {
                        device_key: keys.device_key,
                    },
                    Step::Send(send),
                ))
            }
            ProvisionerState::DataSent { device_key } => {
                expect(pdu, pdu_type::COMPLETE, 0)?;
                Ok((ProvisionerState::Done, Step::Complete { device_key }))
            }
            ProvisionerState::Done => Err(ProvisioningError::Unexpected {
                expected: pdu_type::COMPLETE,
                found: pdu.first().copied().unwrap_or(0xff),
            }),
        }
    }
}

enum DeviceState {
    Idle {
        private: EphemeralPrivateKey,
    },
    Capable {
        inputs: Vec<u8>,
        private: EphemeralPrivateKey,
    },
    Started {
        inputs: Vec<u8>,
        private: EphemeralPrivateKey,
    },
    KeyExchanged {
        salt: Key,
        key: Key,
        ecdh: [u8; 32],
    },
    Confirmed {
        salt: Key,
        key: Key,
        ecdh: [u8; 32],
        theirs: Key,
    },
    Randomized {
        keys: SessionKeys,
    },
    Done,
}

/// The device's side (a simulated bulb; §5.4.2 from the other end).
pub struct Provisionee {
    state: DeviceState,
    random: Key,
    elements: u8,
}

/// What a device step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceStep {
    Send(Vec<Vec<u8>>),
    /// Provisioned: send Complete, then join the network.
    Provisioned {
        data: ProvisioningData,
        device_key: Key,
        complete: Vec<u8>,
    },
}

impl Provisionee {
    pub fn new(elements: u8, private: EphemeralPrivateKey, random: Key) -> Provisionee {
        Provisionee {
            state: DeviceState::Idle { private },
            random,
            elements,
        }
    }

    /// The Provisioning Failed PDU for `error` (§5.4.1.10).
    pub fn failed(error: &ProvisioningError) -> Vec<u8> {
        let code = match error {
            ProvisioningError::Unexpected { .. } => 0x03,
            ProvisioningError::BadLength { .. } => 0x02,
            ProvisioningError::ConfirmationFailed => 0x04,
            ProvisioningError::DecryptionFailed => 0x06,
            _ => 0x07,
        };
        vec![pdu_type::FAILED, code]
    }

    pub fn handle(&mut self, pdu: &[u8]) -> Result<DeviceStep, ProvisioningError> {
        let state = std::mem::replace(&mut self.state, DeviceState::Done);
        let (next, step) = self.advance(state, pdu)?;
        self.state = next;
        Ok(step)
    }

    fn advance(
        &self,
        state: DeviceState,
        pdu: &[u8],
    ) -> Result<(DeviceState, DeviceStep), ProvisioningError> {
        match state {
            DeviceState::Idle { private } => {
                let invite = expect(pdu, pdu_type::INVITE, 1)?;
                // One element, FIPS P-256, no OOB public key, no OOB.
                let capabilities = [
                    self.elements,
                    0x00,
                    0x01,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                    0x00,
                ];
                let inputs = [invite, &capabilities[..]].concat();
                let send = vec![pdu_of(pdu_type::CAPABILITIES, &capabilities)];
                Ok((
                    DeviceState::Capable { inputs, private },
                    DeviceStep::Send(send),
                ))
            }
            DeviceState::Capable {
                mut inputs,
                private,
            } => {
                let start = expect(pdu, pdu_type::START, 5)?;
                if start != START {
                    return Err(ProvisioningError::Unsupported);
                }
                inputs.extend_from_slice(start);
                Ok((
                    DeviceState::Started { inputs, private },
                    DeviceStep::Send(vec![]),
                ))
            }
            DeviceState::Started {
                mut inputs,
                private,
            } => {
                let theirs = expect(pdu, pdu_type::PUBLIC_KEY, 64)?;
                let mine = xy(&private)?;
                inputs.extend_from_slice(theirs);
                inputs.extend_from_slice(&mine);
                let ecdh = ecdh(private, theirs)?;
                let (salt, key) = confirmation_key(&inputs, &ecdh);
                let send = vec![pdu_of(pdu_type::PUBLIC_KEY, &mine)];
                Ok((
                    DeviceState::KeyExchanged { salt, key, ecdh },
                    DeviceStep::Send(send),
                ))
            }
            DeviceState::KeyExchanged { salt, key, ecdh } => {
                let theirs: Key = key16(pdu, pdu_type::CONFIRMATION)?;
                let mine = confirmation(&key, &self.random, &ZERO_AUTH);
                let send = vec![pdu_of(pdu_type::CONFIRMATION, &mine)];
                Ok((
                    DeviceState::Confirmed {
                        salt,
                        key,
                        ecdh,
                        theirs,
                    },
                    DeviceStep::Send(send),
                ))
            }
            DeviceState::Confirmed {
                salt,
                key,
                ecdh,
                theirs,
            } => {
                let random: Key = key16(pdu, pdu_type::RANDOM)?;
                if confirmation(&key, &random, &ZERO_AUTH) != theirs {
                    return Err(ProvisioningError::ConfirmationFailed);
                }
                let keys = session_keys(&salt, &key, &ecdh, &random, &self.random);
                let send = vec![pdu_of(pdu_type::RANDOM, &self.random)];
                Ok((DeviceState::Randomized { keys }, DeviceStep::Send(send)))
            }
            DeviceState::Randomized { keys } => {
                let sealed = expect(pdu, pdu_type::DATA, 33)?;
                let plain = ccm_decrypt(
                    &keys.session_key,
                    &keys.session_nonce,
                    sealed,
                    &[],
                    MicSize::Bits64,
                )
                .ok_or(ProvisioningError::DecryptionFailed)?;
                let data =
                    ProvisioningData::decode(&plain).ok_or(ProvisioningError::DecryptionFailed)?;
                Ok((
                    DeviceState::Done,
                    DeviceStep::Provisioned {
                        data,
                        device_key: keys.device_key,
                        complete: vec![pdu_type::COMPLETE],
                    },
                ))
            }
            DeviceState::Done => Err(ProvisioningError::Unexpected {
                expected: pdu_type::INVITE,
                found: pdu.first().copied().unwrap_or(0xff),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Mesh Profile 1.0.1 §8.7, the provisioning sample (PB-ADV, no OOB).
    use super::*;
    use ring::rand::SystemRandom;

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    fn k(text: &str) -> Key {
        h(text).try_into().unwrap()
    }

    #[test]
    fn the_key_schedule_matches_the_sample_8_7() {
        let inputs = confirmation_inputs(
            &h("00"),
            &h("0100010000000000000000"),
            &h("0000000000"),
            &h("2c31a47b5779809ef44cb5eaaf5c3e43d5f8faad4a8794cb987e9b03745c78dd919512183898dfbecd52e2408e43871fd021109117bd3ed4eaf8437743715d4f"),
            &h("f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279"),
        );
        let ecdh: [u8; 32] = h("ab85843a2f6d883f62e5684b38e307335fe6e1945ecd19604105c6f23221eb69")
            .try_into()
            .unwrap();
        let (salt, key) = confirmation_key(&inputs, &ecdh);
        assert_eq!(hex::encode(salt), "5faabe187337c71cc6c973369dcaa79a");
        assert_eq!(hex::encode(key), "e31fe046c68ec339c425fc6629f0336f");
        let random_provisioner = k("8b19ac31d58b124c946209b5db1021b9");
        let random_device = k("55a2a2bca04cd32ff6f346bd0a0c1a3a");
        assert_eq!(
            hex::encode(confirmation(&key, &random_provisioner, &ZERO_AUTH)),
            "b38a114dfdca1fe153bd2c1e0dc46ac2"
        );
        assert_eq!(
            hex::encode(confirmation(&key, &random_device, &ZERO_AUTH)),
            "eeba521c196b52cc2e37aa40329f554e"
        );
        let keys = session_keys(&salt, &key, &ecdh, &random_provisioner, &random_device);
        assert_eq!(
            hex::encode(keys.provisioning_salt),
            "a21c7d45f201cf9489a2fb57145015b4"
        );
        assert_eq!(
            hex::encode(keys.session_key),
            "c80253af86b33dfa450bbdb2a191fea3"
        );
        assert_eq!(
            hex::encode(keys.session_nonce),
            "da7ddbe78b5f62b81d6847487e"
        );
        assert_eq!(
            hex::encode(keys.device_key),
            "0520adad5e0142aa3e325087b4ec16d8"
        );
        let data = ProvisioningData {
            net_key: k("efb2255e6422d330088e09bb015ed707"),
            key_index: 0x0567,
            flags: 0x00,
            iv_index: 0x01020304,
            address: 0x0b0c,
        };
        assert_eq!(
            hex::encode(data.encode()),
            "efb2255e6422d330088e09bb015ed707056700010203040b0c"
        );
        let sealed = ccm_encrypt(
            &keys.session_key,
            &keys.session_nonce,
            &data.encode(),
            &[],
            MicSize::Bits64,
        );
        assert_eq!(
            hex::encode(&sealed),
            "d0bd7f4a89a2ff6222af59a90a60ad58acfe3123356f5cec2973e0ec50783b10c7"
        );
    }

    fn ephemeral() -> EphemeralPrivateKey {
        EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).unwrap()
    }

    fn data() -> ProvisioningData {
        ProvisioningData {
            net_key: [0x42; 16],
            key_index: 0,
            flags: 0,
            iv_index: 7,
            address: 0x0100,
        }
    }

    /// Runs both sides against each other; `tamper` may alter each PDU.
    fn run(
        tamper: impl Fn(&mut Vec<u8>),
    ) -> Result<(Key, ProvisioningData, Key), ProvisioningError> {
        let (mut provisioner, invite) = Provisioner::new(data(), 5, ephemeral(), [1; 16]);
        let mut device = Provisionee::new(1, ephemeral(), [2; 16]);
        let mut to_device = vec![invite];
        loop {
            let mut to_provisioner = Vec::new();
            for mut pdu in to_device.drain(..) {
                tamper(&mut pdu);
                match device.handle(&pdu)? {
                    DeviceStep::Send(pdus) => to_provisioner.extend(pdus),
                    DeviceStep::Provisioned {
                        data,
                        device_key,
                        complete,
                    } => {
                        let Step::Complete { device_key: theirs } =
                            provisioner.handle(&complete)?
                        else {
                            panic!("complete");
                        };
                        return Ok((device_key, data, theirs));
                    }
                }
            }
            for pdu in to_provisioner {
                match provisioner.handle(&pdu)? {
                    Step::Send(pdus) => to_device.extend(pdus),
                    Step::Complete { .. } => panic!("completed early"),
                }
            }
        }
    }

    #[test]
    fn a_device_is_provisioned_and_both_sides_hold_one_device_key() {
        let (device_key, got, provisioner_key) = run(|_| {}).unwrap();
        assert_eq!(device_key, provisioner_key);
        assert_eq!(got, data());
    }

    #[test]
    fn tampered_runs_fail_with_a_reason() {
        // One bit flipped in the first PDU of `kind`.
        let flip = |kind: u8, at: usize| {
            move |pdu: &mut Vec<u8>| {
                if pdu[0] == kind {
                    pdu[at] ^= 1;
                }
            }
        };
        // A confirmation the reveal does not match, sealed data that does
        // not open, a public key off the curve.
        for (kind, at, error) in [
            (
                pdu_type::CONFIRMATION,
                3,
                ProvisioningError::ConfirmationFailed,
            ),
            (pdu_type::DATA, 5, ProvisioningError::DecryptionFailed),
            (pdu_type::PUBLIC_KEY, 10, ProvisioningError::BadPublicKey),
        ] {
            assert_eq!(run(flip(kind, at)).unwrap_err(), error);
        }
        let mut device = Provisionee::new(1, ephemeral(), [2; 16]);
        assert!(matches!(
            device.handle(&[pdu_type::RANDOM; 17]),
            Err(ProvisioningError::Unexpected { .. })
        ));
    }
}
