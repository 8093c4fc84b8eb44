//! `itc-gateway mqtt-user …`: MQTT logins for integrations (Home
//! Assistant, Node-RED), made by the operator on the gateway's host. The
//! password is printed once; only its digest is stored.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use itc_gateway::config::Config;
use itc_gateway::mqtt::logins;
use itc_gateway::store::SqliteStore;

#[derive(Subcommand)]
pub enum MqttUserCommand {
    /// Make a login for an integration acting for an account: it sees
    /// every light's state and may command the lights that account may
    /// control on chain.
    Add {
        /// Its MQTT username.
        name: String,
        /// The account (`itcpk1…`) it acts for.
        #[arg(long)]
        account: String,
        /// The gateway's configuration file (for its store's path).
        #[arg(long, env = "ITC_CONFIG", required_unless_present = "db")]
        config: Option<PathBuf>,
        /// The gateway's store, instead of its configuration file (e.g.
        /// `itc-dev/gateway-0.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

pub async fn run(command: MqttUserCommand) -> anyhow::Result<()> {
    match command {
        MqttUserCommand::Add {
            name,
            account,
            config,
            db,
        } => {
            let db = match (db, config) {
                (Some(db), _) => db,
                (None, Some(config)) => Config::load(&config)?.db,
                (None, None) => anyhow::bail!("give --config or --db"),
            };
            let account = account
                .parse()
                .with_context(|| format!("{account:?} is not an account"))?;
            let store = SqliteStore::open(&db).await?;
            let rng = ring::rand::SystemRandom::new();
            let password = logins::add_integration(
                store.pool(),
                &rng,
                &name,
                &account,
                itc_gateway::service::now_ms(),
            )
            .await?;
            store.close().await;
            println!("username {name}");
            println!("password {password}");
            Ok(())
        }
    }
}
