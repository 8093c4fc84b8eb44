//! Four real `itc-gateway run` processes on loopback: transactions submitted
//! over HTTP commit; a backup is killed with SIGKILL and the others keep
//! committing; it restarts and catches up; then the primary is killed, the
//! others change view and keep committing; it restarts and catches up. All
//! four end with the same head hash.
//!
//! (With n = 4, f = 1: one gateway down at a time keeps a quorum.)

mod common;
use common::free_port;

use itc_chain::ledger::StateRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use itc_chain::codec::{encode, Text};
use itc_chain::testkit::Workload;
use itc_chain::tx::{Tx, TxBody};
use itc_web::ChainStatus;

struct Gateway {
    config: std::path::PathBuf,
    api: String,
    child: Option<Child>,
}

impl Gateway {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_itc-gateway"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn itc-gateway");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_secret(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The chain status, asked as a signed user (any key will do).
async fn status(_: &reqwest::Client, gateway: &Gateway) -> Option<ChainStatus> {
    let user = itc_chain::Keypair::from_seed([7; 32]);
    itc_web::client::Client::new(gateway.api.clone(), user)
        .status()
        .await
        .ok()
}

/// Waits until every listed gateway is above `height` with nothing pending.
async fn wait_all(
    client: &reqwest::Client,
    gateways: &[&Gateway],
    height: u64,
) -> Vec<ChainStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = Vec::new();
        for g in gateways {
            match status(client, g).await {
                Some(s) if s.height >= height && s.pending == 0 => all.push(s),
                _ => break,
            }
        }
        if all.len() == gateways.len() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "gateways did not reach height {height}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_backup_then_the_primary_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut work = Workload::new(4, 8, 41);
    for v in work.genesis.validators.iter_mut() {
        v.addr = Text::new(format!("127.0.0.1:{}", free_port())).unwrap();
    }
    std::fs::write(
        dir.path().join("genesis.toml"),
        work.genesis.to_toml().unwrap(),
    )
    .unwrap();
    let mut gateways = Vec::new();
    for (i, v) in work.genesis.validators.iter().enumerate() {
        let key = work.validator_key(&v.key).unwrap();
        write_secret(
            &dir.path().join(format!("gw{i}.key")),
            &hex::encode(key.seed()),
        );
        let api = free_port();
        let config = dir.path().join(format!("gw{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "genesis = \"genesis.toml\"\nkey = \"gw{i}.key\"\ndb = \"gw{i}.sqlite\"\napi = \"127.0.0.1:{api}\"\n"
            ),
        )
        .unwrap();
        gateways.push(Gateway {
            config,
            api: format!("http://127.0.0.1:{api}"),
            child: None,
        });
    }
    for g in gateways.iter_mut() {
        g.start();
    }
    let client = reqwest::Client::new();

    // Nonces per user, counted here: every submitted transfer commits.
    let mut nonces = vec![0u64; work.users.len()];
    let mut round = 0usize;
    let mut submit = |to: &Gateway, count: usize| {
        let txs: Vec<String> = (0..count)
            .map(|k| {
                let from = (round + k) % work.users.len();
                let to_user = (from + 1) % work.users.len();
                let tx = Tx {
                    chain_id: work.genesis.chain_id.clone(),
                    sender: work.users[from].public(),
                    nonce: nonces[from],
                    body: TxBody::Transfer {
                        to: work.users[to_user].public(),
                        amount: 1,
                    },
                }
                .sign(&work.users[from]);
                nonces[from] += 1;
                hex::encode(encode(&tx))
            })
            .collect();
        round += count;
        let url = format!("{}/api/v1/transactions", to.api);
        let body = serde_json::json!({ "txs": txs });
        (url, body)
    };
    let post = |client: reqwest::Client, (url, body): (String, serde_json::Value)| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.post(&url).json(&body).send().await {
                assert_eq!(r.status(), 202, "{:?}", r.text().await);
                return;
            }
            assert!(Instant::now() < deadline, "{url} never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    post(client.clone(), submit(&gateways[0], 20)).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    let start = wait_all(&client, &all, 1).await;
    let (ledger, _) = itc_chain::Ledger::genesis(&work.genesis).unwrap();
    let primary_key = ledger.validator_sets().active.primary(start[0].view).key;
    let primary = work
        .genesis
        .validators
        .iter()
        .position(|v| v.key == primary_key)
        .unwrap();

    // Kill a backup; the other three keep committing.
    let backup = (primary + 1) % 4;
    gateways[backup].kill();
    let before = start.iter().map(|s| s.height).max().unwrap();
    post(client.clone(), submit(&gateways[primary], 20)).await;
    let live: Vec<&Gateway> = (0..4)
        .filter(|i| *i != backup)
        .map(|i| &gateways[i])
        .collect();
    let after = wait_all(&client, &live, before + 1).await;

    // It restarts and catches up.
    gateways[backup].start();
    let height = after.iter().map(|s| s.height).max().unwrap();
    let all: Vec<&Gateway> = gateways.iter().collect();
    wait_all(&client, &all, height).await;

    // Kill the primary; the others change view and keep committing.
    gateways[primary].kill();
    let other = (primary + 2) % 4;
    post(client.clone(), submit(&gateways[other], 20)).await;
    let live: Vec<&Gateway> = (0..4)
        .filter(|i| *i != primary)
        .map(|i| &gateways[i])
        .collect();
    let after = wait_all(&client, &live, height + 1).await;
    assert!(
        after.iter().all(|s| s.view > start[0].view),
        "no view change: {after:?}"
    );

    // It restarts and catches up; all four agree on the head.
    gateways[primary].start();
    let height = after.iter().map(|s| s.height).max().unwrap();
    post(client.clone(), submit(&gateways[other], 10)).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    let end = wait_all(&client, &all, height + 1).await;
    let target = end.iter().map(|s| s.height).min().unwrap();
    let end = wait_all(&client, &all, target).await;
    let heads: Vec<(u64, &str)> = end.iter().map(|s| (s.height, s.head.as_str())).collect();
    let max = heads.iter().map(|h| h.0).max().unwrap();
    let end = if heads.iter().all(|h| h.0 == max) {
        end
    } else {
        wait_all(&client, &all, max).await
    };
    assert!(
        end.windows(2).all(|w| w[0].head == w[1].head),
        "heads differ: {end:?}"
    );
}
