//! The server under test: started in-process on a free port with its store in
//! a temporary directory, and the meeting scenes most tests begin with.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use conclave::store::Store;
use conclave::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use super::{Api, Meeting, PASSWORD, Ws, WsOpts, join, open_ws};

/// One argon2 hash of [`PASSWORD`], shared by every account the harness makes
/// (hashing is deliberately slow).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| conclave::auth::hash_now(PASSWORD).expect("hash"))
}

/// Creates `alice` and `bob`, both with [`PASSWORD`].
async fn seed(store: Store) {
    for name in ["alice", "bob"] {
        store
            .create_user(name, Some(password_hash()), false)
            .await
            .expect("create user");
    }
    store.close().await;
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
        seed(Store::open(dir.path()).await.expect("store")).await;
        Self::launch(dir, tweak).await
    }

    /// Like [`TestServer::start_with`], with the store in the (empty)
    /// PostgreSQL database at `database_url` instead of SQLite.
    pub async fn start_on_postgres(
        database_url: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        seed(Store::connect(database_url).await.expect("store")).await;
        let url = database_url.to_string();
        Self::launch(dir, |c| {
            c.database_url = Some(url);
            tweak(c);
        })
        .await
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

    /// The running server (panics after [`TestServer::shutdown`]).
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A second handle on the server's store (SQLite in WAL mode allows it).
    pub async fn store(&self) -> Store {
        Store::open_configured(self.config.database_url.as_deref(), self.dir.path())
            .await
            .expect("store")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP client with an empty cookie jar.
    pub fn api(&self) -> Api {
        Api::new(self)
    }

    /// An HTTP client holding a fresh session for account `id`, made in
    /// `store` as a sign-in would make it (so accounts without a password,
    /// such as OpenID Connect ones, can be signed in), and that session's secret.
    pub async fn session_for(&self, store: &Store, id: i64) -> (Api, String) {
        let secret = conclave::auth::new_secret("");
        store
            .create_session(&secret.digest, id, std::time::Duration::from_secs(3600))
            .await
            .expect("session");
        let api = self.api();
        let url: reqwest::Url = self.url("/").parse().expect("url");
        api.jar
            .add_cookie_str(&format!("conclave_session={}", secret.text), &url);
        (api, secret.text)
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
