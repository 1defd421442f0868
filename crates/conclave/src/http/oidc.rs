//! Sign-in through an OpenID Connect provider: `/auth/oidc/NAME` sends the
//! browser to the provider, `/auth/oidc/NAME/callback` comes back with the
//! code, and `/api/v1/auth/providers` tells the sign-in page which buttons
//! to show. The flow's checks live in [`crate::oidc`].
//!
//! Both browser endpoints answer with redirects, not JSON: the callback
//! ends at the web client's sign-in page, signed in (`/signin#oidc=done`)
//! or with an error code in the fragment (`/signin#oidc_error=CODE`), which
//! the page turns into a sentence. Codes, not sentences, so that a crafted
//! link cannot make the page say anything else.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::account::{audit_account, audit_refusal, start_session_for};
use super::error::{ApiError, ApiJson};
use super::session::ClientIp;
use crate::auth::new_secret;
use crate::join_policy::WhoMayJoin;
use crate::oidc::{FLOW_TTL, NativeStart, OidcError};
use crate::store::{NativeGrant, SigninOutcome, User};

/// The cookie that carries a started sign-in to its callback.
pub const FLOW_COOKIE: &str = "conclave_oidc";
/// Where the flow cookie is sent: the callbacks only.
const FLOW_PATH: &str = "/auth/oidc";
/// The ID token that vouches for the browser's MLS key, for the page to put
/// in its leaf and delete (docs/security.md §15, names the organisation
/// vouches for). Readable by the page's script, never sent cross-site.
pub const LEAF_TOKEN_COOKIE: &str = "conclave_leaf_token";
/// How long the page has to pick it up; the token's own `exp` is shorter or
/// longer as the provider decides, and members check that.
const LEAF_TOKEN_TTL_SECS: i64 = 3600;

#[derive(Deserialize)]
pub struct StartParams {
    /// The browser's OpenPubkey commitment to its MLS signature key.
    key_nonce: Option<String>,
    /// A native client's sign-in (`conclave login`): the loopback port it
    /// listens on and its PKCE challenge ([`NativeStart`]); both or neither.
    loopback_port: Option<u16>,
    code_challenge: Option<String>,
}

/// How long a native client has to trade its one-time code for a session.
const NATIVE_GRANT_TTL: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    /// The provider's name, for the button ("Sign in with NAME").
    pub name: String,
    /// Where the button sends the browser to start the sign-in.
    pub start_url: String,
    /// Its issuer and this server's client id there: what the page checks
    /// ID tokens in members' leaves against (with keys it fetches from the
    /// issuer itself; docs/security.md §15).
    pub issuer: String,
    pub client_id: String,
}

/// The OpenID Connect providers this server signs people in with.
#[utoipa::path(get, path = "/api/v1/auth/providers",
    responses((status = 200, body = Vec<ProviderView>)))]
pub async fn providers(State(state): State<AppState>) -> ApiJson<Vec<ProviderView>> {
    ApiJson(
        state
            .config
            .oidc
            .iter()
            .map(|p| ProviderView {
                name: p.name.clone(),
                start_url: format!("{FLOW_PATH}/{}", p.name),
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
            })
            .collect(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct SignInMethods {
    /// Whether username and password sign-in is on (`password_login`).
    pub password: bool,
    /// The OpenID Connect providers, as `/api/v1/auth/providers` lists them.
    pub providers: Vec<ProviderView>,
    /// The join policy a new meeting starts with (`[organisation]`), for
    /// the meeting form.
    pub default_who_may_join: WhoMayJoin,
}

/// How people sign in on this server: whether passwords are accepted, and
/// the providers. The sign-in page shows only the ways that work, so that
/// an organisation that turned passwords off offers only its provider.
#[utoipa::path(get, path = "/api/v1/auth/methods",
    responses((status = 200, body = SignInMethods)))]
pub async fn methods(State(state): State<AppState>) -> ApiJson<SignInMethods> {
    let ApiJson(providers) = providers(State(state.clone())).await;
    ApiJson(SignInMethods {
        password: state.config.password_login,
        providers,
        default_who_may_join: state.config.organisation.default_who_may_join,
    })
}

/// The cookie that remembers, for sign-out only, which provider signed this
/// browser in and its ID token (the `id_token_hint` of RP-initiated logout).
const LOGOUT_COOKIE: &str = "conclave_oidc_logout";
/// Where the logout cookie is sent: the sign-out endpoint only.
const LOGOUT_PATH: &str = "/api/v1/auth/signout";

/// How each of this module's cookies is scoped.
struct CookieKind {
    name: &'static str,
    /// The only path the browser sends it to.
    path: &'static str,
    same_site: SameSite,
    /// Out of the page's script's reach (all but the leaf token, which the
    /// page itself must read).
    http_only: bool,
}

const LOGOUT: CookieKind = CookieKind {
    name: LOGOUT_COOKIE,
    path: LOGOUT_PATH,
    same_site: SameSite::Strict,
    http_only: true,
};

/// Sent back on the provider's redirect to the callback (a cross-site
/// navigation, hence `Lax`, not the session's `Strict`).
const FLOW: CookieKind = CookieKind {
    name: FLOW_COOKIE,
    path: FLOW_PATH,
    same_site: SameSite::Lax,
    http_only: true,
};

const LEAF_TOKEN: CookieKind = CookieKind {
    name: LEAF_TOKEN_COOKIE,
    path: "/",
    same_site: SameSite::Strict,
    http_only: false,
};

/// A cookie of `kind`, `Secure` whenever the server is reached over HTTPS;
/// `max_age` 0 with an empty value clears it.
fn oidc_cookie(
    state: &AppState,
    kind: &CookieKind,
    value: String,
    max_age: i64,
) -> Cookie<'static> {
    Cookie::build((kind.name, value))
        .path(kind.path)
        .http_only(kind.http_only)
        .same_site(kind.same_site)
        .secure(state.config.secure_cookies())
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
}

/// The provider's name and the ID token from the logout cookie, if any. It
/// only picks which configured provider's end-session endpoint the browser
/// goes to, and a hint that the provider checks itself.
pub fn logout_hint(jar: &CookieJar) -> Option<(String, String)> {
    let (name, token) = jar.get(LOGOUT_COOKIE)?.value().split_once('.')?;
    Some((name.to_string(), token.to_string()))
}

/// The jar with the logout cookie cleared.
pub fn clear_logout_hint(state: &AppState, jar: CookieJar) -> CookieJar {
    jar.add(oidc_cookie(state, &LOGOUT, String::new(), 0))
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn failed(jar: CookieJar, state: &AppState, e: &OidcError) -> Response {
    back_with_error(jar, state, None, e.code())
}

/// The end of a failed sign-in: the flow cookie cleared, and the browser
/// sent to the sign-in page with the error's code, or for a native
/// client's sign-in to its loopback listener (which tells the person).
fn back_with_error(
    jar: CookieJar,
    state: &AppState,
    native: Option<&NativeStart>,
    code: &str,
) -> Response {
    let jar = jar.add(oidc_cookie(state, &FLOW, String::new(), 0));
    let to = match native {
        Some(n) => n.redirect(&format!("error={code}")),
        None => format!("/signin#oidc_error={code}"),
    };
    (jar, see_other(&to)).into_response()
}

/// Where a signed-in person goes from the callback.
enum Landing {
    /// A browser sign-in: the session cookie and the logout hint are in it.
    Browser(CookieJar),
    /// A native client's: its loopback listener, with the one-time code.
    Native(String),
}

/// Starts a sign-in with provider NAME: sets the flow cookie and redirects
/// to the provider's authorization endpoint.
pub async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    Query(params): Query<StartParams>,
    jar: CookieJar,
) -> Response {
    let asks_native = params.loopback_port.is_some() || params.code_challenge.is_some();
    let native = NativeStart::from_params(params.loopback_port, params.code_challenge.as_deref());
    if asks_native && native.is_none() {
        let e =
            OidcError::Refused("a native sign-in needs loopback_port and code_challenge".into());
        tracing::warn!(provider = %name, %ip, "refused a native sign-in's malformed start");
        return failed(jar, &state, &e);
    }
    match state
        .oidc
        .start(&name, params.key_nonce.as_deref(), native)
        .await
    {
        Ok(started) => {
            let ttl = i64::try_from(FLOW_TTL.as_secs()).unwrap_or(i64::MAX);
            let jar = jar.add(oidc_cookie(&state, &FLOW, started.cookie, ttl));
            (jar, see_other(&started.url)).into_response()
        }
        Err(e) => {
            tracing::warn!(provider = %name, %ip, error = %e, "cannot start an OpenID Connect sign-in");
            failed(jar, &state, &e)
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's redirect back: checks it, signs the person in (creating
/// the account at the first sign-in) and sends the browser to the sign-in
/// page, which goes on to where it was headed.
pub async fn callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    Query(params): Query<CallbackParams>,
    jar: CookieJar,
) -> Response {
    let flow = jar.get(FLOW_COOKIE).map(|c| c.value().to_string());
    let method = format!("oidc:{}", name.chars().take(32).collect::<String>());
    let verified = match (params.error, params.code, params.state) {
        (Some(error), _, _) => Err(OidcError::Refused(error.chars().take(64).collect())),
        (None, Some(code), Some(s)) => state.oidc.finish(&name, flow.as_deref(), &s, &code).await,
        _ => Err(OidcError::Refused("no code or state".into())),
    };
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            let native = state.oidc.native_of(flow.as_deref());
            tracing::warn!(provider = %name, %ip, error = %e, "failed OpenID Connect sign-in");
            let detail = e.to_string();
            audit_refusal(&state, &method, e.code(), Some(&detail), ip).await;
            return back_with_error(jar, &state, native.as_ref(), e.code());
        }
    };
    let claims = &verified.claims;
    let who = format!(
        "{} sub={} email={}{}",
        claims.issuer,
        claims.subject,
        claims.email.as_deref().unwrap_or("-"),
        if verified.native.is_some() {
            " (native client)"
        } else {
            ""
        }
    );
    let signed_in: Result<Result<(User, Landing), User>, ApiError> = async {
        let mut user = state.store.oidc_account(claims).await?;
        if user.disabled {
            return Ok(Err(user));
        }
        if user.may_host != verified.may_host {
            state.store.set_may_host(user.id, verified.may_host).await?;
            user.may_host = verified.may_host;
        }
        if let Some(is_admin) = verified.is_admin
            && user.is_admin != is_admin
        {
            tracing::info!(user = %user.username, provider = %name, is_admin, "administrator role set from the provider's groups");
            state.store.set_admin(user.id, is_admin).await?;
            user.is_admin = is_admin;
        }
        if let Some(native) = &verified.native {
            let code = new_secret("");
            let grant = NativeGrant {
                user_id: user.id,
                code_challenge: native.code_challenge.clone(),
                id_token: verified.id_token_for_leaf.clone(),
                session: verified.session_max_age,
            };
            state
                .store
                .create_native_grant(&code.digest, &grant, NATIVE_GRANT_TTL)
                .await?;
            let to = native.redirect(&format!("code={}", code.text));
            return Ok(Ok((user, Landing::Native(to))));
        }
        let jar = start_session_for(&state, jar.clone(), &user, verified.session_max_age).await?;
        let max_age = i64::try_from(verified.session_max_age.as_secs()).unwrap_or(i64::MAX);
        let jar = jar.add(oidc_cookie(
            &state,
            &LOGOUT,
            format!("{name}.{}", verified.id_token),
            max_age,
        ));
        Ok(Ok((user, Landing::Browser(jar))))
    }
    .await;
    match signed_in {
        Ok(Err(user)) => {
            tracing::warn!(user = %user.username, provider = %name, %ip, "OpenID Connect sign-in refused: the account is disabled");
            audit_account(
                &state,
                &method,
                SigninOutcome::Failed("disabled"),
                &user,
                Some(&who),
                ip,
            )
            .await;
            back_with_error(jar, &state, verified.native.as_ref(), "disabled")
        }
        Ok(Ok((user, landing))) => {
            tracing::info!(user = %user.username, provider = %name, %ip, may_host = user.may_host, is_admin = user.is_admin, native = verified.native.is_some(), "signed in through OpenID Connect");
            audit_account(&state, &method, SigninOutcome::Ok, &user, Some(&who), ip).await;
            let jar = match landing {
                Landing::Native(to) => {
                    let jar = jar.add(oidc_cookie(&state, &FLOW, String::new(), 0));
                    return (jar, see_other(&to)).into_response();
                }
                Landing::Browser(jar) => jar,
            };
            let jar = match &verified.id_token_for_leaf {
                Some(token) => jar.add(oidc_cookie(
                    &state,
                    &LEAF_TOKEN,
                    token.clone(),
                    LEAF_TOKEN_TTL_SECS,
                )),
                None => jar,
            };
            let jar = jar.add(oidc_cookie(&state, &FLOW, String::new(), 0));
            (jar, see_other("/signin#oidc=done")).into_response()
        }
        Err(e) => {
            tracing::error!(provider = %name, error = ?e, "cannot sign in an OpenID Connect account");
            audit_refusal(&state, &method, "internal", Some(&who), ip).await;
            back_with_error(jar, &state, verified.native.as_ref(), "internal")
        }
    }
}
