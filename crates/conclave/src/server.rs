//! Starting and stopping the server: open the store, make the first admin,
//! bind, serve, and on shutdown tell every meeting, drain connections and close
//! the store cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_proto::EndReason;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::acme::Acme;
use crate::auth::{HashError, Hasher, new_secret};
use crate::config::Config;
use crate::guard::JoinGuard;
use crate::guest::GuestIds;
use crate::http::signaling::ConnLimits;
use crate::http::web::Origins;
use crate::http::{AppState, router};
use crate::rooms::Rooms;
use crate::store::{Store, StoreError};
use crate::tls::passthrough::Passthrough;
use crate::tls::{Incoming, ServerCert, TlsError, TlsListener};
use crate::turn::IceServers;

/// How long shutdown waits for meetings to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a one-time sign-in link stays valid.
pub const SIGNIN_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error(transparent)]
    Media(#[from] crate::media::MediaStartError),
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcConfigError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("the server task failed")]
    Task,
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// Where the plain-HTTP redirect to HTTPS listens, when configured.
    pub redirect_addr: Option<SocketAddr>,
    hasher: Hasher,
    tls: Option<Arc<ServerCert>>,
    acme: Option<Arc<Acme>>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
    media: crate::media::MediaHandle,
    rooms: Arc<Rooms>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        // Unusable certificate files stop the start before anything else.
        let mut tls = match config.tls() {
            Some((cert, key)) => Some(ServerCert::load(cert, key)?),
            None => None,
        };
        let acme = config.acme().map(Acme::new);
        let store =
            Store::open_configured(config.database_url.as_deref(), &config.data_dir).await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr()?;
        let mut config = config;
        if let (None, Some(domain)) = (&config.public_url, config.domains.first()) {
            config.public_url = Some(match addr.port() {
                443 => format!("https://{domain}"),
                port => format!("https://{domain}:{port}"),
            });
        }
        if config.public_url.is_none() && config.serves_https() {
            // Served over HTTPS, the loopback origins are https://: pages
            // from http://localhost are not this server's.
            config.public_url = Some(format!("https://localhost:{}", addr.port()));
        }
        let origins = Origins::new(config.public_url.as_deref(), addr);
        tracing::info!(origins = %origins.describe(), "browsers may call from");
        if config.public_url.is_none() {
            // Links name the port actually bound (it differs when asked for port 0).
            config.public_url = Some(format!("http://localhost:{}", addr.port()));
        }
        let shutdown = CancellationToken::new();
        // A start that fails from here on stops what it already started
        // (the redirect listener, certificate renewals, media workers).
        let stop_on_error = shutdown.clone().drop_guard();
        let redirect_addr = match config.http_redirect_listen {
            Some(at) => Some(
                crate::http::redirect::start(
                    at,
                    config.public_url(),
                    acme.as_ref().map(|a| a.challenges()),
                    shutdown.clone(),
                )
                .await
                .map_err(|source| ServerError::Bind { addr: at, source })?,
            ),
            None => None,
        };
        if let Some(acme) = &acme {
            // The CA's HTTP-01 requests reach the redirect listener, up now.
            let cert = acme.certificate().await?;
            tokio::spawn(Arc::clone(acme).keep_renewed(Arc::clone(&cert), shutdown.clone()));
            tls = Some(cert);
        }
        // Once the server can serve it (bound, with its certificate), and
        // with the address it is reached at: the port actually bound, the
        // name with `domains`.
        if let Some(link) = bootstrap(&store, &config).await? {
            // Printed, not only logged: this is how the operator gets in.
            println!(
                "\n  Conclave has no password set yet. Sign in as admin (valid 24 h, once):\n  {link}\n"
            );
        }
        let incoming = match &tls {
            Some(cert) => Incoming::Tls(TlsListener::new(
                listener,
                cert.server_config()?,
                Passthrough::new(
                    &config.turn_tls_passthrough,
                    config.turn_passthrough_limits(),
                ),
                shutdown.clone(),
            )?),
            None => Incoming::Plain(listener),
        };
        let metrics = crate::telemetry::Metrics::new();
        let media = crate::media::start(
            config.media_listen,
            config.public_ip,
            config.media_workers,
            config.media_nice,
            config.audio_last_n,
            config.media_fast_path,
            config.media_playout_delay,
            config.media_congestion_hold_back,
            config.spread_meetings_from,
            metrics.media.clone(),
            shutdown.clone(),
        )?;
        // Kept for `Server::media_members`; the rooms hold the other handle.
        let media_handle = media.clone();
        let cluster = match &config.cluster {
            Some(c) => {
                if config.database_url.is_none() {
                    tracing::warn!(
                        "cluster mode on SQLite: each node has its own accounts and meetings; set database_url to a PostgreSQL shared by the nodes"
                    );
                }
                Some(crate::cluster::Cluster::connect(
                    c,
                    metrics.redis_errors.clone(),
                    shutdown.clone(),
                )?)
            }
            None => None,
        };
        let rooms = Rooms::new(
            store.clone(),
            media,
            config.limits.outbound_queue,
            IceServers::new(config.turn_servers.clone()),
            metrics.clone(),
            cluster.clone(),
        );
        if let Some(cluster) = &cluster
            && let Some(cascade) = crate::cluster::cascade::Cascade::start(
                cluster,
                config.cascade_meetings_from,
                metrics.cascade_refused.clone(),
                shutdown.clone(),
            )
        {
            if let Some(addr) = config.cluster.as_ref().and_then(|c| c.media_link_addr)
                && let Some(ends) = rooms.media().take_link_ends()
            {
                let links = crate::media::link::MediaLinks::start(
                    addr,
                    cluster.node_id().to_string(),
                    cluster.secret().unwrap_or_default(),
                    ends,
                    shutdown.clone(),
                )
                .await
                .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
                if let Some(mut events) = links.events() {
                    tokio::spawn(async move {
                        while let Some(e) = events.recv().await {
                            tracing::info!(event = ?e, "media link between nodes");
                        }
                    });
                }
                cascade.set_links(links);
            }
            rooms.media().set_cascade(cascade);
        }
        if let Some(cluster) = &cluster {
            let load = crate::cluster::registry::LoadSource {
                media_address: std::net::SocketAddr::new(
                    config.public_ip.unwrap_or(config.media_listen.ip()),
                    config.media_listen.port(),
                ),
                media_workers: config.media_workers,
                rooms: Arc::clone(&rooms),
                forwarded: Arc::clone(&metrics.media.forwarded_total),
            };
            tokio::spawn(Arc::clone(cluster).keep_registered(load, shutdown.clone()));
        }
        let state = AppState {
            account_sockets: Arc::default(),
            hasher: Hasher::new(config.limits.hash_concurrency)?,
            guard: Arc::new(JoinGuard::new(config.limits.checks_in_flight_per_address)),
            guests: Arc::new(GuestIds::load(&store, config.limits.new_guests_per_minute).await?),
            rooms,
            conns: ConnLimits::new(
                config.limits.max_connections,
                config.limits.max_pending_per_address,
            ),
            origins: Arc::new(origins),
            oidc: Arc::new(crate::oidc::Providers::new(
                &config.oidc,
                &config.public_url(),
                store
                    .server_key(
                        crate::oidc::Providers::KEY_NAME,
                        &crate::oidc::Providers::fresh_key(),
                    )
                    .await?,
            )?),
            config: Arc::new(config),
            store,
            metrics,
            cluster,
            shutdown: shutdown.clone(),
        };
        tokio::spawn(prune_guard(state.clone()));
        {
            // The providers' keys' origins, for the CSP (docs/security.md §15).
            let oidc = Arc::clone(&state.oidc);
            tokio::spawn(async move { oidc.discover_all().await });
        }
        tokio::spawn(prune_signin_audit(state.clone()));
        let hasher = state.hasher.clone();
        let (rooms, cluster) = (Arc::clone(&state.rooms), state.cluster.clone());
        let scheme = state.config.scheme();
        let task = tokio::spawn(serve(incoming, state));
        tracing::info!(%addr, scheme, "serving");
        stop_on_error.disarm();
        Ok(Server {
            addr,
            redirect_addr,
            hasher,
            tls,
            acme,
            shutdown,
            task,
            media: media_handle,
            rooms,
            cluster,
        })
    }

    /// Members placed on each media worker, over all meetings: shows where
    /// a spread meeting's members went (`crate::media::shard`).
    pub fn media_members(&self) -> Vec<usize> {
        self.media.members_per_worker()
    }

    /// The server's argon2 runner, for its count of checks run.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The certificate served over HTTPS, when TLS is on: its
    /// [`ServerCert::reload`] is what SIGHUP calls.
    pub fn tls_cert(&self) -> Option<&Arc<ServerCert>> {
        self.tls.as_ref()
    }

    /// The certificate manager, with `domains` (ACME): its status says
    /// what the last renewal did.
    pub fn acme(&self) -> Option<&Arc<Acme>> {
        self.acme.as_ref()
    }

    /// Cluster mode, the first step of a shutdown: marks this node draining
    /// in its record (placement then sends new meetings elsewhere, and
    /// sockets for them arriving here are relayed there), and moves the
    /// meetings running here: each stops here with its live state (lock,
    /// members, waiting list) in Redis and its lease given up, and its
    /// members' clients resume on another node at once, as after a crash
    /// but without waiting for the lease to run out. A meeting that cannot
    /// be moved (Redis away) ends with `server_shutdown`; both within
    /// `cluster.drain_ms`. The node still serves (relays) until
    /// [`Server::shutdown`]. Without a cluster, does nothing.
    pub async fn drain(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        tracing::info!("draining: no new meetings here; moving the running ones");
        cluster.drain().await;
        self.rooms.move_all(cluster.drain_time()).await;
        self.rooms
            .end_all(EndReason::ServerShutdown, cluster.drain_time())
            .await;
        cluster.wait_released().await;
    }

    /// Stops the server (draining first in cluster mode): meetings end with
    /// `server_shutdown`, sockets close, the store is checkpointed and closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.drain().await;
        self.shutdown.cancel();
        self.task.await.map_err(|_| ServerError::Task)?
    }
}

async fn serve(incoming: Incoming, state: AppState) -> Result<(), ServerError> {
    use axum::serve::ListenerExt;
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // `tap_io` only for its `ConnectInfo<SocketAddr>`, which axum gives a
    // tapped listener of any kind and, untapped, only a `TcpListener`.
    let incoming = incoming.tap_io(|_| {});
    let token = state.shutdown.clone();
    let rooms = Arc::clone(&state.rooms);
    let conns = Arc::clone(&state.conns);
    axum::serve(incoming, app)
        .with_graceful_shutdown(async move {
            token.cancelled().await;
            tracing::info!("shutting down: ending meetings");
            rooms
                .end_all(EndReason::ServerShutdown, SHUTDOWN_GRACE)
                .await;
            conns.wait_idle(SHUTDOWN_GRACE).await;
        })
        .await?;
    if let Some(cluster) = &state.cluster {
        // After the meetings ended: their leases are given up first.
        cluster.close().await;
    }
    state.store.close().await;
    tracing::info!("store closed; bye");
    Ok(())
}

/// How often sign-in audit entries past `limits.signin_audit_days` are deleted.
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes sign-in audit entries older than `limits.signin_audit_days`: at
/// start, then hourly. On a cluster every node does it; the deletes agree.
async fn prune_signin_audit(state: AppState) {
    let days = state.config.limits.signin_audit_days;
    if days == 0 {
        return;
    }
    let keep = i64::try_from(days.saturating_mul(24 * 3600)).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(AUDIT_PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let before = crate::store::unix_now().saturating_sub(keep);
                match state.store.prune_signin_events(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, days, "pruned the sign-in audit log"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the sign-in audit log"),
                }
            }
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn prune_guard(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                state.guard.prune();
                state.guests.prune(std::time::Instant::now());
            }
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// On an empty store, creates the `admin` account (no password). While no
/// account has a password, returns a fresh one-time sign-in link for it.
pub async fn bootstrap(store: &Store, config: &Config) -> Result<Option<String>, StoreError> {
    if store.user_count().await? == 0 {
        store.create_user("admin", None, true).await?;
        tracing::info!("created the admin account");
    }
    if store.any_password_set().await? {
        return Ok(None);
    }
    let users = store.list_users().await?;
    let Some(admin) = users.iter().find(|u| u.is_admin && !u.has_password) else {
        return Ok(None);
    };
    Ok(Some(signin_link(store, config, admin.id).await?))
}

/// A one-time sign-in link for a user; replaces any earlier one.
pub async fn signin_link(
    store: &Store,
    config: &Config,
    user_id: i64,
) -> Result<String, StoreError> {
    let secret = new_secret("");
    store
        .create_signin_link(user_id, &secret.digest, SIGNIN_LINK_TTL)
        .await?;
    Ok(format!(
        "{}/signin#token={}",
        config.public_url(),
        secret.text
    ))
}
