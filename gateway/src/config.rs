//! The gateway's configuration file (TOML), with environment overrides
//! applied by the command line.
//!
//! ```toml
//! genesis = "genesis.toml"     # the chain's genesis
//! key = "gateway-0.key"        # this gateway's key (hex seed, mode 0600)
//! db = "gateway-0.sqlite"      # its chain store
//! api = "127.0.0.1:8080"       # where the REST API listens
//!
//! [mesh]                       # optional: Bluetooth mesh bulbs
//! bluetooth = true             # through BlueZ (the system D-Bus)
//!
//! [dag]                        # optional: the DAG side chain
//! depth = 10000                # blocks of confirmed history kept with proofs
//! per_device_per_s = 100       # transactions one device may add per second
//! ```
//!
//! Relative paths are relative to the configuration file. The peer-to-peer
//! address is this gateway's address in the genesis.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use itc_chain::crypto::Keypair;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub genesis: PathBuf,
    pub key: PathBuf,
    pub db: PathBuf,
    pub api: SocketAddr,
    /// Where the peer listener binds, if not the address in the genesis
    /// (e.g. `0.0.0.0:7100` in a container).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Simulated bulbs on this gateway's network (until radios are
    /// attached), and factory-new ones that join when it is opened.
    #[serde(default)]
    pub bulbs: usize,
    #[serde(default)]
    pub spare_bulbs: usize,
    /// Bluetooth mesh bulbs: `[mesh] bluetooth = true` drives real ones
    /// through BlueZ; `simulated = N` puts N simulated ones in range.
    #[serde(default)]
    pub mesh: crate::service::mesh::MeshConfig,
    /// A Zigbee coordinator (TI Z-Stack, ZNP) on a serial port.
    #[serde(default)]
    pub zigbee: Option<ZigbeeConfig>,
    /// Firmware images this gateway may offer its devices.
    #[serde(default)]
    pub firmware: Option<crate::service::firmware::FirmwareConfig>,
    /// The MQTT broker for Wi-Fi devices and integrations.
    #[serde(default)]
    pub mqtt: Option<MqttToml>,
    /// The DAG side chain.
    #[serde(default)]
    pub dag: DagToml,
}

/// The DAG side chain's limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DagToml {
    /// Confirmed history kept with bodies and proofs, in blocks; older
    /// transactions keep only their outcome.
    pub depth: u64,
    /// Transactions one device may add per second.
    pub per_device_per_s: usize,
}

impl Default for DagToml {
    fn default() -> Self {
        let dag = crate::dag::DagConfig::default();
        DagToml {
            depth: dag.depth,
            per_device_per_s: dag.tangle.per_issuer,
        }
    }
}

impl DagToml {
    pub fn config(&self) -> crate::dag::DagConfig {
        let mut dag = crate::dag::DagConfig {
            depth: self.depth,
            ..Default::default()
        };
        dag.tangle.per_issuer = self.per_device_per_s;
        dag.tangle.window_ms = 1_000;
        dag
    }
}

/// The MQTT broker's front.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttToml {
    /// Where devices and integrations connect, e.g. `0.0.0.0:1883`.
    pub listen: SocketAddr,
    /// Zigbee2MQTT's base topic.
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
    /// TLS on the listener: a certificate chain and its private key (PEM).
    #[serde(default)]
    pub tls: Option<MqttTls>,
}

/// PEM files for MQTT over TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_base_topic() -> String {
    "itc".into()
}

/// The Zigbee coordinator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZigbeeConfig {
    /// The stick's serial port, e.g.
    /// `/dev/serial/by-id/usb-Texas_Instruments_…-if00`.
    pub port: PathBuf,
    /// Instead of a stick: a simulated one with this many bulbs, on a
    /// pseudo-terminal linked at `port` (development and tests).
    #[serde(default)]
    pub simulate: Option<usize>,
}

/// Why a configuration or key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path} does not hold a 32-byte hex key seed")]
    BadKey { path: PathBuf },
    #[error("{path} is readable by others (mode {mode:o}); make it 0600")]
    KeyPermissions { path: PathBuf, mode: u32 },
}

impl Config {
    /// Reads `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let zigbee_port = config.zigbee.as_mut().map(|z| &mut z.port);
        let firmware_dir = config.firmware.as_mut().map(|f| &mut f.dir);
        let tls = config
            .mqtt
            .as_mut()
            .and_then(|m| m.tls.as_mut())
            .map(|t| [&mut t.cert, &mut t.key])
            .into_iter()
            .flatten();
        for p in [&mut config.genesis, &mut config.key, &mut config.db]
            .into_iter()
            .chain(zigbee_port)
            .chain(firmware_dir)
            .chain(tls)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

/// Reads a key file: a hex seed, readable by its owner only.
pub fn read_key(path: &Path) -> Result<Keypair, ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::KeyPermissions {
                path: path.into(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| ConfigError::BadKey { path: path.into() })?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ConfigError::BadKey { path: path.into() })?;
    Ok(Keypair::from_seed(seed))
}

/// Writes a secret (a key seed) readable by its owner only; never
/// overwrites one.
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Makes a new key and writes its seed to `path` (0600).
pub fn generate_key(path: &Path) -> Result<Keypair, ConfigError> {
    let rng = ring::rand::SystemRandom::new();
    let key = Keypair::generate(&rng).map_err(|_| ConfigError::BadKey { path: path.into() })?;
    write_secret(path, &hex::encode(key.seed())).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    Ok(key)
}
