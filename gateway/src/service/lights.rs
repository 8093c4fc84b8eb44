//! Lights, groups and scenes.
//!
//! A light is visible to its owner, to holders of an unexpired grant with
//! the control right, and (while unclaimed) to the gateway's administrator,
//! who claims it. A command to several lights (a group, a scene) is checked
//! for every light first and carried out only if all may be controlled, so
//! a refused group command changes nothing.

use itc_bridges::light::LightCommand;
use itc_chain::crypto::PublicKey;
use itc_chain::ledger::{AccessError, StateRead};
use itc_chain::types::{DeviceId, Rights};
use itc_web::{
    AccessView, ApiError, ApiResult, Group, Light, NewGroup, NewScene, RecallScene, Scene,
    SceneEntry,
};
use sqlx::Row;

use super::bridge::{BridgeError, BridgeLight};
use super::{now_ms, Service};
use crate::node::CommittedView;
use crate::store::StoreError;

/// Most lights in a group.
const MAX_GROUP: usize = 256;
/// Longest group or scene name, in bytes.
const MAX_NAME: usize = 64;

fn store_error(error: sqlx::Error) -> ApiError {
    tracing::error!(%error, "sqlite");
    ApiError::unavailable(StoreError::from(error).to_string())
}

/// How `caller` may see `device`, if at all.
fn access(
    view: &CommittedView,
    caller: &PublicKey,
    device: &DeviceId,
    admin: bool,
    now: u64,
) -> Result<AccessView, AccessError> {
    match view.entries.authorize(caller, device, Rights::CONTROL, now) {
        Ok(itc_chain::ledger::Access::Owner) => Ok(AccessView::Owner),
        Ok(itc_chain::ledger::Access::Grant { .. }) => Ok(AccessView::Grant),
        Err(AccessError::NotClaimed { .. }) if admin => Ok(AccessView::Unclaimed),
        Err(error) => Err(error),
    }
}

fn light(view: &CommittedView, bridged: BridgeLight, access: AccessView) -> Light {
    let owner = view
        .entries
        .device(&bridged.id)
        .and_then(|d| d.owner)
        .map(|o| o.to_string());
    Light {
        id: bridged.id.to_string(),
        access,
        owner,
        state: bridged.state,
        target: bridged.target,
        link_quality: bridged.link_quality,
        last_seen_ms: bridged.last_seen_ms,
    }
}

pub fn list(service: &Service, caller: &PublicKey) -> Vec<Light> {
    let admin = service.is_admin(caller);
    let now = now_ms();
    let bridged = service.all_lights();
    service
        .view(|view| {
            bridged
                .into_iter()
                .filter_map(|l| {
                    let access = access(view, caller, &l.id, admin, now).ok()?;
                    Some(light(view, l, access))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A light on one of the bridges, or 404.
fn find(service: &Service, device: &DeviceId) -> ApiResult<BridgeLight> {
    service
        .bridge_for(device)
        .and_then(|bridge| bridge.light(device))
        .ok_or_else(|| ApiError::not_found(format!("light {device}")))
}

fn bridge_error(error: BridgeError) -> ApiError {
    match error {
        BridgeError::Unknown { device } => ApiError::not_found(format!("light {device}")),
        BridgeError::Command(detail) => ApiError::bad_request("Bad light command", detail),
        other => ApiError::unavailable(other.to_string()),
    }
}

fn refused(error: AccessError) -> ApiError {
    match error {
        AccessError::UnknownDevice { device } => ApiError::forbidden(format!(
            "device {device} is not registered on chain yet, so nobody may use it"
        )),
        other => ApiError::forbidden(other.to_string()),
    }
}

pub fn get(service: &Service, caller: &PublicKey, device: &DeviceId) -> ApiResult<Light> {
    let admin = service.is_admin(caller);
    let now = now_ms();
    let bridged = find(service, device)?;
    service.view(|view| {
        let access = access(view, caller, device, admin, now).map_err(refused)?;
        Ok(light(view, bridged, access))
    })?
}

/// Sends `command` to every light in `devices` if `caller` may control all
/// of them; otherwise to none.
pub async fn set(
    service: &Service,
    caller: &PublicKey,
    devices: &[DeviceId],
    command: &LightCommand,
) -> ApiResult<Vec<Light>> {
    set_each(service, caller, devices, |_| *command).await
}

/// Sends each light its own command (a scene), after checking that
/// `caller` may control every one of them.
async fn set_each(
    service: &Service,
    caller: &PublicKey,
    devices: &[DeviceId],
    command: impl Fn(usize) -> LightCommand,
) -> ApiResult<Vec<Light>> {
    for index in 0..devices.len() {
        command(index)
            .validate()
            .map_err(|e| ApiError::bad_request("Bad light command", e.to_string()))?;
    }
    let now = now_ms();
    for device in devices {
        find(service, device)?;
    }
    let accesses = service.view(|view| {
        devices
            .iter()
            .map(|device| {
                view.entries
                    .authorize(caller, device, Rights::CONTROL, now)
                    .map_err(refused)
            })
            .collect::<ApiResult<Vec<_>>>()
    })?;
    let accesses = match accesses {
        Ok(accesses) => accesses,
        Err(error) => {
            service.inner.metrics.refused_commands.inc();
            return Err(error);
        }
    };
    let mut lights = Vec::with_capacity(devices.len());
    for (index, (device, access)) in devices.iter().zip(accesses).enumerate() {
        let bridge = service
            .bridge_for(device)
            .ok_or_else(|| ApiError::not_found(format!("light {device}")))?;
        let target = bridge
            .send(device, &command(index))
            .await
            .map_err(bridge_error)?;
        service.inner.metrics.commands.inc();
        let mut bridged = find(service, device)?;
        bridged.target = target;
        let access = match access {
            itc_chain::ledger::Access::Owner => AccessView::Owner,
            itc_chain::ledger::Access::Grant { .. } => AccessView::Grant,
        };
        lights.push(service.view(|view| light(view, bridged, access))?);
    }
    Ok(lights)
}

pub fn devices(service: &Service, caller: &PublicKey) -> ApiResult<Vec<itc_web::Device>> {
    if !service.is_admin(caller) {
        return Err(ApiError::forbidden(
            "only this gateway's administrator may list its devices",
        ));
    }
    let bridged = service.all_lights();
    service.view(|view| {
        bridged
            .into_iter()
            .map(|l| {
                let record = view.entries.device(&l.id);
                itc_web::Device {
                    id: l.id.to_string(),
                    bridge: l.bridge.into(),
                    model: l.model,
                    link_quality: l.link_quality,
                    last_seen_ms: l.last_seen_ms,
                    registered: record.is_some(),
                    owner: record.and_then(|r| r.owner).map(|o| o.to_string()),
                }
            })
            .collect()
    })
}

pub fn parse_devices(ids: &[String]) -> ApiResult<Vec<DeviceId>> {
    ids.iter()
        .map(|id| {
            DeviceId::new(id.as_str())
                .map_err(|e| ApiError::bad_request("Bad device id", format!("{id:?}: {e}")))
        })
        .collect()
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::bad_request(
            "Bad name",
            format!("a name has 1 to {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

/// The caller's group `id` (404 for anyone else's).
pub async fn group(service: &Service, caller: PublicKey, id: i64) -> ApiResult<Group> {
    let pool = service.inner.node.store.pool();
    let row = sqlx::query("SELECT name FROM light_groups WHERE id = ? AND owner = ?")
        .bind(id)
        .bind(caller.0.to_vec())
        .fetch_optional(pool)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("group {id}")))?;
    let name: String = row.try_get(0).map_err(store_error)?;
    let members =
        sqlx::query("SELECT device FROM light_group_members WHERE group_id = ? ORDER BY device")
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(store_error)?;
    let lights = members
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(store_error)?;
    Ok(Group { id, name, lights })
}

pub async fn groups(service: &Service, caller: PublicKey) -> ApiResult<Vec<Group>> {
    let ids = sqlx::query("SELECT id FROM light_groups WHERE owner = ? ORDER BY id")
        .bind(caller.0.to_vec())
        .fetch_all(service.inner.node.store.pool())
        .await
        .map_err(store_error)?;
    let mut groups = Vec::with_capacity(ids.len());
    for row in ids {
        let id: i64 = row.try_get(0).map_err(store_error)?;
        groups.push(group(service, caller, id).await?);
    }
    Ok(groups)
}

pub async fn create_group(service: &Service, caller: PublicKey, new: NewGroup) -> ApiResult<Group> {
    check_name(&new.name)?;
    if new.lights.is_empty() || new.lights.len() > MAX_GROUP {
        return Err(ApiError::bad_request(
            "Bad group",
            format!("a group has 1 to {MAX_GROUP} lights"),
        ));
    }
    let mut devices = parse_devices(&new.lights)?;
    devices.sort();
    devices.dedup();
    // Only lights the caller may control now can be grouped.
    let now = now_ms();
    for device in &devices {
        find(service, device)?;
    }
    service.view(|view| {
        devices.iter().try_for_each(|device| {
            view.entries
                .authorize(&caller, device, Rights::CONTROL, now)
                .map(drop)
                .map_err(refused)
        })
    })??;
    let pool = service.inner.node.store.pool();
    let mut tx = pool.begin().await.map_err(store_error)?;
    let id = sqlx::query("INSERT INTO light_groups (owner, name) VALUES (?, ?)")
        .bind(caller.0.to_vec())
        .bind(&new.name)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .last_insert_rowid();
    for device in &devices {
        sqlx::query("INSERT INTO light_group_members (group_id, device) VALUES (?, ?)")
            .bind(id)
            .bind(device.as_str())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(Group {
        id,
        name: new.name,
        lights: devices.iter().map(|d| d.to_string()).collect(),
    })
}

pub async fn delete_group(service: &Service, caller: PublicKey, id: i64) -> ApiResult<()> {
    let done = sqlx::query("DELETE FROM light_groups WHERE id = ? AND owner = ?")
        .bind(id)
        .bind(caller.0.to_vec())
        .execute(service.inner.node.store.pool())
        .await
        .map_err(store_error)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("group {id}")));
    }
    Ok(())
}

fn scene_row(row: &sqlx::sqlite::SqliteRow) -> ApiResult<Scene> {
    let states: String = row.try_get("states").map_err(store_error)?;
    Ok(Scene {
        id: row.try_get("id").map_err(store_error)?,
        group: row.try_get("group_id").map_err(store_error)?,
        name: row.try_get("name").map_err(store_error)?,
        states: serde_json::from_str(&states)
            .map_err(|e| ApiError::unavailable(format!("a stored scene does not parse: {e}")))?,
    })
}

pub async fn scenes(service: &Service, caller: PublicKey, group_id: i64) -> ApiResult<Vec<Scene>> {
    group(service, caller, group_id).await?;
    let rows =
        sqlx::query("SELECT id, group_id, name, states FROM scenes WHERE group_id = ? ORDER BY id")
            .bind(group_id)
            .fetch_all(service.inner.node.store.pool())
            .await
            .map_err(store_error)?;
    rows.iter().map(scene_row).collect()
}

/// Stores the group's lights' current targets as a scene.
pub async fn store_scene(
    service: &Service,
    caller: PublicKey,
    group_id: i64,
    new: NewScene,
) -> ApiResult<Scene> {
    check_name(&new.name)?;
    let group = group(service, caller, group_id).await?;
    let devices = parse_devices(&group.lights)?;
    let states = devices
        .iter()
        .map(|device| {
            find(service, device).map(|l| SceneEntry {
                light: device.to_string(),
                state: l.target,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let json = serde_json::to_string(&states)
        .map_err(|e| ApiError::unavailable(format!("encoding a scene: {e}")))?;
    let id = sqlx::query("INSERT INTO scenes (group_id, name, states) VALUES (?, ?, ?)")
        .bind(group_id)
        .bind(&new.name)
        .bind(json)
        .execute(service.inner.node.store.pool())
        .await
        .map_err(store_error)?
        .last_insert_rowid();
    Ok(Scene {
        id,
        group: group_id,
        name: new.name,
        states,
    })
}

pub async fn recall_scene(
    service: &Service,
    caller: PublicKey,
    scene_id: i64,
    recall: RecallScene,
) -> ApiResult<Vec<Light>> {
    let row = sqlx::query(
        "SELECT s.id, s.group_id, s.name, s.states FROM scenes s \
         JOIN light_groups g ON g.id = s.group_id WHERE s.id = ? AND g.owner = ?",
    )
    .bind(scene_id)
    .bind(caller.0.to_vec())
    .fetch_optional(service.inner.node.store.pool())
    .await
    .map_err(store_error)?
    .ok_or_else(|| ApiError::not_found(format!("scene {scene_id}")))?;
    let scene = scene_row(&row)?;
    let ids: Vec<String> = scene.states.iter().map(|e| e.light.clone()).collect();
    let devices = parse_devices(&ids)?;
    // Authorise all first, then apply each light's own state.
    set_each(service, &caller, &devices, |index| {
        LightCommand::to_state(&scene.states[index].state, recall.transition_ms)
    })
    .await
}
