//! The middleware every signed route passes through: body limit, signature,
//! per-key rate limit, freshness and replay, in that order. The verified
//! [`Caller`] is handed to the handler as a request extension.
//!
//! The signature is checked before anything is remembered, so a stranger's
//! requests cost a verification but never take a nonce slot or a caller's
//! rate budget.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use itc_chain::crypto::PublicKey;

use crate::auth::{verify, ReplayGuard};
use crate::error::ApiError;
use crate::gateway::Gateway;

/// Largest body of a signed request (a light command, an ownership
/// transaction, a group).
pub const MAX_SIGNED_BODY: usize = 64 * 1024;

/// Limits per caller key.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sustained requests per second per key.
    pub per_second: u32,
    /// Burst allowance per key.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_second: 200,
            burst: 400,
        }
    }
}

/// What the guard keeps between requests.
pub struct Guard {
    replay: Mutex<ReplayGuard>,
    limiter: DefaultKeyedRateLimiter<PublicKey>,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        let per_second = NonZeroU32::new(limits.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Guard {
            replay: Mutex::new(ReplayGuard::default()),
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        }
    }
}

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState<G> {
    pub gateway: G,
    pub guard: Arc<Guard>,
}

/// The signed-request middleware.
pub async fn authenticate<G: Gateway>(
    State(state): State<AppState<G>>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn check<G: Gateway>(state: &AppState<G>, request: Request) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_SIGNED_BODY)
        .await
        .map_err(|_| ApiError::TooLarge {
            detail: format!("the body is larger than {MAX_SIGNED_BODY} bytes"),
        })?;
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = verify(
        authorization,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &bytes,
    )?;
    if state.guard.limiter.check_key(&caller.key).is_err() {
        return Err(ApiError::TooManyRequests {
            detail: format!("{} is over its request rate; slow down", caller.key),
        });
    }
    state
        .guard
        .replay
        .lock()
        .map_err(|_| ApiError::unavailable("the replay guard failed"))?
        .check(state.gateway.now_ms(), &caller)?;
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(caller);
    Ok(request)
}
