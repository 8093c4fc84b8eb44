//! The command line as an operator and a user meet it: `init` a one-gateway
//! chain, `run` it, claim it and a bulb with `client`, stop it with SIGTERM
//! (a clean exit), start it again: still claimed, nothing lost, no new code.

mod common;
use common::free_port;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_itc-gateway");

fn itc(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run itc-gateway")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Starts `run` and returns it with the lines it prints.
fn run(config: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM should end the gateway cleanly: {exit}"
    );
}

#[test]
fn init_run_claim_stop_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw");
    let user_key = dir.path().join("user.key");
    let user = ok(itc(&[
        "keys",
        "generate",
        "--out",
        user_key.to_str().unwrap(),
    ]));
    assert!(user.trim().starts_with("itcpk1"));
    let api = format!("127.0.0.1:{}", free_port());
    let peer = format!("127.0.0.1:{}", free_port());
    ok(itc(&[
        "init",
        "--dir",
        gw.to_str().unwrap(),
        "--create",
        "--addr",
        &peer,
        "--api",
        &api,
        "--bulbs",
        "2",
        "--chain-id",
        "itc-test",
    ]));
    let config = gw.join("gateway.toml");
    let url = format!("http://{api}");
    let status = || -> serde_json::Value {
        serde_json::from_str(&ok(itc(&[
            "status",
            "--url",
            &url,
            "--key",
            user_key.to_str().unwrap(),
        ])))
        .unwrap()
    };
    let client = |args: &[&str]| {
        let mut all = vec!["client", "--url", &url, "--key", user_key.to_str().unwrap()];
        all.extend_from_slice(args);
        itc(&all)
    };

    let (child, lines) = run(&config);
    let code = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a claim code");
        if let Some(rest) = line.strip_prefix("claim code ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // A wrong code is refused with the reason; the right one works once.
    let wrong = client(&["claim-gateway", "AAAAA-AAAAA", "--no-adopt"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("403"));
    // Without adoption: the bulbs registered at start stay to be claimed.
    assert!(ok(client(&["claim-gateway", &code, "--no-adopt"])).contains("\"admin\": true"));

    // The bulbs get registered on chain; claim one and turn it off.
    let mut light = None;
    for _ in 0..100 {
        let listed: serde_json::Value = serde_json::from_str(&ok(client(&["lights"]))).unwrap();
        if let Some(first) = listed.as_array().and_then(|l| l.first()) {
            light = Some(first["id"].as_str().unwrap().to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let light = light.expect("a registered light");
    assert!(ok(client(&["claim", &light])).contains("\"committed\": true"));
    let set: serde_json::Value =
        serde_json::from_str(&ok(client(&["set", &light, "--off"]))).unwrap();
    assert_eq!(set["target"]["on"], false);
    let before = status();
    let height = before["chain"]["height"].as_u64().unwrap();
    assert!(height >= 2, "{before}");
    terminate(child);

    // MQTT on, and a login for Home Assistant made by the operator.
    let mqtt = format!("127.0.0.1:{}", free_port());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[mqtt]\nlisten = \"{mqtt}\"\n"));
    std::fs::write(&config, text).unwrap();
    let add_user = || {
        itc(&[
            "mqtt-user",
            "add",
            "home-assistant",
            "--account",
            user.trim(),
            "--config",
            config.to_str().unwrap(),
        ])
    };
    let made = ok(add_user());
    let password = made
        .lines()
        .find_map(|l| l.strip_prefix("password "))
        .unwrap()
        .to_string();
    assert!(!add_user().status.success(), "the name is taken");

    // Restarted: no new code, still the admin, the claim still on chain.
    let (child, lines) = run(&config);
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.starts_with("api "), "{first}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(lines.try_iter().all(|l| !l.starts_with("claim code")));
    let info: serde_json::Value = serde_json::from_str(&ok(client(&["info"]))).unwrap();
    assert_eq!(info["admin"], true);
    let owner: serde_json::Value = serde_json::from_str(&ok(client(&["owner", &light]))).unwrap();
    assert_eq!(owner["owner"].as_str().unwrap(), user.trim());
    assert!(status()["chain"]["height"].as_u64().unwrap() >= height);

    // The integration logs in; the administrator gets a setup code.
    let setup: serde_json::Value = serde_json::from_str(&ok(client(&["mqtt-setup-code"]))).unwrap();
    assert_eq!(setup["broker"].as_str().unwrap(), mqtt);
    assert_eq!(setup["code"].as_str().unwrap().len(), 20);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let accepted = runtime.block_on(async {
        let addr: std::net::SocketAddr = mqtt.parse().unwrap();
        let mut options = rumqttc::MqttOptions::new("ha", addr.ip().to_string(), addr.port());
        options.set_credentials("home-assistant", password);
        let (_client, mut events) = rumqttc::AsyncClient::new(options, 4);
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    });
    assert!(accepted, "the integration's login");
    terminate(child);
}
