//! The `itc-gateway` command line.

mod cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use itc_chain::genesis::Genesis;
use itc_chain::pbft::Params;
use itc_gateway::app::{self, GatewayConfig};
use itc_gateway::config::{read_key, Config};
use tokio::net::TcpListener;

/// mimalloc: small allocations (messages, rows, futures) from per-thread
/// pages, instead of glibc's arenas and their consolidation passes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "itc-gateway",
    version,
    about = "ITC gateway: a cloud-free ledger for lighting gateways"
)]
struct Cli {
    /// Log lines for people, or JSON for a collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "ITC_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare a gateway: its key, its config and a genesis, made or joined.
    Init(cli::setup::Init),
    /// Make or show keys.
    Keys {
        #[command(subcommand)]
        command: cli::setup::KeysCommand,
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
        /// Overrides the number of simulated bulbs.
        #[arg(long, env = "ITC_BULBS")]
        bulbs: Option<usize>,
    },
    /// Start a local development cluster: gateways running PBFT among
    /// themselves on loopback, each with its store, its API and simulated
    /// bulbs.
    Dev(cli::setup::Dev),
    /// A gateway's chain status, as a signed user.
    Status {
        #[command(flatten)]
        args: cli::client::ClientArgs,
    },
    /// Call a gateway's API as a signed user.
    Client {
        #[command(flatten)]
        args: cli::client::ClientArgs,
        #[command(subcommand)]
        command: cli::client::ClientCommand,
    },
    /// MQTT logins for integrations (Home Assistant and the like).
    MqttUser {
        #[command(subcommand)]
        command: cli::mqtt::MqttUserCommand,
    },
    /// A light client: headers only, verified, in sqlite.
    Light {
        #[command(subcommand)]
        command: cli::light::LightCommand,
    },
    /// Measure the gateway (figures go into BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        what: cli::bench::BenchCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    // The embedded broker logs every connection at info; its warnings are
    // what matter here.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=warn".into());
    match cli.log_format {
        // Logs go to stderr; stdout carries what a command prints.
        LogFormat::Human => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    match cli.command {
        Command::Init(init) => cli::setup::init(init),
        Command::Keys { command } => cli::setup::keys(command),
        Command::Run {
            config,
            api,
            db,
            bulbs,
        } => {
            let mut config = Config::load(&config)?;
            if let Some(api) = api {
                config.api = api;
            }
            if let Some(db) = db {
                config.db = db;
            }
            if let Some(bulbs) = bulbs {
                config.bulbs = bulbs;
            }
            run(config).await
        }
        Command::Dev(dev) => cli::setup::dev(dev).await,
        Command::Status { args } => {
            let client = args.client()?;
            let status = client.status().await?;
            let info = client.info().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "gateway": info, "chain": status
                }))?
            );
            Ok(())
        }
        Command::Client { args, command } => cli::client::run(&args, command).await,
        Command::Light { command } => cli::light::run(command).await,
        Command::MqttUser { command } => cli::mqtt::run(command).await,
        Command::Bench { what } => cli::bench::run(what).await,
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
    let listen = match config.listen {
        Some(addr) => addr.to_string(),
        None => me.addr.as_str().to_string(),
    };
    let peers = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding the peer address {listen}"))?;
    let api = TcpListener::bind(config.api)
        .await
        .with_context(|| format!("binding the API address {}", config.api))?;
    let mqtt = match &config.mqtt {
        Some(mqtt) => Some(itc_gateway::service::mqtt::MqttConfig {
            listener: TcpListener::bind(mqtt.listen)
                .await
                .with_context(|| format!("binding the MQTT address {}", mqtt.listen))?,
            base_topic: mqtt.base_topic.clone(),
            tls: match &mqtt.tls {
                Some(tls) => Some(itc_bridges::mqtt::tls::acceptor(&tls.cert, &tls.key)?),
                None => None,
            },
        }),
        None => None,
    };
    let gateway = app::launch(GatewayConfig {
        key,
        genesis,
        db: config.db.clone(),
        peers,
        api,
        params: Params::default(),
        bulbs: config.bulbs,
        spare_bulbs: config.spare_bulbs,
        zigbee: config.zigbee.clone(),
        firmware: config.firmware.clone(),
        mqtt,
        limits: itc_web::Limits::default(),
        dag: config.dag.config(),
        mesh: config.mesh.clone(),
    })
    .await?;
    tracing::info!(api = %gateway.api, gateway = %gateway.node.public, "gateway running");
    println!("api {}/api/v1/health", gateway.url());
    if let Some(code) = &gateway.claim_code {
        println!("claim code {code}  (claim this gateway with it: itc-gateway client claim-gateway {code})");
        tracing::info!(code = %code, "unclaimed gateway: one-time claim code");
    }
    cli::shutdown_signal().await;
    tracing::info!("shutting down");
    gateway.shutdown().await?;
    Ok(())
}
