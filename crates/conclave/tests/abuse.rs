//! Attacks on the join path and bad input: the server answers clearly, limits
//! what it must, keeps serving everyone else, and changes nothing it stores.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn socket(server: &TestServer, meeting: &str, n: u8) -> Ws {
    Ws::connect(
        server,
        meeting,
        WsOptions {
            from: Some(addr(n)),
            ..WsOptions::default()
        },
    )
    .await
}

#[tokio::test]
async fn unknown_meeting_and_wrong_passcode_get_the_same_answer() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({})).await;
    let mut a = socket(&server, &id(&meeting), 2).await;
    let wrong = a.join("A", Some("wrongwrong")).await;
    let mut b = socket(&server, "zzzz-zzzz-zzzz-zzzz", 3).await;
    let unknown = b.join("B", Some("wrongwrong")).await;
    let mut c = socket(&server, "definitely%20not-an-id", 4).await;
    let garbage = c.join("C", Some("wrongwrong")).await;
    assert_eq!(wrong["code"], "join_refused");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, garbage);
    // The refused socket may try again (a mistyped passcode).
    assert_eq!(
        a.join("A", Some(&passcode(&meeting))).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn a_thousand_wrong_passcodes_meet_the_rate_limit() {
    // The per-connection message limit would cut a flood on one socket first;
    // raise it so that every attempt reaches the join guard.
    let server = TestServer::start_with(|c| c.limits.message_burst = 5000).await;
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({})).await;
    let mut ws = socket(&server, &id(&meeting), 2).await;
    let mut refused = 0;
    let mut limited = 0;
    let mut retry_after = Vec::new();
    for i in 0..1000 {
        let answer = ws.join("Mallory", Some(&format!("guess{i:05}"))).await;
        match answer["code"].as_str() {
            Some("join_refused") => refused += 1,
            Some("too_many_attempts") => {
                limited += 1;
                retry_after.push(answer["retry_after"].as_u64().expect("retry_after"));
            }
            other => panic!("unexpected answer {other:?}: {answer}"),
        }
    }
    assert_eq!(refused, 5, "only five guesses reach the passcode check");
    assert_eq!(limited, 995);
    assert!(retry_after.iter().all(|s| *s > 0 && *s <= 60));
    // Even the right passcode is refused from this address now.
    let answer = ws.join("Mallory", Some(&passcode(&meeting))).await;
    assert_eq!(answer["code"], "too_many_attempts");
    // Another address is unaffected.
    let mut other = socket(&server, &id(&meeting), 3).await;
    assert_eq!(
        other.join("Alice", Some(&passcode(&meeting))).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn hosts_hear_about_guessing_spread_over_many_addresses() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({})).await;
    for n in 0..10u8 {
        let mut ws = socket(&server, &id(&meeting), 10 + n).await;
        assert_eq!(
            ws.join("M", Some("not-the-passcode")).await["code"],
            "join_refused"
        );
    }
    let notice = host.until("security_notice").await;
    assert_eq!(notice["failed_attempts"], 10);
    assert_eq!(notice["window_secs"], 60);
}

#[tokio::test]
async fn malformed_messages_get_clear_errors_and_the_socket_stays() {
    let server = TestServer::start().await;
    let (_http, _meeting, mut host) = running_meeting(&server, json!({})).await;
    let cases: [(Message, &str); 6] = [
        (Message::Text("{".into()), "bad_message"),
        (Message::Text("[1,2]".into()), "bad_message"),
        (Message::Text(r#"{"type":"launch"}"#.into()), "unknown_type"),
        (
            Message::Text(r#"{"type":"admit","participant":"p1"}"#.into()),
            "bad_message",
        ),
        (
            Message::Text(r#"{"type":"lock","please":true}"#.into()),
            "bad_message",
        ),
        (Message::Binary(vec![0u8, 1, 2].into()), "bad_message"),
    ];
    for (msg, code) in cases {
        assert!(host.send_raw(msg).await);
        assert_eq!(host.until("error").await["code"], code);
    }
    host.send(json!({"type": "lock"})).await;
    assert_eq!(
        host.until("meeting_updated").await["meeting"]["locked"],
        true
    );
}

#[tokio::test]
async fn oversized_frame_closes_only_that_socket() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut bad = socket(&server, &id(&meeting), 2).await;
    assert_eq!(
        bad.join("Big", Some(&passcode(&meeting))).await["type"],
        "joined"
    );
    host.until("participant_joined").await;
    let huge = json!({"type": "chat", "payload": "x".repeat(100 * 1024)});
    bad.send_raw(Message::Text(huge.to_string().into())).await;
    assert!(bad.closed().await);
    // The others carry on.
    host.send(json!({"type": "chat", "payload": "still here"}))
        .await;
    assert_eq!(host.until("chat").await["payload"], "still here");
}

#[tokio::test]
async fn a_flood_is_refused_then_cut_off_without_hurting_others() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut flood = socket(&server, &id(&meeting), 2).await;
    assert_eq!(
        flood.join("Flood", Some(&passcode(&meeting))).await["type"],
        "joined"
    );
    for _ in 0..500 {
        if !flood
            .send_raw(Message::Text(
                r#"{"type":"set_media","audio":false}"#.into(),
            ))
            .await
        {
            break;
        }
    }
    let mut floods = 0;
    while let Some(v) = flood.next(Duration::from_secs(5)).await {
        if v["code"] == "flood" {
            floods += 1;
        }
    }
    assert!(floods > 0, "flood errors were sent");
    // The socket is gone; the host's is fine.
    host.send(json!({"type": "chat", "payload": "calm"})).await;
    assert_eq!(host.until("chat").await["payload"], "calm");
}

#[tokio::test]
async fn idle_sockets_are_closed_and_others_still_join() {
    let server = TestServer::start_with(|c| c.limits.join_timeout_secs = 1).await;
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({})).await;
    let stored = |v: (u16, Value)| {
        let mut v = v.1;
        if let Some(list) = v.as_array_mut() {
            for m in list {
                m.as_object_mut().map(|o| o.remove("running"));
            }
        }
        v
    };
    let before = stored(http.get("/api/v1/meetings").await);
    // Sockets that connect and never speak, from many addresses (each
    // address may hold 20 such sockets).
    let mut idle = Vec::new();
    for i in 0..400u32 {
        let n = 20 + (i % 200) as u8;
        if let Ok(ws) = Ws::try_connect(
            &server,
            &id(&meeting),
            WsOptions {
                from: Some(addr(n)),
                ..WsOptions::default()
            },
        )
        .await
        {
            idle.push(ws);
        }
    }
    assert!(idle.len() >= 390, "only {} connected", idle.len());
    // Meanwhile a real person joins.
    let mut alice = socket(&server, &id(&meeting), 2).await;
    assert_eq!(
        alice.join("Alice", Some(&passcode(&meeting))).await["type"],
        "waiting"
    );
    // The idle ones are told and closed.
    let mut timed_out = 0;
    for ws in idle.iter_mut().take(50) {
        if let Some(v) = ws.next(Duration::from_secs(5)).await
            && v["code"] == "timeout"
        {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 50);
    assert_eq!(stored(http.get("/api/v1/meetings").await), before);
}

#[tokio::test]
async fn too_many_pending_sockets_from_one_address_are_refused() {
    let server = TestServer::start().await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(socket(&server, "abcd-abcd-abcd-abcd", 9).await);
    }
    let refused = Ws::try_connect(
        &server,
        "abcd-abcd-abcd-abcd",
        WsOptions {
            from: Some(addr(9)),
            ..WsOptions::default()
        },
    )
    .await;
    assert!(refused.is_err(), "the 21st pending socket is refused");
}

#[tokio::test]
async fn cross_site_websocket_is_refused() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let meeting = http.meeting(json!({})).await;
    let hijack = Ws::try_connect(
        &server,
        &id(&meeting),
        WsOptions {
            cookie: http.cookie_header(),
            origin: Some("http://evil.example".into()),
            ..WsOptions::default()
        },
    )
    .await;
    assert!(hijack.is_err());
}

#[tokio::test]
async fn participants_cannot_moderate() {
    let server = TestServer::start().await;
    let (_http, meeting, mut host) = running_meeting(&server, json!({"waiting_room": false})).await;
    let mut g = socket(&server, &id(&meeting), 2).await;
    assert_eq!(
        g.join("G", Some(&passcode(&meeting))).await["type"],
        "joined"
    );
    host.until("participant_joined").await;
    let attempts: [Value; 8] = [
        json!({"type": "lock"}),
        json!({"type": "remove", "participant": 1}),
        json!({"type": "stop_media", "participant": 1, "kind": "video"}),
        json!({"type": "mute_all"}),
        json!({"type": "suspend_activities"}),
        json!({"type": "set_permissions", "permissions": {"chat": false}}),
        json!({"type": "set_role", "participant": 2, "role": "cohost"}),
        json!({"type": "end_meeting"}),
    ];
    for a in attempts {
        g.send(a.clone()).await;
        assert_eq!(g.until("error").await["code"], "not_permitted", "{a}");
    }
    // Screen share is host-only by default.
    g.send(json!({"type": "set_media", "screen": true})).await;
    assert_eq!(g.until("error").await["code"], "not_permitted");
    assert!(host.quiet_for(Duration::from_millis(300)).await);
}
