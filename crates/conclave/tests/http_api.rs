//! The HTTP API over a real socket: accounts, sessions, tokens, meetings.

mod support;

use conclave::server::bootstrap;
use conclave::store::Store;
use serde_json::json;
use support::*;

#[tokio::test]
async fn first_start_link_signs_in_once_then_a_password_takes_over() {
    let server = TestServer::start().await;
    // The server printed a link at start; make a fresh one the same way.
    let store = Store::open(server.dir.path()).await.expect("store");
    let config = conclave::Config {
        public_url: Some(server.url("")),
        ..conclave::Config::default()
    };
    let link = bootstrap(&store, &config)
        .await
        .expect("bootstrap")
        .expect("a link while no password is set");
    let token = link.split("#token=").nth(1).expect("token in fragment");
    assert!(link.starts_with(&server.url("/signin#token=")));

    let http = Http::new(&server);
    let resp = http
        .client
        .post(server.url("/api/v1/auth/link"))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie")
        .to_ascii_lowercase();
    assert!(set_cookie.starts_with("conclave_session="));
    assert!(set_cookie.contains("httponly"));
    assert!(set_cookie.contains("samesite=strict"));
    let me = http.get("/api/v1/me").await;
    assert_eq!(me.1["username"], "admin");
    assert_eq!(me.1["has_password"], false);

    // Once only.
    let again = Http::new(&server)
        .post("/api/v1/auth/link", json!({"token": token}))
        .await;
    assert_eq!(again.0, 401);

    let (status, _) = http
        .post("/api/v1/me/password", json!({"new_password": PASSWORD}))
        .await;
    assert_eq!(status, 204);
    let fresh = Http::new(&server);
    let ok = fresh
        .post(
            "/api/v1/auth/signin",
            json!({"username": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(ok.0, 200);
    assert!(
        bootstrap(&store, &config)
            .await
            .expect("bootstrap")
            .is_none()
    );
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_rate_limited() {
    let server = TestServer::start().await;
    server.create_user("ada").await;
    let http = Http::new(&server);
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = http
            .post(
                "/api/v1/auth/signin",
                json!({"username": "ada", "password": "not it at all"}),
            )
            .await;
        codes.push((r.0, r.1["error"].as_str().unwrap_or_default().to_string()));
    }
    assert_eq!(codes[0], (401, "bad_credentials".to_string()));
    assert_eq!(codes[5], (429, "too_many_attempts".to_string()));
    let unknown_user = Http::new(&server);
    let r = unknown_user
        .post(
            "/api/v1/auth/signin",
            json!({"username": "nobody", "password": "x"}),
        )
        .await;
    // Same address: still limited. The answer never says whether the user exists.
    assert_eq!(r.0, 429);
}

#[tokio::test]
async fn sign_up_is_closed_unless_the_operator_opens_it() {
    let server = TestServer::start().await;
    let r = Http::new(&server)
        .post(
            "/api/v1/auth/signup",
            json!({"username": "eve", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.0, 403);

    let open = TestServer::start_with(|c| c.allow_signup = true).await;
    let http = Http::new(&open);
    let r = http
        .post(
            "/api/v1/auth/signup",
            json!({"username": "eve", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.0, 201);
    assert_eq!(http.get("/api/v1/me").await.1["username"], "eve");
    let taken = Http::new(&open)
        .post(
            "/api/v1/auth/signup",
            json!({"username": "EVE", "password": PASSWORD}),
        )
        .await;
    assert_eq!(taken.0, 409);
}

#[tokio::test]
async fn api_tokens_work_until_revoked() {
    let server = TestServer::start().await;
    let http = server.host("bot-owner").await;
    let (status, created) = http.post("/api/v1/tokens", json!({"name": "ci bot"})).await;
    assert_eq!(status, 201);
    let token = created["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("cnv_"));

    let bot = reqwest::Client::new();
    let me = bot
        .get(server.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(me.status(), 200);
    let list = http.get("/api/v1/tokens").await;
    assert_eq!(list.1[0]["name"], "ci bot");
    assert!(list.1[0].get("token").is_none(), "the secret is shown once");

    let (status, _) = http
        .delete(&format!("/api/v1/tokens/{}", created["id"]))
        .await;
    assert_eq!(status, 204);
    let me = bot
        .get(server.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn meetings_start_with_safe_defaults() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let m = http.meeting(json!({})).await;
    let id = id(&m);
    assert_eq!(id.len(), 19);
    assert_eq!(id.matches('-').count(), 3);
    let pass = passcode(&m);
    assert_eq!(pass.len(), 10);
    assert_eq!(
        m["invite_link"],
        format!("http://localhost:{}/j/{id}#p={pass}", server.addr.port())
    );
    assert_eq!(
        m["settings"],
        json!({
            "passcode_required": true,
            "waiting_room": true,
            "screen_share": "host_only",
            "chat": true,
            "self_unmute": true,
            "rename_self": false,
            "only_signed_in": false,
            "max_participants": 100
        })
    );
}

#[tokio::test]
async fn meetings_belong_to_their_owner() {
    let server = TestServer::start().await;
    let alice = server.host("alice").await;
    let bob = server.host("bob").await;
    let m = alice.meeting(json!({"title": "Alice's standup"})).await;
    let path = format!("/api/v1/meetings/{}", id(&m));
    assert_eq!(alice.get(&path).await.0, 200);
    assert_eq!(bob.get(&path).await.0, 404);
    assert_eq!(bob.patch(&path, json!({"title": "mine now"})).await.0, 404);
    assert_eq!(bob.delete(&path).await.0, 404);
    assert_eq!(bob.get("/api/v1/meetings").await.1, json!([]));
    assert_eq!(
        alice.get("/api/v1/meetings").await.1[0]["title"],
        "Alice's standup"
    );
    assert_eq!(Http::new(&server).get("/api/v1/meetings").await.0, 401);
}

#[tokio::test]
async fn updates_apply_and_bad_updates_change_nothing() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let m = http.meeting(json!({})).await;
    let path = format!("/api/v1/meetings/{}", id(&m));

    let (status, updated) = http
        .patch(
            &path,
            json!({"title": "Retro", "settings": {"screen_share": "everyone", "max_participants": 12}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["title"], "Retro");
    assert_eq!(updated["settings"]["screen_share"], "everyone");
    assert_eq!(updated["passcode"], m["passcode"]);

    let (_, fresh) = http
        .patch(&path, json!({"regenerate_passcode": true}))
        .await;
    assert_ne!(fresh["passcode"], m["passcode"]);

    let before = http.get(&path).await.1;
    for bad in [
        json!({"title": ""}),
        json!({"settings": {"max_participants": 1}}),
        json!({"settings": {"max_participants": "many"}}),
        json!({"settings": {"waiting_room": "yes"}}),
        json!({"unknown_field": 1}),
        json!({"passcode": "short"}),
        json!({"passcode": "longenough", "regenerate_passcode": true}),
    ] {
        let (status, body) = http.patch(&path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(http.get(&path).await.1, before);
    assert_eq!(http.get("/api/v1/meetings/not-an-id").await.0, 404);
}

#[tokio::test]
async fn meetings_without_passcode_and_custom_passcodes() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let open = http
        .meeting(json!({"settings": {"passcode_required": false}}))
        .await;
    assert_eq!(open["passcode"], serde_json::Value::Null);
    assert!(
        !open["invite_link"]
            .as_str()
            .unwrap_or_default()
            .contains('#')
    );
    let custom = http.meeting(json!({"passcode": "Tea-Time-2026"})).await;
    // Stored in the form people type it back in: case and dashes folded.
    assert_eq!(custom["passcode"], "teat1me2026");
    let mut ws = Ws::connect(&server, &id(&custom), WsOptions::default()).await;
    assert_eq!(
        ws.join("Guest", Some("TEA-TIME-2026")).await["type"],
        "waiting"
    );
}

#[tokio::test]
async fn openapi_document_and_health() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    let (status, doc) = http.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/meetings",
        "/api/v1/meetings/{id}",
        "/api/v1/auth/signin",
        "/api/v1/tokens",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let (status, body) = http.get("/healthz").await;
    assert_eq!((status, body), (200, json!("ok\n")));
}

#[tokio::test]
async fn cross_origin_state_changes_are_refused() {
    let server = TestServer::start().await;
    let http = server.host("hostess").await;
    let resp = http
        .client
        .post(server.url("/api/v1/meetings"))
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    assert_eq!(http.get("/api/v1/meetings").await.1, json!([]));
}

#[tokio::test]
async fn pages_carry_a_strict_content_security_policy() {
    let server = TestServer::start().await;
    let resp = reqwest::get(server.url("/j/abcd-efgh-jkmn-pqrs"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("csp")
        .to_string();
    assert!(csp.contains("script-src 'self'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
}
