//! MQTT logins and setup codes, in the gateway's sqlite.
//!
//! Secrets are drawn from the OS, shown once, and stored only as their
//! SHA-256 (under a domain prefix); a login is looked up by username and
//! its digest compared. There is no default login.

use itc_chain::crypto::{AccountId, Hash, PublicKey, Signature};
use ring::rand::SecureRandom;
use sqlx::{Row, SqlitePool};

use crate::store::StoreError;

/// How long a setup code is good for.
pub const SETUP_CODE_TTL_MS: u64 = 15 * 60 * 1000;

/// What a login is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Device {
        device: String,
    },
    Integration {
        name: String,
        account: AccountId,
    },
    /// A new device with a valid, unused setup code.
    Setup,
}

/// The owner a setup code was made for, with their adoption consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupGrant {
    pub owner: AccountId,
    pub consent: Signature,
}

/// Why a login could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the system random generator failed")]
    Random,
    #[error("{0:?} is not a usable name: letters, digits, '-', '_' and '.', up to 64")]
    BadName(String),
    #[error("an MQTT user {0:?} exists already")]
    Exists(String),
}

fn digest(domain: &[u8], secret: &str) -> Hash {
    Hash::digest_parts(&[domain, secret.as_bytes()])
}

fn password_hash(password: &str) -> Hash {
    digest(b"itc-mqtt-password\0", password)
}

fn code_hash(code: &str) -> Hash {
    digest(b"itc-mqtt-setup\0", code.trim())
}

/// 32 random bytes, hex.
pub fn new_secret(rng: &(dyn SecureRandom + Sync)) -> Result<String, LoginError> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).map_err(|_| LoginError::Random)?;
    Ok(hex::encode(bytes))
}

fn sqlite(e: sqlx::Error) -> LoginError {
    LoginError::Store(StoreError::from(e))
}

/// Checks a username and password.
pub async fn authenticate(
    pool: &SqlitePool,
    username: &str,
    password: &str,
) -> Result<Option<Login>, LoginError> {
    if username == "setup" {
        // Any code this gateway made gets in, so that a used or expired one
        // is refused with its reason on the response topic; an unknown one
        // is refused at the door.
        let known = sqlx::query("SELECT 1 FROM mqtt_setup_codes WHERE code_hash = ?")
            .bind(code_hash(password).0.to_vec())
            .fetch_optional(pool)
            .await
            .map_err(sqlite)?;
        return Ok(known.map(|_| Login::Setup));
    }
    let row = sqlx::query("SELECT secret_hash, device, account FROM mqtt_users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await
        .map_err(sqlite)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get(0).map_err(sqlite)?;
    if stored != password_hash(password).0 {
        return Ok(None);
    }
    let device: Option<String> = row.try_get(1).map_err(sqlite)?;
    let account: Option<Vec<u8>> = row.try_get(2).map_err(sqlite)?;
    Ok(match (device, account) {
        (Some(device), _) => Some(Login::Device { device }),
        (None, Some(account)) => {
            <[u8; 32]>::try_from(account.as_slice())
                .ok()
                .map(|key| Login::Integration {
                    name: username.into(),
                    account: PublicKey(key),
                })
        }
        (None, None) => None,
    })
}

/// Makes a one-time setup code for `owner`.
pub async fn issue_setup_code(
    pool: &SqlitePool,
    rng: &(dyn SecureRandom + Sync),
    grant: &SetupGrant,
    now_ms: u64,
) -> Result<(String, u64), LoginError> {
    let code = new_secret(rng)?[..20].to_string();
    let expires = now_ms + SETUP_CODE_TTL_MS;
    sqlx::query(
        "INSERT INTO mqtt_setup_codes (code_hash, owner, consent, expires_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(code_hash(&code).0.to_vec())
    .bind(grant.owner.0.to_vec())
    .bind(grant.consent.0.to_vec())
    .bind(expires as i64)
    .execute(pool)
    .await
    .map_err(sqlite)?;
    Ok((code, expires))
}

/// Why a setup code cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the setup code is not known")]
    Unknown,
    #[error("the setup code was used already")]
    Used,
    #[error("the setup code expired")]
    Expired,
}

/// Spends a setup code (once): returns whom it was for.
pub async fn take_setup_code(
    pool: &SqlitePool,
    code: &str,
    now_ms: u64,
) -> Result<Result<SetupGrant, CodeError>, LoginError> {
    let hash = code_hash(code).0.to_vec();
    let row = sqlx::query(
        "SELECT owner, consent, expires_ms, used_ms FROM mqtt_setup_codes WHERE code_hash = ?",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await
    .map_err(sqlite)?;
    let Some(row) = row else {
        return Ok(Err(CodeError::Unknown));
    };
    let used: Option<i64> = row.try_get(3).map_err(sqlite)?;
    if used.is_some() {
        return Ok(Err(CodeError::Used));
    }
    let expires: i64 = row.try_get(2).map_err(sqlite)?;
    if expires as u64 <= now_ms {
        return Ok(Err(CodeError::Expired));
    }
    // Spent atomically: of two hellos with one code, one wins.
    let spent = sqlx::query(
        "UPDATE mqtt_setup_codes SET used_ms = ? WHERE code_hash = ? AND used_ms IS NULL",
    )
    .bind(now_ms as i64)
    .bind(&hash)
    .execute(pool)
    .await
    .map_err(sqlite)?;
    if spent.rows_affected() != 1 {
        return Ok(Err(CodeError::Used));
    }
    let owner: Vec<u8> = row.try_get(0).map_err(sqlite)?;
    let consent: Vec<u8> = row.try_get(1).map_err(sqlite)?;
    match (
        <[u8; 32]>::try_from(owner.as_slice()),
        <[u8; 64]>::try_from(consent.as_slice()),
    ) {
        (Ok(owner), Ok(consent)) => Ok(Ok(SetupGrant {
            owner: PublicKey(owner),
            consent: Signature(consent),
        })),
        _ => Ok(Err(CodeError::Unknown)),
    }
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Adds (or replaces) a device's login; returns its password.
pub async fn add_device(
    pool: &SqlitePool,
    rng: &(dyn SecureRandom + Sync),
    device: &str,
    now_ms: u64,
) -> Result<String, LoginError> {
    let password = new_secret(rng)?;
    sqlx::query(
        "INSERT OR REPLACE INTO mqtt_users (username, secret_hash, device, account, created_ms) VALUES (?, ?, ?, NULL, ?)",
    )
    .bind(device)
    .bind(password_hash(&password).0.to_vec())
    .bind(device)
    .bind(now_ms as i64)
    .execute(pool)
    .await
    .map_err(sqlite)?;
    Ok(password)
}

/// Adds an integration's login acting for `account`; returns its password.
pub async fn add_integration(
    pool: &SqlitePool,
    rng: &(dyn SecureRandom + Sync),
    name: &str,
    account: &AccountId,
    now_ms: u64,
) -> Result<String, LoginError> {
    // Names are topic levels and must not look like device ids.
    if !plain_name(name) || name == "setup" {
        return Err(LoginError::BadName(name.into()));
    }
    let password = new_secret(rng)?;
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO mqtt_users (username, secret_hash, device, account, created_ms) VALUES (?, ?, NULL, ?, ?)",
    )
    .bind(name)
    .bind(password_hash(&password).0.to_vec())
    .bind(account.0.to_vec())
    .bind(now_ms as i64)
    .execute(pool)
    .await
    .map_err(sqlite)?;
    if inserted.rows_affected() == 0 {
        return Err(LoginError::Exists(name.into()));
    }
    Ok(password)
}

/// The highest accepted report sequence number of each device that has
/// one.
pub async fn report_sequences(
    pool: &SqlitePool,
) -> Result<std::collections::HashMap<String, u64>, LoginError> {
    let rows = sqlx::query(
        "SELECT device, last_seq FROM mqtt_users WHERE device IS NOT NULL AND last_seq IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .map_err(sqlite)?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let device: String = row.try_get(0).map_err(sqlite)?;
        let seq: i64 = row.try_get(1).map_err(sqlite)?;
        out.insert(device, seq as u64);
    }
    Ok(out)
}

/// Records devices' highest accepted sequence numbers, in one transaction.
pub async fn save_report_sequences(
    pool: &SqlitePool,
    sequences: &[(String, u64)],
) -> Result<(), LoginError> {
    let mut db = pool.begin().await.map_err(sqlite)?;
    for (device, seq) in sequences {
        sqlx::query(
            "UPDATE mqtt_users SET last_seq = MAX(COALESCE(last_seq, 0), ?) WHERE username = ?",
        )
        .bind(*seq as i64)
        .bind(device)
        .execute(&mut *db)
        .await
        .map_err(sqlite)?;
    }
    db.commit().await.map_err(sqlite)?;
    Ok(())
}

/// The account an integration acts for.
pub async fn integration_account(
    pool: &SqlitePool,
    name: &str,
) -> Result<Option<AccountId>, LoginError> {
    let row =
        sqlx::query("SELECT account FROM mqtt_users WHERE username = ? AND account IS NOT NULL")
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(sqlite)?;
    Ok(row
        .and_then(|row| row.try_get::<Vec<u8>, _>(0).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .map(PublicKey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logins_codes_and_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("g.sqlite"))
            .await
            .unwrap();
        let pool = store.pool();
        let rng = ring::rand::SystemRandom::new();
        let password = add_device(pool, &rng, "mqtt:a", 1).await.unwrap();
        assert_eq!(
            authenticate(pool, "mqtt:a", &password).await.unwrap(),
            Some(Login::Device {
                device: "mqtt:a".into()
            })
        );
        assert_eq!(authenticate(pool, "mqtt:a", "guess").await.unwrap(), None);
        assert_eq!(authenticate(pool, "nobody", &password).await.unwrap(), None);
        // A setup code is spent once and expires.
        let owner = itc_chain::crypto::Keypair::from_seed([1; 32]);
        let grant = SetupGrant {
            owner: owner.public(),
            consent: Signature([7; 64]),
        };
        let (code, expires) = issue_setup_code(pool, &rng, &grant, 1_000).await.unwrap();
        assert_eq!(
            authenticate(pool, "setup", &code).await.unwrap(),
            Some(Login::Setup)
        );
        assert_eq!(
            take_setup_code(pool, &code, expires).await.unwrap(),
            Err(CodeError::Expired)
        );
        assert_eq!(
            take_setup_code(pool, &code, 2_000).await.unwrap(),
            Ok(grant)
        );
        assert_eq!(
            take_setup_code(pool, &code, 2_000).await.unwrap(),
            Err(CodeError::Used)
        );
        assert_eq!(
            take_setup_code(pool, "no-such-code", 2_000).await.unwrap(),
            Err(CodeError::Unknown)
        );
        // Sequence numbers only grow, and survive a reopen.
        save_report_sequences(pool, &[("mqtt:a".into(), 9)])
            .await
            .unwrap();
        save_report_sequences(pool, &[("mqtt:a".into(), 4)])
            .await
            .unwrap();
        store.close().await;
        let store = crate::store::SqliteStore::open(&dir.path().join("g.sqlite"))
            .await
            .unwrap();
        let seqs = report_sequences(store.pool()).await.unwrap();
        assert_eq!(seqs.get("mqtt:a"), Some(&9));
        // Integration names are checked and unique.
        let account = owner.public();
        assert!(add_integration(store.pool(), &rng, "ha", &account, 1)
            .await
            .is_ok());
        assert!(matches!(
            add_integration(store.pool(), &rng, "ha", &account, 1).await,
            Err(LoginError::Exists(_))
        ));
        assert!(matches!(
            add_integration(store.pool(), &rng, "a/b", &account, 1).await,
            Err(LoginError::BadName(_))
        ));
        assert_eq!(
            integration_account(store.pool(), "ha").await.unwrap(),
            Some(account)
        );
        store.close().await;
    }
}
