//! Media through the server's router between native clients: what one sends,
//! the other receives, and only what the meeting allows.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    TestServer, Together, WsOpts, a_second_of_media, ada_and_bob, frames_from_others, join,
    native_options,
};
use conclave_client::session::{SessionReport, Until, run};
use conclave_proto::MediaKind::{Audio, Video};
use serde_json::json;
use tokio::sync::Notify;

/// Frames received from `from`, by kind.
fn received(report: &SessionReport, from: u64, kind: &str) -> u64 {
    report
        .media
        .received
        .values()
        .filter(|t| t.participant.map(|p| p.0) == Some(from))
        .filter(|t| {
            t.kind
                .map(|k| serde_json::to_value(k).ok() == Some(json!(kind)))
                .unwrap_or(false)
        })
        .map(|t| t.frames)
        .sum()
}

#[tokio::test]
async fn two_native_clients_exchange_audio_and_video() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // Each stays until it has a second of the other's video and audio.
    let (a, b) = ada_and_bob(&meeting, a_second_of_media);
    let a = tokio::spawn(run(a));
    let b = tokio::spawn(run(b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let (ida, idb) = (a.admission.you.0, b.admission.you.0);
    let video_ab = received(&b, ida, "video");
    let audio_ab = received(&b, ida, "audio");
    let video_ba = received(&a, idb, "video");
    let audio_ba = received(&a, idb, "audio");
    assert!(
        video_ab >= 30,
        "B got {video_ab} video frames from A: {:?}",
        b.media
    );
    assert!(audio_ab >= 80, "B got {audio_ab} audio frames from A");
    assert!(
        video_ba >= 30,
        "A got {video_ba} video frames from B: {:?}",
        a.media
    );
    assert!(audio_ba >= 80, "A got {audio_ba} audio frames from B");
}

#[tokio::test]
async fn meetings_on_several_workers_each_carry_their_own_media() {
    // Three workers, three meetings: each meeting lives on the worker its ID
    // hashes to, with that worker's UDP port, and its members get each
    // other's media (and only theirs: every frame they count is from the
    // other member of their own meeting).
    // Six clients join three meetings at once from one address: three
    // passcode checks in flight, beyond the default cap of two.
    let server = TestServer::start_with(|c| {
        c.media_workers = 3;
        c.limits.checks_in_flight_per_address = 3;
    })
    .await;
    let api = server.signed_in("alice").await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        let meeting = api
            .create_meeting(json!({"settings": {"waiting_room": false}}))
            .await;
        let (a, b) = ada_and_bob(&meeting, |p| {
            frames_from_others(p, Video) >= 20 && frames_from_others(p, Audio) >= 50
        });
        calls.push((tokio::spawn(run(a)), tokio::spawn(run(b))));
    }
    for (a, b) in calls {
        let a = a.await.expect("task").expect("session A");
        let b = b.await.expect("task").expect("session B");
        let (ida, idb) = (a.admission.you.0, b.admission.you.0);
        for (report, from, other) in [(&b, ida, idb), (&a, idb, ida)] {
            let video = received(report, from, "video");
            let audio = received(report, from, "audio");
            assert!(video >= 20, "{video} video frames: {:?}", report.media);
            assert!(audio >= 50, "{audio} audio frames: {:?}", report.media);
            let foreign = report
                .media
                .received
                .values()
                .filter(|t| t.participant.map(|p| p.0) != Some(from))
                .filter(|t| t.participant.map(|p| p.0) != Some(other))
                .map(|t| t.frames)
                .sum::<u64>();
            assert_eq!(
                foreign, 0,
                "frames from another meeting: {:?}",
                report.media
            );
        }
    }
}

#[tokio::test]
async fn removed_member_stops_reaching_others_within_a_second() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&api, &meeting.id).await;
    // Ada stays until she is removed; Bob until the test has watched a
    // second past her removal, and tells the test once her media reaches him.
    let a = tokio::spawn(run(native_options(&meeting, "Ada")));
    let joined = host.recv_until("participant_joined").await;
    let ada = joined["participant"]["id"].as_u64().expect("id");
    let flowing = Arc::new(Notify::new());
    let stop_bob = Arc::new(Notify::new());
    let mut b = native_options(&meeting, "Bob");
    b.stop = Some(Arc::clone(&stop_bob));
    b.until = Some(Until::new({
        let flowing = Arc::clone(&flowing);
        move |p| {
            if frames_from_others(p, Video) >= 10 && frames_from_others(p, Audio) >= 10 {
                flowing.notify_one();
            }
            false
        }
    }));
    let b = tokio::spawn(run(b));
    host.recv_until("participant_joined").await;
    // A stranger arriving now is kept out and sees none of it.
    let mut waiter = server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 0, 9)))
        .await;
    host.send(json!({"type": "lock"})).await;
    waiter.send(join("Stranger", &meeting.passcode)).await;
    assert_eq!(waiter.recv().await["code"], "locked");

    flowing.notified().await;
    let removed_at = std::time::Instant::now();
    host.send(json!({"type": "remove", "participant": ada}))
        .await;
    let a = a.await.expect("task").expect("session A");
    assert_eq!(a.ended_early.as_deref(), Some("removed"));
    // Whatever of Ada's was still on its way has arrived a second later.
    tokio::time::sleep_until((removed_at + Duration::from_secs(1)).into()).await;
    stop_bob.notify_one();
    let b = b.await.expect("task").expect("session B");
    let from_ada: Vec<_> = b
        .media
        .received
        .values()
        .filter(|t| t.participant.map(|p| p.0) == Some(ada))
        .collect();
    assert!(!from_ada.is_empty());
    for track in from_ada {
        assert!(track.frames > 0, "media flowed before the removal");
        let last = track.last_frame_at.expect("frames arrived");
        let after = last.saturating_duration_since(removed_at);
        assert!(
            after < Duration::from_secs(1),
            "{:?} still arrived {after:?} after the removal",
            track.kind
        );
    }
}

#[tokio::test]
async fn late_joiner_sees_a_key_frame_quickly() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // Late joins once Ada has sent two seconds of video, so her next key
    // frame is not the one the stream started with; both stay until Late
    // has a key frame.
    let both = Together::new(2);
    let started = Arc::new(Notify::new());
    let mut a = native_options(&meeting, "Ada");
    a.until = both.member(0, {
        let started = Arc::clone(&started);
        move |p| {
            let two_seconds = p.media.sent_frames.values().sum::<u64>() >= 2 * (30 + 50);
            if two_seconds {
                started.notify_one();
            }
            two_seconds
        }
    });
    let a = tokio::spawn(run(a));
    started.notified().await;
    let mut late = native_options(&meeting, "Late");
    late.send_ivf = None;
    late.send_ogg = None;
    late.until = both.member(1, |p| p.media.received.values().any(|t| t.keyframes >= 1));
    let b = run(late).await.expect("late session");
    let _ = a.await;
    let connected = b.media.connected_at.expect("connected");
    let video = b
        .media
        .received
        .values()
        .find(|t| {
            t.kind
                .map(|k| serde_json::to_value(k).ok() == Some(json!("video")))
                == Some(true)
        })
        .expect("a video track from Ada");
    let first_key = video.first_keyframe_at.expect("a key frame arrived");
    // The router asks Ada for a key frame when Late subscribes; Ada skips to
    // her next one. Generous bound: this is a property, not a benchmark.
    assert!(
        first_key.saturating_duration_since(connected) < Duration::from_millis(1500),
        "first key frame {:?} after connecting",
        first_key.saturating_duration_since(connected)
    );
    assert!(video.keyframes >= 1);
}

/// Frames ffprobe decodes in `path` (it reads every packet, so a file it
/// cannot parse fails here).
fn ffprobe_frames(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a frame count")
}

#[tokio::test]
async fn a_recorder_writes_files_ffprobe_reads() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let dir = tempfile::tempdir().expect("dir");
    // Both stay until the recorder has received three seconds of Ada's
    // video (30 frames a second; a file starts at the first key frame, so
    // fewer are written) and two of her audio (50 packets a second).
    let both = Together::new(2);
    let mut sender = native_options(&meeting, "Ada");
    sender.until = both.member(0, |_| true);
    let sender = tokio::spawn(run(sender));
    let mut rec = native_options(&meeting, "Recorder");
    rec.send_ivf = None;
    rec.send_ogg = None;
    rec.record = Some(dir.path().to_path_buf());
    rec.until = both.member(1, |p| {
        frames_from_others(p, Video) >= 90 && frames_from_others(p, Audio) >= 105
    });
    let rec = run(rec).await.expect("recorder");
    let sender = sender.await.expect("task").expect("sender");
    let ada = sender.admission.you;
    let video = rec
        .recorded
        .iter()
        .find(|t| t.participant == Some(ada) && t.kind == conclave_proto::MediaKind::Video)
        .expect("a video file");
    let audio = rec
        .recorded
        .iter()
        .find(|t| t.participant == Some(ada) && t.kind == conclave_proto::MediaKind::Audio)
        .expect("an audio file");
    assert!(video.path.extension().is_some_and(|e| e == "ivf"));
    assert!(audio.path.extension().is_some_and(|e| e == "ogg"));
    // What the recorder waited for, as ffprobe reads it back.
    let (v, a) = (ffprobe_frames(&video.path), ffprobe_frames(&audio.path));
    assert!(
        v >= 30,
        "ffprobe counts {v} video frames ({} written)",
        video.frames
    );
    assert!(
        a >= 100,
        "ffprobe counts {a} audio frames ({} written)",
        audio.frames
    );
    assert!(
        v + 5 >= video.frames,
        "ffprobe read {v} of {} frames",
        video.frames
    );
}
