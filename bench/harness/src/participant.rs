//! One benchmark participant's media: a [`ClientPeer`] on its own UDP socket
//! (or, with `--tcp`, over ICE-TCP alone, or with `--relay` through a TURN
//! relay alone), driven until the run stops, with
//! snapshots of what it received at the start and end of the measuring window.
//!
//! Signaling differs per target (Conclave's WebSocket, Janus's HTTP API); the
//! media loop is the same, so both servers see the same client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use conclave_client::Signaling;
use conclave_client::media::{ClientPeer, PeerStats, SourceMedia};
use conclave_client::relay::{RelayEvent, RelayFallback};
use conclave_client::tcp::TcpFallback;
use conclave_proto::{ClientMessage, ServerMessage};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// `--tcp`: every Conclave participant offers no UDP and carries its media
/// over ICE-TCP, for the TCP-versus-UDP figures. Set once before the run.
pub static TCP_ONLY: AtomicBool = AtomicBool::new(false);

pub fn tcp_only() -> bool {
    TCP_ONLY.load(Ordering::Relaxed)
}

/// `--client-rcvbuf`: the `SO_RCVBUF` each participant's UDP socket asks
/// for (0: the system's default, `net.core.rmem_default`, 208 KiB here).
/// The default is libwebrtc's `kVideoRtpRecvBufferSize` (256 KiB, which
/// Linux doubles), what a browser receiving video asks for: with the
/// system's default, 20 peers in one process on a loaded machine overflowed
/// their sockets (`UdpRcvbufErrors`) whenever the process was descheduled
/// for a few tens of milliseconds. Set once before the run.
pub static CLIENT_RCVBUF: AtomicUsize = AtomicUsize::new(DEFAULT_RCVBUF);

/// libwebrtc's receive buffer for video (media/engine/constants.cc).
pub const DEFAULT_RCVBUF: usize = 262_144;

/// `--relay`: every Conclave participant offers no candidate and carries
/// its media through the relays in its `joined` (trusting `--ca-file` for
/// `turns:`), for the join-to-first-media figures by transport. Set once
/// before the run.
pub static RELAY_ONLY: OnceLock<Option<PathBuf>> = OnceLock::new();

/// With `--relay`, the `--ca-file` file if any.
pub fn relay_only() -> Option<Option<&'static std::path::Path>> {
    RELAY_ONLY.get().map(Option::as_deref)
}

/// Where the run is; every participant watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Warmup,
    Window,
    Done,
    Stop,
}

/// What one participant brings back.
#[derive(Debug, Default)]
pub struct Outcome {
    /// When it started joining (before its signaling connection opened).
    pub started: Option<Instant>,
    pub stats: PeerStats,
    /// Frames received when the window opened and when it closed.
    pub window_frames: (u64, u64),
    pub error: Option<String>,
}

/// The load a publisher sends: video of 130 one-packet frames a second of
/// 1,100 bytes (~1.1 Mbit/s of payload, ~1.2 Mbit/s on the wire) and Opus-like
/// audio of 50 frames a second of 100 bytes, each stamped with its send time.
/// What a participant of the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sends {
    /// Receives only.
    Nothing,
    /// Opus-like audio only: someone who talks with the camera off.
    Audio,
    /// A 1.4 Mbit/s video (130 packets/s of 1,100 bytes) and audio.
    AudioVideo,
}

impl Sends {
    pub fn sources(self) -> Vec<SourceMedia> {
        let video = SourceMedia::Synthetic {
            video: true,
            bytes: 1100,
            fps: 130,
        };
        let audio = SourceMedia::Synthetic {
            video: false,
            bytes: 100,
            fps: 50,
        };
        match self {
            Sends::Nothing => Vec::new(),
            Sends::Audio => vec![audio],
            Sends::AudioVideo => vec![video, audio],
        }
    }
}

pub fn total_frames(stats: &PeerStats) -> u64 {
    stats.received.values().map(|t| t.frames).sum()
}

/// Signaling during media: Conclave renegotiates over its WebSocket; Janus
/// needs nothing once the session is up.
pub enum Channel {
    Conclave(Box<Signaling>),
    None,
}

/// Runs `peer` on `socket` (or through `relay`) until the phase reaches
/// `Stop`.
pub async fn run_media(
    mut peer: ClientPeer,
    socket: UdpSocket,
    mut channel: Channel,
    mut relay: Option<RelayFallback>,
    mut phase: watch::Receiver<Phase>,
    mut outcome: Outcome,
) -> Outcome {
    let mut next = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut tcp = tcp_only().then(|| TcpFallback::new(false));
    let mut seen = *phase.borrow();
    if seen >= Phase::Window {
        outcome.window_frames.0 = total_frames(peer.stats());
    }
    let result: anyhow::Result<()> = async {
        loop {
            let wake = tokio::time::Instant::from_std(next);
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() { break; }
                    let now = *phase.borrow();
                    let frames = total_frames(peer.stats());
                    if seen < Phase::Window && now >= Phase::Window {
                        outcome.window_frames.0 = frames;
                    }
                    if seen < Phase::Done && now >= Phase::Done {
                        outcome.window_frames.1 = frames;
                    }
                    seen = now;
                    if now == Phase::Stop { break; }
                }
                msg = recv(&mut channel) => match msg? {
                    Some(ServerMessage::MediaAnswer { sdp }) => {
                        peer.accept_answer(&sdp, Instant::now())?;
                        if let Some(tcp) = tcp.as_mut() {
                            tcp.on_answer(&sdp, Instant::now());
                        }
                        if let Some(relay) = relay.as_mut() {
                            relay.on_answer(Instant::now());
                        }
                    }
                    Some(ServerMessage::MediaOffer { sdp, tracks }) => peer.accept_offer(&sdp, tracks, Instant::now())?,
                    Some(ServerMessage::Ended { .. } | ServerMessage::Removed) => anyhow::bail!("the meeting ended"),
                    Some(_) => {}
                    None => anyhow::bail!("signaling closed"),
                },
                recv = socket.recv_from(&mut buf) => {
                    let (n, from) = recv?;
                    peer.handle_datagram(from, &buf[..n], Instant::now())?;
                }
                Some((from, local, frame)) = recv_tcp(&mut tcp) => {
                    peer.handle_tcp_frame(from, local, &frame, Instant::now())?;
                }
                event = recv_relay(&mut relay) => {
                    if let Some(relay) = relay.as_mut() {
                        relay.handle(event, &mut peer, Instant::now())?;
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    next = peer.handle_timeout(Instant::now())?;
                }
            }
            for (to, data) in peer.take_transmits() {
                socket.send_to(&data, to).await?;
            }
            if let Some(tcp) = tcp.as_mut() {
                tcp.step(&mut peer, Instant::now()).await?;
            }
            if let Some(relay) = relay.as_mut() {
                relay.step(&mut peer, Instant::now())?;
            }
            if let Channel::Conclave(sig) = &mut channel {
                for msg in peer.take_messages() {
                    sig.send(&msg).await?;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        outcome.error = Some(e.to_string());
    }
    if outcome.window_frames.1 == 0 && seen >= Phase::Done {
        outcome.window_frames.1 = total_frames(peer.stats());
    }
    outcome.stats = peer.stats().clone();
    if let Some(relay) = relay.as_mut() {
        relay.close().await;
    }
    if let Channel::Conclave(sig) = channel {
        sig.close().await;
    }
    outcome
}

async fn recv_tcp(tcp: &mut Option<TcpFallback>) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    match tcp {
        Some(tcp) => tcp.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_relay(relay: &mut Option<RelayFallback>) -> RelayEvent {
    match relay {
        Some(relay) => relay.next().await,
        None => std::future::pending().await,
    }
}

async fn recv(channel: &mut Channel) -> anyhow::Result<Option<ServerMessage>> {
    match channel {
        Channel::Conclave(sig) => Ok(sig.recv().await?),
        Channel::None => std::future::pending().await,
    }
}

/// Sends the peer's pending datagrams (used during setup, before the loop).
pub async fn flush(peer: &mut ClientPeer, socket: &UdpSocket) -> std::io::Result<()> {
    for (to, data) in peer.take_transmits() {
        socket.send_to(&data, to).await?;
    }
    Ok(())
}

/// The SDP of the first `media_answer` the peer queued.
pub fn take_answer(peer: &mut ClientPeer) -> Option<String> {
    peer.take_messages().into_iter().find_map(|m| match m {
        ClientMessage::MediaAnswer { sdp } => Some(sdp),
        _ => None,
    })
}

pub async fn bind(ip: std::net::IpAddr) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let rcvbuf = CLIENT_RCVBUF.load(Ordering::Relaxed);
    if rcvbuf > 0 {
        set_rcvbuf(&socket, rcvbuf)?;
    }
    let local = socket.local_addr()?;
    Ok((socket, local))
}

/// Asks for `bytes` of receive buffer (capped by `net.core.rmem_max`).
fn set_rcvbuf(socket: &UdpSocket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor and a c_int option value of the
    // size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
