//! Setting gateways up: `init` (a key, a config and a genesis made or
//! joined), `keys`, and `dev` (a whole local cluster).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use itc_chain::codec::Text;
use itc_chain::genesis::{Genesis, GenesisBalance};
use itc_chain::pbft::Params;
use itc_chain::tx::ChainId;
use itc_chain::validators::Validator;
use itc_chain::PublicKey;
use itc_gateway::app::{self, GatewayConfig};
use itc_gateway::config::{generate_key, read_key};
use tokio::net::TcpListener;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new key (a gateway's or a user's) and print its account.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the account of a key file.
    Show {
        #[arg(long)]
        key: PathBuf,
    },
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { out } => {
            let key = generate_key(&out)?;
            println!("{}", key.public());
        }
        KeysCommand::Show { key } => println!("{}", read_key(&key)?.public()),
    }
    Ok(())
}

/// `init`: prepare a gateway's directory.
#[derive(Args)]
pub struct Init {
    /// The gateway's directory (its key, config, genesis and database).
    #[arg(long, default_value = "/var/lib/itc-gateway")]
    pub dir: PathBuf,
    /// The address other gateways reach this one at (in the genesis).
    #[arg(long)]
    pub addr: Option<String>,
    /// The address the peer listener binds, if not `addr` (e.g. 0.0.0.0:7100).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// The REST API's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: std::net::SocketAddr,
    /// Join this genesis (copied into the directory).
    #[arg(long, conflicts_with = "create")]
    pub genesis: Option<PathBuf>,
    /// Create a genesis: this gateway plus every `--peer`.
    #[arg(long)]
    pub create: bool,
    #[arg(long, default_value = "itc-home")]
    pub chain_id: String,
    /// Another founding gateway, as `ACCOUNT@HOST:PORT`.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Tokens for an account at genesis, as `ACCOUNT=AMOUNT`.
    #[arg(long = "fund")]
    pub funds: Vec<String>,
    /// Simulated bulbs on this gateway (until a radio is attached).
    #[arg(long, default_value_t = 0)]
    pub bulbs: usize,
}

fn parse_peer(text: &str) -> anyhow::Result<Validator> {
    let (key, addr) = text
        .split_once('@')
        .with_context(|| format!("{text:?}: expected ACCOUNT@HOST:PORT"))?;
    let key: PublicKey = key
        .parse()
        .map_err(|e| anyhow::anyhow!("{key:?} is not an account: {e}"))?;
    let _: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an IP address and port"))?;
    Ok(Validator {
        key,
        addr: Text::new(addr)?,
    })
}

pub fn init(init: Init) -> anyhow::Result<()> {
    std::fs::create_dir_all(&init.dir)
        .with_context(|| format!("creating {}", init.dir.display()))?;
    let key_path = init.dir.join("gateway.key");
    let key = if key_path.exists() {
        read_key(&key_path)?
    } else {
        generate_key(&key_path)?
    };
    let genesis_path = init.dir.join("genesis.toml");
    if init.create {
        let addr = init
            .addr
            .clone()
            .context("--create needs --addr, the address peers reach this gateway at")?;
        let mut validators = vec![parse_peer(&format!("{}@{addr}", key.public()))?];
        for peer in &init.peers {
            validators.push(parse_peer(peer)?);
        }
        let mut balances = Vec::new();
        for fund in &init.funds {
            let (account, amount) = fund
                .split_once('=')
                .with_context(|| format!("{fund:?}: expected ACCOUNT=AMOUNT"))?;
            balances.push(GenesisBalance {
                account: account
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{account:?}: {e}"))?,
                amount: amount.parse().with_context(|| format!("{amount:?}"))?,
            });
        }
        let genesis = Genesis {
            chain_id: ChainId::new(init.chain_id.clone())?,
            genesis_time_ms: itc_gateway::service::now_ms(),
            epoch_length: 100,
            validators,
            balances,
        };
        genesis.validate()?;
        std::fs::write(&genesis_path, genesis.to_toml()?)?;
    } else if let Some(source) = &init.genesis {
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("reading {}", source.display()))?;
        let genesis = Genesis::from_toml(&text)?;
        if !genesis.validators.iter().any(|v| v.key == key.public()) {
            eprintln!(
                "note: {} is not a validator of this genesis yet; the validators must add it \
                 with a validator-set change before it can run",
                key.public()
            );
        }
        if source != &genesis_path {
            std::fs::write(&genesis_path, text)?;
        }
    } else {
        anyhow::bail!(
            "give --create (with --addr) to start a chain, or --genesis FILE to join one"
        );
    }
    let mut config = format!(
        "genesis = \"genesis.toml\"\nkey = \"gateway.key\"\ndb = \"gateway.sqlite\"\napi = \"{}\"\nbulbs = {}\n",
        init.api, init.bulbs
    );
    if let Some(listen) = init.listen {
        config.push_str(&format!("listen = \"{listen}\"\n"));
    }
    let config_path = init.dir.join("gateway.toml");
    std::fs::write(&config_path, config)?;
    println!("gateway {}", key.public());
    println!("config  {}", config_path.display());
    println!("genesis {}", genesis_path.display());
    Ok(())
}

/// `dev`: a local cluster.
#[derive(Args)]
pub struct Dev {
    /// Where the cluster's files go.
    #[arg(long, default_value = "itc-dev")]
    pub dir: PathBuf,
    /// Number of gateways.
    #[arg(long, default_value_t = 4)]
    pub gateways: usize,
    /// Simulated Zigbee bulbs per gateway: factory-new, in range of the
    /// gateway's simulated coordinator stick (a real PTY speaking ZNP);
    /// they join when the gateway's network is opened (permit join).
    #[arg(long, default_value_t = 4)]
    pub bulbs: usize,
    /// Simulated Bluetooth mesh bulbs per gateway, factory-new: provisioned
    /// over the proxy protocol when the gateway's network is opened.
    #[arg(long, default_value_t = 2)]
    pub mesh_bulbs: usize,
    /// The first gateway's API port; the others follow.
    #[arg(long, default_value_t = 8080)]
    pub api_port: u16,
    /// First MQTT port (gateway i listens on this + i).
    #[arg(long, default_value_t = 1883)]
    pub mqtt_port: u16,
    /// The first gateway's peer port; the others follow.
    #[arg(long, default_value_t = 7100)]
    pub peer_port: u16,
}

fn dev_genesis(dev: &Dev) -> anyhow::Result<Genesis> {
    let genesis_path = dev.dir.join("genesis.toml");
    if genesis_path.exists() {
        return Ok(Genesis::from_toml(&std::fs::read_to_string(
            &genesis_path,
        )?)?);
    }
    let mut validators = Vec::new();
    for i in 0..dev.gateways {
        let key = generate_key(&dev.dir.join(format!("gateway-{i}.key")))?;
        // The same gateway on its own: `itc-gateway run --config …`.
        std::fs::write(
            dev.dir.join(format!("gateway-{i}.toml")),
            format!(
                "genesis = \"genesis.toml\"\nkey = \"gateway-{i}.key\"\n\
                 db = \"gateway-{i}.sqlite\"\napi = \"127.0.0.1:{}\"\n\n\
                 [zigbee]\nport = \"gateway-{i}.zigbee\"\nsimulate = {}\n",
                dev.api_port as usize + i,
                dev.bulbs,
            ),
        )?;
        validators.push(Validator {
            key: key.public(),
            addr: Text::new(format!("127.0.0.1:{}", dev.peer_port as usize + i))?,
        });
    }
    // An owner account with tokens, whose key the developer holds.
    let owner = generate_key(&dev.dir.join("owner.key"))?;
    let genesis = Genesis {
        chain_id: ChainId::new("itc-dev")?,
        genesis_time_ms: itc_gateway::service::now_ms(),
        epoch_length: 100,
        validators,
        balances: vec![GenesisBalance {
            account: owner.public(),
            amount: 1_000_000 * 1_000_000,
        }],
    };
    std::fs::write(&genesis_path, genesis.to_toml()?)?;
    Ok(genesis)
}

pub async fn dev(dev: Dev) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dev.dir).with_context(|| format!("creating {}", dev.dir.display()))?;
    let genesis = dev_genesis(&dev)?;
    let mut gateways = Vec::new();
    for (i, validator) in genesis.validators.iter().enumerate() {
        let key = read_key(&dev.dir.join(format!("gateway-{i}.key")))?;
        anyhow::ensure!(
            key.public() == validator.key,
            "gateway-{i}.key does not match the genesis"
        );
        let peers = TcpListener::bind(validator.addr.as_str())
            .await
            .with_context(|| format!("binding {}", validator.addr.as_str()))?;
        let api_addr = ("127.0.0.1", dev.api_port + i as u16);
        let api = TcpListener::bind(api_addr)
            .await
            .with_context(|| format!("binding the API at 127.0.0.1:{}", api_addr.1))?;
        gateways.push(
            app::launch(GatewayConfig {
                key,
                genesis: genesis.clone(),
                db: dev.dir.join(format!("gateway-{i}.sqlite")),
                peers,
                api,
                params: Params::default(),
                bulbs: 0,
                spare_bulbs: 0,
                zigbee: Some(itc_gateway::config::ZigbeeConfig {
                    port: dev.dir.join(format!("gateway-{i}.zigbee")),
                    simulate: Some(dev.bulbs),
                }),
                firmware: None,
                mqtt: Some(itc_gateway::service::mqtt::MqttConfig {
                    listener: TcpListener::bind(("127.0.0.1", dev.mqtt_port + i as u16))
                        .await
                        .with_context(|| {
                            format!("binding MQTT at 127.0.0.1:{}", dev.mqtt_port + i as u16)
                        })?,
                    base_topic: "itc".into(),
                    tls: None,
                }),
                limits: itc_web::Limits::default(),
                dag: Default::default(),
                mesh: itc_gateway::service::mesh::MeshConfig {
                    simulated: dev.mesh_bulbs,
                    bluetooth: false,
                },
            })
            .await?,
        );
    }
    print_dev(&dev.dir, &genesis, &gateways)?;
    super::shutdown_signal().await;
    println!("stopping…");
    for gateway in gateways {
        gateway.shutdown().await?;
    }
    Ok(())
}

fn print_dev(dir: &Path, genesis: &Genesis, gateways: &[app::Gateway]) -> anyhow::Result<()> {
    let owner_key = dir.join("owner.key");
    let owner = read_key(&owner_key)?.public();
    println!(
        "ITC dev cluster: {} gateways on chain {}, PBFT on loopback",
        gateways.len(),
        genesis.chain_id.as_str()
    );
    for (i, gateway) in gateways.iter().enumerate() {
        let code = gateway
            .claim_code
            .as_deref()
            .map_or_else(|| "(claimed)".to_string(), |c| format!("claim code {c}"));
        println!("  gateway {i}: {}/api/v1/health   {code}", gateway.url());
        if let Some(mqtt) = gateway.service.mqtt_front() {
            println!("             mqtt://{mqtt}  (Zigbee2MQTT topics under itc/, Home Assistant discovery)");
        }
    }
    let first = gateways.first().map(|g| g.url()).unwrap_or_default();
    println!("owner key: {} (account {owner})", owner_key.display());
    println!("OpenAPI:   {first}/api/v1/openapi.json   metrics: {first}/metrics");
    println!("Try, as the owner:");
    println!("  export ITC_URL={first} ITC_KEY={}", owner_key.display());
    println!(
        "  itc-gateway client claim-gateway <gateway 0's claim code>   # you adopt what it pairs"
    );
    println!(
        "  itc-gateway client permit-join 60        # the simulated Zigbee bulbs join, as yours"
    );
    println!("  itc-gateway client lights");
    println!("  itc-gateway client set <light id> --on --brightness 128 --transition-ms 500");
    println!("  itc-gateway client mqtt-setup-code      # a Wi-Fi bulb's one-time login (user \"setup\")");
    println!(
        "  itc-gateway mqtt-user add home-assistant --account {owner} --db {}",
        dir.join("gateway-0.sqlite").display()
    );
    println!(
        "Ctrl-C stops the cluster; its state stays in {}.",
        dir.display()
    );
    Ok(())
}
