//! Firmware updates over the air: which image, if any, to offer a device
//! that asks.
//!
//! The gateway keeps image files in a directory (`<model>-<version>.ota`)
//! and trusts a list of manufacturer accounts. When a device asks for a
//! newer image, the gateway looks for manifests on chain, published by a
//! trusted manufacturer for the device's model, newer than what the device
//! runs; it offers the newest one whose file is present and whose SHA-256
//! and size are exactly what the manifest says. A file that differs from
//! its manifest by one bit is never offered.

use std::path::PathBuf;

use itc_bridges::zigbee::ota::{file_version, ImageOffer, QueryNextImage};
use itc_chain::crypto::{AccountId, Hash};
use itc_chain::ledger::StateRead;
use itc_chain::state::{ManifestRecord, StateKey, StateValue};
use itc_chain::types::{FirmwareVersion, Model};
use serde::Deserialize;

use crate::node::CommittedView;

/// Where images are and whose manifests count.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareConfig {
    /// Image files, named `<model>-<major>.<minor>.<patch>.ota`.
    pub dir: PathBuf,
    /// Manufacturer accounts whose manifests this gateway trusts.
    pub manufacturers: Vec<AccountId>,
}

/// The manifests on chain for `model` from trusted manufacturers, newer
/// than `current`, newest first.
pub fn candidates(
    view: &CommittedView,
    config: &FirmwareConfig,
    model: &Model,
    current: u32,
) -> Vec<(FirmwareVersion, ManifestRecord)> {
    let mut found = Vec::new();
    for manufacturer in &config.manufacturers {
        let from = StateKey::Manifest {
            manufacturer: *manufacturer,
            model: model.clone(),
            version: FirmwareVersion {
                major: 0,
                minor: 0,
                patch: 0,
            },
        };
        for (key, value) in view.entries.entries_from(&from) {
            let (
                StateKey::Manifest {
                    manufacturer: m,
                    model: mo,
                    version,
                },
                StateValue::Manifest(record),
            ) = (key, value)
            else {
                break;
            };
            if m != manufacturer || mo != model {
                break;
            }
            if file_version(version.major, version.minor, version.patch) > current {
                found.push((*version, record.clone()));
            }
        }
    }
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found
}

/// The offer for `query`: the newest candidate whose file matches its
/// manifest, with the image's bytes (served block by block), or none.
pub async fn offer(
    config: &FirmwareConfig,
    model: &Model,
    query: &QueryNextImage,
    candidates: Vec<(FirmwareVersion, ManifestRecord)>,
) -> Option<(ImageOffer, Vec<u8>)> {
    for (version, record) in candidates {
        let path = config.dir.join(format!("{}-{version}.ota", model.as_str()));
        let Ok(image) = tokio::fs::read(&path).await else {
            continue;
        };
        if Hash::digest(&image) != record.image_hash || image.len() as u64 != record.image_size {
            tracing::warn!(
                path = %path.display(),
                "firmware image does not match its manifest on chain; not offered"
            );
            continue;
        }
        let offer = ImageOffer {
            manufacturer: query.manufacturer,
            image_type: query.image_type,
            file_version: file_version(version.major, version.minor, version.patch),
            image_size: record.image_size as u32,
        };
        return Some((offer, image));
    }
    None
}
