//! The harness shared by the integration tests: a server started in-process on
//! a free port with its store in a temporary directory, accounts, an HTTP client
//! with a cookie jar, and a WebSocket client that records every frame it gets.
//!
//! Every test starts its own server, so tests run in parallel and the rate
//! limiters of one test never see another's attempts.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conclave::store::Store;
use conclave::{Config, Server};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

/// The password of every account the harness creates.
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a test waits for a message that should come. Only a failing test
/// waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

/// One argon2 hash of [`PASSWORD`], shared by every account the harness makes
/// (hashing is deliberately slow).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| conclave::auth::hash_now(PASSWORD).expect("hash"))
}

/// A server running in this process, with its data directory.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
    pub config: Config,
    dir: Arc<tempfile::TempDir>,
}

impl TestServer {
    /// A server with two accounts, `alice` and `bob`, both with [`PASSWORD`].
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with the configuration adjusted first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let store = Store::open(dir.path()).await.expect("store");
        for name in ["alice", "bob"] {
            store
                .create_user(name, Some(password_hash()), false)
                .await
                .expect("create user");
        }
        store.close().await;
        Self::launch(dir, tweak).await
    }

    /// A server on an empty store: the first start.
    pub async fn start_empty(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::launch(dir, tweak).await
    }

    async fn launch(dir: Arc<tempfile::TempDir>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_path_buf(),
            media_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start(config.clone()).await.expect("server starts");
        TestServer {
            addr: server.addr,
            server: Some(server),
            config,
            dir,
        }
    }

    /// Stops the server gracefully and starts a new one on the same data
    /// directory (and configuration; the port changes).
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let config = self.config.clone();
        Self::launch(Arc::clone(&self.dir), |c| *c = config).await
    }

    /// Graceful shutdown: meetings end, the store closes.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    /// argon2 verifications the server has run so far (passwords and
    /// passcodes): what the rate limits promise to bound.
    pub fn argon2_checks(&self) -> u64 {
        self.server.as_ref().map_or(0, |s| s.hasher().checks_run())
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A second handle on the server's store (SQLite in WAL mode allows it).
    pub async fn store(&self) -> Store {
        Store::open(self.dir.path()).await.expect("store")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP client with an empty cookie jar.
    pub fn api(&self) -> Api {
        Api::new(self)
    }

    /// An HTTP client signed in as `user` (status 200 asserted).
    pub async fn signed_in(&self, user: &str) -> Api {
        let api = self.api();
        let (status, body) = api.sign_in(user, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "sign-in of {user}: {body}");
        api
    }

    /// Opens a meeting WebSocket (panics if the handshake fails).
    pub async fn ws(&self, meeting: &str, opts: WsOpts) -> Ws {
        self.try_ws(meeting, opts)
            .await
            .unwrap_or_else(|e| panic!("WebSocket to {meeting}: {e}"))
    }

    /// Opens a meeting WebSocket; the handshake's error when refused.
    pub async fn try_ws(&self, meeting: &str, opts: WsOpts) -> Result<Ws, tungstenite::Error> {
        open_ws(self.addr, meeting, opts).await
    }

    // ---- common meeting scenes ----

    /// The meeting's owner joins with their session: returns the socket and
    /// the `joined` message.
    pub async fn host_joins(&self, host: &Api, meeting: &str) -> (Ws, Value) {
        let mut ws = self.ws(meeting, host.ws_opts()).await;
        ws.send(json!({"type": "join", "name": "Host"})).await;
        let joined = ws.recv().await;
        assert_eq!(joined["type"], "joined", "host join: {joined}");
        assert_eq!(joined["role"], "host");
        (ws, joined)
    }

    /// A guest (new browser, no cookie) joins with the passcode and is put in
    /// the waiting room: returns the socket and its participant id.
    pub async fn guest_waits(&self, meeting: &Meeting, name: &str) -> (Ws, u64) {
        self.guest_waits_with(meeting, name, WsOpts::default())
            .await
    }

    pub async fn guest_waits_with(&self, meeting: &Meeting, name: &str, opts: WsOpts) -> (Ws, u64) {
        let mut ws = self.ws(&meeting.id, opts).await;
        ws.send(join(name, &meeting.passcode)).await;
        let w = ws.recv().await;
        assert_eq!(w["type"], "waiting", "{name} should wait: {w}");
        let id = w["you"].as_u64().expect("participant id");
        (ws, id)
    }

    /// A guest waits and the host admits them: returns the guest's socket and
    /// its `joined` message. The host's socket has read up to the waiting-room
    /// update that follows the admission.
    pub async fn guest_admitted(
        &self,
        host: &mut Ws,
        meeting: &Meeting,
        name: &str,
    ) -> (Ws, Value) {
        self.guest_admitted_with(host, meeting, name, WsOpts::default())
            .await
    }

    pub async fn guest_admitted_with(
        &self,
        host: &mut Ws,
        meeting: &Meeting,
        name: &str,
        opts: WsOpts,
    ) -> (Ws, Value) {
        let (mut guest, id) = self.guest_waits_with(meeting, name, opts).await;
        host.send(json!({"type": "admit", "participant": id})).await;
        let joined = guest.recv().await;
        assert_eq!(joined["type"], "joined", "{name} admitted: {joined}");
        assert_eq!(joined["you"], id);
        let pj = host.recv_until("participant_joined").await;
        assert_eq!(pj["participant"]["id"], id);
        // The waiting room shrank.
        host.recv_until("waiting_room").await;
        (guest, joined)
    }
}

/// Opens a meeting WebSocket to the server at `addr`; the handshake's error
/// when refused.
pub async fn open_ws(
    addr: SocketAddr,
    meeting: &str,
    opts: WsOpts,
) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{addr}/api/v1/meetings/{meeting}/ws");
    let mut req = url.into_client_request()?;
    let headers = req.headers_mut();
    if let Some(c) = &opts.cookie {
        headers.insert("cookie", HeaderValue::from_str(c).expect("cookie header"));
    }
    if let Some(t) = &opts.bearer {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).expect("bearer header"),
        );
    }
    if let Some(o) = &opts.origin {
        headers.insert("origin", HeaderValue::from_str(o).expect("origin header"));
    }
    let stream = tcp_from(opts.source, addr).await?;
    let (stream, resp) = tokio_tungstenite::client_async(req, stream).await?;
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    Ok(Ws {
        stream,
        log: Vec::new(),
        set_cookies,
        closed: false,
    })
}

/// A TCP connection to `to`, from the loopback address `from` when given
/// (Linux answers on all of 127.0.0.0/8), so that tests can play many clients.
pub async fn tcp_from(from: Option<Ipv4Addr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    match from {
        None => TcpStream::connect(to).await,
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
            socket.connect(to).await
        }
    }
}

/// The `join` message.
pub fn join(name: &str, passcode: &str) -> Value {
    json!({"type": "join", "name": name, "passcode": passcode})
}

/// A meeting as the API returned it.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: String,
    pub passcode: String,
    pub view: Value,
}

/// An HTTP client with its own cookie jar (one browser).
pub struct Api {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    base: String,
    bearer: Option<String>,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .timeout(TIMEOUT)
            .build()
            .expect("http client");
        Api {
            client,
            jar,
            base: server.url(""),
            bearer: None,
        }
    }

    /// The same browser (cookies) talking to a restarted server.
    pub fn rebase(&mut self, server: &TestServer) {
        let cookies = self.jar.cookies(&self.base.parse().expect("url"));
        let jar = Arc::new(Jar::default());
        let url: reqwest::Url = server.url("").parse().expect("url");
        if let Some(c) = cookies {
            for pair in c.to_str().expect("cookie text").split("; ") {
                jar.add_cookie_str(pair, &url);
            }
        }
        self.client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .timeout(TIMEOUT)
            .build()
            .expect("http client");
        self.jar = jar;
        self.base = server.url("");
    }

    /// A client that authenticates with an API token instead of cookies.
    pub fn with_bearer(server: &TestServer, token: &str) -> Api {
        let mut api = Api::new(server);
        api.bearer = Some(token.to_string());
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Cookie` header this browser would send to the server.
    pub fn cookie_header(&self) -> Option<String> {
        self.jar
            .cookies(&self.base.parse().expect("url"))
            .map(|v| v.to_str().expect("cookie text").to_string())
    }

    /// Options for a WebSocket opened by this client (its cookies or token).
    pub fn ws_opts(&self) -> WsOpts {
        WsOpts {
            cookie: self.cookie_header(),
            bearer: self.bearer.clone(),
            ..WsOpts::default()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = &self.bearer {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends a request; returns the status and the body as JSON (`Null` when
    /// empty, a string when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn sign_in(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/auth/signin",
            json!({"username": user, "password": password}),
        )
        .await
    }

    /// Creates a meeting (status 201 asserted).
    pub async fn create_meeting(&self, body: Value) -> Meeting {
        let (status, view) = self.post("/api/v1/meetings", body).await;
        assert_eq!(status, StatusCode::CREATED, "create meeting: {view}");
        Meeting {
            id: view["id"].as_str().expect("id").to_string(),
            passcode: view["passcode"].as_str().unwrap_or_default().to_string(),
            view,
        }
    }

    /// The signed-in host's meetings, as JSON.
    pub async fn meetings(&self) -> Value {
        let (status, list) = self.get("/api/v1/meetings").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list
    }
}

/// A response's status and body.
pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// How to open a meeting WebSocket.
#[derive(Debug, Clone, Default)]
pub struct WsOpts {
    /// A `Cookie` header (session and/or guest cookie).
    pub cookie: Option<String>,
    /// An API token for `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// The loopback address to connect from (default 127.0.0.1).
    pub source: Option<Ipv4Addr>,
    pub origin: Option<String>,
}

impl WsOpts {
    pub fn from(ip: Ipv4Addr) -> WsOpts {
        WsOpts {
            source: Some(ip),
            ..WsOpts::default()
        }
    }

    pub fn cookie(c: String) -> WsOpts {
        WsOpts {
            cookie: Some(c),
            ..WsOpts::default()
        }
    }
}

/// What the next read from a socket brought.
#[derive(Debug)]
pub enum Frame {
    Msg(Value),
    Closed,
}

/// A meeting WebSocket client that records every message it receives.
pub struct Ws {
    pub stream: WebSocketStream<TcpStream>,
    /// Every text message received, in order.
    pub log: Vec<Value>,
    /// `Set-Cookie` headers of the handshake response.
    pub set_cookies: Vec<String>,
    closed: bool,
}

impl Ws {
    /// The `conclave_guest=...` cookie the server gave this browser, to send
    /// again from the same browser.
    pub fn guest_cookie(&self) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let pair = c.split(';').next()?.trim();
            pair.starts_with("conclave_guest=")
                .then(|| pair.to_string())
        })
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// Sends a frame, reporting (not panicking on) a connection the server closed.
    pub async fn try_send(&mut self, msg: Message) -> Result<(), tungstenite::Error> {
        self.stream.send(msg).await
    }

    /// The next message or the closing of the socket, or `None` if nothing
    /// came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        if self.closed {
            return Some(Frame::Closed);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = tokio::time::timeout_at(deadline, self.stream.next()).await;
            let frame = match got {
                Err(_) => return None,
                Ok(f) => f,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON {t:?}: {e}"));
                    self.log.push(v.clone());
                    return Some(Frame::Msg(v));
                }
                Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {b:?}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.closed = true;
                    return Some(Frame::Closed);
                }
            }
        }
    }

    /// The next message; panics if the socket closes or nothing comes.
    pub async fn recv(&mut self) -> Value {
        match self.next(TIMEOUT).await {
            Some(Frame::Msg(v)) => v,
            Some(Frame::Closed) => panic!("socket closed; received so far: {:#?}", self.log),
            None => panic!("no message within {TIMEOUT:?}; received: {:#?}", self.log),
        }
    }

    /// Skips messages until one of type `ty` arrives, and returns it.
    pub async fn recv_until(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Skips messages until a `chat` with this payload arrives, and returns it.
    pub async fn recv_chat(&mut self, payload: &str) -> Value {
        loop {
            let v = self.recv_until("chat").await;
            if v["payload"] == payload {
                return v;
            }
        }
    }

    /// The next message, which must be an error with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Skips other messages until an error arrives; it must have this code.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let v = self.recv_until("error").await;
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Asserts that nothing arrives (nor does the socket close) for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(f) = self.next(wait).await {
            panic!("expected silence, got {f:?}");
        }
    }

    /// Reads until the server closes the socket; returns what came first.
    pub async fn expect_closed(&mut self) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            match self.next(TIMEOUT).await {
                Some(Frame::Msg(v)) => got.push(v),
                Some(Frame::Closed) => return got,
                None => panic!("socket still open after {TIMEOUT:?}; got {got:#?}"),
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
