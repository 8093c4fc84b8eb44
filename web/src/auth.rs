//! Signed requests: how a caller proves who it is to a gateway, with no
//! passwords and no sessions.
//!
//! Every request but health and the OpenAPI document carries
//!
//! ```text
//! Authorization: ITC-Ed25519 key=<itcpk1…>,ts=<unix ms>,nonce=<32 hex>,sig=<ed25519:…>
//! ```
//!
//! where `sig` is the caller's Ed25519 signature, under the
//! [`Domain::ApiRequest`] separation, over [`signing_payload`]: the method,
//! the path, the raw query string, the timestamp, the nonce and the SHA-256
//! of the body. Nothing a proxy may rewrite is left out and nothing else is
//! in, so a signature fits exactly one request.
//!
//! The server accepts a timestamp within [`MAX_SKEW_MS`] of its clock and
//! remembers each (key, nonce) for as long as its timestamp would still be
//! accepted ([`ReplayGuard`]), so a captured request cannot be sent again.
//! Both are pure: the clock reading comes in as an argument.

use std::collections::{HashSet, VecDeque};

use itc_chain::crypto::{Domain, Hash, Keypair, PublicKey, Signature};

/// The authorization scheme's name.
pub const SCHEME: &str = "ITC-Ed25519";

/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

/// Most nonces remembered at once; beyond it requests are refused until
/// old ones age out (so a flood cannot grow the memory without bound).
pub const MAX_REMEMBERED: usize = 1_000_000;

/// A verified caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub key: PublicKey,
    pub ts_ms: u64,
    pub nonce: [u8; 16],
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request is not signed: send an `Authorization: {SCHEME} …` header")]
    Missing,
    #[error("the Authorization header is malformed: {reason}")]
    Malformed { reason: String },
    #[error("the signature does not match the request and key {key}")]
    BadSignature { key: PublicKey },
    #[error("the request's timestamp {ts_ms} is {skew_ms} ms from the gateway's clock (at most {MAX_SKEW_MS} ms allowed)")]
    Stale { ts_ms: u64, skew_ms: u64 },
    #[error("nonce {nonce} was already used by {key}: requests cannot be replayed")]
    Replayed { key: PublicKey, nonce: String },
    #[error("too many requests are in flight to remember their nonces; retry shortly")]
    Busy,
}

/// What is signed: the request's parts, one per line, after a version tag.
pub fn signing_payload(
    method: &str,
    path: &str,
    query: &str,
    ts_ms: u64,
    nonce: &[u8; 16],
    body: &[u8],
) -> Vec<u8> {
    format!(
        "ITC-REQUEST-V1\n{method}\n{path}\n{query}\n{ts_ms}\n{}\n{}",
        hex::encode(nonce),
        hex::encode(Hash::digest(body).0)
    )
    .into_bytes()
}

/// The `Authorization` header value for a request.
pub fn authorization(
    key: &Keypair,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    ts_ms: u64,
    nonce: [u8; 16],
) -> String {
    let payload = signing_payload(method, path, query, ts_ms, &nonce, body);
    let sig = key.sign(Domain::ApiRequest, &payload);
    format!(
        "{SCHEME} key={},ts={ts_ms},nonce={},sig={sig}",
        key.public(),
        hex::encode(nonce)
    )
}

/// Checks a request's `Authorization` header against the request. Says who
/// signed it; freshness and replay are [`ReplayGuard`]'s.
pub fn verify(
    header: Option<&str>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Caller, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let malformed = |reason: &str| AuthError::Malformed {
        reason: reason.into(),
    };
    let params = header
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| malformed("expected the ITC-Ed25519 scheme"))?;
    let (mut key, mut ts, mut nonce, mut sig) = (None, None, None, None);
    for part in params.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected name=value pairs"))?;
        let slot = match name {
            "key" => &mut key,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "sig" => &mut sig,
            _ => return Err(malformed(&format!("unknown parameter {name:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(&format!("{name} given twice")));
        }
    }
    let key: PublicKey = key
        .ok_or_else(|| malformed("key missing"))?
        .parse()
        .map_err(|e| malformed(&format!("key: {e}")))?;
    let ts_ms: u64 = ts
        .ok_or_else(|| malformed("ts missing"))?
        .parse()
        .map_err(|_| malformed("ts must be unix milliseconds"))?;
    let nonce: [u8; 16] = hex::decode(nonce.ok_or_else(|| malformed("nonce missing"))?)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| malformed("nonce must be 16 bytes of hex"))?;
    let sig: Signature = sig
        .ok_or_else(|| malformed("sig missing"))?
        .parse()
        .map_err(|e| malformed(&format!("sig: {e}")))?;
    let payload = signing_payload(method, path, query, ts_ms, &nonce, body);
    key.verify(Domain::ApiRequest, &payload, &sig)
        .map_err(|_| AuthError::BadSignature { key })?;
    Ok(Caller { key, ts_ms, nonce })
}

/// Remembers recent nonces so each signed request is accepted once.
#[derive(Default)]
pub struct ReplayGuard {
    seen: HashSet<(PublicKey, [u8; 16])>,
    /// (expiry, key, nonce) in arrival order; expiries are not monotonic
    /// but bounded, so entries are kept until all before them expired.
    order: VecDeque<(u64, PublicKey, [u8; 16])>,
}

impl ReplayGuard {
    /// Accepts `caller` at `now_ms` if its timestamp is fresh and its nonce
    /// new, and remembers the nonce.
    pub fn check(&mut self, now_ms: u64, caller: &Caller) -> Result<(), AuthError> {
        let skew_ms = now_ms.abs_diff(caller.ts_ms);
        if skew_ms > MAX_SKEW_MS {
            return Err(AuthError::Stale {
                ts_ms: caller.ts_ms,
                skew_ms,
            });
        }
        while let Some((expiry, key, nonce)) = self.order.front() {
            if *expiry > now_ms {
                break;
            }
            self.seen.remove(&(*key, *nonce));
            self.order.pop_front();
        }
        if self.seen.contains(&(caller.key, caller.nonce)) {
            return Err(AuthError::Replayed {
                key: caller.key,
                nonce: hex::encode(caller.nonce),
            });
        }
        if self.seen.len() >= MAX_REMEMBERED {
            return Err(AuthError::Busy);
        }
        // A timestamp is accepted until ts + skew; the nonce must be
        // remembered at least that long.
        let expiry = caller.ts_ms + MAX_SKEW_MS + 1;
        self.seen.insert((caller.key, caller.nonce));
        self.order
            .push_back((expiry.max(now_ms), caller.key, caller.nonce));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_seed([n; 32])
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let alice = key(1);
        let header = authorization(&alice, "PUT", "/api/v1/lights/x", "a=1", b"{}", 5, [9; 16]);
        let caller = verify(Some(&header), "PUT", "/api/v1/lights/x", "a=1", b"{}").unwrap();
        assert_eq!(caller.key, alice.public());
        assert_eq!(caller.ts_ms, 5);
        for (method, path, query, body) in [
            ("POST", "/api/v1/lights/x", "a=1", &b"{}"[..]),
            ("PUT", "/api/v1/lights/y", "a=1", b"{}"),
            ("PUT", "/api/v1/lights/x", "a=2", b"{}"),
            ("PUT", "/api/v1/lights/x", "a=1", b"{ }"),
        ] {
            assert_eq!(
                verify(Some(&header), method, path, query, body),
                Err(AuthError::BadSignature {
                    key: alice.public()
                })
            );
        }
        // Someone else's key in the header with Alice's signature.
        let forged = header.replace(&alice.public().to_string(), &key(2).public().to_string());
        assert!(matches!(
            verify(Some(&forged), "PUT", "/api/v1/lights/x", "a=1", b"{}"),
            Err(AuthError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_named() {
        for header in [
            "Bearer abc",
            "ITC-Ed25519 key=x",
            "ITC-Ed25519 ts=1,ts=2",
            "ITC-Ed25519 nonsense",
        ] {
            assert!(matches!(
                verify(Some(header), "GET", "/", "", b""),
                Err(AuthError::Malformed { .. })
            ));
        }
        assert_eq!(verify(None, "GET", "/", "", b""), Err(AuthError::Missing));
    }

    #[test]
    fn stale_and_replayed_requests_are_refused() {
        let mut guard = ReplayGuard::default();
        let caller = Caller {
            key: key(1).public(),
            ts_ms: 100_000,
            nonce: [1; 16],
        };
        assert!(matches!(
            guard.check(100_000 + MAX_SKEW_MS + 1, &caller),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            guard.check(100_000 - MAX_SKEW_MS - 1, &caller),
            Err(AuthError::Stale { .. })
        ));
        guard.check(100_000, &caller).unwrap();
        assert!(matches!(
            guard.check(100_001, &caller),
            Err(AuthError::Replayed { .. })
        ));
        // The same nonce from another key is another request.
        let other = Caller {
            key: key(2).public(),
            ..caller
        };
        guard.check(100_001, &other).unwrap();
        // Once the timestamp is too old to be accepted the nonce is dropped.
        guard
            .check(
                100_000 + MAX_SKEW_MS + 2,
                &Caller {
                    nonce: [3; 16],
                    ts_ms: 100_000 + MAX_SKEW_MS + 2,
                    ..caller
                },
            )
            .unwrap();
        assert_eq!(guard.len(), 1);
    }
}
