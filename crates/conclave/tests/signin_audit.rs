//! The audit log of sign-ins (issue 20): each sign-in and each failure, by
//! password, link or provider, is written down with who and from where, and
//! `conclave admin signins` lists them, newest first. Typed passwords are
//! never written. The store's side runs on SQLite and PostgreSQL.

use std::process::Command;

use conclave::store::{SigninOutcome, Store};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::postgres::Postgres;
use crate::common::{PASSWORD, TIMEOUT, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

fn signins(server: &TestServer) -> Vec<Vec<String>> {
    let out = Command::new(BIN)
        .args(["admin", "signins", "--data-dir"])
        .arg(server.data_dir())
        .env_remove("CONCLAVE_DATABASE_URL")
        .output()
        .expect("run conclave admin signins");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_and_their_failures_are_listed_by_the_admin_command() {
    let server = TestServer::start().await;
    let api = server.api();
    assert_eq!(
        api.sign_in("alice", "a wrong password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.sign_in("nobody-here", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.sign_in("alice", PASSWORD).await.0, StatusCode::OK);
    let (status, _) = api
        .post("/api/v1/auth/link", json!({"token": "not-a-link"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A provider callback that fails (no such provider here).
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/auth/oidc/Acme/callback?code=c&state=s"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    let rows = signins(&server);
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("oidc:Acme", "unknown_provider", "-"),
            ("link", "bad_link", "-"),
            ("password", "ok", "alice (id 1)"),
            (
                "password",
                "bad_credentials",
                "nobody-here (no such account)"
            ),
            ("password", "bad_credentials", "alice (id 1)"),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[3][4], "unknown name");
    assert_eq!(rows[4][4], "wrong password");
    for r in &rows {
        assert_eq!(r.len(), 6, "{r:?}");
        assert!(r[0].ends_with('Z') && r[0].len() == 20, "a UTC time: {r:?}");
        assert_eq!(r[5], "127.0.0.1");
        assert!(
            !r.iter()
                .any(|f| f.contains(PASSWORD) || f.contains("a wrong password"))
        );
    }
}

async fn records_and_lists(store: &Store) {
    let ip = "192.0.2.7".parse().ok();
    store
        .record_signin(
            "oidc:School",
            SigninOutcome::Failed("domain"),
            None,
            None,
            Some(&"x".repeat(500)),
            ip,
        )
        .await
        .unwrap();
    store
        .record_signin(
            "password",
            SigninOutcome::Ok,
            Some(7),
            Some("ada"),
            None,
            None,
        )
        .await
        .unwrap();
    let got = store.signin_events(10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].method.as_str(), got[0].outcome.as_str()),
        ("password", "ok")
    );
    assert_eq!(got[0].user_id, Some(7));
    assert_eq!(got[1].outcome, "domain");
    assert_eq!(
        got[1].detail.as_ref().unwrap().len(),
        200,
        "long details are cut"
    );
    assert_eq!(got[1].address.as_deref(), Some("192.0.2.7"));
    assert_eq!(store.signin_events(1).await.unwrap().len(), 1);
    // Pruning takes what was written before the cut, nothing after it.
    let now = conclave::store::unix_now();
    assert_eq!(store.prune_signin_events(now - 3600).await.unwrap(), 0);
    assert_eq!(store.signin_events(10).await.unwrap().len(), 2);
    assert_eq!(store.prune_signin_events(now + 1).await.unwrap(), 2);
    assert!(store.signin_events(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_keeps_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    records_and_lists(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_keeps_the_audit_log() {
    let url = Postgres::shared().fresh_database().await;
    let store = Store::connect(&url).await.unwrap();
    records_and_lists(&store).await;
    store.close().await;
}

/// Entries older than `limits.signin_audit_days` go when the server starts
/// and hourly after; younger ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_past_their_retention_are_pruned() {
    let server = TestServer::start_with(|c| c.limits.signin_audit_days = 30).await;
    let api = server.api();
    for password in ["wrong once", "wrong twice"] {
        assert_eq!(
            api.sign_in("alice", password).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(api.sign_in("alice", PASSWORD).await.0, StatusCode::OK);
    assert_eq!(signins(&server).len(), 3);
    // The first failure 31 days old, the second 29: as if the server had
    // been stopped since.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        server.data_dir().join("conclave.db").display()
    ))
    .await
    .expect("the server's SQLite file");
    let day = 24 * 3600;
    for (rank, age) in [(1, 31 * day), (2, 29 * day)] {
        sqlx::query(
            "UPDATE signin_events SET at = at - $1
             WHERE id = (SELECT id FROM signin_events ORDER BY id LIMIT 1 OFFSET $2)",
        )
        .bind(age)
        .bind(rank - 1)
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;
    let server = server.restart().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let rows = loop {
        let rows = signins(&server);
        if rows.len() < 3 || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let details: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[2].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(
        details,
        [("ok", "-"), ("bad_credentials", "wrong password")],
        "{rows:?}"
    );
}
