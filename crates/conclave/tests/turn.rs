//! TURN relays (docs/operations.md, TURN): an admitted member's `joined`
//! carries the operator's TURN servers with a credential of its own that the
//! relay will refuse after the configured time; the waiting room never gets
//! one, and a server without TURN servers sends none. Native clients
//! (`conclave join --relay-only`) exchange encrypted media through a real
//! coturn on loopback with those credentials, reaching it over UDP, TCP or
//! TLS; one whose credential the relay refuses says so, and so does one
//! whose relay's certificate it cannot trust.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{TestServer, Ws, a_second_of_media, ada_and_bob, native_options};
use crate::tls::{Ca, Files};
use conclave::turn::{TurnSecret, TurnServer};
use conclave_client::session::{MediaOptions, SessionError, run_with};
use conclave_proto::MediaKind::{Audio, Video};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

const SECRET: &str = "turn-shared-secret-for-tests";
const TTL: u64 = 3600;
const RELAY: &str = "turns:127.0.0.1:5349?transport=tcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// coturn's `use-auth-secret` check, written out here rather than calling
/// the server's own function: base64(HMAC-SHA1(secret, username)).
fn coturn_password(username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    data_encoding::BASE64.encode(&mac.finalize().into_bytes())
}

async fn relayed_server() -> TestServer {
    TestServer::start_with(|c| {
        let mut minted = TurnServer::with_secret(
            vec![RELAY.into(), "turn:127.0.0.1:3478?transport=udp".into()],
            TurnSecret::new(SECRET),
        );
        minted.credential_ttl_secs = TTL;
        c.turn_servers = vec![
            minted,
            TurnServer {
                urls: vec!["turn:192.0.2.7:3478".into()],
                secret: None,
                username: Some("fixed-user".into()),
                credential: Some("fixed-password".into()),
                credential_ttl_secs: TTL,
            },
        ];
    })
    .await
}

/// Checks the minted credential of `joined` and returns its username.
fn minted_username(joined: &Value) -> String {
    let you = joined["you"].as_u64().expect("you");
    let servers = joined["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 2, "{joined}");
    let minted = &servers[0];
    assert_eq!(
        minted["urls"],
        json!([RELAY, "turn:127.0.0.1:3478?transport=udp"])
    );
    let username = minted["username"].as_str().expect("username").to_string();
    let (expiry, tag) = username.split_once(':').expect("<expiry>:<tag>");
    let expiry: u64 = expiry.parse().expect("a unix time");
    let t = now();
    assert!(
        expiry > t + TTL - 60 && expiry <= t + TTL,
        "expires in the configured time: {expiry} vs now {t}"
    );
    assert!(tag.starts_with(&format!("{you}-")), "{tag}");
    assert_eq!(minted["credential"], coturn_password(&username));
    assert_eq!(
        servers[1],
        json!({"urls": ["turn:192.0.2.7:3478"], "username": "fixed-user", "credential": "fixed-password"})
    );
    username
}

fn never_saw_relays(ws: &Ws) {
    for v in &ws.log {
        let text = v.to_string();
        assert!(
            v.get("ice_servers").is_none() && !text.contains(SECRET) && !text.contains("fixed-"),
            "the waiting room got relay details: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_their_own_expiring_credentials_and_the_waiting_room_none() {
    let server = relayed_server().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Relayed"})).await;

    let (mut host, host_joined) = server.host_joins(&alice, &meeting.id).await;
    let host_user = minted_username(&host_joined);

    // Waiting: nothing of the relays, however long the wait.
    let (mut grace, gid) = server.guest_waits(&meeting, "Grace").await;
    host.recv_until("waiting_room").await;
    never_saw_relays(&grace);

    // Admitted: her own credential, not the host's.
    host.send(json!({"type": "admit", "participant": gid}))
        .await;
    let joined = grace.recv().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let grace_user = minted_username(&joined);
    assert_ne!(grace_user, host_user);
    // And nobody else's `joined`-time credentials leak through other messages.
    let pj = host.recv_until("participant_joined").await;
    assert!(pj.get("ice_servers").is_none(), "{pj}");

    // A denied guest never gets any either.
    let (mut eve, eid) = server.guest_waits(&meeting, "Eve").await;
    host.recv_until("waiting_room").await;
    host.send(json!({"type": "deny", "participant": eid})).await;
    let denied = eve.recv().await;
    assert_eq!(denied["type"], "denied", "{denied}");
    never_saw_relays(&eve);

    // A resume is a new `joined` with a fresh credential.
    let token = joined["resume_token"].as_str().expect("token").to_string();
    drop(grace);
    let mut back = server.ws(&meeting.id, Default::default()).await;
    back.send(json!({"type": "resume", "token": token})).await;
    let rejoined = back.recv_until("joined").await;
    assert_eq!(rejoined["you"], gid);
    let again = minted_username(&rejoined);
    assert_ne!(again, grace_user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_servers_joined_has_no_ice_servers() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Direct"})).await;
    let (_host, joined) = server.host_joins(&alice, &meeting.id).await;
    assert!(joined.get("ice_servers").is_none(), "{joined}");
}

/// coturn on loopback with the TURN REST API (`use-auth-secret`), plain
/// UDP and TCP on one port, and TLS on another when given a certificate;
/// stopped when dropped. The log stays readable for the test's assertions.
struct Coturn {
    child: Child,
    port: u16,
    tls_port: Option<u16>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Coturn {
    async fn start(secret: &str) -> Coturn {
        Coturn::start_with(secret, None).await
    }

    /// Starts coturn, on fresh ports again if it does not listen in time:
    /// a port found free can be taken by another test before coturn binds
    /// it, and coturn then retries the bind forever instead of exiting.
    async fn start_with(secret: &str, tls: Option<&Files>) -> Coturn {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Coturn::try_start(secret, tls).await {
                Ok(coturn) => return coturn,
                Err(why) => failures.push(why),
            }
        }
        panic!("coturn never listened:\n{}", failures.join("\n---\n"));
    }

    async fn try_start(secret: &str, tls: Option<&Files>) -> Result<Coturn, String> {
        let turnserver =
            std::env::var("TURNSERVER").unwrap_or_else(|_| "/usr/bin/turnserver".into());
        let dir = tempfile::tempdir().expect("tempdir");
        // coturn takes this port for UDP and TCP.
        let port = free_udp_and_tcp_port();
        let tls_port = tls.map(|_| free_udp_and_tcp_port());
        let tls_lines = match (tls, tls_port) {
            (Some(files), Some(tls_port)) => vec![
                format!("tls-listening-port={tls_port}"),
                format!("cert={}", files.cert.display()),
                format!("pkey={}", files.key.display()),
            ],
            _ => vec!["no-tls".into()],
        };
        let log = dir.path().join("turnserver.log");
        let conf = dir.path().join("turnserver.conf");
        std::fs::write(
            &conf,
            [
                "listening-ip=127.0.0.1".to_string(),
                "relay-ip=127.0.0.1".into(),
                format!("listening-port={port}"),
                "no-dtls".into(),
                "use-auth-secret".into(),
                format!("static-auth-secret={secret}"),
                "realm=conclave.test".into(),
                "fingerprint".into(),
                "no-cli".into(),
                "no-multicast-peers".into(),
                // The router is on loopback here (docs/operations.md denies
                // private ranges in production).
                "allow-loopback-peers".into(),
                format!("log-file={}", log.display()),
                "simple-log".into(),
                "verbose".into(),
                format!("pidfile={}", dir.path().join("turnserver.pid").display()),
                format!("userdb={}", dir.path().join("turndb").display()),
            ]
            .into_iter()
            .chain(tls_lines)
            .collect::<Vec<_>>()
            .join("\n")
                + "\n",
        )
        .expect("write coturn config");
        let child = Command::new(&turnserver)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{turnserver} (coturn; .ci/run installs it): {e}"));
        let mut coturn = Coturn {
            child,
            port,
            tls_port,
            log,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", tls_port.unwrap_or(port)))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = coturn.child.try_wait() {
                return Err(format!("coturn exited ({status}): {}", coturn.log_text()));
            }
            if tokio::time::Instant::now() >= deadline {
                // Dropping `coturn` stops the child.
                return Err(format!(
                    "not listening on {} after 15 s: {}",
                    tls_port.unwrap_or(port),
                    last_lines(&coturn.log_text(), 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(coturn)
    }

    fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    fn tcp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=tcp", self.port)
    }

    fn tls_url(&self) -> String {
        let port = self.tls_port.expect("coturn started with TLS");
        format!("turns:127.0.0.1:{port}?transport=tcp")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A loopback port that is free for both UDP and TCP at this moment.
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A server whose members get `url` with credentials minted from `secret`.
async fn server_with_relay(url: String, secret: &str) -> TestServer {
    let secret = secret.to_string();
    TestServer::start_with(move |c| {
        c.turn_servers = vec![TurnServer::with_secret(vec![url], TurnSecret::new(&secret))];
    })
    .await
}

fn relay_only() -> MediaOptions {
    MediaOptions {
        relay_only: true,
        ..MediaOptions::default()
    }
}

/// Two native clients, relay only, exchange encrypted media through
/// `coturn` reached at `url` ("turn/udp", "turn/tcp" or "turn/tls" by
/// `via`); the relay carries everything either sends.
async fn exchange_through(coturn: &Coturn, url: String, opts: MediaOptions, via: &str) {
    let server = server_with_relay(url, SECRET).await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (a, b) = ada_and_bob(&meeting, a_second_of_media);
    let a = tokio::spawn(run_with(opts.clone(), a));
    let b = tokio::spawn(run_with(opts, b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    for (who, r) in [("A", &a), ("B", &b)] {
        let m = &r.media;
        let from_others = |kind| {
            m.received
                .values()
                .filter(|t| t.participant.is_some_and(|p| p != r.admission.you))
                .filter(|t| t.kind == Some(kind))
                .map(|t| t.frames)
                .sum::<u64>()
        };
        assert!(
            from_others(Video) >= 30 && from_others(Audio) >= 80,
            "{who} decrypted too little: {m:?}"
        );
        assert!(
            r.e2ee.as_ref().is_some_and(|e| e.epoch >= 1),
            "{who}: {:?}",
            r.e2ee
        );
        // Everything str0m sent left through the relay, reached the way
        // the URL says: there was no other candidate.
        assert!(
            m.relay_packets_out > 100 && m.udp_packets_out == 0 && m.tcp_packets_out == 0,
            "{who}: relay {} udp {} tcp {}",
            m.relay_packets_out,
            m.udp_packets_out,
            m.tcp_packets_out
        );
        assert_eq!(
            m.relay_packets_by.keys().collect::<Vec<_>>(),
            [&via],
            "{who}: {:?}",
            m.relay_packets_by
        );
    }
    // And coturn says so: two allocations, each with a permission for the
    // router's media address, for the members' minted usernames.
    let log = coturn.log_text();
    let allocated = log
        .lines()
        .filter(|l| l.contains("ALLOCATE processed, success"))
        .count();
    assert!(allocated >= 2, "coturn allocated {allocated} times:\n{log}");
    assert!(
        log.contains("CREATE_PERMISSION processed, success"),
        "no permission for the router:\n{log}"
    );
    for r in [&a, &b] {
        let tag = format!(":{}-", r.admission.you.0);
        assert!(log.contains(&tag), "coturn never saw {tag}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_clients_exchange_encrypted_media_through_coturn() {
    let coturn = Coturn::start(SECRET).await;
    exchange_through(&coturn, coturn.url(), relay_only(), "turn/udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_clients_reach_coturn_over_tcp() {
    let coturn = Coturn::start(SECRET).await;
    exchange_through(&coturn, coturn.tcp_url(), relay_only(), "turn/tcp").await;
}

/// A CA of the operator's that the client is told to trust (`--ca-file`),
/// and coturn's certificate from it for the relay's address.
fn operators_ca(name: &str) -> (Ca, Files, tempfile::NamedTempFile) {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf_for(name));
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), ca.root_pem()).expect("write CA");
    (ca, files, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_clients_reach_coturn_over_tls() {
    let (_ca, files, root) = operators_ca("127.0.0.1");
    let coturn = Coturn::start_with(SECRET, Some(&files)).await;
    let opts = MediaOptions {
        ca_file: Some(root.path().to_path_buf()),
        ..relay_only()
    };
    exchange_through(&coturn, coturn.tls_url(), opts, "turn/tls").await;
    // coturn served both over TLS ("session N: new, ..., method=TLSv1.2").
    let log = coturn.log_text();
    let over_tls = log
        .lines()
        .filter(|l| l.contains(": new, ") && l.contains("method=TLSv1"))
        .count();
    assert!(over_tls >= 2, "{over_tls} sessions over TLS:\n{log}");
    // And each client ended its TLS session cleanly (close_notify), not by
    // a reset: coturn logs the shutdown once it has read it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = coturn.log_text();
        let clean = log.matches("SSL shutdown received").count();
        if clean >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{clean} clean TLS shutdowns:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turns_relay_whose_certificate_is_not_trusted_is_named() {
    // The certificate names another host than the URL's address.
    let (_ca, files, root) = operators_ca("turn.elsewhere.test");
    let coturn = Coturn::start_with(SECRET, Some(&files)).await;
    let server = server_with_relay(coturn.tls_url(), SECRET).await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let trusting = MediaOptions {
        ca_file: Some(root.path().to_path_buf()),
        ..relay_only()
    };
    for (opts, why) in [
        (trusting, "not valid for name \"127.0.0.1\""),
        // Without the operator's CA, the issuer is unknown.
        (relay_only(), "UnknownIssuer"),
    ] {
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            run_with(opts, native_options(&meeting, "Ada")),
        )
        .await
        .expect("an answer, not a hang")
        .expect_err("no media without the relay");
        assert!(matches!(err, SessionError::Relay(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&coturn.tls_url()) && text.contains("TLS") && text.contains(why),
            "{text}"
        );
    }
    // Nothing was allocated for either.
    let log = coturn.log_text();
    assert!(!log.contains("ALLOCATE processed, success"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_turn_credential_is_named_with_the_relay() {
    let coturn = Coturn::start(SECRET).await;
    // The server mints with a secret coturn does not share.
    let server = server_with_relay(coturn.url(), "not-the-relay-secret").await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let opts = native_options(&meeting, "Ada");
    let err = run_with(relay_only(), opts)
        .await
        .expect_err("no media without the relay");
    assert!(matches!(err, SessionError::Relay(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the TURN server refused the credentials") && text.contains(&coturn.url()),
        "{text}"
    );
}
