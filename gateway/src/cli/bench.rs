//! `itc-gateway bench …`: the measurements behind BENCHMARKS.md. Each
//! prints a JSON object as its last line.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// PBFT among gateways in this process over loopback TCP + Noise and
    /// sqlite: committed tx/s and submit-to-commit latency.
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

pub async fn run(what: BenchCommand) -> anyhow::Result<()> {
    match what {
        BenchCommand::Consensus {
            nodes,
            seconds,
            rate,
        } => {
            let report = itc_gateway::bench::consensus(nodes, seconds, rate).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
