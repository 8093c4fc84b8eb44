//! `itc-gateway light …`: a light client from the shell.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use itc_chain::genesis::Genesis;
use itc_chain::types::DeviceId;
use itc_gateway::light::{self, HeaderStore};

#[derive(Subcommand)]
pub enum LightCommand {
    /// Fetch, verify and store headers from gateways (resumes where it
    /// stopped; a gateway serving bad headers is named and left).
    Sync {
        /// A gateway's API; give several to fall back on.
        #[arg(long = "from", required = true)]
        from: Vec<String>,
        #[arg(long, default_value = "headers.sqlite")]
        db: PathBuf,
        /// The chain's genesis (the trusted start).
        #[arg(long)]
        genesis: PathBuf,
        /// Jump to the newest header (Tendermint-style skipping with
        /// bisection) instead of verifying every one.
        #[arg(long)]
        skip: bool,
        /// How long a trusted header may be used to skip from, in hours.
        #[arg(long, default_value_t = 24 * 14)]
        trusting_period_hours: u64,
    },
    /// Check who owns a device against the stored, verified headers.
    VerifyOwner {
        #[arg(long)]
        from: String,
        #[arg(long, default_value = "headers.sqlite")]
        db: PathBuf,
        #[arg(long)]
        device: String,
    },
}

pub async fn run(command: LightCommand) -> anyhow::Result<()> {
    match command {
        LightCommand::Sync {
            from,
            db,
            genesis,
            skip,
            trusting_period_hours,
        } => {
            let text = std::fs::read_to_string(&genesis)
                .with_context(|| format!("reading {}", genesis.display()))?;
            let genesis = Genesis::from_toml(&text)?;
            let store = HeaderStore::open(&db).await?;
            let mode = if skip {
                light::Mode::Skipping {
                    trusting_period_ms: trusting_period_hours * 3_600_000,
                }
            } else {
                light::Mode::Sequential
            };
            let report = light::sync_with(&from, &store, &genesis, mode, |height, target| {
                eprint!("\rheaders {height}/{target}");
            })
            .await?;
            eprintln!();
            for (url, reason) in &report.refused {
                println!("left {url}: {reason}");
            }
            println!(
                "verified headers {}..={} ({} new)",
                report.from, report.to, report.fetched
            );
            Ok(())
        }
        LightCommand::VerifyOwner { from, db, device } => {
            let device = DeviceId::new(device.as_str())
                .with_context(|| format!("{device:?} is not a device id"))?;
            let store = HeaderStore::open(&db).await?;
            match light::verify_owner(&from, &store, &device).await? {
                Some(owner) => println!("{device} is owned by {owner} (proof verified)"),
                None => println!("{device} has no owner (proof verified)"),
            }
            Ok(())
        }
    }
}
