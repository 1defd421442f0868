//! A certificate from an ACME CA (`--domain`), against pebble, Let's
//! Encrypt's test CA, started by each test on loopback. Pebble's validation
//! authority really fetches the HTTP-01 answer from the server's plain-HTTP
//! port: the test's domain resolves to 127.0.0.1 through
//! pebble-challtestsrv's DNS (every name is 127.0.0.1 there), and nothing is
//! "always valid". Clients (rustls, aws-lc-rs) trust only pebble's issuing
//! root, fetched from its management port, so a served certificate that
//! verifies is pebble's.
//!
//! Needs Debian's `pebble` package (`pebble`, `pebble-challtestsrv`), which
//! .ci/run installs.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave::Config;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::common::{TIMEOUT, TestServer, pem};

/// The name the tests get certificates for.
const DOMAIN: &str = "meet.conclave.test";
/// The lifetime of the renewal tests' certificates: renewed after two
/// thirds of it, with a third left for the checks of the old one to see it
/// still valid on a loaded machine.
const SHORT_LIFETIME_SECS: u64 = 18;

/// A loopback port free for TCP and UDP both (challtestsrv's DNS uses both).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a test wants of its CA.
#[derive(Default)]
struct PebbleOpts {
    /// Seconds each certificate is valid (pebble's default: 5 years).
    validity_secs: Option<u64>,
    /// Names pebble refuses to issue for.
    blocklist: Vec<String>,
}

/// pebble and its DNS, on loopback ports of their own.
struct Pebble {
    /// pebble's ACME directory URL.
    directory: String,
    /// The root pebble's own HTTPS (API and management) is served under:
    /// the server is told to trust it with `acme_ca_root`.
    api_root: PathBuf,
    api_root_der: CertificateDer<'static>,
    management: SocketAddr,
    pebble: Option<Proc>,
    _dns: Proc,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` (the server's
    /// plain-HTTP port) and waits until it answers.
    async fn start(http_port: u16, opts: PebbleOpts) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        // pebble's HTTPS certificate, for 127.0.0.1, from a CA of the test's.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("pebble's certificate");
        let api_root = dir.path().join("api-root.pem");
        std::fs::write(&api_root, pem("CERTIFICATE", ca.der())).expect("write");
        let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, pem("CERTIFICATE", leaf.der())).expect("write");
        std::fs::write(&key_file, pem("PRIVATE KEY", &key.serialize_der())).expect("write");

        let (listen, management, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port());
        let mut config = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key_file,
            "httpPort": http_port,
            // TLS-ALPN-01 is not used; a port nothing listens on.
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "domainBlocklist": opts.blocklist,
        });
        if let Some(secs) = opts.validity_secs {
            config["certificateValidityPeriod"] = secs.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(
            &config_path,
            serde_json::json!({ "pebble": config }).to_string(),
        )
        .expect("write config");

        // Every A query is answered 127.0.0.1; no AAAA, so the validation
        // dials the server's IPv4 loopback port.
        let dns_proc = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv (Debian package pebble)");
        let dns_proc = Proc(dns_proc);
        wait_for_port(dns_management).await;

        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // Validate at once instead of after pebble's random 0-15 s
            // sleep, and refuse no nonce at random: the validation itself is
            // unchanged.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order is validated again, renewals included.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble (Debian package pebble)");
        let pebble = Proc(pebble);
        wait_for_port(listen).await;
        wait_for_port(management).await;
        Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            api_root_der: ca.der().clone(),
            api_root,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            pebble: Some(pebble),
            _dns: dns_proc,
            _dir: dir,
        }
    }

    /// The root pebble issues certificates under (its management API's
    /// `/roots/0`): what a client of the server trusts.
    async fn issuing_root(&self) -> CertificateDer<'static> {
        let (resp, _) = https_get(
            self.management,
            "127.0.0.1",
            self.api_root_der.clone(),
            "/roots/0",
        )
        .await;
        assert_eq!(status(&resp), "200", "{resp}");
        CertificateDer::from_pem_slice(body(&resp).as_bytes()).expect("root PEM")
    }

    /// Stops pebble (its DNS stays): the CA is unreachable from now on.
    fn stop(&mut self) {
        self.pebble.take();
    }
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on port {port}");
}

/// A rustls client (aws-lc-rs) trusting `root` only. It resumes no session,
/// so each connection shows the certificate served now.
fn client(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// One GET over a new, verified TLS connection to `addr` for `name`: the
/// response's text and the leaf certificate presented.
async fn https_get(
    addr: SocketAddr,
    name: &str,
    root: CertificateDer<'static>,
    path: &str,
) -> (String, CertificateDer<'static>) {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let server_name = ServerName::try_from(name.to_string()).expect("name");
        let mut tls = client(root)
            .connect(server_name, tcp)
            .await
            .expect("a TLS handshake with a certificate the root vouches for");
        let leaf = tls.get_ref().1.peer_certificates().expect("certificate")[0].clone();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        // A close without close_notify is fine here.
        let _ = tls.read_to_end(&mut response).await;
        (String::from_utf8_lossy(&response).into_owned(), leaf)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("HTTPS exchange in time")
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn has_header(response: &str, name: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with(&prefix))
}

/// What a browser trusting pebble's root only sees at
/// `https://DOMAIN:port/healthz`: a 200 with HSTS, and the leaf presented.
async fn served_leaf(
    root: &CertificateDer<'static>,
    server: SocketAddr,
) -> CertificateDer<'static> {
    let (resp, leaf) = https_get(server, DOMAIN, root.clone(), "/healthz").await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert!(has_header(&resp, "strict-transport-security"), "{resp}");
    leaf
}

/// The ACME configuration a test server runs with.
fn acme_config(c: &mut Config, pebble: &Pebble, http_port: u16) {
    c.domains = vec![DOMAIN.to_string()];
    c.acme_directory = pebble.directory.clone();
    c.acme_ca_root = Some(pebble.api_root.clone());
    c.acme_contact = Some("ops@conclave.test".to_string());
    c.http_redirect_listen = Some(SocketAddr::from(([127, 0, 0, 1], http_port)));
}

async fn acme_server(pebble: &Pebble, http_port: u16) -> (TestServer, Duration) {
    let started = Instant::now();
    let server = TestServer::start_with(|c| acme_config(c, pebble, http_port)).await;
    (server, started.elapsed())
}

fn leaf_on_disk(data_dir: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(data_dir.join("acme/cert.pem")).expect("stored certificate");
    CertificateDer::from_pem_slice(&pem).expect("PEM")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Polls `f` every 100 ms until it is true or `limit` passes.
async fn until(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

#[tokio::test]
async fn a_certificate_is_obtained_served_and_reused_after_a_restart_without_the_ca() {
    let http_port = free_port();
    let mut pebble = Pebble::start(http_port, PebbleOpts::default()).await;
    let (server, took) = acme_server(&pebble, http_port).await;
    eprintln!("ACME: first certificate from pebble in {took:?} (start to serving)");
    let root = pebble.issuing_root().await;

    let leaf = served_leaf(&root, server.addr).await;
    assert_eq!(leaf, leaf_on_disk(server.data_dir()));
    let acme = server.server().acme().expect("ACME on");
    assert_eq!(acme.status().issued, 1);
    assert_eq!(acme.status().last_error, None);
    // Port 80's other requests go to https://DOMAIN (public_url's default);
    // a token with no open challenge is not found.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = plain
        .get(format!("http://127.0.0.1:{http_port}/j/abc"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers()["location"],
        format!("https://{DOMAIN}:{}/j/abc", server.addr.port())
    );
    let resp = plain
        .get(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/nothing"
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), reqwest::StatusCode::NOT_FOUND);
    // The account and the private key are the owner's only.
    let acme_dir = server.data_dir().join("acme");
    #[cfg(unix)]
    {
        assert_eq!(mode(&acme_dir), 0o700);
        assert_eq!(mode(&acme_dir.join("account.json")), 0o600);
        assert_eq!(mode(&acme_dir.join("key.pem")), 0o600);
    }
    let account = std::fs::read(acme_dir.join("account.json")).expect("account");

    // With the CA gone, a restart serves the stored certificate: no order.
    pebble.stop();
    let started = Instant::now();
    let server = server.restart().await;
    eprintln!(
        "ACME: restart with a stored certificate in {:?}",
        started.elapsed()
    );
    assert_eq!(served_leaf(&root, server.addr).await, leaf);
    let acme = server.server().acme().expect("ACME on");
    assert_eq!(acme.status().issued, 0);
    assert_eq!(
        std::fs::read(acme_dir.join("account.json")).expect("account"),
        account
    );
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_and_served_without_a_restart() {
    let http_port = free_port();
    let pebble = Pebble::start(
        http_port,
        PebbleOpts {
            validity_secs: Some(SHORT_LIFETIME_SECS),
            ..PebbleOpts::default()
        },
    )
    .await;
    let (server, _) = acme_server(&pebble, http_port).await;
    let root = pebble.issuing_root().await;
    let first = served_leaf(&root, server.addr).await;
    let acme = server.server().acme().expect("ACME on");
    let started = Instant::now();
    until(
        Duration::from_secs(SHORT_LIFETIME_SECS * 2),
        "a renewed certificate",
        async || served_leaf(&root, server.addr).await != first,
    )
    .await;
    eprintln!(
        "ACME: {SHORT_LIFETIME_SECS} s certificate replaced {:?} after the first was served",
        started.elapsed()
    );
    let second = served_leaf(&root, server.addr).await;
    assert_eq!(second, leaf_on_disk(server.data_dir()));
    let status = acme.status();
    assert!(status.issued >= 2, "{status:?}");
    assert_eq!(status.last_error, None);
}

#[tokio::test]
async fn an_unreachable_ca_at_renewal_is_logged_and_the_current_certificate_stays() {
    let http_port = free_port();
    let mut pebble = Pebble::start(
        http_port,
        PebbleOpts {
            validity_secs: Some(SHORT_LIFETIME_SECS),
            ..PebbleOpts::default()
        },
    )
    .await;
    let (server, _) = acme_server(&pebble, http_port).await;
    let root = pebble.issuing_root().await;
    let leaf = served_leaf(&root, server.addr).await;
    pebble.stop();
    let acme = server.server().acme().expect("ACME on");
    until(
        Duration::from_secs(SHORT_LIFETIME_SECS),
        "a failed renewal",
        async || acme.status().last_error.is_some(),
    )
    .await;
    let status = acme.status();
    let error = status.last_error.expect("error");
    eprintln!("ACME: renewal failed: {error}");
    let says = format!("cannot reach the ACME CA at {}", pebble.directory);
    assert!(error.contains(&says), "{error}");
    assert!(status.failures >= 1);
    assert!(status.next_attempt.is_some());
    // Still serving, still the certificate it had.
    assert_eq!(served_leaf(&root, server.addr).await, leaf);
}

/// A server configuration for one start that is expected to fail.
fn failing_config(data: &Path, directory: &str, http_port: u16, ca_root: &Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        media_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.to_path_buf(),
        domains: vec![DOMAIN.to_string()],
        acme_directory: directory.to_string(),
        acme_ca_root: Some(ca_root.to_path_buf()),
        http_redirect_listen: Some(SocketAddr::from(([127, 0, 0, 1], http_port))),
        ..Config::default()
    }
}

async fn start_error(config: Config) -> String {
    match conclave::Server::start(config).await {
        Ok(_) => panic!("the server started without a certificate"),
        Err(e) => {
            eprintln!("ACME: start refused: {e}");
            e.to_string()
        }
    }
}

#[tokio::test]
async fn a_first_start_with_an_unreachable_ca_fails_naming_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let root = data.path().join("root.pem");
    let ca = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&ca).expect("root");
    std::fs::write(&root, pem("CERTIFICATE", cert.der())).expect("write");
    // Nothing listens there.
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let started = Instant::now();
    let http_port = free_port();
    let e = start_error(failing_config(data.path(), &directory, http_port, &root)).await;
    assert!(
        e.contains(&format!("cannot reach the ACME CA at {directory}")),
        "{e}"
    );
    assert!(started.elapsed() < TIMEOUT, "took {:?}", started.elapsed());
    assert!(!data.path().join("acme/cert.pem").exists());
    // The failed start let go of port 80: a restart can bind it.
    until(TIMEOUT, "the plain-HTTP port is free again", async || {
        TcpListener::bind(("127.0.0.1", http_port)).is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_ca_that_refuses_stops_the_first_start_with_its_reason() {
    let http_port = free_port();
    let pebble = Pebble::start(
        http_port,
        PebbleOpts {
            blocklist: vec![DOMAIN.to_string()],
            ..PebbleOpts::default()
        },
    )
    .await;
    let data = tempfile::tempdir().expect("tempdir");

    // A URL that is not an ACME directory.
    let wrong = pebble.directory.replace("/dir", "/not-a-directory");
    let e = start_error(failing_config(
        data.path(),
        &wrong,
        http_port,
        &pebble.api_root,
    ))
    .await;
    assert!(e.contains(&wrong), "{e}");
    assert!(e.contains("as an ACME CA does"), "{e}");

    // A name the CA will not issue for: the order is refused.
    let config = failing_config(data.path(), &pebble.directory, http_port, &pebble.api_root);
    let e = start_error(config).await;
    assert!(
        e.contains(&format!(
            "the ACME CA at {} refused a new order",
            pebble.directory
        )),
        "{e}"
    );
    assert!(e.contains("rejectedIdentifier"), "{e}");
}

#[tokio::test]
async fn a_failed_validation_stops_the_first_start_with_the_cas_reason() {
    // pebble validates on a port where nothing answers.
    let pebble = Pebble::start(free_port(), PebbleOpts::default()).await;
    let data = tempfile::tempdir().expect("tempdir");
    let config = failing_config(
        data.path(),
        &pebble.directory,
        free_port(),
        &pebble.api_root,
    );
    let e = start_error(config).await;
    assert!(
        e.contains(&format!(
            "the ACME CA at {} refused validating the domains",
            pebble.directory
        )),
        "{e}"
    );
    assert!(e.contains(DOMAIN), "{e}");
}

/// The real binary: `conclave serve --domain … --acme-directory …`.
#[tokio::test]
async fn the_binary_with_an_unreachable_ca_exits_naming_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_conclave"))
        .args(["serve", "--domain", DOMAIN, "--acme-directory", &directory])
        .args(["--listen", "127.0.0.1:0", "--media-port", "0"])
        .args(["--http-redirect", "127.0.0.1:0"])
        .args(["--acme-contact", "ops@conclave.test"])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run conclave serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach the ACME CA at {directory}")),
        "{err}"
    );
}
