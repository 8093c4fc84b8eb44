//! Chain queries: blocks, transactions with their inclusion proofs, and
//! proofs of who owns a device, all from the gateway's store and ledger,
//! in the encodings a light client verifies.

use itc_chain::block::{CommitCertificate, Header};
use itc_chain::codec::encode;
use itc_chain::crypto::Hash;
use itc_chain::state::{StateKey, StateValue};
use itc_chain::store::ChainStore;
use itc_chain::types::DeviceId;
use itc_web::{ApiError, ApiResult, BlockDetail, BlockSummary, OwnerProof, TransactionDetail};

use super::Service;
use crate::store::StoreError;

fn store_error(error: StoreError) -> ApiError {
    tracing::error!(%error, "chain store");
    ApiError::unavailable(error.to_string())
}

pub(super) fn summary(header: &Header, certificate: Option<&CommitCertificate>) -> BlockSummary {
    BlockSummary {
        height: header.height,
        hash: header.hash().to_string(),
        time_ms: header.time_ms,
        header: hex::encode(encode(header)),
        certificate: certificate.map(|c| hex::encode(encode(c))),
    }
}

pub async fn blocks(service: &Service, from: u64, limit: u64) -> ApiResult<Vec<BlockSummary>> {
    let to = from.saturating_add(limit.saturating_sub(1));
    let headers = service
        .node()
        .store
        .headers(from, to)
        .await
        .map_err(store_error)?;
    Ok(headers
        .iter()
        .map(|(header, certificate)| summary(header, certificate.as_ref()))
        .collect())
}

async fn header_at(
    service: &Service,
    height: u64,
) -> ApiResult<(Header, Option<CommitCertificate>)> {
    service
        .node()
        .store
        .headers(height, height)
        .await
        .map_err(store_error)?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("block {height}")))
}

pub async fn block(service: &Service, height: u64) -> ApiResult<BlockDetail> {
    let mut store = service.node().store.clone();
    let (block, certificate) = store
        .block(height)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("block {height}")))?;
    let transactions = block.tx_hashes().iter().map(|h| h.to_string()).collect();
    Ok(BlockDetail {
        summary: summary(&block.header, certificate.as_ref()),
        transactions,
    })
}

pub async fn transaction(service: &Service, id: Hash) -> ApiResult<TransactionDetail> {
    let mut store = service.node().store.clone();
    let location = store
        .transaction(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("committed transaction {id}")))?;
    let (block, certificate) = store
        .block(location.height)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("block {}", location.height)))?;
    let proof = block
        .prove_tx(location.index as usize)
        .ok_or_else(|| ApiError::unavailable("the stored block does not hold its transaction"))?;
    Ok(TransactionDetail {
        id: id.to_string(),
        height: location.height,
        index: u64::from(location.index),
        tx: serde_json::to_value(&location.tx.tx).unwrap_or_default(),
        encoded: hex::encode(encode(&location.tx)),
        proof: hex::encode(encode(&proof)),
        block: summary(&block.header, certificate.as_ref()),
    })
}

pub async fn owner_proof(service: &Service, device: DeviceId) -> ApiResult<OwnerProof> {
    let (proof, header) = service
        .node()
        .prove(StateKey::Device {
            device: device.clone(),
        })
        .await
        .map_err(ApiError::unavailable)?;
    let owner = match &proof.value {
        Some(StateValue::Device(record)) => record.owner.map(|o| o.to_string()),
        _ => None,
    };
    let (_, certificate) = header_at(service, header.height).await?;
    Ok(OwnerProof {
        device: device.to_string(),
        owner,
        proof: hex::encode(encode(&proof)),
        block: summary(&header, certificate.as_ref()),
    })
}

pub async fn validator_set(service: &Service, hash: Hash) -> ApiResult<itc_web::ValidatorSetView> {
    let set = service
        .node()
        .store
        .validator_set(&hash)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("validator set {hash}")))?;
    Ok(itc_web::ValidatorSetView {
        hash: hash.to_string(),
        validators: set
            .validators()
            .iter()
            .map(|v| itc_web::ValidatorView {
                key: v.key.to_string(),
                addr: v.addr.to_string(),
            })
            .collect(),
        encoded: hex::encode(encode(&set)),
    })
}

pub async fn state_proof(service: &Service, key: StateKey) -> ApiResult<itc_web::StateProofView> {
    let (proof, header) = service
        .node()
        .prove(key.clone())
        .await
        .map_err(ApiError::unavailable)?;
    let (_, certificate) = header_at(service, header.height).await?;
    Ok(itc_web::StateProofView {
        key: serde_json::to_value(&key).unwrap_or_default(),
        value: serde_json::to_value(&proof.value).unwrap_or_default(),
        proof: hex::encode(encode(&proof)),
        portable: hex::encode(proof.portable()),
        block: summary(&header, certificate.as_ref()),
    })
}
