//! `/metrics`: what a meeting with native clients and a wrong passcode show
//! there, and who may not read it.

use std::time::{Duration, Instant};

use crate::common::{TestServer, WsOpts, a_second_of_media, ada_and_bob, join};
use conclave_client::session::run;
use conclave_core::RESUME_WINDOW;
use reqwest::StatusCode;
use serde_json::json;

/// The value of the sample `name` (with its labels, as rendered) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `/metrics` as read from loopback, with `headers` added.
async fn read(server: &TestServer, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(server.url("/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET /metrics");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

/// Reads `/metrics` until `name` satisfies `ok`, for up to ten seconds.
async fn wait_for(server: &TestServer, name: &str, ok: impl Fn(f64) -> bool) -> String {
    wait_within(server, name, ok, Duration::from_secs(10)).await
}

/// Reads `/metrics` until `name` satisfies `ok`, for up to `limit`.
async fn wait_within(
    server: &TestServer,
    name: &str,
    ok: impl Fn(f64) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, text) = read(server, &[]).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        if sample(&text, name).is_some_and(&ok) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name} never as wanted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_and_a_wrong_passcode_show_in_the_metrics() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;

    let mut eve = server.ws(&meeting.id, WsOpts::default()).await;
    eve.send(join("Eve", "000000000")).await;
    eve.expect_error("join_refused").await;
    wait_for(
        &server,
        "conclave_join_failures_total{reason=\"passcode\"}",
        |v| v == 1.0,
    )
    .await;

    let (a, b) = ada_and_bob(&meeting, a_second_of_media);
    let a = tokio::spawn(run(a));
    let b = tokio::spawn(run(b));
    // Both seated at once while their media flows.
    let during = wait_for(&server, "conclave_participants", |v| v == 2.0).await;
    assert_eq!(sample(&during, "conclave_meetings"), Some(1.0), "{during}");
    a.await.expect("task").expect("session A");
    b.await.expect("task").expect("session B");

    // Gone again at once, and what the router forwarded for them counted.
    // Both said `leave` at the same moment: neither seat may be kept for
    // the resume window (it was, 1 run in 3, when the room took one closed
    // socket for a drop before reading the `leave` it had sent).
    let left_by = Duration::from_secs(10);
    assert!(left_by < RESUME_WINDOW);
    wait_within(&server, "conclave_participants", |v| v == 0.0, left_by).await;
    let after = wait_for(&server, "conclave_media_forwarded_packets_total", |v| {
        v >= 100.0
    })
    .await;
    assert!(
        sample(&after, "conclave_joins_total").is_some_and(|v| v >= 2.0),
        "{after}"
    );
    assert!(
        sample(&after, "conclave_join_duration_seconds_count").is_some_and(|v| v >= 2.0),
        "{after}"
    );
    assert!(
        sample(&after, "conclave_media_sent_bytes_total").is_some_and(|v| v > 0.0),
        "{after}"
    );
}

#[tokio::test]
async fn metrics_are_refused_through_a_proxy_and_off_when_switched_off() {
    let server = TestServer::start().await;
    // A proxy on this machine makes every visitor look local: not enough.
    let (status, _) = read(&server, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = read(&server, &[("forwarded", "for=203.0.113.5")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Behind a trusted proxy, only listed readers.
    let trusted = |c: &mut conclave::Config| c.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let server = TestServer::start_with(trusted).await;
    let (status, _) = read(&server, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let server = TestServer::start_with(|c| {
        trusted(c);
        c.metrics_allow = vec![[203, 0, 113, 5].into()];
    })
    .await;
    let (status, text) = read(&server, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("conclave_meetings"), "{text}");

    let server = TestServer::start_with(|c| c.metrics = false).await;
    let (status, _) = read(&server, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
