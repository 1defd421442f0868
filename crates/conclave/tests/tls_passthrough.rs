//! TURN/TLS beside HTTPS on one port: a ClientHello naming the TURN server
//! is passed through untouched to a TLS backend (here a tokio-rustls server
//! with its own certificate for the TURN name, standing in for coturn),
//! while the meeting site is still served on the same listener; and what is
//! not a ClientHello, or comes too slowly, or finds the backend down, is
//! closed without holding anyone else up.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::Config;
use conclave::tls::HANDSHAKE_TIMEOUT;
use conclave::tls::passthrough::TurnPassthrough;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::common::{TIMEOUT, TestServer};
use crate::tls::{Ca, Files, get, https, status};

const TURN_NAME: &str = "turn.conclave.test";
/// What the backend says first on every connection, so the test knows
/// whose TLS it is talking to.
const GREETING: &[u8] = b"backend here\n";

/// A TLS server for [`TURN_NAME`] with a certificate from `ca`: greets,
/// then echoes.
async fn backend(ca: &Ca) -> SocketAddr {
    let leaf = ca.leaf_for(TURN_NAME);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der.clone()], key)
    .expect("backend certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.write_all(GREETING).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("address")
}

async fn server(files: &Files, backend: SocketAddr, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    TestServer::start_with(move |c: &mut Config| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.turn_tls_passthrough = vec![TurnPassthrough {
            server_name: TURN_NAME.to_string(),
            backend,
        }];
        tweak(c);
    })
    .await
}

/// A TLS connection to `addr` for the TURN name, verified against `ca`:
/// it succeeds only if the backend's certificate is what answered.
async fn turn_client(
    ca: &Ca,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    turn_client_from(ca, addr, [127, 0, 0, 1]).await
}

/// [`turn_client`] from another loopback address: another client network.
async fn turn_client_from(
    ca: &Ca,
    addr: SocketAddr,
    from: [u8; 4],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(addr).await?;
    let name = ServerName::try_from(TURN_NAME).expect("name");
    tokio::time::timeout(TIMEOUT, ca.client().connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// Reads the greeting and checks one echo round trip.
async fn talks_to_backend(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) {
    let exchange = async {
        let mut greeting = vec![0u8; GREETING.len()];
        tls.read_exact(&mut greeting).await.expect("greeting");
        assert_eq!(greeting, GREETING);
        tls.write_all(b"ping").await.expect("send");
        let mut echo = [0u8; 4];
        tls.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"ping");
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("backend exchange in time");
}

/// Waits for the server to close `tcp`, and says how long that took.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            // A TLS alert may come before the close.
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn the_turn_name_reaches_the_backend_and_the_site_is_still_served() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = server(&files, backend(&ca).await, |_| {}).await;

    let mut turn = turn_client(&ca, server.addr)
        .await
        .expect("TLS to the backend");
    talks_to_backend(&mut turn).await;

    // Any case of the name is the name.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let upper = ServerName::try_from("TURN.conclave.test").expect("name");
    let mut tls = ca
        .client()
        .connect(upper, tcp)
        .await
        .expect("TLS to the backend, upper-case name");
    talks_to_backend(&mut tls).await;

    // The same listener serves the site for its own name.
    let (resp, _) = https(server.addr, &ca.client(), &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
    // The TURN connection is still up while the site is served.
    turn.write_all(b"more").await.expect("send");
    let mut echo = [0u8; 4];
    turn.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"more");
}

#[tokio::test]
async fn a_client_hello_in_several_segments_is_read_whole() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = server(&files, backend(&ca).await, |_| {}).await;
    let addr = server.addr;
    let config = ca.client().config().clone();
    // A blocking rustls client, so the test decides how the ClientHello's
    // bytes are cut: three writes with pauses, each its own segment.
    let segments = tokio::task::spawn_blocking(move || {
        let name = ServerName::try_from(TURN_NAME).expect("name");
        let mut conn = rustls::ClientConnection::new(config, name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("ClientHello");
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        // The record header alone, then a few bytes, then the rest.
        let cuts = [3, 5, 40, hello.len()];
        let mut from = 0;
        for &to in &cuts {
            tcp.write_all(&hello[from..to]).expect("send part");
            from = to;
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut greeting = vec![0u8; GREETING.len()];
        tls.read_exact(&mut greeting)
            .expect("greeting through the split hello");
        greeting
    })
    .await
    .expect("client thread");
    assert_eq!(segments, GREETING);
}

#[tokio::test]
async fn garbage_and_slow_clients_are_closed_while_others_are_served() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = server(&files, backend(&ca).await, |_| {}).await;

    // Plain HTTP on the HTTPS port, and bytes that are no TLS at all: closed
    // as soon as they are read.
    for junk in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0u8; 64][..]] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(junk).await.expect("send");
        let took = closed_within(&mut tcp, Duration::from_secs(2)).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    // Slowloris: a record header and then nothing, and a client that
    // connects and says nothing.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(&[0x16, 0x03, 0x01]).await.expect("send");
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();

    // Meanwhile both routes serve.
    let (resp, _) = https(server.addr, &ca.client(), &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
    let mut turn = turn_client(&ca, server.addr)
        .await
        .expect("TLS to the backend");
    talks_to_backend(&mut turn).await;

    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(3);
    closed_within(&mut slow, limit).await;
    closed_within(&mut silent, limit).await;
    let took = started.elapsed();
    assert!(
        took >= HANDSHAKE_TIMEOUT - Duration::from_secs(1),
        "closed after {took:?}, before the handshake timeout"
    );
}

#[tokio::test]
async fn a_backend_that_is_down_closes_the_connection_and_nothing_else() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = server(&files, closed_port().await, |_| {}).await;

    for _ in 0..3 {
        let started = Instant::now();
        let r = turn_client(&ca, server.addr).await;
        assert!(r.is_err(), "no backend, no TLS");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let (resp, _) = https(server.addr, &ca.client(), &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
}

#[tokio::test]
async fn passthrough_connections_are_limited_per_address_and_in_all_and_idle_ones_closed() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = server(&files, backend(&ca).await, |c| {
        c.limits.max_turn_passthrough = 2;
        c.limits.max_turn_passthrough_per_address = 1;
        c.limits.turn_passthrough_idle_secs = 1;
    })
    .await;

    let mut first = turn_client(&ca, server.addr).await.expect("first");
    talks_to_backend(&mut first).await;
    // 127.0.0.1's one place is taken: its second is closed; another
    // address still gets through, until the two places are taken.
    assert!(turn_client(&ca, server.addr).await.is_err());
    let mut other = turn_client_from(&ca, server.addr, [127, 0, 0, 2])
        .await
        .expect("another address");
    talks_to_backend(&mut other).await;
    assert!(
        turn_client_from(&ca, server.addr, [127, 0, 0, 3])
            .await
            .is_err()
    );
    let (resp, _) = https(server.addr, &ca.client(), &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
    drop(other);

    // Traffic keeps it open past the idle time...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        first.write_all(b"ping").await.expect("send");
        let mut echo = [0u8; 4];
        first
            .read_exact(&mut echo)
            .await
            .expect("echo while active");
    }
    // ...silence closes it, and frees its place.
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .expect("closed after idling");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let mut again = turn_client(&ca, server.addr).await.expect("place freed");
    talks_to_backend(&mut again).await;
}
