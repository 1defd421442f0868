//! Media through a TURN relay (RFC 8656), for networks where the server's
//! own candidates are unreachable but the relay the server named in
//! `joined.ice_servers` is not. str0m has no TURN client, so webrtc-rs's
//! `turn` crate allocates and relays; str0m sees one more local candidate
//! (the relayed address) and the session moves its datagrams.
//!
//! The client reaches the relay over UDP (`turn:`), TCP
//! (`turn:…?transport=tcp`) or TLS (`turns:`); the crate speaks TURN over
//! a datagram socket, and [`crate::relay_stream`] gives it one over a TCP
//! or TLS stream. Between relay and media router it is UDP either way.
//! UDP comes first, as it adds no head-of-line blocking; TCP and TLS
//! follow a little later where UDP got nowhere, so on a network that lets
//! only TLS to 443 out, `turns:` is what carries the media. A `turns:`
//! server's certificate is checked against the system's roots (and
//! `--ca-file`); DTLS (`turns:…?transport=udp`) is not spoken.
//!
//! Tasks send and receive through the relay, so the session's `select!`
//! loop only awaits a channel, and a send that waits for a permission or a
//! channel binding never holds up str0m's timers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_proto::IceServer;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use turn::client::{Client, ClientConfig};
use util::Conn;

use crate::media::ClientPeer;
use crate::relay_stream::{StreamConn, server_name};
use crate::session::SessionError;
use crate::tcp::TCP_FALLBACK_AFTER;
use crate::tls::{TlsSetupError, client_config};

/// Datagrams queued to or from the relay, at most; more are dropped as a
/// congested UDP path would drop them.
const QUEUE: usize = 512;

/// The largest datagram read from the relay.
const MAX_DATAGRAM: usize = 2048;

/// How long connecting (TCP, TLS) and allocating may each take before the
/// relay counts as unreachable.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crate retransmits a request after this long over TCP and TLS (200 ms
/// over UDP): the stream itself retransmits, so a repeat only helps when
/// the relay lost the request, which a reliable transport does not.
const STREAM_RTO_MS: u16 = 1000;

/// How long a session that offered UDP waits before it also allocates on
/// the relay: after ICE-TCP had its chance ([`TCP_FALLBACK_AFTER`]), since
/// a relay costs the operator bandwidth and adds a hop.
pub const RELAY_FALLBACK_AFTER: Duration = TCP_FALLBACK_AFTER.saturating_mul(2);

/// How long one relay transport gets before the next one listed is tried
/// too (at once when it fails).
pub const RELAY_NEXT_AFTER: Duration = TCP_FALLBACK_AFTER;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "the server named no TURN server this client can use (turn: or turns:, with credentials)"
    )]
    NoServer,
    #[error("{url}: not a TURN URL this client understands")]
    BadUrl { url: String },
    #[error("{url}: cannot resolve the TURN server: {source}")]
    Resolve { url: String, source: std::io::Error },
    #[error("{url}: cannot connect to the TURN server: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("{url}: TLS with the TURN server failed: {source}")]
    Tls { url: String, source: std::io::Error },
    #[error("the TURN server refused the credentials ({url}): {detail}")]
    Refused { url: String, detail: String },
    #[error("{url}: no allocation within {ALLOCATE_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: {detail}")]
    Turn { url: String, detail: String },
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// How the client reaches a TURN server (the relay reaches the media
/// router over UDP in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RelayTransport {
    Udp,
    Tcp,
    Tls,
}

impl RelayTransport {
    /// As `--stats` names it.
    pub fn label(self) -> &'static str {
        match self {
            RelayTransport::Udp => "turn/udp",
            RelayTransport::Tcp => "turn/tcp",
            RelayTransport::Tls => "turn/tls",
        }
    }
}

/// A TURN server entry this client can use: where, how, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayServer {
    pub url: String,
    pub transport: RelayTransport,
    /// The host as the URL names it: what a `turns:` certificate must name.
    pub host: String,
    /// `host:port`, unresolved.
    pub host_port: String,
    pub username: String,
    pub credential: String,
}

/// Every usable entry that came with credentials, UDP first, then TCP,
/// then TLS, each in the server's order.
pub fn usable_servers(servers: &[IceServer]) -> Vec<RelayServer> {
    let mut usable: Vec<RelayServer> = servers
        .iter()
        .filter_map(|s| Some((s, s.username.as_ref()?, s.credential.as_ref()?)))
        .flat_map(|(s, username, credential)| {
            s.urls.iter().filter_map(move |url| {
                let (transport, host, host_port) = parse_turn_url(url)?;
                Some(RelayServer {
                    url: url.clone(),
                    transport,
                    host,
                    host_port,
                    username: username.clone(),
                    credential: credential.clone(),
                })
            })
        })
        .collect();
    usable.sort_by_key(|s| s.transport);
    usable
}

/// The transport, host and `host:port` of a `turn:` or `turns:` URL (RFC
/// 7065; port 3478, or 5349 for `turns:`, by default); `None` for DTLS
/// (`turns:…?transport=udp`), other transports or anything else.
fn parse_turn_url(url: &str) -> Option<(RelayTransport, String, String)> {
    let (secure, rest) = match url.strip_prefix("turns:") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("turn:")?),
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None => None,
        Some(q) => Some(q.split('&').find_map(|kv| {
            kv.to_ascii_lowercase()
                .strip_prefix("transport=")
                .map(str::to_string)
        })?),
    };
    let transport = match (secure, transport.as_deref()) {
        (false, None | Some("udp")) => RelayTransport::Udp,
        (false, Some("tcp")) => RelayTransport::Tcp,
        (true, None | Some("tcp")) => RelayTransport::Tls,
        _ => return None,
    };
    if authority.is_empty() {
        return None;
    }
    // An IPv6 literal is bracketed; a port follows the last colon outside it.
    let (host, port) = match authority.rfind(']') {
        Some(end) => match authority[end..].rfind(':') {
            Some(colon) => (&authority[..end + 1], Some(&authority[end + 1 + colon..])),
            None => (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None if secure => 5349,
        None => 3478,
    };
    Some((transport, host.to_string(), format!("{host}:{port}")))
}

/// One TURN allocation and the tasks that move datagrams through it.
pub struct TurnRelay {
    /// The relayed transport address: str0m's local candidate.
    pub relayed: SocketAddr,
    /// The socket that talks to the TURN server.
    pub local: SocketAddr,
    pub url: String,
    pub transport: RelayTransport,
    client: Client,
    /// The allocation, which sends and receives relayed datagrams.
    conn: Arc<dyn Conn + Send + Sync>,
    /// The socket or stream to the TURN server, closed last.
    to_server: Arc<dyn Conn + Send + Sync>,
    outgoing: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TurnRelay {
    /// Connects to `server` (a new UDP socket, TCP connection or TLS
    /// session, `tls` checking the certificate) and allocates; what the
    /// relay delivers goes to `events`.
    pub async fn allocate(
        server: &RelayServer,
        tls: Option<Arc<rustls::ClientConfig>>,
        events: mpsc::Sender<RelayEvent>,
    ) -> Result<TurnRelay, RelayError> {
        let url = server.url.clone();
        let turn_err = |e: turn::Error| classify(&url, e);
        let addr = tokio::net::lookup_host(server.host_port.as_str())
            .await
            .map_err(|source| RelayError::Resolve {
                url: url.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| RelayError::BadUrl { url: url.clone() })?;
        let (conn, local, rto_in_ms): (Arc<dyn Conn + Send + Sync>, _, _) = match server.transport {
            RelayTransport::Udp => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(bind).await?;
                let local = socket.local_addr()?;
                (Arc::new(socket), local, 0)
            }
            RelayTransport::Tcp | RelayTransport::Tls => {
                let connect_err = |source| RelayError::Connect {
                    url: url.clone(),
                    source,
                };
                let stream = tokio::time::timeout(ALLOCATE_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| RelayError::Timeout { url: url.clone() })?
                    .map_err(connect_err)?;
                stream.set_nodelay(true).map_err(connect_err)?;
                let local = stream.local_addr().map_err(connect_err)?;
                let conn = if server.transport == RelayTransport::Tls {
                    let (Some(config), Some(name)) = (tls, server_name(&server.host)) else {
                        return Err(RelayError::BadUrl { url });
                    };
                    let tls = tokio::time::timeout(
                        ALLOCATE_TIMEOUT,
                        tokio_rustls::TlsConnector::from(config).connect(name, stream),
                    )
                    .await
                    .map_err(|_| RelayError::Timeout { url: url.clone() })?
                    .map_err(|source| RelayError::Tls {
                        url: url.clone(),
                        source,
                    })?;
                    StreamConn::new(tls, local, addr)
                } else {
                    StreamConn::new(stream, local, addr)
                };
                (Arc::new(conn), local, STREAM_RTO_MS)
            }
        };
        let client = Client::new(ClientConfig {
            stun_serv_addr: String::new(),
            turn_serv_addr: addr.to_string(),
            username: server.username.clone(),
            password: server.credential.clone(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms,
            conn: Arc::clone(&conn),
            vnet: None,
        })
        .await
        .map_err(turn_err)?;
        client.listen().await.map_err(turn_err)?;
        let relay_conn = match tokio::time::timeout(ALLOCATE_TIMEOUT, client.allocate()).await {
            Ok(Ok(relay_conn)) => relay_conn,
            Ok(Err(e)) => {
                let _ = client.close().await;
                return Err(turn_err(e));
            }
            Err(_) => {
                let _ = client.close().await;
                return Err(RelayError::Timeout { url });
            }
        };
        let relayed = relay_conn.local_addr().map_err(|e| RelayError::Turn {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let relay_conn: Arc<dyn Conn + Send + Sync> = Arc::new(relay_conn);
        let (outgoing, to_send) = mpsc::channel(QUEUE);
        let tasks = vec![
            tokio::spawn(send_loop(Arc::clone(&relay_conn), to_send)),
            tokio::spawn(recv_loop(Arc::clone(&relay_conn), relayed, events)),
        ];
        Ok(TurnRelay {
            relayed,
            local,
            url,
            transport: server.transport,
            client,
            conn: relay_conn,
            to_server: conn,
            outgoing,
            tasks,
        })
    }

    /// Queues one datagram for `to`; dropped when the queue is full.
    pub fn send(&self, to: SocketAddr, data: Vec<u8>) {
        if self.outgoing.try_send((to, data)).is_err() {
            tracing::debug!(%to, "relay queue full: datagram dropped");
        }
    }

    /// Releases the allocation (a refresh with lifetime 0), so the relay
    /// frees the port now rather than when it expires.
    pub async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.conn.close().await {
            tracing::debug!(error = %e, "releasing the TURN allocation");
        }
        let _ = self.client.close().await;
        let _ = self.to_server.close().await;
    }
}

impl Drop for TurnRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A refused allocation (401 after authenticating) is the one error an
/// operator can act on directly, so it gets its own message; the crate
/// reports it only as text ("... (error 401: ...)").
fn classify(url: &str, e: turn::Error) -> RelayError {
    let detail = e.to_string();
    if detail.contains("error 401") || detail.contains("error 441") {
        RelayError::Refused {
            url: url.to_string(),
            detail,
        }
    } else {
        RelayError::Turn {
            url: url.to_string(),
            detail,
        }
    }
}

async fn send_loop(
    conn: Arc<dyn Conn + Send + Sync>,
    mut to_send: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
) {
    while let Some((to, data)) = to_send.recv().await {
        if let Err(e) = conn.send_to(&data, to).await {
            tracing::debug!(error = %e, %to, "relay send");
        }
    }
}

async fn recv_loop(
    conn: Arc<dyn Conn + Send + Sync>,
    relayed: SocketAddr,
    events: mpsc::Sender<RelayEvent>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match conn.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let Some(data) = buf.get(..n) else { continue };
                let event = RelayEvent::Datagram {
                    relayed,
                    from,
                    data: data.to_vec(),
                };
                if events.try_send(event).is_err() {
                    if events.is_closed() {
                        return;
                    }
                    tracing::debug!(%from, "relay delivery queue full: datagram dropped");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "relay receive ended");
                let _ = events.send(RelayEvent::Gone { relayed }).await;
                return;
            }
        }
    }
}

/// A session's relays: whom to ask and when, the allocations under way,
/// and the relays once allocated.
pub struct RelayFallback {
    /// In the order tried ([`usable_servers`]).
    servers: Vec<RelayServer>,
    /// The next of `servers` to try.
    next: usize,
    due: Option<Instant>,
    /// Relay only: no wait for UDP or TCP, and when every relay failed the
    /// session ends.
    only: bool,
    /// For `turns:` servers; made only when one is listed.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Allocations under way.
    pending: usize,
    relays: Vec<TurnRelay>,
    events: mpsc::Receiver<RelayEvent>,
    events_tx: mpsc::Sender<RelayEvent>,
}

impl RelayFallback {
    /// `ca_file`: a PEM file of CA certificates trusted for `turns:`
    /// servers besides the system's; unreadable, it is an error at once.
    pub fn new(
        servers: &[IceServer],
        only: bool,
        ca_file: Option<&Path>,
    ) -> Result<Self, RelayError> {
        let servers = usable_servers(servers);
        let tls = if servers.iter().any(|s| s.transport == RelayTransport::Tls) {
            Some(Arc::new(client_config(ca_file)?))
        } else {
            None
        };
        let (events_tx, events) = mpsc::channel(QUEUE);
        Ok(RelayFallback {
            servers,
            next: 0,
            due: None,
            only,
            tls,
            pending: 0,
            relays: Vec::new(),
            events,
            events_tx,
        })
    }

    /// Whether the session has to use the relay (`--relay-only`); then a
    /// server without a usable TURN entry is an error at once.
    pub fn check(&self) -> Result<(), RelayError> {
        if self.only && self.servers.is_empty() {
            return Err(RelayError::NoServer);
        }
        Ok(())
    }

    /// The server's answer: allocate at once when relay only, else after
    /// [`RELAY_FALLBACK_AFTER`] unless connected by then.
    pub fn on_answer(&mut self, now: Instant) {
        if self.servers.is_empty() || self.next > 0 || self.due.is_some() {
            return;
        }
        let wait = if self.only {
            Duration::ZERO
        } else {
            RELAY_FALLBACK_AFTER
        };
        self.due = Some(now + wait);
    }

    /// Starts the next allocation when due (and nothing connected), and
    /// hands each relay what str0m sends from its relayed address.
    pub fn step(&mut self, peer: &mut ClientPeer, now: Instant) -> Result<(), SessionError> {
        if let Some(at) = self.due
            && now >= at
        {
            self.due = None;
            // Relay only too: once one relay carries the media, the others
            // are not allocated (each costs the operator a port and quota).
            if let Some(server) = self.servers.get(self.next).cloned()
                && !peer.is_connected()
            {
                self.next += 1;
                if self.next < self.servers.len() {
                    self.due = Some(now + RELAY_NEXT_AFTER);
                }
                tracing::info!(url = %server.url, "allocating on the TURN relay");
                let tls = self.tls.clone();
                let events = self.events_tx.clone();
                self.pending += 1;
                tokio::spawn(async move {
                    let result = TurnRelay::allocate(&server, tls, events.clone()).await;
                    let _ = events.send(RelayEvent::Allocated(Box::new(result))).await;
                });
            }
        }
        for (from, to, data) in peer.take_relay_transmits() {
            if let Some(relay) = self.relays.iter().find(|r| r.relayed == from) {
                relay.send(to, data);
            }
        }
        Ok(())
    }

    /// What happened on the relays: an allocation finished or failed, a
    /// datagram arrived, or a relay went away. Never resolves with nothing
    /// under way.
    pub async fn next(&mut self) -> RelayEvent {
        match self.events.recv().await {
            Some(event) => event,
            // Never: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// Applies [`RelayFallback::next`]'s event to `peer`.
    pub fn handle(
        &mut self,
        event: RelayEvent,
        peer: &mut ClientPeer,
        now: Instant,
    ) -> Result<(), SessionError> {
        match event {
            RelayEvent::Allocated(result) => {
                self.pending = self.pending.saturating_sub(1);
                match *result {
                    Ok(relay) => {
                        tracing::info!(
                            relayed = %relay.relayed,
                            url = %relay.url,
                            transport = relay.transport.label(),
                            "media over the TURN relay"
                        );
                        peer.add_relayed_candidate(
                            relay.relayed,
                            relay.local,
                            relay.transport.label(),
                            now,
                        )?;
                        self.relays.push(relay);
                    }
                    Err(e) => {
                        let more = self.next < self.servers.len();
                        if more {
                            // The next transport need not wait its turn.
                            self.due = Some(now);
                        }
                        if self.only && !more && self.pending == 0 && self.relays.is_empty() {
                            return Err(e.into());
                        }
                        tracing::warn!(error = %e, "no TURN relay");
                    }
                }
            }
            RelayEvent::Datagram {
                relayed,
                from,
                data,
            } => peer.handle_relayed(relayed, from, &data, now)?,
            RelayEvent::Gone { relayed } => {
                tracing::debug!(%relayed, "TURN relay gone");
                self.relays.retain(|r| r.relayed != relayed);
            }
        }
        Ok(())
    }

    /// Releases the allocations, if any.
    pub async fn close(&mut self) {
        for relay in std::mem::take(&mut self.relays) {
            relay.close().await;
        }
    }
}

pub enum RelayEvent {
    /// Boxed: a relay is large beside the other events.
    Allocated(Box<Result<TurnRelay, RelayError>>),
    Datagram {
        relayed: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Gone {
        relayed: SocketAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(urls: &[&str], creds: bool) -> IceServer {
        IceServer {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: creds.then(|| "1700000000:7-x".into()),
            credential: creds.then(|| "secret".into()),
        }
    }

    fn parsed(url: &str) -> Option<(RelayTransport, String)> {
        parse_turn_url(url).map(|(t, _, hp)| (t, hp))
    }

    #[test]
    fn turn_urls_say_transport_host_and_port() {
        use RelayTransport::{Tcp, Tls, Udp};
        assert_eq!(
            parsed("turn:a.example:3479"),
            Some((Udp, "a.example:3479".into()))
        );
        assert_eq!(
            parsed("turn:a.example"),
            Some((Udp, "a.example:3478".into()))
        );
        assert_eq!(
            parsed("turn:127.0.0.1:3478?transport=udp"),
            Some((Udp, "127.0.0.1:3478".into()))
        );
        assert_eq!(parsed("turn:[::1]"), Some((Udp, "[::1]:3478".into())));
        assert_eq!(
            parsed("turn:[::1]:80?transport=tcp"),
            Some((Tcp, "[::1]:80".into()))
        );
        assert_eq!(
            parsed("turn:a.example?transport=TCP"),
            Some((Tcp, "a.example:3478".into()))
        );
        assert_eq!(
            parsed("turns:a.example"),
            Some((Tls, "a.example:5349".into()))
        );
        assert_eq!(
            parsed("turns:a.example:443?transport=tcp"),
            Some((Tls, "a.example:443".into()))
        );
        assert_eq!(
            parse_turn_url("turns:[::1]:443").map(|(_, host, _)| host),
            Some("[::1]".into())
        );
        // DTLS, other transports, other schemes and no host: not for us.
        assert_eq!(parsed("turns:a.example?transport=udp"), None);
        assert_eq!(parsed("turn:a.example?transport=sctp"), None);
        assert_eq!(parsed("turn:a.example?foo=bar"), None);
        assert_eq!(parsed("turn:a.example:x"), None);
        assert_eq!(parsed("turn:"), None);
        assert_eq!(parsed("stun:a.example"), None);
    }

    #[test]
    fn udp_first_then_tcp_then_tls_and_only_with_credentials() {
        let servers = [
            server(&["turn:nocreds.example"], false),
            server(
                &[
                    "turns:a.example:443?transport=tcp",
                    "turn:a.example:3478?transport=tcp",
                    "turn:a.example:3478",
                ],
                true,
            ),
        ];
        let usable = usable_servers(&servers);
        let urls: Vec<_> = usable.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "turn:a.example:3478",
                "turn:a.example:3478?transport=tcp",
                "turns:a.example:443?transport=tcp"
            ]
        );
        assert_eq!(usable[2].host, "a.example");
        assert_eq!(usable[0].username, "1700000000:7-x");
        assert!(usable_servers(&servers[..1]).is_empty());
    }
}
