//! The media driver: the I/O shell around `conclave-media`.
//!
//! One task owns the media UDP socket and one [`Router`] per running meeting,
//! so that a meeting's tracks are only ever offered to that meeting's members.
//! Rooms send it the core's [`MediaCommand`]s; it answers with
//! [`MediaEvent`]s through the room, which delivers them to members only.
//! Datagrams are steered to a meeting's router by source address, learned
//! from the first datagram (the ICE check) a router accepts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use conclave_core::{Input, MediaCommand, MediaEvent};
use conclave_media::{Event, PeerId, Router, RouterConfig, SdpAnswer, SdpOffer};
use conclave_proto::{MediaKind, MeetingId, ParticipantId, RemoteTrack};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::rooms::RoomCmd;

/// Commands queued for the driver, at most this many.
const DRIVER_QUEUE: usize = 4096;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// Source addresses remembered before the map is cleared (it refills itself).
const MAX_SOURCES: usize = 64 * 1024;

pub enum DriverCmd {
    Media {
        meeting: MeetingId,
        room: mpsc::Sender<RoomCmd>,
        cmd: MediaCommand,
    },
    /// The meeting's room stopped: drop its router.
    Closed { meeting: MeetingId },
}

/// The rooms' handle on the driver.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::Sender<DriverCmd>,
    pub local: SocketAddr,
}

impl MediaHandle {
    /// Queues a command; drops it (and says so) if the driver is overwhelmed.
    pub fn send(&self, cmd: DriverCmd) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("media driver queue full; command dropped");
            }
            // Shutting down: the driver is gone and so is all media.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaStartError {
    #[error("cannot bind the media port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the media socket and starts the driver task. `announce` is the
/// address put in ICE candidates (defaults to the bound one; 127.0.0.1 when
/// bound to all interfaces and nothing better is known).
pub async fn start(
    bind: SocketAddr,
    announce: Option<IpAddr>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<MediaHandle, MediaStartError> {
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|source| MediaStartError::Bind { addr: bind, source })?;
    let bound = socket
        .local_addr()
        .map_err(|source| MediaStartError::Bind { addr: bind, source })?;
    let ip = announce.unwrap_or(if bound.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    });
    let local = SocketAddr::new(ip, bound.port());
    let (tx, rx) = mpsc::channel(DRIVER_QUEUE);
    let driver = Driver {
        socket,
        local,
        meetings: HashMap::new(),
        by_source: HashMap::new(),
    };
    tokio::spawn(driver.run(rx, shutdown));
    tracing::info!(%local, "media on UDP");
    Ok(MediaHandle { tx, local })
}

struct Meeting {
    router: Router,
    room: mpsc::Sender<RoomCmd>,
    /// What each member said its published m-lines carry (camera or screen).
    published: HashMap<(ParticipantId, String), MediaKind>,
    /// What the core allows each member to send: (audio, video, screen).
    allowed: HashMap<ParticipantId, (bool, bool, bool)>,
}

struct Driver {
    socket: UdpSocket,
    local: SocketAddr,
    meetings: HashMap<MeetingId, Meeting>,
    by_source: HashMap<SocketAddr, MeetingId>,
}

fn peer(p: ParticipantId) -> PeerId {
    PeerId(p.0)
}

impl Driver {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<DriverCmd>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let next = self
                .meetings
                .values()
                .filter_map(|m| m.router.poll_timeout())
                .min();
            let sleep = next.map(tokio::time::Instant::from_std);
            tokio::select! {
                () = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                recv = self.socket.recv_from(&mut buf) => match recv {
                    Ok((n, from)) => self.datagram(from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "media socket receive"),
                },
                () = sleep_until(sleep), if sleep.is_some() => {
                    let now = Instant::now();
                    for m in self.meetings.values_mut() {
                        if m.router.poll_timeout().is_some_and(|t| t <= now) {
                            m.router.handle_timeout(now);
                        }
                    }
                }
            }
            self.flush().await;
        }
    }

    fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        if let Some(m) = self
            .by_source
            .get(&from)
            .and_then(|id| self.meetings.get_mut(id))
        {
            m.router.handle_receive(now, from, self.local, data);
            return;
        }
        // First datagram from this address: the router whose peer accepts it.
        let owner = self
            .meetings
            .iter()
            .find(|(_, m)| m.router.accepts(now, from, self.local, data))
            .map(|(id, _)| *id);
        let Some(id) = owner else {
            return;
        };
        if self.by_source.len() >= MAX_SOURCES {
            self.by_source.clear();
        }
        self.by_source.insert(from, id);
        if let Some(m) = self.meetings.get_mut(&id) {
            m.router.handle_receive(now, from, self.local, data);
        }
    }

    fn command(&mut self, cmd: DriverCmd) {
        let now = Instant::now();
        match cmd {
            DriverCmd::Closed { meeting } => {
                self.meetings.remove(&meeting);
                self.by_source.retain(|_, m| *m != meeting);
            }
            DriverCmd::Media { meeting, room, cmd } => {
                let local = self.local;
                let m = match self.meetings.entry(meeting) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let config = RouterConfig {
                            // The core decides what may be forwarded.
                            forward_by_default: false,
                            ..RouterConfig::new(local)
                        };
                        let Ok(router) = Router::new(config) else {
                            tracing::error!(%local, "unusable media address");
                            return;
                        };
                        e.insert(Meeting {
                            router,
                            room: room.clone(),
                            published: HashMap::new(),
                            allowed: HashMap::new(),
                        })
                    }
                };
                m.room = room;
                m.handle(cmd, now);
            }
        }
    }

    /// Sends what the routers queued and delivers their events to the rooms.
    async fn flush(&mut self) {
        for m in self.meetings.values_mut() {
            while let Some(t) = m.router.poll_transmit() {
                if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                    tracing::debug!(error = %e, "media send");
                }
            }
            while let Some(event) = m.router.poll_event() {
                m.event(event);
            }
        }
    }
}

impl Meeting {
    fn report(&self, event: MediaEvent) {
        if self
            .room
            .try_send(RoomCmd::Input(Input::Media(event)))
            .is_err()
        {
            tracing::warn!("room queue full; media event dropped");
        }
    }

    fn handle(&mut self, cmd: MediaCommand, now: Instant) {
        match cmd {
            MediaCommand::Offer {
                participant,
                sdp,
                tracks,
            } => {
                let id = peer(participant);
                if !self.router.peers().any(|p| p == id)
                    && let Err(e) = self.router.add_peer(id, now)
                {
                    tracing::warn!(error = %e, "adding a media peer");
                }
                let answer = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|offer| {
                        self.router
                            .accept_offer(id, offer)
                            .map_err(|e| e.to_string())
                    });
                match answer {
                    Ok(answer) => {
                        self.published.retain(|(p, _), _| *p != participant);
                        for t in tracks {
                            self.published.insert((participant, t.mid), t.kind);
                        }
                        self.apply_gates(participant);
                        self.report(MediaEvent::Answer {
                            participant,
                            sdp: answer.to_sdp_string(),
                        });
                    }
                    Err(why) => {
                        tracing::info!(%participant, %why, "media offer refused");
                        self.report(MediaEvent::Refused { participant });
                    }
                }
            }
            MediaCommand::Answer { participant, sdp } => {
                let result = SdpAnswer::from_sdp_string(&sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        self.router
                            .accept_answer(peer(participant), a)
                            .map_err(|e| e.to_string())
                    });
                if let Err(why) = result {
                    tracing::info!(%participant, %why, "media answer refused");
                    self.report(MediaEvent::Refused { participant });
                }
            }
            MediaCommand::Allow {
                participant,
                audio,
                video,
                screen,
            } => {
                self.allowed.insert(participant, (audio, video, screen));
                self.apply_gates(participant);
            }
            MediaCommand::ViewSize {
                subscriber,
                publisher,
                kind,
                width,
                height,
            } => {
                // The core names a kind; the router a track: the publisher's
                // m-lines that carry that kind.
                let mids: Vec<String> = self
                    .published
                    .iter()
                    .filter(|((p, _), k)| *p == publisher && **k == kind)
                    .map(|((_, mid), _)| mid.clone())
                    .collect();
                for mid in mids {
                    self.router.set_view_size(
                        peer(subscriber),
                        peer(publisher),
                        conclave_media::Mid::from(mid.as_str()),
                        width,
                        height,
                    );
                }
            }
            MediaCommand::KeyFrame { participant } => {
                self.router.request_key_frames(peer(participant));
            }
            MediaCommand::Leave { participant } => {
                let _ = self.router.remove_peer(peer(participant));
                self.published.retain(|(p, _), _| *p != participant);
                self.allowed.remove(&participant);
            }
        }
    }

    /// Forwards each of a member's tracks only while the core allows its kind.
    /// An m-line the member sends but did not declare is never forwarded.
    fn apply_gates(&mut self, participant: ParticipantId) {
        let (audio, video, screen) = self.allowed.get(&participant).copied().unwrap_or_default();
        let id = peer(participant);
        for mid in self.router.published(id) {
            let allowed = match self.published.get(&(participant, mid.to_string())) {
                Some(MediaKind::Audio) => audio,
                Some(MediaKind::Video) => video,
                Some(MediaKind::Screen) => screen,
                None => false,
            };
            self.router.set_forwarding(id, mid, allowed);
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Offer {
                peer,
                offer,
                tracks,
            } => {
                let tracks = tracks
                    .into_iter()
                    .map(|t| {
                        let publisher = ParticipantId(t.publisher.0);
                        let kind = self
                            .published
                            .get(&(publisher, t.publisher_mid.to_string()))
                            .copied()
                            .unwrap_or(match t.kind {
                                conclave_media::MediaKind::Audio => MediaKind::Audio,
                                _ => MediaKind::Video,
                            });
                        RemoteTrack {
                            mid: t.mid.to_string(),
                            participant: publisher,
                            kind,
                        }
                    })
                    .collect();
                self.report(MediaEvent::Offer {
                    participant: ParticipantId(peer.0),
                    sdp: offer.to_sdp_string(),
                    tracks,
                });
            }
            Event::Published { peer, .. } => self.apply_gates(ParticipantId(peer.0)),
            Event::ActiveSpeaker { peer } => self.report(MediaEvent::ActiveSpeaker {
                participant: ParticipantId(peer.0),
            }),
            Event::Connected { peer } => tracing::debug!(%peer, "media connected"),
            Event::Disconnected { peer } => tracing::debug!(%peer, "media disconnected"),
            Event::Closed { peer } => tracing::debug!(%peer, "media closed"),
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
