//! # itc-web: the gateway's REST API
//!
//! Speaks HTTP (axum + tower) and calls into the gateway through the
//! [`Gateway`] trait; it holds no chain, lighting or ownership logic of its
//! own.
//!
//! - [`auth`]: the signed-request scheme (pure) and the replay guard;
//! - [`guard`]: the middleware that enforces it, with body and rate limits;
//! - [`routes`]: one handler per endpoint, documented for OpenAPI;
//! - [`model`]: the JSON bodies; [`error`]: RFC 7807 problems;
//! - [`client`]: the signing client the CLI, tests and benches use, so the
//!   same code signs every request the server is tested with;
//! - [`metrics`]: Prometheus at `/metrics`.
//!
//! Unsigned: `/api/v1/health`, `/api/v1/openapi.json`, `/metrics`, and the
//! raw transaction submission (a transaction carries its sender's
//! signature). Everything else needs a signed request.

pub mod auth;
pub mod client;
pub mod error;
pub mod gateway;
pub mod guard;
pub mod metrics;
pub mod model;
pub mod routes;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi;

pub use error::{ApiError, Problem};
pub use gateway::{ApiResult, Gateway};
pub use guard::Limits;
pub use model::*;

/// Largest body of an unsigned transaction batch.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The OpenAPI 3 document, generated from the handlers and models.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ITC gateway API",
        description = "Lights, ownership on chain, and the chain itself. Every request but health, \
                       this document and raw transaction submission is signed: see \
                       `Authorization: ITC-Ed25519 key=…,ts=…,nonce=…,sig=…`."
    ),
    paths(
        routes::health,
        routes::status,
        routes::submit,
        routes::gateway_info,
        routes::claim_gateway,
        routes::mqtt_setup_code,
        routes::lights,
        routes::light,
        routes::set_light,
        routes::groups,
        routes::create_group,
        routes::delete_group,
        routes::set_group,
        routes::scenes,
        routes::store_scene,
        routes::recall_scene,
        routes::claim_authorization,
        routes::claim_device,
        routes::transfer_device,
        routes::share_device,
        routes::revoke_grant,
        routes::grants,
        routes::permit_join,
        routes::devices,
        routes::account,
        routes::blocks,
        routes::block,
        routes::transaction,
        routes::owner_proof,
        routes::state_proof,
        routes::validator_set,
        routes::dag_submit,
        routes::dag_parents,
        routes::dag_status,
        routes::events,
    )
)]
pub struct ApiDoc;

/// The API's routes under `/api/v1`, with default limits.
pub fn router<G: Gateway>(gateway: G) -> Router {
    router_with(gateway, Limits::default())
}

/// The API's routes with the given per-key limits.
pub fn router_with<G: Gateway>(gateway: G, limits: Limits) -> Router {
    let metrics = Arc::new(metrics::Metrics::new(|registry| {
        gateway.register_metrics(registry)
    }));
    let state = guard::AppState {
        gateway,
        guard: Arc::new(guard::Guard::new(limits)),
    };
    let signed = Router::new()
        .route("/api/v1/chain/status", get(routes::status::<G>))
        .route("/api/v1/chain/blocks", get(routes::blocks::<G>))
        .route("/api/v1/chain/blocks/{height}", get(routes::block::<G>))
        .route(
            "/api/v1/chain/transactions/{id}",
            get(routes::transaction::<G>),
        )
        .route(
            "/api/v1/chain/devices/{id}/owner",
            get(routes::owner_proof::<G>),
        )
        .route("/api/v1/chain/state-proof", post(routes::state_proof::<G>))
        .route(
            "/api/v1/chain/validator-sets/{hash}",
            get(routes::validator_set::<G>),
        )
        .route("/api/v1/dag/transactions", post(routes::dag_submit::<G>))
        .route("/api/v1/dag/parents", get(routes::dag_parents::<G>))
        .route(
            "/api/v1/dag/transactions/{id}",
            get(routes::dag_status::<G>),
        )
        .route("/api/v1/accounts/{id}", get(routes::account::<G>))
        .route("/api/v1/gateway", get(routes::gateway_info::<G>))
        .route("/api/v1/gateway/claim", post(routes::claim_gateway::<G>))
        .route(
            "/api/v1/mqtt/setup-codes",
            post(routes::mqtt_setup_code::<G>),
        )
        .route("/api/v1/lights", get(routes::lights::<G>))
        .route("/api/v1/lights/{id}", get(routes::light::<G>))
        .route("/api/v1/lights/{id}/state", put(routes::set_light::<G>))
        .route(
            "/api/v1/groups",
            get(routes::groups::<G>).post(routes::create_group::<G>),
        )
        .route("/api/v1/groups/{id}", delete(routes::delete_group::<G>))
        .route("/api/v1/groups/{id}/state", put(routes::set_group::<G>))
        .route(
            "/api/v1/groups/{id}/scenes",
            get(routes::scenes::<G>).post(routes::store_scene::<G>),
        )
        .route(
            "/api/v1/scenes/{id}/recall",
            post(routes::recall_scene::<G>),
        )
        .route(
            "/api/v1/devices/{id}/claim-authorization",
            get(routes::claim_authorization::<G>),
        )
        .route(
            "/api/v1/devices/{id}/claim",
            post(routes::claim_device::<G>),
        )
        .route(
            "/api/v1/devices/{id}/transfer",
            post(routes::transfer_device::<G>),
        )
        .route(
            "/api/v1/devices/{id}/grants",
            get(routes::grants::<G>).post(routes::share_device::<G>),
        )
        .route(
            "/api/v1/devices/{id}/grants/{grantee}",
            delete(routes::revoke_grant::<G>),
        )
        .route(
            "/api/v1/network/permit-join",
            post(routes::permit_join::<G>),
        )
        .route("/api/v1/network/devices", get(routes::devices::<G>))
        .route("/api/v1/events", get(routes::events::<G>))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::authenticate::<G>,
        ));
    let open = Router::new()
        .route("/api/v1/health", get(routes::health))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route(
            "/api/v1/transactions",
            post(routes::submit::<G>).layer(DefaultBodyLimit::max(MAX_BODY)),
        );
    let metrics_route = Router::new()
        .route("/metrics", get(metrics::serve))
        .with_state(metrics.clone());
    signed
        .merge(open)
        .with_state(state)
        .merge(metrics_route)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
}
