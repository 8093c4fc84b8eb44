//! The light client's driver: `itc-gateway light …`.
//!
//! Headers are fetched in batches from any gateway's REST API, verified by
//! the pure core (`itc_chain::light`) and kept in their own sqlite file
//! (`migrations/light/`): headers with certificates, and the validator sets
//! that signed them — nothing else of the chain. A sync resumes from the
//! stored tip. A gateway that serves a header the core refuses is named and
//! left; the sync carries on with the next one. Each batch is stored in one
//! sqlite transaction, so a killed sync leaves a consistent prefix.

use std::path::Path;

use itc_chain::block::{CommitCertificate, Header};
use itc_chain::codec::{decode, encode};
use itc_chain::crypto::{AccountId, Keypair};
use itc_chain::genesis::Genesis;
use itc_chain::ledger::Ledger;
use itc_chain::light::{verify_state, LightClient};
use itc_chain::state::{StateKey, StateProof, StateValue};
use itc_chain::types::DeviceId;
use itc_chain::validators::ValidatorSet;
use itc_web::client::Client;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

/// Headers fetched per request.
pub const BATCH: u64 = 100;

/// Why the light client stopped.
#[derive(Debug, thiserror::Error)]
pub enum LightSyncError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the genesis: {0}")]
    Genesis(String),
    #[error("the stored {what} does not decode")]
    Corrupt { what: &'static str },
    #[error("every gateway failed or served bad headers: {0:?}")]
    NoGoodSource(Vec<(String, String)>),
    #[error("the proof does not hold against the stored header at height {height}: {reason}")]
    BadProof { height: u64, reason: String },
    #[error("gateway {url}: {reason}")]
    Source { url: String, reason: String },
}

/// The light client's store.
#[derive(Clone)]
pub struct HeaderStore {
    pool: SqlitePool,
}

impl HeaderStore {
    pub async fn open(path: &Path) -> Result<HeaderStore, LightSyncError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/light").run(&pool).await?;
        Ok(HeaderStore { pool })
    }

    /// The stored tip and the set that signed it.
    pub async fn tip(&self) -> Result<Option<(Header, ValidatorSet)>, LightSyncError> {
        let Some(row) =
            sqlx::query("SELECT header FROM light_headers ORDER BY height DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let bytes: Vec<u8> = row.try_get(0)?;
        let header: Header =
            decode(&bytes).map_err(|_| LightSyncError::Corrupt { what: "header" })?;
        let row = sqlx::query("SELECT \"set\" FROM light_sets WHERE hash = ?")
            .bind(header.validators_hash.0.to_vec())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(LightSyncError::Corrupt {
                what: "validator set",
            })?;
        let bytes: Vec<u8> = row.try_get(0)?;
        let set: ValidatorSet = decode(&bytes).map_err(|_| LightSyncError::Corrupt {
            what: "validator set",
        })?;
        Ok(Some((header, set)))
    }

    /// A stored header.
    pub async fn header(&self, height: u64) -> Result<Option<Header>, LightSyncError> {
        let Some(row) = sqlx::query("SELECT header FROM light_headers WHERE height = ?")
            .bind(height as i64)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let bytes: Vec<u8> = row.try_get(0)?;
        decode(&bytes)
            .map(Some)
            .map_err(|_| LightSyncError::Corrupt { what: "header" })
    }

    /// Stores verified headers (and the sets that signed them) in one
    /// transaction.
    async fn append(
        &self,
        headers: &[(Header, Option<CommitCertificate>)],
        set: &ValidatorSet,
    ) -> Result<(), LightSyncError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO light_sets (hash, \"set\") VALUES (?, ?)")
            .bind(set.hash().0.to_vec())
            .bind(encode(set))
            .execute(&mut *tx)
            .await?;
        for (header, certificate) in headers {
            sqlx::query(
                "INSERT INTO light_headers (height, hash, header, certificate) VALUES (?, ?, ?, ?)",
            )
            .bind(header.height as i64)
            .bind(header.hash().0.to_vec())
            .bind(encode(header))
            .bind(certificate.as_ref().map(encode))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes the store; the last connection folds the WAL into the file.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// How many headers are stored.
    pub async fn count(&self) -> Result<u64, LightSyncError> {
        let row = sqlx::query("SELECT COUNT(*) FROM light_headers")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub from: u64,
    pub to: u64,
    pub fetched: u64,
    /// Gateways left because they failed or served bad headers, and why.
    pub refused: Vec<(String, String)>,
}

/// Opens the light client at the stored tip, or at the genesis.
async fn client(store: &HeaderStore, genesis: &Genesis) -> Result<LightClient, LightSyncError> {
    if let Some((tip, set)) = store.tip().await? {
        return LightClient::new(tip, set).map_err(|e| LightSyncError::Genesis(e.to_string()));
    }
    let (_, executed) =
        Ledger::genesis(genesis).map_err(|e| LightSyncError::Genesis(e.to_string()))?;
    let set = ValidatorSet::new(genesis.validators.clone())
        .map_err(|e| LightSyncError::Genesis(e.to_string()))?;
    let header = executed.block.header;
    store.append(&[(header.clone(), None)], &set).await?;
    LightClient::new(header, set).map_err(|e| LightSyncError::Genesis(e.to_string()))
}

/// How a sync moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every header, in order.
    Sequential,
    /// Straight to the newest header when more than a third of the trusted
    /// set vouches for it, bisecting when it does not (the Tendermint light
    /// client's skipping verification); only the headers it lands on are
    /// stored. The trusted tip must be younger than the trusting period.
    Skipping { trusting_period_ms: u64 },
}

/// Syncs headers from `urls` (in turn) until the first good one has
/// nothing newer. `progress` is told (height, target) after each batch.
pub async fn sync(
    urls: &[String],
    store: &HeaderStore,
    genesis: &Genesis,
    progress: impl Fn(u64, u64),
) -> Result<SyncReport, LightSyncError> {
    sync_with(urls, store, genesis, Mode::Sequential, progress).await
}

/// [`sync`], moving as `mode` says.
pub async fn sync_with(
    urls: &[String],
    store: &HeaderStore,
    genesis: &Genesis,
    mode: Mode,
    progress: impl Fn(u64, u64),
) -> Result<SyncReport, LightSyncError> {
    let mut light = client(store, genesis).await?;
    let mut report = SyncReport {
        from: light.tip().height,
        to: light.tip().height,
        ..SyncReport::default()
    };
    // Requests are signed by a throwaway key: reading headers needs no
    // identity.
    let rng = ring::rand::SystemRandom::new();
    let key = Keypair::generate(&rng).map_err(|e| LightSyncError::Genesis(e.to_string()))?;
    let mut sources: Vec<String> = urls.to_vec();
    while let Some(url) = sources.first().cloned() {
        let remote = Client::new(url.clone(), Keypair::from_seed(*key.seed()));
        let pulled = match mode {
            Mode::Sequential => pull(&remote, &mut light, store, &mut report, &progress).await,
            Mode::Skipping { trusting_period_ms } => {
                skip(&remote, &mut light, store, &mut report, trusting_period_ms).await
            }
        };
        match pulled {
            Ok(()) => {
                report.to = light.tip().height;
                return Ok(report);
            }
            Err(reason) => {
                tracing::warn!(gateway = %url, %reason, "leaving this gateway");
                report.refused.push((url, reason));
                sources.remove(0);
            }
        }
    }
    report.to = light.tip().height;
    Err(LightSyncError::NoGoodSource(report.refused))
}

/// Pulls from one gateway until it has nothing newer; the error names what
/// it did wrong.
async fn pull(
    remote: &Client,
    light: &mut LightClient,
    store: &HeaderStore,
    report: &mut SyncReport,
    progress: &impl Fn(u64, u64),
) -> Result<(), String> {
    loop {
        let target = remote.status().await.map_err(|e| e.to_string())?.height;
        let from = light.tip().height + 1;
        if from > target {
            return Ok(());
        }
        let batch = remote
            .blocks(Some(from), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            return Err(format!(
                "claims height {target} but serves nothing from {from}"
            ));
        }
        // The batch is verified on a copy: only once it is stored does the
        // client move, so a batch refused half-way leaves nothing behind
        // (the next gateway serves it again from the stored tip).
        let mut next = light.clone();
        let mut verified = Vec::with_capacity(batch.len());
        for summary in batch {
            let header: Header = hex::decode(&summary.header)
                .ok()
                .and_then(|b| decode(&b).ok())
                .ok_or_else(|| format!("an undecodable header at height {}", summary.height))?;
            let certificate: CommitCertificate = summary
                .certificate
                .as_deref()
                .and_then(|c| hex::decode(c).ok())
                .and_then(|b| decode(&b).ok())
                .ok_or_else(|| format!("no valid certificate at height {}", summary.height))?;
            let height = header.height;
            let new_set = set_for(remote, &next, &header).await?;
            next.verify_next(header.clone(), &certificate, new_set.as_ref())
                .map_err(|e| format!("a bad header at height {height}: {e}"))?;
            verified.push((header, Some(certificate)));
        }
        store
            .append(&verified, next.set())
            .await
            .map_err(|e| format!("storing: {e}"))?;
        *light = next;
        report.fetched += verified.len() as u64;
        progress(light.tip().height, target);
    }
}

/// The set that signs `header`, fetched from the gateway when it is not the
/// one the client trusts now (the core checks it hashes to what the header
/// names, so the gateway is not trusted for it).
async fn set_for(
    remote: &Client,
    light: &LightClient,
    header: &Header,
) -> Result<Option<ValidatorSet>, String> {
    if header.validators_hash == light.set().hash() {
        return Ok(None);
    }
    let view = remote
        .validator_set(&header.validators_hash)
        .await
        .map_err(|e| {
            format!(
                "no validator set {} for height {}: {e}",
                header.validators_hash, header.height
            )
        })?;
    hex::decode(&view.encoded)
        .ok()
        .and_then(|bytes| decode(&bytes).ok())
        .map(Some)
        .ok_or_else(|| format!("an undecodable validator set {}", header.validators_hash))
}

/// Reaches the gateway's tip by skipping: try the target; if too few
/// trusted validators vouch for it, try halfway first (bisection).
async fn skip(
    remote: &Client,
    light: &mut LightClient,
    store: &HeaderStore,
    report: &mut SyncReport,
    trusting_period_ms: u64,
) -> Result<(), String> {
    let target = remote.status().await.map_err(|e| e.to_string())?.height;
    let mut pending = vec![target];
    while let Some(height) = pending.last().copied() {
        if height <= light.tip().height {
            pending.pop();
            continue;
        }
        let detail = remote.block(height).await.map_err(|e| e.to_string())?;
        let header: Header = hex::decode(&detail.summary.header)
            .ok()
            .and_then(|b| decode(&b).ok())
            .ok_or_else(|| format!("an undecodable header at height {height}"))?;
        let certificate: CommitCertificate = detail
            .summary
            .certificate
            .as_deref()
            .and_then(|c| hex::decode(c).ok())
            .and_then(|b| decode(&b).ok())
            .ok_or_else(|| format!("no valid certificate at height {height}"))?;
        if header.height != height {
            return Err(format!("asked for height {height}, got {}", header.height));
        }
        let now = crate::service::now_ms();
        let mut next = light.clone();
        let header_set = set_for(remote, &next, &header).await?;
        match next.verify_skipping(
            header.clone(),
            &certificate,
            header_set.as_ref(),
            now,
            trusting_period_ms,
        ) {
            Ok(()) => {
                store
                    .append(&[(header, Some(certificate))], next.set())
                    .await
                    .map_err(|e| format!("storing: {e}"))?;
                *light = next;
                report.fetched += 1;
                pending.pop();
            }
            Err(itc_chain::light::LightError::Verify(
                itc_chain::light::VerifyError::NotEnoughTrust { .. },
            )) if height > light.tip().height + 1 => {
                // Not enough of the trusted set vouches this far: go
                // halfway first.
                pending.push(light.tip().height + (height - light.tip().height) / 2);
            }
            Err(e) => return Err(format!("a bad header at height {height}: {e}")),
        }
    }
    Ok(())
}

/// Fetches any state entry's proof from a gateway and checks it against
/// the stored, verified header at the proof's height (syncing first, if
/// needed, is the caller's job). The proof must be for exactly `key`.
pub async fn verify_entry(
    url: &str,
    store: &HeaderStore,
    key: &StateKey,
) -> Result<Option<StateValue>, LightSyncError> {
    let rng = ring::rand::SystemRandom::new();
    let reader = Keypair::generate(&rng).map_err(|e| LightSyncError::Genesis(e.to_string()))?;
    let remote = Client::new(url, reader);
    let source = |reason: String| LightSyncError::Source {
        url: url.to_string(),
        reason,
    };
    let answer = remote
        .state_proof(key)
        .await
        .map_err(|e| source(e.to_string()))?;
    let proof: StateProof = hex::decode(&answer.proof)
        .ok()
        .and_then(|b| decode(&b).ok())
        .ok_or_else(|| source("an undecodable proof".into()))?;
    if &proof.key != key {
        return Err(source("it proved another key than the one asked".into()));
    }
    let height = answer.block.height;
    let header = store.header(height).await?.ok_or_else(|| {
        source(format!(
            "the proof is at height {height}, which this client has not verified yet; sync first"
        ))
    })?;
    verify_state(&header, &proof).map_err(|e| LightSyncError::BadProof {
        height,
        reason: e.to_string(),
    })?;
    Ok(proof.value)
}

/// Who owns `device`, proven against the stored headers.
pub async fn verify_owner(
    url: &str,
    store: &HeaderStore,
    device: &DeviceId,
) -> Result<Option<AccountId>, LightSyncError> {
    let key = StateKey::Device {
        device: device.clone(),
    };
    Ok(match verify_entry(url, store, &key).await? {
        Some(StateValue::Device(record)) => record.owner,
        _ => None,
    })
}
