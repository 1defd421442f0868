//! The core's media rules: who may publish what, what the router may forward,
//! and that router reports reach members only.

use conclave_core::{Input, MediaCommand, MediaEvent};
use conclave_proto::{
    ClientMessage, ErrorCode, MediaKind, ParticipantId, PermissionsPatch, PublishedTrack,
    RemoteTrack, ScreenShare, ServerMessage,
};

use crate::support::{Room, error_of, media, sent};

/// Host on conn 1 (p1), an admitted guest on conn 2 (p2), a waiting guest on conn 3 (p3).
fn with_members() -> Room {
    let mut room = Room::hosted();
    room.admit(2, "user2");
    room.wait(3, "user3");
    room
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
    let mut room = with_members();
    let out = room.msg(
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
    let mut room = with_members();
    let out = room.msg(3, offer(&[("0", MediaKind::Video)]));
    assert!(media(&out).is_empty());
    assert_eq!(error_of(&out, 3), Some(ErrorCode::NotJoined));
}

#[test]
fn participant_screen_share_offer_is_refused_until_allowed() {
    let mut room = with_members();
    let out = room.msg(
        2,
        offer(&[("0", MediaKind::Video), ("1", MediaKind::Screen)]),
    );
    assert!(
        media(&out).is_empty(),
        "refused whole: nothing reaches the router"
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));

    room.msg(
        1,
        ClientMessage::SetPermissions {
            permissions: PermissionsPatch {
                screen_share: Some(ScreenShare::Everyone),
                ..PermissionsPatch::default()
            },
        },
    );
    let out = room.msg(
        2,
        offer(&[("0", MediaKind::Video), ("1", MediaKind::Screen)]),
    );
    assert_eq!(media(&out).len(), 1);
    // The host may always share.
    let out = room.msg(1, offer(&[("0", MediaKind::Screen)]));
    assert_eq!(media(&out).len(), 1);
}

#[test]
fn oversized_or_malformed_offers_are_refused() {
    let mut room = with_members();
    let big = ClientMessage::MediaOffer {
        sdp: "x".repeat(conclave_proto::MAX_SDP_BYTES + 1),
        tracks: vec![],
    };
    let out = room.msg(2, big);
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    let many: Vec<(&str, MediaKind)> = (0..9).map(|_| ("m", MediaKind::Audio)).collect();
    let out = room.msg(2, offer(&many));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    let out = room.msg(2, offer(&[("", MediaKind::Audio)]));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MediaRefused));
    assert!(media(&out).is_empty());
}

#[test]
fn router_is_told_what_may_be_forwarded() {
    let mut room = with_members();
    let out = room.msg(
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
    let out = room.msg(
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
    let out = room.msg(1, ClientMessage::SuspendActivities);
    assert!(media(&out).contains(&MediaCommand::Allow {
        participant: ParticipantId(2),
        audio: false,
        video: false,
        screen: false
    }));
}

#[test]
fn leaving_or_removal_closes_the_peer() {
    let mut room = with_members();
    let out = room.msg(
        1,
        ClientMessage::Remove {
            participant: ParticipantId(2),
        },
    );
    assert!(media(&out).contains(&MediaCommand::Leave {
        participant: ParticipantId(2)
    }));
    let out = room.msg(1, ClientMessage::EndMeeting);
    assert!(media(&out).contains(&MediaCommand::Leave {
        participant: ParticipantId(1)
    }));
}

#[test]
fn router_reports_reach_members_only() {
    let mut room = with_members();
    let out = room.input(Input::Media(MediaEvent::Offer {
        participant: ParticipantId(2),
        sdp: "v=0".into(),
        tracks: vec![RemoteTrack {
            mid: "3".into(),
            participant: ParticipantId(1),
            kind: MediaKind::Video,
        }],
    }));
    assert!(matches!(
        sent(&out, 2).as_slice(),
        [ServerMessage::MediaOffer { .. }]
    ));
    // An event naming the waiting person's id goes nowhere.
    let out = room.input(Input::Media(MediaEvent::Answer {
        participant: ParticipantId(3),
        sdp: "v=0".into(),
    }));
    assert!(out.is_empty());
    let out = room.input(Input::Media(MediaEvent::ActiveSpeaker {
        participant: ParticipantId(1),
    }));
    assert!(sent(&out, 3).is_empty());
    assert_eq!(sent(&out, 2).len(), 1);
}

#[test]
fn layers_wanted_goes_to_the_publisher_alone() {
    let mut room = with_members();
    let out = room.input(Input::Media(MediaEvent::LayersWanted {
        participant: ParticipantId(1),
        mid: "0".into(),
        rids: vec!["q".into(), "h".into()],
    }));
    assert_eq!(
        sent(&out, 1),
        vec![ServerMessage::LayersWanted {
            mid: "0".into(),
            rids: vec!["q".into(), "h".into()],
        }]
    );
    assert!(sent(&out, 2).is_empty(), "another member is not told");
    assert!(sent(&out, 3).is_empty(), "the waiting room is not told");
    // Naming the waiting person: nowhere.
    let out = room.input(Input::Media(MediaEvent::LayersWanted {
        participant: ParticipantId(3),
        mid: "0".into(),
        rids: Vec::new(),
    }));
    assert!(out.is_empty());
}

#[test]
fn video_paused_goes_to_the_subscriber_alone() {
    let mut room = with_members();
    let out = room.input(Input::Media(MediaEvent::VideoPaused {
        participant: ParticipantId(2),
        mid: "3".into(),
        paused: true,
    }));
    assert_eq!(
        sent(&out, 2),
        vec![ServerMessage::VideoPaused {
            mid: "3".into(),
            paused: true,
        }]
    );
    assert!(sent(&out, 1).is_empty(), "another member is not told");
    assert!(sent(&out, 3).is_empty(), "the waiting room is not told");
    let out = room.input(Input::Media(MediaEvent::VideoPaused {
        participant: ParticipantId(3),
        mid: "3".into(),
        paused: true,
    }));
    assert!(out.is_empty(), "nor is a waiting person named");
}

#[test]
fn view_size_is_bounded_and_names_a_member() {
    let mut room = with_members();
    let out = room.msg(
        2,
        ClientMessage::ViewSize {
            participant: ParticipantId(1),
            kind: MediaKind::Video,
            width: 320,
            height: 180,
        },
    );
    assert_eq!(media(&out).len(), 1);
    let out = room.msg(
        2,
        ClientMessage::ViewSize {
            participant: ParticipantId(3),
            kind: MediaKind::Video,
            width: 320,
            height: 180,
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::UnknownParticipant));
    let out = room.msg(
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
