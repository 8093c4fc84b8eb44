//! # itc-web: the gateway's REST API
//!
//! Speaks HTTP (axum + tower) and calls into the gateway through the
//! [`Gateway`] trait; it holds no chain logic of its own.
//!
//! Today it serves what the consensus layer needs from clients: health,
//! chain status, and submission of signed transactions (a transaction
//! carries its sender's signature, so submitting one needs no further
//! authentication). The lighting and ownership API with signed requests
//! builds on this router.
//!
//! Errors are RFC 7807 `application/problem+json`.

use std::future::Future;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use itc_chain::codec::decode;
use itc_chain::tx::SignedTx;
use serde::{Deserialize, Serialize};

/// Largest request body: a batch of transactions.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Most transactions per submission.
pub const MAX_BATCH: usize = 10_000;

/// The chain as a client sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainStatus {
    pub height: u64,
    pub head: String,
    pub view: u64,
    pub changing_view: bool,
    pub pending: usize,
}

/// What the API needs from the gateway.
pub trait Gateway: Clone + Send + Sync + 'static {
    fn status(&self) -> ChainStatus;
    /// Hands signed transactions to the replica; `false` if it has stopped.
    fn submit(&self, txs: Vec<SignedTx>) -> impl Future<Output = bool> + Send;
}

/// A submission: transactions in their canonical encoding, hex.
#[derive(Debug, Serialize, Deserialize)]
pub struct Submit {
    pub txs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Submitted {
    /// The transactions' ids, in order.
    pub ids: Vec<String>,
}

/// An RFC 7807 problem.
#[derive(Debug, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

fn problem(status: StatusCode, title: &str, detail: String) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: title.into(),
        status: status.as_u16(),
        detail,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

/// The API's routes under `/api/v1`.
pub fn router<G: Gateway>(gateway: G) -> Router {
    Router::new()
        .route("/api/v1/health", get(|| async { "ok" }))
        .route("/api/v1/chain/status", get(status::<G>))
        .route("/api/v1/transactions", post(submit::<G>))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(gateway)
}

async fn status<G: Gateway>(State(gateway): State<G>) -> Json<ChainStatus> {
    Json(gateway.status())
}

async fn submit<G: Gateway>(
    State(gateway): State<G>,
    body: Result<Json<Submit>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return problem(
                rejection.status(),
                "Malformed request",
                rejection.body_text(),
            )
        }
    };
    if body.txs.len() > MAX_BATCH {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many transactions",
            format!(
                "{} transactions; at most {MAX_BATCH} per request",
                body.txs.len()
            ),
        );
    }
    let mut txs = Vec::with_capacity(body.txs.len());
    for (index, text) in body.txs.iter().enumerate() {
        let tx = hex::decode(text)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode::<SignedTx>(&bytes).map_err(|e| e.to_string()));
        match tx {
            Ok(tx) => txs.push(tx),
            Err(error) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Malformed transaction",
                    format!("transaction {index}: {error}"),
                )
            }
        }
    }
    let ids = txs.iter().map(|tx| tx.hash().to_string()).collect();
    if !gateway.submit(txs).await {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Gateway stopping",
            "the replica is shutting down".into(),
        );
    }
    (StatusCode::ACCEPTED, Json(Submitted { ids })).into_response()
}
