//! A member's media as the core rules it: what each member may send (holds,
//! suspension, the screen-share policy), its offers and answers checked and
//! passed to the media router, and the router's reports delivered back. The
//! router never talks to a client except through here.

use conclave_proto::{
    ClientMessage, ErrorCode, MAX_SDP_BYTES, MediaKind, ParticipantId, Permissions, PublishedTrack,
    ScreenShare, ServerMessage,
};

use super::{Meeting, Member, Output, Refusal};
use crate::media::{MediaCommand, MediaEvent};

/// Tracks one member may publish at once (camera, microphone, screen, and spares).
const MAX_PUBLISHED_TRACKS: usize = 8;
/// Longest SDP `mid` accepted.
const MAX_MID_LEN: usize = 32;
/// Largest view size a client may report, in pixels per side.
const MAX_VIEW_SIDE: u32 = 16_384;

impl Member {
    /// Whether this member may turn `kind` on now.
    fn may_send(&self, kind: MediaKind, permissions: &Permissions, suspended: bool) -> bool {
        if self.role.moderates() {
            return true;
        }
        if suspended || !self.may_publish(permissions.publish) {
            return false;
        }
        match kind {
            MediaKind::Audio => !self.held_audio || permissions.self_unmute,
            MediaKind::Video => !self.held_video,
            MediaKind::Screen => {
                !self.held_screen && permissions.screen_share == ScreenShare::Everyone
            }
        }
    }
}

impl Meeting {
    /// A member's own media: what it sends, its SDP with the router, key
    /// frame requests, and the size it shows someone's video at.
    pub(super) fn media_message(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        match msg {
            ClientMessage::SetMedia {
                audio,
                video,
                screen,
            } => self.set_media(me, audio, video, screen),
            ClientMessage::MediaOffer { sdp, tracks } => self.media_offer(me, sdp, tracks),
            ClientMessage::MediaAnswer { sdp } => self.media_answer(me, sdp),
            ClientMessage::KeyFrameRequest => {
                self.out
                    .push_back(Output::Media(MediaCommand::KeyFrame { participant: me }));
                Ok(())
            }
            ClientMessage::ViewSize {
                participant,
                kind,
                width,
                height,
            } => self.view_size(me, participant, kind, width, height),
            // `message` routes no other kind here.
            _ => Err(ErrorCode::BadMessage),
        }
    }

    fn set_media(
        &mut self,
        me: ParticipantId,
        audio: Option<bool>,
        video: Option<bool>,
        screen: Option<bool>,
    ) -> Result<(), Refusal> {
        let permissions = self.config.permissions;
        let suspended = self.suspended;
        let m = self.members.get_mut(&me).ok_or(ErrorCode::NotJoined)?;
        // Check every requested change before applying any, so a refusal changes nothing.
        let refused = [
            (audio, MediaKind::Audio),
            (video, MediaKind::Video),
            (screen, MediaKind::Screen),
        ]
        .iter()
        .any(|(on, kind)| *on == Some(true) && !m.may_send(*kind, &permissions, suspended));
        if refused {
            return Err(ErrorCode::NotPermitted);
        }
        let before = (m.audio, m.video, m.screen);
        if let Some(a) = audio {
            m.audio = a;
            if a {
                m.held_audio = false;
            }
        }
        if let Some(v) = video {
            m.video = v;
        }
        if let Some(s) = screen {
            m.screen = s;
        }
        if before != (m.audio, m.video, m.screen) {
            self.broadcast_participant(me);
        }
        Ok(())
    }

    /// Checks a member's offer: bounded, well-formed track list, and no track
    /// of a kind the member may not send (a screen share without permission is
    /// refused whole, and nothing changes).
    fn media_offer(
        &mut self,
        me: ParticipantId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    ) -> Result<(), Refusal> {
        let m = self.members.get(&me).ok_or(ErrorCode::NotJoined)?;
        if sdp.len() > MAX_SDP_BYTES
            || tracks.len() > MAX_PUBLISHED_TRACKS
            || tracks
                .iter()
                .any(|t| t.mid.is_empty() || t.mid.len() > MAX_MID_LEN)
        {
            return Err(ErrorCode::MediaRefused);
        }
        if tracks.iter().any(|t| {
            t.kind == MediaKind::Screen
                && !m.may_send(t.kind, &self.config.permissions, self.suspended)
        }) {
            return Err(ErrorCode::NotPermitted);
        }
        self.out.push_back(Output::Media(MediaCommand::Offer {
            participant: me,
            sdp,
            tracks,
        }));
        Ok(())
    }

    fn media_answer(&mut self, me: ParticipantId, sdp: String) -> Result<(), Refusal> {
        if sdp.len() > MAX_SDP_BYTES {
            return Err(ErrorCode::MediaRefused);
        }
        self.out.push_back(Output::Media(MediaCommand::Answer {
            participant: me,
            sdp,
        }));
        Ok(())
    }

    /// The size `me` shows a member's video at, for the router's choice of
    /// simulcast layer.
    fn view_size(
        &mut self,
        me: ParticipantId,
        participant: ParticipantId,
        kind: MediaKind,
        width: u32,
        height: u32,
    ) -> Result<(), Refusal> {
        if !self.members.contains_key(&participant) {
            return Err(ErrorCode::UnknownParticipant);
        }
        if width > MAX_VIEW_SIDE || height > MAX_VIEW_SIDE {
            return Err(ErrorCode::BadMessage);
        }
        self.out.push_back(Output::Media(MediaCommand::ViewSize {
            subscriber: me,
            publisher: participant,
            kind,
            width,
            height,
        }));
        Ok(())
    }

    /// Delivers a router report to its member, if still a member.
    pub(super) fn media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Answer { participant, sdp } => {
                self.send_to_member(participant, ServerMessage::MediaAnswer { sdp });
            }
            MediaEvent::Offer {
                participant,
                sdp,
                tracks,
            } => {
                self.send_to_member(participant, ServerMessage::MediaOffer { sdp, tracks });
            }
            MediaEvent::Refused { participant } => {
                self.send_to_member(participant, ServerMessage::error(ErrorCode::MediaRefused));
            }
            MediaEvent::ActiveSpeaker { participant } => {
                if self.members.contains_key(&participant) {
                    self.broadcast(&ServerMessage::ActiveSpeaker { participant });
                }
            }
            MediaEvent::LayersWanted {
                participant,
                mid,
                rids,
            } => {
                // The publisher's own encoder setting: nobody else's business.
                self.send_to_member(participant, ServerMessage::LayersWanted { mid, rids });
            }
            MediaEvent::VideoPaused {
                participant,
                mid,
                paused,
            } => {
                // The subscriber's own link: nobody else's business.
                self.send_to_member(participant, ServerMessage::VideoPaused { mid, paused });
            }
        }
    }
}
