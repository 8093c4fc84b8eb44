//! The signing client: what `itc-gateway` client subcommands, the
//! integration tests and `bench api` use to call a gateway as a user.
//!
//! Each request is signed with the user's key ([`crate::auth`]); ownership
//! operations are built here as chain transactions, signed by the same key,
//! with the account's next nonce read from the gateway.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use itc_bridges::light::LightCommand;
use itc_chain::codec::encode;
use itc_chain::crypto::{AccountId, Domain, Hash, Keypair, PublicKey};
use itc_chain::tx::{adoption_payload, ChainId, SignedTx, Tx, TxBody};
use itc_chain::types::{DeviceId, Rights, TimestampMs};
use reqwest::{Method, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::authorization;
use crate::error::Problem;
use crate::model::*;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the gateway: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{status}: {}: {}", problem.title, problem.detail)]
    Api {
        status: StatusCode,
        problem: Problem,
    },
    #[error("unexpected answer ({status}): {body}")]
    Unexpected { status: StatusCode, body: String },
    #[error("the gateway sent something unusable: {0}")]
    Invalid(String),
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// A gateway's API, called as the holder of `key`.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Arc<Keypair>,
    http: reqwest::Client,
    rng: SystemRandom,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Client {
    /// `base` is the gateway's address, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>, key: Keypair) -> Client {
        Client {
            base: base.into().trim_end_matches('/').to_string(),
            key: Arc::new(key),
            http: reqwest::Client::new(),
            rng: SystemRandom::new(),
        }
    }

    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A signed request, ready to send (tests tamper with it).
    pub fn signed(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let mut nonce = [0u8; 16];
        // The OS generator does not fail on a running system; a zero
        // nonce would only be refused as a replay.
        let _ = self.rng.fill(&mut nonce);
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let header = authorization(
            &self.key,
            method.as_str(),
            path,
            query,
            &body,
            now_ms(),
            nonce,
        );
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(reqwest::header::AUTHORIZATION, header);
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        request
    }

    /// Sends a signed request and reads the JSON answer (or the problem).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(StatusCode, T), ClientError> {
        let bytes = match body {
            Some(body) => {
                serde_json::to_vec(body).map_err(|e| ClientError::Invalid(e.to_string()))?
            }
            None => Vec::new(),
        };
        let response = self.signed(method, path_and_query, bytes).send().await?;
        read(response).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, path, None::<&()>).await?.1)
    }

    // --- Gateway and chain ---

    pub async fn health(&self) -> Result<bool, ClientError> {
        let response = self
            .http
            .get(format!("{}/api/v1/health", self.base))
            .send()
            .await?;
        Ok(response.status().is_success())
    }

    pub async fn info(&self) -> Result<GatewayInfo, ClientError> {
        self.get("/api/v1/gateway").await
    }

    /// The caller's adoption consent for the gateway it talks to.
    async fn adoption(&self) -> Result<String, ClientError> {
        let info = self.info().await?;
        let chain_id = ChainId::new(info.chain_id)
            .map_err(|e| ClientError::Invalid(format!("chain id: {e}")))?;
        let gateway: PublicKey = info
            .key
            .parse()
            .map_err(|e| ClientError::Invalid(format!("gateway key: {e}")))?;
        let payload = adoption_payload(&chain_id, &self.public(), &gateway);
        Ok(self.key.sign(Domain::Adoption, &payload).to_string())
    }

    /// A one-time MQTT setup code for a new Wi-Fi device, which becomes
    /// the caller's when it onboards.
    pub async fn mqtt_setup_code(&self) -> Result<SetupCode, ClientError> {
        let body = NewSetupCode {
            adoption: self.adoption().await?,
        };
        Ok(self
            .call(Method::POST, "/api/v1/mqtt/setup-codes", Some(&body))
            .await?
            .1)
    }

    /// Claims the gateway with its one-time code. With `adopt`, also
    /// consents to own every device the gateway pairs from now on.
    pub async fn claim_gateway(&self, code: &str, adopt: bool) -> Result<GatewayInfo, ClientError> {
        let adoption = if adopt {
            Some(self.adoption().await?)
        } else {
            None
        };
        let body = ClaimGateway {
            code: code.into(),
            adoption,
        };
        Ok(self
            .call(Method::POST, "/api/v1/gateway/claim", Some(&body))
            .await?
            .1)
    }

    pub async fn status(&self) -> Result<ChainStatus, ClientError> {
        self.get("/api/v1/chain/status").await
    }

    pub async fn account(&self, account: &AccountId) -> Result<Account, ClientError> {
        self.get(&format!("/api/v1/accounts/{account}")).await
    }

    pub async fn blocks(
        &self,
        from: Option<u64>,
        limit: u64,
    ) -> Result<Vec<BlockSummary>, ClientError> {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        self.get(&format!("/api/v1/chain/blocks?limit={limit}{from}"))
            .await
    }

    pub async fn block(&self, height: u64) -> Result<BlockDetail, ClientError> {
        self.get(&format!("/api/v1/chain/blocks/{height}")).await
    }

    pub async fn transaction(&self, id: &Hash) -> Result<TransactionDetail, ClientError> {
        self.get(&format!("/api/v1/chain/transactions/{id}")).await
    }

    /// Any state entry with its proof.
    pub async fn state_proof(
        &self,
        key: &itc_chain::state::StateKey,
    ) -> Result<StateProofView, ClientError> {
        Ok(self
            .call(Method::POST, "/api/v1/chain/state-proof", Some(key))
            .await?
            .1)
    }

    pub async fn validator_set(&self, hash: &Hash) -> Result<ValidatorSetView, ClientError> {
        self.get(&format!("/api/v1/chain/validator-sets/{hash}"))
            .await
    }

    /// Hands a device's DAG transaction to the gateway.
    pub async fn dag_submit(
        &self,
        tx: &itc_chain::dag::DagTx,
    ) -> Result<DagTxAccepted, ClientError> {
        let body = NewDagTx {
            encoded: hex::encode(itc_chain::codec::encode(tx)),
        };
        Ok(self
            .call(Method::POST, "/api/v1/dag/transactions", Some(&body))
            .await?
            .1)
    }

    pub async fn dag_parents(&self) -> Result<DagParents, ClientError> {
        self.get("/api/v1/dag/parents").await
    }

    pub async fn dag_status(&self, id: &Hash) -> Result<DagTxStatus, ClientError> {
        self.get(&format!("/api/v1/dag/transactions/{id}")).await
    }

    pub async fn owner_proof(&self, device: &DeviceId) -> Result<OwnerProof, ClientError> {
        self.get(&format!("/api/v1/chain/devices/{device}/owner"))
            .await
    }

    // --- Lights ---

    pub async fn lights(&self) -> Result<Vec<Light>, ClientError> {
        self.get("/api/v1/lights").await
    }

    pub async fn light(&self, device: &DeviceId) -> Result<Light, ClientError> {
        self.get(&format!("/api/v1/lights/{device}")).await
    }

    pub async fn set_light(
        &self,
        device: &DeviceId,
        command: &LightCommand,
    ) -> Result<Light, ClientError> {
        Ok(self
            .call(
                Method::PUT,
                &format!("/api/v1/lights/{device}/state"),
                Some(command),
            )
            .await?
            .1)
    }

    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        self.get("/api/v1/groups").await
    }

    pub async fn create_group(
        &self,
        name: &str,
        lights: &[DeviceId],
    ) -> Result<Group, ClientError> {
        let body = NewGroup {
            name: name.into(),
            lights: lights.iter().map(|d| d.to_string()).collect(),
        };
        Ok(self
            .call(Method::POST, "/api/v1/groups", Some(&body))
            .await?
            .1)
    }

    pub async fn set_group(
        &self,
        group: i64,
        command: &LightCommand,
    ) -> Result<Vec<Light>, ClientError> {
        Ok(self
            .call(
                Method::PUT,
                &format!("/api/v1/groups/{group}/state"),
                Some(command),
            )
            .await?
            .1)
    }

    /// Deletes one of the caller's groups (and its scenes).
    pub async fn delete_group(&self, group: i64) -> Result<(), ClientError> {
        let response = self
            .signed(
                Method::DELETE,
                &format!("/api/v1/groups/{group}"),
                Vec::new(),
            )
            .send()
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        read::<serde_json::Value>(response).await.map(drop)
    }

    pub async fn scenes(&self, group: i64) -> Result<Vec<Scene>, ClientError> {
        self.get(&format!("/api/v1/groups/{group}/scenes")).await
    }

    /// The live event stream (Server-Sent Events).
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let response = self
            .signed(Method::GET, "/api/v1/events", Vec::new())
            .send()
            .await?;
        if response.status().is_success() {
            return Ok(EventStream {
                response,
                pending: String::new(),
                ready: std::collections::VecDeque::new(),
            });
        }
        Err(read::<serde_json::Value>(response)
            .await
            .err()
            .unwrap_or(ClientError::Invalid("the event stream did not open".into())))
    }

    pub async fn store_scene(&self, group: i64, name: &str) -> Result<Scene, ClientError> {
        let body = NewScene { name: name.into() };
        Ok(self
            .call(
                Method::POST,
                &format!("/api/v1/groups/{group}/scenes"),
                Some(&body),
            )
            .await?
            .1)
    }

    pub async fn recall_scene(
        &self,
        scene: i64,
        transition_ms: Option<u32>,
    ) -> Result<Vec<Light>, ClientError> {
        let body = RecallScene { transition_ms };
        Ok(self
            .call(
                Method::POST,
                &format!("/api/v1/scenes/{scene}/recall"),
                Some(&body),
            )
            .await?
            .1)
    }

    // --- Network ---

    pub async fn permit_join(&self, seconds: u32) -> Result<JoinWindow, ClientError> {
        let body = PermitJoin { seconds };
        Ok(self
            .call(Method::POST, "/api/v1/network/permit-join", Some(&body))
            .await?
            .1)
    }

    pub async fn devices(&self) -> Result<Vec<Device>, ClientError> {
        self.get("/api/v1/network/devices").await
    }

    // --- Ownership: chain transactions signed by this client's key ---

    /// A transaction from this client's account with its next nonce.
    pub async fn sign_tx(&self, body: TxBody) -> Result<SignedTx, ClientError> {
        let info = self.info().await?;
        let chain_id = ChainId::new(info.chain_id)
            .map_err(|e| ClientError::Invalid(format!("chain id: {e}")))?;
        let nonce = self.account(&self.public()).await?.nonce;
        Ok(Tx {
            chain_id,
            sender: self.public(),
            nonce,
            body,
        }
        .sign(&self.key))
    }

    /// Sends a signed ownership transaction to its route and waits for the
    /// commit (up to `wait_ms`).
    pub async fn send_ownership(
        &self,
        method: Method,
        path: &str,
        tx: &SignedTx,
        wait_ms: Option<u64>,
    ) -> Result<TxOutcome, ClientError> {
        let body = OwnershipTx {
            tx: hex::encode(encode(tx)),
            wait_ms,
        };
        Ok(self.call(method, path, Some(&body)).await?.1)
    }

    /// Claims `device`: asks its gateway for consent (the caller must
    /// administer the gateway), then sends the claim.
    pub async fn claim_device(&self, device: &DeviceId) -> Result<TxOutcome, ClientError> {
        let consent: ClaimAuthorization = self
            .get(&format!("/api/v1/devices/{device}/claim-authorization"))
            .await?;
        let authorizer = consent
            .authorizer
            .parse()
            .map_err(|e| ClientError::Invalid(format!("authorizer: {e}")))?;
        let authorization = consent
            .authorization
            .parse()
            .map_err(|e| ClientError::Invalid(format!("authorization: {e}")))?;
        let tx = self
            .sign_tx(TxBody::ClaimDevice {
                device: device.clone(),
                authorizer,
                authorization,
            })
            .await?;
        self.send_ownership(
            Method::POST,
            &format!("/api/v1/devices/{device}/claim"),
            &tx,
            None,
        )
        .await
    }

    pub async fn transfer(
        &self,
        device: &DeviceId,
        to: &AccountId,
    ) -> Result<TxOutcome, ClientError> {
        let tx = self
            .sign_tx(TxBody::TransferDevice {
                device: device.clone(),
                new_owner: *to,
            })
            .await?;
        self.send_ownership(
            Method::POST,
            &format!("/api/v1/devices/{device}/transfer"),
            &tx,
            None,
        )
        .await
    }

    pub async fn share(
        &self,
        device: &DeviceId,
        grantee: &AccountId,
        rights: Rights,
        expires_at: TimestampMs,
    ) -> Result<TxOutcome, ClientError> {
        let tx = self
            .sign_tx(TxBody::GrantAccess {
                device: device.clone(),
                grantee: *grantee,
                rights,
                expires_at,
            })
            .await?;
        self.send_ownership(
            Method::POST,
            &format!("/api/v1/devices/{device}/grants"),
            &tx,
            None,
        )
        .await
    }

    pub async fn revoke(
        &self,
        device: &DeviceId,
        grantee: &AccountId,
    ) -> Result<TxOutcome, ClientError> {
        let tx = self
            .sign_tx(TxBody::RevokeAccess {
                device: device.clone(),
                grantee: *grantee,
            })
            .await?;
        self.send_ownership(
            Method::DELETE,
            &format!("/api/v1/devices/{device}/grants/{grantee}"),
            &tx,
            None,
        )
        .await
    }

    pub async fn grants(&self, device: &DeviceId) -> Result<Vec<Grant>, ClientError> {
        self.get(&format!("/api/v1/devices/{device}/grants")).await
    }
}

/// Live events as they arrive.
pub struct EventStream {
    response: reqwest::Response,
    pending: String,
    ready: std::collections::VecDeque<Event>,
}

impl EventStream {
    /// The next event; `None` when the gateway closed the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(chunk) = self.response.chunk().await? else {
                return Ok(None);
            };
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
            // An SSE event ends with a blank line; keep-alive comments
            // carry no data.
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        let event = serde_json::from_str(data.trim_start())
                            .map_err(|e| ClientError::Invalid(format!("an event: {e}")))?;
                        self.ready.push_back(event);
                    }
                }
            }
        }
    }
}

/// Reads a JSON answer, or the problem the gateway sent.
pub async fn read<T: DeserializeOwned>(
    response: reqwest::Response,
) -> Result<(StatusCode, T), ClientError> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if status.is_success() {
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Invalid(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
        })?;
        return Ok((status, value));
    }
    match serde_json::from_slice::<Problem>(&bytes) {
        Ok(problem) => Err(ClientError::Api { status, problem }),
        Err(_) => Err(ClientError::Unexpected {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }),
    }
}
