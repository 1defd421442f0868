//! Cluster mode over TLS: a `redis-server` the test starts with a TLS port
//! (`rediss://`) and a PostgreSQL with `ssl = on`, both serving a
//! certificate from a throwaway CA the nodes are given as a CA file
//! (`cluster.redis_ca_file`, `sslrootcert` in `database_url`). The nodes
//! coordinate over them as over plain connections, and a CA that did not
//! sign the certificate is refused, saying so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::cluster::Cluster;
use conclave::config::ClusterConfig;
use conclave::store::Store;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};
use tokio_util::sync::CancellationToken;

use crate::common::postgres::Postgres;
use crate::common::redis::Redis;
use crate::common::{PASSWORD, TestServer};
use crate::tls::{Ca, Files};

/// A CA, Redis and PostgreSQL serving its certificate for 127.0.0.1, and
/// the CA's certificate in a file of its own.
struct Engines {
    ca_file: PathBuf,
    redis: Redis,
    pg: Postgres,
    _files: Files,
    _dir: tempfile::TempDir,
}

fn engines(ca: &Ca) -> Engines {
    let files = Files::new(&ca.leaf_for("127.0.0.1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", &ca.root_pem());
    let redis = Redis::start_tls(&files.cert, &files.key);
    let read = |p: &Path| std::fs::read_to_string(p).expect("PEM file");
    let pg = Postgres::start_tls(&read(&files.cert), &read(&files.key));
    Engines {
        ca_file,
        redis,
        pg,
        _files: files,
        _dir: dir,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn config(url: String, ca_file: &Path, node: &str) -> ClusterConfig {
    ClusterConfig {
        redis_url: url,
        redis_ca_file: Some(ca_file.to_path_buf()),
        node_id: node.to_string(),
        internal_url: format!("http://{node}.internal:8080"),
        lease_ms: 2000,
        node_ttl_ms: 1500,
        secret: None,
        drain_ms: 10_000,
        media_link_addr: None,
    }
}

/// `database_url` with TLS required and the server's certificate checked
/// against `ca_file`, its name included.
fn verify_full(plain_url: &str, ca_file: &Path) -> String {
    format!(
        "{plain_url}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    )
}

async fn ready(server: &TestServer) -> StatusCode {
    reqwest::get(server.url("/readyz"))
        .await
        .expect("readyz answers")
        .status()
}

async fn eventually(secs: u64, why: &str, mut what: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_coordinate_over_tls_to_redis_and_postgres() {
    let ca = Ca::new();
    let e = engines(&ca);
    let url = verify_full(&e.pg.fresh_database().await, &e.ca_file);
    let tweak = |id: &str| {
        let cfg = config(e.redis.tls_url(), &e.ca_file, id);
        let url = url.clone();
        move |c: &mut conclave::Config| {
            c.cluster = Some(cfg);
            c.database_url = Some(url);
        }
    };
    let a = TestServer::start_on_postgres(&url, tweak("node-a")).await;
    let b = TestServer::start_with(tweak("node-b")).await;
    for n in [&a, &b] {
        eventually(10, "node ready over TLS", async || {
            ready(n).await == StatusCode::OK
        })
        .await;
    }
    // Both registered in Redis, through its TLS port only.
    for id in ["node-a", "node-b"] {
        let record = e.redis.cmd(&format!("EXISTS conclave:node:{id}"));
        assert_eq!(record, ":1", "{id}'s record");
    }
    // A meeting started on A holds its lease; the account came from the
    // shared PostgreSQL.
    let alice = a.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (_host, _) = a.host_joins(&alice, &meeting.id).await;
    let lease = e.redis.cmd(&format!("GET conclave:lease:{}", meeting.id));
    assert!(lease.starts_with("node-a "), "{lease}");
    // A wrong password on B is counted in Redis, and the account is B's to
    // see too: the store is shared.
    let (status, body) = b.api().sign_in("alice", "not-her-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(e.redis.cmd("GET conclave:limit:sign_in:127.0.0.1:f"), "1");
    let (status, body) = b.api().sign_in("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Every connection the nodes hold to PostgreSQL is encrypted.
    let mut admin = sqlx::PgConnection::connect(&e.pg.url("postgres"))
        .await
        .expect("admin connection");
    let rows = sqlx::query(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'conclave'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("pg_stat_ssl");
    assert!(!rows.is_empty(), "the nodes are connected");
    for row in rows {
        assert!(
            row.get::<bool, _>("ssl"),
            "a plain connection to PostgreSQL"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ca_that_did_not_sign_the_certificate_is_refused_saying_why() {
    let ca = Ca::new();
    let e = engines(&ca);
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_ca = write(dir.path(), "other-ca.pem", &Ca::new().root_pem());
    // Redis: the node starts (Redis may be down at a start too), is never
    // available, and says why.
    let stop = CancellationToken::new();
    let _drop_stop = stop.clone().drop_guard();
    let cfg = config(e.redis.tls_url(), &wrong_ca, "node-a");
    let cluster =
        Cluster::connect(&cfg, metrics::Counter::noop(), stop.clone()).expect("client starts");
    let c = Arc::clone(&cluster);
    eventually(10, "a connection error", async || {
        c.connection_error().is_some()
    })
    .await;
    let why = cluster.connection_error().unwrap_or_default();
    // (Both test CAs bear one name, so rustls finds the issuer and its
    // signature fails: `InvalidCertificate(BadSignature)`.)
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!cluster.is_available());
    // The same through a server: not ready.
    let server = TestServer::start_with(|c| c.cluster = Some(cfg.clone())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ready(&server).await, StatusCode::SERVICE_UNAVAILABLE);
    // PostgreSQL: the store does not open, and says why.
    let url = verify_full(&e.pg.fresh_database().await, &wrong_ca);
    let Err(err) = Store::connect(&url).await else {
        panic!("a store behind a certificate of another CA opened");
    };
    let text = err.to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // A CA file that cannot be used stops the start, naming it.
    let missing = dir.path().join("missing.pem");
    let garbage = write(dir.path(), "garbage.pem", "not a certificate\n");
    for file in [missing, garbage] {
        let cfg = config(e.redis.tls_url(), &file, "node-b");
        let Err(err) = Cluster::connect(&cfg, metrics::Counter::noop(), stop.clone()) else {
            panic!("{} accepted as a CA file", file.display());
        };
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
