//! The simulated stick on a pseudo-terminal: the [`Stick`] core behind a
//! real PTY, reachable at a stable path (a symlink, as udev gives a real
//! stick under `/dev/serial/by-id/`), so the driver opens it exactly as it
//! opens hardware.
//!
//! [`SimPort::unplug`] closes the PTY (the driver's reads fail, as when a
//! stick is pulled out); [`SimPort::plug`] opens a new one and points the
//! path at it. The network the stick formed and its bulbs survive, as they
//! do in a real stick's NV memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_serial::SerialStream;

use super::ota::{ImageOffer, QueryNextImage};
use super::stick::Upgrade;
use super::stick::{Delivered, Stick};
use crate::light::LightState;

/// A running simulated stick.
pub struct SimPort {
    path: PathBuf,
    stick: Arc<Mutex<Stick>>,
    plugged: watch::Sender<bool>,
    responsive: watch::Sender<bool>,
    task: JoinHandle<()>,
    epoch: Instant,
}

/// Points `link` at `target`, replacing what was there, atomically.
fn relink(link: &Path, target: &Path) -> std::io::Result<()> {
    let temp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    std::fs::rename(&temp, link)
}

impl SimPort {
    /// A stick with `bulbs` factory-new bulbs, reachable at `path`.
    pub fn start(path: impl Into<PathBuf>, bulbs: usize, seed: u64) -> SimPort {
        let path = path.into();
        let stick = Arc::new(Mutex::new(Stick::new(bulbs, seed)));
        let (plugged, plugged_rx) = watch::channel(true);
        let (responsive, responsive_rx) = watch::channel(true);
        let epoch = Instant::now();
        let task = tokio::spawn(run(
            path.clone(),
            stick.clone(),
            plugged_rx,
            responsive_rx,
            epoch,
        ));
        SimPort {
            path,
            stick,
            plugged,
            responsive,
            task,
            epoch,
        }
    }

    /// The path the driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pulls the stick out: the PTY closes.
    pub fn unplug(&self) {
        let _ = self.plugged.send(false);
    }

    /// Stops (false) or resumes (true) reading what the host sends, like a
    /// stick whose firmware hangs: requests stay unanswered, in flight.
    pub fn set_responsive(&self, responsive: bool) {
        let _ = self.responsive.send(responsive);
    }

    /// Plugs it back in: a new PTY behind the same path.
    pub fn plug(&self) {
        let _ = self.plugged.send(true);
    }

    /// Every ZCL frame delivered to a bulb so far.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.stick
            .lock()
            .map(|s| s.delivered().to_vec())
            .unwrap_or_default()
    }

    /// A bulb asks for a newer image.
    pub fn query_image(&self, ieee: u64, query: &QueryNextImage) -> bool {
        self.stick
            .lock()
            .map(|mut s| s.query_image(ieee, query))
            .unwrap_or(false)
    }

    /// The upgrades the bulbs completed so far.
    pub fn upgrades(&self) -> Vec<Upgrade> {
        self.stick
            .lock()
            .map(|s| s.upgrades().to_vec())
            .unwrap_or_default()
    }

    /// The image offers the bulbs received so far.
    pub fn offers(&self) -> Vec<(u64, Option<ImageOffer>)> {
        self.stick
            .lock()
            .map(|s| s.offers().to_vec())
            .unwrap_or_default()
    }

    pub fn joined(&self) -> usize {
        self.stick.lock().map(|s| s.joined()).unwrap_or(0)
    }

    /// A bulb's state now.
    pub fn bulb_state(&self, ieee: u64) -> Option<LightState> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.stick.lock().ok()?.bulb_state(ieee, now)
    }
}

impl Drop for SimPort {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn run(
    path: PathBuf,
    stick: Arc<Mutex<Stick>>,
    mut plugged: watch::Receiver<bool>,
    mut responsive: watch::Receiver<bool>,
    epoch: Instant,
) {
    let now = || epoch.elapsed().as_millis() as u64;
    loop {
        if !*plugged.borrow() {
            if plugged.changed().await.is_err() {
                return;
            }
            continue;
        }
        // The slave end stays open here too, so the master never reads
        // EIO while the driver is between opens.
        let Ok((mut master, slave)) = SerialStream::pair() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(name) = tokio_serial::SerialPort::name(&slave) else {
            return;
        };
        if relink(&path, Path::new(&name)).is_err() {
            tracing::warn!(path = %path.display(), "cannot link the simulated stick");
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            let outgoing = stick.lock().ok().and_then(|mut s| s.poll_transmit());
            if let Some(bytes) = outgoing {
                if master.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let deadline = stick
                .lock()
                .ok()
                .and_then(|s| s.next_deadline(now()))
                .map(|at| epoch + Duration::from_millis(at))
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
            let reading = *responsive.borrow();
            tokio::select! {
                read = master.read(&mut buf), if reading => match read {
                    Ok(0) | Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(n) => {
                        if let Ok(mut s) = stick.lock() {
                            s.handle_bytes(now(), &buf[..n]);
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if let Ok(mut s) = stick.lock() {
                        s.handle_tick(now());
                    }
                }
                changed = plugged.changed() => {
                    if changed.is_err() || !*plugged.borrow() {
                        break;
                    }
                }
                _ = responsive.changed() => {}
            }
        }
        // Unplugged: both ends close, the stick forgets its session.
        drop(master);
        drop(slave);
        let _ = std::fs::remove_file(&path);
        if let Ok(mut s) = stick.lock() {
            s.unplug();
        }
    }
}
