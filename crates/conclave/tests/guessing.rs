//! Guessing at once: hundreds of passcode and password attempts sent
//! together over real sockets, and how many argon2 checks they got out of the
//! server. The limits are 5 failures a minute per address and 30 per meeting;
//! an attempt counts before its check runs, so sending guesses together buys
//! no more checks than sending them one after another.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::common::{Api, Frame, Meeting, PASSWORD, TestServer, Ws, WsOpts, join};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a test waits for the answer to one attempt among hundreds. Only
/// a failing server (one that checks every guess) makes anyone wait long.
const ANSWER: Duration = Duration::from_secs(120);

/// A server that lets one address hold a thousand sockets that have not
/// joined yet, so that the join limits, not the socket limit, meet the
/// flood; alice is signed in.
async fn setup() -> (TestServer, Api) {
    let server = TestServer::start_with(|c| c.limits.max_pending_per_address = 1000).await;
    let alice = server.signed_in("alice").await;
    (server, alice)
}

/// The first answer on `ws`; panics if the socket closes without one.
async fn answer(ws: &mut Ws) -> Value {
    match ws.next(ANSWER).await {
        Some(Frame::Msg(v)) => v,
        other => panic!("no answer to an attempt: {other:?}"),
    }
}

/// What a flood of attempts came to.
#[derive(Debug, Default)]
struct Tally {
    /// `join_refused` (or `resume_failed`): the attempt was checked and failed.
    refused: usize,
    /// `too_many_attempts`: refused before any check.
    limited: usize,
    /// argon2 checks the server ran for the flood.
    checks: u64,
}

/// Opens one socket per target, then sends every target's message at once
/// and reads every answer. Each answer must be `refused` or
/// `too_many_attempts` (with a `retry_after`).
async fn flood(server: &TestServer, targets: Vec<(String, WsOpts, Value)>, refused: &str) -> Tally {
    // One browser's guest cookie on every socket, as a scripted attacker
    // would send: a fresh identity each time would meet the server's limit
    // on new guests per network, and this flood is about the guesses.
    let cookie = browser_cookie(server).await;
    let mut sockets = Vec::new();
    for (meeting, mut opts, msg) in targets {
        opts.cookie = Some(cookie.clone());
        sockets.push((server.ws(&meeting, opts).await, msg));
    }
    let before = server.argon2_checks();
    let answers = join_all(sockets.into_iter().map(|(mut ws, msg)| async move {
        ws.send(msg).await;
        let a = answer(&mut ws).await;
        (ws, a)
    }))
    .await;
    let mut tally = Tally {
        checks: server.argon2_checks() - before,
        ..Tally::default()
    };
    for (_ws, a) in &answers {
        assert_eq!(a["type"], "error", "{a}");
        match a["code"].as_str() {
            Some(c) if c == refused => tally.refused += 1,
            Some("too_many_attempts") => {
                assert!(a["retry_after"].as_u64().is_some_and(|s| s > 0), "{a}");
                tally.limited += 1;
            }
            _ => panic!("unexpected answer {a}"),
        }
    }
    tally
}

/// The guest cookie the server gives a new browser.
async fn browser_cookie(server: &TestServer) -> String {
    let ws = server.ws("not-a-meeting", WsOpts::default()).await;
    ws.guest_cookie().expect("a guest cookie")
}

/// A well-formed meeting ID nobody created, different for each `n` below 32 768.
fn unknown_id(n: usize) -> String {
    const CROCKFORD: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let symbol = |shift: usize| char::from(CROCKFORD[(n >> shift) & 31]);
    format!("zzzz-zzzz-zzzz-z{}{}{}", symbol(10), symbol(5), symbol(0))
}

#[test]
fn unknown_ids_are_well_formed_and_distinct() {
    let ids: std::collections::BTreeSet<_> = (0..1000).map(unknown_id).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        assert!(id.parse::<conclave_proto::MeetingId>().is_ok(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_once_from_one_address_get_at_most_five_checks() {
    let (server, alice) = setup().await;
    let meeting = alice.create_meeting(json!({"title": "Board"})).await;
    // Waves of a hundred guesses sent together, each wave once the last was
    // answered, until five have been checked: the in-flight cap refuses most
    // of each wave, and the fifth failure blocks the address. (How many of a
    // wave are checked depends on how fast argon2 answers; the sum may not
    // pass the limit.)
    let mut total = Tally::default();
    for wave in 0..10 {
        if total.refused >= 5 {
            break;
        }
        let targets = (0..100)
            .map(|i| {
                let guess = join("Eve", &format!("guess{wave}{i:04}"));
                (meeting.id.clone(), WsOpts::default(), guess)
            })
            .collect();
        let t = flood(&server, targets, "join_refused").await;
        assert_eq!(t.refused + t.limited, 100, "{t:?}");
        total.refused += t.refused;
        total.limited += t.limited;
        total.checks += t.checks;
    }
    assert!(
        total.refused <= 5,
        "{total:?}: more guesses checked than the limit"
    );
    assert!(
        total.checks <= 5,
        "{total:?}: argon2 ran more than the limit"
    );
    // The address is blocked now, the right passcode included...
    let mut late = server.ws(&meeting.id, WsOpts::default()).await;
    late.send(join("Eve", &meeting.passcode)).await;
    late.expect_error("too_many_attempts").await;
    // ...while a guest from elsewhere still gets in.
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
async fn guesses_at_once_spread_over_many_meetings_get_at_most_five_checks() {
    let (server, alice) = setup().await;
    let mut meetings: Vec<Meeting> = Vec::new();
    for i in 0..10 {
        meetings.push(
            alice
                .create_meeting(json!({"title": format!("m{i}")}))
                .await,
        );
    }
    // Ten real meetings and 290 that do not exist, one guess each.
    let targets = (0..300)
        .map(|i| {
            let id = match meetings.get(i) {
                Some(m) => m.id.clone(),
                None => unknown_id(i),
            };
            (id, WsOpts::default(), join("Eve", &format!("guess{i:05}")))
        })
        .collect();
    let t = flood(&server, targets, "join_refused").await;
    assert_eq!(t.refused + t.limited, 300, "{t:?}");
    assert!(t.refused <= 5, "{t:?}");
    assert!(t.checks <= 5, "{t:?}: argon2 ran more than the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_guesses_at_once_at_one_meeting_get_at_most_thirty_checks() {
    let (server, alice) = setup().await;
    let meeting = alice.create_meeting(json!({"title": "Board"})).await;
    // 250 addresses, two sockets each: no address reaches its own limit, so
    // only the meeting's limit stands between the flood and argon2.
    let targets = (0..500)
        .map(|i| {
            let from = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
            let guess = join("Eve", &format!("guess{i:05}"));
            (meeting.id.clone(), WsOpts::from(from), guess)
        })
        .collect();
    let t = flood(&server, targets, "join_refused").await;
    assert_eq!(t.refused + t.limited, 500, "{t:?}");
    assert!(t.refused <= 30, "{t:?}");
    assert!(t.checks <= 30, "{t:?}: argon2 ran more than the limit");
    // The owner still gets in.
    server.host_joins(&alice, &meeting.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_right_passcodes_at_once_from_one_address_all_get_in() {
    // A meeting's start, everyone behind one address: the limit on checks in
    // flight must not turn anyone away, and one argon2 check lets them all in.
    let (server, alice) = setup().await;
    let meeting = alice
        .create_meeting(json!({"settings": {"max_participants": 1000}}))
        .await;
    let cookie = browser_cookie(&server).await;
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(server.ws(&meeting.id, WsOpts::cookie(cookie.clone())).await);
    }
    let before = server.argon2_checks();
    let answers = join_all(sockets.into_iter().enumerate().map(|(i, mut ws)| {
        let msg = join(&format!("Guest {i}"), &meeting.passcode);
        async move {
            ws.send(msg).await;
            let a = answer(&mut ws).await;
            (ws, a)
        }
    }))
    .await;
    for (_ws, a) in &answers {
        assert_eq!(a["type"], "waiting", "{a}");
    }
    assert_eq!(server.argon2_checks() - before, 1, "one check for everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_failures_count_whether_or_not_the_meeting_runs() {
    let (server, alice) = setup().await;
    let running = alice.create_meeting(json!({"title": "Running"})).await;
    let idle = alice.create_meeting(json!({"title": "Idle"})).await;
    let (_host, _) = server.host_joins(&alice, &running.id).await;
    // The same made-up token, at a running meeting and at one that is not:
    // the same answer, and the socket closes after it in both cases.
    let bogus = json!({"type": "resume", "token": "AAAAAAAAAAAAAAAAAAAAAA"});
    let mut answers = Vec::new();
    for (i, id) in [&running.id, &idle.id].into_iter().enumerate() {
        let from = WsOpts::from(Ipv4Addr::new(127, 0, 2, 1 + i as u8));
        let mut ws = server.ws(id, from).await;
        ws.send(bogus.clone()).await;
        answers.push(ws.expect_closed().await);
    }
    assert_eq!(answers[0], answers[1], "running or not, one answer");
    assert_eq!(
        answers[0],
        vec![
            json!({"type": "error", "code": "resume_failed", "message": "cannot resume; join again"})
        ]
    );

    // Both count: five failed resumes at the running meeting block the
    // address, as five at the idle one do.
    for (n, id) in [(3, &running.id), (4, &idle.id)] {
        let from = Ipv4Addr::new(127, 0, 2, n);
        for _ in 0..5 {
            let mut ws = server.ws(id, WsOpts::from(from)).await;
            ws.send(bogus.clone()).await;
            ws.expect_error("resume_failed").await;
        }
        let mut ws = server.ws(id, WsOpts::from(from)).await;
        ws.send(bogus.clone()).await;
        ws.expect_error("too_many_attempts").await;
    }

    // Hundreds at once at the running meeting, from one address: each one
    // counts, and the address is blocked, as at a meeting that is not running.
    for (n, id) in [(9, &running.id), (10, &idle.id)] {
        let from = Ipv4Addr::new(127, 0, 2, n);
        let targets = (0..200)
            .map(|_| (id.clone(), WsOpts::from(from), bogus.clone()))
            .collect();
        let t = flood(&server, targets, "resume_failed").await;
        assert_eq!(t.refused + t.limited, 200, "{t:?}");
        assert_eq!(t.checks, 0, "a resume runs no argon2");
        let mut ws = server.ws(id, WsOpts::from(from)).await;
        ws.send(bogus.clone()).await;
        ws.expect_error("too_many_attempts").await;
    }
}

/// An HTTP client whose connections come from `from`.
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .timeout(ANSWER)
        .build()
        .expect("http client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_at_once_get_at_most_five_checks() {
    let server = TestServer::start().await;
    let url = server.url("/api/v1/auth/signin");
    let flood_client = client_from(Ipv4Addr::new(127, 0, 3, 1));
    let wave = |n: usize| {
        join_all((0..100).map(|i| {
            let body = json!({"username": "alice", "password": format!("guess {n}{i:04}")});
            let req = flood_client.post(&url).json(&body);
            async move { req.send().await.expect("sign-in request").status() }
        }))
    };
    let before = server.argon2_checks();
    // Alice signs in from her own address while the first wave is on.
    let alice = async {
        let resp = client_from(Ipv4Addr::new(127, 0, 3, 2))
            .post(&url)
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .expect("sign-in request");
        crate::common::read(resp).await
    };
    let (mut statuses, (alice_status, alice_body)) = tokio::join!(wave(0), alice);
    assert_eq!(alice_status, StatusCode::OK, "{alice_body}");
    assert_eq!(alice_body["username"], "alice");
    // More waves until five were checked (the fifth failure blocks).
    let checked = |s: &[StatusCode]| s.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    for n in 1..10 {
        if checked(&statuses) >= 5 {
            break;
        }
        statuses.extend(wave(n).await);
    }
    let checks = server.argon2_checks() - before;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(refused + limited, statuses.len(), "{statuses:?}");
    assert!(refused <= 5, "{refused} wrong passwords were checked");
    // Alice's check and at most five of the flood's.
    assert!(checks <= 6, "argon2 ran {checks} times");
    // The flooding address is blocked, the right password included.
    let resp = flood_client
        .post(&url)
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .expect("sign-in request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}
