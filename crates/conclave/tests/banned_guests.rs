//! A removed guest trying to come back, over real sockets: with a made-up
//! cookie, with cookies cleared, with a cookie copied from another guest,
//! after a restart, and by clearing cookies over and over. Guests play
//! different people by connecting from different loopback addresses
//! (127.0.0.N); the host is on 127.0.0.1.

use std::net::Ipv4Addr;

use crate::common::{Meeting, TestServer, Ws, WsOpts, join};
use conclave::guest::GuestIds;
use conclave_core::BanKey;
use serde_json::{Value, json};

/// The troll's network, and two bystanders'.
const TROLL: u8 = 5;
const OLGA: u8 = 6;
const ELSEWHERE: u8 = 7;

fn from(n: u8, cookie: Option<&str>) -> WsOpts {
    WsOpts {
        source: Some(Ipv4Addr::new(127, 0, 0, n)),
        cookie: cookie.map(str::to_string),
        ..WsOpts::default()
    }
}

/// The identity part of a `conclave_guest=<id>.<tag>` cookie pair.
fn id_of(cookie: &str) -> &str {
    let value = cookie
        .strip_prefix("conclave_guest=")
        .expect("guest cookie");
    value.split_once('.').expect("a signed cookie").0
}

/// A meeting with its waiting room off, its host in it.
async fn open_meeting() -> (TestServer, Meeting, Ws) {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (host, _) = server.host_joins(&alice, &meeting.id).await;
    (server, meeting, host)
}

/// A guest walks straight in (the waiting room is off): socket, id, cookie.
async fn walks_in(
    server: &TestServer,
    meeting: &Meeting,
    host: &mut Ws,
    name: &str,
    opts: WsOpts,
) -> (Ws, u64, String) {
    let mut ws = server.ws(&meeting.id, opts.clone()).await;
    ws.send(join(name, &meeting.passcode)).await;
    let joined = ws.recv().await;
    assert_eq!(joined["type"], "joined", "{name} walks in: {joined}");
    let id = joined["you"].as_u64().expect("id");
    let pj = host.recv_until("participant_joined").await;
    assert_eq!(pj["participant"]["id"], id);
    let cookie = ws
        .guest_cookie()
        .or(opts.cookie)
        .expect("a guest cookie, given now or earlier");
    (ws, id, cookie)
}

/// The host removes `id`; its socket hears `removed` and closes.
async fn remove(host: &mut Ws, victim: &mut Ws, id: u64) {
    host.send(json!({"type": "remove", "participant": id}))
        .await;
    assert_eq!(
        victim.expect_closed().await,
        vec![json!({"type": "removed"})]
    );
    host.recv_until("participant_left").await;
}

/// Someone who must wait although the waiting room is off: their id, and the
/// waiting-room entry the host is shown for them.
async fn held(
    server: &TestServer,
    meeting: &Meeting,
    host: &mut Ws,
    name: &str,
    opts: WsOpts,
) -> (Ws, u64, Value) {
    let mut ws = server.ws(&meeting.id, opts).await;
    ws.send(join(name, &meeting.passcode)).await;
    let w = ws.recv().await;
    assert_eq!(w["type"], "waiting", "{name} is held for the host: {w}");
    let id = w["you"].as_u64().expect("id");
    // Earlier updates (someone before them leaving) may come first.
    loop {
        let room = host.recv_until("waiting_room").await;
        let entry = room["waiting"]
            .as_array()
            .expect("waiting list")
            .iter()
            .find(|e| e["id"] == id)
            .cloned();
        if let Some(entry) = entry {
            return (ws, id, entry);
        }
    }
}

/// A join that is refused outright with `code`, closing the socket.
async fn turned_away(server: &TestServer, meeting: &Meeting, opts: WsOpts, code: &str) {
    let mut ws = server.ws(&meeting.id, opts).await;
    ws.send(join("Troll", &meeting.passcode)).await;
    let got = ws.expect_closed().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], code, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_guest_with_a_made_up_or_cleared_cookie_is_held_for_the_host() {
    let (server, meeting, mut host) = open_meeting().await;
    let (mut troll, tid, troll_cookie) =
        walks_in(&server, &meeting, &mut host, "Troll", from(TROLL, None)).await;
    remove(&mut host, &mut troll, tid).await;

    // Its own cookie, even from another network: turned away.
    turned_away(
        &server,
        &meeting,
        from(ELSEWHERE, Some(&troll_cookie)),
        "banned",
    )
    .await;

    // From its own network with a cookie it made up (any 32 hex digits were
    // an identity before), with its own identity under a forged tag, or with
    // no cookie at all: a new identity, and although the waiting room is off
    // the host decides, told that this person shares a removed one's network.
    let forged_own = format!("conclave_guest={}.{}", id_of(&troll_cookie), "0".repeat(32));
    for cookie in [
        Some("conclave_guest=0123456789abcdef0123456789abcdef".to_string()),
        Some(forged_own),
        None,
    ] {
        let (ws, _, entry) = held(
            &server,
            &meeting,
            &mut host,
            "Totally new",
            from(TROLL, cookie.as_deref()),
        )
        .await;
        assert_eq!(entry["same_network_as_removed"], true, "{entry}");
        let issued = ws.guest_cookie().expect("a new cookie is issued");
        assert_ne!(id_of(&issued), id_of(&troll_cookie));
        assert_ne!(
            Some(&issued),
            cookie.as_ref(),
            "the made-up cookie is not kept"
        );
    }
    // Removed again from the waiting room, its new identity is banned too.
    let (mut again, aid, _) = held(&server, &meeting, &mut host, "Again", from(TROLL, None)).await;
    let again_cookie = again.guest_cookie().expect("cookie");
    host.send(json!({"type": "remove", "participant": aid}))
        .await;
    assert_eq!(
        again.expect_closed().await,
        vec![json!({"type": "removed"})]
    );
    turned_away(
        &server,
        &meeting,
        from(ELSEWHERE, Some(&again_cookie)),
        "banned",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_guests_cookie_does_not_walk_a_banned_guest_in() {
    let (server, meeting, mut host) = open_meeting().await;
    let (_olga, _, olga_cookie) =
        walks_in(&server, &meeting, &mut host, "Olga", from(OLGA, None)).await;
    let (mut troll, tid, _) =
        walks_in(&server, &meeting, &mut host, "Troll", from(TROLL, None)).await;
    remove(&mut host, &mut troll, tid).await;

    // Olga's identity without Olga's tag is no identity: a fresh one is
    // issued, and the host, removing it, bans that one, not Olga.
    let forged = format!("conclave_guest={}.{}", id_of(&olga_cookie), "f".repeat(32));
    let (mut fake, fid, entry) = held(
        &server,
        &meeting,
        &mut host,
        "Olga",
        from(TROLL, Some(&forged)),
    )
    .await;
    assert_eq!(entry["same_network_as_removed"], true);
    let issued = fake.guest_cookie().expect("a fresh identity");
    assert_ne!(id_of(&issued), id_of(&olga_cookie));
    host.send(json!({"type": "remove", "participant": fid}))
        .await;
    assert_eq!(fake.expect_closed().await, vec![json!({"type": "removed"})]);

    // Olga's whole cookie, copied: it is a bearer credential, so the troll
    // is Olga now; but from the troll's network it still waits, flagged.
    let (_copy, _, entry) = held(
        &server,
        &meeting,
        &mut host,
        "Olga",
        from(TROLL, Some(&olga_cookie)),
    )
    .await;
    assert_eq!(entry["same_network_as_removed"], true);

    // Olga herself, from her own network, is unaffected by all of it.
    let (_, _, kept) = walks_in(
        &server,
        &meeting,
        &mut host,
        "Olga",
        from(OLGA, Some(&olga_cookie)),
    )
    .await;
    assert_eq!(kept, olga_cookie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_on_other_networks_walk_in_unflagged_after_a_ban() {
    let (server, meeting, mut host) = open_meeting().await;
    let (mut troll, tid, _) =
        walks_in(&server, &meeting, &mut host, "Troll", from(TROLL, None)).await;
    remove(&mut host, &mut troll, tid).await;

    // A new guest elsewhere walks straight in, as the meeting's settings say,
    // and so does a returning one.
    let (_first, _, cookie) =
        walks_in(&server, &meeting, &mut host, "Grace", from(ELSEWHERE, None)).await;
    walks_in(
        &server,
        &meeting,
        &mut host,
        "Grace",
        from(ELSEWHERE, Some(&cookie)),
    )
    .await;
    // No waiting room appeared for anyone.
    assert!(host.log.iter().all(|m| m["type"] != "waiting_room"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_cookies_and_network_bans_survive_a_restart() {
    let server = TestServer::start().await;
    let mut alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    let (_grace, _, grace_cookie) =
        walks_in(&server, &meeting, &mut host, "Grace", from(OLGA, None)).await;
    let (mut troll, tid, troll_cookie) =
        walks_in(&server, &meeting, &mut host, "Troll", from(TROLL, None)).await;
    remove(&mut host, &mut troll, tid).await;
    drop(host);

    let server = server.restart().await;
    alice.rebase(&server);
    let (mut host, _) = server.host_joins(&alice, &meeting.id).await;
    // The signing key was kept: Grace's cookie still verifies, so she is
    // given no new one and keeps her identity.
    let (grace, _, _) = walks_in(
        &server,
        &meeting,
        &mut host,
        "Grace",
        from(OLGA, Some(&grace_cookie)),
    )
    .await;
    assert_eq!(
        grace.guest_cookie(),
        None,
        "no new identity after a restart"
    );
    // The troll's identity is still banned anywhere, its network still held.
    turned_away(
        &server,
        &meeting,
        from(ELSEWHERE, Some(&troll_cookie)),
        "banned",
    )
    .await;
    let (_, _, entry) = held(&server, &meeting, &mut host, "Troll", from(TROLL, None)).await;
    assert_eq!(entry["same_network_as_removed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_cookies_over_and_over_runs_out_of_identities() {
    let server = TestServer::start_with(|c| c.limits.new_guests_per_minute = 3).await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let mut kept = None;
    for _ in 0..3 {
        let ws = server.ws(&meeting.id, from(TROLL, None)).await;
        kept = Some(ws.guest_cookie().expect("an identity is minted"));
    }
    // The fourth in a minute gets none, and without one may not join; the
    // socket stays open and says when to try again.
    let mut ws = server.ws(&meeting.id, from(TROLL, None)).await;
    assert_eq!(ws.guest_cookie(), None);
    ws.send(join("Fourth", &meeting.passcode)).await;
    let e = ws.expect_error("too_many_attempts").await;
    let wait = e["retry_after"].as_u64().expect("retry_after");
    assert!((1..=60).contains(&wait), "{e}");
    // A made-up cookie is no way round it.
    let mut ws = server
        .ws(
            &meeting.id,
            from(
                TROLL,
                Some("conclave_guest=0123456789abcdef0123456789abcdef"),
            ),
        )
        .await;
    ws.send(join("Fifth", &meeting.passcode)).await;
    ws.expect_error("too_many_attempts").await;
    // A browser that kept its cookie still gets in, as does another network,
    // and a signed-in account from the same network.
    let mut ws = server.ws(&meeting.id, from(TROLL, kept.as_deref())).await;
    ws.send(join("Kept", &meeting.passcode)).await;
    assert_eq!(ws.recv().await["type"], "joined");
    let mut ws = server.ws(&meeting.id, from(ELSEWHERE, None)).await;
    ws.send(join("Elsewhere", &meeting.passcode)).await;
    assert_eq!(ws.recv().await["type"], "joined");
    let bob = server.signed_in("bob").await;
    let mut opts = bob.ws_opts();
    opts.source = Some(Ipv4Addr::new(127, 0, 0, TROLL));
    let mut ws = server.ws(&meeting.id, opts).await;
    ws.send(join("Bob", &meeting.passcode)).await;
    assert_eq!(ws.recv().await["type"], "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_an_unsigned_cookie_from_before_the_upgrade_still_holds() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    // A ban stored by an older server, on a cookie value its holder chose.
    let old = "00112233445566778899aabbccddeeff";
    server
        .store()
        .await
        .add_bans(
            meeting.id.parse().expect("meeting id"),
            &[BanKey::Guest(old.into())],
        )
        .await
        .expect("ban stored");
    let opts = from(ELSEWHERE, Some(&format!("conclave_guest={old}")));
    let mut ws = server.ws(&meeting.id, opts).await;
    // The banned value is taken over, signed, so the ban keeps holding...
    let signed = ws.guest_cookie().expect("the old cookie is replaced");
    assert_eq!(id_of(&signed), old);
    ws.send(join("Old", &meeting.passcode)).await;
    assert_eq!(ws.expect_closed().await[0]["code"], "banned");
    // ...while an unbanned old value is no identity any more: a new one.
    let other = "ffeeddccbbaa99887766554433221100";
    let ws = server
        .ws(
            &meeting.id,
            from(OLGA, Some(&format!("conclave_guest={other}"))),
        )
        .await;
    assert_ne!(id_of(&ws.guest_cookie().expect("new")), other);
    // And the signing is the server's: a key of our own signs nothing it takes.
    let ours = GuestIds::new(&[1; 32], 1).expect("keyed").sign(other);
    let ws = server
        .ws(
            &meeting.id,
            from(OLGA, Some(&format!("conclave_guest={ours}"))),
        )
        .await;
    assert_ne!(id_of(&ws.guest_cookie().expect("new")), other);
}
