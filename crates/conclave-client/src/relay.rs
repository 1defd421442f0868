//! Media through a TURN relay (RFC 8656), for networks where the server's
//! own candidates are unreachable but the relay the server named in
//! `joined.ice_servers` is not. str0m has no TURN client, so webrtc-rs's
//! `turn` crate allocates and relays; str0m sees one more local candidate
//! (the relayed address) and the session moves its datagrams.
//!
//! Only `turn:` over UDP: the crate's client speaks TURN over a datagram
//! socket and has no TCP or TLS transport, so `turns:` and
//! `?transport=tcp` entries are skipped.
//!
//! Tasks send and receive through the relay, so the session's `select!`
//! loop only awaits a channel, and a send that waits for a permission or a
//! channel binding never holds up str0m's timers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_proto::IceServer;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use turn::client::{Client, ClientConfig};
use util::Conn;

use crate::media::ClientPeer;
use crate::session::SessionError;
use crate::tcp::TCP_FALLBACK_AFTER;

/// Datagrams queued to or from the relay, at most; more are dropped as a
/// congested UDP path would drop them.
const QUEUE: usize = 512;

/// The largest datagram read from the relay.
const MAX_DATAGRAM: usize = 2048;

/// How long allocating may take before the relay counts as unreachable.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a session that offered UDP waits before it also allocates on
/// the relay: after ICE-TCP had its chance ([`TCP_FALLBACK_AFTER`]), since
/// a relay costs the operator bandwidth and adds a hop.
pub const RELAY_FALLBACK_AFTER: Duration = TCP_FALLBACK_AFTER.saturating_mul(2);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "the server named no TURN server this client can use (turn: over UDP, with credentials)"
    )]
    NoServer,
    #[error("{url}: not a TURN URL this client understands")]
    BadUrl { url: String },
    #[error("{url}: cannot resolve the TURN server: {source}")]
    Resolve { url: String, source: std::io::Error },
    #[error("the TURN server refused the credentials ({url}): {detail}")]
    Refused { url: String, detail: String },
    #[error("{url}: no allocation within {ALLOCATE_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: {detail}")]
    Turn { url: String, detail: String },
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// A TURN server entry this client can use: where, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayServer {
    pub url: String,
    /// `host:port`, unresolved.
    pub host_port: String,
    pub username: String,
    pub credential: String,
}

/// The first usable entry: a `turn:` URL over UDP (no `transport` or
/// `transport=udp`) of a server that came with credentials.
pub fn usable_server(servers: &[IceServer]) -> Option<RelayServer> {
    servers.iter().find_map(|s| {
        let (username, credential) = (s.username.as_ref()?, s.credential.as_ref()?);
        s.urls.iter().find_map(|url| {
            let host_port = udp_turn_host_port(url)?;
            Some(RelayServer {
                url: url.clone(),
                host_port,
                username: username.clone(),
                credential: credential.clone(),
            })
        })
    })
}

/// `host:port` of a `turn:host[:port][?transport=udp]` URL (port 3478 by
/// default, RFC 7065); `None` for `turns:`, TCP or anything else.
fn udp_turn_host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("turn:")?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query
        && !q
            .split('&')
            .any(|kv| kv.eq_ignore_ascii_case("transport=udp"))
    {
        return None;
    }
    if authority.is_empty() {
        return None;
    }
    // An IPv6 literal is bracketed; a port follows the last colon outside it.
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:3478")
    })
}

/// One TURN allocation and the tasks that move datagrams through it.
pub struct TurnRelay {
    /// The relayed transport address: str0m's local candidate.
    pub relayed: SocketAddr,
    /// The socket that talks to the TURN server.
    pub local: SocketAddr,
    pub url: String,
    client: Client,
    conn: Arc<dyn Conn + Send + Sync>,
    outgoing: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    incoming: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl TurnRelay {
    /// Allocates on `server` from a new UDP socket.
    pub async fn allocate(server: &RelayServer) -> Result<TurnRelay, RelayError> {
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
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        let local = socket.local_addr()?;
        let client = Client::new(ClientConfig {
            stun_serv_addr: String::new(),
            turn_serv_addr: addr.to_string(),
            username: server.username.clone(),
            password: server.credential.clone(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            conn: Arc::new(socket),
            vnet: None,
        })
        .await
        .map_err(turn_err)?;
        client.listen().await.map_err(turn_err)?;
        let conn = match tokio::time::timeout(ALLOCATE_TIMEOUT, client.allocate()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                let _ = client.close().await;
                return Err(turn_err(e));
            }
            Err(_) => {
                let _ = client.close().await;
                return Err(RelayError::Timeout { url });
            }
        };
        let relayed = conn.local_addr().map_err(|e| RelayError::Turn {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let conn: Arc<dyn Conn + Send + Sync> = Arc::new(conn);
        let (outgoing, to_send) = mpsc::channel(QUEUE);
        let (delivered, incoming) = mpsc::channel(QUEUE);
        let tasks = [
            tokio::spawn(send_loop(Arc::clone(&conn), to_send)),
            tokio::spawn(recv_loop(Arc::clone(&conn), delivered)),
        ];
        Ok(TurnRelay {
            relayed,
            local,
            url,
            client,
            conn,
            outgoing,
            incoming,
            tasks,
        })
    }

    /// Queues one datagram for `to`; dropped when the queue is full.
    pub fn send(&self, to: SocketAddr, data: Vec<u8>) {
        if self.outgoing.try_send((to, data)).is_err() {
            tracing::debug!(%to, "relay queue full: datagram dropped");
        }
    }

    /// The next datagram the relay delivered, with its sender; `None` once
    /// the allocation is gone.
    pub async fn recv(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.incoming.recv().await
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
    delivered: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match conn.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let Some(data) = buf.get(..n) else { continue };
                if delivered.try_send((from, data.to_vec())).is_err() {
                    if delivered.is_closed() {
                        return;
                    }
                    tracing::debug!(%from, "relay delivery queue full: datagram dropped");
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "relay receive ended");
                return;
            }
        }
    }
}

/// A session's relay: whom to ask and when, the allocation under way, and
/// the relay once allocated.
pub struct RelayFallback {
    server: Option<RelayServer>,
    due: Option<Instant>,
    /// Relay only: a failure ends the session, and no wait for UDP or TCP.
    only: bool,
    pending: Option<oneshot::Receiver<Result<TurnRelay, RelayError>>>,
    relay: Option<TurnRelay>,
}

impl RelayFallback {
    pub fn new(servers: &[IceServer], only: bool) -> Self {
        let server = usable_server(servers);
        if server.is_none() && !servers.is_empty() {
            // Said once, so a session that never connects explains why the
            // relay browsers use was not tried.
            tracing::info!(
                "no TURN server over UDP with credentials among the server's relays; \
                 this client does not speak turns: or TURN over TCP"
            );
        }
        RelayFallback {
            server,
            due: None,
            only,
            pending: None,
            relay: None,
        }
    }

    /// Whether the session has to use the relay (`--relay-only`); then a
    /// server without a usable TURN entry is an error at once.
    pub fn check(&self) -> Result<(), RelayError> {
        if self.only && self.server.is_none() {
            return Err(RelayError::NoServer);
        }
        Ok(())
    }

    /// The server's answer: allocate at once when relay only, else after
    /// [`RELAY_FALLBACK_AFTER`] unless connected by then.
    pub fn on_answer(&mut self, now: Instant) {
        if self.server.is_none() || self.relay.is_some() || self.pending.is_some() {
            return;
        }
        let wait = if self.only {
            Duration::ZERO
        } else {
            RELAY_FALLBACK_AFTER
        };
        self.due = Some(now + wait);
    }

    /// Starts allocating when due (and nothing connected), adds the
    /// relayed candidate once allocated, and hands the relay what str0m
    /// sends from it.
    pub fn step(&mut self, peer: &mut ClientPeer, now: Instant) -> Result<(), SessionError> {
        if let Some(at) = self.due
            && now >= at
        {
            self.due = None;
            if let Some(server) = self.server.clone()
                && (self.only || !peer.is_connected())
            {
                tracing::info!(url = %server.url, "allocating on the TURN relay");
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let _ = tx.send(TurnRelay::allocate(&server).await);
                });
                self.pending = Some(rx);
            }
        }
        let packets = peer.take_relay_transmits();
        if let Some(relay) = self.relay.as_ref() {
            for (to, data) in packets {
                relay.send(to, data);
            }
        }
        Ok(())
    }

    /// What happened on the relay: an allocation finished (the relayed
    /// candidate goes to `peer`) or a datagram arrived (handed to `peer`).
    /// Never resolves with neither under way.
    pub async fn next(&mut self) -> RelayEvent {
        if let Some(pending) = self.pending.as_mut() {
            let result = pending.await.unwrap_or_else(|_| {
                Err(RelayError::Io(std::io::Error::other(
                    "the TURN allocation task ended",
                )))
            });
            self.pending = None;
            return RelayEvent::Allocated(result);
        }
        let Some(relay) = self.relay.as_mut() else {
            return std::future::pending().await;
        };
        match relay.recv().await {
            Some((from, data)) => RelayEvent::Datagram(from, data),
            None => {
                tracing::debug!("TURN relay gone");
                self.relay = None;
                RelayEvent::Gone
            }
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
            RelayEvent::Allocated(Ok(relay)) => {
                tracing::info!(relayed = %relay.relayed, url = %relay.url, "media over the TURN relay");
                peer.add_relayed_candidate(relay.relayed, relay.local, now)?;
                self.relay = Some(relay);
            }
            RelayEvent::Allocated(Err(e)) if self.only => return Err(e.into()),
            RelayEvent::Allocated(Err(e)) => tracing::warn!(error = %e, "no TURN relay"),
            RelayEvent::Datagram(from, data) => peer.handle_relayed(from, &data, now)?,
            RelayEvent::Gone => {}
        }
        Ok(())
    }

    /// Releases the allocation, if any.
    pub async fn close(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.close().await;
        }
    }
}

pub enum RelayEvent {
    Allocated(Result<TurnRelay, RelayError>),
    Datagram(SocketAddr, Vec<u8>),
    Gone,
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

    #[test]
    fn only_turn_over_udp_with_credentials_is_usable() {
        assert_eq!(
            udp_turn_host_port("turn:a.example:3479"),
            Some("a.example:3479".into())
        );
        assert_eq!(
            udp_turn_host_port("turn:a.example"),
            Some("a.example:3478".into())
        );
        assert_eq!(
            udp_turn_host_port("turn:127.0.0.1:3478?transport=udp"),
            Some("127.0.0.1:3478".into())
        );
        assert_eq!(udp_turn_host_port("turn:[::1]"), Some("[::1]:3478".into()));
        assert_eq!(udp_turn_host_port("turn:a.example?transport=tcp"), None);
        assert_eq!(
            udp_turn_host_port("turns:a.example:443?transport=tcp"),
            None
        );
        assert_eq!(udp_turn_host_port("stun:a.example"), None);
        let servers = [
            server(&["turn:nocreds.example"], false),
            server(
                &["turns:a.example:443?transport=tcp", "turn:a.example:3478"],
                true,
            ),
        ];
        let s = usable_server(&servers).expect("usable");
        assert_eq!(s.url, "turn:a.example:3478");
        assert_eq!(s.username, "1700000000:7-x");
        assert!(usable_server(&servers[..1]).is_none());
    }
}
