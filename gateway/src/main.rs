//! The `itc-gateway` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use itc_chain::codec::Text;
use itc_chain::genesis::Genesis;
use itc_chain::pbft::Params;
use itc_chain::tx::ChainId;
use itc_chain::validators::Validator;
use itc_chain::Keypair;
use itc_gateway::config::{read_key, Config};
use itc_gateway::node::{self, NodeConfig};
use itc_gateway::SqliteStore;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "itc-gateway",
    version,
    about = "ITC gateway: a cloud-free ledger for lighting gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// PBFT among gateways in this process over loopback TCP + Noise and
    /// sqlite: committed tx/s and submit-to-commit latency. The last line
    /// printed is a JSON object.
    Consensus {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Offered transfers per second; 0 saturates.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Measure the gateway (figures go into BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Run one gateway from its configuration file.
    Run {
        /// The configuration file (TOML).
        #[arg(long, env = "ITC_CONFIG")]
        config: PathBuf,
        /// Overrides the API address.
        #[arg(long, env = "ITC_API")]
        api: Option<std::net::SocketAddr>,
        /// Overrides the store path.
        #[arg(long, env = "ITC_DB")]
        db: Option<PathBuf>,
    },
    /// Start a local development cluster: the gateways run PBFT among
    /// themselves on loopback, each with its sqlite store and its API.
    Dev {
        /// Where the cluster's files go.
        #[arg(long, default_value = "itc-dev")]
        dir: PathBuf,
        /// Number of gateways.
        #[arg(long, default_value_t = 4)]
        gateways: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Run { config, api, db } => {
            let mut config = Config::load(&config)?;
            if let Some(api) = api {
                config.api = api;
            }
            if let Some(db) = db {
                config.db = db;
            }
            run(config).await
        }
        Command::Dev { dir, gateways } => dev(dir, gateways).await,
        Command::Bench {
            what:
                BenchCommand::Consensus {
                    nodes,
                    seconds,
                    rate,
                },
        } => {
            let report = itc_gateway::bench::consensus(nodes, seconds, rate).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// Runs one gateway until SIGINT or SIGTERM.
async fn run(config: Config) -> anyhow::Result<()> {
    let genesis_text = std::fs::read_to_string(&config.genesis)
        .with_context(|| format!("reading {}", config.genesis.display()))?;
    let genesis = Genesis::from_toml(&genesis_text)?;
    let key = read_key(&config.key)?;
    let me = genesis
        .validators
        .iter()
        .find(|v| v.key == key.public())
        .with_context(|| format!("{} is not a validator of this genesis", key.public()))?;
    let listener = TcpListener::bind(me.addr.as_str())
        .await
        .with_context(|| format!("binding the peer address {}", me.addr.as_str()))?;
    let store = SqliteStore::open(&config.db).await?;
    let (node, task) = node::start(NodeConfig {
        key,
        genesis,
        store: store.clone(),
        listener,
        params: Params::default(),
    })
    .await?;
    let api = TcpListener::bind(config.api)
        .await
        .with_context(|| format!("binding the API address {}", config.api))?;
    tracing::info!(api = %config.api, gateway = %node.public, "gateway running");
    println!("api http://{}/api/v1/health", api.local_addr()?);
    let server =
        axum::serve(api, itc_web::router(node.clone())).with_graceful_shutdown(shutdown_signal());
    server.await?;
    tracing::info!("shutting down");
    node.shutdown();
    task.await??;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn dev(dir: PathBuf, gateways: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rng = ring::rand::SystemRandom::new();
    let genesis_path = dir.join("genesis.toml");
    let genesis = if genesis_path.exists() {
        Genesis::from_toml(&std::fs::read_to_string(&genesis_path)?)?
    } else {
        let mut validators = Vec::new();
        for i in 0..gateways {
            let key = Keypair::generate(&rng)?;
            write_secret(
                &dir.join(format!("gateway-{i}.key")),
                &hex::encode(key.seed()),
            )?;
            // The same gateway on its own: `itc-gateway run --config …`.
            std::fs::write(
                dir.join(format!("gateway-{i}.toml")),
                format!(
                    "genesis = \"genesis.toml\"\nkey = \"gateway-{i}.key\"\n\
                     db = \"gateway-{i}.sqlite\"\napi = \"127.0.0.1:{}\"\n",
                    8080 + i
                ),
            )?;
            validators.push(Validator {
                key: key.public(),
                addr: Text::new(format!("127.0.0.1:{}", 7100 + i))?,
            });
        }
        // An owner account with tokens, whose key the developer holds.
        let owner = Keypair::generate(&rng)?;
        write_secret(&dir.join("owner.key"), &hex::encode(owner.seed()))?;
        let genesis = Genesis {
            chain_id: ChainId::new("itc-dev")?,
            genesis_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as u64,
            epoch_length: 100,
            validators,
            balances: vec![itc_chain::genesis::GenesisBalance {
                account: owner.public(),
                amount: 1_000_000 * 1_000_000,
            }],
        };
        std::fs::write(&genesis_path, genesis.to_toml()?)?;
        genesis
    };
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (i, validator) in genesis.validators.iter().enumerate() {
        let key = read_key(&dir.join(format!("gateway-{i}.key")))?;
        anyhow::ensure!(
            key.public() == validator.key,
            "gateway-{i}.key does not match the genesis"
        );
        let listener = TcpListener::bind(validator.addr.as_str())
            .await
            .with_context(|| format!("binding {}", validator.addr.as_str()))?;
        let store = SqliteStore::open(&dir.join(format!("gateway-{i}.sqlite"))).await?;
        let (node, task) = node::start(NodeConfig {
            key,
            genesis: genesis.clone(),
            store: store.clone(),
            listener,
            params: Params::default(),
        })
        .await?;
        let api = TcpListener::bind(("127.0.0.1", 8080 + i as u16)).await?;
        println!(
            "gateway {i}: api http://{}/api/v1/health  (status: /api/v1/chain/status, submit: POST /api/v1/transactions)",
            api.local_addr()?
        );
        servers.push(tokio::spawn(std::future::IntoFuture::into_future(
            axum::serve(api, itc_web::router(node.clone())),
        )));
        nodes.push((node, task, store));
    }
    println!("genesis: {}", genesis_path.display());
    println!("owner key (funded): {}", dir.join("owner.key").display());
    println!(
        "Not there yet: simulated bulbs, the lighting/ownership API with signed requests and \
         claim codes (issue 4). Ctrl-C stops the cluster."
    );
    shutdown_signal().await;
    for server in &servers {
        server.abort();
    }
    for (node, task, store) in nodes {
        node.shutdown();
        task.await??;
        store.close().await;
    }
    Ok(())
}

/// Writes a secret readable by the owner only.
fn write_secret(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
