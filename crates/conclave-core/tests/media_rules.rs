//! The core's media rules: who may publish what, what the router may forward,
//! and that router reports reach members only.
// One real instant is the origin of the virtual clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use conclave_core::{
    ConnId, Identity, Input, MediaCommand, MediaEvent, Meeting, MeetingConfig, Output,
};
use conclave_proto::{
    ClientMessage, ErrorCode, MediaKind, ParticipantId, Permissions, PermissionsPatch,
    PublishedTrack, RemoteTrack, ResumeToken, ScreenShare, ServerMessage,
};

const OWNER: i64 = 7;

struct Harness {
    meeting: Meeting,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        let config = MeetingConfig {
            title: "t".into(),
            owner: OWNER,
            permissions: Permissions::default(),
            waiting_room: true,
            only_signed_in: false,
            max_participants: 100,
        };
        Harness {
            meeting: Meeting::new(config, Vec::new()),
            now: Instant::now(),
        }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.meeting.handle(input, self.now);
        std::iter::from_fn(|| self.meeting.poll_output()).collect()
    }

    fn join(&mut self, conn: u64, account: Option<i64>) -> Vec<Output> {
        self.input(Input::Join {
            conn: ConnId(conn),
            name: format!("user{conn}"),
            recorder: false,
            identity: Identity {
                account,
                guest: Some(format!("g{conn}")),
                address: None,
            },
            resume_token: ResumeToken::generate(),
        })
    }

    fn msg(&mut self, conn: u64, msg: ClientMessage) -> Vec<Output> {
        self.input(Input::Message {
            conn: ConnId(conn),
            msg,
        })
    }

    /// Host on conn 1 (p1), an admitted guest on conn 2 (p2), a waiting guest on conn 3 (p3).
    fn with_members() -> Self {
        let mut h = Harness::new();
        h.join(1, Some(OWNER));
        h.join(2, None);
        h.msg(
            1,
            ClientMessage::Admit {
                participant: ParticipantId(2),
            },
        );
        h.join(3, None);
        h
    }
}

fn media(out: &[Output]) -> Vec<MediaCommand> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn sent_to(out: &[Output], conn: u64) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, msg } if *c == ConnId(conn) => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn error_of(out: &[Output], conn: u64) -> Option<ErrorCode> {
    sent_to(out, conn).into_iter().find_map(|m| match m {
        ServerMessage::Error { code, .. } => Some(code),
        _ => None,
    })
}

fn offer(tracks: &[(&str, MediaKind)]) -> ClientMessage {
    ClientMessage::MediaOffer {
        sdp: "v=0".into(),
        tracks: tracks
            .iter()
            .map(|(mid, kind)| PublishedTrack {
                mid: (*mid).into(),
                kind: *kind,
            })
            .collect(),
    }
}

#[test]
fn member_offer_goes_to_the_router() {
    let mut h = Harness::with_members();
    let out = h.msg(
        2,
        offer(&[("0", MediaKind::Audio), ("1", MediaKind::Video)]),
    );
    assert!(matches!(
        media(&out).as_slice(),
        [MediaCommand::Offer { participant: ParticipantId(2), tracks, .. }] if tracks.len() == 2
    ));
}

#[test]
fn waiting_connection_cannot_offer_media() {
    let mut h = Harness::with_members();
    let out = h.msg(3, offer(&[("0", MediaKind::Video)]));
    assert!(media(&out).is_empty());
    assert_eq!(error_of(&out, 3), Some(ErrorCode::NotJoined));
}

#[test]
fn participant_screen_share_offer_is_refused_until_allowed() {
    let mut h = Harness::with_members();
    let out = h.msg(
        2,
        offer(&[("0", MediaKind::Video), ("1", MediaKind::Screen)]),
    );
    assert!(
        media(&out).is_empty(),
        "refused whole: nothing reaches the router"
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));

    h.msg(
        1,
        ClientMessage::SetPermissions {
            permissions: PermissionsPatch {
                screen_share: Some(ScreenShare::Everyone),
                ..PermissionsPatch::default()
            },
        },
    );
    let out = h.msg(
        2,
        offer(&[("0", MediaKind::Video), ("1", MediaKind::Screen)]),
    );
    assert_eq!(media(&out).len(), 1);
    // The host may always share.
    let out = h.msg(1, offer(&[("0", MediaKind::Screen)]));
    assert_eq!(media(&out).len(), 1);
}

#[test]
fn oversized_or_malformed_offers_are_refused() {
    let mut h = Harness::with_members();
    let big = ClientMessage::MediaOffer {
        sdp: "x".repeat(conclave_proto::MAX_SDP_BYTES + 1),
        tracks: vec![],
    };
    let out = h.msg(2, big);
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    let many: Vec<(&str, MediaKind)> = (0..9).map(|_| ("m", MediaKind::Audio)).collect();
    let out = h.msg(2, offer(&many));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    let out = h.msg(2, offer(&[("", MediaKind::Audio)]));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    assert!(media(&out).is_empty());
}

#[test]
fn router_is_told_what_may_be_forwarded() {
    let mut h = Harness::with_members();
    let out = h.msg(
        2,
        ClientMessage::SetMedia {
            audio: Some(true),
            video: Some(true),
            screen: None,
        },
    );
    assert_eq!(
        media(&out),
        vec![MediaCommand::Allow {
            participant: ParticipantId(2),
            audio: true,
            video: true,
            screen: false
        }]
    );
    // The host mutes them: the router stops forwarding their audio.
    let out = h.msg(
        1,
        ClientMessage::StopMedia {
            participant: ParticipantId(2),
            kind: MediaKind::Audio,
        },
    );
    assert_eq!(
        media(&out),
        vec![MediaCommand::Allow {
            participant: ParticipantId(2),
            audio: false,
            video: true,
            screen: false
        }]
    );
    // Suspension stops everything.
    let out = h.msg(1, ClientMessage::SuspendActivities);
    assert!(media(&out).contains(&MediaCommand::Allow {
        participant: ParticipantId(2),
        audio: false,
        video: false,
        screen: false
    }));
}

#[test]
fn leaving_or_removal_closes_the_peer() {
    let mut h = Harness::with_members();
    let out = h.msg(
        1,
        ClientMessage::Remove {
            participant: ParticipantId(2),
        },
    );
    assert!(media(&out).contains(&MediaCommand::Leave {
        participant: ParticipantId(2)
    }));
    let out = h.msg(1, ClientMessage::EndMeeting);
    assert!(media(&out).contains(&MediaCommand::Leave {
        participant: ParticipantId(1)
    }));
}

#[test]
fn router_reports_reach_members_only() {
    let mut h = Harness::with_members();
    let out = h.input(Input::Media(MediaEvent::Offer {
        participant: ParticipantId(2),
        sdp: "v=0".into(),
        tracks: vec![RemoteTrack {
            mid: "3".into(),
            participant: ParticipantId(1),
            kind: MediaKind::Video,
        }],
    }));
    assert!(matches!(
        sent_to(&out, 2).as_slice(),
        [ServerMessage::MediaOffer { .. }]
    ));
    // An event naming the waiting person's id goes nowhere.
    let out = h.input(Input::Media(MediaEvent::Answer {
        participant: ParticipantId(3),
        sdp: "v=0".into(),
    }));
    assert!(out.is_empty());
    let out = h.input(Input::Media(MediaEvent::ActiveSpeaker {
        participant: ParticipantId(1),
    }));
    assert!(sent_to(&out, 3).is_empty());
    assert_eq!(sent_to(&out, 2).len(), 1);
}

#[test]
fn view_size_is_bounded_and_names_a_member() {
    let mut h = Harness::with_members();
    let out = h.msg(
        2,
        ClientMessage::ViewSize {
            participant: ParticipantId(1),
            kind: MediaKind::Video,
            width: 320,
            height: 180,
        },
    );
    assert_eq!(media(&out).len(), 1);
    let out = h.msg(
        2,
        ClientMessage::ViewSize {
            participant: ParticipantId(3),
            kind: MediaKind::Video,
            width: 320,
            height: 180,
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::UnknownParticipant));
    let out = h.msg(
        2,
        ClientMessage::ViewSize {
            participant: ParticipantId(1),
            kind: MediaKind::Video,
            width: 1 << 20,
            height: 1,
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::BadMessage));
}
