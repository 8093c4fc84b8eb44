//! One GATT connection to a mesh node, whatever carries it: a real one
//! over Bluetooth ([`BleLink`]) or a simulated bulb in memory
//! ([`SimLink`]). Either way the client writes Proxy PDUs to Data In and
//! reads Data Out's notifications in order, and [`exchange`] runs the
//! conversation: writes go out, notifications go to the client, the
//! client's answers go out, until the caller's condition holds or the time
//! is up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ble::BleLink;
use super::client::{ClientEvent, MeshClient};
use super::sim::SimMeshNode;

/// What went wrong on a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("Bluetooth: {0}")]
    Bluetooth(#[from] btleplug::Error),
    #[error("no Bluetooth adapter")]
    NoAdapter,
    #[error("{address} offers no service {service:#06x} with Data In and Data Out")]
    NoMeshService { address: String, service: u16 },
    #[error("the node's notifications ended (disconnected)")]
    Disconnected,
    #[error("no answer from the node within {waited_ms} ms")]
    Timeout { waited_ms: u64 },
    #[error("the simulated bulb's lock was poisoned")]
    Poisoned,
}

/// A simulated bulb shared with whoever watches it (tests, `dev`).
pub type SharedNode = Arc<Mutex<SimMeshNode>>;

/// A connection to a simulated bulb: what it notifies waits in order
/// until read.
pub struct SimLink {
    node: SharedNode,
    notified: VecDeque<Vec<u8>>,
    started: Instant,
}

impl SimLink {
    /// Connects and subscribes to Data Out.
    pub fn open(node: SharedNode) -> Result<SimLink, LinkError> {
        node.lock().map_err(|_| LinkError::Poisoned)?.subscribed = true;
        Ok(SimLink {
            node,
            notified: VecDeque::new(),
            started: Instant::now(),
        })
    }

    pub fn node(&self) -> &SharedNode {
        &self.node
    }
}

pub enum MeshLink {
    Sim(SimLink),
    Ble(Box<BleLink>),
}

impl MeshLink {
    /// Writes one Proxy PDU to Data In.
    pub async fn write(&mut self, pdu: &[u8]) -> Result<(), LinkError> {
        match self {
            MeshLink::Ble(link) => link.write(pdu).await,
            MeshLink::Sim(sim) => {
                let now = sim.started.elapsed().as_millis() as u64;
                let mut node = sim.node.lock().map_err(|_| LinkError::Poisoned)?;
                let notes = node.handle_write(pdu, now);
                if node.subscribed {
                    sim.notified.extend(notes);
                }
                Ok(())
            }
        }
    }

    /// The next notification, or `None` if none comes by `deadline` (a
    /// simulated bulb answers at once or not at all).
    pub async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        match self {
            MeshLink::Ble(link) => link.next(deadline).await,
            MeshLink::Sim(sim) => Ok(sim.notified.pop_front()),
        }
    }

    pub async fn close(self) -> Result<(), LinkError> {
        match self {
            MeshLink::Ble(link) => link.disconnect().await,
            MeshLink::Sim(sim) => {
                sim.node.lock().map_err(|_| LinkError::Poisoned)?.subscribed = false;
                Ok(())
            }
        }
    }
}

/// Sends `writes` over `link` and feeds the notifications to `client`
/// (and its answers back), until `done` holds for the events so far, or
/// `timeout` passes without it. The layers see the time `now_ms`.
pub async fn exchange(
    client: &mut MeshClient,
    link: &mut MeshLink,
    writes: Vec<Vec<u8>>,
    now_ms: u64,
    done: impl Fn(&[ClientEvent]) -> bool,
    timeout: Duration,
) -> Result<Vec<ClientEvent>, LinkError> {
    for write in &writes {
        link.write(write).await?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    while !done(&events) {
        let Some(note) = link.next(deadline).await? else {
            return Err(LinkError::Timeout {
                waited_ms: timeout.as_millis() as u64,
            });
        };
        let (more_events, more_writes) = client.handle_notification(&note, now_ms);
        events.extend(more_events);
        for write in &more_writes {
            link.write(write).await?;
        }
    }
    Ok(events)
}

/// `done` for [`exchange`]: a status from `node`.
pub fn status_from(node: u16) -> impl Fn(&[ClientEvent]) -> bool {
    statuses_from(node, 1)
}

/// `done` for [`exchange`]: `count` statuses from `node` (one per
/// acknowledged message sent).
pub fn statuses_from(node: u16, count: usize) -> impl Fn(&[ClientEvent]) -> bool {
    move |events| {
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Status { src, .. } if *src == node))
            .count()
            >= count
    }
}

/// `done` for [`exchange`]: `node` is provisioned.
pub fn provisioned(node: u16) -> impl Fn(&[ClientEvent]) -> bool {
    move |events| {
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Provisioned { address, .. } if *address == node))
    }
}

/// `done` for [`exchange`]: the proxy filter is set.
pub fn filter_set(events: &[ClientEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ClientEvent::FilterStatus { .. }))
}

/// `done` for [`exchange`]: every lighting model is bound.
pub fn configured(events: &[ClientEvent]) -> bool {
    use super::access::Message;
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Status {
                    message: Message::ModelAppStatus { status: 0, .. },
                    ..
                }
            )
        })
        .count()
        == super::client::LIGHT_MODELS.len()
}
