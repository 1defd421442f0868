//! ICE-TCP at the router, on virtual time: a router given a TCP candidate
//! announces it as passive beside the UDP one, a client with only an active
//! TCP candidate connects through it, and everything the router sends that
//! client says TCP (the driver must frame it onto the connection, never send
//! it as a datagram).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{PeerId, Protocol, Router, RouterConfig, SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Receive, TcpType};
use str0m::{Candidate, Input, Output, Rtc};

const ROUTER: &str = "10.0.0.1:10000";
const CLIENT: &str = "10.0.0.2:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[test]
fn a_client_with_only_tcp_connects_and_everything_sent_back_is_tcp() {
    // A real instant only as the origin of virtual time; nothing waits on it.
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut router = Router::new(RouterConfig {
        tcp_candidates: vec![addr(ROUTER)],
        ..RouterConfig::new(addr(ROUTER))
    })
    .expect("router");
    let peer = PeerId(1);
    router.add_peer(peer, now).expect("peer");

    let mut client = Rtc::builder().build(now);
    let local = Candidate::builder()
        .tcp()
        .host(addr(CLIENT))
        .tcptype(TcpType::Active)
        .build()
        .expect("candidate");
    client.add_local_candidate(local);
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("sdp");
    let answer = router.accept_offer(peer, offer).expect("answer");
    let sdp = answer.to_sdp_string();
    assert!(
        sdp.contains("udp") && sdp.contains(" tcp ") && sdp.contains("tcptype passive"),
        "{sdp}"
    );
    let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer parses");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");

    let mut from_router = 0;
    for _ in 0..2000 {
        if router.is_connected(peer) && client.is_connected() {
            break;
        }
        // The client's packets, over its TCP connection.
        let mut wake = now + Duration::from_millis(5);
        loop {
            match client.poll_output().expect("client output") {
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp, "the client has only TCP");
                    assert_eq!(t.destination, addr(ROUTER));
                    router.handle_receive_on(
                        Protocol::Tcp,
                        now,
                        t.source,
                        t.destination,
                        &t.contents,
                    );
                }
                Output::Timeout(t) => {
                    wake = wake.min(t);
                    break;
                }
                Output::Event(_) => {}
            }
        }
        // The router's answers: all for the TCP connection.
        while let Some(t) = router.poll_transmit() {
            assert_eq!(t.proto, Protocol::Tcp, "{t:?}");
            assert_eq!((t.source, t.destination), (addr(ROUTER), addr(CLIENT)));
            from_router += 1;
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Tcp,
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.as_slice().try_into().expect("STUN or DTLS"),
                },
            );
            client.handle_input(input).expect("client input");
        }
        now = wake.max(now + Duration::from_millis(1));
        client.handle_input(Input::Timeout(now)).expect("timeout");
        router.handle_timeout(now);
    }
    assert!(router.is_connected(peer), "ICE and DTLS over TCP");
    assert!(client.is_connected());
    assert!(from_router > 0);

    // str0m's `Rtc::accepts` takes a packet from the nominated remote
    // address whatever its protocol (its fast path compares addresses only):
    // a UDP datagram spoofed from a TCP member's address reaches that
    // member's session, where SRTP authentication drops it, as it would a
    // datagram spoofed from a UDP member's. Pinned so a str0m change shows.
    assert!(router.accepts(now, addr(CLIENT), addr(ROUTER), &[0x80; 20]));
}
