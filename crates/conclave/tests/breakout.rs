//! Breakout rooms over real sockets: each room is a meeting of its own, so
//! a member of room A is never seated in room B (not with its own ticket,
//! nor with a ticket taken from someone else), never joins B's MLS group,
//! and never gets B's chat or B's media offers; only a host or co-host may
//! open rooms, and a bad plan changes nothing. `conclave join` follows a
//! move into a room and back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use conclave_client::e2ee::{Change, E2ee};
use conclave_proto::{ParticipantId, ServerMessage};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

const POLL: Duration = Duration::from_millis(20);

/// A room member as a client behaves: MLS through the client's E2EE driver,
/// SDP through a str0m peer (signaling only).
struct Member {
    name: &'static str,
    ws: Ws,
    e2ee: E2ee,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    chats: Vec<String>,
    /// Whose cameras the server offers this member (its latest offer).
    videos_from: Vec<ParticipantId>,
}

impl Member {
    async fn new(name: &'static str, ws: Ws, joined: &Value, port: u16) -> Member {
        let id = joined["you"].as_u64().expect("you");
        // A real instant only as the start of the peer's clock.
        #[allow(clippy::disallowed_methods)]
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut m = Member {
            name,
            ws,
            e2ee: E2ee::new(ParticipantId(id)).expect("e2ee"),
            rtc,
            pending: None,
            chats: Vec::new(),
            videos_from: Vec::new(),
        };
        m.take(joined.clone()).await;
        m
    }

    async fn take(&mut self, v: Value) {
        let msg: ServerMessage =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        match &msg {
            ServerMessage::MediaAnswer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
                if let Some(pending) = self.pending.take() {
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .expect("answer taken");
                }
            }
            ServerMessage::MediaOffer { sdp, tracks } => {
                self.videos_from = tracks
                    .iter()
                    .filter(|t| t.kind == conclave_proto::MediaKind::Video)
                    .map(|t| t.participant)
                    .collect();
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

    async fn poll(&mut self) {
        while let Some(Frame::Msg(v)) = self.ws.next(POLL).await {
            self.take(v).await;
        }
    }

    async fn offer_media(&mut self) {
        let mut change = self.rtc.sdp_api();
        let mut tracks = Vec::new();
        for (kind, name) in [(MediaKind::Audio, "audio"), (MediaKind::Video, "video")] {
            let mid = change.add_media(kind, Direction::SendOnly, None, None, None);
            tracks.push(json!({"mid": mid.to_string(), "kind": name}));
        }
        let (offer, pending) = change.apply().expect("an offer");
        self.pending = Some(pending);
        self.ws
            .send(json!({"type": "media_offer", "sdp": offer.to_sdp_string(), "tracks": tracks}))
            .await;
    }
}

async fn settle(members: &mut [&mut Member], what: &str, done: impl Fn(&[&mut Member]) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !done(members) {
        if tokio::time::Instant::now() >= deadline {
            let state: Vec<String> = members
                .iter()
                .map(|m| {
                    let types: Vec<String> =
                        m.ws.log
                            .iter()
                            .map(|v| format!("{} {}", v["type"], v["code"]))
                            .collect();
                    format!(
                        "{}: chats {:?}, cameras {:?}, got {types:?}",
                        m.name, m.chats, m.videos_from
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

/// Host (owner) with Grace, Linus and Ken admitted; each guest's socket
/// carries its own guest cookie.
async fn meeting_of_four(server: &TestServer) -> (Meeting, Ws, Vec<(Ws, u64)>) {
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Workshop"})).await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let mut guests = Vec::new();
    for name in ["Grace", "Linus", "Ken"] {
        let (ws, joined) = server.guest_admitted(&mut host, &meeting, name).await;
        let id = joined["you"].as_u64().expect("you");
        guests.push((ws, id));
    }
    (meeting, host, guests)
}

/// Opens a socket to `room` from the browser of `cookie` and presents `ticket`.
async fn ticket_join(
    server: &TestServer,
    room: &str,
    cookie: Option<String>,
    name: &str,
    ticket: &str,
) -> Ws {
    let opts = cookie.map(WsOpts::cookie).unwrap_or_default();
    let mut ws = server.ws(room, opts).await;
    ws.send(json!({"type": "breakout_join", "name": name, "ticket": ticket}))
        .await;
    ws
}

#[tokio::test]
async fn only_a_host_opens_rooms_and_a_bad_plan_changes_nothing() {
    let server = TestServer::start().await;
    let (_meeting, mut host, mut guests) = meeting_of_four(&server).await;
    let (grace, linus) = (guests[0].1, guests[1].1);
    let plan = json!([{"name": "Mine", "participants": [linus]}]);
    guests[0]
        .0
        .send(json!({"type": "breakout_open", "rooms": plan, "auto_assign": true}))
        .await;
    guests[0].0.recv_error("not_permitted").await;
    for msg in [
        json!({"type": "breakout_close", "countdown_secs": 0}),
        json!({"type": "breakout_broadcast", "text": "hi"}),
    ] {
        guests[0].0.send(msg).await;
        guests[0].0.recv_error("not_permitted").await;
    }
    let too_many: Vec<Value> = (0..21).map(|i| json!({"name": format!("R{i}")})).collect();
    for (plan, code) in [
        (json!(too_many), "breakout_refused"),
        (json!([]), "breakout_refused"),
        (
            json!([{"name": "A", "participants": [9999]}]),
            "unknown_participant",
        ),
        (
            json!([{"name": "A", "participants": [grace]}, {"name": "B", "participants": [grace]}]),
            "breakout_refused",
        ),
        (
            json!([{"name": "\u{7}", "participants": [grace]}]),
            "invalid_name",
        ),
    ] {
        host.send(json!({"type": "breakout_open", "rooms": plan}))
            .await;
        host.recv_error(code).await;
    }
    host.send(json!({"type": "breakout_open", "rooms": "nope"}))
        .await;
    host.recv_error("bad_message").await;
    // Nobody was moved, and the meeting goes on.
    for (ws, _) in guests.iter_mut() {
        while ws.next(Duration::from_millis(300)).await.is_some() {}
        assert!(ws.log.iter().all(|v| v["type"] != "breakout_move"));
    }
    host.send(json!({"type": "breakout_close"})).await;
    host.recv_error("breakout_refused").await;
}

#[tokio::test]
async fn a_member_of_one_room_cannot_enter_another_nor_hear_or_see_it() {
    let server = TestServer::start().await;
    let (meeting, mut host, mut guests) = meeting_of_four(&server).await;
    let (grace, linus, ken) = (guests[0].1, guests[1].1, guests[2].1);
    host.send(json!({"type": "breakout_open", "rooms": [
        {"name": "Room A", "participants": [grace, ken]},
        {"name": "Room B", "participants": [linus]},
    ]}))
    .await;
    let rooms = host.recv_until("breakout_rooms").await;
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(2));
    let mut moves = Vec::new();
    for (ws, _) in guests.iter_mut() {
        let mv = ws.recv_until("breakout_move").await;
        ws.send(json!({"type": "leave"})).await;
        moves.push((mv, ws.guest_cookie()));
    }
    let room_a = moves[0].0["room"].as_str().expect("room").to_string();
    let room_b = moves[1].0["room"].as_str().expect("room").to_string();
    assert_eq!(moves[2].0["room"], room_a.as_str());
    assert_ne!(room_a, room_b);
    assert_ne!(room_a, meeting.id);
    let ticket = |i: usize| moves[i].0["ticket"].as_str().expect("ticket").to_string();

    // Linus cannot enter room A: not with his ticket for B, not with Grace's
    // ticket, and nobody can with a made-up one. Grace's ticket does not
    // work from another browser either.
    for (cookie, t) in [
        (moves[1].1.clone(), ticket(1)),
        (moves[1].1.clone(), ticket(0)),
        (moves[1].1.clone(), "AAAAAAAAAAAAAAAAAAAAAA".to_string()),
        (None, ticket(0)),
    ] {
        let mut ws = ticket_join(&server, &room_a, cookie, "Linus", &t).await;
        ws.recv_error("breakout_refused").await;
        let rest = ws.expect_closed().await;
        assert!(rest.iter().all(|v| v["type"] != "joined"), "{rest:?}");
    }
    // The main meeting does not take a room ticket for a member in a room
    // when returning is not allowed.
    let back = moves[1].0["return_ticket"].as_str().expect("return ticket");
    let mut ws = ticket_join(&server, &meeting.id, moves[1].1.clone(), "Linus", back).await;
    ws.recv_error("breakout_refused").await;

    // Each enters its own room: a meeting of its own with its own MLS group.
    let seat = |i: usize, name: &'static str, room: String, port: u16| {
        let (cookie, t) = (moves[i].1.clone(), ticket(i));
        let server = &server;
        async move {
            let mut ws = ticket_join(server, &room, cookie, name, &t).await;
            let joined = ws.recv_until("joined").await;
            Member::new(name, ws, &joined, port).await
        }
    };
    let mut g = seat(0, "Grace", room_a.clone(), 21_001).await;
    let mut k = seat(2, "Ken", room_a.clone(), 21_002).await;
    let mut l = seat(1, "Linus", room_b.clone(), 21_003).await;
    let group_of = |m: &Member| {
        m.ws.log
            .iter()
            .find(|v| v["type"] == "joined")
            .map(|v| v["e2ee"]["group_id"].clone())
            .expect("joined")
    };
    assert_ne!(group_of(&g), group_of(&l), "one MLS group per room");
    settle(
        &mut [&mut g, &mut k, &mut l],
        "each room's members share its group",
        |m| {
            m.iter().all(|x| x.e2ee.in_group())
                && m[0].e2ee.security_code() == m[1].e2ee.security_code()
        },
    )
    .await;
    assert_ne!(g.e2ee.security_code(), l.e2ee.security_code());

    // Chat in room A reaches Ken, not Linus. Media: each room's offers are
    // answered by its own router; no track of A is ever offered in B. (That
    // frames do not cross is shown with real media in e2e/breakout.test.js:
    // these str0m peers do no ICE, so no track is forwarded here.)
    let chat = g.e2ee.chat("only for room A").expect("chat");
    g.ws.send(serde_json::to_value(&chat).expect("chat")).await;
    for m in [&mut g, &mut k, &mut l] {
        m.offer_media().await;
    }
    let grace_in_a = ParticipantId(group_of_you(&g));
    let ken_in_a = ParticipantId(group_of_you(&k));
    settle(
        &mut [&mut g, &mut k, &mut l],
        "Ken hears Grace; every offer answered",
        |m| {
            m[1].chats.iter().any(|c| c == "only for room A")
                && m.iter()
                    .all(|x| x.ws.log.iter().any(|v| v["type"] == "media_answer"))
        },
    )
    .await;
    for _ in 0..10 {
        for m in [&mut g, &mut k, &mut l] {
            m.poll().await;
        }
    }
    assert!(
        k.videos_from.iter().all(|p| *p == grace_in_a),
        "{:?}",
        k.videos_from
    );
    assert!(
        g.videos_from.iter().all(|p| *p == ken_in_a),
        "{:?}",
        g.videos_from
    );
    assert!(l.chats.is_empty(), "room B heard room A: {:?}", l.chats);
    // What the server relayed of that chat is MLS ciphertext: its plaintext
    // is in no frame any member of either room received.
    for m in [&g, &k, &l] {
        assert!(
            m.ws.log
                .iter()
                .all(|v| !v.to_string().contains("only for room A")),
            "{} received the chat's plaintext from the server",
            m.name
        );
    }
    assert!(
        l.videos_from.is_empty(),
        "Linus, alone in B, is offered no camera"
    );
    let leaks = [
        "chat",
        "app",
        "media_offer",
        "participant_joined",
        "mls_welcome",
        "mls_message",
    ];
    assert!(
        l.ws.log
            .iter()
            .all(|v| !leaks.contains(&v["type"].as_str().unwrap_or(""))),
        "room B was told of room A: {:?}",
        l.ws.log
    );

    // The host's broadcast reaches both rooms; closing brings them back.
    host.send(json!({"type": "breakout_broadcast", "text": "Two minutes"}))
        .await;
    for m in [&mut k, &mut l] {
        let b = m.ws.recv_until("breakout_broadcast").await;
        assert_eq!(b["text"], "Two minutes");
    }
    host.send(json!({"type": "breakout_close", "countdown_secs": 1}))
        .await;
    for m in [&mut k, &mut l] {
        m.ws.recv_until("breakout_closing").await;
        let ended = m.ws.recv_until("ended").await;
        assert_eq!(ended["reason"], "breakout_closed");
    }
    let mut back = ticket_join(
        &server,
        &meeting.id,
        moves[1].1.clone(),
        "Linus",
        moves[1].0["return_ticket"].as_str().expect("t"),
    )
    .await;
    let joined = back.recv_until("joined").await;
    assert_eq!(joined["role"], "participant");
}

/// The participant id a member was given in its room.
fn group_of_you(m: &Member) -> u64 {
    m.ws.log
        .iter()
        .find(|v| v["type"] == "joined")
        .and_then(|v| v["you"].as_u64())
        .expect("joined")
}

/// Waits until `cli` has printed a line containing `marker` and, after it,
/// a security code line for a group of `people`; that code.
async fn code_after(cli: &crate::native_cli::Cli, marker: &str, people: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let text = cli.stderr();
        if let Some(at) = text.find(marker) {
            // From the start of the marker's line (it may be a code line).
            let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let found = text[from..]
                .lines()
                .filter_map(crate::native_cli::security_code_line)
                .find(|(_, n, _)| *n == people);
            if let Some((_, _, code)) = found {
                return code;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no code for {people} after {marker:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until one of `cli`'s JSON stats lines, in the group whose code is
/// `code`, has more than 10 frames of `from`'s video decrypted.
async fn video_in(cli: &crate::native_cli::Cli, code: &str, from: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cli.stdout();
        let seen = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["e2ee"]["security_code"] == code)
            .any(|v| {
                v["received"].as_object().is_some_and(|r| {
                    r.values().any(|t| {
                        t["name"] == from
                            && t["kind"] == "video"
                            && t["frames"].as_u64().is_some_and(|n| n > 10)
                    })
                })
            });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no video from {from} in the group {code}:\n{}\n{}",
            out.lines().last().unwrap_or(""),
            cli.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `cli`'s JSON stats lines in the group whose code is `code`
/// show chat lines decrypted in that group (the count grows between them).
async fn chat_in(cli: &crate::native_cli::Cli, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts: Vec<usize> = cli
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["e2ee"]["security_code"] == code)
            .filter_map(|v| v["e2ee"]["received"].as_array().map(Vec::len))
            .collect();
        if counts
            .first()
            .is_some_and(|a| counts.last().is_some_and(|b| b > a))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no chat in the group {code}: {counts:?}\n{}",
            cli.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `conclave join` follows a breakout move as the browser does. Two native
/// guests the host puts in one room leave the meeting and join the room
/// with their tickets (each as the guest identity its ticket was drawn
/// for), and print the room's name and the room's own security code: the
/// same on both, not the meeting's. When the host closes the rooms both
/// come back with their return tickets and print the same new code there.
/// In the room and back, each decrypts the other's video on its new peer
/// connection, and in the room Bob decrypts Ada's chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_clients_follow_a_move_into_a_room_and_back() {
    use crate::native_cli::{Cli, invite};
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"title": "Workshop", "settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let link = invite(&meeting);
    let video = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samples/video-320x240.ivf"
    );
    let args = |name| {
        [
            "join",
            &link,
            "--name",
            name,
            "--send-ivf",
            video,
            "--stats",
            "--stats-interval",
            "0.2",
        ]
    };
    let mut ada = Cli::start(&[&args("Ada")[..], &["--chat-every", "0.3"]].concat());
    let mut bob = Cli::start(&args("Bob"));
    let mut ids = BTreeMap::new();
    while ids.len() < 2 {
        let joined = host.recv_until("participant_joined").await;
        let p = &joined["participant"];
        if let (Some(name), Some(id)) = (p["name"].as_str(), p["id"].as_u64()) {
            ids.insert(name.to_string(), id);
        }
    }
    let start = "Security code (epoch";
    let here_a = code_after(&ada, start, 2).await;
    let here_b = code_after(&bob, start, 2).await;
    assert_eq!(here_a, here_b, "A:\n{}\nB:\n{}", ada.stderr(), bob.stderr());

    host.send(json!({"type": "breakout_open", "rooms": [
        {"name": "Room <1>", "participants": [ids["Ada"], ids["Bob"]]},
    ]}))
    .await;
    let entered = "In the breakout room \"Room <1>\"";
    let room_a = code_after(&ada, entered, 2).await;
    let room_b = code_after(&bob, entered, 2).await;
    assert_eq!(room_a, room_b, "A:\n{}\nB:\n{}", ada.stderr(), bob.stderr());
    assert_ne!(room_a, here_a, "the room's group is its own");
    video_in(&ada, &room_a, "Bob").await;
    video_in(&bob, &room_a, "Ada").await;
    chat_in(&bob, &room_a).await;
    // Both left the meeting for the room.
    let rooms = host.recv_until("breakout_rooms").await;
    let room = rooms["rooms"][0]["room"]
        .as_str()
        .expect("room")
        .to_string();
    assert_ne!(room, meeting.id);

    host.send(json!({"type": "breakout_close", "countdown_secs": 0}))
        .await;
    let back = "Back in the main meeting";
    let back_a = code_after(&ada, back, 2).await;
    let back_b = code_after(&bob, back, 2).await;
    assert_eq!(back_a, back_b, "A:\n{}\nB:\n{}", ada.stderr(), bob.stderr());
    assert_ne!(back_a, room_a);
    video_in(&ada, &back_a, "Bob").await;
    video_in(&bob, &back_a, "Ada").await;
    for cli in [&mut ada, &mut bob] {
        assert!(
            cli.stderr()
                .contains("Moving to the breakout room \"Room <1>\""),
            "{}",
            cli.stderr()
        );
        // The move's notice says why the next code is new: the first code
        // of the new group is not told as someone joining or leaving.
        let err = cli.stderr();
        for moving in [
            "Moving to the breakout room",
            "The breakout rooms closed: going back",
        ] {
            let at = err.find(moving).expect(moving);
            let until = err[at..].find(start).expect("a code after the move");
            assert!(
                !err[at..at + until].contains("someone joined or left"),
                "{err}"
            );
        }
        cli.interrupt();
        assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());
    }
}
