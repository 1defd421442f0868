//! The meetings API: safe defaults, ownership, updates, refusal of bad input,
//! deletion, the OpenAPI document, health and the cross-origin guard.

use std::collections::BTreeSet;

use crate::common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

const CROCKFORD: &str = "0123456789abcdefghjkmnpqrstvwxyz";

fn is_meeting_id(id: &str) -> bool {
    let groups: Vec<_> = id.split('-').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| CROCKFORD.contains(c)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_meeting_has_safe_defaults() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let v = &m.view;
    assert!(is_meeting_id(&m.id), "{}", m.id);
    assert_eq!(m.passcode.len(), 10, "{}", m.passcode);
    assert!(m.passcode.chars().all(|c| CROCKFORD.contains(c)));
    assert_eq!(v["title"], "alice's meeting");
    let link = v["invite_link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("http://localhost:{}/j/", server.addr.port())),
        "links name the port actually bound: {link}"
    );
    assert!(
        link.ends_with(&format!("/j/{}#p={}", m.id, m.passcode)),
        "the passcode rides in the fragment: {link}"
    );
    assert_eq!(
        v["settings"],
        json!({
            "passcode_required": true,
            "waiting_room": true,
            "screen_share": "host_only",
            "chat": true,
            "self_unmute": true,
            "rename_self": false,
            "publish": "everyone",
            "only_signed_in": false,
            "who_may_join": "anyone",
            "invited_emails": [],
            "max_participants": 100,
            "join_before_host": true,
        })
    );
    assert_eq!(v["running"], false);
    assert_eq!(v["starts_at"], serde_json::Value::Null, "not scheduled");

    // Two meetings never share an ID or a passcode.
    let m2 = alice.create_meeting(json!({"title": "Retro"})).await;
    assert_ne!(m.id, m2.id);
    assert_ne!(m.passcode, m2.passcode);
    assert_eq!(m2.view["title"], "Retro");
    // The ID is read forgivingly: upper case and no dashes find the same meeting.
    let (status, got) = alice
        .get(&format!(
            "/api/v1/meetings/{}",
            m.id.replace('-', "").to_uppercase()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], m.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_see_and_change_only_their_own_meetings() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let bob = server.signed_in("bob").await;
    let a1 = alice.create_meeting(json!({"title": "A1"})).await;
    let a2 = alice.create_meeting(json!({"title": "A2"})).await;
    let b1 = bob.create_meeting(json!({"title": "B1"})).await;

    // As a set: meetings made within the same second have no set order.
    let ids = |list: Value| -> BTreeSet<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(alice.meetings().await),
        [a1.id.clone(), a2.id.clone()].into()
    );
    assert_eq!(ids(bob.meetings().await), [b1.id.clone()].into());

    // Bob gets the very answer a meeting that does not exist gets.
    let path = format!("/api/v1/meetings/{}", a1.id);
    let (status, theirs) = bob.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, nobody) = bob.get("/api/v1/meetings/zzzz-zzzz-zzzz-zzzz").await;
    assert_eq!(theirs, nobody);
    assert_eq!(
        bob.patch(&path, json!({"title": "mine now"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(bob.delete(&path).await.0, StatusCode::NOT_FOUND);
    let (_, still) = alice.get(&path).await;
    assert_eq!(still, a1.view, "bob changed nothing");

    // Without a session: 401 for all of it.
    let anon = server.api();
    assert_eq!(
        anon.get("/api/v1/meetings").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(anon.get(&path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anon.post("/api/v1/meetings", json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_and_the_passcode_can_be_regenerated() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let path = format!("/api/v1/meetings/{}", m.id);

    let (status, v) = alice
        .patch(
            &path,
            json!({
                "title": "Board meeting",
                "settings": {
                    "waiting_room": false,
                    "screen_share": "everyone",
                    "chat": false,
                    "rename_self": true,
                    "max_participants": 12,
                }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["title"], "Board meeting");
    assert_eq!(v["settings"]["waiting_room"], false);
    assert_eq!(v["settings"]["screen_share"], "everyone");
    assert_eq!(v["settings"]["chat"], false);
    assert_eq!(v["settings"]["rename_self"], true);
    assert_eq!(v["settings"]["self_unmute"], true, "untouched");
    assert_eq!(v["settings"]["max_participants"], 12);
    assert_eq!(v["passcode"], m.passcode.as_str(), "passcode kept");
    assert_eq!(alice.get(&path).await.1, v, "the change is stored");

    let (status, v) = alice
        .patch(&path, json!({"regenerate_passcode": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let fresh = v["passcode"].as_str().unwrap().to_string();
    assert_ne!(fresh, m.passcode);
    assert_eq!(fresh.len(), 10);
    assert!(
        v["invite_link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/j/{}#p={fresh}", m.id))
    );

    // The old passcode no longer opens the meeting; the new one does (and with
    // the waiting room off, straight in).
    let mut ws = server.ws(&m.id, Default::default()).await;
    ws.send(crate::common::join("Guest", &m.passcode)).await;
    ws.expect_error("join_refused").await;
    ws.send(crate::common::join("Guest", &fresh)).await;
    let joined = ws.recv().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["role"], "participant");
    assert_eq!(joined["meeting"]["title"], "Board meeting");
    assert_eq!(joined["meeting"]["permissions"]["chat"], false);

    // A host-chosen passcode, and then none at all.
    let (status, v) = alice
        .patch(&path, json!({"passcode": "Kitchen-Table-42"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["passcode"], "k1tchentab1e42",
        "stored in its typed-in form"
    );
    let (status, v) = alice
        .patch(&path, json!({"settings": {"passcode_required": false}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["passcode"], Value::Null);
    assert_eq!(v["settings"]["passcode_required"], false);
    assert!(
        v["invite_link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/j/{}", m.id)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_meeting_input_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let path = format!("/api/v1/meetings/{}", m.id);
    let before = alice.get(&path).await.1;

    let bad_bodies = [
        json!({"colour": "red"}),
        json!({"settings": {"colour": "red"}}),
        json!({"settings": {"max_participants": 1}}),
        json!({"settings": {"max_participants": 100000}}),
        json!({"settings": {"max_participants": -3}}),
        json!({"settings": {"max_participants": "ten"}}),
        json!({"settings": {"chat": "yes"}}),
        json!({"settings": {"screen_share": "anyone"}}),
        json!({"settings": {"waiting_room": false, "max_participants": 0}}),
        json!({"title": 42}),
        json!({"title": ""}),
        json!({"title": "x".repeat(201)}),
        json!({"title": "bell\u{7}"}),
        json!({"passcode": "short"}),
        json!({"passcode": "abcdefgh12", "regenerate_passcode": true}),
        json!({"passcode": "abcdefgh12", "settings": {"passcode_required": false}}),
        json!([1, 2, 3]),
        json!("settings"),
    ];
    for body in &bad_bodies {
        let (status, err) = alice.patch(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PATCH {body} gave {err}");
        assert_eq!(err["error"], "invalid", "PATCH {body} gave {err}");
        assert!(err["message"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(alice.get(&path).await.1, before, "PATCH {body} changed it");
    }
    for body in &bad_bodies {
        let (status, err) = alice.post("/api/v1/meetings", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "POST {body} gave {err}");
        assert_eq!(err["error"], "invalid");
    }

    // Not JSON at all, or not said to be JSON.
    for (ctype, body) in [
        ("application/json", "{\"title\": "),
        ("application/json", ""),
        ("text/plain", "{\"title\": \"x\"}"),
    ] {
        let resp = alice
            .request(reqwest::Method::PATCH, &path)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, err) = crate::common::read(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{ctype} {body:?}: {err}");
        assert_eq!(err["error"], "invalid");
    }
    // A body over the API's 64 KiB cap.
    let huge = json!({"title": "x".repeat(100 * 1024)});
    let (status, _) = alice.patch(&path, huge).await;
    assert!(status.is_client_error(), "{status}");

    assert_eq!(alice.get(&path).await.1, before);
    assert_eq!(
        alice.meetings().await,
        json!([before]),
        "no meeting was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_meeting_is_gone() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let keep = alice.create_meeting(json!({"title": "keep"})).await;
    let path = format!("/api/v1/meetings/{}", m.id);
    assert_eq!(alice.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(alice.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(alice.delete(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(alice.meetings().await, json!([keep.view]));
    // Joining it now is like joining a meeting that never existed.
    let mut ws = server.ws(&m.id, Default::default()).await;
    ws.send(crate::common::join("Late", &m.passcode)).await;
    ws.expect_error("join_refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_meeting_api() {
    let server = TestServer::start().await;
    let (status, doc) = server.api().get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    let list = &paths["/api/v1/meetings"];
    assert!(list["get"].is_object() && list["post"].is_object());
    let one = &paths["/api/v1/meetings/{id}"];
    for method in ["get", "patch", "delete"] {
        assert!(one[method].is_object(), "{method} /api/v1/meetings/{{id}}");
    }
    for p in [
        "/api/v1/auth/signin",
        "/api/v1/auth/link",
        "/api/v1/tokens",
        "/healthz",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_ok() {
    let server = TestServer::start().await;
    let resp = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_requests_are_refused() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let m = alice.create_meeting(json!({})).await;
    let before = alice.meetings().await;

    let evil = |method, path: &str| {
        alice
            .request(method, path)
            .header("origin", "http://evil.example")
            .json(&json!({"title": "pwned"}))
    };
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/meetings".to_string()),
        (reqwest::Method::PATCH, format!("/api/v1/meetings/{}", m.id)),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/meetings/{}", m.id),
        ),
        (reqwest::Method::POST, "/api/v1/tokens".to_string()),
    ] {
        let (status, body) =
            crate::common::read(evil(method.clone(), &path).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(alice.meetings().await, before, "nothing changed");

    // A forged sign-in, too.
    let resp = server
        .api()
        .request(reqwest::Method::POST, "/api/v1/auth/signin")
        .header("origin", "http://evil.example")
        .json(&json!({"username": "alice", "password": crate::common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // And a cross-origin WebSocket riding on the session cookie.
    let mut opts = alice.ws_opts();
    opts.origin = Some("http://evil.example".into());
    match server.try_ws(&m.id, opts).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::FORBIDDEN)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a cross-origin WebSocket was accepted"),
    }

    // The same request from the server's own origin goes through.
    let resp = alice
        .request(reqwest::Method::POST, "/api/v1/meetings")
        .header("origin", format!("http://{}", server.addr))
        .json(&json!({"title": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_meeting_keeps_the_creation_time_it_was_given() {
    // Regression: the store used to stamp its own clock reading, so the
    // `created_at` the API answered at creation could differ by a second
    // from the one it read back later.
    let server = TestServer::start().await;
    let store = server.store().await;
    let owner = store.user_by_name("alice").await.unwrap().unwrap().0;
    let record = conclave::store::MeetingRecord {
        id: conclave_proto::MeetingId::generate(),
        owner_id: owner.id,
        title: "Long ago".into(),
        passcode: None,
        passcode_hash: None,
        waiting_room: true,
        permissions: conclave_proto::Permissions::default(),
        only_signed_in: false,
        organisation_only: false,
        invited_emails: Vec::new(),
        max_participants: 100,
        created_at: 1_000_000_000,
        starts_at: Some(1_000_003_600),
        duration_minutes: Some(45),
        join_before_host: false,
    };
    store.insert_meeting(&record).await.unwrap();
    assert_eq!(
        store.meeting(record.id).await.unwrap(),
        Some(record.clone())
    );
    store.close().await;
    let alice = server.signed_in("alice").await;
    let (_, v) = alice.get(&format!("/api/v1/meetings/{}", record.id)).await;
    assert_eq!(v["created_at"], 1_000_000_000);
}
