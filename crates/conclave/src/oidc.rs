//! Sign-in through the organisation's OpenID Connect providers (`[[oidc]]`).
//!
//! Authorization Code flow with PKCE, `state` and `nonce`, over the
//! `openidconnect` crate: it does discovery, the code exchange and every
//! check of the ID token (signature against the provider's JWKS, issuer,
//! audience, expiry, nonce). Only asymmetric signatures are accepted, so a
//! token signed with HMAC under some public value is refused whatever the
//! provider's metadata says.
//!
//! What a sign-in must remember between the redirect to the provider and
//! the callback (state, nonce, PKCE verifier) travels in a short-lived
//! cookie MACed with a key from the store, not in this process's memory: a
//! node that did not start the flow can finish it, and a flood of started
//! flows costs the server nothing to hold. The cookie is cleared at the
//! callback; a replayed authorization code is refused by the provider.
//!
//! Discovery happens at the first sign-in, not at start, so a provider that
//! is down keeps nobody from local sign-in or from starting the server. The
//! provider's metadata and keys are kept for [`METADATA_TTL`], and fetched
//! again at once when a token's key is not among them (key rotation); a
//! removed key is refused from then on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::OidcClaims;

mod logout;
pub use logout::{LoggedOut, LogoutClaims, LogoutToken};

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long a provider's discovery document and keys are trusted.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long one request to a provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the store's key that MACs flow cookies.
const KEY_NAME: &str = "oidc_flow";

/// One `[[oidc]]` table of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Shown on the button ("Sign in with NAME") and part of the redirect
    /// URI (`PUBLIC_URL/auth/oidc/NAME/callback`): letters, digits, `-`, `_`.
    pub name: String,
    /// The issuer URL; discovery reads `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace is ignored).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret, instead of a file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim (in the ID token or from UserInfo) that lists a person's
    /// groups, for `host_groups` and `admin_groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// When set, only people in one of these groups may create meetings
    /// (they may still join others'); checked at each sign-in.
    #[serde(default)]
    pub host_groups: Vec<String>,
    /// When set, people in one of these groups are administrators and
    /// everyone else signing in through this provider is not: set at each
    /// sign-in, so leaving the group at the provider takes the role away at
    /// the next one. Empty: sign-in leaves the role as it is (accounts made
    /// here start without it).
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// When set, only people whose (not unverified) email address is in one
    /// of these domains may sign in through this provider.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// How long a session started through this provider lasts at most,
    /// whatever `limits.session_days` says: the provider is asked again
    /// after it, so that a person it disabled is out within this time.
    #[serde(default = "default_session_max_age_hours")]
    pub session_max_age_hours: f64,
}

fn default_session_max_age_hours() -> f64 {
    12.0
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

#[derive(Debug, thiserror::Error)]
pub enum OidcConfigError {
    #[error("oidc: provider names must be 1 to 32 letters, digits, '-' or '_', and unique: {0:?}")]
    Name(String),
    #[error("oidc {0}: issuer must be an http:// or https:// URL")]
    Issuer(String),
    #[error("oidc {0}: set client_secret_file or client_secret_env, not both")]
    TwoSecrets(String),
    #[error("oidc {name}: cannot read the client secret: {why}")]
    Secret { name: String, why: String },
    #[error("oidc: public_url does not make a valid redirect URI: {0}")]
    Redirect(String),
    #[error("oidc {0}: session_max_age_hours must be from 1/3600 (one second) to 8760 hours")]
    SessionMaxAge(String),
    #[error("oidc: cannot build the HTTP client: {0}")]
    Http(String),
}

/// Checks the `[[oidc]]` tables without reading secrets or the network.
pub fn validate(providers: &[ProviderConfig]) -> Result<(), OidcConfigError> {
    for (i, p) in providers.iter().enumerate() {
        let ok = (1..=32).contains(&p.name.len())
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            && !providers[..i].iter().any(|q| q.name == p.name);
        if !ok {
            return Err(OidcConfigError::Name(p.name.clone()));
        }
        let issuer_ok = url::Url::parse(&p.issuer)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !issuer_ok {
            return Err(OidcConfigError::Issuer(p.name.clone()));
        }
        if p.client_secret_file.is_some() && p.client_secret_env.is_some() {
            return Err(OidcConfigError::TwoSecrets(p.name.clone()));
        }
        // 0 would be the derive's Default (tests build configs with it) and
        // means the default; otherwise at least a second, at most a year.
        if !(p.session_max_age_hours == 0.0
            || (1.0 / 3600.0..=8760.0).contains(&p.session_max_age_hours))
        {
            return Err(OidcConfigError::SessionMaxAge(p.name.clone()));
        }
    }
    Ok(())
}

/// Why a sign-in through a provider failed. [`OidcError::code`] is what the
/// sign-in page is told; the details go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no such provider")]
    UnknownProvider,
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("no sign-in was started in this browser, or it took too long")]
    NoFlow,
    #[error("the state parameter does not match this browser's sign-in")]
    State,
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    #[error("the ID token was refused: {0}")]
    Token(String),
    #[error("the email address {0:?} is not in one of the provider's allowed domains")]
    Domain(Option<String>),
}

impl OidcError {
    /// A stable code for the sign-in page (`/signin#oidc_error=CODE`).
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider => "unknown_provider",
            OidcError::Unreachable(_) => "unreachable",
            OidcError::NoFlow => "expired",
            OidcError::State => "state",
            OidcError::Refused(_) => "refused",
            OidcError::Exchange(_) => "exchange",
            OidcError::Token(_) => "token",
            OidcError::Domain(_) => "domain",
        }
    }
}

/// What the flow cookie carries between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// The provider's name.
    p: String,
    /// `state`, the PKCE verifier and the `nonce`.
    s: String,
    v: String,
    n: String,
    /// Unix seconds after which the flow is refused.
    e: i64,
    /// The nonce is the browser's commitment to its MLS signature key
    /// (OpenPubkey): the ID token goes back to the browser for its leaf.
    #[serde(default)]
    k: bool,
    /// A native client's sign-in ([`NativeStart`]): where it listens, and
    /// its PKCE challenge for the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nat: Option<NativeStart>,
}

/// A native client's sign-in (`conclave login`, RFC 8252 §7.3): the browser
/// goes through the provider as for a browser sign-in, and the callback
/// then sends it to `http://127.0.0.1:PORT/callback` with a one-time code
/// instead of setting a session cookie. The client trades the code and the
/// verifier of `code_challenge` (base64url SHA-256, as PKCE's S256) for a
/// session, so a program that catches the redirect without the verifier
/// gets nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeStart {
    pub port: u16,
    pub code_challenge: String,
}

impl NativeStart {
    /// The start's parameters, when both are there and well formed.
    pub fn from_params(port: Option<u16>, challenge: Option<&str>) -> Option<NativeStart> {
        let (port, challenge) = (port?, challenge?);
        (port > 0 && is_key_nonce(challenge)).then(|| NativeStart {
            port,
            code_challenge: challenge.to_string(),
        })
    }

    /// Where the browser goes after the callback, with `query` (already
    /// encoded): the client's loopback listener.
    pub fn redirect(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/callback?{query}", self.port)
    }
}

struct Provider {
    config: ProviderConfig,
    secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    metadata: tokio::sync::Mutex<Option<(Instant, ProviderMetadataWithLogout)>>,
    /// The origin of the `jwks_uri` its discovery document last named, when
    /// a page may fetch it ([`page_fetchable_origin`]): the CSP lets pages
    /// reach it (docs/security.md §15, where the keys come from).
    keys_origin: std::sync::RwLock<Option<String>>,
}

/// The configured providers, their cached metadata and the HTTP client
/// that reaches them.
pub struct Providers {
    list: Vec<Provider>,
    http: HttpClient,
    key: Vec<u8>,
    /// `PUBLIC_URL/signin`, where a provider sends the browser back after
    /// an RP-initiated sign-out.
    after_logout: Option<PostLogoutRedirectUrl>,
    /// Back-channel logout tokens taken (their `jti`), against replays.
    logout_seen: logout::Seen,
}

/// A provider's authorization URL and the flow cookie's value to set.
/// A person the provider vouched for at a sign-in.
pub struct Verified {
    pub claims: OidcClaims,
    /// Whether they may create meetings: in one of `host_groups`, or the
    /// provider sets none.
    pub may_host: bool,
    /// Whether they are administrators: in one of `admin_groups`; `None`
    /// when the provider sets none.
    pub is_admin: Option<bool>,
    /// The ID token as the provider sent it, when the browser's nonce
    /// committed to its MLS key: the browser puts it in its leaf.
    pub id_token_for_leaf: Option<String>,
    /// The ID token, for `id_token_hint` at sign-out.
    pub id_token: String,
    /// How long the session may last ([`ProviderConfig::session_max_age_hours`]).
    pub session_max_age: Duration,
    /// A native client's sign-in: the session goes to it, not to the browser.
    pub native: Option<NativeStart>,
}

/// `url`'s origin if a page may be allowed to fetch from it: https, or http
/// on a loopback address (the tests' stand-in providers). Anything else (a
/// provider's keys over plain http on the network, an opaque origin) stays
/// out of the CSP, and pages then show its members' names as the server's.
pub fn page_fetchable_origin(url: &url::Url) -> Option<String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    let origin = url.origin().ascii_serialization();
    // An origin is scheme://host[:port]: nothing that could end the directive.
    (ok && origin != "null" && !origin.contains([' ', ';', ',', '\'', '"'])).then_some(origin)
}

/// Whether `nonce` has the shape of an OpenPubkey key commitment:
/// base64url without padding of 32 bytes (conclave_e2ee::openpubkey::nonce).
pub fn is_key_nonce(nonce: &str) -> bool {
    nonce.len() == 43
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Claims openidconnect has no field for (the groups claim), kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExtraClaims(serde_json::Map<String, serde_json::Value>);

impl openidconnect::AdditionalClaims for ExtraClaims {}

/// A claim's strings: an array of strings, or a single string.
fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Claim `name` of a compact JWS whose signature was already verified.
fn token_claim_strings(jws: &str, name: &str) -> Option<Vec<String>> {
    let payload = jws.split('.').nth(1)?;
    let json = data_encoding::BASE64URL_NOPAD
        .decode(payload.trim_end_matches('=').as_bytes())
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get(name).map(strings)
}

pub struct Started {
    pub url: String,
    pub cookie: String,
}

impl Providers {
    /// Reads each provider's client secret and takes the flow key from the
    /// store; nothing is fetched from the providers yet.
    pub fn new(
        configs: &[ProviderConfig],
        public_url: &str,
        key: Vec<u8>,
    ) -> Result<Providers, OidcConfigError> {
        validate(configs)?;
        let mut list = Vec::with_capacity(configs.len());
        for c in configs {
            let secret = read_secret(c)?.map(ClientSecret::new);
            let redirect = RedirectUrl::new(format!(
                "{}/auth/oidc/{}/callback",
                public_url.trim_end_matches('/'),
                c.name
            ))
            .map_err(|e| OidcConfigError::Redirect(e.to_string()))?;
            list.push(Provider {
                config: c.clone(),
                secret,
                redirect,
                metadata: tokio::sync::Mutex::new(None),
                keys_origin: std::sync::RwLock::new(None),
            });
        }
        let after_logout =
            PostLogoutRedirectUrl::new(format!("{}/signin", public_url.trim_end_matches('/'))).ok();
        Ok(Providers {
            list,
            http: HttpClient::new(None)?,
            key,
            after_logout,
            logout_seen: logout::Seen::default(),
        })
    }

    /// The flow key the store keeps (one for every node).
    pub fn fresh_key() -> Vec<u8> {
        crate::auth::new_secret("").digest
    }

    pub const KEY_NAME: &'static str = KEY_NAME;

    /// The providers' names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|p| p.config.name.as_str())
    }

    /// The name of the provider whose issuer is `issuer`, if configured.
    pub fn name_of_issuer(&self, issuer: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|p| same_issuer(&p.config.issuer, issuer))
            .map(|p| p.config.name.as_str())
    }

    /// The origins of the providers' `jwks_uri`s learned from their
    /// discovery documents so far, each once, in configuration order.
    pub fn keys_origins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.list {
            if let Ok(o) = p.keys_origin.read()
                && let Some(o) = o.as_ref()
                && !out.contains(o)
            {
                out.push(o.clone());
            }
        }
        out
    }

    /// Fetches every provider's discovery document once, at start, so that
    /// the CSP names their keys' origins before a page asks for them; one
    /// that cannot be reached is logged and tried again when next needed.
    pub async fn discover_all(&self) {
        let each = self.list.iter().map(|p| async move {
            if let Err(e) = self.metadata(p, false).await {
                tracing::warn!(provider = %p.config.name, error = %e, "cannot fetch the provider's discovery document");
            }
        });
        futures_util::future::join_all(each).await;
    }

    fn provider(&self, name: &str) -> Result<&Provider, OidcError> {
        self.list
            .iter()
            .find(|p| p.config.name == name)
            .ok_or(OidcError::UnknownProvider)
    }

    /// Starts a sign-in: the URL to send the browser to, and the cookie
    /// that lets [`Providers::finish`] check the callback.
    ///
    /// `key_nonce`: the browser's commitment to its MLS signature key
    /// ([`is_key_nonce`]), used as the `nonce` instead of a random one. It
    /// still binds the token to this flow: the browser made it from a fresh
    /// random `rz`, and the flow cookie carries it to the callback.
    ///
    /// `native`: a native client's sign-in ([`NativeStart`]).
    pub async fn start(
        &self,
        name: &str,
        key_nonce: Option<&str>,
        native: Option<NativeStart>,
    ) -> Result<Started, OidcError> {
        let p = self.provider(name)?;
        let metadata = self.metadata(p, false).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.config.client_id.clone()),
            p.secret.clone(),
        )
        .set_redirect_uri(p.redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                {
                    let key_nonce = key_nonce.filter(|n| is_key_nonce(n)).map(str::to_string);
                    move || key_nonce.map(Nonce::new).unwrap_or_else(Nonce::new_random)
                },
            )
            .set_pkce_challenge(challenge);
        for s in &p.config.scopes {
            if s != "openid" {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            p: name.to_string(),
            s: state.secret().clone(),
            v: verifier.secret().clone(),
            n: nonce.secret().clone(),
            e: crate::store::unix_now()
                .saturating_add(i64::try_from(FLOW_TTL.as_secs()).unwrap_or(i64::MAX)),
            k: key_nonce.is_some_and(is_key_nonce),
            nat: native,
        };
        Ok(Started {
            url: url.to_string(),
            cookie: self.seal(&flow),
        })
    }

    /// Finishes a sign-in at the callback: checks `state` against the flow
    /// cookie, exchanges the code (with the PKCE verifier) and checks the ID
    /// token. Answers what the token says about the person.
    pub async fn finish(
        &self,
        name: &str,
        cookie: Option<&str>,
        state: &str,
        code: &str,
    ) -> Result<Verified, OidcError> {
        let p = self.provider(name)?;
        let flow = cookie.and_then(|c| self.open(c)).ok_or(OidcError::NoFlow)?;
        if flow.p != name || flow.e < crate::store::unix_now() {
            return Err(OidcError::NoFlow);
        }
        if !bool::from(flow.s.as_bytes().ct_eq(state.as_bytes())) {
            return Err(OidcError::State);
        }
        let metadata = self.metadata(p, false).await?;
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(p.config.client_id.clone()),
            p.secret.clone(),
        )
        .set_redirect_uri(p.redirect.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.v))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(describe(&e)))?;
        let token = response
            .id_token()
            .ok_or_else(|| OidcError::Token("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(flow.n);
        let checked = token
            .claims(&verifier(&p.config.client_id, &metadata), &nonce)
            .cloned();
        let claims = match checked {
            Ok(c) => c,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // Signed with a key the provider rotated in since its keys
                // were fetched: fetch them again, once.
                tracing::info!(
                    provider = name,
                    "the token's key is new: fetching the provider's keys again"
                );
                let metadata = self.metadata(p, true).await?;
                token
                    .claims(&verifier(&p.config.client_id, &metadata), &nonce)
                    .map_err(|e| OidcError::Token(e.to_string()))?
                    .clone()
            }
            Err(e) => return Err(OidcError::Token(e.to_string())),
        };
        // An address the provider marks unverified is not kept: anyone may
        // type any address into some providers, and domains and invitations
        // (crate::join_policy) trust it.
        let verified = |email: Option<&openidconnect::EndUserEmail>, ok: Option<bool>| {
            email.filter(|_| ok != Some(false)).map(|e| e.to_string())
        };
        let mut found = OidcClaims {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: verified(claims.email(), claims.email_verified()),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
        };
        // The token's signature was checked above, so its payload can be
        // read for the one claim openidconnect has no field for.
        let mut groups = token_claim_strings(&token.to_string(), &p.config.groups_claim);
        let want_groups = !(p.config.host_groups.is_empty() && p.config.admin_groups.is_empty())
            && groups.is_none();
        if found.email.is_none()
            || found.name.is_none()
            || found.preferred_username.is_none()
            || want_groups
        {
            // Providers that conform to the spec's default put profile
            // claims in UserInfo only; it is asked for the same subject.
            // (A provider without a UserInfo endpoint has nothing more.)
            if let Ok(request) = client.user_info(
                response.access_token().clone(),
                Some(claims.subject().clone()),
            ) {
                let info: Result<
                    openidconnect::UserInfoClaims<
                        ExtraClaims,
                        openidconnect::core::CoreGenderClaim,
                    >,
                    _,
                > = request.request_async(&self.http).await;
                match info {
                    Ok(info) => {
                        found.email = found
                            .email
                            .or(verified(info.email(), info.email_verified()));
                        found.name = found
                            .name
                            .or(info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
                        found.preferred_username = found
                            .preferred_username
                            .or(info.preferred_username().map(|u| u.to_string()));
                        if groups.is_none() {
                            groups = info
                                .additional_claims()
                                .0
                                .get(&p.config.groups_claim)
                                .map(strings);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(provider = name, error = %describe(&e), "UserInfo failed; signing in with the ID token's claims");
                    }
                }
            }
        }
        let domains = &p.config.allowed_email_domains;
        if !domains.is_empty() {
            let ok = found
                .email
                .as_deref()
                .and_then(crate::join_policy::email_domain)
                .is_some_and(|d| domains.iter().any(|x| x.eq_ignore_ascii_case(d)));
            if !ok {
                return Err(OidcError::Domain(found.email));
            }
        }
        let groups = groups.unwrap_or_default();
        let may_host = p.config.host_groups.is_empty()
            || p.config.host_groups.iter().any(|g| groups.contains(g));
        let is_admin = (!p.config.admin_groups.is_empty())
            .then(|| p.config.admin_groups.iter().any(|g| groups.contains(g)));
        let hours = match p.config.session_max_age_hours {
            h if h > 0.0 => h,
            _ => default_session_max_age_hours(),
        };
        Ok(Verified {
            native: flow.nat,
            id_token_for_leaf: flow.k.then(|| token.to_string()),
            id_token: token.to_string(),
            session_max_age: Duration::from_secs_f64(hours * 3600.0),
            claims: found,
            may_host,
            is_admin,
        })
    }

    /// Where to send the browser at sign-out (OpenID Connect RP-Initiated
    /// Logout): the provider's `end_session_endpoint` with `id_token_hint`
    /// and `post_logout_redirect_uri` = `PUBLIC_URL/signin`. None when the
    /// provider has no such endpoint, or cannot be reached: then only the
    /// Conclave session ends.
    pub async fn end_session_url(&self, name: &str, id_token: &str) -> Option<String> {
        let p = self.provider(name).ok()?;
        let metadata = match self.metadata(p, false).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "cannot sign out at the provider");
                return None;
            }
        };
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request =
            LogoutRequest::from(endpoint).set_client_id(ClientId::new(p.config.client_id.clone()));
        // The hint is the token the provider signed at this sign-in; one
        // that does not even parse is left out rather than sent on.
        if let Ok(token) = id_token.parse::<CoreIdToken>() {
            request = request.set_id_token_hint(&token);
        }
        if let Some(after) = &self.after_logout {
            request = request.set_post_logout_redirect_uri(after.clone());
        }
        Some(request.http_get_url().to_string())
    }

    /// The provider's discovery document and keys: cached, or fetched when
    /// there are none, they are old, or `refresh` asks.
    async fn metadata(
        &self,
        p: &Provider,
        refresh: bool,
    ) -> Result<ProviderMetadataWithLogout, OidcError> {
        let mut cached = p.metadata.lock().await;
        if !refresh
            && let Some((at, m)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(p.config.issuer.clone())
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let m = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(describe(&e)))?;
        if let Ok(mut origin) = p.keys_origin.write() {
            *origin = page_fetchable_origin(m.jwks_uri().url());
        }
        *cached = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(&self.key).ok()
    }

    /// The flow as a cookie value: base64url(JSON) "." base64url(MAC).
    fn seal(&self, flow: &Flow) -> String {
        let json = serde_json::to_vec(flow).unwrap_or_default();
        let body = data_encoding::BASE64URL_NOPAD.encode(&json);
        let tag = self
            .mac()
            .map(|mut m| {
                m.update(body.as_bytes());
                m.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default();
        format!("{body}.{}", data_encoding::BASE64URL_NOPAD.encode(&tag))
    }

    /// The native client a flow cookie names, if any (and its MAC is
    /// right): where a failed sign-in reports back to.
    pub fn native_of(&self, cookie: Option<&str>) -> Option<NativeStart> {
        self.open(cookie?)?.nat
    }

    /// The flow in a cookie value, if its MAC is right.
    fn open(&self, cookie: &str) -> Option<Flow> {
        let (body, tag) = cookie.split_once('.')?;
        let tag = data_encoding::BASE64URL_NOPAD.decode(tag.as_bytes()).ok()?;
        let mut mac = self.mac()?;
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let json = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// The ID-token checks: the crate's (issuer, audience, expiry, signature
/// against the provider's JWKS, nonce), with asymmetric algorithms only. A
/// public-client verifier, so that no token MACed with the client secret
/// passes either.
fn verifier(
    client_id: &str,
    metadata: &ProviderMetadataWithLogout,
) -> CoreIdTokenVerifier<'static> {
    use CoreJwsSigningAlgorithm as Alg;
    CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_string()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs([
        Alg::RsaSsaPkcs1V15Sha256,
        Alg::RsaSsaPkcs1V15Sha384,
        Alg::RsaSsaPkcs1V15Sha512,
        Alg::RsaSsaPssSha256,
        Alg::RsaSsaPssSha384,
        Alg::RsaSsaPssSha512,
        Alg::EcdsaP256Sha256,
        Alg::EcdsaP384Sha384,
        Alg::EdDsa,
    ])
}

/// An error and its causes on one line, for the log.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Issuer URLs compare as strings (OpenID Connect Discovery §4.3), but an
/// operator's trailing slash is forgiven.
fn same_issuer(configured: &str, issuer: &str) -> bool {
    configured.trim_end_matches('/') == issuer.trim_end_matches('/')
}

fn read_secret(c: &ProviderConfig) -> Result<Option<String>, OidcConfigError> {
    let err = |why: String| OidcConfigError::Secret {
        name: c.name.clone(),
        why,
    };
    if let Some(path) = &c.client_secret_file {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        return Ok(Some(text.trim_end().to_string()));
    }
    if let Some(var) = &c.client_secret_env {
        let text = std::env::var(var).map_err(|e| err(format!("${var}: {e}")))?;
        return Ok(Some(text));
    }
    Ok(None)
}

/// How long `conclave join` and `conclave record` wait, all providers
/// together, for the providers' keys before they go on without those that
/// did not answer: one that is down must not hold the meeting up for a full
/// [`HTTP_TIMEOUT`] each.
pub const PROVIDER_KEYS_DEADLINE: Duration = Duration::from_secs(4);

/// What [`trusted_providers`] found: the providers whose keys were fetched,
/// and those that could not be, each with the reason, to be told once.
#[derive(Debug, Default)]
pub struct FetchedProviders {
    pub trusted: Vec<conclave_client::names::TrustedProvider>,
    pub unreachable: Vec<conclave_client::names::UnreachableProvider>,
    /// The server's providers the user did not pin (`--trust-issuer`): not
    /// trusted, and their members are told so.
    pub not_pinned: Vec<conclave_client::names::UnreachableProvider>,
    /// Issuers the user pinned that the server does not name: nobody's
    /// token from them can be checked (the server gives no client id).
    pub pinned_not_listed: Vec<String>,
}

/// An issuer the user trusts (`conclave join --trust-issuer URL[=NAME]`),
/// and the name to show for it instead of the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedIssuer {
    pub issuer: String,
    pub name: Option<String>,
}

impl std::str::FromStr for PinnedIssuer {
    type Err = String;

    /// `URL` or `URL=NAME`; the URL must be http(s) (a URL has no `=`
    /// before its query, and an issuer has no query).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (issuer, name) = match s.split_once('=') {
            Some((i, n)) if !n.trim().is_empty() => (i, Some(n.trim().to_string())),
            Some(_) => return Err("NAME after '=' is empty".into()),
            None => (s, None),
        };
        let url = url::Url::parse(issuer).map_err(|e| format!("{issuer:?}: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("{issuer:?}: not an http(s) URL"));
        }
        Ok(PinnedIssuer {
            issuer: issuer.to_string(),
            name,
        })
    }
}

/// The providers a native client (`conclave join`) takes names from: the
/// server's list (`/api/v1/auth/providers`), each with the keys fetched from
/// the provider itself (discovery, then its `jwks_uri`), never through the
/// server, as the browser does (web/openpubkey.js). The same trust as the
/// connection to the server: the system's roots and the operator's
/// `ca_file` (`--ca-file`). Providers are asked concurrently, all within
/// [`PROVIDER_KEYS_DEADLINE`]; one that cannot be reached is left out (its
/// people's names are then the server's, never verified) and reported.
///
/// With `pinned` issuers (the user's own trust list), only the server's
/// providers at those issuers are trusted, under the user's names; the
/// others are left out as `not_pinned`, so that a modified server cannot
/// add an issuer of its own. The client id (the tokens' audience) still
/// comes from the server's list.
pub async fn trusted_providers(
    server: &url::Url,
    ca_file: Option<&std::path::Path>,
    pinned: &[PinnedIssuer],
) -> FetchedProviders {
    #[derive(Deserialize)]
    struct Listed {
        name: String,
        issuer: String,
        client_id: String,
    }
    let deadline = tokio::time::Instant::now() + PROVIDER_KEYS_DEADLINE;
    let http = match HttpClient::new(ca_file) {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check verified names: no HTTP client");
            return FetchedProviders::default();
        }
    };
    let Ok(url) = server.join("/api/v1/auth/providers") else {
        return FetchedProviders::default();
    };
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new());
    let listed: Vec<Listed> = match request {
        Ok(request) => match tokio::time::timeout_at(deadline, http.clone().send(request)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                serde_json::from_slice(resp.body()).unwrap_or_default()
            }
            Ok(Ok(resp)) => {
                tracing::warn!(status = %resp.status(), "cannot list the server's providers");
                Vec::new()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list the server's providers");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("cannot list the server's providers: no answer in time");
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    };
    let mut fetched = FetchedProviders::default();
    let listed: Vec<Listed> = if pinned.is_empty() {
        listed
    } else {
        fetched.pinned_not_listed = pinned
            .iter()
            .filter(|pin| !listed.iter().any(|p| same_issuer(&p.issuer, &pin.issuer)))
            .map(|pin| pin.issuer.clone())
            .collect();
        let mut kept = Vec::new();
        for mut p in listed {
            match pinned
                .iter()
                .find(|pin| same_issuer(&p.issuer, &pin.issuer))
            {
                Some(pin) => {
                    if let Some(name) = &pin.name {
                        p.name.clone_from(name);
                    }
                    kept.push(p);
                }
                None => fetched
                    .not_pinned
                    .push(conclave_client::names::UnreachableProvider {
                        name: p.name,
                        issuer: p.issuer,
                        reason: "not in your --trust-issuer list".into(),
                        not_pinned: true,
                    }),
            }
        }
        kept
    };
    let fetches = listed.into_iter().map(|p| {
        let http = http.clone();
        async move {
            let keys = async {
                let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| e.to_string())?;
                // Discovery refuses a document whose issuer is not this one,
                // and fetches the keys from the jwks_uri it names.
                let discovered = tokio::time::timeout_at(
                    deadline,
                    openidconnect::core::CoreProviderMetadata::discover_async(issuer, &http),
                )
                .await;
                let meta = match discovered {
                    Ok(Ok(meta)) => meta,
                    Ok(Err(e)) => return Err(describe(&e)),
                    Err(_) => return Err(format!("no answer within {PROVIDER_KEYS_DEADLINE:?}")),
                };
                serde_json::to_string(meta.jwks()).map_err(|e| e.to_string())
            };
            match keys.await {
                Ok(jwks_json) => Ok(conclave_client::names::TrustedProvider {
                    name: p.name,
                    issuer: p.issuer,
                    client_id: p.client_id,
                    jwks_json,
                }),
                Err(reason) => Err(conclave_client::names::UnreachableProvider {
                    name: p.name,
                    issuer: p.issuer,
                    reason,
                    not_pinned: false,
                }),
            }
        }
    });
    for result in futures_util::future::join_all(fetches).await {
        match result {
            Ok(provider) => fetched.trusted.push(provider),
            Err(p) => {
                tracing::warn!(provider = %p.name, error = %p.reason, "cannot fetch the provider's keys: its people's names are shown as the server's");
                fetched.unreachable.push(p);
            }
        }
    }
    fetched
}

/// `openidconnect` wants a future that is `Sync` too, which hyper's is not:
/// the request runs as a task of its own, and its handle is awaited.
impl<'c> openidconnect::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>>
                + Send
                + Sync
                + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        let task = tokio::spawn(self.clone().send(request));
        Box::pin(async move { task.await.map_err(|_| HttpError::Task)? })
    }
}

/// Largest answer read from a provider (discovery, keys, tokens, UserInfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than 1 MiB or broken: {0}")]
    Body(String),
    #[error("the request task failed")]
    Task,
}

type Body = http_body_util::Full<bytes::Bytes>;

/// hyper's client on our rustls and aws-lc-rs, trusting the system's
/// roots (and, for a native client, the operator's `--ca-file`), HTTP/1.1, following no redirects (a provider's endpoints are
/// where its metadata says they are).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Body,
    >,
}

impl HttpClient {
    pub(crate) fn new(ca_file: Option<&std::path::Path>) -> Result<HttpClient, OidcConfigError> {
        let tls = match ca_file {
            // The client's own trust, as for the server's wss and `turns:`.
            Some(_) => conclave_client::tls::client_config(ca_file)
                .map_err(|e| OidcConfigError::Http(e.to_string()))?,
            None => Self::system_roots()?,
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(HttpClient { client })
    }

    fn system_roots() -> Result<rustls::ClientConfig, OidcConfigError> {
        let err = |e: &dyn std::fmt::Display| OidcConfigError::Http(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "a system root certificate could not be read");
        }
        roots.add_parsable_certificates(native.certs);
        Ok(
            rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| err(&e))?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// One request, as `openidconnect` hands it over, within [`HTTP_TIMEOUT`].
    pub(crate) async fn send(
        self,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        use http_body_util::BodyExt;
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Body::from(body));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Request(describe(&e)))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout(HTTP_TIMEOUT))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_may_fetch_keys_over_https_or_loopback_http_only() {
        let origin = |u: &str| page_fetchable_origin(&url::Url::parse(u).unwrap());
        assert_eq!(
            origin("https://www.googleapis.com/oauth2/v3/certs").as_deref(),
            Some("https://www.googleapis.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/jwks").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            origin("http://localhost:9000/jwks").as_deref(),
            Some("http://localhost:9000")
        );
        assert_eq!(
            origin("http://[::1]:9000/jwks").as_deref(),
            Some("http://[::1]:9000")
        );
        assert_eq!(origin("http://keys.example.com/jwks"), None);
        assert_eq!(origin("http://10.0.0.1/jwks"), None);
        assert_eq!(origin("data:text/plain,x"), None);
        assert_eq!(origin("file:///etc/jwks"), None);
    }

    #[test]
    fn a_pinned_issuer_is_a_url_and_an_optional_name() {
        let pin: PinnedIssuer = "https://idp.school.example=Our school".parse().unwrap();
        assert_eq!(pin.issuer, "https://idp.school.example");
        assert_eq!(pin.name.as_deref(), Some("Our school"));
        let pin: PinnedIssuer = "https://login.example/tenant/v2.0".parse().unwrap();
        assert_eq!(pin.name, None);
        assert!("idp.school.example".parse::<PinnedIssuer>().is_err());
        assert!("ftp://idp.example".parse::<PinnedIssuer>().is_err());
        assert!("https://idp.example=".parse::<PinnedIssuer>().is_err());
    }

    fn config(name: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            issuer: "https://idp.example".into(),
            client_id: "conclave".into(),
            client_secret_file: None,
            client_secret_env: None,
            scopes: default_scopes(),
            ..ProviderConfig::default()
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate(&[config("Keycloak"), config("school_idp-2")]).is_ok());
        assert!(validate(&[config("a b")]).is_err());
        assert!(validate(&[config("")]).is_err());
        assert!(validate(&[config("x"), config("x")]).is_err());
        let mut bad = config("x");
        bad.issuer = "idp.example".into();
        assert!(validate(&[bad]).is_err());
    }

    #[test]
    fn flow_cookies_are_sealed() {
        let providers = Providers::new(&[config("idp")], "http://localhost:8080", vec![7; 32])
            .expect("providers");
        let flow = Flow {
            p: "idp".into(),
            s: "state".into(),
            v: "verifier".into(),
            n: "nonce".into(),
            e: 1,
            k: false,
            nat: None,
        };
        let sealed = providers.seal(&flow);
        let opened = providers.open(&sealed).expect("opens");
        assert_eq!((opened.p, opened.s), ("idp".into(), "state".into()));
        // Any change to the body or the tag is refused.
        let (body, tag) = sealed.split_once('.').unwrap();
        let mut other = body.to_string();
        other.insert(0, 'A');
        assert!(providers.open(&format!("{other}.{tag}")).is_none());
        assert!(providers.open(body).is_none());
        let elsewhere = Providers::new(&[config("idp")], "http://localhost", vec![8; 32]).unwrap();
        assert!(elsewhere.open(&sealed).is_none());
    }
}
