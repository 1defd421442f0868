//! View-only attendees: while only allowed people may publish, a participant
//! sends nothing the router would forward until a moderator allows them, and
//! "Stop" takes it back at once. Tried the way a modified client would.

use conclave_core::MediaCommand;
use conclave_proto::{
    ClientMessage, ErrorCode, MediaKind, ParticipantId, PermissionsPatch, PublishedTrack,
    Publishing, Role, ScreenShare,
};

use crate::support::{HOST, Room, allowed, error_of, media, meeting_update, update_of};

fn allow(participant: ParticipantId, allowed: bool) -> ClientMessage {
    ClientMessage::AllowPublish {
        participant,
        allowed,
    }
}

fn only_allowed() -> PermissionsPatch {
    PermissionsPatch {
        publish: Some(Publishing::Allowed),
        ..PermissionsPatch::default()
    }
}

fn everything_on() -> ClientMessage {
    ClientMessage::SetMedia {
        audio: Some(true),
        video: Some(true),
        screen: Some(true),
    }
}

#[test]
fn a_view_only_attendee_publishes_nothing_until_allowed_and_stop_takes_it_back() {
    let mut room = Room::hosted_with(|c| {
        c.permissions.publish = Publishing::Allowed;
        c.permissions.screen_share = ScreenShare::Everyone;
    });
    let grace = room.admit(2, "Grace");

    // Everything she asks for is refused, and the router is never told to
    // forward any of it: RTP she sends anyway is dropped.
    for msg in [
        room_media(true, false),
        room_media(false, true),
        everything_on(),
    ] {
        let out = room.msg(2, msg);
        assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));
        assert_eq!(allowed(&out, grace), None, "{out:?}");
    }
    let screen_offer = ClientMessage::MediaOffer {
        sdp: "v=0".into(),
        tracks: vec![PublishedTrack {
            mid: "2".into(),
            kind: MediaKind::Screen,
        }],
    };
    let out = room.msg(2, screen_offer.clone());
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));
    assert!(media(&out).is_empty());
    // A participant may not allow herself (nor anyone).
    let out = room.msg(2, allow(grace, true));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));

    // The host allows her: everyone is told, and now she may.
    let out = room.msg(HOST, allow(grace, true));
    assert!(update_of(&out, HOST, grace).is_some_and(|p| p.publish_allowed));
    let out = room.msg(2, everything_on());
    assert_eq!(error_of(&out, 2), None, "{out:?}");
    assert_eq!(allowed(&out, grace), Some((true, true, true)));

    // "Stop": the router stops forwarding all of it, and she cannot restart.
    let out = room.msg(HOST, allow(grace, false));
    assert_eq!(allowed(&out, grace), Some((false, false, false)));
    let p = update_of(&out, HOST, grace).expect("told");
    assert!(!p.publish_allowed && !p.audio && !p.video && !p.screen);
    let out = room.msg(2, room_media(true, false));
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotPermitted));
}

fn room_media(audio: bool, video: bool) -> ClientMessage {
    ClientMessage::SetMedia {
        audio: Some(audio),
        video: Some(video),
        screen: None,
    }
}

#[test]
fn switching_to_allowed_only_silences_participants_but_not_moderators() {
    let mut room = Room::hosted();
    let grace = room.admit(2, "Grace");
    let linus = room.admit(3, "Linus");
    room.set_role(linus, Role::Cohost);
    let host = room.id_of(HOST);
    for conn in [HOST, 2, 3] {
        let out = room.msg(conn, room_media(true, true));
        assert_eq!(error_of(&out, conn), None);
    }

    let out = room.permissions(only_allowed());
    assert_eq!(
        meeting_update(&out, 2).map(|m| m.permissions.publish),
        Some(Publishing::Allowed)
    );
    assert_eq!(allowed(&out, grace), Some((false, false, false)));
    assert_eq!(allowed(&out, linus), None, "a co-host keeps publishing");
    assert_eq!(allowed(&out, host), None, "the host keeps publishing");

    // A co-host made a participant again becomes view-only.
    room.set_role(linus, Role::Participant);
    let out = room.msg(3, room_media(true, false));
    assert_eq!(error_of(&out, 3), Some(ErrorCode::NotPermitted));

    // Back to everyone: Grace may turn her camera on again herself.
    room.permissions(PermissionsPatch {
        publish: Some(Publishing::Everyone),
        ..PermissionsPatch::default()
    });
    let out = room.msg(2, room_media(false, true));
    assert_eq!(error_of(&out, 2), None);
    assert_eq!(allowed(&out, grace), Some((false, true, false)));
}

#[test]
fn a_co_host_may_allow_but_a_stranger_id_is_refused() {
    let mut room = Room::hosted_with(|c| c.permissions.publish = Publishing::Allowed);
    let grace = room.admit(2, "Grace");
    let linus = room.admit(3, "Linus");
    room.set_role(linus, Role::Cohost);
    let out = room.msg(3, allow(grace, true));
    assert_eq!(error_of(&out, 3), None);
    let out = room.msg(HOST, allow(ParticipantId(999), true));
    assert_eq!(error_of(&out, HOST), Some(ErrorCode::UnknownParticipant));
    assert!(
        !media(&out)
            .iter()
            .any(|c| matches!(c, MediaCommand::Allow { .. }))
    );
}
