//! Server configuration: defaults, an optional TOML file, then command-line flags.
//!
//! Every limit that protects the server is named here with its default, so an
//! operator can find and tune it (docs/operations.md lists them).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tls::passthrough::{PassthroughConfigError, TurnPassthrough};
use crate::turn::{TurnConfigError, TurnServer};

/// Members from which a meeting spreads over the media workers. A meeting
/// of 40 keeps one core well below its plateau (no loss either way,
/// docs/benchmarks.md), so small meetings keep the cheaper single worker;
/// a lecture of 300 loses packets on one worker and none spread. 50 lies
/// between, with room for a meeting to grow before its worker saturates.
pub const DEFAULT_SPREAD_MEETINGS_FROM: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Turn(#[from] TurnConfigError),
    #[error(transparent)]
    Passthrough(#[from] PassthroughConfigError),
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcConfigError),
    #[error(transparent)]
    Organisation(#[from] crate::join_policy::OrganisationConfigError),
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory of the SQLite store (and of ACME state, whichever store).
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user:password@host/db`) to keep the store
    /// in instead of SQLite in `data_dir` (`crate::store`).
    pub database_url: Option<String>,
    /// Address of the first media worker; worker `i` listens on port
    /// `media_listen.port() + i`, UDP and ICE-TCP alike (port 0: an
    /// ephemeral port each).
    pub media_listen: SocketAddr,
    /// Media worker threads; 0 means one per core.
    pub media_workers: usize,
    /// The nice value each media worker thread asks for (Linux; -20 to 19,
    /// 0 leaves them at the process's). A packet that arrives while its
    /// worker waits for a CPU waits with it, and on a busy host that wait
    /// was nearly all of the p99 delay (`crate::media::priority`). Below 0
    /// needs `CAP_SYS_NICE` (or `RLIMIT_NICE`); without it the workers keep
    /// the process's priority and the server says so once at start.
    pub media_nice: i32,
    /// Each member receives the audio of at most this many others: the
    /// loudest, by the audio levels senders put beside the encrypted frames
    /// (last-N audio, `conclave_media`'s `lastn.rs`). 0: everyone's audio to
    /// everyone, which costs M × (M − 1) packets per 20 ms in a meeting of M
    /// where all microphones are open.
    pub audio_last_n: usize,
    /// Forwarded media is sealed and sent by the media worker itself,
    /// outside str0m's send queue (`conclave_media`'s `fastpath.rs`, issue
    /// 16), with its own congestion control from the members' TWCC
    /// feedback. On by default: it costs less CPU per forwarded packet
    /// (`docs/benchmarks.md`); `false` sends everything through str0m as
    /// before, should a client misbehave with it.
    pub media_fast_path: bool,
    /// With the fast path, a member whose video comes over a publisher's
    /// link that loses packets is asked to play it up to 100-400 ms later,
    /// long enough for repairs to arrive instead of freezing (the
    /// `playout-delay` RTP header extension, issue 21). On by default;
    /// `false` trades those freezes for the lower latency.
    pub media_playout_delay: bool,
    /// With the fast path, a member whose downlink is congested (a queue
    /// stands on the path and packets are lost) gets RED audio as plain
    /// Opus, then fewer videos, each paused one with a `video_paused`
    /// notice, until probes show the link carries them again (issue 21).
    /// A step taken for loss alone is undone within seconds when sending
    /// less does not lower the loss (random loss behind a delay step, as
    /// on a busy receiver, is not congestion: `video_pause.rs`); off, a
    /// capped member gets everything and loses half of it.
    pub media_congestion_hold_back: bool,
    /// A meeting with this many members spreads over the media workers:
    /// newcomers go to the least-loaded worker and the workers hand each
    /// other the meeting's media (issue 23, `crate::media::shard`), so a
    /// large lecture uses every core. 0: a meeting stays on one worker.
    /// The default, [`DEFAULT_SPREAD_MEETINGS_FROM`], leaves the everyday
    /// meeting on one worker and spreads only a large one.
    pub spread_meetings_from: usize,
    /// Cluster mode with `cluster.secret`: a meeting with this many members
    /// cascades over the nodes (issue 23, `crate::cluster::cascade`): its
    /// lease holder places each newcomer's media on the least-loaded live
    /// node, which runs a shard of the meeting driven over a control
    /// channel fenced by the meeting's lease. 0 (the default): a meeting's
    /// media stays on its lease holder.
    pub cascade_meetings_from: usize,
    /// The address announced to clients in ICE candidates, when it differs
    /// from `media_listen` (behind a 1:1 NAT, or when listening on 0.0.0.0).
    pub public_ip: Option<IpAddr>,
    /// The URL people reach the server at, for printed links. Defaults to
    /// `http://localhost:<port>` (`https://` with TLS). An `https` URL also
    /// marks cookies `Secure`.
    pub public_url: Option<String>,
    /// A PEM certificate chain (leaf first) to serve HTTPS with, reloaded on
    /// SIGHUP. With `tls_key`; neither set: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// With TLS: a plain-HTTP listener (typically `0.0.0.0:80`) that answers
    /// every request with a permanent redirect to the same path on
    /// `public_url`, so people who type the bare name reach the HTTPS site.
    /// With `domains` it also answers the ACME CA's HTTP-01 challenges.
    pub http_redirect_listen: Option<SocketAddr>,
    /// Names to serve HTTPS for with a certificate the server gets and
    /// renews itself from an ACME CA (`crate::acme`); the first is the
    /// site's name. Instead of `tls_cert`/`tls_key`.
    pub domains: Vec<String>,
    /// The ACME CA's directory URL (default: Let's Encrypt production).
    pub acme_directory: String,
    /// An e-mail address the CA may write to about expiring certificates.
    pub acme_contact: Option<String>,
    /// A PEM root certificate to trust for the CA's own HTTPS instead of the
    /// system's roots: a private CA (or the tests' pebble).
    pub acme_ca_root: Option<PathBuf>,
    /// Lets anyone create an account. Off: the operator creates accounts.
    pub allow_signup: bool,
    /// Sign-in with a username and password. Off (an organisation that signs
    /// everyone in through its `[[oidc]]` provider): the password endpoint
    /// and sign-up refuse, and the break-glass way in for an administrator is
    /// `conclave admin signin-link`, which needs access to the server's store.
    pub password_login: bool,
    /// Reverse proxies whose `X-Forwarded-For` header is believed. Empty: the
    /// header is ignored and the socket's peer address is the client's.
    pub trusted_proxies: Vec<IpAddr>,
    /// Serves Prometheus metrics at `/metrics` ([`crate::telemetry`]). They
    /// show how many meetings and people there are, never who or what.
    pub metrics: bool,
    /// Addresses besides loopback that may read `/metrics` (a Prometheus on
    /// another machine). Empty: loopback only, and never a request that came
    /// through a proxy, since a proxy on this machine would make every
    /// visitor look local.
    pub metrics_allow: Vec<IpAddr>,
    /// TURN servers handed to admitted members (`joined.ice_servers`), for
    /// networks that let no UDP out; see [`crate::turn`].
    pub turn_servers: Vec<TurnServer>,
    /// TURN server names whose TLS connections to the HTTPS listener are
    /// passed through untouched to the TURN server's own TLS listener, so
    /// `turns:NAME:443` and the site share one address
    /// ([`crate::tls::passthrough`]).
    pub turn_tls_passthrough: Vec<TurnPassthrough>,
    /// OpenID Connect providers people may sign in with (`[[oidc]]` tables,
    /// [`crate::oidc`]), besides local passwords.
    pub oidc: Vec<crate::oidc::ProviderConfig>,
    /// Who "this organisation" is, for meetings that admit only its people,
    /// and the join policy new meetings start with ([`crate::join_policy`]).
    pub organisation: crate::join_policy::OrganisationConfig,
    pub limits: Limits,
    /// `text` (default) or `json`: one JSON object per log line, with the
    /// node id in cluster mode ([`crate::logging`]).
    pub log_format: crate::logging::LogFormat,
    /// Cluster mode (`[cluster]`, [`crate::cluster`]): absent, the server is
    /// a single node with no Redis.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: this node's part in a cluster coordinated through Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS;
    /// every node names the same one.
    pub redis_url: String,
    /// With `rediss://`: the PEM file of the CA(s) that Redis's certificate
    /// must chain to, instead of the system's roots (a private CA, as Redis
    /// deployments usually have). The certificate must also name the URL's
    /// host.
    #[serde(default)]
    pub redis_ca_file: Option<PathBuf>,
    /// This node's name, unique in the cluster: letters, digits, `.`, `_`, `-`.
    pub node_id: String,
    /// Where the other nodes reach this one (`http://10.0.0.5:8080`).
    pub internal_url: String,
    /// A meeting lease's time-to-live: after a node dies, its meetings wait
    /// this long before another node may take them.
    #[serde(default = "ClusterConfig::default_lease_ms")]
    pub lease_ms: u64,
    /// The node registry record's time-to-live; refreshed every third of it.
    #[serde(default = "ClusterConfig::default_node_ttl_ms")]
    pub node_ttl_ms: u64,
    /// Shared by all nodes (at least 32 characters): a node relays a
    /// meeting's WebSocket to the node running it and vouches for the
    /// client's address with an HMAC under it. Without it, a join reaching
    /// a node that does not run the meeting is refused as unavailable.
    #[serde(default)]
    pub secret: Option<String>,
    /// On SIGTERM, how long the node (marked draining) waits for its
    /// meetings to end before it stops anyway.
    #[serde(default = "ClusterConfig::default_drain_ms")]
    pub drain_ms: u64,
    /// With `secret` and `cascade_meetings_from`: the UDP address of this
    /// node's media link to the other nodes (`crate::media::link`), which
    /// carries a cascaded meeting's media between its shards. An address
    /// the other nodes reach (not 0.0.0.0): it is told to them as it is.
    /// Absent: no media crosses between nodes.
    #[serde(default)]
    pub media_link_addr: Option<SocketAddr>,
}

impl ClusterConfig {
    fn default_lease_ms() -> u64 {
        10_000
    }

    fn default_drain_ms() -> u64 {
        10_000
    }

    fn default_node_ttl_ms() -> u64 {
        6_000
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let id_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 64
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(ConfigError::Invalid(
                "cluster.node_id must be 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
        let tls = self.redis_url.starts_with("rediss://");
        if !(tls || self.redis_url.starts_with("redis://")) {
            return Err(ConfigError::Invalid(
                "cluster.redis_url must be a redis:// or rediss:// (TLS) URL",
            ));
        }
        if self.redis_ca_file.is_some() && !tls {
            return Err(ConfigError::Invalid(
                "cluster.redis_ca_file needs a rediss:// redis_url (TLS)",
            ));
        }
        let internal = self.internal_url.to_ascii_lowercase();
        if !(internal.starts_with("http://") || internal.starts_with("https://")) {
            return Err(ConfigError::Invalid(
                "cluster.internal_url must be an http:// or https:// URL",
            ));
        }
        if self.secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid(
                "cluster.secret must be at least 32 characters",
            ));
        }
        if !(300..=600_000).contains(&self.lease_ms) || !(300..=600_000).contains(&self.node_ttl_ms)
        {
            return Err(ConfigError::Invalid(
                "cluster.lease_ms and cluster.node_ttl_ms must be 300 to 600000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Meeting WebSockets open at once, server-wide.
    pub max_connections: usize,
    /// WebSockets open at once from one address that have not joined yet.
    pub max_pending_per_address: usize,
    /// Seconds a new WebSocket has to send `join` or `resume`.
    pub join_timeout_secs: u64,
    /// Messages a connection may send in a burst, and per second after it.
    pub message_burst: u32,
    pub messages_per_sec: u32,
    /// Messages queued for a slow client before it is disconnected.
    pub outbound_queue: usize,
    /// Concurrent argon2 computations (sign-in, joins).
    pub hash_concurrency: usize,
    /// Passcode or password checks one client address may have running at
    /// once; beyond it, `too_many_attempts` / 429. Keeps a flood from one
    /// address from filling the argon2 queue in front of everyone else.
    /// People behind one NAT joining *different* meetings at the same second
    /// share it (the same passcode for the same meeting is one check).
    pub checks_in_flight_per_address: u32,
    /// Days a browser session lasts.
    pub session_days: u64,
    /// Days the sign-in audit log keeps an entry (`conclave admin
    /// signins`); older ones are deleted, hourly. 0 keeps them all. The log
    /// names people and their addresses: kept no longer than it is useful.
    pub signin_audit_days: u64,
    /// New guest identities the server mints for one network (IPv4 address,
    /// IPv6 /64) per minute; beyond it, for a minute, a connection from there
    /// without a valid guest cookie may join only signed in. Keeps cookie
    /// clearing from being free for a removed guest (see `crate::guest`).
    pub new_guests_per_minute: u32,
    /// Connections passed through to a TURN server (`turn_tls_passthrough`)
    /// open at once; beyond it new ones are closed.
    pub max_turn_passthrough: usize,
    /// Of those, how many one network (an IPv4 address, an IPv6 /64) may
    /// hold: a relayed member holds one or two, and an office behind one
    /// NAT address has many members.
    pub max_turn_passthrough_per_address: usize,
    /// Seconds a passed-through connection may carry no byte either way
    /// before it is closed. A relayed member's media never idles that long;
    /// TURN refreshes its allocation well within it.
    pub turn_passthrough_idle_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("conclave-data"),
            database_url: None,
            media_listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
            media_workers: 0,
            media_nice: crate::media::priority::DEFAULT_NICE,
            audio_last_n: conclave_media::DEFAULT_AUDIO_LAST_N,
            media_fast_path: true,
            media_playout_delay: true,
            media_congestion_hold_back: true,
            spread_meetings_from: DEFAULT_SPREAD_MEETINGS_FROM,
            cascade_meetings_from: 0,
            public_ip: None,
            public_url: None,
            tls_cert: None,
            tls_key: None,
            http_redirect_listen: None,
            domains: Vec::new(),
            acme_directory: crate::acme::LETS_ENCRYPT.to_string(),
            acme_contact: None,
            acme_ca_root: None,
            allow_signup: false,
            password_login: true,
            trusted_proxies: Vec::new(),
            metrics: true,
            metrics_allow: Vec::new(),
            turn_servers: Vec::new(),
            turn_tls_passthrough: Vec::new(),
            oidc: Vec::new(),
            organisation: crate::join_policy::OrganisationConfig::default(),
            limits: Limits::default(),
            log_format: Default::default(),
            cluster: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_pending_per_address: 20,
            join_timeout_secs: 10,
            message_burst: 40,
            messages_per_sec: 20,
            outbound_queue: 512,
            hash_concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            checks_in_flight_per_address:
                conclave_core::AttemptPolicy::CHECKS_IN_FLIGHT_PER_ADDRESS,
            session_days: 14,
            signin_audit_days: 90,
            new_guests_per_minute: 60,
            max_turn_passthrough: 4096,
            max_turn_passthrough_per_address: 256,
            turn_passthrough_idle_secs: 300,
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Refuses limits that would make the server unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks = [
            (
                l.max_connections >= 1,
                "limits.max_connections must be at least 1",
            ),
            (
                l.max_pending_per_address >= 1,
                "limits.max_pending_per_address must be at least 1",
            ),
            (
                l.join_timeout_secs >= 1,
                "limits.join_timeout_secs must be at least 1",
            ),
            (
                l.message_burst >= 1 && l.messages_per_sec >= 1,
                "message limits must be at least 1",
            ),
            (
                l.outbound_queue >= 16,
                "limits.outbound_queue must be at least 16",
            ),
            (
                l.hash_concurrency >= 1,
                "limits.hash_concurrency must be at least 1",
            ),
            (
                l.checks_in_flight_per_address >= 1,
                "limits.checks_in_flight_per_address must be at least 1",
            ),
            (
                l.session_days >= 1,
                "limits.session_days must be at least 1",
            ),
            (
                l.new_guests_per_minute >= 1,
                "limits.new_guests_per_minute must be at least 1",
            ),
            (
                l.max_turn_passthrough >= 1,
                "limits.max_turn_passthrough must be at least 1",
            ),
            (
                l.max_turn_passthrough_per_address >= 1,
                "limits.max_turn_passthrough_per_address must be at least 1",
            ),
            (
                l.turn_passthrough_idle_secs >= 1,
                "limits.turn_passthrough_idle_secs must be at least 1",
            ),
            (
                self.media_workers <= crate::media::MAX_WORKERS,
                "media_workers must be at most 256",
            ),
            (
                (-20..=19).contains(&self.media_nice),
                "media_nice must be between -20 and 19",
            ),
        ];
        if let Some(u) = &self.public_url {
            let ok = url::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                // Browsers' `Origin` is checked against it (crate::http::web::Origins).
                return Err(ConfigError::Invalid(
                    "public_url must be an http:// or https:// URL with a host",
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: set both or neither",
            ));
        }
        if !self.domains.is_empty() {
            self.validate_acme()?;
        }
        if self.http_redirect_listen.is_some() && !self.serves_https() {
            return Err(ConfigError::Invalid(
                "http_redirect_listen redirects to HTTPS: it needs tls_cert and tls_key, or domains",
            ));
        }
        let https = self
            .public_url
            .as_deref()
            .is_none_or(|u| u.to_ascii_lowercase().starts_with("https://"));
        if self.serves_https() && !https {
            // Browsers would send an `Origin` the check refuses.
            return Err(ConfigError::Invalid(
                "with tls_cert and tls_key, or domains, public_url must be an https:// URL",
            ));
        }
        for t in &self.turn_servers {
            t.validate()?;
        }
        crate::oidc::validate(&self.oidc)?;
        self.organisation.validate(&self.oidc)?;
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        crate::tls::passthrough::validate(
            &self.turn_tls_passthrough,
            self.serves_https(),
            self.listen,
            &self.site_names(),
        )?;
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError::Invalid(why)),
            None => Ok(()),
        }
    }

    /// The ACME settings' own checks (with `domains` set).
    fn validate_acme(&self) -> Result<(), ConfigError> {
        if self.tls().is_some() {
            return Err(ConfigError::Invalid(
                "domains (a certificate from an ACME CA) and tls_cert/tls_key (your own) are two ways to get a certificate: set one",
            ));
        }
        if self.http_redirect_listen.is_none() {
            return Err(ConfigError::Invalid(
                "domains need http_redirect_listen (port 80): the ACME CA checks each name over plain HTTP",
            ));
        }
        for d in &self.domains {
            // HTTP-01 proves one name at a time: no wildcards, no addresses.
            let ok = rustls_pki_types::DnsName::try_from(d.as_str()).is_ok()
                && d.contains('.')
                && !d.starts_with("*.")
                && d.parse::<IpAddr>().is_err();
            if !ok {
                return Err(ConfigError::Invalid(
                    "each of domains must be a DNS name like meet.example.org (no wildcard, no IP address)",
                ));
            }
        }
        let ok = url::Url::parse(&self.acme_directory).is_ok_and(|u| u.scheme() == "https");
        if !ok {
            return Err(ConfigError::Invalid(
                "acme_directory must be an https:// URL (an ACME CA's directory)",
            ));
        }
        if let Some(c) = &self.acme_contact
            && (!c.contains('@') || c.contains(char::is_whitespace) || c.starts_with("mailto:"))
        {
            return Err(ConfigError::Invalid(
                "acme_contact must be an e-mail address (without mailto:)",
            ));
        }
        Ok(())
    }

    /// What `serve --domain` implies when not said otherwise: a server for
    /// people on other machines. HTTPS on 0.0.0.0:443 when `listen` is left
    /// at its default, the HTTP-01 answers and the redirect on 0.0.0.0:80,
    /// and media on all interfaces when `media_listen` is on loopback.
    pub fn apply_domain_defaults(&mut self) {
        if self.domains.is_empty() {
            return;
        }
        if self.listen == Config::default().listen {
            self.listen = SocketAddr::from(([0, 0, 0, 0], 443));
        }
        if self.media_listen.ip().is_loopback() {
            self.media_listen.set_ip(IpAddr::from([0, 0, 0, 0]));
        }
        if self.http_redirect_listen.is_none() {
            self.http_redirect_listen = Some(SocketAddr::from(([0, 0, 0, 0], 80)));
        }
    }

    /// What [`crate::acme`] needs, when `domains` are set.
    pub fn acme(&self) -> Option<crate::acme::AcmeSettings> {
        if self.domains.is_empty() {
            return None;
        }
        Some(crate::acme::AcmeSettings {
            domains: self
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            directory: self.acme_directory.clone(),
            contact: self.acme_contact.clone(),
            ca_root: self.acme_ca_root.clone(),
            dir: self.data_dir.join("acme"),
        })
    }

    /// The names the meeting site is reached at: `domains` and the host of
    /// `public_url`.
    pub fn site_names(&self) -> Vec<String> {
        let mut names = self.domains.clone();
        let host = self.public_url.as_deref().and_then(|u| {
            let u = url::Url::parse(u).ok()?;
            Some(u.host_str()?.to_string())
        });
        names.extend(host);
        names
    }

    /// The bounds on passed-through TURN connections.
    pub fn turn_passthrough_limits(&self) -> crate::tls::passthrough::PassthroughLimits {
        crate::tls::passthrough::PassthroughLimits {
            max_connections: self.limits.max_turn_passthrough,
            max_per_network: self.limits.max_turn_passthrough_per_address,
            idle: Duration::from_secs(self.limits.turn_passthrough_idle_secs),
        }
    }

    /// Whether the server serves HTTPS itself (its own files or ACME).
    pub fn serves_https(&self) -> bool {
        self.tls().is_some() || !self.domains.is_empty()
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match self.domains.first() {
                Some(domain) if self.listen.port() == 443 => format!("https://{domain}"),
                Some(domain) => format!("https://{domain}:{}", self.listen.port()),
                None => format!("{}://localhost:{}", self.scheme(), self.listen.port()),
            },
        }
    }

    /// The certificate and key files, when the server serves HTTPS itself.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// `https` when the server serves TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.serves_https() { "https" } else { "http" }
    }

    pub fn secure_cookies(&self) -> bool {
        self.serves_https()
            || self
                .public_url()
                .to_ascii_lowercase()
                .starts_with("https://")
    }

    pub fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.join_timeout_secs)
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.limits.session_days * 24 * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_localhost_8080() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url(), "http://localhost:8080");
        assert!(!c.secure_cookies());
        assert!(!c.allow_signup);
        assert_eq!(c.audio_last_n, 3);
        let c: Config = toml::from_str("audio_last_n = 0\n").unwrap();
        assert_eq!(c.audio_last_n, 0, "0 turns last-N audio off");
    }

    #[test]
    fn file_overrides_and_rejects_unknown_keys() {
        let c: Config = toml::from_str(
            "public_url = \"https://meet.example.org/\"\ntrusted_proxies = [\"10.0.0.1\"]\n[limits]\njoin_timeout_secs = 3\n",
        )
        .unwrap();
        assert_eq!(c.public_url(), "https://meet.example.org");
        assert!(c.secure_cookies());
        assert_eq!(c.limits.join_timeout_secs, 3);
        assert_eq!(c.limits.message_burst, 40);
        assert!(toml::from_str::<Config>("listn = \"x\"").is_err());
    }

    #[test]
    fn a_public_url_must_name_an_http_origin() {
        for bad in [
            "meet.example.org",
            "ftp://meet.example.org",
            "https://",
            "not a url",
        ] {
            let c = Config {
                public_url: Some(bad.into()),
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let c = Config {
            public_url: Some("https://meet.example.org/".into()),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn turn_servers_come_from_the_file_and_are_checked() {
        let c: Config = toml::from_str(
            "[[turn_servers]]\nurls = [\"turns:turn.example.org:443?transport=tcp\"]\nsecret = \"s3cret\"\ncredential_ttl_secs = 7200\n",
        )
        .unwrap();
        assert_eq!(c.turn_servers.len(), 1);
        assert_eq!(c.turn_servers[0].credential_ttl_secs, 7200);
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("s3cret"));
        let c: Config =
            toml::from_str("[[turn_servers]]\nurls = [\"turn:turn.example.org\"]\n").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Turn(_))));
        assert!(toml::from_str::<Config>("[[turn_servers]]\nurl = \"turn:x\"\n").is_err());
    }

    #[test]
    fn turn_tls_passthrough_comes_from_the_file_and_needs_https() {
        let text = "public_url = \"https://meet.example.org\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[[turn_tls_passthrough]]\nserver_name = \"turn.example.org\"\nbackend = \"127.0.0.1:5349\"\n";
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.turn_tls_passthrough.len(), 1);
        assert_eq!(
            c.turn_tls_passthrough[0].backend.to_string(),
            "127.0.0.1:5349"
        );
        assert!(c.validate().is_ok());
        let plain = Config {
            tls_cert: None,
            tls_key: None,
            ..c.clone()
        };
        assert!(matches!(
            plain.validate(),
            Err(ConfigError::Passthrough(PassthroughConfigError::NoHttps))
        ));
        let mut site = c.clone();
        site.turn_tls_passthrough[0].server_name = "meet.example.org".into();
        assert!(matches!(
            site.validate(),
            Err(ConfigError::Passthrough(PassthroughConfigError::SiteName(
                _
            )))
        ));
        assert!(
            toml::from_str::<Config>("[[turn_tls_passthrough]]\nserver_name = \"t.example.org\"\n")
                .is_err()
        );
    }

    #[test]
    fn domains_need_port_80_no_tls_files_and_dns_names() {
        let acme = |domains: &[&str]| Config {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            http_redirect_listen: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            ..Config::default()
        };
        let ok = acme(&["meet.example.org"]);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.scheme(), "https");
        assert!(ok.secure_cookies());
        let s = ok.acme().expect("acme on");
        assert_eq!(s.directory, crate::acme::LETS_ENCRYPT);
        assert_eq!(s.dir, Path::new("conclave-data/acme"));
        for bad in [
            "*.example.org",
            "localhost",
            "10.0.0.1",
            "meet example.org",
            "",
        ] {
            assert!(acme(&[bad]).validate().is_err(), "{bad}");
        }
        let no_port_80 = Config {
            http_redirect_listen: None,
            ..acme(&["meet.example.org"])
        };
        assert!(no_port_80.validate().is_err());
        let both = Config {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..acme(&["meet.example.org"])
        };
        assert!(both.validate().is_err());
        let plain_ca = Config {
            acme_directory: "http://ca.example/dir".into(),
            ..acme(&["meet.example.org"])
        };
        assert!(plain_ca.validate().is_err());
        let mailto = Config {
            acme_contact: Some("mailto:ops@example.org".into()),
            ..acme(&["meet.example.org"])
        };
        assert!(mailto.validate().is_err());

        let mut c: Config = toml::from_str(
            "domains = [\"meet.example.org\"]\nacme_contact = \"ops@example.org\"\n",
        )
        .unwrap();
        assert_eq!(c.public_url(), "https://meet.example.org:8080");
        c.apply_domain_defaults();
        assert_eq!(c.public_url(), "https://meet.example.org");
        assert_eq!(c.listen.to_string(), "0.0.0.0:443");
        assert_eq!(
            c.http_redirect_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:80")
        );
        assert_eq!(c.media_listen.to_string(), "0.0.0.0:10000");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn tls_needs_both_files_and_an_https_public_url() {
        let tls = |cert: Option<&str>, key: Option<&str>, url: Option<&str>| Config {
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            public_url: url.map(String::from),
            ..Config::default()
        };
        assert!(tls(Some("c.pem"), None, None).validate().is_err());
        assert!(tls(None, Some("k.pem"), None).validate().is_err());
        let http_url = tls(
            Some("c.pem"),
            Some("k.pem"),
            Some("http://meet.example.org"),
        );
        assert!(http_url.validate().is_err());
        let on = tls(Some("c.pem"), Some("k.pem"), None);
        assert!(on.validate().is_ok());
        assert_eq!(on.public_url(), "https://localhost:8080");
        assert!(on.secure_cookies());
        let c: Config =
            toml::from_str("tls_cert = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n").unwrap();
        assert_eq!(
            c.tls(),
            Some((Path::new("/etc/c.pem"), Path::new("/etc/k.pem")))
        );
    }
}
