//! Test harness: a real server on a free loopback port with its own data
//! directory, an HTTP client with a cookie jar, and WebSocket clients that can
//! pick their source address (127.0.0.N) to play many different people.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use conclave::auth::hash_now;
use conclave::store::Store;
use conclave::{Config, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

pub const PASSWORD: &str = "correct horse battery staple";
/// How long a test waits for a message that should come.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            media_listen: "127.0.0.1:0".parse().expect("addr"),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let addr = server.addr;
        TestServer {
            server: Some(server),
            addr,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    /// Creates an account directly in the store (as `conclave admin create-user` does).
    pub async fn create_user(&self, name: &str) -> i64 {
        let store = Store::open(self.dir.path()).await.expect("store");
        let hash = hash_now(PASSWORD).expect("hash");
        let user = store
            .create_user(name, Some(&hash), false)
            .await
            .expect("user");
        user.id
    }

    /// A signed-in HTTP client for a new account.
    pub async fn host(&self, name: &str) -> Http {
        self.create_user(name).await;
        let http = Http::new(self);
        let r = http
            .post(
                "/api/v1/auth/signin",
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.0, 200, "sign-in: {}", r.1);
        http
    }
}

/// An HTTP client with a cookie jar, speaking JSON.
pub struct Http {
    pub client: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
    pub base: String,
}

impl Http {
    pub fn new(server: &TestServer) -> Http {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .expect("client");
        Http {
            client,
            jar,
            base: server.url(""),
        }
    }

    async fn finish(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::finish(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("get"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Self::finish(
            self.client
                .post(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .expect("post"),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        Self::finish(
            self.client
                .patch(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .expect("patch"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::finish(
            self.client
                .delete(format!("{}{path}", self.base))
                .send()
                .await
                .expect("delete"),
        )
        .await
    }

    /// The `Cookie` header this client would send (for WebSocket handshakes).
    pub fn cookie_header(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().expect("url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// Creates a meeting; returns its JSON view.
    pub async fn meeting(&self, body: Value) -> Value {
        let (status, m) = self.post("/api/v1/meetings", body).await;
        assert_eq!(status, 201, "create meeting: {m}");
        m
    }
}

/// A WebSocket client that records everything it receives.
pub struct Ws {
    stream: WebSocketStream<TcpStream>,
    pub received: Vec<Value>,
    /// The `Set-Cookie` guest key the server handed out, if any.
    pub guest_cookie: Option<String>,
}

/// Where to connect and as whom.
#[derive(Default, Clone)]
pub struct WsOptions {
    pub cookie: Option<String>,
    pub bearer: Option<String>,
    /// Source address, e.g. 127.0.0.7, to act as a distinct client.
    pub from: Option<Ipv4Addr>,
    pub origin: Option<String>,
}

impl Ws {
    pub async fn connect(server: &TestServer, meeting: &str, opts: WsOptions) -> Ws {
        Self::try_connect(server, meeting, opts)
            .await
            .expect("websocket connects")
    }

    pub async fn try_connect(
        server: &TestServer,
        meeting: &str,
        opts: WsOptions,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{}/api/v1/meetings/{meeting}/ws", server.addr);
        let mut req = url.into_client_request()?;
        if let Some(c) = &opts.cookie {
            req.headers_mut()
                .insert("cookie", c.parse().expect("cookie header"));
        }
        if let Some(t) = &opts.bearer {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("auth header"),
            );
        }
        if let Some(o) = &opts.origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("origin header"));
        }
        let socket = TcpSocket::new_v4()?;
        let from = opts.from.unwrap_or(Ipv4Addr::LOCALHOST);
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        let tcp = socket.connect(server.addr).await?;
        let (stream, resp) = client_async(req, tcp).await?;
        let guest_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("conclave_guest="))
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        Ok(Ws {
            stream,
            received: Vec::new(),
            guest_cookie,
        })
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) -> bool {
        self.stream.send(m).await.is_ok()
    }

    /// The next JSON message; `None` when the socket closed.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(within, self.stream.next())
                .await
                .ok()??;
            match frame {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    self.received.push(v.clone());
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next message, which must come.
    pub async fn recv(&mut self) -> Value {
        self.next(PATIENCE).await.expect("a message")
    }

    /// Skips messages until one of `kind` arrives.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Waits for the server to close the socket (messages before are recorded).
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if self.next(PATIENCE).await.is_none() {
                return true;
            }
        }
        false
    }

    /// Nothing arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        self.next(d).await.is_none()
    }

    pub async fn join(&mut self, name: &str, passcode: Option<&str>) -> Value {
        let mut m = json!({"type": "join", "name": name});
        if let Some(p) = passcode {
            m["passcode"] = json!(p);
        }
        self.send(m).await;
        self.recv().await
    }
}

/// A meeting with its owner in it as host: (http, meeting json, host socket).
pub async fn running_meeting(server: &TestServer, settings: Value) -> (Http, Value, Ws) {
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({ "settings": settings })).await;
    let id = meeting["id"].as_str().expect("id").to_string();
    let mut host = Ws::connect(
        server,
        &id,
        WsOptions {
            cookie: http.cookie_header(),
            ..WsOptions::default()
        },
    )
    .await;
    let joined = host.join("Hostess", None).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["role"], "host");
    (http, meeting, host)
}

pub fn passcode(meeting: &Value) -> String {
    meeting["passcode"].as_str().expect("passcode").to_string()
}

pub fn id(meeting: &Value) -> String {
    meeting["id"].as_str().expect("id").to_string()
}

/// Source address 127.0.0.`n`.
pub fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A file of the repository's `samples/`.
pub fn sample(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

/// A native client for `meeting`'s invite link that stays `seconds` and sends
/// the sample video and audio (tests change what they need).
pub fn native_options(
    meeting: &Value,
    name: &str,
    seconds: u64,
) -> conclave_client::session::JoinOptions {
    conclave_client::session::JoinOptions {
        invite: meeting["invite_link"]
            .as_str()
            .expect("link")
            .parse()
            .expect("invite link"),
        name: name.into(),
        passcode: None,
        token: None,
        send_ivf: Some(sample("video-320x240.ivf")),
        send_ogg: Some(sample("audio-440hz.ogg")),
        synthetic: false,
        duration: Duration::from_secs(seconds),
        patience: Duration::from_secs(10),
        bind: "127.0.0.1".parse().expect("ip"),
        record: None,
        stop: None,
        outside_group: false,
    }
}
