//! The handlers: parse the request, call the gateway, shape the answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use itc_bridges::light::LightCommand;
use itc_chain::codec::decode;
use itc_chain::crypto::{AccountId, Hash};
use itc_chain::tx::{SignedTx, TxBody};
use itc_chain::types::DeviceId;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::gateway::{ApiResult, Gateway};
use crate::guard::AppState;
use crate::model::*;

/// Most transactions per submission.
pub const MAX_BATCH: usize = 10_000;
/// Default and longest wait for an ownership transaction's commit.
pub const DEFAULT_WAIT_MS: u64 = 5_000;
pub const MAX_WAIT_MS: u64 = 30_000;
/// Longest join window.
pub const MAX_PERMIT_JOIN_S: u32 = 254;
/// Most blocks per listing.
pub const MAX_BLOCKS: u64 = 100;

type S<G> = State<AppState<G>>;
type Body<T> = Result<Json<T>, JsonRejection>;

fn body<T>(body: Body<T>) -> ApiResult<T> {
    body.map(|Json(t)| t).map_err(ApiError::from)
}

fn device_id(text: &str) -> ApiResult<DeviceId> {
    DeviceId::new(text)
        .map_err(|e| ApiError::bad_request("Bad device id", format!("{text:?}: {e}")))
}

fn account_id(text: &str) -> ApiResult<AccountId> {
    text.parse()
        .map_err(|e| ApiError::bad_request("Bad account", format!("{text:?}: {e}")))
}

#[utoipa::path(get, path = "/api/v1/health", tag = "meta",
    responses((status = 200, description = "The gateway is up", body = String)))]
pub async fn health() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/api/v1/chain/status", tag = "chain",
    responses((status = 200, body = ChainStatus), (status = 401, body = Problem)))]
pub async fn status<G: Gateway>(State(state): S<G>) -> Json<ChainStatus> {
    Json(state.gateway.status())
}

#[utoipa::path(post, path = "/api/v1/transactions", tag = "chain", request_body = Submit,
    responses((status = 202, body = Submitted), (status = 400, body = Problem), (status = 413, body = Problem)))]
pub async fn submit<G: Gateway>(State(state): S<G>, request: Body<Submit>) -> ApiResult<Response> {
    let request = body(request)?;
    if request.txs.len() > MAX_BATCH {
        return Err(ApiError::TooLarge {
            detail: format!(
                "{} transactions; at most {MAX_BATCH} per request",
                request.txs.len()
            ),
        });
    }
    let txs = request
        .txs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            decode_tx(text).map_err(|e| {
                ApiError::bad_request("Malformed transaction", format!("transaction {index}: {e}"))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let ids = txs.iter().map(|tx| tx.hash().to_string()).collect();
    if !state.gateway.submit(txs).await {
        return Err(ApiError::unavailable("the replica is shutting down"));
    }
    Ok((StatusCode::ACCEPTED, Json(Submitted { ids })).into_response())
}

fn decode_tx(text: &str) -> Result<SignedTx, String> {
    hex::decode(text)
        .map_err(|e| e.to_string())
        .and_then(|bytes| decode::<SignedTx>(&bytes).map_err(|e| e.to_string()))
}

#[utoipa::path(get, path = "/api/v1/gateway", tag = "gateway",
    responses((status = 200, body = GatewayInfo), (status = 401, body = Problem)))]
pub async fn gateway_info<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
) -> Json<GatewayInfo> {
    Json(state.gateway.info(&caller.key))
}

#[utoipa::path(post, path = "/api/v1/gateway/claim", tag = "gateway", request_body = ClaimGateway,
    responses((status = 200, body = GatewayInfo), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn claim_gateway<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    request: Body<ClaimGateway>,
) -> ApiResult<Json<GatewayInfo>> {
    let request = body(request)?;
    Ok(Json(state.gateway.claim(caller.key, request).await?))
}

#[utoipa::path(post, path = "/api/v1/mqtt/setup-codes", tag = "network", request_body = NewSetupCode,
    responses((status = 200, body = SetupCode), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn mqtt_setup_code<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    request: Body<NewSetupCode>,
) -> ApiResult<Json<SetupCode>> {
    let request = body(request)?;
    Ok(Json(
        state.gateway.mqtt_setup_code(caller.key, request).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/lights", tag = "lights",
    responses((status = 200, description = "The lights the caller may use", body = [Light])))]
pub async fn lights<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<Light>> {
    Json(state.gateway.lights(&caller.key))
}

#[utoipa::path(get, path = "/api/v1/lights/{id}", tag = "lights", params(("id" = String, Path)),
    responses((status = 200, body = Light), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn light<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Light>> {
    Ok(Json(state.gateway.light(&caller.key, &device_id(&id)?)?))
}

#[utoipa::path(put, path = "/api/v1/lights/{id}/state", tag = "lights", params(("id" = String, Path)),
    request_body = LightCommand,
    responses((status = 200, body = Light), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn set_light<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    command: Body<LightCommand>,
) -> ApiResult<Json<Light>> {
    let command = body(command)?;
    let device = device_id(&id)?;
    Ok(Json(
        state.gateway.set_light(caller.key, device, command).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "lights", responses((status = 200, body = [Group])))]
pub async fn groups<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.gateway.groups(caller.key).await?))
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "lights", request_body = NewGroup,
    responses((status = 201, body = Group), (status = 403, body = Problem)))]
pub async fn create_group<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    group: Body<NewGroup>,
) -> ApiResult<Response> {
    let group = state.gateway.create_group(caller.key, body(group)?).await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "lights", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_group<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    state.gateway.delete_group(caller.key, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/groups/{id}/state", tag = "lights", params(("id" = i64, Path)),
    request_body = LightCommand, responses((status = 200, body = [Light]), (status = 403, body = Problem)))]
pub async fn set_group<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    command: Body<LightCommand>,
) -> ApiResult<Json<Vec<Light>>> {
    let command = body(command)?;
    Ok(Json(
        state.gateway.set_group(caller.key, id, command).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}/scenes", tag = "lights", params(("id" = i64, Path)),
    responses((status = 200, body = [Scene])))]
pub async fn scenes<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<Scene>>> {
    Ok(Json(state.gateway.scenes(caller.key, id).await?))
}

#[utoipa::path(post, path = "/api/v1/groups/{id}/scenes", tag = "lights", params(("id" = i64, Path)),
    request_body = NewScene, responses((status = 201, body = Scene)))]
pub async fn store_scene<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    scene: Body<NewScene>,
) -> ApiResult<Response> {
    let scene = state
        .gateway
        .store_scene(caller.key, id, body(scene)?)
        .await?;
    Ok((StatusCode::CREATED, Json(scene)).into_response())
}

#[utoipa::path(post, path = "/api/v1/scenes/{id}/recall", tag = "lights", params(("id" = i64, Path)),
    request_body = RecallScene, responses((status = 200, body = [Light])))]
pub async fn recall_scene<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    recall: Body<RecallScene>,
) -> ApiResult<Json<Vec<Light>>> {
    let recall = body(recall)?;
    Ok(Json(
        state.gateway.recall_scene(caller.key, id, recall).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/claim-authorization", tag = "ownership",
    params(("id" = String, Path)),
    responses((status = 200, body = ClaimAuthorization), (status = 403, body = Problem)))]
pub async fn claim_authorization<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ClaimAuthorization>> {
    let device = device_id(&id)?;
    Ok(Json(
        state.gateway.claim_authorization(&caller.key, &device)?,
    ))
}

/// Which ownership operation a route carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Claim,
    Transfer,
    Share,
    Revoke,
}

/// Checks that the signed transaction is the caller's and is the operation
/// the route names on the device the path names; the gateway checks it
/// against chain state.
fn ownership_tx(
    caller: &Caller,
    device: &DeviceId,
    operation: Operation,
    grantee: Option<&AccountId>,
    request: &OwnershipTx,
) -> ApiResult<SignedTx> {
    let signed =
        decode_tx(&request.tx).map_err(|e| ApiError::bad_request("Malformed transaction", e))?;
    if signed.tx.sender != caller.key {
        return Err(ApiError::forbidden(format!(
            "the transaction is sent by {}, but the request is signed by {}",
            signed.tx.sender, caller.key
        )));
    }
    let (found, target) = match &signed.tx.body {
        TxBody::ClaimDevice { device, .. } => (Operation::Claim, device),
        TxBody::TransferDevice { device, .. } => (Operation::Transfer, device),
        TxBody::GrantAccess { device, .. } => (Operation::Share, device),
        TxBody::RevokeAccess { device, grantee: g } => {
            if grantee.is_some_and(|wanted| wanted != g) {
                return Err(ApiError::bad_request(
                    "Wrong transaction",
                    format!("the transaction revokes {g}'s grant, not the one the path names"),
                ));
            }
            (Operation::Revoke, device)
        }
        _ => {
            return Err(ApiError::bad_request(
                "Wrong transaction",
                "this route takes a device ownership transaction",
            ))
        }
    };
    if found != operation || target != device {
        return Err(ApiError::bad_request(
            "Wrong transaction",
            format!(
                "the route expects a {operation:?} of {device}; the transaction is a {found:?} of {target}"
            ),
        ));
    }
    Ok(signed)
}

async fn ownership<G: Gateway>(
    state: AppState<G>,
    caller: Caller,
    id: String,
    operation: Operation,
    grantee: Option<String>,
    request: Body<OwnershipTx>,
) -> ApiResult<Response> {
    let request = body(request)?;
    let device = device_id(&id)?;
    let grantee = grantee.as_deref().map(account_id).transpose()?;
    let signed = ownership_tx(&caller, &device, operation, grantee.as_ref(), &request)?;
    let wait = request.wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS);
    let outcome = state
        .gateway
        .submit_and_wait(signed, Duration::from_millis(wait))
        .await?;
    let status = if outcome.committed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(outcome)).into_response())
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/claim", tag = "ownership", params(("id" = String, Path)),
    request_body = OwnershipTx,
    responses((status = 200, description = "Committed", body = TxOutcome), (status = 202, description = "Submitted, not yet committed", body = TxOutcome),
        (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn claim_device<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    request: Body<OwnershipTx>,
) -> ApiResult<Response> {
    ownership(state, caller, id, Operation::Claim, None, request).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/transfer", tag = "ownership", params(("id" = String, Path)),
    request_body = OwnershipTx,
    responses((status = 200, body = TxOutcome), (status = 202, body = TxOutcome), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn transfer_device<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    request: Body<OwnershipTx>,
) -> ApiResult<Response> {
    ownership(state, caller, id, Operation::Transfer, None, request).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/grants", tag = "ownership", params(("id" = String, Path)),
    request_body = OwnershipTx,
    responses((status = 200, body = TxOutcome), (status = 202, body = TxOutcome), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn share_device<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    request: Body<OwnershipTx>,
) -> ApiResult<Response> {
    ownership(state, caller, id, Operation::Share, None, request).await
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}/grants/{grantee}", tag = "ownership",
    params(("id" = String, Path), ("grantee" = String, Path)), request_body = OwnershipTx,
    responses((status = 200, body = TxOutcome), (status = 202, body = TxOutcome), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn revoke_grant<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path((id, grantee)): Path<(String, String)>,
    request: Body<OwnershipTx>,
) -> ApiResult<Response> {
    ownership(state, caller, id, Operation::Revoke, Some(grantee), request).await
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/grants", tag = "ownership", params(("id" = String, Path)),
    responses((status = 200, body = [Grant]), (status = 403, body = Problem)))]
pub async fn grants<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Grant>>> {
    let device = device_id(&id)?;
    Ok(Json(state.gateway.grants(&caller.key, &device)?))
}

#[utoipa::path(post, path = "/api/v1/network/permit-join", tag = "network", request_body = PermitJoin,
    responses((status = 200, body = JoinWindow), (status = 403, body = Problem)))]
pub async fn permit_join<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
    request: Body<PermitJoin>,
) -> ApiResult<Json<JoinWindow>> {
    let request = body(request)?;
    if request.seconds > MAX_PERMIT_JOIN_S {
        return Err(ApiError::bad_request(
            "Bad join window",
            format!("{} s is longer than {MAX_PERMIT_JOIN_S} s", request.seconds),
        ));
    }
    Ok(Json(
        state
            .gateway
            .permit_join(caller.key, request.seconds)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/network/devices", tag = "network",
    responses((status = 200, body = [Device]), (status = 403, body = Problem)))]
pub async fn devices<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<Device>>> {
    Ok(Json(state.gateway.devices(&caller.key)?))
}

#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "chain", params(("id" = String, Path)),
    responses((status = 200, body = Account), (status = 400, body = Problem)))]
pub async fn account<G: Gateway>(
    State(state): S<G>,
    Path(id): Path<String>,
) -> ApiResult<Json<Account>> {
    Ok(Json(state.gateway.account(&account_id(&id)?)))
}

#[derive(Debug, Deserialize)]
pub struct BlockRange {
    pub from: Option<u64>,
    pub limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/chain/blocks", tag = "chain",
    params(("from" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = [BlockSummary])))]
pub async fn blocks<G: Gateway>(
    State(state): S<G>,
    Query(range): Query<BlockRange>,
) -> ApiResult<Json<Vec<BlockSummary>>> {
    let limit = range.limit.unwrap_or(20).clamp(1, MAX_BLOCKS);
    let from = range
        .from
        .unwrap_or_else(|| state.gateway.status().height.saturating_sub(limit - 1));
    Ok(Json(state.gateway.blocks(from, limit).await?))
}

#[utoipa::path(get, path = "/api/v1/chain/blocks/{height}", tag = "chain", params(("height" = u64, Path)),
    responses((status = 200, body = BlockDetail), (status = 404, body = Problem)))]
pub async fn block<G: Gateway>(
    State(state): S<G>,
    Path(height): Path<u64>,
) -> ApiResult<Json<BlockDetail>> {
    Ok(Json(state.gateway.block(height).await?))
}

#[utoipa::path(get, path = "/api/v1/chain/transactions/{id}", tag = "chain", params(("id" = String, Path)),
    responses((status = 200, body = TransactionDetail), (status = 404, body = Problem)))]
pub async fn transaction<G: Gateway>(
    State(state): S<G>,
    Path(id): Path<String>,
) -> ApiResult<Json<TransactionDetail>> {
    let hash: Hash = id
        .parse()
        .map_err(|e| ApiError::bad_request("Bad transaction id", format!("{id:?}: {e}")))?;
    Ok(Json(state.gateway.transaction(hash).await?))
}

#[utoipa::path(get, path = "/api/v1/chain/devices/{id}/owner", tag = "chain", params(("id" = String, Path)),
    responses((status = 200, body = OwnerProof)))]
pub async fn owner_proof<G: Gateway>(
    State(state): S<G>,
    Path(id): Path<String>,
) -> ApiResult<Json<OwnerProof>> {
    Ok(Json(state.gateway.owner_proof(device_id(&id)?).await?))
}

#[utoipa::path(post, path = "/api/v1/chain/state-proof", tag = "chain",
    request_body(content = Object, description = "A state key, e.g. {\"type\":\"account\",\"account\":\"itcpk1…\"}"),
    responses((status = 200, body = StateProofView), (status = 400, body = Problem)))]
pub async fn state_proof<G: Gateway>(
    State(state): S<G>,
    key: Body<itc_chain::state::StateKey>,
) -> ApiResult<Json<StateProofView>> {
    let key = body(key)?;
    Ok(Json(state.gateway.state_proof(key).await?))
}

#[utoipa::path(get, path = "/api/v1/chain/validator-sets/{hash}", tag = "chain", params(("hash" = String, Path)),
    responses((status = 200, body = ValidatorSetView), (status = 404, body = Problem)))]
pub async fn validator_set<G: Gateway>(
    State(state): S<G>,
    Path(hash): Path<String>,
) -> ApiResult<Json<ValidatorSetView>> {
    let hash: Hash = hash
        .parse()
        .map_err(|e| ApiError::bad_request("Bad set hash", format!("{hash:?}: {e}")))?;
    Ok(Json(state.gateway.validator_set(hash).await?))
}

#[utoipa::path(post, path = "/api/v1/dag/transactions", tag = "dag", request_body = NewDagTx,
    responses((status = 202, body = DagTxAccepted), (status = 400, body = Problem),
        (status = 409, body = Problem), (status = 429, body = Problem)))]
pub async fn dag_submit<G: Gateway>(
    State(state): S<G>,
    request: Body<NewDagTx>,
) -> ApiResult<(StatusCode, Json<DagTxAccepted>)> {
    let body = body(request)?;
    let bytes = hex::decode(&body.encoded)
        .map_err(|e| ApiError::bad_request("Bad DAG transaction", format!("not hex: {e}")))?;
    let tx = itc_chain::codec::decode(&bytes)
        .map_err(|e| ApiError::bad_request("Bad DAG transaction", e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.gateway.dag_submit(tx).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/dag/parents", tag = "dag",
    responses((status = 200, body = DagParents)))]
pub async fn dag_parents<G: Gateway>(State(state): S<G>) -> ApiResult<Json<DagParents>> {
    Ok(Json(state.gateway.dag_parents().await?))
}

#[utoipa::path(get, path = "/api/v1/dag/transactions/{id}", tag = "dag", params(("id" = String, Path)),
    responses((status = 200, body = DagTxStatus), (status = 400, body = Problem)))]
pub async fn dag_status<G: Gateway>(
    State(state): S<G>,
    Path(id): Path<String>,
) -> ApiResult<Json<DagTxStatus>> {
    let id: Hash = id
        .parse()
        .map_err(|e| ApiError::bad_request("Bad transaction id", format!("{id:?}: {e}")))?;
    Ok(Json(state.gateway.dag_status(id).await?))
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "text/event-stream of Event", body = Event)))]
pub async fn events<G: Gateway>(
    State(state): S<G>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.gateway.events();
    let stream = futures_util::stream::unfold(
        (receiver, state.gateway, caller),
        |(mut receiver, gateway, caller)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if gateway.may_see(&caller.key, &event) => {
                        let sse = SseEvent::default()
                            .event(event.name())
                            .json_data(&event)
                            .unwrap_or_else(|_| SseEvent::default().comment("unencodable"));
                        return Some((Ok(sse), (receiver, gateway, caller)));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        let sse = SseEvent::default().comment(format!("missed {missed} events"));
                        return Some((Ok(sse), (receiver, gateway, caller)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
