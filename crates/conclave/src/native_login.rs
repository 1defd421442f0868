//! `conclave login`: a native client signs in through one of the server's
//! OpenID Connect providers by RFC 8252's loopback redirect (§7.3).
//!
//! The server stays the provider's only relying party (its client secret
//! and redirect URI are the browser sign-in's); the client drives the
//! server's flow ([`crate::oidc::NativeStart`]):
//!
//! 1. It makes an MLS signature key pair and commits to it in the OIDC
//!    nonce, as the browser does (OpenPubkey, docs/security.md §15), makes
//!    a PKCE verifier, and listens on `127.0.0.1` on a port the system picks.
//! 2. The person opens the printed URL
//!    (`/auth/oidc/NAME?key_nonce=…&loopback_port=…&code_challenge=…`) in a
//!    browser and signs in at the provider as always.
//! 3. The server's callback sends that browser to
//!    `http://127.0.0.1:PORT/callback?code=…` (or `?error=CODE`).
//! 4. The client trades the code and its verifier for a session
//!    (`POST /api/v1/auth/native/token`) and the provider's ID token, and
//!    writes both, with the key, to a file only its owner may read.
//!
//! `conclave join --login FILE` then joins with the session as a bearer
//! token and with that key, its leaf carrying the token: other members see
//! the name as verified by the provider.

use std::path::Path;
use std::time::Duration;

use conclave_client::session::LeafIdentity;
use conclave_e2ee::openpubkey::{self, RZ_LEN};
use conclave_e2ee::{IdentityBinding, Member};
use data_encoding::{BASE64, BASE64URL_NOPAD};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::oidc::HttpClient;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the server URL cannot be used: {0}")]
    Url(String),
    #[error("cannot reach the server: {0}")]
    Http(String),
    #[error("cannot listen on the loopback address: {0}")]
    Listen(std::io::Error),
    #[error("no sign-in came back within {0:?}")]
    Timeout(Duration),
    #[error("the sign-in failed: {0}")]
    Refused(String),
    #[error("the server refused ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("cannot make the signing key: {0}")]
    Key(#[from] conclave_e2ee::E2eeError),
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a login file: {why}")]
    Format {
        path: std::path::PathBuf,
        why: String,
    },
}

/// What `conclave login` writes and `conclave join --login` reads. Secret:
/// the session token and the private key are bearer secrets, so the file
/// is made readable by its owner only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginFile {
    /// The server's URL, as given to `conclave login`.
    pub server: String,
    pub username: String,
    /// The session, sent as `Authorization: Bearer`.
    pub token: String,
    /// Unix seconds when the session ends.
    pub expires_at: i64,
    /// The MLS signature key pair (base64) and `rz`, when the provider's ID
    /// token vouches for the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<LeafKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeafKey {
    pub secret: String,
    pub public: String,
    pub rz: String,
    pub id_token: String,
}

impl LoginFile {
    /// Writes the file, readable and writable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), LoginError> {
        let err = |source| LoginError::File {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        let mut file = options.open(path).map_err(err)?;
        // An existing file keeps its mode through `open`: narrow it too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        file.write_all(&json).map_err(err)
    }

    pub fn load(path: &Path) -> Result<LoginFile, LoginError> {
        let text = std::fs::read(path).map_err(|source| LoginError::File {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|e| LoginError::Format {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    }

    /// The key and binding to join with, when the file has them.
    pub fn leaf_identity(&self) -> Option<LeafIdentity> {
        let leaf = self.leaf.as_ref()?;
        let decode = |s: &str| BASE64.decode(s.as_bytes()).ok();
        Some(LeafIdentity {
            secret: decode(&leaf.secret)?,
            public: decode(&leaf.public)?,
            binding: IdentityBinding {
                id_token: leaf.id_token.clone(),
                rz: decode(&leaf.rz)?,
            },
        })
    }
}

/// A started login: the URL for the person to open, and what the client
/// keeps until the server's redirect comes back.
pub struct Pending {
    /// Open this in a browser to sign in.
    pub authorization_url: String,
    server: url::Url,
    listener: tokio::net::TcpListener,
    http: HttpClient,
    verifier: String,
    secret: Vec<u8>,
    public: Vec<u8>,
    rz: Vec<u8>,
}

/// Random bytes as base64url without padding (a PKCE verifier of 43
/// characters for 32 bytes).
fn random_b64url(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    BASE64URL_NOPAD.encode(&b)
}

/// Starts a login with `provider` of the server at `server`: the key, the
/// verifier, the loopback listener and the URL to open.
pub async fn start(
    server: &url::Url,
    provider: &str,
    ca_file: Option<&Path>,
) -> Result<Pending, LoginError> {
    let http = HttpClient::new(ca_file).map_err(|e| LoginError::Http(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(LoginError::Listen)?;
    let port = listener.local_addr().map_err(LoginError::Listen)?.port();
    let (secret, public) = Member::new_signing_key()?;
    let mut rz = vec![0u8; RZ_LEN];
    rand::rng().fill_bytes(&mut rz);
    let verifier = random_b64url(32);
    let challenge = BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()));
    let mut url = server.clone();
    url.path_segments_mut()
        .map_err(|()| LoginError::Url(server.to_string()))?
        .clear()
        .extend(["auth", "oidc", provider]);
    url.query_pairs_mut()
        .clear()
        .append_pair("key_nonce", &openpubkey::nonce(&public, &rz))
        .append_pair("loopback_port", &port.to_string())
        .append_pair("code_challenge", &challenge);
    Ok(Pending {
        authorization_url: url.to_string(),
        server: server.clone(),
        listener,
        http,
        verifier,
        secret,
        public,
        rz,
    })
}

/// The text the browser shows at the end.
const DONE_PAGE: &str =
    "Signed in to Conclave. You can close this tab and go back to the terminal.\n";

impl Pending {
    /// Waits up to `wait` for the server's redirect to the loopback
    /// listener, then trades its code for a session.
    pub async fn finish(self, wait: Duration) -> Result<LoginFile, LoginError> {
        let outcome = callback(self.listener, wait).await?;
        let code = outcome.map_err(|code| LoginError::Refused(refusal(&code)))?;
        let url = self
            .server
            .join("/api/v1/auth/native/token")
            .map_err(|e| LoginError::Url(e.to_string()))?;
        let body = serde_json::json!({"code": code, "code_verifier": self.verifier});
        let request = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| LoginError::Http(e.to_string()))?;
        let resp = self
            .http
            .send(request)
            .await
            .map_err(|e| LoginError::Http(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        if !resp.status().is_success() {
            return Err(LoginError::Server {
                status: resp.status().as_u16(),
                message: json["message"].as_str().unwrap_or("no reason given").into(),
            });
        }
        let field = |name: &str| json[name].as_str().map(str::to_string);
        let (Some(token), Some(username)) = (field("token"), field("username")) else {
            return Err(LoginError::Http(
                "the server's answer has no session".into(),
            ));
        };
        let expires_in = json["expires_in"].as_i64().unwrap_or(0);
        Ok(LoginFile {
            server: self.server.to_string(),
            username,
            token,
            expires_at: crate::store::unix_now().saturating_add(expires_in),
            leaf: field("id_token").map(|id_token| LeafKey {
                secret: BASE64.encode(&self.secret),
                public: BASE64.encode(&self.public),
                rz: BASE64.encode(&self.rz),
                id_token,
            }),
        })
    }
}

/// Ends the session of `file` at its server (`conclave logout`).
pub async fn logout(file: &LoginFile, ca_file: Option<&Path>) -> Result<(), LoginError> {
    let http = HttpClient::new(ca_file).map_err(|e| LoginError::Http(e.to_string()))?;
    let url = url::Url::parse(&file.server)
        .and_then(|s| s.join("/api/v1/auth/signout"))
        .map_err(|e| LoginError::Url(e.to_string()))?;
    let request = http::Request::post(url.as_str())
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", file.token),
        )
        .body(Vec::new())
        .map_err(|e| LoginError::Http(e.to_string()))?;
    let resp = http
        .send(request)
        .await
        .map_err(|e| LoginError::Http(e.to_string()))?;
    if !resp.status().is_success() {
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        return Err(LoginError::Server {
            status: resp.status().as_u16(),
            message: json["message"].as_str().unwrap_or("no reason given").into(),
        });
    }
    Ok(())
}

/// A sentence for the error code the server's callback sent back.
fn refusal(code: &str) -> String {
    match code {
        "disabled" => "this account is disabled on the server".into(),
        "domain" => {
            "the server accepts that provider's accounts only from its allowed email domains".into()
        }
        "unreachable" => "the server could not reach the identity provider".into(),
        "token" => "the identity provider's answer could not be verified".into(),
        "refused" => "the identity provider did not sign you in".into(),
        "expired" => {
            "the sign-in took too long or was not started in that browser; start again".into()
        }
        "unknown_provider" => "the server has no provider of that name".into(),
        other => format!("the server answered {other:?}"),
    }
}

/// Serves the loopback listener until the server's redirect arrives (or
/// `wait` passes): `Ok(code)`, or `Err(error code)` when the sign-in failed.
async fn callback(
    listener: tokio::net::TcpListener,
    wait: Duration,
) -> Result<Result<String, String>, LoginError> {
    use axum::extract::{Query, State};
    use std::collections::HashMap;
    type Tx = tokio::sync::mpsc::Sender<Result<String, String>>;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let handler = |State(tx): State<Tx>, Query(q): Query<HashMap<String, String>>| async move {
        let outcome = match (q.get("code"), q.get("error")) {
            (Some(code), _) => Ok(code.clone()),
            (None, Some(error)) => Err(error.chars().take(64).collect::<String>()),
            (None, None) => return "This address is for the Conclave sign-in only.\n".to_string(),
        };
        let page = match &outcome {
            Ok(_) => DONE_PAGE.to_string(),
            Err(e) => format!(
                "The sign-in failed: {}. Go back to the terminal.\n",
                refusal(e)
            ),
        };
        let _ = tx.try_send(outcome);
        page
    };
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(handler))
        .with_state(tx);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        })
    };
    let got = tokio::time::timeout(wait, rx.recv()).await;
    stop.cancel();
    // Let the page reach the browser before the listener goes.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    match got {
        Ok(Some(outcome)) => Ok(outcome),
        _ => Err(LoginError::Timeout(wait)),
    }
}
