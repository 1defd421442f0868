//! A server offer that crosses the client's own (docs/protocol.md, "the
//! client's offer wins"): the client ignores it and takes the answer to its
//! own, instead of ending its session on str0m's "changes made out of order".

use std::net::SocketAddr;
use std::time::Instant;

use conclave_proto::ClientMessage;
use str0m::Rtc;
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind};

use super::{ClientPeer, SourceMedia};

/// The server's side: an ICE-lite peer, as the router's.
fn server(now: Instant) -> Rtc {
    let mut rtc = Rtc::builder().set_ice_lite(true).build(now);
    let addr: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    rtc
}

fn sdp_of(msg: ClientMessage) -> String {
    match msg {
        ClientMessage::MediaOffer { sdp, .. } => sdp,
        other => panic!("expected an offer, got {other:?}"),
    }
}

#[test]
fn a_server_offer_crossing_ours_is_ignored_and_our_answer_still_taken() {
    let now = Instant::now();
    let local: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
    let audio = SourceMedia::Synthetic {
        video: false,
        bytes: 100,
        fps: 50,
    };
    let (mut client, offer) = ClientPeer::new(local, vec![audio], now).expect("client");
    let ours = SdpOffer::from_sdp_string(&sdp_of(offer)).expect("our offer");

    // The server offers a track of someone else's before it has our offer.
    let mut crossing = server(now);
    let mut change = crossing.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (server_offer, _) = change.apply().expect("server offer");
    client
        .accept_offer(&server_offer.to_sdp_string(), Vec::new(), now)
        .expect("a crossing offer is no error");
    assert!(
        client.take_messages().is_empty(),
        "a crossing offer is not answered"
    );

    // The server answers ours, then offers again.
    let mut srv = server(now);
    let answer = srv.sdp_api().accept_offer(ours).expect("server answers");
    client
        .accept_answer(&answer.to_sdp_string(), now)
        .expect("the answer to our offer is taken");

    // The offer made again, now that nothing of ours is out, is answered.
    let mut change = srv.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (server_offer, _) = change.apply().expect("server offer");
    client
        .accept_offer(&server_offer.to_sdp_string(), Vec::new(), now)
        .expect("the offer again");
    assert!(matches!(
        client.take_messages().as_slice(),
        [ClientMessage::MediaAnswer { .. }]
    ));
}
