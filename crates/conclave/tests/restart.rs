//! The real binary: the first start prints a one-time sign-in link, and a
//! server killed with SIGKILL comes back with its accounts and meetings intact.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// A `conclave serve` process, killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts `conclave serve` on a free port and waits until `/healthz` answers.
async fn serve(data_dir: &Path) -> Serve {
    let addr = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--media-port",
            "0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start conclave serve");
    let mut s = Serve { child, addr };
    let url = format!("http://{addr}/healthz");
    for _ in 0..500 {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == StatusCode::OK
        {
            return s;
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("conclave serve exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("conclave serve did not come up on {addr}");
}

/// An HTTP client with a cookie jar, for a server at `addr`.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(crate::common::TIMEOUT)
        .build()
        .unwrap()
}

async fn sign_in(c: &reqwest::Client, addr: SocketAddr, user: &str, password: &str) -> StatusCode {
    c.post(format!("http://{addr}/api/v1/auth/signin"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_a_one_time_sign_in_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path()).await;
    let stdout = server.child.stdout.take().unwrap();
    // Read the printed link off the console (on a thread: the pipe blocks).
    let reader = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.contains("/signin#token=").then(|| l.trim().to_string()))
    });
    let link = tokio::time::timeout(crate::common::TIMEOUT, reader)
        .await
        .expect("the link is printed at start")
        .unwrap()
        .expect("a sign-in link on stdout");
    assert!(
        link.starts_with(&format!(
            "http://localhost:{}/signin#token=",
            server.addr.port()
        )),
        "{link}"
    );
    let token = link.split("#token=").nth(1).unwrap();

    let c = client();
    let url = format!("http://{}/api/v1/auth/link", server.addr);
    let r = c
        .post(&url)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: serde_json::Value = c
        .get(format!("http://{}/api/v1/me", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "admin");
    let again = client()
        .post(&url)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a link works once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_meetings_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let password = "a password for the restart test";

    // The operator creates an account from the command line.
    let mut admin = Command::new(BIN)
        .args([
            "admin",
            "create-user",
            "hostess",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = admin.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user hostess"));

    let server = serve(dir.path()).await;
    let c = client();
    assert_eq!(
        sign_in(&c, server.addr, "hostess", password).await,
        StatusCode::OK
    );
    let base = format!("http://{}/api/v1", server.addr);
    let created: serde_json::Value = c
        .post(format!("{base}/meetings"))
        .json(&json!({
            "title": "Survives",
            "settings": {"waiting_room": false, "screen_share": "everyone", "max_participants": 12}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    // The last change before the crash must be there afterwards.
    let r = c
        .patch(format!("{base}/meetings/{id}"))
        .json(&json!({"regenerate_passcode": true, "settings": {"chat": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before: serde_json::Value = r.json().await.unwrap();
    let token: serde_json::Value = c
        .post(format!("{base}/tokens"))
        .json(&json!({"name": "cron"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    drop(server); // SIGKILL: no shutdown, no checkpoint

    let server = serve(dir.path()).await;
    let base = format!("http://{}/api/v1", server.addr);
    let c = client();
    assert_eq!(
        sign_in(&c, server.addr, "hostess", "wrong password!").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&c, server.addr, "hostess", password).await,
        StatusCode::OK
    );
    let list: serde_json::Value = c
        .get(format!("{base}/meetings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    // Same ID, passcode and settings; only the host part of links follows the new port.
    for field in [
        "id",
        "title",
        "passcode",
        "settings",
        "created_at",
        "running",
    ] {
        assert_eq!(list[0][field], before[field], "{field}");
    }
    assert_eq!(list[0]["settings"]["chat"], false);
    assert_eq!(list[0]["settings"]["max_participants"], 12);
    let me = reqwest::Client::new()
        .get(format!("{base}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the API token survived");

    // And the meeting opens with its passcode (waiting room off: straight in).
    let passcode = before["passcode"].as_str().unwrap();
    let mut ws = crate::common::open_ws(server.addr, &id, crate::common::WsOpts::default())
        .await
        .unwrap();
    ws.send(crate::common::join("After the crash", passcode))
        .await;
    let joined = ws.recv().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["meeting"]["title"], "Survives");
    assert_eq!(joined["meeting"]["permissions"]["screen_share"], "everyone");
}
