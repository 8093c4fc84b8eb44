//! Who administers this gateway, and how the first person becomes that:
//! the one-time claim code.
//!
//! There is no default password. While nobody administers the gateway it
//! makes a fresh random code at start, prints it on its console (where only
//! someone with the device in hand sees it) and keeps its SHA-256 in
//! sqlite. The first signed request carrying the code makes its signer the
//! administrator and erases the code. Wrong guesses are limited gateway-wide
//! so the code's 50 bits cannot be searched.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use itc_chain::crypto::{Hash, PublicKey, Signature};
use ring::rand::SecureRandom;
use sqlx::{Row, SqlitePool};

use super::ServiceError;
use crate::store::StoreError;

/// Crockford's base32 alphabet: no I, L, O or U to misread.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code (10 × 5 = 50 bits).
const CODE_LEN: usize = 10;

/// Claim attempts allowed per minute, gateway-wide.
const ATTEMPTS_PER_MINUTE: u32 = 10;

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("this gateway has already been claimed")]
    AlreadyClaimed,
    #[error("that is not this gateway's claim code")]
    WrongCode,
    #[error("too many claim attempts; wait a minute")]
    TooManyAttempts,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The admin list, mirrored in memory for per-request checks.
pub struct Admins {
    admins: HashSet<PublicKey>,
    /// Admins' consents to own what the gateway pairs.
    adoptions: BTreeMap<PublicKey, Signature>,
    code_hash: Option<Hash>,
    attempts: DefaultDirectRateLimiter,
}

fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn hash_code(code: &str) -> Hash {
    Hash::digest_parts(&[b"itc-claim-code", normalize(code).as_bytes()])
}

impl Admins {
    /// Loads the admins; if there are none, makes a new claim code and
    /// returns it for the console.
    pub async fn load(
        pool: SqlitePool,
        rng: &dyn SecureRandom,
    ) -> Result<(Admins, Option<String>), ServiceError> {
        let rows = sqlx::query("SELECT account, adoption FROM gateway_admins")
            .fetch_all(&pool)
            .await
            .map_err(StoreError::from)?;
        let mut admins = HashSet::new();
        let mut adoptions = BTreeMap::new();
        for row in rows {
            let bytes: Vec<u8> = row.try_get(0).map_err(StoreError::from)?;
            let adoption: Option<Vec<u8>> = row.try_get(1).map_err(StoreError::from)?;
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                admins.insert(PublicKey(key));
                if let Some(Ok(signature)) = adoption.map(|a| <[u8; 64]>::try_from(a.as_slice())) {
                    adoptions.insert(PublicKey(key), Signature(signature));
                }
            }
        }
        let quota =
            Quota::per_minute(NonZeroU32::new(ATTEMPTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN));
        let mut this = Admins {
            admins,
            adoptions,
            code_hash: None,
            attempts: RateLimiter::direct(quota),
        };
        if !this.admins.is_empty() {
            return Ok((this, None));
        }
        let mut random = [0u8; CODE_LEN];
        rng.fill(&mut random).map_err(|_| ServiceError::Random)?;
        let code: String = random
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        let hash = hash_code(&code);
        sqlx::query("INSERT OR REPLACE INTO gateway_claim (id, code_hash) VALUES (0, ?)")
            .bind(hash.0.to_vec())
            .execute(&pool)
            .await
            .map_err(StoreError::from)?;
        this.code_hash = Some(hash);
        let shown = format!("{}-{}", &code[..5], &code[5..]);
        Ok((this, Some(shown)))
    }

    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admins.contains(key)
    }

    /// The administrator who consented to own what the gateway pairs, and
    /// the consent (the first by key, if several did).
    pub fn adoption(&self) -> Option<(PublicKey, Signature)> {
        self.adoptions.iter().next().map(|(k, s)| (*k, *s))
    }

    pub fn claimed(&self) -> bool {
        !self.admins.is_empty()
    }

    /// Checks a code without changing anything: the caller then commits the
    /// claim with [`Admins::add`].
    pub fn check(&self, code: &str) -> Result<(), ClaimError> {
        if self.claimed() {
            return Err(ClaimError::AlreadyClaimed);
        }
        if self.attempts.check().is_err() {
            return Err(ClaimError::TooManyAttempts);
        }
        match self.code_hash {
            Some(hash) if hash == hash_code(code) => Ok(()),
            _ => Err(ClaimError::WrongCode),
        }
    }

    /// The statements that make `key` the administrator and erase the code.
    pub async fn add(
        pool: &SqlitePool,
        key: &PublicKey,
        now_ms: u64,
        adoption: Option<&Signature>,
    ) -> Result<(), StoreError> {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO gateway_admins (account, added_ms, adoption) VALUES (?, ?, ?)",
        )
        .bind(key.0.to_vec())
        .bind(now_ms as i64)
        .bind(adoption.map(|s| s.0.to_vec()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM gateway_claim")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records in memory what [`Admins::add`] stored.
    pub fn added(&mut self, key: PublicKey, adoption: Option<Signature>) {
        self.admins.insert(key);
        if let Some(consent) = adoption {
            self.adoptions.insert(key, consent);
        }
        self.code_hash = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_forgivingly() {
        assert_eq!(hash_code("abcde-12345"), hash_code("ABCDE12345"));
        assert_eq!(hash_code(" AbCdE 12345 "), hash_code("ABCDE12345"));
        assert_ne!(hash_code("ABCDE12345"), hash_code("ABCDE12346"));
    }
}
