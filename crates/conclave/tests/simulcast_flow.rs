//! Simulcast and active speaker end to end: native clients through a server
//! started in the test. A subscriber that asks for a smaller view is switched
//! to a smaller layer; the loud member is announced as active speaker to the
//! others.

use std::time::Duration;

use crate::common::{Meeting, TestServer, Together, frames_from_others, native_options, sample};
use conclave_client::media::TrackStats;
use conclave_client::session::{JoinOptions, MediaOptions, SessionReport, run_with};
use conclave_proto::MediaKind::{Audio, Video};
use serde_json::json;

fn options(meeting: &Meeting, name: &str) -> JoinOptions {
    JoinOptions {
        send_ivf: None,
        send_ogg: None,
        ..native_options(meeting, name)
    }
}

/// The video track received from `from`.
fn video_from(report: &SessionReport, from: u64) -> TrackStats {
    report
        .media
        .received
        .values()
        .find(|t| {
            t.participant.map(|p| p.0) == Some(from)
                && t.kind.and_then(|k| serde_json::to_value(k).ok()) == Some(json!("video"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("a video from {from}: {:?}", report.media))
}

#[tokio::test]
async fn a_simulcast_layer_switch_happens_when_the_subscriber_asks_for_a_smaller_view() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // A sends the test pattern at 80x60, 160x120 and 320x240 as layers q, h, f.
    let publisher = MediaOptions {
        simulcast_ivf: vec![
            sample("video-80x60.ivf"),
            sample("video-160x120.ivf"),
            sample("video-320x240.ivf"),
        ],
        ..MediaOptions::default()
    };
    // Both stay until B has had 150 frames and the switch to the smallest
    // layer.
    let both = Together::new(2);
    let mut a = options(&meeting, "Ada");
    a.until = both.member(0, |_| true);
    let a = tokio::spawn(run_with(publisher, a));
    // B shows A's video large at first, then as a thumbnail from 4 s on.
    let subscriber = MediaOptions {
        view_sizes: vec![(Duration::ZERO, 640, 480), (Duration::from_secs(4), 64, 48)],
        ..MediaOptions::default()
    };
    let mut b = options(&meeting, "Bob");
    b.until = both.member(1, |p| {
        p.media.received.values().any(|t| {
            t.kind == Some(Video) && t.frames >= 150 && t.keyframe_sizes.last() == Some(&(80, 60))
        })
    });
    let b = tokio::spawn(run_with(subscriber, b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let track = video_from(&b, a.admission.you.0);
    // The full layer for the large view, then the quarter one for the
    // thumbnail (the middle layer may come first, before the view size
    // reached the server).
    let sizes = &track.keyframe_sizes;
    assert!(
        sizes.ends_with(&[(320, 240), (80, 60)]),
        "key frame sizes received: {sizes:?}"
    );
    assert!(sizes.len() <= 3, "no flapping: {sizes:?}");
    // Frames kept coming through both switches.
    assert!(track.frames >= 150, "{track:?}");
    assert!(
        track.incomplete_frames * 20 <= track.frames,
        "the switches did not break the stream: {track:?}"
    );
    // A sent the whole time (one frame of each layer at a time): at least
    // every frame B received.
    let sent: u64 = a.media.sent_frames.values().sum();
    assert!(
        sent >= track.frames,
        "{:?} / {track:?}",
        a.media.sent_frames
    );
}

/// Frames A sent on layer `rid` of its one simulcast track.
fn layer_sent(media: &conclave_client::media::PeerStats, rid: &str) -> u64 {
    media
        .sent_layer_frames
        .iter()
        .filter(|(k, _)| k.ends_with(&format!("/{rid}")))
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::test]
async fn the_publisher_stops_the_layers_nobody_watches_and_the_viewer_keeps_its_video() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let publisher = MediaOptions {
        simulcast_ivf: vec![
            sample("video-80x60.ivf"),
            sample("video-160x120.ivf"),
            sample("video-320x240.ivf"),
        ],
        ..MediaOptions::default()
    };
    // A is done once told to send q alone and it has sent 60 frames of q
    // more than of h and f: they stopped while q went on (h may stop later
    // than f: it is what B gets before its view size reaches the server).
    // B is done with 100 frames.
    let both = Together::new(2);
    let mut a = options(&meeting, "Ada");
    a.until = both.member(0, |p| {
        p.media
            .layers_wanted
            .values()
            .any(|rids| rids == &["q".to_string()])
            && layer_sent(p.media, "q")
                >= layer_sent(p.media, "f").max(layer_sent(p.media, "h")) + 60
    });
    let a = tokio::spawn(run_with(publisher, a));
    // B shows A's video as a thumbnail: q is enough, h and f go unwatched.
    let subscriber = MediaOptions {
        view_sizes: vec![(Duration::ZERO, 64, 48)],
        ..MediaOptions::default()
    };
    let mut b = options(&meeting, "Bob");
    b.until = both.member(1, |p| frames_from_others(p, Video) >= 100);
    let b = tokio::spawn(run_with(subscriber, b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let (q, h, f) = (
        layer_sent(&a.media, "q"),
        layer_sent(&a.media, "h"),
        layer_sent(&a.media, "f"),
    );
    assert_eq!(
        a.media.layers_wanted.values().last(),
        Some(&vec!["q".to_string()]),
        "A was told to send q alone"
    );
    assert!(
        q >= f + 60 && q >= h + 60,
        "f and h stopped, q went on: {:?}",
        a.media.sent_layer_frames
    );
    // B was never told anything: it publishes no simulcast.
    assert!(b.media.layers_wanted.is_empty());
    let track = video_from(&b, a.admission.you.0);
    assert!(track.frames >= 100, "B still gets video: {track:?}");
    assert_eq!(track.keyframe_sizes.last(), Some(&(80, 60)), "{track:?}");
}

#[tokio::test]
async fn the_loud_member_is_announced_as_active_speaker() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let talking = |level| MediaOptions {
        audio_level: Some(level),
        ..MediaOptions::default()
    };
    // Both stay until each has heard an announcement and two seconds of
    // the other's audio: long enough for Bob's quiet audio to have been
    // weighed too, and not announced.
    let both = Together::new(2);
    let heard = |p: &conclave_client::session::Progress<'_>| {
        !p.active_speakers.is_empty() && frames_from_others(p, Audio) >= 100
    };
    let mut loud = options(&meeting, "Ada");
    loud.send_ogg = Some(sample("audio-440hz.ogg"));
    loud.until = both.member(0, heard);
    let mut quiet = options(&meeting, "Bob");
    quiet.send_ogg = Some(sample("audio-440hz.ogg"));
    quiet.until = both.member(1, heard);
    // Ada speaks at -10 dBov, Bob at -80 (below speech).
    let a = tokio::spawn(run_with(talking(10), loud));
    let b = tokio::spawn(run_with(talking(80), quiet));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let ada = a.admission.you;
    assert_eq!(b.active_speakers, vec![ada], "Bob hears who speaks");
    assert_eq!(a.active_speakers, vec![ada], "Ada is told too");
}
