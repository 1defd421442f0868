//! Waiting-room isolation over real sockets (docs/security.md §7): a client in the waiting
//! room records every frame it receives while the meeting changes around it — people join,
//! wait, are admitted, denied, removed and leave; chat; MLS proposals, commits and Welcomes;
//! media offers and answers; roles, lock, permissions, suspension, renames, a title changed
//! through the API, wrong passcodes that warn the moderators — and gets only its own status:
//! `waiting`, the `error` replies to its own messages, then `joined` or `denied`. The
//! `waiting` status says one thing about the meeting, whether a recorder is in it; a last
//! test has a recorder come and go and checks that this bit is all a waiter learns.
//!
//! The `joined` (or `denied`) that ends the wait is the barrier: the room writes to a
//! connection's queue in order, so anything the room had sent the waiter during the churn
//! would be in front of it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use conclave_client::e2ee::{Change, E2ee};
use conclave_proto::{ParticipantId, ServerMessage};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

/// How long one read waits before the driver looks at the next member.
const POLL: Duration = Duration::from_millis(20);

/// A meeting member as a real client behaves: MLS through the client's E2EE driver, SDP
/// through a str0m peer (signaling only: no media flows in this test).
struct Member {
    name: &'static str,
    id: u64,
    ws: Ws,
    e2ee: E2ee,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    chats: Vec<String>,
    media_answers: usize,
    media_offers: usize,
}

impl Member {
    /// A member from its socket and `joined` message: it sends its key package at once.
    async fn new(name: &'static str, ws: Ws, joined: &Value) -> Member {
        let id = joined["you"].as_u64().expect("you");
        let mut member = Member {
            name,
            id,
            ws,
            e2ee: E2ee::new(ParticipantId(id)).expect("e2ee"),
            rtc: rtc(id),
            pending: None,
            chats: Vec::new(),
            media_answers: 0,
            media_offers: 0,
        };
        member.take(joined.clone()).await;
        member
    }

    /// Handles one server message as the client would, and sends what it has to say.
    async fn take(&mut self, v: Value) {
        let msg: ServerMessage =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        match &msg {
            ServerMessage::MediaAnswer { sdp } => {
                self.media_answers += 1;
                let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
                if let Some(pending) = self.pending.take() {
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .expect("answer taken");
                }
            }
            ServerMessage::MediaOffer { sdp, .. } => {
                self.media_offers += 1;
                let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
                let answer = self.rtc.sdp_api().accept_offer(offer).expect("offer taken");
                self.ws
                    .send(json!({"type": "media_answer", "sdp": answer.to_sdp_string()}))
                    .await;
            }
            _ => {}
        }
        match self.e2ee.handle(&msg) {
            Ok(Some(Change::Chat { text, .. })) => self.chats.push(text),
            Ok(_) => {}
            Err(e) => panic!("{}: MLS refused {}: {e}", self.name, msg.kind()),
        }
        for out in self.e2ee.take_messages() {
            self.ws
                .send(serde_json::to_value(&out).expect("message"))
                .await;
        }
    }

    /// Reads what came within [`POLL`]; false if the socket closed.
    async fn poll(&mut self) -> bool {
        loop {
            match self.ws.next(POLL).await {
                Some(Frame::Msg(v)) => self.take(v).await,
                Some(Frame::Closed) => return false,
                None => return true,
            }
        }
    }

    async fn chat(&mut self, text: &str) {
        let msg = self.e2ee.chat(text).expect("chat");
        self.ws
            .send(serde_json::to_value(&msg).expect("chat message"))
            .await;
    }

    /// Offers to send audio and video (`send`) or to receive only.
    async fn offer_media(&mut self, send: bool) {
        let mut change = self.rtc.sdp_api();
        let mut tracks = Vec::new();
        if send {
            for (kind, name) in [(MediaKind::Audio, "audio"), (MediaKind::Video, "video")] {
                let mid = change.add_media(kind, Direction::SendOnly, None, None, None);
                tracks.push(json!({"mid": mid.to_string(), "kind": name}));
            }
        } else {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = change.apply().expect("an offer");
        self.pending = Some(pending);
        self.ws
            .send(json!({"type": "media_offer", "sdp": offer.to_sdp_string(), "tracks": tracks}))
            .await;
    }

    fn in_group_with(&self, other: &Member) -> bool {
        self.e2ee.in_group()
            && other.e2ee.in_group()
            && self.e2ee.epoch() == other.e2ee.epoch()
            && self.e2ee.security_code() == other.e2ee.security_code()
    }

    fn received(&self, ty: &str) -> usize {
        self.ws.log.iter().filter(|v| v["type"] == ty).count()
    }
}

fn rtc(id: u64) -> Rtc {
    // A real instant only as the start of the peer's clock; nothing here waits on it.
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    let addr = SocketAddr::from(([127, 0, 0, 1], 20_000 + id as u16));
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    rtc
}

/// Lets every member read and answer until `done` holds; panics after [`TIMEOUT`].
async fn settle(members: &mut [&mut Member], what: &str, done: impl Fn(&[&mut Member]) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done(members) {
        if tokio::time::Instant::now() >= deadline {
            let state: Vec<String> = members
                .iter()
                .map(|m| {
                    let recent: Vec<String> =
                        m.ws.log
                            .iter()
                            .rev()
                            .take(8)
                            .map(|v| format!("{} {}", v["type"], v["code"]))
                            .collect();
                    format!(
                        "{} (id {}): in group {}, epoch {}, recent {recent:?}",
                        m.name,
                        m.id,
                        m.e2ee.in_group(),
                        m.e2ee.epoch()
                    )
                })
                .collect();
            panic!("not reached within {TIMEOUT:?}: {what}\n{state:#?}");
        }
        for m in members.iter_mut() {
            m.poll().await;
        }
    }
}

/// A guest waits and the host (`members[0]`) admits them; returns the new member once it is
/// in the group with every member.
async fn admit(
    server: &TestServer,
    members: &mut [&mut Member],
    meeting: &Meeting,
    name: &'static str,
) -> Member {
    let (mut ws, id) = server.guest_waits(meeting, name).await;
    members[0]
        .ws
        .send(json!({"type": "admit", "participant": id}))
        .await;
    let joined = ws.recv_until("joined").await;
    let mut member = Member::new(name, ws, &joined).await;
    let mut all: Vec<&mut Member> = members.iter_mut().map(|m| &mut **m).collect();
    all.push(&mut member);
    settle(
        &mut all,
        "the newcomer is in the group with everyone",
        |m| m.iter().all(|x| x.in_group_with(m[0])),
    )
    .await;
    member
}

/// A `waiting` status holds its id and the recording bit, and nothing else.
fn is_bare_waiting(v: &Value, recording: bool) -> bool {
    v["type"] == "waiting"
        && v["you"].is_u64()
        && v["recording"] == recording
        && v.as_object().is_some_and(|o| o.len() == 3)
}

/// What a waiting client may receive: its `waiting` (no recorder in these meetings), `error`
/// replies to its own messages, and the one message that ends the wait. Panics with the whole
/// log otherwise.
fn assert_only_own_status(log: &[Value], end: &str, own_errors: usize) {
    let types: Vec<&str> = log.iter().filter_map(|v| v["type"].as_str()).collect();
    let allowed = |v: &Value| match v["type"].as_str() {
        Some("waiting") => is_bare_waiting(v, false),
        Some("denied") | Some("joined") => true,
        Some("error") => v["code"] == "not_joined",
        _ => false,
    };
    assert!(
        log.iter().all(allowed),
        "a waiting client received more than its own status: {log:#?}"
    );
    assert_eq!(types.first(), Some(&"waiting"), "{log:#?}");
    assert_eq!(types.last(), Some(&end), "{log:#?}");
    assert_eq!(
        types.iter().filter(|t| **t == "waiting").count(),
        1,
        "{log:#?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "error").count(),
        own_errors,
        "{log:#?}"
    );
    assert_eq!(types.len(), 2 + own_errors, "{log:#?}");
}

#[tokio::test]
async fn waiting_member_receives_only_its_status_then_what_members_get() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Isolation"})).await;
    let (ws, joined) = server.host_joins(&alice, &meeting.id).await;
    let mut host = Member::new("host", ws, &joined).await;
    settle(&mut [&mut host], "the host made the group", |m| {
        m[0].e2ee.in_group()
    })
    .await;

    // The watcher waits, sends its key package as a real client does, and tries two things a
    // waiting client may not do. From here on it reads nothing until the end.
    let (mut watcher_ws, watcher_id) = server.guest_waits(&meeting, "Watcher").await;
    let mut watcher_e2ee = E2ee::new(ParticipantId(watcher_id)).expect("e2ee");
    for out in watcher_e2ee.take_messages() {
        watcher_ws
            .send(serde_json::to_value(&out).expect("key package"))
            .await;
    }
    watcher_ws
        .send(json!({"type": "chat", "payload": "let me in"}))
        .await;
    watcher_ws.send(json!({"type": "lock"})).await;

    // People join through the waiting room; MLS adds them; chat flows.
    let mut bob = admit(&server, &mut [&mut host], &meeting, "Bob").await;
    bob.chat("hello from Bob").await;
    settle(
        &mut [&mut host, &mut bob],
        "the host reads Bob's chat",
        |m| m[0].chats.iter().any(|c| c == "hello from Bob"),
    )
    .await;

    // Roles: Bob becomes co-host and so sees the waiting room, the watcher in it.
    host.ws
        .send(json!({"type": "set_role", "participant": bob.id, "role": "cohost"}))
        .await;
    settle(
        &mut [&mut host, &mut bob],
        "Bob sees the waiting room",
        |m| {
            m[1].ws.log.iter().any(|v| {
                v["type"] == "waiting_room"
                    && v["waiting"]
                        .as_array()
                        .is_some_and(|w| w.iter().any(|p| p["id"] == watcher_id))
            })
        },
    )
    .await;

    // Media state, then meeting state: lock, permissions, suspension, renames, moderation.
    bob.ws
        .send(json!({"type": "set_media", "audio": true, "video": false}))
        .await;
    settle(&mut [&mut host, &mut bob], "Bob's microphone is on", |m| {
        m[0].ws.log.iter().any(|v| {
            v["type"] == "participant_updated"
                && v["participant"]["id"] == m[1].id
                && v["participant"]["audio"] == true
        })
    })
    .await;
    for msg in [
        json!({"type": "lock"}),
        json!({"type": "unlock"}),
        json!({"type": "set_permissions", "permissions": {"chat": false, "screen_share": "everyone"}}),
        json!({"type": "set_permissions", "permissions": {"chat": true}}),
        json!({"type": "suspend_activities"}),
        json!({"type": "resume_activities"}),
        // Suspension locks the meeting, and resuming leaves it locked (protocol.md §4).
        json!({"type": "unlock"}),
        json!({"type": "rename", "participant": bob.id, "name": "Robert"}),
        json!({"type": "mute_all"}),
        json!({"type": "stop_media", "participant": bob.id, "kind": "video"}),
    ] {
        host.ws.send(msg).await;
    }
    let (status, _) = alice
        .patch(
            &format!("/api/v1/meetings/{}", meeting.id),
            json!({"title": "Isolation, renamed"}),
        )
        .await;
    assert_eq!(status, 200);
    settle(
        &mut [&mut host, &mut bob],
        "the changes reached the members",
        |m| {
            m[1].received("meeting_updated") >= 8
                && m[1].ws.log.iter().any(|v| {
                    v["type"] == "participant_updated" && v["participant"]["name"] == "Robert"
                })
        },
    )
    .await;

    let errors: Vec<&Value> = host
        .ws
        .log
        .iter()
        .filter(|v| v["type"] == "error")
        .collect();
    assert!(
        errors.is_empty(),
        "the host's changes were refused: {errors:?}"
    );

    // Media: Bob publishes, the host receives; the server answers and renegotiates.
    host.offer_media(false).await;
    bob.offer_media(true).await;
    settle(
        &mut [&mut host, &mut bob],
        "both media offers answered",
        |m| m[0].media_answers >= 1 && m[1].media_answers >= 1,
    )
    .await;
    bob.ws.send(json!({"type": "key_frame_request"})).await;

    // More comings and goings: one denied, one admitted who leaves, one removed and banned.
    let (mut carol, carol_id) = server.guest_waits(&meeting, "Carol").await;
    host.ws
        .send(json!({"type": "deny", "participant": carol_id}))
        .await;
    assert_eq!(carol.recv().await["type"], "denied");
    let mut dave = admit(&server, &mut [&mut host, &mut bob], &meeting, "Dave").await;
    dave.chat("Dave was here").await;
    dave.ws.send(json!({"type": "leave"})).await;
    settle(&mut [&mut host, &mut bob], "Dave's leave committed", |m| {
        m[0].in_group_with(m[1]) && m[0].e2ee.roster().len() == 2
    })
    .await;
    let mut eve = admit(&server, &mut [&mut host, &mut bob], &meeting, "Eve").await;
    host.ws
        .send(json!({"type": "remove", "participant": eve.id}))
        .await;
    assert!(
        eve.ws
            .expect_closed()
            .await
            .iter()
            .any(|v| v["type"] == "removed"),
        "Eve is told she was removed"
    );
    settle(&mut [&mut host, &mut bob], "Eve's removal committed", |m| {
        m[0].in_group_with(m[1]) && m[0].e2ee.roster().len() == 2
    })
    .await;
    drop(dave);

    // Wrong passcodes, from several addresses: the moderators are warned.
    for i in 0..10u8 {
        let mut ws = server
            .ws(
                &meeting.id,
                WsOpts::from(Ipv4Addr::new(127, 0, 3, 1 + i / 2)),
            )
            .await;
        ws.send(join("Mallory", "wrong-passcode")).await;
        ws.expect_error("join_refused").await;
    }
    settle(
        &mut [&mut host, &mut bob],
        "the moderators are warned",
        |m| m[0].received("security_notice") >= 1 && m[1].received("security_notice") >= 1,
    )
    .await;

    // Admission ends the wait: everything the room ever sent the watcher is in front of it.
    host.ws
        .send(json!({"type": "admit", "participant": watcher_id}))
        .await;
    let joined = watcher_ws.recv_until("joined").await;
    assert_only_own_status(&watcher_ws.log, "joined", 2);

    // From now on the watcher gets what a member gets: the roster, the meeting as it is, the
    // Welcome into the group, chat, meeting updates.
    let ids = |v: &Value| -> Vec<u64> {
        let mut ids: Vec<u64> = v["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .filter_map(|p| p["id"].as_u64())
            .collect();
        ids.sort();
        ids
    };
    let mut expected = vec![host.id, bob.id, watcher_id];
    expected.sort();
    assert_eq!(ids(&joined), expected);
    assert_eq!(joined["role"], "participant");
    assert_eq!(joined["waiting"], json!([]));
    assert_eq!(joined["meeting"]["title"], "Isolation, renamed");
    let mut watcher = Member {
        name: "watcher",
        id: watcher_id,
        ws: watcher_ws,
        e2ee: watcher_e2ee,
        rtc: rtc(watcher_id),
        pending: None,
        chats: Vec::new(),
        media_answers: 0,
        media_offers: 0,
    };
    watcher.take(joined).await;
    settle(
        &mut [&mut host, &mut bob, &mut watcher],
        "the watcher is in the group with the others",
        |m| m[0].in_group_with(m[1]) && m[0].in_group_with(m[2]),
    )
    .await;
    bob.chat("welcome, watcher").await;
    host.ws.send(json!({"type": "lock"})).await;
    watcher.offer_media(false).await;
    settle(
        &mut [&mut host, &mut bob, &mut watcher],
        "the watcher gets chat, meeting updates and media",
        |m| {
            m[2].chats.iter().any(|c| c == "welcome, watcher")
                && m[2].received("meeting_updated") >= 1
                && m[2].media_answers >= 1
        },
    )
    .await;
}

/// One waiting client on its own loopback address (each address may hold 20 sockets that
/// have not joined): it joins, sends its key package, reports that it waits, and records
/// everything until the server closes the socket.
async fn waiter(
    server_addr: SocketAddr,
    meeting: Meeting,
    n: u32,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Vec<Value> {
    let source = Ipv4Addr::new(127, 0, 4 + (n / 200) as u8, 1 + (n % 200) as u8);
    let mut ws = open_ws(server_addr, &meeting.id, WsOpts::from(source))
        .await
        .expect("waiter socket");
    ws.send(join(&format!("Waiter {n}"), &meeting.passcode))
        .await;
    let waiting = ws.recv().await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let id = waiting["you"].as_u64().expect("you");
    let mut e2ee = E2ee::new(ParticipantId(id)).expect("e2ee");
    for out in e2ee.take_messages() {
        ws.send(serde_json::to_value(&out).expect("key package"))
            .await;
    }
    ready.send(()).await.expect("test still running");
    // The wait lasts as long as the churn: read until the server closes the socket.
    loop {
        match ws.next(Duration::from_secs(300)).await {
            Some(Frame::Msg(_)) => {}
            Some(Frame::Closed) => return ws.log,
            None => panic!(
                "waiter {n}: neither closed nor told anything: {:#?}",
                ws.log
            ),
        }
    }
}

#[tokio::test]
async fn a_hundred_and_twenty_waiting_clients_receive_only_their_status_while_the_meeting_churns() {
    const WAITERS: u32 = 120;
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Crowd", "settings": {"max_participants": 200}}))
        .await;
    let (ws, joined) = server.host_joins(&alice, &meeting.id).await;
    let mut host = Member::new("host", ws, &joined).await;
    settle(&mut [&mut host], "the host made the group", |m| {
        m[0].e2ee.in_group()
    })
    .await;

    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(WAITERS as usize);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|n| tokio::spawn(waiter(server.addr, meeting.clone(), n, ready_tx.clone())))
        .collect();
    drop(ready_tx);
    // Every waiter is in the waiting room before the meeting starts to change (a lock would
    // otherwise turn late arrivals away, which is not what this test is about).
    let mut waiting = 0;
    while waiting < WAITERS {
        tokio::select! {
            r = ready.recv() => {
                r.expect("a waiter failed");
                waiting += 1;
            }
            _ = host.poll() => {}
        }
    }

    // The churn, in rounds: someone is admitted, chats and leaves; roles, lock, permissions,
    // suspension, media.
    let mut bob = admit(&server, &mut [&mut host], &meeting, "Bob").await;
    bob.offer_media(true).await;
    host.offer_media(false).await;
    for round in 0..3 {
        let mut guest = admit(&server, &mut [&mut host, &mut bob], &meeting, "Guest").await;
        guest.chat(&format!("round {round}")).await;
        host.ws
            .send(json!({"type": "set_role", "participant": bob.id, "role": "cohost"}))
            .await;
        for msg in [
            json!({"type": "lock"}),
            json!({"type": "unlock"}),
            json!({"type": "set_permissions", "permissions": {"chat": round % 2 == 0}}),
            json!({"type": "suspend_activities"}),
            json!({"type": "resume_activities"}),
            json!({"type": "unlock"}),
            json!({"type": "set_role", "participant": bob.id, "role": "participant"}),
        ] {
            host.ws.send(msg).await;
        }
        guest.ws.send(json!({"type": "leave"})).await;
        settle(
            &mut [&mut host, &mut bob],
            "the round's leave committed",
            |m| m[0].in_group_with(m[1]) && m[0].e2ee.roster().len() == 2,
        )
        .await;
    }
    settle(&mut [&mut host, &mut bob], "media answered", |m| {
        m[0].media_answers >= 1 && m[1].media_answers >= 1
    })
    .await;

    // Denying everyone ends every wait; each log must be exactly `waiting`, `denied`.
    host.ws.send(json!({"type": "deny_all"})).await;
    for w in waiters {
        let log = w.await.expect("waiter task");
        assert_only_own_status(&log, "denied", 0);
    }
}

/// Joins as a recorder (`conclave record` does the same) and returns the socket and its id.
async fn recorder_waits(server: &TestServer, meeting: &Meeting) -> (Ws, u64) {
    let mut ws = server
        .ws(&meeting.id, WsOpts::from(Ipv4Addr::new(127, 0, 5, 1)))
        .await;
    ws.send(
        json!({"type": "join", "name": "Recorder", "passcode": meeting.passcode, "recorder": true}),
    )
    .await;
    let w = ws.recv().await;
    assert!(is_bare_waiting(&w, false), "the recorder waits: {w}");
    let id = w["you"].as_u64().expect("you");
    (ws, id)
}

#[tokio::test]
async fn a_waiting_client_learns_that_a_recorder_came_and_went_and_nothing_else() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Recorded"})).await;
    let (ws, joined) = server.host_joins(&alice, &meeting.id).await;
    let mut host = Member::new("host", ws, &joined).await;
    settle(&mut [&mut host], "the host made the group", |m| {
        m[0].e2ee.in_group()
    })
    .await;
    let (mut watcher, watcher_id) = server.guest_waits(&meeting, "Watcher").await;

    // A recorder knocking is not yet a recording: the watcher hears nothing.
    let (mut rec, rec_id) = recorder_waits(&server, &meeting).await;
    let room = loop {
        let room = host.ws.recv_until("waiting_room").await;
        if room["waiting"].as_array().is_some_and(|w| w.len() == 2) {
            break room;
        }
    };
    assert!(
        room["waiting"].as_array().is_some_and(|w| w
            .iter()
            .any(|p| p["id"] == rec_id && p["recording"] == true)),
        "the host sees the recorder as one: {room}"
    );
    watcher.expect_silence(QUIET).await;

    // Admitted, it records; members come, chat and change things meanwhile.
    host.ws
        .send(json!({"type": "admit", "participant": rec_id}))
        .await;
    assert_eq!(rec.recv_until("joined").await["you"], rec_id);
    let mut bob = admit(&server, &mut [&mut host], &meeting, "Bob").await;
    bob.chat("is this recorded?").await;
    for msg in [
        json!({"type": "lock"}),
        json!({"type": "unlock"}),
        json!({"type": "rename", "participant": bob.id, "name": "Robert"}),
    ] {
        host.ws.send(msg).await;
    }
    settle(
        &mut [&mut host, &mut bob],
        "the chat and changes arrived",
        |m| {
            m[0].chats.iter().any(|c| c == "is this recorded?")
                && m[1].ws.log.iter().any(|v| {
                    v["type"] == "participant_updated" && v["participant"]["name"] == "Robert"
                })
        },
    )
    .await;

    // The recorder leaves; then the watcher is let in, which ends its wait.
    rec.send(json!({"type": "leave"})).await;
    settle(&mut [&mut host, &mut bob], "the recorder left", |m| {
        m[0].ws
            .log
            .iter()
            .any(|v| v["type"] == "participant_left" && v["participant"] == rec_id)
    })
    .await;
    host.ws
        .send(json!({"type": "admit", "participant": watcher_id}))
        .await;
    watcher.recv_until("joined").await;
    let log = &watcher.log;
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(is_bare_waiting(&log[0], false), "{log:#?}");
    assert!(is_bare_waiting(&log[1], true), "{log:#?}");
    assert!(is_bare_waiting(&log[2], false), "{log:#?}");
    assert!(log[..3].iter().all(|v| v["you"] == watcher_id), "{log:#?}");
    assert_eq!(log[3]["type"], "joined");
}
