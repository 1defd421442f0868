//! Joining a meeting over its WebSocket: the waiting room, admit and deny,
//! one answer for wrong passcodes and unknown meetings, and the join rate
//! limits per address and per meeting.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::common::{Meeting, QUIET, TestServer, WsOpts, join};
use serde_json::{Value, json};

/// A server, alice signed in, and a meeting of hers with the safe defaults.
async fn setup() -> (TestServer, crate::common::Api, Meeting) {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Planning"})).await;
    (server, alice, meeting)
}

/// (id, name, role) of everyone in a `joined` message's roster.
fn roster(joined: &Value) -> BTreeSet<(u64, String, String)> {
    joined["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap(),
                p["name"].as_str().unwrap().to_string(),
                p["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_waits_and_the_host_admits_them() {
    let (server, alice, meeting) = setup().await;

    // The guest arrives first: right passcode, into the waiting room.
    let (mut guest, gid) = server.guest_waits(&meeting, "Grace").await;
    assert!(
        guest.guest_cookie().is_some(),
        "a guest browser is given its own cookie"
    );

    // The owner joins with their session, no passcode, as host, and sees who waits.
    let (mut host, joined) = server.host_joins(&alice, &meeting.id).await;
    assert_eq!(joined["meeting"]["title"], "Planning");
    assert_eq!(joined["meeting"]["locked"], false);
    assert_eq!(
        joined["waiting"],
        json!([{"id": gid, "name": "Grace", "signed_in": false, "recording": false}])
    );
    assert_eq!(joined["participants"].as_array().unwrap().len(), 1);
    assert_eq!(joined["participants"][0]["signed_in"], true);
    assert!(
        joined["resume_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let host_id = joined["you"].as_u64().unwrap();

    host.send(json!({"type": "admit", "participant": gid}))
        .await;
    let g = guest.recv().await;
    assert_eq!(g["type"], "joined", "{g}");
    assert_eq!(g["you"], gid);
    assert_eq!(g["role"], "participant");
    assert_eq!(
        g["waiting"],
        json!([]),
        "participants never see the waiting room"
    );
    let expected: BTreeSet<_> = [
        (gid, "Grace".to_string(), "participant".to_string()),
        (host_id, "Host".to_string(), "host".to_string()),
    ]
    .into();
    assert_eq!(roster(&g), expected);
    // Before admission the guest heard exactly one thing: that it waits.
    assert_eq!(
        guest.log,
        vec![
            json!({"type": "waiting", "you": gid, "recording": false}),
            g
        ]
    );

    // The host hears of the newcomer and of the emptied waiting room.
    let pj = host.recv().await;
    assert_eq!(pj["type"], "participant_joined", "{pj}");
    assert_eq!(pj["participant"]["id"], gid);
    assert_eq!(pj["participant"]["name"], "Grace");
    assert_eq!(pj["participant"]["signed_in"], false);
    let wr = host.recv().await;
    assert_eq!(wr, json!({"type": "waiting_room", "waiting": []}));
    host.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_guest_is_told_and_disconnected() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut guest, gid) = server.guest_waits(&meeting, "Mallory").await;
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(wr["waiting"][0]["id"], gid);

    host.send(json!({"type": "deny", "participant": gid})).await;
    let got = guest.expect_closed().await;
    assert_eq!(got, vec![json!({"type": "denied"})]);
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(wr["waiting"], json!([]));
    // Denying again: nobody is waiting under that id.
    host.send(json!({"type": "deny", "participant": gid})).await;
    host.expect_error("unknown_participant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_all_and_admit_all_act_on_the_whole_waiting_room() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, _) = server.guest_waits(&meeting, "A").await;
    let (mut b, _) = server.guest_waits(&meeting, "B").await;
    host.send(json!({"type": "deny_all"})).await;
    assert_eq!(a.expect_closed().await, vec![json!({"type": "denied"})]);
    assert_eq!(b.expect_closed().await, vec![json!({"type": "denied"})]);

    let (mut c, _) = server.guest_waits(&meeting, "C").await;
    let (mut d, _) = server.guest_waits(&meeting, "D").await;
    host.send(json!({"type": "admit_all"})).await;
    assert_eq!(c.recv().await["type"], "joined");
    assert_eq!(d.recv().await["type"], "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passcode_and_unknown_meeting_get_the_same_answer() {
    let (server, _alice, meeting) = setup().await;

    let mut ws = server.ws(&meeting.id, WsOpts::default()).await;
    ws.send(join("Eve", "wrongwrong")).await;
    let wrong = ws.recv().await;
    assert_eq!(wrong["type"], "error");
    assert_eq!(wrong["code"], "join_refused");
    assert!(wrong.get("retry_after").is_none());

    // A well-formed ID nobody created.
    let mut ws2 = server.ws("abcd-efgh-jkmn-pqrs", WsOpts::default()).await;
    ws2.send(join("Eve", &meeting.passcode)).await;
    let unknown = ws2.recv().await;
    // Something that is not a meeting ID at all.
    let mut ws3 = server.ws("not-a-meeting", WsOpts::default()).await;
    ws3.send(join("Eve", "wrongwrong")).await;
    let malformed = ws3.recv().await;
    assert_eq!(
        unknown, wrong,
        "an unknown meeting must look like a wrong passcode"
    );
    assert_eq!(
        malformed, wrong,
        "a malformed ID must look like a wrong passcode"
    );

    // A refused attempt leaves the socket open for another try.
    ws.send(json!({"type": "join", "name": "Eve"})).await;
    assert_eq!(ws.recv().await, wrong, "no passcode is a wrong passcode");
    ws.send(join("Eve", &meeting.passcode.to_uppercase())).await;
    let w = ws.recv().await;
    assert_eq!(
        w["type"], "waiting",
        "typed in upper case, still right: {w}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passcodes_block_the_address() {
    let (server, alice, meeting) = setup().await;
    let mut ws = server.ws(&meeting.id, WsOpts::default()).await;
    for i in 0..5 {
        ws.send(join("Eve", &format!("guess{i:05}"))).await;
        ws.expect_error("join_refused").await;
    }
    // The sixth attempt is not even checked, right passcode or not.
    ws.send(join("Eve", &meeting.passcode)).await;
    let e = ws.expect_error("too_many_attempts").await;
    let retry = e["retry_after"].as_u64().expect("retry_after");
    assert!(retry > 0 && retry <= 3600, "{e}");
    // A new socket from the same address is blocked too.
    let mut again = server.ws(&meeting.id, WsOpts::default()).await;
    again.send(join("Eve", &meeting.passcode)).await;
    again.expect_error("too_many_attempts").await;

    // Another address is not punished for this one's guesses...
    let (_other, _) = server
        .guest_waits_with(
            &meeting,
            "Olivia",
            WsOpts::from(Ipv4Addr::new(127, 0, 0, 2)),
        )
        .await;
    // ...and the owner always gets into their own meeting.
    server.host_joins(&alice, &meeting.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_hear_of_a_passcode_attack_on_their_meeting() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    // Twelve failures from three addresses, four each: no address is blocked
    // (that takes five), so every guess reaches the passcode check.
    for n in 2..5 {
        let from = WsOpts::from(Ipv4Addr::new(127, 0, 0, n));
        let mut ws = server.ws(&meeting.id, from).await;
        for i in 0..4 {
            ws.send(join("Eve", &format!("guess{n}{i:04}"))).await;
            ws.expect_error("join_refused").await;
        }
    }
    let notice = host.recv().await;
    assert_eq!(
        notice,
        json!({"type": "security_notice", "failed_attempts": 10, "window_secs": 60})
    );
    // One notice per ten failures: the eleventh and twelfth made none.
    host.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wrong_passcodes_reach_the_check_at_most_five_times() {
    let (server, alice, meeting) = setup().await;
    let (mut refused, mut blocked) = (0, 0);
    // 25 sockets of 40 attempts each (a socket's burst allowance), one address.
    for s in 0..25 {
        let mut ws = server.ws(&meeting.id, WsOpts::default()).await;
        for i in 0..40 {
            ws.send(join("Eve", &format!("g{s:03}{i:05}"))).await;
        }
        for _ in 0..40 {
            let e = ws.recv().await;
            match e["code"].as_str() {
                Some("join_refused") => refused += 1,
                Some("too_many_attempts") => {
                    assert!(e["retry_after"].as_u64().unwrap() > 0);
                    blocked += 1
                }
                _ => panic!("unexpected answer {e}"),
            }
        }
    }
    assert_eq!(refused + blocked, 1000);
    assert!(refused <= 5, "{refused} guesses reached the passcode check");
    // The right passcode from that address is still turned away...
    let mut ws = server.ws(&meeting.id, WsOpts::default()).await;
    ws.send(join("Eve", &meeting.passcode)).await;
    ws.expect_error("too_many_attempts").await;
    // ...while the meeting itself still works.
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    server
        .guest_admitted_with(
            &mut host,
            &meeting,
            "Real guest",
            WsOpts::from(Ipv4Addr::new(127, 0, 0, 9)),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_for_signed_in_users_turns_guests_away() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"only_signed_in": true}}))
        .await;
    let mut guest = server.ws(&meeting.id, WsOpts::default()).await;
    guest.send(join("Guest", &meeting.passcode)).await;
    guest.expect_error("sign_in_required").await;
    guest.expect_closed().await;

    // Bob, signed in, with the passcode, waits like anyone else.
    let bob = server.signed_in("bob").await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (_bob_ws, bid) = server
        .guest_waits_with(&meeting, "Bob", bob.ws_opts())
        .await;
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(
        wr["waiting"],
        json!([{"id": bid, "name": "Bob", "signed_in": true, "recording": false}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_join_on_one_socket_is_refused() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    host.send(json!({"type": "join", "name": "Again"})).await;
    host.expect_error("already_joined").await;
    let (mut guest, _) = server.guest_waits(&meeting, "G").await;
    guest.send(join("G", &meeting.passcode)).await;
    guest.expect_error("already_joined").await;
    // Waiting, the guest may do nothing but leave.
    guest
        .send(json!({"type": "chat", "payload": "hello?"}))
        .await;
    guest.expect_error("not_joined").await;
    guest.send(json!({"type": "leave"})).await;
    guest.expect_closed().await;
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(wr["waiting"].as_array().unwrap().len(), 1);
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(wr["waiting"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_meeting_turns_newcomers_away() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"max_participants": 2, "waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let mut first = server.ws(&meeting.id, WsOpts::default()).await;
    first.send(join("First", &meeting.passcode)).await;
    assert_eq!(first.recv().await["type"], "joined");
    let mut second = server.ws(&meeting.id, WsOpts::default()).await;
    second.send(join("Second", &meeting.passcode)).await;
    let got = second.expect_closed().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "full");
    // A seat frees up when someone leaves.
    first.send(json!({"type": "leave"})).await;
    first.expect_closed().await;
    host.recv_until("participant_left").await;
    let mut third = server.ws(&meeting.id, WsOpts::default()).await;
    third.send(join("Third", &meeting.passcode)).await;
    assert_eq!(third.recv().await["type"], "joined");
}
