//! The DAG side chain's API: take a device's transaction, suggest parents,
//! say where a transaction stands with its proof.

use itc_chain::crypto::Hash;
use itc_chain::dag::{DagError, DagTx};
use itc_web::{ApiError, ApiResult, DagParents, DagTxAccepted, DagTxStatus};

use super::chain::summary;
use super::Service;
use crate::dag::DagServiceError;
use itc_chain::dag::Status;

fn unavailable(error: DagServiceError) -> ApiError {
    ApiError::unavailable(error.to_string())
}

pub async fn submit(service: &Service, tx: DagTx) -> ApiResult<DagTxAccepted> {
    let mut outcome = service
        .inner
        .dag
        .submit(vec![tx])
        .await
        .map_err(unavailable)?;
    match outcome.pop() {
        Some(Ok(id)) => Ok(DagTxAccepted { id: id.to_string() }),
        Some(Err(error @ DagError::Duplicate { .. })) => Err(ApiError::conflict(error.to_string())),
        Some(Err(error @ DagError::RateLimited { window_ms, .. })) => {
            Err(ApiError::TooManyRequests {
                detail: format!("{error}; retry in {window_ms} ms"),
            })
        }
        Some(Err(error)) => Err(ApiError::bad_request(
            "DAG transaction refused",
            error.to_string(),
        )),
        None => Err(ApiError::unavailable("the DAG service gave no answer")),
    }
}

pub async fn parents(service: &Service) -> ApiResult<DagParents> {
    let parents = service.inner.dag.parents().await.map_err(unavailable)?;
    Ok(DagParents {
        parents: parents.iter().map(Hash::to_string).collect(),
    })
}

pub async fn status(service: &Service, id: Hash) -> ApiResult<DagTxStatus> {
    let view = service.inner.dag.status(id).await.map_err(unavailable)?;
    let (status, solid, height) = match view.status {
        Status::Unknown => ("unknown", None, None),
        Status::Pending { solid } => ("pending", Some(solid), None),
        Status::Confirmed { height } => ("confirmed", None, Some(height)),
        Status::Conflicting { height } => ("conflicting", None, Some(height)),
    };
    let json = |value: Option<serde_json::Value>| value.unwrap_or(serde_json::Value::Null);
    let (proof, block) = match view.proof {
        Some((proof, block, certificate)) => (
            serde_json::to_value(proof).ok(),
            Some(summary(&block.header, certificate.as_ref())),
        ),
        None => (None, None),
    };
    Ok(DagTxStatus {
        id: id.to_string(),
        status: status.to_string(),
        solid,
        height,
        tx: json(view.tx.and_then(|tx| serde_json::to_value(tx).ok())),
        proof: json(proof),
        block,
    })
}
