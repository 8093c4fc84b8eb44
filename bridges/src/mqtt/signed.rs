//! What an MQTT device signs, so that nothing it says can be forged or
//! altered on the way to the chain — not by another device, not by an
//! integration, not by a broker.
//!
//! **Onboarding.** The gateway publishes a [`Challenge`] (fresh random
//! bytes, its chain and its key) to a device holding a setup code. The
//! device answers with a [`Hello`]: its id, public key and model, a
//! signature over the challenge (it holds the key now, [`Domain::DeviceOnboarding`]),
//! and its registration proof — the signature the chain itself checks when
//! the gateway registers it (`itc_chain::tx::registration_payload`).
//!
//! **Reports.** A device publishes its state as a [`Report`]: the state's
//! JSON text, a sequence number that only grows (replays are refused), and a
//! signature over both under [`Domain::DeviceReport`].

use itc_chain::codec::encode;
use itc_chain::crypto::{AccountId, Domain, Keypair, PublicKey, Signature};
use itc_chain::tx::{registration_payload, ChainId, DeviceRegistration};
use itc_chain::types::{DeviceId, DeviceKind, Model};
use serde::{Deserialize, Serialize};

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    #[error("not the expected JSON: {0}")]
    Json(String),
    #[error("{field} is not valid: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("the challenge signature does not verify under the device's key")]
    BadChallengeSignature,
    #[error("the registration proof does not verify under the device's key")]
    BadRegistration,
    #[error("the report signature does not verify under the device's key")]
    BadReportSignature,
    #[error("sequence number {seq} is not after {last}: a replay")]
    Replay { seq: u64, last: u64 },
}

/// A field that does not parse, and why.
fn bad<E: std::fmt::Display>(field: &'static str) -> impl FnOnce(E) -> SignedError {
    move |e| SignedError::Field {
        field,
        reason: e.to_string(),
    }
}

fn sig_hex(s: &str, name: &'static str) -> Result<Signature, SignedError> {
    let bytes = hex::decode(s).map_err(bad(name))?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| bad(name)("not 64 bytes"))?;
    Ok(Signature(bytes))
}

/// The gateway's onboarding challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes, hex.
    pub challenge: String,
    pub chain_id: String,
    /// The gateway's key: the registrar the device's registration names.
    pub gateway: String,
}

/// What the device signs to answer a challenge.
pub fn onboarding_payload(challenge: &str, device: &DeviceId, key: &PublicKey) -> Vec<u8> {
    encode(&(challenge.to_string(), device, key))
}

/// A device's answer to the challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The challenge answered (so an answer to an older one is told
    /// apart).
    pub challenge: String,
    pub device: String,
    pub public_key: String,
    pub model: String,
    /// Over [`onboarding_payload`], hex.
    pub signature: String,
    /// Over `itc_chain::tx::registration_payload`, hex.
    pub registration: String,
}

impl Hello {
    /// What a device sends (the simulator and tests use this).
    pub fn sign(key: &Keypair, device: &DeviceId, model: &Model, challenge: &Challenge) -> Hello {
        let chain_id = ChainId::new(challenge.chain_id.clone()).unwrap_or_default();
        let registrar: AccountId = challenge.gateway.parse().unwrap_or(PublicKey([0; 32]));
        let payload = onboarding_payload(&challenge.challenge, device, &key.public());
        let registration = registration_payload(
            &chain_id,
            &registrar,
            device,
            &key.public(),
            DeviceKind::Mqtt,
            model,
        );
        Hello {
            challenge: challenge.challenge.clone(),
            device: device.to_string(),
            public_key: key.public().to_string(),
            model: model.to_string(),
            signature: hex::encode(key.sign(Domain::DeviceOnboarding, &payload).0),
            registration: hex::encode(key.sign(Domain::DeviceRegistration, &registration).0),
        }
    }

    pub fn parse(payload: &[u8]) -> Result<Hello, SignedError> {
        serde_json::from_slice(payload).map_err(|e| SignedError::Json(e.to_string()))
    }

    /// Checks both signatures against `challenge` (which this gateway
    /// issued) and returns the registration the gateway puts on chain.
    pub fn verify(
        &self,
        challenge: &str,
        chain_id: &ChainId,
        gateway: &AccountId,
    ) -> Result<DeviceRegistration, SignedError> {
        let device = DeviceId::new(self.device.clone()).map_err(bad("device"))?;
        let key: PublicKey = self.public_key.parse().map_err(bad("public_key"))?;
        let model = Model::new(self.model.clone()).map_err(bad("model"))?;
        let signature = sig_hex(&self.signature, "signature")?;
        key.verify(
            Domain::DeviceOnboarding,
            &onboarding_payload(challenge, &device, &key),
            &signature,
        )
        .map_err(|_| SignedError::BadChallengeSignature)?;
        let proof = sig_hex(&self.registration, "registration")?;
        let payload =
            registration_payload(chain_id, gateway, &device, &key, DeviceKind::Mqtt, &model);
        key.verify(Domain::DeviceRegistration, &payload, &proof)
            .map_err(|_| SignedError::BadRegistration)?;
        Ok(DeviceRegistration {
            device,
            device_key: key,
            kind: DeviceKind::Mqtt,
            model,
            proof,
        })
    }
}

/// What the device signs to report a state.
pub fn report_payload(device: &DeviceId, seq: u64, state: &str) -> Vec<u8> {
    encode(&(device, seq, state.to_string()))
}

/// The gateway's answer to a device's DAG publish: the transaction's id,
/// or why it was refused, and two parents for the next one (hashes as
/// `sha256:<hex>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub parents: Vec<String>,
}

/// A device's signed state report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u64,
    /// The state as Zigbee2MQTT JSON text, exactly as signed.
    pub state: String,
    /// Over [`report_payload`], hex.
    pub signature: String,
}

impl Report {
    pub fn sign(key: &Keypair, device: &DeviceId, seq: u64, state: &serde_json::Value) -> Report {
        let state = state.to_string();
        Report {
            seq,
            signature: hex::encode(
                key.sign(Domain::DeviceReport, &report_payload(device, seq, &state))
                    .0,
            ),
            state,
        }
    }

    pub fn parse(payload: &[u8]) -> Result<Report, SignedError> {
        serde_json::from_slice(payload).map_err(|e| SignedError::Json(e.to_string()))
    }

    /// Checks the signature and that `seq` is after `last` (the last one
    /// accepted from this device); returns the state's JSON.
    pub fn verify(
        &self,
        device: &DeviceId,
        key: &PublicKey,
        last: Option<u64>,
    ) -> Result<serde_json::Value, SignedError> {
        let signature = sig_hex(&self.signature, "signature")?;
        key.verify(
            Domain::DeviceReport,
            &report_payload(device, self.seq, &self.state),
            &signature,
        )
        .map_err(|_| SignedError::BadReportSignature)?;
        if let Some(last) = last.filter(|&last| self.seq <= last) {
            return Err(SignedError::Replay {
                seq: self.seq,
                last,
            });
        }
        serde_json::from_str(&self.state).map_err(|e| SignedError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(gateway: &Keypair) -> Challenge {
        Challenge {
            challenge: "00".repeat(32),
            chain_id: "itc-test".into(),
            gateway: gateway.public().to_string(),
        }
    }

    #[test]
    fn a_hello_verifies_only_for_its_challenge_and_gateway() {
        let gw = Keypair::from_seed([1; 32]);
        let dev = Keypair::from_seed([2; 32]);
        let id = DeviceId::new("mqtt:esp-1").unwrap();
        let model = Model::new("esp-bulb").unwrap();
        let c = challenge(&gw);
        let hello = Hello::sign(&dev, &id, &model, &c);
        let chain = ChainId::new("itc-test").unwrap();
        let reg = hello.verify(&c.challenge, &chain, &gw.public()).unwrap();
        assert_eq!(reg.device, id);
        assert_eq!(reg.device_key, dev.public());
        // Another challenge, another gateway, another key: refused.
        assert_eq!(
            hello.verify(&"11".repeat(32), &chain, &gw.public()),
            Err(SignedError::BadChallengeSignature)
        );
        assert_eq!(
            hello.verify(&c.challenge, &chain, &Keypair::from_seed([3; 32]).public()),
            Err(SignedError::BadRegistration)
        );
        let mut stolen = hello.clone();
        stolen.public_key = Keypair::from_seed([4; 32]).public().to_string();
        assert_eq!(
            stolen.verify(&c.challenge, &chain, &gw.public()),
            Err(SignedError::BadChallengeSignature)
        );
        let mut garbage = hello;
        garbage.signature = "zz".into();
        assert!(matches!(
            garbage.verify(&c.challenge, &chain, &gw.public()),
            Err(SignedError::Field {
                field: "signature",
                ..
            })
        ));
    }

    #[test]
    fn reports_are_signed_and_never_replayed() {
        let dev = Keypair::from_seed([2; 32]);
        let id = DeviceId::new("mqtt:esp-1").unwrap();
        let state = serde_json::json!({"state": "ON", "brightness": 10, "color_temp": 300});
        let report = Report::sign(&dev, &id, 5, &state);
        assert_eq!(report.verify(&id, &dev.public(), Some(4)).unwrap(), state);
        assert_eq!(
            report.verify(&id, &dev.public(), Some(5)),
            Err(SignedError::Replay { seq: 5, last: 5 })
        );
        let mut altered = report.clone();
        altered.state = altered.state.replace("10", "254");
        assert_eq!(
            altered.verify(&id, &dev.public(), None),
            Err(SignedError::BadReportSignature)
        );
        let other = DeviceId::new("mqtt:esp-2").unwrap();
        assert_eq!(
            report.verify(&other, &dev.public(), None),
            Err(SignedError::BadReportSignature)
        );
    }
}
