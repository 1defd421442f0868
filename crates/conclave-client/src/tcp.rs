//! ICE-TCP from the client side (RFC 6544, active): for networks that drop
//! UDP, the client connects to the server's passive TCP candidate and
//! carries its ICE checks, DTLS and SRTP as RFC 4571 frames (a 2-byte
//! big-endian length, then the packet).
//!
//! A task reads the frames, so the session's `select!` loop only ever
//! awaits a channel, which is cancel-safe where a half-read frame would not
//! be.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::media::ClientPeer;
use crate::session::SessionError;

/// Frames read ahead of the session, at most.
const READ_AHEAD: usize = 256;

/// One ICE-TCP connection to the server.
pub struct TcpMedia {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    frames: mpsc::Receiver<Vec<u8>>,
    write: OwnedWriteHalf,
    reader: tokio::task::JoinHandle<()>,
}

impl TcpMedia {
    pub async fn connect(to: SocketAddr) -> std::io::Result<TcpMedia> {
        let stream = TcpStream::connect(to).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let (read, write) = stream.into_split();
        let (tx, frames) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(read_frames(read, tx));
        Ok(TcpMedia {
            local,
            remote: to,
            frames,
            write,
            reader,
        })
    }

    /// The next packet from the server; `None` once the connection ended.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.frames.recv().await
    }

    /// Sends one packet, framed.
    pub async fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(packet.len())
            .map_err(|_| std::io::Error::other("packet too large for RFC 4571"))?;
        let mut buf = Vec::with_capacity(packet.len() + 2);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(packet);
        self.write.write_all(&buf).await
    }
}

impl Drop for TcpMedia {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_frames(mut read: OwnedReadHalf, tx: mpsc::Sender<Vec<u8>>) {
    loop {
        let mut prefix = [0u8; 2];
        if read.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if read.read_exact(&mut frame).await.is_err() || tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// How long a session that offered UDP waits for it to connect before it
/// also opens ICE-TCP: long enough for ICE over UDP on any working network,
/// short enough that a person behind a UDP-blocking firewall barely notices.
pub const TCP_FALLBACK_AFTER: Duration = Duration::from_millis(1500);

/// A session's ICE-TCP fallback: where the server's answer said TCP is,
/// when to connect there, and the connection once open.
pub struct TcpFallback {
    /// The server's passive candidate, and when to connect to it.
    due: Option<(SocketAddr, Instant)>,
    /// A connection being opened: in a task, because a firewall that
    /// drops the SYN keeps `connect` waiting for minutes, and the session
    /// (ICE over UDP, the TURN fallback) must not wait with it.
    connecting: Option<oneshot::Receiver<std::io::Result<TcpMedia>>>,
    conn: Option<TcpMedia>,
    /// The peer offered UDP: TCP waits for it to fail first.
    udp: bool,
}

impl TcpFallback {
    pub fn new(udp: bool) -> Self {
        TcpFallback {
            due: None,
            connecting: None,
            conn: None,
            udp,
        }
    }

    /// The server's answer: connect to its TCP candidate at once if the
    /// peer has no UDP, else after [`TCP_FALLBACK_AFTER`] unless UDP
    /// connected by then. A server that offers no TCP gets no connection.
    pub fn on_answer(&mut self, sdp: &str, now: Instant) {
        if self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        let wait = if self.udp {
            TCP_FALLBACK_AFTER
        } else {
            Duration::ZERO
        };
        self.due = passive_candidates(sdp).first().map(|a| (*a, now + wait));
    }

    /// Starts connecting when due (and UDP did not connect), adds the
    /// connection once open (the session wakes at least every few tens of
    /// milliseconds until connected), then sends what the peer has for TCP.
    /// A connection that cannot be opened is logged, not fatal: the TURN
    /// relay may still get through ([`crate::relay`]).
    pub async fn step(&mut self, peer: &mut ClientPeer, now: Instant) -> Result<(), SessionError> {
        if let Some((to, at)) = self.due
            && now >= at
        {
            self.due = None;
            if !self.udp || !peer.is_connected() {
                tracing::info!(server = %to, "media over ICE-TCP");
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let _ = tx.send(TcpMedia::connect(to).await);
                });
                self.connecting = Some(rx);
            }
        }
        if let Some(connecting) = self.connecting.as_mut() {
            match connecting.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {}
                Ok(Ok(conn)) => {
                    self.connecting = None;
                    peer.add_tcp_candidate(conn.local, now)?;
                    self.conn = Some(conn);
                }
                Ok(Err(e)) => {
                    self.connecting = None;
                    tracing::warn!(error = %e, "no ICE-TCP connection");
                }
                Err(oneshot::error::TryRecvError::Closed) => self.connecting = None,
            }
        }
        self.send(peer.take_tcp_transmits()).await;
        Ok(())
    }

    /// Sends the peer's packets for TCP on the connection, if there is one.
    /// The server closes a connection it refuses (too many from one
    /// address), never matches to a peer, or hears nothing on (UDP won), and
    /// a write can find it gone before the reader does: it is forgotten then,
    /// like one read to its end, not the end of the session, since UDP or
    /// the relay may be carrying the media.
    async fn send(&mut self, packets: Vec<(SocketAddr, Vec<u8>)>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        for (to, data) in packets {
            if to != conn.remote {
                continue;
            }
            if let Err(e) = conn.send(&data).await {
                tracing::debug!(error = %e, "media TCP connection broken");
                self.conn = None;
                return;
            }
        }
    }

    /// The next packet from the server over TCP, with the connection's
    /// remote and local addresses; never, without a connection. A
    /// connection the server closed is forgotten (UDP may be carrying the
    /// media, and the server closes an idle one).
    pub async fn recv(&mut self) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        let Some(conn) = self.conn.as_mut() else {
            return std::future::pending().await;
        };
        match conn.recv().await {
            Some(frame) => Some((conn.remote, conn.local, frame)),
            None => {
                tracing::debug!("media TCP connection closed");
                self.conn = None;
                None
            }
        }
    }
}

/// The passive TCP host candidates in an SDP (the server's answer): where
/// to connect.
pub fn passive_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| str0m::Candidate::from_sdp_string(l).ok())
        .filter(|c| {
            c.proto() == str0m::net::Protocol::Tcp
                && c.tcptype() == Some(str0m::net::TcpType::Passive)
        })
        .map(|c| c.addr())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_tcp_candidates_are_taken_from_an_answer() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706175 127.0.0.1 10000 typ host\r\n\
            a=candidate:2 1 tcp 1518280447 127.0.0.1 10000 typ host tcptype passive\r\n\
            a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n";
        assert_eq!(
            passive_candidates(sdp),
            vec![SocketAddr::from(([127, 0, 0, 1], 10000))]
        );
    }

    /// Issue 23: in a crowd on one address the server refuses ICE-TCP
    /// connections past its per-address cap (and closes idle ones); a write
    /// on one it closed failed with a broken pipe, which ended the member's
    /// whole session although UDP carried its media.
    #[tokio::test]
    async fn a_connection_the_server_closed_is_forgotten_not_fatal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let closer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            drop(s);
        });
        let mut tcp = TcpFallback::new(true);
        tcp.conn = Some(TcpMedia::connect(addr).await.expect("connect"));
        closer.await.expect("closer");
        // The first write after the server's FIN is taken by the kernel;
        // the server's RST makes a later one fail.
        for _ in 0..200 {
            tcp.send(vec![(addr, b"consent check".to_vec())]).await;
            if tcp.conn.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(tcp.conn.is_none(), "the broken connection is forgotten");
        // Later packets for TCP go nowhere, quietly.
        tcp.send(vec![(addr, b"dtls".to_vec())]).await;
    }

    #[tokio::test]
    async fn frames_cross_a_connection_whole_whatever_the_segments() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            // Two frames written one byte at a time, then one in one write.
            for b in [0u8, 3, b'a', b'b', b'c', 0, 1, b'z'] {
                s.write_all(&[b]).await.expect("write");
                s.flush().await.expect("flush");
            }
            s.write_all(&[0, 2, b'o', b'k']).await.expect("write");
            let mut got = [0u8; 6];
            s.read_exact(&mut got).await.expect("read");
            got
        });
        let mut c = TcpMedia::connect(addr).await.expect("connect");
        assert_eq!(c.recv().await.as_deref(), Some(&b"abc"[..]));
        assert_eq!(c.recv().await.as_deref(), Some(&b"z"[..]));
        assert_eq!(c.recv().await.as_deref(), Some(&b"ok"[..]));
        c.send(b"ping").await.expect("send");
        assert_eq!(&server.await.expect("server"), b"\x00\x04ping");
    }
}
