//! ICE-TCP (RFC 6544, RFC 4571 framing): members whose network drops UDP.
//! Native str0m clients with no UDP candidate at all connect to the
//! server's passive TCP candidate and exchange media; strangers on the same
//! port sending garbage, oversized frames, nothing at all (slowloris) or
//! too many connections are closed while the members' media keeps flowing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{Api, Frame, Meeting, TestServer, Ws, ada_and_bob, join};
use conclave_client::media::{ClientPeer, PeerStats, SourceMedia};
use conclave_client::session::{MediaOptions, Progress, run_with};
use conclave_client::tcp::{TcpMedia, passive_candidates};
use conclave_proto::ServerMessage;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What a member's run ends with.
struct Run {
    id: u64,
    stats: PeerStats,
    /// Frames received from others, sampled once a second.
    timeline: Vec<u64>,
    /// Datagrams str0m wanted sent over UDP: none, with no UDP candidate.
    udp_transmits: usize,
    tcp_remote: Option<SocketAddr>,
}

fn frames_from_others(stats: &PeerStats, me: u64) -> u64 {
    stats
        .received
        .values()
        .filter(|t| t.participant.is_some_and(|p| p.0 != me))
        .map(|t| t.frames)
        .sum()
}

/// One member over ICE-TCP only, for `secs`: sends synthetic audio and
/// video, answers the server's offers, and tells `server_tcp` where the
/// server's TCP candidate is once its answer names it.
async fn member_over_tcp(
    mut ws: Ws,
    id: u64,
    secs: u64,
    server_tcp: watch::Sender<Option<SocketAddr>>,
) -> Run {
    ws.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    let sources = vec![
        SourceMedia::Synthetic {
            video: false,
            bytes: 120,
            fps: 50,
        },
        SourceMedia::Synthetic {
            video: true,
            bytes: 1000,
            fps: 30,
        },
    ];
    let (mut peer, offer) = ClientPeer::new_tcp_only(sources, Instant::now()).expect("peer");
    ws.send(serde_json::to_value(&offer).expect("offer")).await;
    let mut tcp: Option<TcpMedia> = None;
    let mut udp_transmits = 0;
    let mut timeline = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut sample_at = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut next = Instant::now();
    loop {
        let wake = tokio::time::Instant::from_std(next);
        let from_server = async {
            match tcp.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            () = tokio::time::sleep_until(sample_at) => {
                timeline.push(frames_from_others(peer.stats(), id));
                sample_at += Duration::from_secs(1);
            }
            frame = ws.next(Duration::from_secs(3600)) => match frame {
                Some(Frame::Msg(v)) => {
                    let msg: ServerMessage = serde_json::from_value(v.clone())
                        .unwrap_or_else(|e| panic!("{v}: {e}"));
                    match msg {
                        ServerMessage::MediaAnswer { sdp } => {
                            peer.accept_answer(&sdp, Instant::now()).expect("answer");
                            let to = *passive_candidates(&sdp)
                                .first()
                                .unwrap_or_else(|| panic!("no passive TCP candidate: {sdp}"));
                            server_tcp.send_replace(Some(to));
                            let t = TcpMedia::connect(to).await.expect("TCP connect");
                            peer.add_tcp_candidate(t.local, Instant::now()).expect("candidate");
                            tcp = Some(t);
                        }
                        ServerMessage::MediaOffer { sdp, tracks } => {
                            peer.accept_offer(&sdp, tracks, Instant::now()).expect("offer");
                        }
                        _ => {}
                    }
                }
                Some(Frame::Closed) => panic!("member {id}: signaling closed"),
                None => {}
            },
            got = from_server => match got {
                Some(frame) => {
                    let t = tcp.as_ref().expect("connected");
                    let (remote, local) = (t.remote, t.local);
                    peer.handle_tcp_frame(remote, local, &frame, Instant::now()).expect("frame");
                }
                None => panic!("member {id}: the server closed the media connection"),
            },
            () = tokio::time::sleep_until(wake) => {
                next = peer.handle_timeout(Instant::now()).expect("timeout");
            }
        }
        udp_transmits += peer.take_transmits().len();
        for (to, data) in peer.take_tcp_transmits() {
            let t = tcp.as_mut().expect("a TCP packet before the connection");
            assert_eq!(to, t.remote);
            t.send(&data).await.expect("TCP send");
        }
        for msg in peer.take_messages() {
            ws.send(serde_json::to_value(&msg).expect("message")).await;
        }
    }
    Run {
        id,
        stats: peer.stats().clone(),
        timeline,
        udp_transmits,
        tcp_remote: tcp.map(|t| t.remote),
    }
}

/// A meeting without a waiting room, its host and a guest joined.
async fn two_members(server: &TestServer) -> (Api, Meeting, (Ws, u64), (Ws, u64)) {
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (host, joined) = server.host_joins(&api, &meeting.id).await;
    let host_id = joined["you"].as_u64().expect("id");
    let mut guest = server.ws(&meeting.id, Default::default()).await;
    guest.send(join("Guest", &meeting.passcode)).await;
    let joined = guest.recv_until("joined").await;
    let guest_id = joined["you"].as_u64().expect("id");
    (api, meeting, (host, host_id), (guest, guest_id))
}

fn assert_media_flowed(run: &Run, seconds: u64) {
    let got = frames_from_others(&run.stats, run.id);
    // 80 frames a second are sent; the first second goes to ICE and DTLS.
    assert!(
        got >= 40 * seconds,
        "member {} got {got} frames over TCP: {:?}",
        run.id,
        run.stats
    );
    assert_eq!(run.udp_transmits, 0, "member {} sent over UDP", run.id);
    assert!(run.stats.connected_at.is_some());
}

#[tokio::test]
async fn members_without_udp_exchange_media_over_tcp() {
    let server = TestServer::start().await;
    let (_api, _meeting, (host, host_id), (guest, guest_id)) = two_members(&server).await;
    let (tx_a, _rx_a) = watch::channel(None);
    let (tx_b, _rx_b) = watch::channel(None);
    let a = tokio::spawn(member_over_tcp(host, host_id, 5, tx_a));
    let b = tokio::spawn(member_over_tcp(guest, guest_id, 5, tx_b));
    let (a, b) = (a.await.expect("host"), b.await.expect("guest"));
    assert_media_flowed(&a, 3);
    assert_media_flowed(&b, 3);
    // The media port's number, over TCP.
    assert_eq!(a.tcp_remote, b.tcp_remote);
    assert!(a.tcp_remote.is_some());
}

/// Reads until the server closes the connection; false if it is still open
/// after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn garbage_oversized_frames_slowloris_and_floods_are_closed_while_media_flows() {
    // One worker: every stranger lands on the members' own worker.
    let server = TestServer::start_with(|c| c.media_workers = 1).await;
    let (_api, _meeting, (host, host_id), (guest, guest_id)) = two_members(&server).await;
    let (tx, mut rx) = watch::channel(None);
    let (tx_b, _rx_b) = watch::channel(None);
    let a = tokio::spawn(member_over_tcp(host, host_id, 12, tx));
    let b = tokio::spawn(member_over_tcp(guest, guest_id, 12, tx_b));
    let port = rx
        .wait_for(Option::is_some)
        .await
        .expect("the host's answer names a TCP candidate")
        .expect("checked");
    // Let both members connect before strangers take the address's quota.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Well-framed garbage: closed after a few unmatched frames.
    let mut garbage = TcpStream::connect(port).await.expect("connect");
    let mut bytes = Vec::new();
    for i in 0..40u8 {
        bytes.extend_from_slice(&[0, 100]);
        bytes.extend(std::iter::repeat_n(i.wrapping_mul(37), 100));
    }
    let _ = garbage.write_all(&bytes).await;
    assert!(
        closed_within(&mut garbage, Duration::from_secs(2)).await,
        "garbage frames"
    );

    // A length past the largest frame: closed at once.
    let mut oversized = TcpStream::connect(port).await.expect("connect");
    let _ = oversized.write_all(&[0xff, 0xff, 1, 2, 3]).await;
    assert!(
        closed_within(&mut oversized, Duration::from_secs(2)).await,
        "oversized frame"
    );

    // A zero-length frame: closed too.
    let mut empty = TcpStream::connect(port).await.expect("connect");
    let _ = empty.write_all(&[0, 0]).await;
    assert!(
        closed_within(&mut empty, Duration::from_secs(2)).await,
        "zero-length frame"
    );

    // Slowloris: half a frame, then silence: closed when its time to be
    // matched to a peer is up, not before.
    let mut slow = TcpStream::connect(port).await.expect("connect");
    slow.write_all(&[0, 50, 1]).await.expect("write");
    assert!(!closed_within(&mut slow, Duration::from_secs(2)).await);
    assert!(
        closed_within(&mut slow, Duration::from_secs(6)).await,
        "slowloris"
    );

    // A flood from one address: past the per-address limit, connections
    // are closed on accept; the rest when their time is up.
    let mut flood = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(port).await {
            flood.push(s);
        }
    }
    let mut refused = 0;
    for s in &mut flood {
        if closed_within(s, Duration::from_millis(50)).await {
            refused += 1;
        }
    }
    // 64 per address, two of them the members'.
    assert!(refused >= 100 - 62, "{refused} of 100 refused at once");
    drop(flood);

    let (a, b) = (a.await.expect("host"), b.await.expect("guest"));
    assert_media_flowed(&a, 10);
    assert_media_flowed(&b, 10);
    // And it flowed throughout: every second of the attacks brought frames.
    for run in [&a, &b] {
        for w in run.timeline.windows(2).skip(2) {
            assert!(
                w[1] >= w[0] + 30,
                "member {} stalled: {:?}",
                run.id,
                run.timeline
            );
        }
    }
}

#[tokio::test]
async fn native_sessions_without_udp_join_over_tcp_end_to_end_encrypted() {
    // `conclave join --tcp-only`: the whole session (MLS, SFrame, the
    // sample video and audio) with media over ICE-TCP alone.
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let tcp_only = || MediaOptions {
        no_udp: true,
        relay_only: false,
        ..MediaOptions::default()
    };
    // Both stay until each has 100 of the other's frames, decrypted.
    let (a, b) = ada_and_bob(&meeting, |p: &Progress<'_>| {
        let from_other: u64 = p
            .media
            .received
            .values()
            .filter(|t| t.participant.is_some_and(|who| who != p.you))
            .map(|t| t.frames)
            .sum();
        from_other >= 100
    });
    let a = tokio::spawn(run_with(tcp_only(), a));
    let b = tokio::spawn(run_with(tcp_only(), b));
    let a = a.await.expect("task").expect("session A");
    let b = b.await.expect("task").expect("session B");
    for (me, other) in [(&a, &b), (&b, &a)] {
        let from = other.admission.you;
        // Frames counted are frames that decrypted: SFrame under the MLS
        // group's keys, over TCP. (A frame or two under an epoch the
        // receiver has not reached yet may not: that is the E2EE join's
        // race, not the transport's.)
        let frames: u64 = me
            .media
            .received
            .values()
            .filter(|t| t.participant == Some(from))
            .map(|t| t.frames)
            .sum();
        assert!(frames >= 100, "{frames} frames from {from}: {:?}", me.media);
        assert_eq!(me.media.udp_packets_out, 0, "{:?}", me.media);
        assert!(me.media.tcp_packets_out > 100, "{:?}", me.media);
    }
}
