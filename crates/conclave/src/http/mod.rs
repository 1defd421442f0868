//! The HTTP face of the server: JSON API, meeting WebSocket, web client.
//!
//! - [`error`]: the API's error type and its JSON body.
//! - [`redirect`]: with TLS, the plain-HTTP listener that sends people to HTTPS.
//! - [`session`]: who is calling (session cookie or API token), client address.
//! - [`account`]: sign-in, sign-out, sign-up, one-time links, API tokens.
//! - [`admin`]: administrators' account management (list, disable, delete).
//! - [`meetings`]: a host's meetings: create, list, get, update, delete.
//! - [`backchannel`]: a provider's back-channel logout of a person.
//! - [`oidc`]: sign-in through an OpenID Connect provider (the redirect to it
//!   and its callback) and the list of providers for the sign-in page.
//! - [`native_login`]: a native client's session after its provider sign-in.
//! - [`openapi`]: the OpenAPI document of all of the above.
//! - [`signaling`]: the meeting WebSocket, one task per connection: it checks,
//!   parses and rate-limits what a client sends and hands it to the meeting's room.
//! - [`web`]: the embedded web client and the headers every response carries.

pub mod account;
pub mod admin;
pub mod backchannel;
pub mod calendar;
pub mod error;
pub mod evict;
pub mod meetings;
pub mod native_login;
pub mod oidc;
pub mod openapi;
pub mod redirect;
pub mod session;
pub mod signaling;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio_util::sync::CancellationToken;

use self::signaling::ConnLimits;
use crate::auth::Hasher;
use crate::config::Config;
use crate::guard::JoinGuard;
use crate::guest::GuestIds;
use crate::rooms::Rooms;
use crate::store::Store;

/// Largest HTTP request body the API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// `Strict-Transport-Security` when the server serves HTTPS itself: a year,
/// this host only (the operator's other subdomains may still be plain HTTP).
const HSTS: &str = "max-age=31536000";

/// Everything a request handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub hasher: Hasher,
    pub guard: Arc<JoinGuard>,
    pub guests: Arc<GuestIds>,
    pub rooms: Arc<Rooms>,
    pub conns: Arc<ConnLimits>,
    /// Where requests from browsers may come from (`Origin`).
    pub origins: Arc<web::Origins>,
    /// The configured OpenID Connect providers (none: the list is empty).
    pub oidc: Arc<crate::oidc::Providers>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Cluster mode (`[cluster]`): Redis for leases, limits and the node
    /// registry. `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Meeting sockets by account, for ending a disabled account's.
    pub account_sockets: Arc<evict::AccountSockets>,
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/signin", post(account::sign_in))
        .route("/auth/signout", post(account::sign_out))
        .route("/auth/signup", post(account::sign_up))
        .route("/auth/link", post(account::redeem_link))
        .route("/auth/providers", get(oidc::providers))
        .route("/auth/methods", get(oidc::methods))
        .route("/auth/native/token", post(native_login::token))
        .route("/me", get(account::me))
        .route("/me/password", post(account::change_password))
        .route(
            "/tokens",
            get(account::list_tokens).post(account::create_token),
        )
        .route("/tokens/{id}", delete(account::delete_token))
        .route("/admin/users", get(admin::list))
        .route("/admin/users/{id}", delete(admin::remove))
        .route("/admin/users/{id}/disable", post(admin::disable))
        .route("/admin/users/{id}/enable", post(admin::enable))
        .route("/meetings", get(meetings::list).post(meetings::create))
        .route(
            "/meetings/{id}",
            get(meetings::get)
                .patch(meetings::update)
                .delete(meetings::remove),
        )
        .route("/meetings/{id}/ws", get(signaling::upgrade))
        .route("/meetings/{id}/calendar.ics", get(calendar::ics))
        .route("/openapi.json", get(openapi::document))
        .fallback(error::not_found);
    let https = state.config.serves_https();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/internal/v1/cascade/{id}",
            get(crate::cluster::cascade::serve),
        )
        .nest("/api/v1", api)
        .route("/auth/oidc/{name}", get(oidc::start))
        .route("/auth/oidc/{name}/callback", get(oidc::callback))
        .route(
            "/auth/oidc/{name}/backchannel-logout",
            post(backchannel::logout),
        )
        .merge(web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::guard_and_headers,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let app = if https {
        app.layer(axum::middleware::map_response(hsts))
    } else {
        app
    };
    app.with_state(state)
}

/// How long `/readyz` waits for the store: a load balancer polls it every
/// few seconds and must hear "not ready" well before its own timeout.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness, for a load balancer choosing where to send new meetings and
/// joins: ready only while the store answers a trivial query in time.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Ready: the store answers (and, in cluster mode, Redis does)"), (status = 503, description = "Not ready: the store did not answer within 2 s, or in cluster mode Redis is unavailable or the node is draining")))]
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    if let Some(cluster) = &state.cluster
        && !cluster.is_available()
    {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "redis unavailable\n",
        );
    }
    if let Some(cluster) = &state.cluster
        && cluster.is_draining()
    {
        // A load balancer stops sending here; sockets still arriving are
        // relayed to the meetings' nodes.
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (axum::http::StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the store failed");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable\n",
            )
        }
        Err(_) => {
            tracing::warn!("not ready: the store did not answer in time");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable\n",
            )
        }
    }
}

/// Prometheus metrics, for the operator's monitoring only: counts of
/// meetings and people are nobody else's business, and a stranger polling
/// them could watch when an organisation meets. Loopback may read them
/// unless the request came through a proxy (which makes every visitor look
/// local); other readers must be listed in `metrics_allow`.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Metrics in Prometheus' text format"), (status = 403, description = "This address may not read the metrics"), (status = 404, description = "Metrics are switched off")))]
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    session::ClientIp(ip): session::ClientIp,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.config.metrics {
        return (axum::http::StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
    let allowed = state.config.metrics_allow.contains(&ip) || (ip.is_loopback() && !proxied);
    if !allowed {
        tracing::debug!(%ip, proxied, "refused a /metrics read");
        return (axum::http::StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.rooms.running()),
    )
        .into_response()
}

/// Adds `Strict-Transport-Security` to a response (every one, when TLS is on).
async fn hsts(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static(HSTS),
    );
    resp
}

/// Liveness: the process answers and the store is reachable.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Serving"), (status = 503, description = "The store is unavailable")))]
async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    match state.store.user_count().await {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n"),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable\n",
        ),
    }
}
