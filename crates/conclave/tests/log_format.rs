//! `--log-format json` / `log_format = "json"` on the real binary: every log
//! line is one JSON object a collector can parse, carrying the node id in
//! cluster mode; an unknown format is refused naming the accepted ones.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::redis::Redis;

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `conclave serve` with `extra` arguments at info level, waits for
/// `/healthz`, makes a failing sign-in (a request that logs), stops it and
/// returns everything it wrote to standard error.
async fn run_and_collect_stderr(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut child: Child = Command::new(BIN)
        .args(["serve", "--listen", &addr.to_string(), "--media-port", "0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("CONCLAVE_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start conclave serve");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let c = reqwest::Client::builder()
        .timeout(crate::common::TIMEOUT)
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..500 {
        if let Ok(r) = c.get(format!("http://{addr}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            up = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "conclave serve exited: {status}: {}",
                reader.join().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "conclave serve did not come up on {addr}");
    let r = c
        .post(format!("http://{addr}/api/v1/auth/signin"))
        .json(&json!({"username": "nobody", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap()
}

/// Every non-empty line parsed as a JSON object with `level`, `target` and
/// `fields.message`.
fn json_lines(stderr: &str) -> Vec<Value> {
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(v["level"].is_string(), "no level: {l}");
            assert!(v["target"].is_string(), "no target: {l}");
            assert!(v["fields"]["message"].is_string(), "no message: {l}");
            v
        })
        .collect();
    assert!(!lines.is_empty(), "the server logged nothing at info");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_writes_one_json_object_per_line() {
    let stderr = run_and_collect_stderr(&["--log-format", "json"]).await;
    let lines = json_lines(&stderr);
    assert!(
        lines.iter().all(|v| v.get("node_id").is_none()),
        "a single node has no node id: {stderr}"
    );
    // The text format, by contrast, is not JSON (the option really switches).
    let text = run_and_collect_stderr(&[]).await;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(serde_json::from_str::<Value>(first).is_err(), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_node_id_in_cluster_mode() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("conclave.toml");
    std::fs::write(
        &config,
        format!(
            "log_format = \"json\"\n[cluster]\nredis_url = \"{}\"\nnode_id = \"node-log.1\"\n\
             internal_url = \"http://node-log.internal:8080\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let stderr = run_and_collect_stderr(&["--config", config.to_str().unwrap()]).await;
    for v in json_lines(&stderr) {
        assert_eq!(v["node_id"], "node-log.1", "{v}");
    }
}

#[test]
fn an_unknown_format_is_refused_naming_the_accepted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let flag = Command::new(BIN)
        .args(["serve", "--log-format", "xml", "--data-dir"])
        .arg(dir.path())
        .env_remove("CONCLAVE_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(!flag.status.success());
    let err = String::from_utf8_lossy(&flag.stderr);
    assert!(
        err.contains("'xml'") && err.contains("text") && err.contains("json"),
        "{err}"
    );

    let config = dir.path().join("conclave.toml");
    std::fs::write(&config, "log_format = \"xml\"\n").unwrap();
    let file = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env_remove("CONCLAVE_LOG_FORMAT")
        .output()
        .unwrap();
    assert!(!file.status.success());
    let err = String::from_utf8_lossy(&file.stderr);
    assert!(
        err.contains("xml") && err.contains("`text`") && err.contains("`json`"),
        "{err}"
    );
}
