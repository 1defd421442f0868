//! Native clients (`conclave_client`) for the media tests: they join by the
//! invite link and send the repository's sample video and audio.

use std::path::PathBuf;
use std::time::Duration;

use conclave_client::session::JoinOptions;

use super::Meeting;

/// A file of the repository's `samples/`.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples")
        .join(name)
}

/// A native client for `meeting`'s invite link that stays `seconds` and sends
/// the sample video and audio (tests change what they need).
pub fn native_options(meeting: &Meeting, name: &str, seconds: u64) -> JoinOptions {
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
        duration: Duration::from_secs(seconds),
        patience: Duration::from_secs(10),
        bind: "127.0.0.1".parse().expect("ip"),
        record: None,
        stop: None,
        outside_group: false,
    }
}
