//! TURN/TLS beside HTTPS on one address and port (`turn_tls_passthrough`).
//!
//! An operator with one IP address wants `turns:turn.example.org:443` and
//! `https://meet.example.org` both on 443, because 443 is what restrictive
//! networks let out. The HTTPS listener looks at each new connection's TLS
//! ClientHello *without consuming it* (`TcpStream::peek`) and, when its
//! server name (SNI) is a configured TURN name, hands the untouched TCP
//! connection to the TURN server's own TLS listener (coturn's
//! `tls-listening-port`) and copies bytes both ways. Conclave never holds
//! the relay's key nor sees inside its TLS: coturn terminates it with its
//! own certificate, as if the client had connected to it directly.
//!
//! The ClientHello is read by rustls's own [`Acceptor`], not by a parser of
//! ours: it is the same code that would parse it for Conclave's HTTPS, so
//! both routes agree on what a valid ClientHello is.
//!
//! Every passthrough connection holds one of `limits.max_turn_passthrough`
//! places, and one of its network's `limits.max_turn_passthrough_per_address`
//! (an IPv4 address or an IPv6 /64, as for guest identities) so that one
//! client cannot take them all, and is closed after
//! `limits.turn_passthrough_idle_secs` without a byte in either direction; a backend that cannot be reached closes the
//! client's connection, logged at most once per [`LOG_EVERY`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::server::Acceptor;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The most of a ClientHello looked at before giving up: one full TLS
/// record (16 KiB and its header). Real ClientHellos, post-quantum key
/// shares included, are under 2 KiB; a client that sends more without
/// finishing one is not a TLS client this server wants.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024 + 5;
/// How long reaching the TURN server's TLS listener may take. It is on the
/// same machine or network: longer means it is down.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one log line per this long for each kind of refused
/// passthrough (backend down, limit reached): a client retrying in a loop
/// must not fill the disk.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Peeks that found no new bytes wait this long at first, doubling up to
/// [`PEEK_WAIT_MAX`]: data already waiting keeps a socket readable, so
/// waiting for readiness would spin.
const PEEK_WAIT_MIN: Duration = Duration::from_millis(1);
const PEEK_WAIT_MAX: Duration = Duration::from_millis(50);

/// One TURN server name routed to a TURN/TLS backend.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnPassthrough {
    /// The name in the client's `turns:` URL (its SNI), e.g. `turn.example.org`.
    pub server_name: String,
    /// The TURN server's TLS listener, e.g. coturn on `127.0.0.1:5349`.
    pub backend: SocketAddr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PassthroughConfigError {
    #[error(
        "turn_tls_passthrough: {0:?} is not a DNS name like turn.example.org (no wildcard, no IP address)"
    )]
    BadName(String),
    #[error("turn_tls_passthrough: {0:?} is listed twice")]
    Duplicate(String),
    #[error(
        "turn_tls_passthrough: {0:?} is also one of the site's names (domains or public_url): HTTPS for it would go to the TURN server, and the TURN server must have a certificate of its own, not the site's"
    )]
    SiteName(String),
    #[error(
        "turn_tls_passthrough: the backend of {name:?}, {backend}, must be a TURN server's TLS listener with an address and a port (not 0.0.0.0, not port 0, not this server's own listen address)"
    )]
    BadBackend { name: String, backend: SocketAddr },
    #[error(
        "turn_tls_passthrough shares the HTTPS listener: it needs tls_cert and tls_key, or domains"
    )]
    NoHttps,
}

impl TurnPassthrough {
    /// Parses `NAME=ADDR` (the `--turn-passthrough` flag).
    pub fn parse_flag(s: &str) -> Result<TurnPassthrough, String> {
        let (name, backend) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: expected NAME=ADDRESS:PORT, e.g. turn.example.org=127.0.0.1:5349")
        })?;
        let backend = backend
            .parse()
            .map_err(|_| format!("{backend:?}: expected ADDRESS:PORT, e.g. 127.0.0.1:5349"))?;
        Ok(TurnPassthrough {
            server_name: name.to_string(),
            backend,
        })
    }
}

/// Checks the routes against each other and against the site: `listen` is
/// the HTTPS listener's address, `site_names` the names the meeting site is
/// reached at (which must stay Conclave's).
pub fn validate(
    routes: &[TurnPassthrough],
    serves_https: bool,
    listen: SocketAddr,
    site_names: &[String],
) -> Result<(), PassthroughConfigError> {
    if routes.is_empty() {
        return Ok(());
    }
    if !serves_https {
        return Err(PassthroughConfigError::NoHttps);
    }
    let mut seen = Vec::new();
    for r in routes {
        let name = r.server_name.to_ascii_lowercase();
        let ok = rustls_pki_types::DnsName::try_from(name.as_str()).is_ok()
            && name.contains('.')
            && !name.contains('*')
            && name.parse::<std::net::IpAddr>().is_err();
        if !ok {
            return Err(PassthroughConfigError::BadName(r.server_name.clone()));
        }
        if seen.contains(&name) {
            return Err(PassthroughConfigError::Duplicate(r.server_name.clone()));
        }
        if site_names.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            return Err(PassthroughConfigError::SiteName(r.server_name.clone()));
        }
        let b = r.backend;
        let loops = b == listen || (b.port() == listen.port() && listen.ip().is_unspecified());
        if b.ip().is_unspecified() || b.port() == 0 || loops {
            return Err(PassthroughConfigError::BadBackend {
                name: r.server_name.clone(),
                backend: b,
            });
        }
        seen.push(name);
    }
    Ok(())
}

/// What a peeked ClientHello said, or why the connection is not one to
/// serve at all.
#[derive(Debug)]
pub(crate) enum Peeked {
    /// A ClientHello whose server name is routed to this backend.
    Passthrough(SocketAddr),
    /// A ClientHello for Conclave itself (another name, or none).
    Own,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PeekError {
    #[error("not a TLS ClientHello: {0}")]
    NotTls(rustls::Error),
    #[error("no complete ClientHello in the first {MAX_CLIENT_HELLO} bytes")]
    TooLong,
    #[error("closed before a ClientHello")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The bounds on passed-through connections (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct PassthroughLimits {
    pub max_connections: usize,
    pub max_per_network: usize,
    pub idle: Duration,
}

/// The routes and the bounds on the connections they carry.
pub struct Passthrough {
    routes: HashMap<String, SocketAddr>,
    places: Arc<Semaphore>,
    per_network: Mutex<HashMap<IpAddr, usize>>,
    max_per_network: usize,
    idle: Duration,
    backend_down: Throttled,
    full: Throttled,
    network_full: Throttled,
}

impl Passthrough {
    /// `None` when no names are routed: the listener then never peeks.
    pub fn new(routes: &[TurnPassthrough], limits: PassthroughLimits) -> Option<Arc<Passthrough>> {
        if routes.is_empty() {
            return None;
        }
        Some(Arc::new(Passthrough {
            routes: routes
                .iter()
                .map(|r| (r.server_name.to_ascii_lowercase(), r.backend))
                .collect(),
            places: Arc::new(Semaphore::new(limits.max_connections)),
            per_network: Mutex::new(HashMap::new()),
            max_per_network: limits.max_per_network,
            idle: limits.idle,
            backend_down: Throttled::default(),
            full: Throttled::default(),
            network_full: Throttled::default(),
        }))
    }

    /// Reads the ClientHello waiting on `stream` without taking it off the
    /// socket, so that either route still gets the whole connection. The
    /// caller bounds the time (the handshake timeout).
    pub(crate) async fn peek(&self, stream: &TcpStream) -> Result<Peeked, PeekError> {
        let mut buf = vec![0u8; MAX_CLIENT_HELLO];
        let mut acceptor = Acceptor::default();
        let mut fed = 0;
        let mut wait = PEEK_WAIT_MIN;
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(PeekError::Closed);
            }
            if n <= fed {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(PEEK_WAIT_MAX);
                continue;
            }
            wait = PEEK_WAIT_MIN;
            let mut new = &buf[fed..n];
            while !new.is_empty() {
                if acceptor.read_tls(&mut new)? == 0 {
                    break;
                }
            }
            fed = n;
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let name = accepted
                        .client_hello()
                        .server_name()
                        .map(str::to_ascii_lowercase);
                    return Ok(match name.and_then(|n| self.routes.get(&n).copied()) {
                        Some(backend) => Peeked::Passthrough(backend),
                        None => Peeked::Own,
                    });
                }
                Ok(None) if fed >= buf.len() => return Err(PeekError::TooLong),
                Ok(None) => {}
                Err((e, _alert)) => return Err(PeekError::NotTls(e)),
            }
        }
    }

    /// Connects `client` to `backend` and copies both ways until either
    /// side closes, the connection idles out, or the server stops.
    pub(crate) async fn relay(
        &self,
        client: TcpStream,
        peer: SocketAddr,
        backend: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let Ok(_place) = Arc::clone(&self.places).try_acquire_owned() else {
            if let Some(suppressed) = self.full.allow() {
                tracing::warn!(%peer, suppressed, "TURN/TLS passthrough: limits.max_turn_passthrough connections open; connection closed");
            }
            return;
        };
        let Some(_network_place) = self.take_network_place(peer.ip()) else {
            if let Some(suppressed) = self.network_full.allow() {
                tracing::warn!(%peer, suppressed, "TURN/TLS passthrough: limits.max_turn_passthrough_per_address connections open from this network; connection closed");
            }
            return;
        };
        let connect = tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, TcpStream::connect(backend));
        let upstream = match connect.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if let Some(suppressed) = self.backend_down.allow() {
                    tracing::warn!(%backend, error = %e, suppressed, "TURN/TLS passthrough: backend unreachable; client connection closed");
                }
                return;
            }
            Err(_) => {
                if let Some(suppressed) = self.backend_down.allow() {
                    tracing::warn!(%backend, suppressed, "TURN/TLS passthrough: backend did not accept in time; client connection closed");
                }
                return;
            }
        };
        tracing::debug!(%peer, %backend, "TURN/TLS passthrough opened");
        // Small TURN messages (ChannelData of audio) should not wait for
        // Nagle; failing to set it costs latency, not correctness.
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let mut a = Watched::new(client, Arc::clone(&last), start);
        let mut b = Watched::new(upstream, Arc::clone(&last), start);
        let idle = self.idle;
        let idled_out = async {
            loop {
                let since = start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if since >= idle {
                    return;
                }
                tokio::time::sleep(idle - since).await;
            }
        };
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut a, &mut b) => match r {
                Ok((up, down)) => tracing::debug!(%peer, %backend, up, down, "TURN/TLS passthrough closed"),
                Err(e) => tracing::debug!(%peer, %backend, error = %e, "TURN/TLS passthrough ended"),
            },
            () = idled_out => tracing::debug!(%peer, %backend, "TURN/TLS passthrough idle; closed"),
            () = shutdown.cancelled() => {}
        }
    }
}

impl Passthrough {
    fn take_network_place(&self, ip: IpAddr) -> Option<NetworkPlace<'_>> {
        let network = crate::guest::network(ip);
        let mut open = self
            .per_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(network).or_insert(0);
        if *n >= self.max_per_network {
            return None;
        }
        *n += 1;
        Some(NetworkPlace {
            owner: self,
            network,
        })
    }
}

/// One of a network's passthrough places, given back when dropped.
struct NetworkPlace<'a> {
    owner: &'a Passthrough,
    network: IpAddr,
}

impl Drop for NetworkPlace<'_> {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .per_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.network) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.network);
            }
        }
    }
}

/// A stream that notes when it last received a byte, for the idle timeout.
struct Watched {
    inner: TcpStream,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl Watched {
    fn new(inner: TcpStream, last: Arc<AtomicU64>, start: Instant) -> Watched {
        Watched { inner, last, start }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Lets one log line through per [`LOG_EVERY`] and counts the rest.
#[derive(Default)]
struct Throttled {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttled {
    /// `Some(lines suppressed since the last one)` when this one may be logged.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(t) if t.elapsed() < LOG_EVERY => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(Instant::now());
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, backend: &str) -> TurnPassthrough {
        TurnPassthrough {
            server_name: name.into(),
            backend: backend.parse().expect("address"),
        }
    }

    #[test]
    fn routes_are_checked() {
        let listen: SocketAddr = "0.0.0.0:443".parse().expect("address");
        let site = ["meet.example.org".to_string()];
        let ok = [route("turn.example.org", "127.0.0.1:5349")];
        assert_eq!(validate(&ok, true, listen, &site), Ok(()));
        assert_eq!(
            validate(&ok, false, listen, &site),
            Err(PassthroughConfigError::NoHttps)
        );
        for bad in ["*.example.org", "10.0.0.1", "turn", "turn example.org", ""] {
            assert!(
                matches!(
                    validate(&[route(bad, "127.0.0.1:5349")], true, listen, &site),
                    Err(PassthroughConfigError::BadName(_))
                ),
                "{bad}"
            );
        }
        let twice = [
            route("turn.example.org", "127.0.0.1:5349"),
            route("TURN.example.org", "127.0.0.1:5350"),
        ];
        assert!(matches!(
            validate(&twice, true, listen, &site),
            Err(PassthroughConfigError::Duplicate(_))
        ));
        assert!(matches!(
            validate(
                &[route("Meet.example.org", "127.0.0.1:5349")],
                true,
                listen,
                &site
            ),
            Err(PassthroughConfigError::SiteName(_))
        ));
        for bad in ["0.0.0.0:5349", "127.0.0.1:0", "127.0.0.1:443"] {
            assert!(
                matches!(
                    validate(&[route("turn.example.org", bad)], true, listen, &site),
                    Err(PassthroughConfigError::BadBackend { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_flag_is_name_equals_address() {
        assert_eq!(
            TurnPassthrough::parse_flag("turn.example.org=127.0.0.1:5349"),
            Ok(route("turn.example.org", "127.0.0.1:5349"))
        );
        assert!(TurnPassthrough::parse_flag("turn.example.org").is_err());
        assert!(TurnPassthrough::parse_flag("turn.example.org=localhost:5349").is_err());
    }

    #[test]
    fn a_network_has_its_own_share_of_places_given_back_on_drop() {
        let limits = PassthroughLimits {
            max_connections: 10,
            max_per_network: 2,
            idle: Duration::from_secs(1),
        };
        let p = Passthrough::new(&[route("turn.example.org", "127.0.0.1:5349")], limits)
            .expect("routes");
        let v6 = |s: &str| s.parse::<IpAddr>().expect("address");
        let a = p.take_network_place(v6("2001:db8::1"));
        let b = p.take_network_place(v6("2001:db8::2"));
        assert!(a.is_some() && b.is_some());
        // The same /64: full.
        assert!(p.take_network_place(v6("2001:db8::3")).is_none());
        assert!(p.take_network_place(v6("2001:db8:0:1::1")).is_some());
        drop(a);
        assert!(p.take_network_place(v6("2001:db8::3")).is_some());
        drop(b);
        assert!(
            p.per_network.lock().expect("lock").is_empty(),
            "no entry kept for a network with nothing open"
        );
    }

    #[test]
    fn throttled_logs_once_per_period_and_counts_the_rest() {
        let t = Throttled::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        assert_eq!(t.suppressed.load(Ordering::Relaxed), 2);
    }
}
