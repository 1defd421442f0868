//! The real binary, killed with SIGKILL and started again on the same data
//! directory: accounts and meetings are intact.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");
const PASSWORD: &str = "correct horse battery staple";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn serve(dir: &Path, port: u16) -> Child {
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--media-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

async fn sign_in(client: &reqwest::Client, port: u16) -> u16 {
    client
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/signin"))
        .json(&json!({"username": "ops", "password": PASSWORD}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn accounts_and_meetings_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut create = Command::new(BIN)
        .args([
            "admin",
            "create-user",
            "ops",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("admin runs");
    create
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password written");
    assert!(create.wait().expect("admin exits").success());

    let port = free_port();
    let mut server = serve(dir.path(), port);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    assert_eq!(sign_in(&client, port).await, 200);
    let created: Value = client
        .post(format!("http://127.0.0.1:{port}/api/v1/meetings"))
        .json(&json!({"title": "Board", "settings": {"screen_share": "everyone", "max_participants": 7}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");

    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");

    let port = free_port();
    let mut server = serve(dir.path(), port);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    assert_eq!(sign_in(&client, port).await, 200);
    let listed: Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/meetings"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let again = &listed[0];
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["title"], "Board");
    assert_eq!(again["passcode"], created["passcode"]);
    assert_eq!(again["settings"], created["settings"]);
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
}
