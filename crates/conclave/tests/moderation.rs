//! Host controls over real sockets: waiting-room isolation, lock, remove and
//! ban (surviving a restart), suspend, resume after a drop, ending a meeting,
//! deleting a running one and a graceful server shutdown.

use crate::common::{Meeting, QUIET, TestServer, Ws, WsOpts, join};
use serde_json::{Value, json};

async fn setup() -> (TestServer, crate::common::Api, Meeting) {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Standup"})).await;
    (server, alice, meeting)
}

fn id_of(joined: &Value) -> u64 {
    joined["you"].as_u64().expect("you")
}

/// Reads until a `participant_updated` about `id` arrives; returns the participant.
async fn updated(ws: &mut Ws, id: u64) -> Value {
    loop {
        let m = ws.recv_until("participant_updated").await;
        if m["participant"]["id"] == id {
            return m["participant"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_guest_receives_nothing_but_its_own_status() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut waiter, wid) = server.guest_waits(&meeting, "Wanda").await;

    // The meeting goes on around the waiting guest.
    let (mut a, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let aid = id_of(&aj);
    a.send(json!({"type": "chat", "payload": "hello all"}))
        .await;
    host.recv_chat("hello all").await;
    host.send(json!({"type": "chat", "payload": "welcome"}))
        .await;
    a.recv_chat("welcome").await;
    a.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    updated(&mut host, aid).await;
    host.send(json!({"type": "stop_media", "participant": aid, "kind": "audio"}))
        .await;
    host.send(json!({"type": "mute_all"})).await;
    host.send(json!({"type": "lock"})).await;
    host.send(json!({"type": "unlock"})).await;
    host.send(json!({"type": "set_role", "participant": aid, "role": "cohost"}))
        .await;
    a.recv_until("waiting_room").await; // a new co-host is shown the waiting room
    host.send(json!({"type": "set_role", "participant": aid, "role": "participant"}))
        .await;
    host.send(
        json!({"type": "set_permissions", "permissions": {"chat": false, "rename_self": true}}),
    )
    .await;
    host.send(json!({"type": "rename", "participant": aid, "name": "Annie"}))
        .await;
    host.send(json!({"type": "suspend_activities"})).await;
    host.send(json!({"type": "resume_activities"})).await;
    host.send(json!({"type": "unlock"})).await;
    host.send(json!({"type": "media_offer", "sdp": "v=0", "tracks": []}))
        .await;
    // Others come and go through the waiting room.
    let (mut b, _) = server.guest_waits(&meeting, "Bea").await;
    b.send(json!({"type": "leave"})).await;
    b.expect_closed().await;
    let mut wrong = server
        .ws(
            &meeting.id,
            WsOpts::from(std::net::Ipv4Addr::new(127, 0, 0, 2)),
        )
        .await;
    wrong.send(join("Eve", "wrongwrong")).await;
    wrong.expect_error("join_refused").await;
    a.send(json!({"type": "leave"})).await;
    a.expect_closed().await;
    host.send(json!({"type": "lock"})).await;
    // A round trip through the room: everything above has been handled.
    host.send(json!({"type": "chat", "payload": "marker"}))
        .await;
    host.recv_chat("marker").await;
    assert!(
        host.log
            .iter()
            .any(|m| m["type"] == "participant_left" && m["participant"] == aid)
    );
    waiter.expect_silence(QUIET).await;
    assert_eq!(
        waiter.log,
        vec![json!({"type": "waiting", "you": wid, "recording": false})],
        "a waiting connection heard more than its own status"
    );

    // Admitted at last, it gets the meeting as it is now.
    host.send(json!({"type": "admit", "participant": wid}))
        .await;
    let joined = waiter.recv().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["meeting"]["locked"], true);
    assert_eq!(joined["meeting"]["permissions"]["chat"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_meeting_turns_away_even_the_right_passcode() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    host.send(json!({"type": "lock"})).await;
    let m = host.recv_until("meeting_updated").await;
    assert_eq!(m["meeting"]["locked"], true);

    let mut guest = server.ws(&meeting.id, WsOpts::default()).await;
    guest.send(join("Late", &meeting.passcode)).await;
    let got = guest.expect_closed().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "locked");
    host.expect_silence(QUIET).await; // not even in the waiting room

    host.send(json!({"type": "unlock"})).await;
    let m = host.recv_until("meeting_updated").await;
    assert_eq!(m["meeting"]["locked"], false);
    let (_guest, gid) = server.guest_waits(&meeting, "Late").await;
    let wr = host.recv_until("waiting_room").await;
    assert_eq!(wr["waiting"][0]["id"], gid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_guest_is_banned_even_after_a_restart() {
    let (server, mut alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut other, _) = server.guest_admitted(&mut host, &meeting, "Olga").await;
    let (mut troll, tj) = server.guest_admitted(&mut host, &meeting, "Troll").await;
    let tid = id_of(&tj);
    let troll_cookie = troll.guest_cookie().expect("guest cookie");
    let troll_token = tj["resume_token"].as_str().unwrap().to_string();

    host.send(json!({"type": "remove", "participant": tid}))
        .await;
    assert_eq!(
        troll.expect_closed().await,
        vec![json!({"type": "removed"})]
    );
    for ws in [&mut host, &mut other] {
        let left = ws.recv_until("participant_left").await;
        assert_eq!(
            left,
            json!({"type": "participant_left", "participant": tid, "reason": "removed"})
        );
    }

    // The same browser comes back with the right passcode: banned.
    let mut again = server
        .ws(&meeting.id, WsOpts::cookie(troll_cookie.clone()))
        .await;
    again.send(join("Troll", &meeting.passcode)).await;
    let got = again.expect_closed().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["code"], "banned");
    // Nor does its resume token bring it back.
    let mut sneak = server
        .ws(&meeting.id, WsOpts::cookie(troll_cookie.clone()))
        .await;
    sneak
        .send(json!({"type": "resume", "token": troll_token}))
        .await;
    sneak.expect_error("resume_failed").await;
    // Somebody else still may.
    server.guest_waits(&meeting, "Newcomer").await;

    // The ban is stored: a restart on the same data directory keeps it.
    let server = server.restart().await;
    alice.rebase(&server);
    let mut again = server
        .ws(&meeting.id, WsOpts::cookie(troll_cookie.clone()))
        .await;
    again.send(join("Troll", &meeting.passcode)).await;
    let got = again.expect_closed().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["code"], "banned");
    // The host's session survived the restart too.
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    server.guest_admitted(&mut host, &meeting, "Fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_account_is_banned_whatever_its_browser() {
    let (server, alice, meeting) = setup().await;
    let bob = server.signed_in("bob").await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut bob_ws, bj) = server
        .guest_admitted_with(&mut host, &meeting, "Bob", bob.ws_opts())
        .await;
    host.send(json!({"type": "remove", "participant": id_of(&bj)}))
        .await;
    assert_eq!(
        bob_ws.expect_closed().await,
        vec![json!({"type": "removed"})]
    );
    // Bob signs in from another browser: still his account, still banned.
    let bob2 = server.signed_in("bob").await;
    let mut again = server.ws(&meeting.id, bob2.ws_opts()).await;
    again.send(join("Bob", &meeting.passcode)).await;
    assert_eq!(again.expect_closed().await[0]["code"], "banned");
    // The owner cannot be removed, not even by a co-host.
    let (mut c, cj) = server.guest_admitted(&mut host, &meeting, "Cora").await;
    host.send(json!({"type": "set_role", "participant": id_of(&cj), "role": "cohost"}))
        .await;
    c.recv_until("waiting_room").await;
    let host_id = host.log.iter().find(|m| m["type"] == "joined").unwrap()["you"].clone();
    c.send(json!({"type": "remove", "participant": host_id}))
        .await;
    c.expect_error("not_permitted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_cannot_moderate() {
    let (server, alice, meeting) = setup().await;
    let (mut host, hj) = server.host_joins(&alice, &meeting.id).await;
    let hid = id_of(&hj);
    let (mut a, _) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (_w, wid) = server.guest_waits(&meeting, "Wes").await;
    host.recv_until("waiting_room").await;
    for msg in [
        json!({"type": "admit", "participant": wid}),
        json!({"type": "deny", "participant": wid}),
        json!({"type": "admit_all"}),
        json!({"type": "remove", "participant": hid}),
        json!({"type": "stop_media", "participant": hid, "kind": "audio"}),
        json!({"type": "mute_all"}),
        json!({"type": "lock"}),
        json!({"type": "set_permissions", "permissions": {"screen_share": "everyone"}}),
        json!({"type": "set_role", "participant": hid, "role": "participant"}),
        json!({"type": "transfer_host", "participant": hid}),
        json!({"type": "suspend_activities"}),
        json!({"type": "end_meeting"}),
        json!({"type": "rename", "name": "Queen"}),
        json!({"type": "set_media", "screen": true}),
    ] {
        a.send(msg.clone()).await;
        let e = a.recv().await;
        assert_eq!(e["type"], "error", "{msg} gave {e}");
        assert_eq!(e["code"], "not_permitted", "{msg} gave {e}");
    }
    // Nothing happened: the host heard nothing, the guest still waits.
    host.expect_silence(QUIET).await;
    host.send(json!({"type": "admit", "participant": wid}))
        .await;
    host.recv_until("participant_joined").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_activities_stops_everything_and_locks_the_meeting() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (mut b, _) = server.guest_admitted(&mut host, &meeting, "Ben").await;
    let aid = id_of(&aj);
    a.send(json!({"type": "set_media", "audio": true, "video": true}))
        .await;
    let p = updated(&mut b, aid).await;
    assert_eq!(
        (p["audio"].clone(), p["video"].clone()),
        (json!(true), json!(true))
    );
    updated(&mut host, aid).await;
    updated(&mut a, aid).await;

    host.send(json!({"type": "suspend_activities"})).await;
    for ws in [&mut host, &mut a, &mut b] {
        let p = updated(ws, aid).await;
        assert_eq!(p["audio"], false);
        assert_eq!(p["video"], false);
        assert_eq!(p["screen"], false);
        let m = ws.recv_until("meeting_updated").await;
        assert_eq!(m["meeting"]["locked"], true);
        assert_eq!(m["meeting"]["suspended"], true);
    }
    // Participants may do nothing now.
    b.send(json!({"type": "chat", "payload": "psst"})).await;
    b.expect_error("not_permitted").await;
    a.send(json!({"type": "set_media", "audio": true})).await;
    a.expect_error("not_permitted").await;
    // Nobody new gets in, not even to wait.
    let mut late = server.ws(&meeting.id, WsOpts::default()).await;
    late.send(join("Late", &meeting.passcode)).await;
    assert_eq!(late.expect_closed().await[0]["code"], "locked");
    // The host still may speak.
    host.send(json!({"type": "chat", "payload": "calm down"}))
        .await;
    b.recv_chat("calm down").await;

    host.send(json!({"type": "resume_activities"})).await;
    let m = b.recv_until("meeting_updated").await;
    assert_eq!(m["meeting"]["suspended"], false);
    assert_eq!(
        m["meeting"]["locked"], true,
        "the lock stays until unlocked"
    );
    b.send(json!({"type": "chat", "payload": "thanks"})).await;
    b.recv_chat("thanks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_member_resumes_its_seat_without_waiting_again() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (a, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let aid = id_of(&aj);
    let token = aj["resume_token"].as_str().unwrap().to_string();
    assert_eq!(aj["resume_window"], 30);

    drop(a); // the network goes away: no close frame
    let p = updated(&mut host, aid).await;
    assert_eq!(p["presence"], "reconnecting");

    // A new socket (no cookie even) takes the seat back with the token.
    let mut back = server.ws(&meeting.id, WsOpts::default()).await;
    back.send(json!({"type": "resume", "token": token})).await;
    let j = back.recv().await;
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["you"], aid);
    assert_eq!(j["role"], "participant");
    let next_token = j["resume_token"].as_str().unwrap().to_string();
    assert_ne!(next_token, token, "a used token is replaced");
    let p = updated(&mut host, aid).await;
    assert_eq!(p["presence"], "connected");
    host.expect_silence(QUIET).await; // no waiting room, no new participant
    back.send(json!({"type": "chat", "payload": "I'm back"}))
        .await;
    assert_eq!(host.recv_chat("I'm back").await["from"], aid);

    // A used token, a made-up token and garbage all fail.
    for bogus in [token.as_str(), "AAAAAAAAAAAAAAAAAAAAAA", "garbage!"] {
        let mut ws = server
            .ws(
                &meeting.id,
                WsOpts::from(std::net::Ipv4Addr::new(127, 0, 0, 3)),
            )
            .await;
        ws.send(json!({"type": "resume", "token": bogus})).await;
        ws.expect_error("resume_failed").await;
    }
    // The seat is still Ann's.
    host.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_meeting_closes_every_socket() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, _) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (mut w, _) = server.guest_waits(&meeting, "Wes").await;
    host.send(json!({"type": "end_meeting"})).await;
    let ended = json!({"type": "ended", "reason": "ended_by_host"});
    for ws in [&mut host, &mut a, &mut w] {
        let got = ws.expect_closed().await;
        assert_eq!(got.last(), Some(&ended), "{got:?}");
    }
    // The meeting itself remains, stops running (the room winds down just
    // after the sockets close) and can start again.
    let path = format!("/api/v1/meetings/{}", meeting.id);
    let mut running = true;
    for _ in 0..250 {
        let (status, v) = alice.get(&path).await;
        assert_eq!(status, reqwest::StatusCode::OK);
        running = v["running"] == true;
        if !running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!running, "the ended meeting still shows as running");
    server.host_joins(&alice, &meeting.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_meeting_ends_it_for_everyone() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, _) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (mut w, _) = server.guest_waits(&meeting, "Wes").await;
    let (status, _) = alice
        .delete(&format!("/api/v1/meetings/{}", meeting.id))
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let ended = json!({"type": "ended", "reason": "deleted"});
    for ws in [&mut host, &mut a, &mut w] {
        let got = ws.expect_closed().await;
        assert_eq!(got.last(), Some(&ended), "{got:?}");
    }
    let mut late = server.ws(&meeting.id, WsOpts::default()).await;
    late.send(join("Late", &meeting.passcode)).await;
    late.expect_error("join_refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_tells_everyone() {
    let (mut server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, _) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (mut w, _) = server.guest_waits(&meeting, "Wes").await;
    let mut idle = server.ws(&meeting.id, WsOpts::default()).await;
    server.shutdown().await;
    let ended = json!({"type": "ended", "reason": "server_shutdown"});
    for ws in [&mut host, &mut a, &mut w] {
        let got = ws.expect_closed().await;
        assert_eq!(got.last(), Some(&ended), "{got:?}");
    }
    let got = idle.expect_closed().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "shutting_down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_controls_over_media_permissions_roles_and_names() {
    let (server, alice, meeting) = setup().await;
    let (mut host, hj) = server.host_joins(&alice, &meeting.id).await;
    let hid = id_of(&hj);
    let (mut a, aj) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let aid = id_of(&aj);

    // Muted by the host, Ann may unmute herself while self-unmute is allowed...
    a.send(json!({"type": "set_media", "audio": true})).await;
    assert_eq!(updated(&mut host, aid).await["audio"], true);
    host.send(json!({"type": "stop_media", "participant": aid, "kind": "audio"}))
        .await;
    assert_eq!(updated(&mut a, aid).await["audio"], true); // her own change
    assert_eq!(updated(&mut a, aid).await["audio"], false);
    a.send(json!({"type": "set_media", "audio": true})).await;
    assert_eq!(updated(&mut a, aid).await["audio"], true);
    // ...and not once the host forbids it.
    host.send(json!({"type": "set_permissions", "permissions": {"self_unmute": false}}))
        .await;
    host.send(json!({"type": "mute_all"})).await;
    assert_eq!(updated(&mut a, aid).await["audio"], false);
    a.send(json!({"type": "set_media", "audio": true})).await;
    a.recv_error("not_permitted").await;

    // Screen share is the host's until shared with everyone; taking it back
    // stops a share in progress.
    a.send(json!({"type": "set_media", "screen": true})).await;
    a.recv_error("not_permitted").await;
    host.send(json!({"type": "set_permissions", "permissions": {"screen_share": "everyone"}}))
        .await;
    let m = a.recv_until("meeting_updated").await;
    assert_eq!(m["meeting"]["permissions"]["screen_share"], "everyone");
    a.send(json!({"type": "set_media", "screen": true})).await;
    assert_eq!(updated(&mut a, aid).await["screen"], true);
    host.send(json!({"type": "set_permissions", "permissions": {"screen_share": "host_only"}}))
        .await;
    assert_eq!(updated(&mut a, aid).await["screen"], false);
    // The change is stored with the meeting.
    let (_, v) = alice.get(&format!("/api/v1/meetings/{}", meeting.id)).await;
    assert_eq!(v["settings"]["self_unmute"], false);
    assert_eq!(v["settings"]["screen_share"], "host_only");

    // Renaming: forbidden by default, allowed when the host says so.
    a.send(json!({"type": "rename", "name": "Anna"})).await;
    a.recv_error("not_permitted").await;
    host.send(json!({"type": "set_permissions", "permissions": {"rename_self": true}}))
        .await;
    a.recv_until("meeting_updated").await;
    a.send(json!({"type": "rename", "name": "  Anna  "})).await;
    while updated(&mut host, aid).await["name"] != "Anna" {}

    // A co-host may admit; the host hands over the meeting.
    host.send(json!({"type": "set_role", "participant": aid, "role": "cohost"}))
        .await;
    a.recv_until("waiting_room").await;
    let (mut w, wid) = server.guest_waits(&meeting, "Wes").await;
    a.recv_until("waiting_room").await;
    a.send(json!({"type": "admit", "participant": wid})).await;
    assert_eq!(w.recv().await["type"], "joined");
    host.send(json!({"type": "transfer_host", "participant": aid}))
        .await;
    while updated(&mut a, aid).await["role"] != "host" {}
    assert_eq!(updated(&mut a, hid).await["role"], "cohost");
    host.send(json!({"type": "end_meeting"})).await;
    host.recv_error("not_permitted").await;
    a.send(json!({"type": "end_meeting"})).await;
    let got = w.expect_closed().await;
    assert_eq!(got.last().unwrap()["reason"], "ended_by_host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changed_over_the_api_reach_a_running_meeting() {
    let (server, alice, meeting) = setup().await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (mut a, _) = server.guest_admitted(&mut host, &meeting, "Ann").await;
    let (status, v) = alice
        .patch(
            &format!("/api/v1/meetings/{}", meeting.id),
            json!({"regenerate_passcode": true, "settings": {"chat": false}}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["running"], true);
    let m = a.recv_until("meeting_updated").await;
    assert_eq!(m["meeting"]["permissions"]["chat"], false);
    a.send(json!({"type": "chat", "payload": "hi"})).await;
    a.expect_error("not_permitted").await;
    // Members stay; only newcomers need the new passcode.
    let mut old = server.ws(&meeting.id, WsOpts::default()).await;
    old.send(join("Old link", &meeting.passcode)).await;
    old.expect_error("join_refused").await;
    let fresh = Meeting {
        passcode: v["passcode"].as_str().unwrap().to_string(),
        ..meeting.clone()
    };
    server.guest_waits(&fresh, "New link").await;
    host.send(json!({"type": "chat", "payload": "still with us?"}))
        .await;
    a.recv_chat("still with us?").await;
}
