//! `itc-gateway client …`: everything a user does, from the shell, as a
//! signed user of a gateway's API. The signing is `itc_web::client`, the
//! same code the integration tests use.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use itc_bridges::light::LightCommand;
use itc_chain::types::{DeviceId, Rights};
use itc_gateway::config::read_key;
use itc_web::client::Client;
use serde::Serialize;

/// Where to reach the gateway and whose key signs.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The gateway's API, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "ITC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The user's key file (hex seed, mode 0600).
    #[arg(long, env = "ITC_KEY")]
    pub key: PathBuf,
}

impl ClientArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        let key = read_key(&self.key)?;
        Ok(Client::new(self.url.clone(), key))
    }
}

/// A light command's fields as flags.
#[derive(Args, Debug)]
pub struct LightFlags {
    #[arg(long, conflicts_with = "off")]
    on: bool,
    #[arg(long)]
    off: bool,
    /// 1–254.
    #[arg(long)]
    brightness: Option<u8>,
    /// Colour temperature in mireds (153–500).
    #[arg(long)]
    color_temp: Option<u16>,
    /// CIE xy as `x,y`.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    xy: Option<Vec<f64>>,
    /// Hue in degrees (0–359); needs --saturation.
    #[arg(long)]
    hue: Option<u16>,
    /// Saturation in percent (0–100).
    #[arg(long)]
    saturation: Option<u8>,
    #[arg(long)]
    transition_ms: Option<u32>,
}

impl LightFlags {
    fn command(&self) -> LightCommand {
        LightCommand {
            on: if self.on {
                Some(true)
            } else if self.off {
                Some(false)
            } else {
                None
            },
            brightness: self.brightness,
            color_temp: self.color_temp,
            xy: self
                .xy
                .as_ref()
                .and_then(|v| Some([*v.first()?, *v.get(1)?])),
            hue: self.hue,
            saturation: self.saturation,
            transition_ms: self.transition_ms,
        }
    }
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// This gateway: its key, chain, and whether you administer it.
    Info,
    /// Become the gateway's administrator with the code it printed; the
    /// devices it pairs from now on are registered as yours.
    ClaimGateway {
        code: String,
        /// Leave newly paired devices unowned (claim them one by one).
        #[arg(long)]
        no_adopt: bool,
    },
    /// A one-time setup code for a new Wi-Fi (MQTT) device, which becomes
    /// yours when it onboards (administrators only).
    MqttSetupCode,
    /// Your account's balance and next nonce (or another account's).
    Account { account: Option<String> },
    /// The lights you may use.
    Lights,
    /// One light.
    Light { id: String },
    /// Set a light's state.
    Set {
        id: String,
        #[command(flatten)]
        state: LightFlags,
    },
    /// Your groups.
    Groups,
    /// Make a group of lights you control.
    GroupCreate { name: String, lights: Vec<String> },
    /// Set every light in a group.
    GroupSet {
        id: i64,
        #[command(flatten)]
        state: LightFlags,
    },
    /// Delete one of your groups.
    GroupDelete { id: i64 },
    /// A group's scenes.
    Scenes { group: i64 },
    /// Store a group's current states as a scene.
    SceneStore { group: i64, name: String },
    /// Recall a scene.
    SceneRecall {
        id: i64,
        #[arg(long)]
        transition_ms: Option<u32>,
    },
    /// Claim a device this gateway registered (you must administer it).
    Claim { device: String },
    /// Give a device you own to another account.
    Transfer { device: String, to: String },
    /// Let another account use a device you own for a time.
    Share {
        device: String,
        to: String,
        /// How long the grant lasts.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// Read only, no control.
        #[arg(long)]
        read_only: bool,
    },
    /// End a grant.
    Revoke { device: String, grantee: String },
    /// The grants on a device you own.
    Grants { device: String },
    /// Open the network for new devices.
    PermitJoin {
        #[arg(default_value_t = 60)]
        seconds: u32,
    },
    /// Every device on the gateway's networks (administrator).
    Devices,
    /// Recent blocks.
    Blocks {
        #[arg(long, default_value_t = 10)]
        limit: u64,
    },
    /// One block.
    Block { height: u64 },
    /// A committed transaction with its inclusion proof.
    Tx { id: String },
    /// Who owns a device, with a state proof.
    Owner { device: String },
    /// Follow live events (light states, joins, commits) until Ctrl-C: one
    /// JSON object per line.
    Events,
}

fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn device(id: &str) -> anyhow::Result<DeviceId> {
    DeviceId::new(id).with_context(|| format!("{id:?} is not a device id"))
}

fn account(text: &str) -> anyhow::Result<itc_chain::crypto::AccountId> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not an account: {e}"))
}

pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    match command {
        ClientCommand::Info => print(&client.info().await?),
        ClientCommand::ClaimGateway { code, no_adopt } => {
            print(&client.claim_gateway(&code, !no_adopt).await?)
        }
        ClientCommand::MqttSetupCode => print(&client.mqtt_setup_code().await?),
        ClientCommand::Account { account: who } => {
            let who = match who {
                Some(text) => account(&text)?,
                None => client.public(),
            };
            print(&client.account(&who).await?)
        }
        ClientCommand::Lights => print(&client.lights().await?),
        ClientCommand::Light { id } => print(&client.light(&device(&id)?).await?),
        ClientCommand::Set { id, state } => {
            print(&client.set_light(&device(&id)?, &state.command()).await?)
        }
        ClientCommand::Groups => print(&client.groups().await?),
        ClientCommand::GroupCreate { name, lights } => {
            let lights = lights
                .iter()
                .map(|l| device(l))
                .collect::<anyhow::Result<Vec<_>>>()?;
            print(&client.create_group(&name, &lights).await?)
        }
        ClientCommand::GroupSet { id, state } => {
            print(&client.set_group(id, &state.command()).await?)
        }
        ClientCommand::GroupDelete { id } => {
            client.delete_group(id).await?;
            println!("deleted group {id}");
            Ok(())
        }
        ClientCommand::Scenes { group } => print(&client.scenes(group).await?),
        ClientCommand::SceneStore { group, name } => {
            print(&client.store_scene(group, &name).await?)
        }
        ClientCommand::SceneRecall { id, transition_ms } => {
            print(&client.recall_scene(id, transition_ms).await?)
        }
        ClientCommand::Claim { device: id } => print(&client.claim_device(&device(&id)?).await?),
        ClientCommand::Transfer { device: id, to } => {
            print(&client.transfer(&device(&id)?, &account(&to)?).await?)
        }
        ClientCommand::Share {
            device: id,
            to,
            hours,
            read_only,
        } => {
            let rights = if read_only {
                Rights::READ
            } else {
                Rights::CONTROL.union(Rights::READ)
            };
            let expires = itc_gateway::service::now_ms() + hours * 3_600_000;
            print(
                &client
                    .share(&device(&id)?, &account(&to)?, rights, expires)
                    .await?,
            )
        }
        ClientCommand::Revoke {
            device: id,
            grantee,
        } => print(&client.revoke(&device(&id)?, &account(&grantee)?).await?),
        ClientCommand::Grants { device: id } => print(&client.grants(&device(&id)?).await?),
        ClientCommand::PermitJoin { seconds } => print(&client.permit_join(seconds).await?),
        ClientCommand::Devices => print(&client.devices().await?),
        ClientCommand::Blocks { limit } => print(&client.blocks(None, limit).await?),
        ClientCommand::Block { height } => print(&client.block(height).await?),
        ClientCommand::Tx { id } => {
            let id = id
                .parse()
                .map_err(|e| anyhow::anyhow!("{id:?} is not a transaction id: {e}"))?;
            print(&client.transaction(&id).await?)
        }
        ClientCommand::Owner { device: id } => print(&client.owner_proof(&device(&id)?).await?),
        ClientCommand::Events => follow(client.events().await?).await,
    }
}

/// Prints each event as one JSON line until the stream ends.
async fn follow(mut events: itc_web::client::EventStream) -> anyhow::Result<()> {
    while let Some(event) = events.next().await? {
        println!("{}", serde_json::to_string(&event)?);
    }
    Ok(())
}
