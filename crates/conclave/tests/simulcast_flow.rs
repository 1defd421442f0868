//! Simulcast and active speaker end to end: native clients through a server
//! started in the test. A subscriber that asks for a smaller view is switched
//! to a smaller layer; the loud member is announced as active speaker to the
//! others.

use std::time::Duration;

use crate::common::{Meeting, TestServer, native_options, sample};
use conclave_client::media::TrackStats;
use conclave_client::session::{JoinOptions, MediaOptions, SessionReport, run_with};
use serde_json::json;

fn options(meeting: &Meeting, name: &str, seconds: u64) -> JoinOptions {
    JoinOptions {
        send_ivf: None,
        send_ogg: None,
        ..native_options(meeting, name, seconds)
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
    let a = tokio::spawn(run_with(publisher, options(&meeting, "Ada", 9)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B shows A's video large at first, then as a thumbnail from 4 s on.
    let subscriber = MediaOptions {
        view_sizes: vec![(Duration::ZERO, 640, 480), (Duration::from_secs(4), 64, 48)],
        ..MediaOptions::default()
    };
    let b = tokio::spawn(run_with(subscriber, options(&meeting, "Bob", 8)));
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
    // Frames kept coming through both switches: about 30 a second for 8 s.
    assert!(track.frames >= 150, "{track:?}");
    assert!(
        track.incomplete_frames * 20 <= track.frames,
        "the switches did not break the stream: {track:?}"
    );
    // A sent all three layers the whole time, one frame of each at a time.
    let sent: u64 = a.media.sent_frames.values().sum();
    assert!(sent >= 200, "{:?}", a.media.sent_frames);
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
    let mut loud = options(&meeting, "Ada", 5);
    loud.send_ogg = Some(sample("audio-440hz.ogg"));
    let mut quiet = options(&meeting, "Bob", 5);
    quiet.send_ogg = Some(sample("audio-440hz.ogg"));
    // Ada speaks at -10 dBov, Bob at -80 (below speech).
    let a = tokio::spawn(run_with(talking(10), loud));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = tokio::spawn(run_with(talking(80), quiet));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let ada = a.admission.you;
    assert_eq!(b.active_speakers, vec![ada], "Bob hears who speaks");
    assert_eq!(a.active_speakers, vec![ada], "Ada is told too");
}
