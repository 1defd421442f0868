//! Accounts over HTTP: the first-start sign-in link, passwords, the sign-in
//! rate limit, closed sign-up and personal API tokens.

use crate::common::{PASSWORD, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// The `Set-Cookie` header that starts a session, from a sign-in response.
fn session_set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("conclave_session="))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", resp.headers()))
        .to_string()
}

fn assert_strict_cookie(set_cookie: &str) {
    let attrs: Vec<_> = set_cookie.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"HttpOnly"), "{set_cookie}");
    assert!(attrs.contains(&"SameSite=Strict"), "{set_cookie}");
    assert!(attrs.contains(&"Path=/"), "{set_cookie}");
    // Plain http here: `Secure` would make the browser drop it.
    assert!(!attrs.contains(&"Secure"), "{set_cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_sign_in_link_works_once_then_a_password_is_set() {
    let server = TestServer::start_empty(|_| {}).await;
    // The server printed a link at start; asking again replaces it (as
    // `conclave admin signin-link` would).
    let store = server.store().await;
    let link = conclave::server::bootstrap(&store, &server.config)
        .await
        .unwrap()
        .expect("an empty store gets a sign-in link");
    assert!(link.contains("/signin#token="), "{link}");
    let token = link.split("#token=").nth(1).unwrap().to_string();

    let browser = server.api();
    let resp = browser
        .request(reqwest::Method::POST, "/api/v1/auth/link")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_strict_cookie(&session_set_cookie(&resp));
    let (_, user) = crate::common::read(resp).await;
    assert_eq!(user["username"], "admin");
    assert_eq!(user["is_admin"], true);
    assert_eq!(user["has_password"], false);
    let (status, me) = browser.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "admin");

    // The link is used up.
    let other = server.api();
    let (status, body) = other
        .post("/api/v1/auth/link", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_link");
    assert_eq!(other.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);

    // A too-short password is refused; a good one is set.
    let (status, body) = browser
        .post("/api/v1/me/password", json!({"new_password": "short"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = browser
        .post(
            "/api/v1/me/password",
            json!({"new_password": "the admin's new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // With a password set, the next start prints no link.
    assert_eq!(
        conclave::server::bootstrap(&store, &server.config)
            .await
            .unwrap(),
        None
    );
    store.close().await;

    let fresh = server.api();
    let (status, user) = fresh.sign_in("admin", "the admin's new password").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["has_password"], true);

    // Changing it again needs the current password.
    let (status, _) = fresh
        .post(
            "/api/v1/me/password",
            json!({"current_password": "wrong wrong wrong", "new_password": "another password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server
            .api()
            .sign_in("admin", "the admin's new password")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sign_in_sets_a_strict_http_only_session_cookie() {
    let server = TestServer::start().await;
    let browser = server.api();
    assert_eq!(browser.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let resp = browser
        .request(reqwest::Method::POST, "/api/v1/auth/signin")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_strict_cookie(&session_set_cookie(&resp));
    let (status, me) = browser.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["has_password"], true);

    // Signing out ends the session.
    let (status, _) = browser.post("/api/v1/auth/signout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(browser.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let server = TestServer::start().await;
    let api = server.api();
    let (status, wrong) = api.sign_in("alice", "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["error"], "bad_credentials");
    let (status, unknown) = api.sign_in("mallory", "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong, unknown,
        "the answer must not tell which accounts exist"
    );
    assert!(api.cookie_header().is_none(), "no session for a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_answered_429_with_retry_after() {
    let server = TestServer::start().await;
    let api = server.api();
    for _ in 0..5 {
        let (status, _) = api.sign_in("alice", "guessing away").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Blocked now, even with the right password.
    let resp = api
        .request(reqwest::Method::POST, "/api/v1/auth/signin")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let (_, body) = crate::common::read(resp).await;
    assert_eq!(body["error"], "too_many_attempts");
    assert!(api.cookie_header().is_none());
    // One-time links are guarded by the same limiter.
    let (status, _) = api
        .post("/api/v1/auth/link", json!({"token": "0".repeat(64)}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_closed_by_default() {
    let server = TestServer::start().await;
    let api = server.api();
    let (status, body) = api
        .post(
            "/api/v1/auth/signup",
            json!({"username": "eve", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        api.sign_in("eve", "a long enough password").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_works_when_the_operator_allows_it() {
    let server = TestServer::start_with(|c| c.allow_signup = true).await;
    let api = server.api();
    let (status, body) = api
        .post(
            "/api/v1/auth/signup",
            json!({"username": "carol", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["username"], "carol");
    assert_eq!(body["is_admin"], false);
    assert_eq!(api.get("/api/v1/me").await.1["username"], "carol");
    // Taken names and weak passwords are refused.
    let (status, _) = server
        .api()
        .post(
            "/api/v1/auth/signup",
            json!({"username": "alice", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .api()
        .post(
            "/api/v1/auth/signup",
            json!({"username": "dave", "password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_can_be_created_used_listed_and_revoked() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let (status, created) = alice
        .post("/api/v1/tokens", json!({"name": "meeting bot"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cnv_"), "{token}");
    let token_id = created["id"].as_i64().unwrap();

    // A script uses it without any cookie.
    let bot = crate::common::Api::with_bearer(&server, &token);
    let (status, me) = bot.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "alice");
    let meeting = bot.create_meeting(json!({"title": "Bot's standup"})).await;
    // ...and opens the meeting as its host, without a passcode.
    let (mut ws, _) = server.host_joins(&bot, &meeting.id).await;
    ws.send(json!({"type": "leave"})).await;
    ws.expect_closed().await;

    // The list shows it, never its secret.
    let (status, list) = alice.get("/api/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "meeting bot");
    assert!(list[0].get("token").is_none());
    assert!(list[0]["last_used_at"].is_i64(), "use is recorded");
    assert!(!list[0].to_string().contains(&token));

    // Someone else cannot revoke it.
    let bob = server.signed_in("bob").await;
    let (status, _) = bob.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);

    // Revoked: the token stops working, for HTTP and for the WebSocket.
    let (status, _) = alice.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = bot.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        bot.get("/api/v1/meetings").await.0,
        StatusCode::UNAUTHORIZED
    );
    let refused = server.try_ws(&meeting.id, bot.ws_opts()).await;
    assert!(refused.is_err(), "a revoked token opens no meeting socket");
    assert_eq!(
        alice.get("/api/v1/tokens").await.1,
        json!([]),
        "revoked tokens are gone"
    );
    let (status, _) = alice.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
