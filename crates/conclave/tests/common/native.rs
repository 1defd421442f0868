//! Native clients (`conclave_client`) for the media tests: they join by the
//! invite link, send the repository's sample video and audio, and end when
//! what the test waits for has happened ([`Together`]), not after a fixed
//! time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use conclave_client::session::{JoinOptions, Progress, Until};
use conclave_proto::MediaKind;

use super::Meeting;

/// The longest a test session may run: only reached when what it waits for
/// never happens, and then the test's assertions say what was missing.
pub const SESSION_DEADLINE: Duration = Duration::from_secs(30);

/// A file of the repository's `samples/`.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

/// A native client for `meeting`'s invite link that sends the sample video
/// and audio (tests change what they need) and stays until its `until`
/// holds, at most [`SESSION_DEADLINE`].
pub fn native_options(meeting: &Meeting, name: &str) -> JoinOptions {
    JoinOptions {
        invite: meeting.view["invite_link"]
            .as_str()
            .expect("link")
            .parse()
            .expect("invite link"),
        name: name.into(),
        passcode: None,
        token: None,
        send_ivf: Some(sample("video-320x240.ivf")),
        send_ogg: Some(sample("audio-440hz.ogg")),
        synthetic: false,
        duration: SESSION_DEADLINE,
        patience: Duration::from_secs(10),
        bind: "127.0.0.1".parse().expect("ip"),
        record: None,
        stop: None,
        until: None,
        outside_group: false,
    }
}

/// Frames of `kind` this session received from anyone but itself.
pub fn frames_from_others(p: &Progress<'_>, kind: MediaKind) -> u64 {
    p.media
        .received
        .values()
        .filter(|t| t.participant.is_some_and(|who| who != p.you))
        .filter(|t| t.kind == Some(kind))
        .map(|t| t.frames)
        .sum()
}

/// Sessions that end together once each has what it waits for. A session
/// that is done keeps sending until the others are too, so nobody's
/// condition is cut short by someone else leaving first.
#[derive(Clone)]
pub struct Together {
    done: Arc<Mutex<Vec<bool>>>,
}

impl Together {
    pub fn new(sessions: usize) -> Self {
        Together {
            done: Arc::new(Mutex::new(vec![false; sessions])),
        }
    }

    /// The `until` of session number `index`, done once `wants` has held.
    pub fn member(
        &self,
        index: usize,
        wants: impl Fn(&Progress<'_>) -> bool + Send + Sync + 'static,
    ) -> Option<Until> {
        let done = Arc::clone(&self.done);
        Some(Until::new(move |p| {
            let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
            if !done[index] && wants(p) {
                done[index] = true;
            }
            done.iter().all(|d| *d)
        }))
    }
}

/// Ada and Bob joining `meeting` ([`native_options`]), ending together once
/// each has seen `wants` hold.
pub fn ada_and_bob(
    meeting: &Meeting,
    wants: impl Fn(&Progress<'_>) -> bool + Clone + Send + Sync + 'static,
) -> (JoinOptions, JoinOptions) {
    let both = Together::new(2);
    let mut a = native_options(meeting, "Ada");
    a.until = both.member(0, wants.clone());
    let mut b = native_options(meeting, "Bob");
    b.until = both.member(1, wants);
    (a, b)
}

/// A second of the others' video (30 frames a second are sent; the first
/// ones wait for a key frame) and audio.
pub fn a_second_of_media(p: &Progress<'_>) -> bool {
    frames_from_others(p, MediaKind::Video) >= 30 && frames_from_others(p, MediaKind::Audio) >= 80
}
