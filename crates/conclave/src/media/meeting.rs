//! One meeting's media on a worker ([`MeetingMedia`]): its [`Router`], what
//! the core allows each member to send, and the translation between the
//! router's events and the core's [`MediaEvent`]s, which go to the meeting's
//! own event queue.

use std::collections::HashMap;
use std::time::Instant;

use conclave_core::{MediaCommand, MediaEvent};
use conclave_media::{Event, PeerId, Router, SdpAnswer, SdpOffer};
use conclave_proto::{MediaKind, ParticipantId, PublishedTrack, RemoteTrack};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The media side of one meeting (the room holds the meeting's core).
pub struct MeetingMedia {
    pub router: Router,
    /// Where the meeting's room hears from its media.
    events: mpsc::Sender<MediaEvent>,
    /// What each member said its published m-lines carry (camera or screen).
    published: HashMap<(ParticipantId, String), MediaKind>,
    /// What the core allows each member to send: (audio, video, screen).
    allowed: HashMap<ParticipantId, (bool, bool, bool)>,
    /// Whether this router's active speaker goes to the room: of a meeting
    /// spread over several workers, only the home shard's does.
    reports_speaker: bool,
    /// The ICE username fragment of each member's last accepted offer: an
    /// offer with another one comes from a new peer connection.
    ufrags: HashMap<ParticipantId, String>,
}

/// The offer's ICE username fragment (the session's, or its first m-line's).
fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
}

fn peer(p: ParticipantId) -> PeerId {
    PeerId(p.0)
}

impl MeetingMedia {
    pub fn new(router: Router, events: mpsc::Sender<MediaEvent>) -> Self {
        MeetingMedia {
            router,
            events,
            published: HashMap::new(),
            allowed: HashMap::new(),
            reports_speaker: true,
            ufrags: HashMap::new(),
        }
    }

    pub fn reports_speaker(mut self, on: bool) -> Self {
        self.reports_speaker = on;
        self
    }

    /// What a member served by another shard publishes: how its tracks are
    /// labelled in offers, and which of them a view size concerns.
    pub fn declare(&mut self, participant: ParticipantId, tracks: Vec<PublishedTrack>) {
        self.published.retain(|(p, _), _| *p != participant);
        for t in tracks {
            self.published.insert((participant, t.mid), t.kind);
        }
    }

    fn report(&self, event: MediaEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("room's media event queue full; media event dropped");
            }
            // The room stopped (nobody is left in the meeting) and its close
            // is on the way: the event concerns members who are gone.
            Err(TrySendError::Closed(_)) => {
                tracing::debug!("meeting's room stopped; media event dropped");
            }
        }
    }

    pub fn handle(&mut self, cmd: MediaCommand, now: Instant) {
        match cmd {
            MediaCommand::Offer {
                participant,
                sdp,
                tracks,
            } => {
                let id = peer(participant);
                let ufrag = ice_ufrag(&sdp).map(str::to_string);
                // A resumed seat's new peer connection (the old one went
                // with the old socket): its offer starts a new session,
                // which the old peer's cannot take (one DTLS session per
                // peer), so the old peer goes and a new one takes it. What
                // the core allows the member to send stays.
                let known = self.ufrags.get(&participant);
                if self.router.peers().any(|p| p == id)
                    && known.is_some()
                    && ufrag.is_some()
                    && known != ufrag.as_ref()
                {
                    tracing::info!(%participant, "a new peer connection replaces the member's old one");
                    let _ = self.router.remove_peer(id);
                    self.published.retain(|(p, _), _| *p != participant);
                }
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
                        if let Some(u) = ufrag {
                            self.ufrags.insert(participant, u);
                        }
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
                // Its tracks held here as remote tracks end too: its shard
                // says so itself, but a node that went away cannot.
                let mids: Vec<String> = self
                    .published
                    .keys()
                    .filter(|(p, _)| *p == participant)
                    .map(|(_, mid)| mid.clone())
                    .collect();
                for mid in mids {
                    let track = conclave_media::TrackId {
                        publisher: peer(participant),
                        mid: conclave_media::Mid::from(mid.as_str()),
                    };
                    self.router.handle_relay(
                        u32::MAX,
                        conclave_media::relay::Relayed::Unpublished { track },
                        now,
                    );
                }
                self.published.retain(|(p, _), _| *p != participant);
                self.allowed.remove(&participant);
                self.ufrags.remove(&participant);
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

    pub fn event(&mut self, event: Event) {
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
            Event::ActiveSpeaker { .. } if !self.reports_speaker => {}
            Event::ActiveSpeaker { peer } => self.report(MediaEvent::ActiveSpeaker {
                participant: ParticipantId(peer.0),
            }),
            Event::LayersWanted { peer, mid, rids } => self.report(MediaEvent::LayersWanted {
                participant: ParticipantId(peer.0),
                mid: mid.to_string(),
                rids: rids.iter().map(|r| r.to_string()).collect(),
            }),
            Event::VideoPaused { peer, mid, paused } => self.report(MediaEvent::VideoPaused {
                participant: ParticipantId(peer.0),
                mid: mid.to_string(),
                paused,
            }),
            Event::Connected { peer } => tracing::debug!(%peer, "media connected"),
            Event::Disconnected { peer } => tracing::debug!(%peer, "media disconnected"),
            Event::Closed { peer } => tracing::debug!(%peer, "media closed"),
        }
    }
}
