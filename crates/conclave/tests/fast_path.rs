//! The media workers' fast path (`media_fast_path`, issue 16): forwarded
//! video sealed by the router itself rather than str0m. Native sessions
//! (end-to-end encrypted: a frame counts only once it decrypted) exchange
//! video and audio through it over UDP and over ICE-TCP, whose shell frames
//! the fast path's datagrams like str0m's.

use crate::common::{TestServer, ada_and_bob};
use conclave_client::media::PeerStats;
use conclave_client::session::{MediaOptions, Progress, run_with};
use conclave_proto::{MediaKind as Kind, ParticipantId};
use serde_json::json;

/// Frames decrypted from participants other than `me` (or from `from`
/// alone), (video, audio).
fn frames(stats: &PeerStats, me: ParticipantId, from: Option<ParticipantId>) -> (u64, u64) {
    let count = |kind: Kind| {
        stats
            .received
            .values()
            .filter(|t| t.participant.is_some_and(|who| who != me))
            .filter(|t| from.is_none() || t.participant == from)
            .filter(|t| t.kind == Some(kind))
            .map(|t| t.frames)
            .sum()
    };
    (count(Kind::Video), count(Kind::Audio))
}

async fn two_sessions(options: impl Fn() -> MediaOptions) {
    let server = TestServer::start_with(|c| c.media_fast_path = true).await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // Each stays until it has decrypted 60 of the other's video frames (two
    // seconds: the fast path's once-a-second str0m packets are among them)
    // and 80 audio frames.
    let (a, b) = ada_and_bob(&meeting, |p: &Progress<'_>| {
        let (video, audio) = frames(p.media, p.you, None);
        video >= 60 && audio >= 80
    });
    let a = tokio::spawn(run_with(options(), a));
    let b = tokio::spawn(run_with(options(), b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    for (me, other) in [(&a, &b), (&b, &a)] {
        let from = Some(other.admission.you);
        let (video, audio) = frames(&me.media, me.admission.you, from);
        assert!(video >= 60, "{video} video frames: {:?}", me.media);
        assert!(audio >= 80, "{audio} audio frames: {:?}", me.media);
    }
}

#[tokio::test]
async fn native_sessions_exchange_encrypted_media_through_the_fast_path() {
    two_sessions(MediaOptions::default).await;
}

#[tokio::test]
async fn the_fast_path_carries_media_over_ice_tcp() {
    two_sessions(|| MediaOptions {
        no_udp: true,
        relay_only: false,
        ..MediaOptions::default()
    })
    .await;
}
