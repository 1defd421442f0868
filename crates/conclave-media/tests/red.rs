//! Redundant audio (RED, RFC 2198) through the router: a subscriber that
//! negotiated RED gets the publisher's RED packets as they are, one that did
//! not (the native client) gets each packet's primary block as Opus, and a
//! RED payload that cannot be taken apart reaches neither as Opus.

mod harness;

use conclave_media::PeerId;
use harness::Net;
use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{MediaKind, Pt};
use str0m::rtp::{RedEncoder, RedundantBlock, RtpWrite};

const PUBLISHER: PeerId = PeerId(1);
const WITH_RED: PeerId = PeerId(2);
const WITHOUT_RED: PeerId = PeerId(3);

fn rtc(net: &Net, red: bool) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, red)
        .enable_vp8(true)
        .build(net.now)
}

/// The RED payload type a client's session settled on, if any.
fn red_pt(net: &mut Net, id: PeerId) -> Option<Pt> {
    net.client(id)
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .and_then(|p| p.red())
}

#[test]
fn red_reaches_red_subscribers_whole_and_others_as_its_primary() {
    let mut net = Net::new();
    let publisher = rtc(&net, true);
    net.join_with(PUBLISHER, "10.0.0.2:5000", &[MediaKind::Audio], publisher)
        .expect("router answers");
    let with_red = rtc(&net, true);
    net.join_with(WITH_RED, "10.0.0.3:5000", &[], with_red)
        .expect("router answers");
    net.join(WITHOUT_RED, "10.0.0.4:5000", &[]);
    net.connect_all();

    let mid = net.client(PUBLISHER).sending[0].0;
    let red = red_pt(&mut net, PUBLISHER).expect("the router answered RED");
    assert!(
        red_pt(&mut net, WITH_RED).is_some(),
        "RED negotiated with the subscriber that offered it"
    );
    assert_eq!(red_pt(&mut net, WITHOUT_RED), None);

    let mut sent = Vec::new();
    for seq in 1..=50u64 {
        let ts = (seq as u32) * 960;
        let primary = vec![0xf8, seq as u8, 0x01];
        let previous = vec![0xf8, (seq - 1) as u8, 0x01];
        let payload = RedEncoder::encode(
            *net.client(PUBLISHER).pt_of(Codec::Opus),
            &primary,
            &[RedundantBlock {
                pt: *net.client(PUBLISHER).pt_of(Codec::Opus),
                timestamp_offset: 960,
                payload: previous,
            }],
        );
        sent.push((payload.clone(), primary));
        let write = RtpWrite::new(red, seq.into(), ts, net.now, payload);
        net.send_write(PUBLISHER, mid, None, write);
        net.step();
    }
    // Not RED at all: a redundant header that promises more than is there.
    let write = RtpWrite::new(
        red,
        51.into(),
        51 * 960,
        net.now,
        vec![0x80 | 111, 0, 0, 200, 1],
    );
    net.send_write(PUBLISHER, mid, None, write);
    net.run_for(std::time::Duration::from_millis(200));

    let whole: Vec<_> = net.client(WITH_RED).received();
    let sub_red = red_pt(&mut net, WITH_RED).expect("RED");
    assert!(
        whole.iter().all(|r| r.pt == sub_red),
        "all under RED's payload type"
    );
    let got: Vec<_> = whole.iter().map(|r| r.payload.clone()).collect();
    let expected: Vec<_> = sent.iter().map(|(red, _)| red.clone()).collect();
    assert_eq!(
        got[..expected.len()],
        expected[..],
        "RED passed through unchanged"
    );

    let opus = net.client(WITHOUT_RED).pt_of(Codec::Opus);
    let plain = net.client(WITHOUT_RED).received();
    assert!(
        plain.iter().all(|r| r.pt == opus),
        "all under Opus's payload type"
    );
    let got: Vec<_> = plain.iter().map(|r| r.payload.clone()).collect();
    let expected: Vec<_> = sent.iter().map(|(_, primary)| primary.clone()).collect();
    assert_eq!(
        got, expected,
        "each packet's primary block, and nothing of the malformed one"
    );
    let stats = net.router.peer_stats(WITHOUT_RED).expect("peer");
    assert_eq!(stats.audio_red_unwrapped, 50);
}
