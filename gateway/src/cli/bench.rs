//! `itc-gateway bench …`: the measurements behind BENCHMARKS.md. Each
//! prints a JSON object as its last line.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// PBFT among gateways in this process over loopback TCP + Noise and
    /// sqlite: committed tx/s and submit-to-commit latency.
    Consensus(itc_gateway::bench::ConsensusRun),
    /// The DAG side chain on a loopback cluster: transactions one gateway
    /// takes per second (signature, work, attach), and the latency from
    /// handing a device's transaction to a gateway to its confirmation at
    /// an offered rate.
    Dag {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Registered devices issuing.
        #[arg(long, default_value_t = 200)]
        devices: usize,
        /// Transactions handed over in the ingest phase.
        #[arg(long, default_value_t = 20_000)]
        ingest: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Offered transactions per second in the latency phase.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
    },
    /// Signed control requests against one gateway of a loopback cluster:
    /// requests/s and REST-call-to-bulb-state latency.
    Api {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Callers in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Lights the commands go to.
        #[arg(long, default_value_t = 8)]
        lights: usize,
        /// Zigbee bulbs behind the simulated stick (over a PTY) instead of
        /// the in-gateway simulated bulbs.
        #[arg(long)]
        zigbee: bool,
    },
    /// The resident memory of one gateway with many simulated bulbs, all
    /// registered on chain.
    Rss {
        #[arg(long, default_value_t = 1_000)]
        bulbs: usize,
    },
    /// One gateway holding many MQTT devices (onboarded for real, in a
    /// child process): its memory, and signed device reports accepted per
    /// second.
    Mqtt {
        #[arg(long, default_value_t = 1_000)]
        devices: usize,
        /// Reports each device sends.
        #[arg(long, default_value_t = 50)]
        reports: usize,
    },
    /// The devices of `bench mqtt` (run by it).
    #[command(hide = true)]
    MqttSwarm {
        #[arg(long)]
        front: std::net::SocketAddr,
        #[arg(long)]
        codes: std::path::PathBuf,
        #[arg(long)]
        reports: usize,
    },
    /// A light client becoming current from far behind, by skipping and
    /// header by header, over HTTP into sqlite.
    LightSync {
        #[arg(long, default_value_t = 100_000)]
        behind: usize,
    },
}

pub async fn run(what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Consensus(run) => {
            let report = itc_gateway::bench::consensus(run).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::Dag {
            nodes,
            devices,
            ingest,
            seconds,
            rate,
        } => {
            let report =
                itc_gateway::bench::dag::dag(nodes, devices, ingest, seconds, rate).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::Api {
            seconds,
            concurrency,
            lights,
            zigbee,
        } => {
            let report = itc_gateway::bench::api::api(seconds, concurrency, lights, zigbee).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::Mqtt { devices, reports } => {
            let report = itc_gateway::bench::mqtt::mqtt(devices, reports).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::MqttSwarm {
            front,
            codes,
            reports,
        } => {
            let codes = std::fs::read_to_string(codes)?
                .lines()
                .map(str::to_string)
                .collect();
            itc_gateway::bench::mqtt::swarm(front, codes, reports).await?;
        }
        BenchCommand::LightSync { behind } => {
            let report = itc_gateway::bench::light::light_sync(behind).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        BenchCommand::Rss { bulbs } => {
            let report = itc_gateway::bench::api::rss(bulbs).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
