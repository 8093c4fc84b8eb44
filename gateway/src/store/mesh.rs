//! The Bluetooth mesh rows (`mesh_nodes`, `mesh_sequence`): what a
//! restarted gateway needs to go on commanding the bulbs it provisioned.
//!
//! Device keys are secrets (they configure a node), so they are sealed
//! before they reach sqlite: AES-256-GCM (`ring`) under a key the caller
//! derives from the gateway's seed, a fresh random nonce each, and the
//! device id as associated data, so a sealed key moved to another row
//! does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::Row;

use super::{Durability, Script, SqliteStore, StoreError};

/// A mesh node as stored, its device key opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshNodeRow {
    pub address: u16,
    pub device: String,
    pub ble_address: String,
    pub device_key: [u8; 16],
}

/// The key device keys are sealed with.
pub struct SealingKey(LessSafeKey);

impl SealingKey {
    pub fn new(key: [u8; 32]) -> SealingKey {
        // 32 bytes is AES-256-GCM's key length, so this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, &key).unwrap_or_else(|_| unreachable!());
        SealingKey(LessSafeKey::new(unbound))
    }

    fn seal(&self, device: &str, key: &[u8; 16]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Sealed {
                reason: "no randomness".into(),
            })?;
        let mut sealed = key.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(device.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| StoreError::Sealed {
                reason: "sealing failed".into(),
            })?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open(&self, device: &str, sealed: &[u8]) -> Result<[u8; 16], StoreError> {
        let bad = || StoreError::Sealed {
            reason: format!("the device key of {device} does not open"),
        };
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(device.as_bytes()), &mut body)
            .map_err(|_| bad())?;
        plain.try_into().map_err(|_| bad())
    }
}

impl SqliteStore {
    pub async fn mesh_nodes(&self, key: &SealingKey) -> Result<Vec<MeshNodeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT address, device, ble_address, device_key FROM mesh_nodes ORDER BY address",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let device: String = row.try_get("device")?;
                let sealed: Vec<u8> = row.try_get("device_key")?;
                Ok(MeshNodeRow {
                    address: row.try_get::<i64, _>("address")? as u16,
                    ble_address: row.try_get("ble_address")?,
                    device_key: key.open(&device, &sealed)?,
                    device,
                })
            })
            .collect()
    }

    /// Records a provisioned node (replacing one at its address).
    pub async fn save_mesh_node(
        &self,
        key: &SealingKey,
        node: &MeshNodeRow,
    ) -> Result<(), StoreError> {
        let sealed = key.seal(&node.device, &node.device_key)?;
        let mut script = Script::new(Durability::Synced);
        script.insert_rows(
            "INSERT OR REPLACE INTO mesh_nodes (address, device, ble_address, device_key) ",
            "",
            [node],
            |mut row, node| {
                row.push_bind(i64::from(node.address))
                    .push_bind(node.device.clone())
                    .push_bind(node.ble_address.clone())
                    .push_bind(sealed.clone());
            },
        );
        self.run(script).await
    }

    /// The sequence numbers reserved so far (0 if none).
    pub async fn mesh_sequence(&self) -> Result<u32, StoreError> {
        let reserved = sqlx::query("SELECT reserved FROM mesh_sequence WHERE id = 0")
            .fetch_optional(self.pool())
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0);
        Ok(reserved as u32)
    }

    pub async fn reserve_mesh_sequence(&self, up_to: u32) -> Result<(), StoreError> {
        let mut script = Script::new(Durability::Synced);
        script
            .statement("INSERT OR REPLACE INTO mesh_sequence (id, reserved) VALUES (0, ")
            .push_bind(i64::from(up_to))
            .push(")");
        self.run(script).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn device_keys_are_sealed_at_rest_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.sqlite");
        let key = SealingKey::new([7; 32]);
        let node = MeshNodeRow {
            address: 0x0100,
            device: "mesh:0011".into(),
            ble_address: "C0:FF:EE:00:00:01".into(),
            device_key: [0x42; 16],
        };
        {
            let store = SqliteStore::open_manual(&path).await.unwrap();
            store.save_mesh_node(&key, &node).await.unwrap();
            store.reserve_mesh_sequence(1_024).await.unwrap();
            // Not in the clear.
            let sealed: Vec<u8> = sqlx::query("SELECT device_key FROM mesh_nodes")
                .fetch_one(store.pool())
                .await
                .unwrap()
                .get(0);
            assert!(!sealed.windows(16).any(|w| w == [0x42; 16]));
            // Moved to another device's row, it does not open.
            sqlx::query("UPDATE mesh_nodes SET device = 'mesh:other'")
                .execute(store.pool())
                .await
                .unwrap();
            assert!(matches!(
                store.mesh_nodes(&key).await,
                Err(StoreError::Sealed { .. })
            ));
            store.save_mesh_node(&key, &node).await.unwrap();
            sqlx::query("DELETE FROM mesh_nodes WHERE device = 'mesh:other'")
                .execute(store.pool())
                .await
                .unwrap();
            store.close().await;
        }
        let store = SqliteStore::open_manual(&path).await.unwrap();
        assert_eq!(store.mesh_nodes(&key).await.unwrap(), vec![node]);
        assert_eq!(store.mesh_sequence().await.unwrap(), 1_024);
        // Another gateway's key opens nothing.
        assert!(store.mesh_nodes(&SealingKey::new([8; 32])).await.is_err());
    }
}
