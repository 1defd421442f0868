//! Media through the server's router between native clients: what one sends,
//! the other receives, and only what the meeting allows.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use conclave_client::session::{JoinOptions, SessionReport, run};
use serde_json::json;
use support::*;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

fn options(meeting: &serde_json::Value, name: &str, seconds: u64) -> JoinOptions {
    let link = meeting["invite_link"].as_str().expect("link");
    JoinOptions {
        invite: link.parse().expect("invite link"),
        name: name.into(),
        passcode: None,
        token: None,
        send_ivf: Some(sample("video-320x240.ivf")),
        send_ogg: Some(sample("audio-440hz.ogg")),
        duration: Duration::from_secs(seconds),
        patience: Duration::from_secs(10),
        bind: "127.0.0.1".parse().expect("ip"),
    }
}

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
    let http = server.host("hostess").await;
    let meeting = http
        .meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let a = tokio::spawn(run(options(&meeting, "Ada", 5)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = tokio::spawn(run(options(&meeting, "Bob", 4)));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    let (ida, idb) = (a.admission.you.0, b.admission.you.0);
    let video_ab = received(&b, ida, "video");
    let audio_ab = received(&b, ida, "audio");
    let video_ba = received(&a, idb, "video");
    let audio_ba = received(&a, idb, "audio");
    // About 4 s of overlap: 30 video frames and 50 audio frames a second are
    // sent; the first video frames wait for a key frame.
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
