//! `conclave`: the server and its administration commands.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use conclave::auth::{hash_now, password_acceptable, username_acceptable};
use conclave::logging::{self, LogFormat};
use conclave::store::{Store, StoreError};
use conclave::tls::passthrough::TurnPassthrough;
use conclave::turn::{TurnSecret, TurnServer};
use conclave::{Config, Server};

#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "Self-hosted video meetings with end-to-end encryption"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s options, for running with no subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Join a meeting as a native client: wait to be admitted, send media
    /// from files, receive everyone's, and report what arrived. Prints the
    /// security code to compare whenever it changes. Stays until the meeting
    /// ends, --duration passes, or Ctrl-C (SIGINT or SIGTERM: it leaves at
    /// once, waiting or admitted, and exits with 0).
    Join(JoinArgs),
    /// Join a meeting as "Recorder" (shown to everyone as recording), decrypt
    /// what everyone sends and write each track to a file: VP8 video as IVF,
    /// Opus audio as Ogg. Stops at the meeting's end, after --duration or on
    /// Ctrl-C (SIGINT or SIGTERM), with the files finished either way.
    Record(RecordArgs),
    /// Sign in through one of the server's identity providers (OpenID
    /// Connect), for `conclave join --login`: prints an address to open in
    /// a browser, waits for the sign-in to come back to this machine
    /// (127.0.0.1, RFC 8252), and writes the session and a signing key the
    /// provider's token vouches for to --out, readable by you only.
    Login(LoginArgs),
    /// End the session `conclave login` wrote to FILE, at its server, and
    /// delete the file (with its signing key).
    Logout {
        /// The file `conclave login` wrote.
        #[arg(long, value_name = "FILE", default_value = "conclave-login.json")]
        login: PathBuf,
        /// Also trust the CA certificates in FILE (PEM) for the server's HTTPS.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct LoginArgs {
    /// The server's address, e.g. https://meet.example.org
    #[arg(long)]
    server: url::Url,
    /// The provider, as the server's "Sign in with NAME" button names it.
    #[arg(long)]
    provider: String,
    /// Where to write the session and the key.
    #[arg(long, default_value = "conclave-login.json")]
    out: PathBuf,
    /// Seconds to wait for the sign-in in the browser.
    #[arg(long, default_value_t = 300)]
    wait: u64,
    /// Also trust the CA certificates in FILE (PEM) for the server's HTTPS.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Args)]
struct RecordArgs {
    /// The invite link, e.g. http://localhost:8080/j/abcd-efgh-jkmn-pqrs#p=passcode
    invite: String,
    /// Directory for the files (created if missing). Checked before
    /// joining: a path that is a file or cannot be written stops the command
    /// before it contacts the meeting.
    #[arg(long, default_value = "recording")]
    out: PathBuf,
    /// Display name.
    #[arg(long, default_value = "Recorder")]
    name: String,
    /// Passcode, when the link carries none.
    #[arg(long)]
    passcode: Option<String>,
    /// A personal API token (to record your own meeting without waiting).
    #[arg(long, env = "CONCLAVE_TOKEN")]
    token: Option<String>,
    /// Seconds to record once admitted (default: until the meeting ends).
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds to wait in the waiting room.
    #[arg(long, default_value_t = 600)]
    patience: u64,
    /// Address to bind the media socket to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Trust only this identity provider for verified names, as `conclave
    /// join --trust-issuer` does. Repeat the flag for more.
    #[arg(long, value_name = "URL[=NAME]")]
    trust_issuer: Vec<conclave::oidc::PinnedIssuer>,
}

#[derive(Args)]
struct JoinArgs {
    /// The invite link, e.g. http://localhost:8080/j/abcd-efgh-jkmn-pqrs#p=passcode
    invite: String,
    /// Join signed in, with the session `conclave login` wrote to FILE
    /// (instead of --token), and with its signing key: other members then
    /// see the name as verified by the provider.
    #[arg(long, value_name = "FILE")]
    login: Option<PathBuf>,
    /// Display name.
    #[arg(long, default_value = "Native client")]
    name: String,
    /// Passcode, when the link carries none.
    #[arg(long)]
    passcode: Option<String>,
    /// A personal API token (to join your own meeting as host).
    #[arg(long, env = "CONCLAVE_TOKEN")]
    token: Option<String>,
    /// VP8 video to send, in an IVF file (looped).
    #[arg(long)]
    send_ivf: Option<PathBuf>,
    /// Opus audio to send, in an Ogg file (looped).
    #[arg(long)]
    send_ogg: Option<PathBuf>,
    /// Send timestamped synthetic load (benchmarks) instead of files.
    #[arg(long)]
    synthetic: bool,
    /// Seconds to stay once admitted (default: until the meeting ends or
    /// Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds to wait in the waiting room.
    #[arg(long, default_value_t = 600)]
    patience: u64,
    /// Address to bind the media socket to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Send one video as simulcast: IVF files of it at up to three sizes,
    /// smallest first, one per layer (rids "q", "h", "f"). Repeat the flag.
    #[arg(long, value_name = "FILE")]
    simulcast_ivf: Vec<PathBuf>,
    /// Send this RFC 6464 audio level (dB below full scale, 0-127; 0 is
    /// loudest) with every audio frame, for active speaker detection.
    #[arg(long, value_name = "DB", value_parser = clap::value_parser!(u8).range(0..=127))]
    audio_level: Option<u8>,
    /// Tell the server the size every received video is shown at, so it
    /// picks a simulcast layer: WIDTHxHEIGHT, or WIDTHxHEIGHT@SECONDS to
    /// start that long after admission. Repeat the flag for a schedule.
    #[arg(long, value_name = "WxH[@S]", value_parser = parse_view_size)]
    view_size: Vec<(std::time::Duration, u32, u32)>,
    /// Send an end-to-end encrypted chat message every SECONDS once in the
    /// group ("chat <participant id> <n>"); `--stats` lists what was sent
    /// and received.
    #[arg(long, value_name = "SECONDS", value_parser = parse_chat_every)]
    chat_every: Option<std::time::Duration>,
    /// Offer no UDP: media over ICE-TCP only, as from a network that drops
    /// UDP (checks the server's TCP path). Without it, the client falls
    /// back to TCP by itself when UDP does not connect.
    #[arg(long)]
    tcp_only: bool,
    /// Offer no candidate of its own: media only through the TURN relays
    /// the server names in `joined` (UDP first, then TCP, then TLS; checks
    /// the relay path). Without it, the client allocates on a relay by
    /// itself when neither UDP nor ICE-TCP connected.
    #[arg(long, conflicts_with = "tcp_only")]
    relay_only: bool,
    /// Also trust the CA certificates in FILE (PEM), besides the system's
    /// roots (SSL_CERT_FILE and SSL_CERT_DIR apply), for the server's HTTPS
    /// and for `turns:` relays.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Trust only this identity provider for verified names, shown as NAME
    /// (default: the server's name for it). Repeat the flag for more. Without
    /// it the trust list is the server's, and a modified server could add a
    /// provider of its own (docs/security.md §15, the trust list).
    #[arg(long, value_name = "URL[=NAME]")]
    trust_issuer: Vec<conclave::oidc::PinnedIssuer>,
    /// Also trust the providers listed in FILE, one URL[=NAME] a line
    /// (blank lines and lines starting with '#' are skipped): the same
    /// trust list kept for every meeting.
    #[arg(long, value_name = "FILE")]
    trust_file: Option<PathBuf>,
    /// Print statistics as JSON on standard output at the end (per
    /// received track: who, kind, packets, bytes, frames, loss, jitter,
    /// undecryptable frames; the security code and the encrypted group's
    /// roster; whether someone records), and a short summary on standard
    /// error.
    #[arg(long)]
    stats: bool,
    /// With --stats: also print them every SECONDS while admitted, each as
    /// one line of JSON (JSON lines; the final one too).
    #[arg(long, value_name = "SECONDS", value_parser = parse_chat_every, requires = "stats")]
    stats_interval: Option<std::time::Duration>,
    /// Read standard input, one line at a time: a line is an end-to-end
    /// encrypted chat message, or a command: /hand, /lower, /react EMOJI
    /// (or its name), /vote N, /help. Chat from others, hands, reactions
    /// and polls are shown on standard error, as the browser shows them.
    #[arg(long)]
    interactive: bool,
}

/// `--interactive`: each line typed, as a command, on `commands`. A thread of
/// its own, since a blocking read of the terminal would keep tokio's runtime
/// from shutting down; the process ends it on exit.
fn read_commands() -> tokio::sync::mpsc::UnboundedReceiver<conclave_client::session::Command> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match conclave_client::session::Command::parse(&line) {
                Ok(Some(cmd)) => {
                    if tx.send(cmd).is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(why) => eprintln!("{why}"),
            }
        }
    });
    rx
}

/// A line from other members, made safe for a terminal: control characters
/// (escape sequences that could rewrite the screen, a forged newline) shown
/// as U+FFFD.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `--chat-every`: 0.1 s to a day.
fn parse_chat_every(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err(format!("{s}: between 0.1 and 86400 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `640x360` or `640x360@5` for `--view-size`.
fn parse_view_size(s: &str) -> Result<(std::time::Duration, u32, u32), String> {
    let (size, at) = s.split_once('@').unwrap_or((s, "0"));
    let (w, h) = size
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s}: expected WIDTHxHEIGHT[@SECONDS]"))?;
    let num = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s}: {e}"));
    let secs: f64 = at.trim().parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s}: seconds out of range"));
    }
    Ok((std::time::Duration::from_secs_f64(secs), num(w)?, num(h)?))
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CONCLAVE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the SQLite store [default: ./conclave-data].
    #[arg(long, env = "CONCLAVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the store in PostgreSQL at this URL
    /// (postgres://user:password@host/db) instead of SQLite in --data-dir.
    #[arg(
        long,
        env = "CONCLAVE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// A TOML configuration file (see docs/operations.md).
    #[arg(long, env = "CONCLAVE_CONFIG")]
    config: Option<PathBuf>,
    /// The URL people reach this server at, for printed links.
    #[arg(long)]
    public_url: Option<String>,
    /// UDP port of the first media worker; the others use the next ports [default: 10000].
    #[arg(long, env = "CONCLAVE_MEDIA_PORT")]
    media_port: Option<u16>,
    /// Media worker threads, each with its own UDP port [default: one per core].
    #[arg(long, env = "CONCLAVE_MEDIA_WORKERS")]
    media_workers: Option<usize>,
    /// The address announced to clients for media (ICE candidates).
    #[arg(long, env = "CONCLAVE_PUBLIC_IP")]
    public_ip: Option<std::net::IpAddr>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs
    /// --tls-key. Both files are read again on SIGHUP.
    #[arg(long, env = "CONCLAVE_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CONCLAVE_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// With TLS: also answer plain HTTP here (e.g. 0.0.0.0:80) with a
    /// redirect to the HTTPS site.
    #[arg(long, env = "CONCLAVE_HTTP_REDIRECT", value_name = "ADDR")]
    http_redirect: Option<std::net::SocketAddr>,
    /// Serve HTTPS for this name with a certificate the server gets and
    /// renews itself from an ACME CA (Let's Encrypt unless
    /// --acme-directory), agreeing to the CA's terms. Repeat for more names.
    /// Implies --listen 0.0.0.0:443, --http-redirect 0.0.0.0:80 (where the
    /// CA checks the name) and --public-url https://NAME unless given.
    #[arg(
        long = "domain",
        env = "CONCLAVE_DOMAINS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    domains: Vec<String>,
    /// The ACME CA's directory URL [default: Let's Encrypt production].
    #[arg(long, env = "CONCLAVE_ACME_DIRECTORY", value_name = "URL")]
    acme_directory: Option<String>,
    /// An e-mail address the ACME CA may write to about the certificate.
    #[arg(long, env = "CONCLAVE_ACME_CONTACT", value_name = "EMAIL")]
    acme_contact: Option<String>,
    /// Trust this PEM root for the ACME CA's own HTTPS instead of the
    /// system's roots (a private CA).
    #[arg(long, env = "CONCLAVE_ACME_CA_ROOT", value_name = "FILE")]
    acme_ca_root: Option<PathBuf>,
    /// A TURN server's URLs (e.g. turns:turn.example.org:443?transport=tcp),
    /// handed to admitted members with credentials from --turn-secret. The
    /// config file's `turn_servers` can list several, or static credentials.
    #[arg(
        long = "turn-url",
        env = "CONCLAVE_TURN_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn's static-auth-secret). Give it
    /// in the environment: a command line is visible to every local user.
    #[arg(
        long,
        env = "CONCLAVE_TURN_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    turn_secret: Option<String>,
    /// Pass TLS connections whose server name (SNI) is NAME through to a
    /// TURN server's TLS listener at ADDR (e.g.
    /// turn.example.org=127.0.0.1:5349), so turns:NAME:443 shares the HTTPS
    /// port. Repeat for more names.
    #[arg(
        long = "turn-passthrough",
        env = "CONCLAVE_TURN_PASSTHROUGH",
        value_delimiter = ',',
        value_name = "NAME=ADDR",
        value_parser = TurnPassthrough::parse_flag
    )]
    turn_passthrough: Vec<TurnPassthrough>,
    /// Log lines as text, or one JSON object per line (with the node id in
    /// cluster mode) for a log collector [default: text].
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account; the password is read from standard input.
    CreateUser {
        name: String,
        /// Read the password from standard input (required: never from the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a one-time sign-in link for an account (valid 24 h).
    SigninLink {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        public_url: Option<String>,
    },
    /// List accounts: ID, name, role, state, and the provider (issuer and
    /// email) of accounts that sign in through OpenID Connect.
    #[command(alias = "users")]
    ListUsers {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an account: it can no longer sign in by any means, and its
    /// sessions end at once. Its meetings and tokens are kept.
    DisableUser {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled account again.
    EnableUser {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The sign-in audit log, newest first: time (UTC), method (password,
    /// link, oidc:NAME), outcome (ok or the failure's code), account, what
    /// else is known (provider issuer, subject and email; the error) and the
    /// client address, tab-separated.
    Signins {
        /// How many entries to show.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete an account with its meetings, sessions and tokens. A person
    /// from a provider who signs in again gets a new, empty account: disable
    /// them to keep them out.
    DeleteUser {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where an admin command finds the store: the server's `--data-dir`, or
/// its `--database-url` when it runs on PostgreSQL.
#[derive(Args)]
struct StoreArgs {
    /// Directory of the SQLite store.
    #[arg(long, env = "CONCLAVE_DATA_DIR", default_value = "conclave-data")]
    data_dir: PathBuf,
    /// The server's PostgreSQL store (postgres://user:password@host/db),
    /// instead of SQLite in --data-dir.
    #[arg(
        long,
        env = "CONCLAVE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
}

impl StoreArgs {
    async fn open(&self) -> Result<Store, StoreError> {
        Store::open_configured(self.database_url.as_deref(), &self.data_dir).await
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(u) = &args.database_url {
        config.database_url = Some(u.clone());
    }
    if let Some(u) = &args.public_url {
        config.public_url = Some(u.clone());
    }
    if let Some(p) = args.media_port {
        config.media_listen.set_port(p);
    }
    if let Some(ip) = args.public_ip {
        config.public_ip = Some(ip);
    }
    if let Some(n) = args.media_workers {
        config.media_workers = n;
    }
    if let Some(c) = &args.tls_cert {
        config.tls_cert = Some(c.clone());
    }
    if let Some(k) = &args.tls_key {
        config.tls_key = Some(k.clone());
    }
    if let Some(addr) = args.http_redirect {
        config.http_redirect_listen = Some(addr);
    }
    if !args.domains.is_empty() {
        config.domains = args.domains.clone();
    }
    if let Some(d) = &args.acme_directory {
        config.acme_directory = d.clone();
    }
    if let Some(c) = &args.acme_contact {
        config.acme_contact = Some(c.clone());
    }
    if let Some(r) = &args.acme_ca_root {
        config.acme_ca_root = Some(r.clone());
    }
    if !args.turn_passthrough.is_empty() {
        config.turn_tls_passthrough = args.turn_passthrough.clone();
    }
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    config.apply_domain_defaults();
    match (args.turn_urls.is_empty(), &args.turn_secret) {
        (true, None) => {}
        (false, Some(secret)) => config.turn_servers.push(TurnServer::with_secret(
            args.turn_urls.clone(),
            TurnSecret::new(secret.clone()),
        )),
        _ => bail!("--turn-url and --turn-secret (CONCLAVE_TURN_SECRET) go together"),
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args)?;
    // The log format is in the configuration, so logging starts once it is
    // read; an error before that is printed by `main` as usual.
    logging::init(
        config.log_format,
        config.cluster.as_ref().map(|c| c.node_id.as_str()),
    );
    public_ip_from_domain(&mut config).await;
    let data_dir = config.data_dir.clone();
    let scheme = config.scheme();
    // Listening for SIGHUP before the server answers: a SIGHUP with no
    // listener would end the process.
    #[cfg(unix)]
    let hangups = match config.tls() {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP (certificate reloads)")?,
        ),
        None => None,
    };
    let server = Server::start(config).await?;
    tracing::info!(data_dir = %data_dir.display(), "Conclave is up at {scheme}://{}", server.addr);
    #[cfg(unix)]
    if let (Some(hangups), Some(cert)) = (hangups, server.tls_cert()) {
        tokio::spawn(reload_on_sighup(hangups, std::sync::Arc::clone(cert)));
    }
    shutdown_signal().await;
    server.shutdown().await?;
    Ok(())
}

/// With `--domain` and no `--public-ip`, media candidates announce the IPv4
/// address the domain resolves to: the DNS record must point at this server
/// for the certificate anyway, and the listen address (0.0.0.0) is no one's
/// to reach. Not resolving is a warning, not a stop: the site still works,
/// and the operator is told what to set.
async fn public_ip_from_domain(config: &mut Config) {
    let Some(domain) = config.domains.first() else {
        return;
    };
    if config.public_ip.is_some() {
        return;
    }
    let lookup = tokio::net::lookup_host((domain.as_str(), 443));
    let resolved = tokio::time::timeout(std::time::Duration::from_secs(5), lookup)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer in 5 s")));
    match resolved {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.map(|a| a.ip()).collect();
            match addrs.iter().find(|ip| ip.is_ipv4()) {
                Some(ip) => {
                    tracing::info!(%domain, %ip, "media candidates announce the address the domain resolves to (--public-ip overrides)");
                    config.public_ip = Some(*ip);
                }
                None => {
                    tracing::warn!(%domain, ?addrs, "the domain has no IPv4 address: set --public-ip to the address people reach for media")
                }
            }
        }
        Err(e) => {
            tracing::warn!(%domain, error = %e, "cannot resolve the domain: set --public-ip to the address people reach for media")
        }
    }
}

/// Reads the certificate files again on every SIGHUP (after a renewal); a
/// failed reload is logged and the previous certificate stays.
#[cfg(unix)]
async fn reload_on_sighup(
    mut hangups: tokio::signal::unix::Signal,
    cert: std::sync::Arc<conclave::tls::ServerCert>,
) {
    while hangups.recv().await.is_some() {
        // `reload` logs its own outcome.
        let _ = cert.reload();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A stop for a native session, notified by the first SIGINT (Ctrl-C) or
/// SIGTERM: the session then leaves cleanly in whatever state it is. A
/// second signal quits at once, for a server that does not answer.
fn stop_on_signal() -> std::sync::Arc<tokio::sync::Notify> {
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let on_signal = std::sync::Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("leaving the meeting (again to quit at once)");
        on_signal.notify_one();
        shutdown_signal().await;
        std::process::exit(130);
    });
    stop
}

/// Refuses a `--out` that cannot take the recording, before anyone sees the
/// recorder arrive: a file where the directory should be, a directory that
/// cannot be made or written.
fn check_out_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        bail!("--out {shown}: exists and is not a directory");
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out {shown}: cannot create the directory"))?;
    // Writable: a file made and removed at once (permissions alone do not
    // tell, e.g. a read-only mount).
    let probe = tempfile_in(dir).with_context(|| format!("--out {shown}: cannot write there"))?;
    std::fs::remove_file(&probe)
        .with_context(|| format!("--out {shown}: cannot remove {}", probe.display()))?;
    Ok(())
}

/// Creates an empty file with a fresh name in `dir`, and says which.
fn tempfile_in(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    for n in 0..100u32 {
        let path = dir.join(format!(".conclave-write-check-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free file name"))
}

/// Prints what a person at a native client must know as it happens: the
/// security code (on entering the group and whenever it changes, in the
/// browser's groups of five digits), warnings about the encrypted group,
/// recordings starting and stopping; and, with `stats_lines`, periodic
/// statistics as JSON lines on standard output.
fn print_events(
    mut events: tokio::sync::mpsc::UnboundedReceiver<conclave_client::session::SessionEvent>,
    stats_lines: bool,
) -> tokio::task::JoinHandle<()> {
    use conclave_client::session::SessionEvent;
    tokio::spawn(async move {
        let mut shown_code = false;
        while let Some(event) = events.recv().await {
            match event {
                SessionEvent::SecurityCode {
                    epoch,
                    code,
                    roster,
                    not_announced,
                    not_in_group,
                    names,
                    rebuilt,
                    moved,
                } => {
                    if let Some(line) = conclave_client::session::code_change_line(
                        &code, shown_code, rebuilt, moved,
                    ) {
                        eprintln!("{line}");
                    }
                    shown_code = true;
                    let n = roster.len();
                    let people = if n == 1 { "person" } else { "people" };
                    eprintln!(
                        "Security code (epoch {epoch}, {n} {people} in the encrypted group): {code}"
                    );
                    let name = |id: &String| match names.get(id) {
                        Some(name) => format!("{name} (participant {id})"),
                        None => format!("participant {id}"),
                    };
                    for id in &not_announced {
                        eprintln!(
                            "WARNING: someone the server did not announce (member {id}) holds the meeting's keys. Do not share anything sensitive; check the security code."
                        );
                    }
                    for id in &not_in_group {
                        eprintln!(
                            "Note: {} is shown as here but is not in the encrypted group (yet): they cannot see or hear the call.",
                            name(id)
                        );
                    }
                }
                SessionEvent::Recording(true) => eprintln!("Recording started"),
                SessionEvent::Recording(false) => eprintln!("Recording stopped"),
                SessionEvent::Stats(report) => {
                    if stats_lines {
                        println!("{}", stats_json(&report));
                    }
                }
                SessionEvent::Chat { from, name, text } => eprintln!(
                    "Chat from {} (participant {}): {}",
                    printable(&name),
                    from.0,
                    printable(&text)
                ),
                SessionEvent::Notice(line) => eprintln!("{}", printable(&line)),
                SessionEvent::Names(lines) => {
                    for line in lines {
                        eprintln!("{}", printable(&line));
                    }
                }
            }
        }
    })
}

/// The providers whose verified names this client checks, each that could
/// not be reached told once: its members are then shown as not verified,
/// with the reason.
async fn fetch_providers(
    server: &url::Url,
    ca_file: Option<&std::path::Path>,
    pinned: &[conclave::oidc::PinnedIssuer],
) -> conclave::oidc::FetchedProviders {
    let mut fetched = conclave::oidc::trusted_providers(server, ca_file, pinned).await;
    if pinned.is_empty() {
        if !fetched.trusted.is_empty() || !fetched.unreachable.is_empty() {
            let list: Vec<String> = fetched
                .trusted
                .iter()
                .map(|p| (&p.name, &p.issuer))
                .chain(fetched.unreachable.iter().map(|p| (&p.name, &p.issuer)))
                .map(|(name, issuer)| format!("{name} ({issuer})"))
                .collect();
            eprintln!(
                "the trust list for verified names came from the server: {}; pin yours with --trust-issuer URL[=NAME]",
                list.join(", ")
            );
        }
    } else {
        for issuer in &fetched.pinned_not_listed {
            eprintln!(
                "the server does not name the provider {issuer} you trust: nobody can be verified by it here"
            );
        }
        for p in &fetched.not_pinned {
            eprintln!(
                "the server names a provider you did not trust: {} ({}); its members' names are the server's, not verified",
                p.name, p.issuer
            );
        }
    }
    // Members of a provider not pinned are told why they are not verified,
    // as for one that could not be reached.
    let not_pinned = std::mem::take(&mut fetched.not_pinned);
    for p in &fetched.unreachable {
        eprintln!(
            "could not fetch keys of {}: {}; its members' names are the server's, not verified",
            p.name, p.reason
        );
    }
    fetched.unreachable.extend(not_pinned);
    fetched
}

/// `--trust-file`: one `URL[=NAME]` a line; a line that does not parse stops
/// the command (a trust list silently shorter than meant would be worse).
fn read_trust_file(path: &std::path::Path) -> anyhow::Result<Vec<conclave::oidc::PinnedIssuer>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the trust list {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            l.parse()
                .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    use conclave_client::session::{JoinOptions, MediaOptions, SessionError, run_with};
    let invite: conclave_client::Invite = args.invite.parse().context("reading the invite link")?;
    check_out_dir(&args.out)?;
    let stop = stop_on_signal();
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = print_events(rx, false);
    // A recording keeps the best each camera sends: the recorder reports a
    // full-HD "view" so the server forwards it the top simulcast layer.
    let providers = fetch_providers(&invite.server, None, &args.trust_issuer).await;
    let media = MediaOptions {
        view_sizes: vec![(std::time::Duration::ZERO, 1920, 1080)],
        events: Some(events),
        // The recorder says whose word each name is too: without the
        // providers every verified member would look refused.
        trusted_providers: providers.trusted,
        unreachable_providers: providers.unreachable,
        ..MediaOptions::default()
    };
    let result = run_with(
        media,
        JoinOptions {
            invite,
            name: args.name,
            passcode: args.passcode,
            token: args.token,
            send_ivf: None,
            send_ogg: None,
            synthetic: false,
            // "Until the meeting ends": a year stands in for forever.
            duration: std::time::Duration::from_secs(args.duration.unwrap_or(365 * 86_400)),
            patience: std::time::Duration::from_secs(args.patience),
            bind: args.bind,
            record: Some(args.out.clone()),
            stop: Some(stop),
            outside_group: false,
            until: None,
        },
    )
    .await;
    let _ = printer.await;
    let report = match result {
        Ok(r) => r,
        Err(SessionError::Stopped) => {
            eprintln!("stopped before being admitted: nothing recorded");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = &report.ended_early {
        eprintln!("recording ended: {why}");
    }
    for t in &report.recorded {
        println!("{} ({} frames)", t.path.display(), t.frames);
    }
    if report.recorded.is_empty() {
        eprintln!("nothing was received; no files written");
    }
    Ok(())
}

/// `conclave login`: the address to open on standard output, the rest on
/// standard error.
async fn login(args: LoginArgs) -> anyhow::Result<()> {
    use conclave::native_login;
    let pending =
        native_login::start(&args.server, &args.provider, args.ca_file.as_deref()).await?;
    eprintln!(
        "Open this address in a browser to sign in with {}:",
        args.provider
    );
    println!("{}", pending.authorization_url);
    let done = pending
        .finish(std::time::Duration::from_secs(args.wait))
        .await?;
    done.save(&args.out)?;
    let verified = if done.leaf.is_some() {
        "; the provider's token vouches for its signing key"
    } else {
        ""
    };
    eprintln!(
        "signed in as {}; session written to {}{verified}",
        done.username,
        args.out.display()
    );
    Ok(())
}

async fn join(args: JoinArgs) -> anyhow::Result<()> {
    use conclave_client::session::{JoinOptions, MediaOptions, SessionError, run_interactive};
    let invite: conclave_client::Invite = args.invite.parse().context("reading the invite link")?;
    let signed_in = match &args.login {
        Some(path) => Some(conclave::native_login::LoginFile::load(path)?),
        None => None,
    };
    let token = match &signed_in {
        Some(file) => Some(file.token.clone()),
        None => args.token.clone(),
    };
    let stop = stop_on_signal();
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = print_events(rx, args.stats_interval.is_some());
    let mut pinned = args.trust_issuer.clone();
    if let Some(path) = &args.trust_file {
        pinned.extend(read_trust_file(path)?);
    }
    let providers = fetch_providers(&invite.server, args.ca_file.as_deref(), &pinned).await;
    let media = MediaOptions {
        simulcast_ivf: args.simulcast_ivf.clone(),
        audio_level: args.audio_level,
        view_sizes: args.view_size.clone(),
        chat_every: args.chat_every,
        no_udp: args.tcp_only,
        relay_only: args.relay_only,
        ca_file: args.ca_file.clone(),
        events: Some(events),
        stats_every: args.stats_interval,
        trusted_providers: providers.trusted,
        unreachable_providers: providers.unreachable,
        leaf_identity: signed_in.as_ref().and_then(|f| f.leaf_identity()),
        count_received_only: false,
    };
    let commands = args.interactive.then(read_commands);
    let result = run_interactive(
        media,
        JoinOptions {
            invite,
            name: args.name,
            passcode: args.passcode,
            token,
            send_ivf: args.send_ivf,
            send_ogg: args.send_ogg,
            synthetic: args.synthetic,
            // No --duration: until the meeting ends or a signal; a year
            // stands in for forever.
            duration: std::time::Duration::from_secs(args.duration.unwrap_or(365 * 86_400)),
            patience: std::time::Duration::from_secs(args.patience),
            bind: args.bind,
            record: None,
            stop: Some(stop),
            outside_group: false,
            until: None,
        },
        commands,
    )
    .await;
    let _ = printer.await;
    let report = match result {
        Ok(r) => r,
        Err(SessionError::Stopped) => {
            eprintln!("stopped before being admitted: left the waiting room");
            if args.stats {
                let out = serde_json::json!({"admitted": false, "stopped": true});
                println!("{out}");
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = &report.ended_early {
        eprintln!("left early: {why}");
    }
    if args.stats {
        let out = stats_json(&report);
        if args.stats_interval.is_some() {
            println!("{out}");
        } else {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        eprint!("{}", stats_summary(&report));
    }
    Ok(())
}

/// A received track's sender's name, as the server announced it.
fn sender_name(
    report: &conclave_client::session::SessionReport,
    who: Option<conclave_proto::ParticipantId>,
) -> Option<&str> {
    who.and_then(|id| report.people.get(&id))
        .map(|p| p.name.as_str())
}

/// `--stats`: what the session saw, as JSON.
fn stats_json(report: &conclave_client::session::SessionReport) -> serde_json::Value {
    let received: serde_json::Map<String, serde_json::Value> = report
        .media
        .received
        .iter()
        .map(|(mid, t)| {
            let secs = match (t.first_frame_at, t.last_frame_at) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => 0.0,
            };
            (
                mid.clone(),
                serde_json::json!({
                    "participant": t.participant.map(|p| p.0),
                    "name": sender_name(report, t.participant),
                    "kind": t.kind,
                    "packets": t.packets,
                    "frames": t.frames,
                    "bytes": t.bytes,
                    "loss": t.loss,
                    "jitter_ms": t.jitter_ms,
                    "incomplete_frames": t.incomplete_frames,
                    "undecryptable_frames": t.undecryptable_frames,
                    "latency_us": latency_summary(&t.latencies_us),
                    "expected_frames": t.synthetic_seq.map(|(lo, hi)| hi - lo + 1),
                    "kbit_per_s": if secs > 0.0 { t.bytes as f64 * 8.0 / secs / 1000.0 } else { 0.0 },
                    "keyframe_sizes": t.keyframe_sizes,
                    "keyframes_asked": t.keyframes_asked,
                }),
            )
        })
        .collect();
    let unix_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let e2ee = report.e2ee.as_ref().map(|e| {
        serde_json::json!({
            "epoch": e.epoch,
            "security_code": e.security_code,
            // Participant ids, as the MLS group itself says.
            "roster": e.roster,
            // In the group, never announced by the server: a warning.
            "not_announced": e.not_announced,
            // Announced, not (yet) in the group.
            "not_in_group": e.not_in_group,
            "chats_sent": e.sent_count,
            "chat_deferred": e.chat_deferred,
            "sent": e.sent.iter().map(|c| serde_json::json!({
                "text": c.text,
                "at_ms": unix_ms(c.at),
                "epoch": c.epoch,
                "roster": c.roster,
            })).collect::<Vec<_>>(),
            "received": e.chats.iter().map(|(from, text)| serde_json::json!({
                "from": from,
                "text": text,
            })).collect::<Vec<_>>(),
        })
    });
    let transport = [
        ("udp", report.media.udp_packets_out),
        ("tcp", report.media.tcp_packets_out),
    ]
    .into_iter()
    .chain(report.media.relay_packets_by.iter().map(|(t, n)| (*t, *n)))
    .filter(|(_, n)| *n > 0)
    .max_by_key(|(_, n)| *n)
    .map(|(t, _)| t);
    serde_json::json!({
        "admitted": true,
        "participant": report.admission.you.0,
        "admitted_at_ms": unix_ms(report.admitted_at),
        "ended_at_ms": unix_ms(report.ended_at),
        "ended_early": report.ended_early,
        "stopped": report.stopped,
        // Seats taken back after the socket dropped; `received` and the
        // other media counters are since the last one.
        "reconnects": report.reconnects,
        // Someone else records the meeting (at this point).
        "recording": report.recording,
        "e2ee": e2ee,
        "sent_frames": report.media.sent_frames,
        "received": received,
        "keyframe_requests": report.media.keyframe_requests,
        // Which transport ICE used: UDP, the ICE-TCP fallback or a
        // TURN relay ("turn/udp", "turn/tcp", "turn/tls": how the
        // client reaches it). Checks on paths not taken count too, so
        // `transport` names the one that carried the most.
        "packets_out": {
            "udp": report.media.udp_packets_out,
            "tcp": report.media.tcp_packets_out,
            "relay": report.media.relay_packets_out,
        },
        "relay_packets_out": report.media.relay_packets_by,
        "transport": transport,
        "active_speakers": report.active_speakers.iter().map(|p| p.0).collect::<Vec<_>>(),
    })
}

/// `--stats`'s few lines for a person, on standard error.
fn stats_summary(report: &conclave_client::session::SessionReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let secs = report
        .ended_at
        .duration_since(report.admitted_at)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(
        out,
        "in the meeting as participant {} for {secs:.1} s{}",
        report.admission.you.0,
        if report.recording {
            ", recorded by someone"
        } else {
            ""
        }
    );
    if let Some(e) = &report.e2ee {
        let _ = writeln!(
            out,
            "security code (epoch {}, {} in the group): {}",
            e.epoch,
            e.roster.len(),
            e.security_code
        );
        if !e.not_announced.is_empty() {
            let _ = writeln!(
                out,
                "WARNING: in the group, never announced: {:?}",
                e.not_announced
            );
        }
    }
    for t in report.media.received.values() {
        let who = match (sender_name(report, t.participant), t.participant) {
            (Some(name), _) => name.to_string(),
            (None, Some(id)) => format!("participant {}", id.0),
            (None, None) => "unknown".into(),
        };
        let kind = t
            .kind
            .map_or_else(|| "track".to_string(), |k| format!("{k:?}").to_lowercase());
        let loss = t
            .loss
            .map_or_else(|| "-".into(), |l| format!("{:.1}%", l * 100.0));
        let jitter = t
            .jitter_ms
            .map_or_else(|| "-".into(), |j| format!("{j:.1} ms"));
        let _ = writeln!(
            out,
            "{who} {kind}: {} packets, {} frames, {} bytes, loss {loss}, jitter {jitter}, {} undecryptable",
            t.packets, t.frames, t.bytes, t.undecryptable_frames
        );
    }
    out
}

/// p50/p99/max of latency samples, for `--stats`.
fn latency_summary(samples: &[u32]) -> serde_json::Value {
    if samples.is_empty() {
        return serde_json::Value::Null;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({"count": v.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

/// The account called `name`, or an error saying there is none.
async fn named_user(store: &Store, name: &str) -> anyhow::Result<conclave::store::User> {
    match store.user_by_name(name).await? {
        Some((user, _)) => Ok(user),
        None => bail!("no user named {name}"),
    }
}

async fn admin(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateUser {
            name,
            password_stdin: _,
            admin,
            store,
        } => {
            if !username_acceptable(&name) {
                bail!("a username has 1 to 64 letters, digits, '.', '_' or '-'");
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if !password_acceptable(password) {
                bail!("a password has 10 to 256 characters");
            }
            let hash = hash_now(password)?;
            let store = store.open().await?;
            match store.create_user(&name, Some(&hash), admin).await {
                Ok(u) => println!("created user {} (id {})", u.username, u.id),
                Err(StoreError::Conflict) => bail!("a user named {name} exists already"),
                Err(e) => return Err(e.into()),
            }
            store.close().await;
        }
        AdminCommand::SigninLink {
            name,
            store,
            public_url,
        } => {
            let store = store.open().await?;
            let Some((user, _)) = store.user_by_name(&name).await? else {
                bail!("no user named {name}");
            };
            let config = Config {
                public_url,
                ..Config::default()
            };
            let link = conclave::server::signin_link(&store, &config, user.id).await?;
            println!("{link}");
            store.close().await;
        }
        AdminCommand::ListUsers { store } => {
            let store = store.open().await?;
            for u in store.list_users().await? {
                let mut line = format!(
                    "{}\t{}\t{}\t{}",
                    u.id,
                    u.username,
                    if u.is_admin { "admin" } else { "host" },
                    if u.disabled { "disabled" } else { "enabled" },
                );
                match store.oidc_identity(u.id).await? {
                    Some(i) => {
                        line.push_str(&format!("\toidc {}", i.issuer));
                        if let Some(email) = i.email {
                            line.push_str(&format!(" {email}"));
                        }
                    }
                    None if u.has_password => line.push_str("\tpassword"),
                    None => line.push_str("\t(no password yet)"),
                }
                println!("{line}");
            }
            store.close().await;
        }
        AdminCommand::DisableUser { name, store } => {
            let store = store.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_user_disabled(user.id, true).await?;
            println!(
                "disabled user {} (id {}); its sessions have ended",
                user.username, user.id
            );
            store.close().await;
        }
        AdminCommand::EnableUser { name, store } => {
            let store = store.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_user_disabled(user.id, false).await?;
            println!("enabled user {} (id {})", user.username, user.id);
            store.close().await;
        }
        AdminCommand::Signins { limit, store } => {
            let store = store.open().await?;
            for e in store.signin_events(i64::from(limit)).await? {
                let at = cookie::time::OffsetDateTime::from_unix_timestamp(e.at)
                    .map(|t| {
                        format!(
                            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                            t.year(),
                            u8::from(t.month()),
                            t.day(),
                            t.hour(),
                            t.minute(),
                            t.second()
                        )
                    })
                    .unwrap_or_else(|_| e.at.to_string());
                let user = match (e.user_id, e.username) {
                    (Some(id), Some(name)) => format!("{name} (id {id})"),
                    (None, Some(name)) => format!("{name} (no such account)"),
                    (Some(id), None) => format!("id {id}"),
                    (None, None) => "-".to_string(),
                };
                println!(
                    "{at}\t{}\t{}\t{user}\t{}\t{}",
                    e.method,
                    e.outcome,
                    e.detail.as_deref().unwrap_or("-"),
                    e.address.as_deref().unwrap_or("-"),
                );
            }
            store.close().await;
        }
        AdminCommand::DeleteUser { name, store } => {
            let store = store.open().await?;
            let user = named_user(&store, &name).await?;
            store.delete_user(user.id).await?;
            println!(
                "deleted user {} (id {}) and its meetings",
                user.username, user.id
            );
            store.close().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` starts logging itself, in the configured format.
    let text = || logging::init(LogFormat::Text, None);
    match cli.command {
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Admin(cmd)) => {
            text();
            admin(cmd).await
        }
        Some(Command::Join(args)) => {
            text();
            join(args).await
        }
        Some(Command::Record(args)) => {
            text();
            record(args).await
        }
        Some(Command::Login(args)) => {
            text();
            login(args).await
        }
        Some(Command::Logout { login, ca_file }) => {
            text();
            let file = conclave::native_login::LoginFile::load(&login)?;
            conclave::native_login::logout(&file, ca_file.as_deref()).await?;
            std::fs::remove_file(&login)
                .with_context(|| format!("removing {}", login.display()))?;
            eprintln!("signed out; {} deleted", login.display());
            Ok(())
        }
        None => serve(cli.serve).await,
    }
}
