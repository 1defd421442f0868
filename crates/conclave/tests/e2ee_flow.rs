//! End-to-end encryption through a real server: members agree on the group
//! and read each other's media; what the server forwards is ciphertext.

use crate::common::{TestServer, Together, frames_from_others, native_options, sample};
use conclave_client::ivf::IvfReader;
use conclave_client::session::{Progress, run};
use conclave_proto::MediaKind::{Audio, Video};
use serde_json::json;

fn sample_frames() -> Vec<Vec<u8>> {
    let file = std::fs::File::open(sample("video-320x240.ivf")).expect("sample");
    let mut r = IvfReader::new(file).expect("ivf");
    std::iter::from_fn(|| r.next_frame().expect("frame").map(|f| f.data)).collect()
}

#[tokio::test]
async fn members_agree_and_the_server_forwards_only_ciphertext() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // The members stay until they share an epoch with both of them in the
    // group and each has a second of the other's media; the tap until it
    // has recorded a second of video.
    let all = Together::new(3);
    let member = |p: &Progress<'_>| {
        let both_in_group = p.e2ee.epochs.iter().any(|(_, _, roster)| roster.len() >= 2);
        both_in_group && frames_from_others(p, Video) >= 30 && frames_from_others(p, Audio) >= 80
    };
    let mut a = native_options(&meeting, "Ada");
    a.until = all.member(0, member);
    let mut b = native_options(&meeting, "Bob");
    b.until = all.member(1, member);
    let a = tokio::spawn(run(a));
    let b = tokio::spawn(run(b));
    // A client outside the group records what the server forwards to it.
    let dir = tempfile::tempdir().expect("dir");
    let mut tap = native_options(&meeting, "Tap");
    tap.send_ivf = None;
    tap.send_ogg = None;
    tap.outside_group = true;
    tap.record = Some(dir.path().to_path_buf());
    tap.until = all.member(2, |p| frames_from_others(p, Video) >= 30);
    let tap = run(tap).await.expect("tap");
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");

    // The members are in one group: in every epoch both were in, both
    // showed the same code and roster (the last epochs differ: whoever leaves
    // first is removed from the group).
    let (ea, eb) = (
        a.e2ee.clone().expect("A's group"),
        b.e2ee.clone().expect("B's group"),
    );
    let (ida, idb) = (a.admission.you.0.to_string(), b.admission.you.0.to_string());
    let shared: Vec<_> = ea
        .epochs
        .iter()
        .filter_map(|(epoch, code, roster)| {
            let theirs = eb.epochs.iter().find(|(e, _, _)| e == epoch)?;
            Some(((code, roster), (&theirs.1, &theirs.2)))
        })
        .collect();
    assert!(!shared.is_empty(), "A {:?} / B {:?}", ea.epochs, eb.epochs);
    for (mine, theirs) in &shared {
        assert_eq!(mine, theirs);
    }
    assert!(
        shared
            .iter()
            .any(|((_, roster), _)| roster.contains(&ida) && roster.contains(&idb))
    );
    assert_eq!(
        ea.security_code.split(' ').count(),
        12,
        "{}",
        ea.security_code
    );
    assert!(ea.roster.contains(&ida) && eb.roster.contains(&idb));
    let tap_id = tap.admission.you.0.to_string();
    assert!(
        ea.epochs
            .iter()
            .all(|(_, _, roster)| !roster.contains(&tap_id)),
        "a member who sent no key package is never in the group"
    );

    // They decrypt each other's media.
    let from = |r: &conclave_client::session::SessionReport, who: u64, audio: bool| -> u64 {
        r.media
            .received
            .values()
            .filter(|t| t.participant.map(|p| p.0) == Some(who))
            .filter(|t| matches!(t.kind, Some(conclave_proto::MediaKind::Audio)) == audio)
            .map(|t| t.frames)
            .sum()
    };
    assert!(from(&b, a.admission.you.0, false) >= 30, "{:?}", b.media);
    assert!(from(&b, a.admission.you.0, true) >= 80, "{:?}", b.media);
    assert!(from(&a, b.admission.you.0, false) >= 30, "{:?}", a.media);

    // The tap got plenty, and none of it is the senders' plaintext: no 16
    // bytes past any sample frame's clear VP8 header show up in it.
    let recorded: Vec<Vec<u8>> = tap
        .recorded
        .iter()
        .filter(|t| t.kind == conclave_proto::MediaKind::Video)
        .flat_map(|t| {
            let mut r = IvfReader::new(std::fs::File::open(&t.path).expect("file")).expect("ivf");
            std::iter::from_fn(move || r.next_frame().expect("frame").map(|f| f.data))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        recorded.len() >= 30,
        "the tap saw {} video frames",
        recorded.len()
    );
    let mut windows = 0;
    for frame in sample_frames() {
        for start in (10..frame.len().saturating_sub(16)).step_by(97) {
            let window = &frame[start..start + 16];
            windows += 1;
            assert!(
                !recorded.iter().any(|r| r.windows(16).any(|w| w == window)),
                "plaintext of a sample frame reached the server's output"
            );
        }
    }
    assert!(windows > 100, "the test looked at {windows} windows");
}
