//! Administrators' account management over HTTP (`/api/v1/admin/users`):
//! only an administrator's session or token may list, disable, enable and
//! delete accounts; anyone else gets the same refusal whatever they ask
//! about; a cross-site request is refused; disabling ends the person's
//! sessions and tokens at once and tells them why; every action is audited.

use conclave::store::{OidcClaims, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, PASSWORD, TestServer};

/// `alice` made an administrator; `bob` stays a host.
async fn with_an_admin() -> (TestServer, Store, i64, i64) {
    let server = TestServer::start().await;
    let store = server.store().await;
    let (alice, _) = store.user_by_name("alice").await.unwrap().unwrap();
    let (bob, _) = store.user_by_name("bob").await.unwrap().unwrap();
    store.set_admin(alice.id, true).await.unwrap();
    (server, store, alice.id, bob.id)
}

fn usernames(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|u| u["username"].as_str().expect("username"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_administrators_manage_accounts_and_others_learn_nothing() {
    let (server, store, alice_id, bob_id) = with_an_admin().await;

    // Signed out: sign in first, for every call.
    let nobody = server.api();
    for (status, body) in [
        nobody.get("/api/v1/admin/users").await,
        nobody
            .post(&format!("/api/v1/admin/users/{bob_id}/disable"), json!({}))
            .await,
        nobody
            .delete(&format!("/api/v1/admin/users/{bob_id}"))
            .await,
    ] {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "unauthorized");
    }

    // A host, by session and by API token: one refusal, the same for an
    // account that exists, one that does not, and a malformed id.
    let bob = server.signed_in("bob").await;
    let (status, created) = bob.post("/api/v1/tokens", json!({"name": "bot"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let bot = Api::with_bearer(&server, created["token"].as_str().unwrap());
    let mut refusals = Vec::new();
    for api in [&bob, &bot] {
        refusals.push(api.get("/api/v1/admin/users").await);
        for id in [alice_id.to_string(), "987654".into(), "x".into()] {
            refusals.push(
                api.post(&format!("/api/v1/admin/users/{id}/disable"), json!({}))
                    .await,
            );
            refusals.push(
                api.post(&format!("/api/v1/admin/users/{id}/enable"), json!({}))
                    .await,
            );
            refusals.push(api.delete(&format!("/api/v1/admin/users/{id}")).await);
        }
    }
    for (status, body) in &refusals {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            body,
            &json!({"error": "forbidden", "message": "only administrators may manage accounts"})
        );
    }
    // Nothing happened to anyone.
    assert!(!store.user_by_id(alice_id).await.unwrap().unwrap().disabled);
    assert_eq!(bob.get("/api/v1/me").await.0, StatusCode::OK);
    // Each attempt is in the audit log, naming who tried.
    let refused = store
        .signin_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == "admin" && e.outcome == "refused_not_admin")
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), refusals.len());
    assert!(
        refused
            .iter()
            .all(|e| e.detail.as_deref().is_some_and(|d| d.contains("by bob"))),
        "{refused:?}"
    );

    // The administrator sees every account.
    let alice = server.signed_in("alice").await;
    let (status, list) = alice.get("/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(usernames(&list), ["alice", "bob"]);
    assert_eq!(list[1]["id"], bob_id);
    assert_eq!(list[1]["is_admin"], false);
    assert_eq!(list[1]["disabled"], false);
    assert_eq!(list[1]["has_password"], true);
    assert_eq!(list[0]["is_admin"], true);
    // Not her own account, and not one that does not exist.
    let (status, body) = alice
        .post(
            &format!("/api/v1/admin/users/{alice_id}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        alice
            .delete(&format!("/api/v1/admin/users/{alice_id}"))
            .await
            .0,
        StatusCode::CONFLICT
    );
    for path in ["/api/v1/admin/users/987654", "/api/v1/admin/users/x"] {
        assert_eq!(alice.delete(path).await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(alice.get("/api/v1/me").await.0, StatusCode::OK);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_sessions_and_tokens_at_once_and_says_why() {
    let (server, store, alice_id, bob_id) = with_an_admin().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false}}))
        .await;
    let bob = server.signed_in("bob").await;
    let bob_laptop = server.signed_in("bob").await;
    let (_, created) = bob.post("/api/v1/tokens", json!({"name": "bot"})).await;
    let bot = Api::with_bearer(&server, created["token"].as_str().unwrap());
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);
    // Alice hosts; Bob is in her meeting, signed in.
    let mut host = server.ws(&meeting.id, alice.ws_opts()).await;
    host.send(crate::common::join("Alice", &meeting.passcode))
        .await;
    host.recv_until("joined").await;
    let mut in_meeting = server.ws(&meeting.id, bob.ws_opts()).await;
    in_meeting
        .send(crate::common::join("Bob", &meeting.passcode))
        .await;
    let joined = in_meeting.recv_until("joined").await;
    let resume_token = joined["resume_token"].as_str().expect("token").to_string();

    let (status, view) = alice
        .post(&format!("/api/v1/admin/users/{bob_id}/disable"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["disabled"], true);
    assert_eq!(view["username"], "bob");

    // His meeting socket is closed at once, and he has left: the host sees
    // him go, and his seat cannot be taken back with its resume token.
    in_meeting.expect_closed().await;
    let left = host.recv_until("participant_left").await;
    assert_eq!(left["reason"], "left", "{left}");
    let mut back = server.ws(&meeting.id, Default::default()).await;
    back.send(json!({"type": "resume", "token": resume_token}))
        .await;
    back.expect_error("resume_failed").await;

    // Each of his sessions and his token, at their next request: refused,
    // with the reason.
    for api in [&bob, &bob_laptop, &bot] {
        for (status, body) in [
            api.get("/api/v1/me").await,
            api.get("/api/v1/meetings").await,
            api.post("/api/v1/meetings", json!({})).await,
        ] {
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(
                body,
                json!({"error": "account_disabled", "message": "this account has been disabled by an administrator"})
            );
        }
    }
    // The meeting socket with his cookie is refused too.
    assert!(
        server.try_ws(&meeting.id, bob.ws_opts()).await.is_err(),
        "a disabled account's session opened a meeting socket"
    );
    // His password no longer signs him in.
    assert_eq!(
        server.api().sign_in("bob", PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    // Signing out still works (and clears the cookie): that browser may
    // then join meetings as a guest.
    assert_eq!(
        bob.post("/api/v1/auth/signout", json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(bob.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let (_, list) = alice.get("/api/v1/admin/users").await;
    assert_eq!(list[1]["disabled"], true);

    // Enabled again: the old sessions stay ended (now plain "sign in
    // first"), the token works again, and he signs in.
    let (status, view) = alice
        .post(&format!("/api/v1/admin/users/{bob_id}/enable"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["disabled"], false);
    assert_eq!(
        bob_laptop.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);
    server.signed_in("bob").await;

    let actions: Vec<_> = store
        .signin_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == "admin")
        .map(|e| (e.outcome, e.username, e.detail))
        .collect();
    let by = Some(format!("by alice (id {alice_id})"));
    assert_eq!(
        actions,
        [
            ("enable_user".into(), Some("bob".into()), by.clone()),
            ("disable_user".into(), Some("bob".into()), by),
        ]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_request_changes_nothing() {
    let (server, store, _, bob_id) = with_an_admin().await;
    let alice = server.signed_in("alice").await;
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{bob_id}/disable"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/admin/users/{bob_id}"),
        ),
    ] {
        let resp = alice
            .request(method, &path)
            .header("origin", "https://evil.example")
            .send()
            .await
            .expect("request");
        let (status, body) = crate::common::read(resp).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["message"], "cross-origin request refused");
    }
    let bob = store
        .user_by_id(bob_id)
        .await
        .unwrap()
        .expect("bob is still there");
    assert!(!bob.disabled);
    // The same request from the server's own origin goes through.
    let resp = alice
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/admin/users/{bob_id}/disable"),
        )
        .header("origin", server.url(""))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_gone_and_a_new_provider_sign_in_does_not_get_it_back() {
    let (server, store, _, bob_id) = with_an_admin().await;
    let alice = server.signed_in("alice").await;
    let bob = server.signed_in("bob").await;
    let bobs = bob
        .create_meeting(json!({"title": "Bob's", "settings": {"waiting_room": false}}))
        .await;
    // His meeting is running, with a guest in it.
    let mut guest = server.ws(&bobs.id, Default::default()).await;
    guest
        .send(crate::common::join("Guest", &bobs.passcode))
        .await;
    guest.recv_until("joined").await;

    assert_eq!(
        alice
            .delete(&format!("/api/v1/admin/users/{bob_id}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(bob.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.api().sign_in("bob", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let id: conclave_proto::MeetingId = bobs.id.parse().unwrap();
    assert!(store.meeting(id).await.unwrap().is_none());
    // The running meeting ended with it.
    let ended = guest.recv_until("ended").await;
    assert_eq!(ended["reason"], "deleted", "{ended}");
    assert_eq!(
        alice
            .delete(&format!("/api/v1/admin/users/{bob_id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = alice.get("/api/v1/admin/users").await;
    assert_eq!(usernames(&list), ["alice"]);

    // Grace signs in through a provider and has a meeting; deleted, her
    // next sign-in (same issuer and sub) makes a new, empty account.
    let claims = OidcClaims {
        issuer: "https://idp.school.example".into(),
        subject: "grace-sub".into(),
        email: Some("grace@school.example".into()),
        name: Some("Grace Hopper".into()),
        preferred_username: Some("grace".into()),
    };
    let grace = store.oidc_account(&claims).await.unwrap();
    let grace_api = signed_in_as(&server, &store, grace.id).await;
    let hers = grace_api.create_meeting(json!({"title": "Grace's"})).await;
    let (_, list) = alice.get("/api/v1/admin/users").await;
    assert_eq!(list[1]["provider"]["issuer"], "https://idp.school.example");
    assert_eq!(list[1]["provider"]["email"], "grace@school.example");
    assert_eq!(
        alice
            .delete(&format!("/api/v1/admin/users/{}", grace.id))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // (SQLite may give the new account the old one's id: nothing that
    // outlived the account may be keyed by it.)
    let again = store.oidc_account(&claims).await.unwrap();
    let again_api = signed_in_as(&server, &store, again.id).await;
    assert_eq!(again_api.meetings().await, json!([]));
    let id: conclave_proto::MeetingId = hers.id.parse().unwrap();
    assert!(store.meeting(id).await.unwrap().is_none());

    let deleted: Vec<_> = store
        .signin_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.method == "admin" && e.outcome == "delete_user")
        .map(|e| e.username.unwrap_or_default())
        .collect();
    assert_eq!(deleted, ["grace", "bob"]);
    store.close().await;
}

/// A browser with a session for account `id`, as a sign-in would give it.
async fn signed_in_as(server: &TestServer, store: &Store, id: i64) -> Api {
    let (api, _) = server.session_for(store, id).await;
    assert_eq!(api.get("/api/v1/me").await.0, StatusCode::OK);
    api
}
