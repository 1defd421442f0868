//! Scheduled meetings: a start and a length through the API, the `.ics`
//! calendar file that carries the invite link (read back with a calendar
//! parser, hostile titles escaped, lines folded), and "join before host"
//! off: a guest who comes before any host waits, told why, and is let in
//! when the host arrives.

use std::str::FromStr;

use crate::common::{QUIET, TestServer};
use icalendar::{Calendar, CalendarComponent, Component, DatePerhapsTime};
use reqwest::StatusCode;
use serde_json::json;

/// 2030-01-15 09:30:00 UTC.
const START: i64 = 1_894_699_800;

fn utc(t: &DatePerhapsTime) -> i64 {
    match t {
        DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(dt)) => dt.timestamp(),
        other => panic!("not a UTC time: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_meeting_gives_a_calendar_file_with_its_invite_link() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    // Every character RFC 5545 escapes in TEXT, markup, and past 75 octets
    // with multi-byte characters, so that the line must fold.
    let title = r#"Plan; A, B \ C <script>alert(1)</script> "quoted" — ünïcödé résumé of the quarter's numbers"#;
    let m = alice
        .create_meeting(json!({"title": title, "starts_at": START, "duration_minutes": 45}))
        .await;
    assert_eq!(m.view["starts_at"], START);
    assert_eq!(m.view["duration_minutes"], 45);
    assert_eq!(m.view["settings"]["join_before_host"], true);
    let invite = m.view["invite_link"].as_str().unwrap().to_string();
    assert!(
        invite.contains("#p="),
        "the link carries the passcode: {invite}"
    );

    let resp = alice
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/meetings/{}/calendar.ics", m.id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert!(
        headers[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    assert_eq!(headers[reqwest::header::CACHE_CONTROL], "no-store");
    assert!(
        headers[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".ics")
    );
    let text = resp.text().await.unwrap();

    // The wire form: CRLF only, no line over 75 octets, the title escaped.
    assert!(text.ends_with("\r\n"));
    assert!(!text.replace("\r\n", "").contains('\n'), "a bare LF");
    for line in text.split("\r\n") {
        assert!(line.len() <= 75, "line of {} octets: {line:?}", line.len());
    }
    let unfolded = text.replace("\r\n ", "");
    assert!(unfolded.contains("BEGIN:VCALENDAR\r\n"));
    assert!(unfolded.contains("VERSION:2.0\r\n"));
    assert!(
        unfolded.contains(r"SUMMARY:Plan\; A\, B \\ C"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTSTART:20300115T093000Z\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTEND:20300115T101500Z\r\n"),
        "{unfolded}"
    );
    assert_eq!(unfolded.matches("BEGIN:VEVENT").count(), 1);

    // Read back, every field is what the meeting says.
    let cal = Calendar::from_str(&text).expect("a calendar parser reads it");
    let events: Vec<_> = cal
        .components
        .iter()
        .filter_map(|c| match c {
            CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1);
    let e = events[0];
    assert_eq!(e.get_summary(), Some(title));
    assert_eq!(e.get_url(), Some(invite.as_str()));
    assert!(e.get_description().unwrap().contains(&invite));
    let uid = e.get_uid().unwrap();
    assert!(
        uid.starts_with(&m.id.replace('-', "")) && uid.contains('@'),
        "{uid}"
    );
    assert!(e.get_timestamp().is_some(), "DTSTAMP");
    assert_eq!(utc(&e.get_start().unwrap()), START);
    assert_eq!(utc(&e.get_end().unwrap()), START + 45 * 60);

    // Only the owner gets it; a meeting without a start has none.
    let bob = server.signed_in("bob").await;
    let (status, _) = bob
        .get(&format!("/api/v1/meetings/{}/calendar.ics", m.id))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let plain = alice.create_meeting(json!({"title": "Ad hoc"})).await;
    assert_eq!(plain.view["starts_at"], serde_json::Value::Null);
    let (status, body) = alice
        .get(&format!("/api/v1/meetings/{}/calendar.ics", plain.id))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_is_checked_changed_and_forgotten() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    for bad in [
        json!({"starts_at": -1}),
        json!({"starts_at": 253_402_300_800_i64}),
        json!({"starts_at": START, "duration_minutes": 0}),
        json!({"starts_at": START, "duration_minutes": 1441}),
        json!({"duration_minutes": 30}),
        json!({"starts_at": "tomorrow"}),
    ] {
        let (status, body) = alice.post("/api/v1/meetings", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} gave {body}");
    }
    assert_eq!(alice.meetings().await, json!([]), "nothing was created");

    let m = alice.create_meeting(json!({"starts_at": START})).await;
    assert_eq!(m.view["duration_minutes"], 60, "an hour unless told");
    let path = format!("/api/v1/meetings/{}", m.id);
    let (status, v) = alice
        .patch(
            &path,
            json!({"duration_minutes": 90, "settings": {"join_before_host": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["starts_at"], START);
    assert_eq!(v["duration_minutes"], 90);
    assert_eq!(v["settings"]["join_before_host"], false);
    let (status, _) = alice
        .patch(&path, json!({"unschedule": true, "starts_at": START}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = alice.patch(&path, json!({"unschedule": true})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["starts_at"], serde_json::Value::Null);
    assert_eq!(v["duration_minutes"], serde_json::Value::Null);
    // It reads back the same from the store.
    let (_, again) = alice.get(&path).await;
    assert_eq!(again, v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_join_before_host_a_guest_waits_for_the_host() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice
        .create_meeting(json!({"settings": {"waiting_room": false, "join_before_host": false}}))
        .await;

    // No host yet: Gus waits, and is told it is for the host.
    let (mut gus, _) = server.guest_waits(&m, "Gus").await;
    let why = gus.recv().await;
    assert_eq!(why, json!({"type": "waiting_for_host"}));
    gus.expect_silence(QUIET).await;

    // The host arrives: Gus is seated at once, no admission needed.
    let (mut host, _) = server.host_joins(&alice, &m.id).await;
    let joined = gus.recv_until("joined").await;
    assert_eq!(joined["role"], "participant");
    let pj = host.recv_until("participant_joined").await;
    assert_eq!(pj["participant"]["name"], "Gus");

    // With a host in, the next guest is seated straight away.
    let mut hal = server.ws(&m.id, crate::common::WsOpts::default()).await;
    hal.send(crate::common::join("Hal", &m.passcode)).await;
    assert_eq!(hal.recv().await["type"], "joined");

    // The default lets a guest in before the host (no waiting room here).
    let open = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let mut ivy = server.ws(&open.id, crate::common::WsOpts::default()).await;
    ivy.send(crate::common::join("Ivy", &open.passcode)).await;
    assert_eq!(ivy.recv().await["type"], "joined");
}
