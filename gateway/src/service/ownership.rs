//! Ownership on chain: claiming the gateway and its devices, transfers,
//! grants, and this gateway registering the bulbs it reaches.
//!
//! An ownership transaction is checked against the committed view before it
//! is submitted, so the common refusals (not the owner, already claimed, a
//! stale nonce) come back at once with the chain's own reason; then the
//! call waits for the block that commits it, or for the replica's refusal.

use std::time::Duration;

use itc_chain::crypto::{Domain, PublicKey, Signature};
use itc_chain::ledger::{check_tx, StateRead, TxError};
use itc_chain::tx::{
    adoption_payload, claim_payload, registration_payload, DeviceRegistration, SignedTx, Tx, TxBody,
};
use itc_chain::types::{DeviceId, Model};
use itc_web::{ApiError, ApiResult, ClaimAuthorization, Grant, TxOutcome};

use super::admin::{Admins, ClaimError};
use super::{now_ms, Service};

/// Most registrations in one round.
const REGISTRATION_BATCH: usize = 200;

impl Service {
    pub(super) async fn claim_gateway(
        &self,
        caller: PublicKey,
        code: &str,
        adoption: Option<&str>,
    ) -> ApiResult<()> {
        let adoption = match adoption {
            Some(text) => {
                let consent: Signature = text.parse().map_err(|e| {
                    ApiError::bad_request("Bad adoption consent", format!("{text:?}: {e}"))
                })?;
                let chain_id = self.view(|v| v.chain_id.clone())?;
                let payload = adoption_payload(&chain_id, &caller, &self.public());
                caller
                    .verify(Domain::Adoption, &payload, &consent)
                    .map_err(|_| {
                        ApiError::bad_request(
                            "Bad adoption consent",
                            "the consent is not the caller's signature over this gateway's adoption payload",
                        )
                    })?;
                Some(consent)
            }
            None => None,
        };
        let checked = self
            .inner
            .admins
            .read()
            .map_err(|_| ApiError::unavailable("the admin list is poisoned"))?
            .check(code);
        match checked {
            Ok(()) => {}
            Err(ClaimError::AlreadyClaimed) => {
                return Err(ApiError::conflict(ClaimError::AlreadyClaimed.to_string()))
            }
            Err(ClaimError::TooManyAttempts) => {
                return Err(ApiError::TooManyRequests {
                    detail: ClaimError::TooManyAttempts.to_string(),
                })
            }
            Err(error) => return Err(ApiError::forbidden(error.to_string())),
        }
        Admins::add(
            self.inner.node.store.pool(),
            &caller,
            now_ms(),
            adoption.as_ref(),
        )
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
        self.inner
            .admins
            .write()
            .map_err(|_| ApiError::unavailable("the admin list is poisoned"))?
            .added(caller, adoption);
        tracing::info!(admin = %caller, "gateway claimed");
        Ok(())
    }
}

/// The gateway's consent for its administrator to claim a device it
/// registered.
pub fn claim_authorization(
    service: &Service,
    caller: &PublicKey,
    device: &DeviceId,
) -> ApiResult<ClaimAuthorization> {
    if !service.is_admin(caller) {
        return Err(ApiError::forbidden(
            "only this gateway's administrator may claim the devices it registered",
        ));
    }
    let gateway = service.public();
    let chain_id = service.view(|view| {
        let record = view
            .entries
            .device(device)
            .ok_or_else(|| ApiError::not_found(format!("registered device {device}")))?;
        if record.registrar != gateway {
            return Err(ApiError::forbidden(format!(
                "device {device} was registered by another gateway ({})",
                record.registrar
            )));
        }
        if let Some(owner) = record.owner {
            return Err(ApiError::conflict(format!(
                "device {device} already belongs to {owner}"
            )));
        }
        Ok(view.chain_id.clone())
    })??;
    let signature = service.inner.key.sign(
        Domain::DeviceClaim,
        &claim_payload(&chain_id, device, caller),
    );
    Ok(ClaimAuthorization {
        device: device.to_string(),
        claimant: caller.to_string(),
        authorizer: gateway.to_string(),
        authorization: signature.to_string(),
    })
}

/// How a chain refusal reads over HTTP.
fn refusal(error: &TxError) -> ApiError {
    match error {
        TxError::NotOwner { .. } => ApiError::forbidden(error.to_string()),
        TxError::BadNonce { .. }
        | TxError::AlreadyClaimed { .. }
        | TxError::SameOwner { .. }
        | TxError::DeviceExists { .. } => ApiError::conflict(error.to_string()),
        _ => ApiError::bad_request("Transaction refused", error.to_string()),
    }
}

pub async fn submit_and_wait(
    service: &Service,
    signed: SignedTx,
    wait: Duration,
) -> ApiResult<TxOutcome> {
    let id = signed.hash();
    let now = now_ms();
    let precheck = service.view(|view| {
        let expected = view.entries.account(&signed.tx.sender).nonce;
        if signed.tx.nonce > expected {
            // Follows transactions still in flight; the chain decides.
            return Ok(());
        }
        check_tx(&view.entries, &view.chain_id, &view.tip, &signed, now)
    })?;
    if let Err(error) = precheck {
        return Err(refusal(&error));
    }
    let node = &service.inner.node;
    let mut commits = node.commits();
    let mut refusals = node.refusals();
    if !node.submit(vec![signed]).await {
        return Err(ApiError::unavailable("the replica is shutting down"));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            block = commits.recv() => match block {
                Ok(block) if block.txs.contains(&id) => {
                    return Ok(TxOutcome { id: id.to_string(), committed: true, height: Some(block.height) });
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(ApiError::unavailable("the replica is shutting down"));
                }
            },
            refused = refusals.recv() => {
                if let Ok(refused) = refused {
                    if refused.tx == id {
                        return Err(ApiError::conflict(format!("the chain refused the transaction: {}", refused.error)));
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(TxOutcome { id: id.to_string(), committed: false, height: None });
            }
        }
    }
}

pub fn grants(service: &Service, caller: &PublicKey, device: &DeviceId) -> ApiResult<Vec<Grant>> {
    let now = now_ms();
    service.view(|view| {
        let record = view
            .entries
            .device(device)
            .ok_or_else(|| ApiError::not_found(format!("registered device {device}")))?;
        if record.owner.as_ref() != Some(caller) {
            return Err(ApiError::forbidden(format!(
                "only the owner of {device} may list its grants"
            )));
        }
        Ok(view
            .entries
            .grants(device)
            .into_iter()
            .map(|(grantee, grant)| Grant {
                grantee: grantee.to_string(),
                rights: rights_names(grant.rights),
                expires_at_ms: grant.expires_at,
                granted_at: grant.granted_at,
                expired: grant.expires_at <= now,
            })
            .collect())
    })?
}

fn rights_names(rights: itc_chain::types::Rights) -> Vec<String> {
    let mut names = Vec::new();
    if rights.contains(itc_chain::types::Rights::CONTROL) {
        names.push("control".to_string());
    }
    if rights.contains(itc_chain::types::Rights::READ) {
        names.push("read".to_string());
    }
    names
}

impl Service {
    /// Registers on chain every bulb on the network that is not yet: one
    /// batch of transactions with consecutive nonces from the gateway's
    /// committed nonce, then waits for a commit (or a retry interval).
    /// Resubmitting an unchanged batch is harmless: the transactions are
    /// byte-identical, so the mempool keeps one of each.
    pub(super) async fn register_bulbs(self) {
        loop {
            let batch = self.unregistered();
            if !batch.is_empty() {
                tracing::debug!(count = batch.len(), "registering bulbs on chain");
                if !self.inner.node.submit(batch).await {
                    return;
                }
            }
            tokio::select! {
                _ = self.inner.registration.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
        }
    }

    fn unregistered(&self) -> Vec<SignedTx> {
        let gateway = self.public();
        let Ok(view) = self.inner.node.committed().read() else {
            return Vec::new();
        };
        let mut nonce = view.entries.account(&gateway).nonce;
        let adoption = self
            .inner
            .admins
            .read()
            .ok()
            .and_then(|admins| admins.adoption());
        let mut batch = Vec::new();
        for bridge in &self.inner.bridges {
            for light in bridge.lights() {
                if batch.len() >= REGISTRATION_BATCH {
                    return batch;
                }
                let device = &light.id;
                if view.entries.device(device).is_some() {
                    continue;
                }
                let model = Model::new(light.model.as_str()).unwrap_or_default();
                let kind = light.kind;
                let Some(device_key) = bridge.device_key(device) else {
                    continue;
                };
                let payload = registration_payload(
                    &view.chain_id,
                    &gateway,
                    device,
                    &device_key,
                    kind,
                    &model,
                );
                let Some((_, proof)) = bridge.sign_registration(device, &payload) else {
                    continue;
                };
                let registration = DeviceRegistration {
                    device: device.clone(),
                    device_key,
                    kind,
                    model,
                    proof,
                };
                // With the administrator's consent, the device is theirs
                // from the start.
                let body = match bridge.adoption(device).or(adoption) {
                    Some((owner, consent)) => TxBody::RegisterAdoptedDevice {
                        registration,
                        owner,
                        consent,
                    },
                    None => TxBody::RegisterDevice(registration),
                };
                let tx = Tx {
                    chain_id: view.chain_id.clone(),
                    sender: gateway,
                    nonce,
                    body,
                };
                batch.push(tx.sign(&self.inner.key));
                nonce += 1;
            }
        }
        batch
    }
}
