//! HTTPS from the operator's certificate files: served with HSTS and Secure
//! cookies, reloaded without a restart, and every unusable file refused with
//! its name, at startup and on reload, while the old certificate keeps
//! being served. Test certificates come from a throwaway CA (rcgen).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conclave::Config;
use conclave::tls::TlsError;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::common::{PASSWORD, TIMEOUT, TestServer, pem};

/// A certificate authority the test's clients trust.
pub(crate) struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A leaf certificate for `localhost` and its key, as PEM files hold them.
pub(crate) struct Leaf {
    cert_pem: String,
    key_pem: String,
    pub(crate) der: CertificateDer<'static>,
    /// The key as PKCS#8 DER, for a test's own TLS server.
    pub(crate) key_der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Conclave test CA");
        let key = KeyPair::generate().expect("CA key");
        Ca(CertifiedIssuer::self_signed(params, key).expect("CA certificate"))
    }

    /// The CA's certificate as a PEM file holds it, for clients given a CA
    /// file.
    pub(crate) fn root_pem(&self) -> String {
        pem("CERTIFICATE", self.0.der())
    }

    pub(crate) fn leaf(&self) -> Leaf {
        self.leaf_for("localhost")
    }

    /// A leaf certificate for `name`.
    pub(crate) fn leaf_for(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.0).expect("leaf certificate");
        Leaf {
            cert_pem: pem("CERTIFICATE", cert.der()),
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A client that trusts this CA only. It resumes no session, so every
    /// connection is a full handshake and shows the certificate served now.
    pub(crate) fn client(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der().clone()).expect("CA root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

/// The server's certificate and key files, in a directory of their own.
pub(crate) struct Files {
    _dir: tempfile::TempDir,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Files {
    pub(crate) fn new(leaf: &Leaf) -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        files.write(&leaf.cert_pem, &leaf.key_pem);
        files
    }

    fn write(&self, cert: &str, key: &str) {
        std::fs::write(&self.cert, cert).expect("write cert");
        std::fs::write(&self.key, key).expect("write key");
    }
}

async fn tls_server(files: &Files) -> TestServer {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    TestServer::start_with(move |c: &mut Config| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await
}

/// One HTTP/1.1 exchange over a new TLS connection: the response's text and
/// the certificate the server presented.
pub(crate) async fn https(
    addr: SocketAddr,
    client: &TlsConnector,
    request: &str,
) -> (String, CertificateDer<'static>) {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = client.connect(name, tcp).await.expect("TLS handshake");
        let presented = tls.get_ref().1.peer_certificates().expect("certificate")[0].clone();
        tls.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        // The server closes after answering (`Connection: close`); a TLS
        // close without close_notify is fine here.
        let _ = tls.read_to_end(&mut response).await;
        (String::from_utf8_lossy(&response).into_owned(), presented)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("HTTPS exchange in time")
}

pub(crate) fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn sign_in(origin: Option<&str>) -> String {
    let body = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST /api/v1/auth/signin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(crate) fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

fn header_lines<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .collect()
}

#[tokio::test]
async fn https_answers_with_hsts_and_secure_cookies() {
    let ca = Ca::new();
    let leaf = ca.leaf();
    let files = Files::new(&leaf);
    let server = tls_server(&files).await;
    let client = ca.client();

    let (resp, presented) = https(server.addr, &client, &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert_eq!(presented, leaf.der);
    assert_eq!(
        header_lines(&resp, "strict-transport-security"),
        ["strict-transport-security: max-age=31536000"]
    );

    let (resp, _) = https(server.addr, &client, &sign_in(None)).await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert!(!header_lines(&resp, "strict-transport-security").is_empty());
    let cookies = header_lines(&resp, "set-cookie");
    assert!(!cookies.is_empty(), "{resp}");
    for c in cookies {
        assert!(c.contains("; Secure"), "{c}");
    }

    // Error answers carry HSTS too.
    let (resp, _) = https(server.addr, &client, &get("/api/v1/nothing")).await;
    assert_eq!(status(&resp), "404", "{resp}");
    assert!(!header_lines(&resp, "strict-transport-security").is_empty());
}

#[tokio::test]
async fn over_https_pages_from_the_https_origin_only_may_change_state() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = tls_server(&files).await;
    let client = ca.client();
    let port = server.addr.port();
    assert_eq!(
        server.config.tls(),
        Some((files.cert.as_path(), files.key.as_path()))
    );

    let ours = format!("https://localhost:{port}");
    let (resp, _) = https(server.addr, &client, &sign_in(Some(&ours))).await;
    assert_eq!(status(&resp), "200", "{resp}");
    // The same host over plain HTTP is another origin.
    let plain = format!("http://localhost:{port}");
    let (resp, _) = https(server.addr, &client, &sign_in(Some(&plain))).await;
    assert_eq!(status(&resp), "403", "{resp}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = tls_server(&files).await;
    let stranger = Ca::new().client();
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    assert!(stranger.connect(name, tcp).await.is_err());
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections() {
    let ca = Ca::new();
    let (old, new) = (ca.leaf(), ca.leaf());
    let files = Files::new(&old);
    let server = tls_server(&files).await;
    let client = ca.client();
    let (_, presented) = https(server.addr, &client, &get("/healthz")).await;
    assert_eq!(presented, old.der);

    files.write(&new.cert_pem, &new.key_pem);
    let cert = server.server().tls_cert().expect("TLS on");
    cert.reload().expect("reload");

    let (resp, presented) = https(server.addr, &client, &get("/healthz")).await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert_eq!(presented, new.der);
    assert_eq!(cert.chain(), std::slice::from_ref(&new.der));
}

/// The unusable files an operator can end up with.
const BAD_INPUTS: [&str; 7] = [
    "missing certificate",
    "missing key",
    "unreadable key",
    "no certificate in the certificate file",
    "no key in the key file",
    "not PEM at all",
    "a key that is not the certificate's",
];

/// Puts `good` back in `files`, then spoils them as `case` says, with the
/// key of `other` where a wrong key is needed. Returns what the error must say.
fn spoil(case: &str, files: &Files, good: &Leaf, other: &Leaf) -> Vec<String> {
    if files.key.is_dir() {
        std::fs::remove_dir(&files.key).expect("rmdir");
    }
    files.write(&good.cert_pem, &good.key_pem);
    let (cert, key) = (&files.cert, &files.key);
    let named = |what: &str, path: &Path| vec![what.to_string(), path.display().to_string()];
    match case {
        "missing certificate" => {
            std::fs::remove_file(cert).expect("rm");
            named("cannot read the TLS certificate", cert)
        }
        "missing key" => {
            std::fs::remove_file(key).expect("rm");
            named("cannot read the TLS private key", key)
        }
        "unreadable key" => {
            // Root reads any file; a directory it cannot read as one.
            std::fs::remove_file(key).expect("rm");
            std::fs::create_dir(key).expect("mkdir");
            named("cannot read the TLS private key", key)
        }
        "no certificate in the certificate file" => {
            std::fs::write(cert, &good.key_pem).expect("write");
            named("no certificate in it", cert)
        }
        "no key in the key file" => {
            std::fs::write(key, &good.cert_pem).expect("write");
            named("no private key in it", key)
        }
        "not PEM at all" => {
            std::fs::write(cert, "hello\n").expect("write");
            named("no certificate in it", cert)
        }
        "a key that is not the certificate's" => {
            std::fs::write(key, &other.key_pem).expect("write");
            let mut says = named("does not match the private key", cert);
            says.push(key.display().to_string());
            says
        }
        _ => unreachable!("{case}"),
    }
}

fn assert_says(case: &str, msg: &str, says: &[String]) {
    for s in says {
        assert!(msg.contains(s.as_str()), "{case}: {msg:?} lacks {s:?}");
    }
}

#[tokio::test]
async fn unusable_files_stop_the_start_with_the_file_named() {
    let ca = Ca::new();
    let (good, other) = (ca.leaf(), ca.leaf());
    let files = Files::new(&good);
    for case in BAD_INPUTS {
        let says = spoil(case, &files, &good, &other);
        let data = tempfile::tempdir().expect("tempdir");
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            media_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data.path().to_path_buf(),
            tls_cert: Some(files.cert.clone()),
            tls_key: Some(files.key.clone()),
            ..Config::default()
        };
        let Err(e) = conclave::Server::start(config).await else {
            panic!("{case}: the server started");
        };
        assert_says(case, &e.to_string(), &says);
    }
}

#[tokio::test]
async fn a_failed_reload_keeps_serving_the_old_certificate() {
    let ca = Ca::new();
    let leaf = ca.leaf();
    let files = Files::new(&leaf);
    let server = tls_server(&files).await;
    let client = ca.client();
    let cert = server.server().tls_cert().expect("TLS on");
    let other = ca.leaf();
    for case in BAD_INPUTS {
        let says = spoil(case, &files, &leaf, &other);
        let e: TlsError = cert.reload().expect_err(case);
        assert_says(case, &e.to_string(), &says);
        let (resp, presented) = https(server.addr, &client, &get("/healthz")).await;
        assert_eq!(status(&resp), "200", "{case}: {resp}");
        assert_eq!(presented, leaf.der, "{case}");
    }
}

#[tokio::test]
async fn half_a_tls_configuration_is_refused() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        media_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.path().to_path_buf(),
        tls_cert: Some(files.cert.clone()),
        ..Config::default()
    };
    let Err(e) = conclave::Server::start(config).await else {
        panic!("started with a certificate and no key");
    };
    assert!(e.to_string().contains("tls_cert and tls_key"), "{e}");
}

#[tokio::test]
async fn without_tls_plain_http_is_unchanged() {
    let server = TestServer::start().await;
    assert!(server.server().tls_cert().is_none());
    let resp = reqwest::get(server.url("/healthz")).await.expect("GET");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(resp.headers().get("strict-transport-security").is_none());
    let resp = reqwest::Client::new()
        .post(server.url("/api/v1/auth/signin"))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(resp.headers().get("strict-transport-security").is_none());
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie");
    assert!(!cookie.contains("Secure"), "{cookie}");

    // A TLS client gets no handshake from a plain HTTP server.
    let ca = Ca::new();
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let handshake = tokio::time::timeout(TIMEOUT, ca.client().connect(name, tcp)).await;
    assert!(matches!(handshake, Ok(Err(_))));
}

#[tokio::test]
async fn plain_http_on_the_redirect_port_is_sent_to_https_and_nothing_else() {
    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let (cert, key) = (files.cert.clone(), files.key.clone());
    let server = TestServer::start_with(move |c: &mut Config| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.http_redirect_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let at = server.server().redirect_addr.expect("the redirect listens");
    let https_base = format!("https://localhost:{}", server.addr.port());
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Whatever the Host header says, the target is the server's own HTTPS origin.
    for (path, host) in [
        ("/j/abcd-efgh-jkmn-pqrs?x=1", "localhost"),
        ("/", "evil.example"),
        ("/api/v1/auth/signin", "localhost"),
    ] {
        let resp = no_redirects
            .get(format!("http://{at}{path}"))
            .header("host", host)
            .send()
            .await
            .expect("GET");
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::PERMANENT_REDIRECT,
            "{path}"
        );
        assert_eq!(
            resp.headers()["location"],
            format!("{https_base}{path}"),
            "{path}"
        );
        assert!(resp.headers().get("set-cookie").is_none(), "{path}");
    }
    // A POST keeps its method (308), and reaches no handler over plain HTTP.
    let resp = no_redirects
        .post(format!("http://{at}/api/v1/auth/signin"))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
    assert!(resp.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn a_redirect_port_without_tls_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        media_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.path().to_path_buf(),
        http_redirect_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Config::default()
    };
    let Err(e) = conclave::Server::start(config).await else {
        panic!("started a redirect to HTTPS without TLS");
    };
    assert!(e.to_string().contains("http_redirect_listen"), "{e}");
}

/// The real binary: `conclave serve --tls-cert --tls-key`, and SIGHUP.
mod binary {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_conclave");

    /// A `conclave serve` process, killed when dropped.
    struct Serve(Child);

    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn command(files: &Files, data: &Path, addr: SocketAddr) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--media-port", "0", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(data)
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .env("RUST_LOG", "warn")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    fn hangup(child: &Child) {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// The certificate a new connection is shown, once the server answers.
    async fn presented(addr: SocketAddr, client: &TlsConnector) -> Option<CertificateDer<'static>> {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").expect("name");
        let tls = client.connect(name, tcp).await.ok()?;
        Some(tls.get_ref().1.peer_certificates()?[0].clone())
    }

    /// Polls until a new connection is shown `want` (SIGHUP is asynchronous).
    async fn until_presented(addr: SocketAddr, client: &TlsConnector, want: &Leaf) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if presented(addr, client).await.as_ref() == Some(&want.der) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server never presented the expected certificate");
    }

    #[tokio::test]
    async fn sighup_makes_the_running_server_present_the_new_certificate() {
        let ca = Ca::new();
        let (old, new, stray) = (ca.leaf(), ca.leaf(), ca.leaf());
        let files = Files::new(&old);
        let data = tempfile::tempdir().expect("tempdir");
        let addr = free_addr();
        let child = command(&files, data.path(), addr)
            .stderr(Stdio::null())
            .spawn()
            .expect("start conclave serve");
        let serve = Serve(child);
        let client = ca.client();
        until_presented(addr, &client, &old).await;

        files.write(&new.cert_pem, &new.key_pem);
        hangup(&serve.0);
        until_presented(addr, &client, &new).await;

        // A key that does not match: the reload fails, the new pair stays.
        std::fs::write(&files.key, &stray.key_pem).expect("write key");
        hangup(&serve.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(presented(addr, &client).await, Some(new.der.clone()));
        let (resp, _) = https(addr, &client, &get("/healthz")).await;
        assert_eq!(status(&resp), "200", "{resp}");
    }

    #[tokio::test]
    async fn a_mismatched_key_stops_the_binary_with_both_files_named() {
        let ca = Ca::new();
        let (leaf, stray) = (ca.leaf(), ca.leaf());
        let files = Files::new(&leaf);
        std::fs::write(&files.key, &stray.key_pem).expect("write key");
        let data = tempfile::tempdir().expect("tempdir");
        let out = command(&files, data.path(), free_addr())
            .stderr(Stdio::piped())
            .output()
            .expect("run conclave serve");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "the certificate in {} does not match the private key in {}",
            files.cert.display(),
            files.key.display()
        );
        assert!(err.contains(&want), "{err}");
    }
}

/// `conclave join` on an `https://` invite: the meeting WebSocket over TLS
/// (wss), trusting the operator's CA from a file (`--ca-file`); two native
/// members exchange encrypted media. Without the CA the certificate is
/// refused, and the error names the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_clients_join_over_https_trusting_the_operators_ca() {
    use crate::common::{Meeting, a_second_of_media, ada_and_bob, native_options};
    use conclave_client::session::{MediaOptions, SessionError, run_with};
    use conclave_proto::MediaKind::Video;

    let ca = Ca::new();
    let files = Files::new(&ca.leaf());
    let server = tls_server(&files).await;
    let client = ca.client();
    let origin = format!("https://localhost:{}", server.addr.port());
    // Signed in and a meeting made over HTTPS, as a browser would.
    let (resp, _) = https(server.addr, &client, &sign_in(Some(&origin))).await;
    assert_eq!(status(&resp), "200", "{resp}");
    let cookies: Vec<&str> = header_lines(&resp, "set-cookie")
        .into_iter()
        .filter_map(|l| l.split_once(':')?.1.split(';').next())
        .map(str::trim)
        .collect();
    let body = serde_json::json!({"settings": {"waiting_room": false}}).to_string();
    let create = format!(
        "POST /api/v1/meetings HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nOrigin: {origin}\r\nCookie: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        cookies.join("; "),
        body.len()
    );
    let (resp, _) = https(server.addr, &client, &create).await;
    assert!(status(&resp).starts_with('2'), "{resp}");
    let view: serde_json::Value =
        serde_json::from_str(&resp[resp.find('{').expect("a JSON body")..]).expect("JSON");
    let link = view["invite_link"].as_str().expect("invite link");
    assert!(link.starts_with("https://"), "{link}");
    let meeting = Meeting {
        id: view["id"].as_str().unwrap_or_default().to_string(),
        passcode: String::new(),
        view: view.clone(),
    };

    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), ca.root_pem()).expect("write CA");
    let trusting = MediaOptions {
        ca_file: Some(root.path().to_path_buf()),
        ..MediaOptions::default()
    };
    let (a, b) = ada_and_bob(&meeting, a_second_of_media);
    let a = tokio::spawn(run_with(trusting.clone(), a));
    let b = tokio::spawn(run_with(trusting, b));
    for (who, r) in [("A", a), ("B", b)] {
        let r = r.await.expect("task").expect("session");
        let video: u64 = r
            .media
            .received
            .values()
            .filter(|t| t.participant.is_some_and(|p| p != r.admission.you))
            .filter(|t| t.kind == Some(Video))
            .map(|t| t.frames)
            .sum();
        assert!(video >= 30, "{who} decrypted {video} video frames");
    }

    // Without the operator's CA: refused, and said so.
    let err = run_with(MediaOptions::default(), native_options(&meeting, "Eve"))
        .await
        .expect_err("an unknown issuer");
    assert!(matches!(err, SessionError::Signaling(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("wss://localhost") && text.contains("UnknownIssuer"),
        "{text}"
    );
}
