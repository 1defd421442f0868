//! What an administrator does to accounts: turning password sign-in off
//! (with `conclave admin signin-link` as the break-glass way in), and
//! listing, disabling, enabling and deleting accounts through the
//! `conclave admin` commands against the running server's data directory.
//! The store's side runs on SQLite and PostgreSQL.

use std::process::Command;

use conclave::store::Store;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::postgres::Postgres;
use crate::common::{PASSWORD, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// Runs `conclave admin ARGS --data-dir DIR`; its standard output, after
/// asserting it succeeded.
fn admin(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(server.data_dir())
        .env_remove("CONCLAVE_DATABASE_URL")
        .output()
        .expect("run conclave admin");
    assert!(
        out.status.success(),
        "conclave admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line `conclave admin users` prints for `name`, if any.
fn listed(listing: &str, name: &str) -> Option<String> {
    listing
        .lines()
        .find(|l| l.split('\t').nth(1) == Some(name))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_sign_in_can_be_turned_off_and_a_sign_in_link_still_works() {
    let server = TestServer::start_with(|c| {
        c.password_login = false;
        c.allow_signup = true;
    })
    .await;
    let api = server.api();
    // The sign-in page learns to show no password form.
    let (status, methods) = api.get("/api/v1/auth/methods").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        methods,
        json!({"password": false, "providers": [], "default_who_may_join": "anyone"})
    );
    assert_eq!(
        TestServer::start()
            .await
            .api()
            .get("/api/v1/auth/methods")
            .await
            .1["password"],
        true
    );
    let (status, body) = api.sign_in("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("password sign-in is turned off")),
        "{body}"
    );
    // Sign-up would make a password account: closed as well.
    let (status, _) = api
        .post(
            "/api/v1/auth/signup",
            json!({"username": "eve", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(api.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);

    // The break-glass way in: a one-time link from the CLI.
    let link = admin(&server, &["signin-link", "alice"]);
    let token = link
        .trim()
        .split("#token=")
        .nth(1)
        .expect("a link")
        .to_string();
    let (status, body) = api.post("/api/v1/auth/link", json!({"token": token})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get("/api/v1/me").await.1["username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_cannot_sign_in_and_its_sessions_end() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let (status, created) = alice.post("/api/v1/tokens", json!({"name": "bot"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let bot = crate::common::Api::with_bearer(&server, created["token"].as_str().unwrap());
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);

    let out = admin(&server, &["disable-user", "alice"]);
    assert!(out.contains("disabled user alice"), "{out}");
    let listing = admin(&server, &["users"]);
    let line = listed(&listing, "alice").expect("alice listed");
    assert!(line.contains("\tdisabled"), "{line}");
    assert!(line.contains("\tpassword"), "{line}");

    // Her browser session and her API token stop working at once, and say why.
    for api in [&alice, &bot] {
        let (status, body) = api.get("/api/v1/me").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "account_disabled");
    }
    // Her password no longer signs her in; a wrong one is the usual 401.
    let (status, body) = server.api().sign_in("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        server.api().sign_in("alice", "not her password").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Nor does a sign-in link.
    let link = admin(&server, &["signin-link", "alice"]);
    let token = link.trim().split("#token=").nth(1).unwrap().to_string();
    let (status, _) = server
        .api()
        .post("/api/v1/auth/link", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bob is not affected.
    server.signed_in("bob").await;

    // Enabled again: she signs in, and her token works again.
    admin(&server, &["enable-user", "alice"]);
    server.signed_in("alice").await;
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_gone_with_its_meetings() {
    let server = TestServer::start().await;
    let bob = server.signed_in("bob").await;
    let meeting = bob.create_meeting(json!({"title": "Bob's"})).await;
    let out = admin(&server, &["delete-user", "bob"]);
    assert!(out.contains("deleted user bob"), "{out}");
    assert_eq!(bob.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.api().sign_in("bob", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let store = server.store().await;
    assert!(store.user_by_name("bob").await.unwrap().is_none());
    let id: conclave_proto::MeetingId = meeting.id.parse().expect("meeting id");
    assert!(store.meeting(id).await.unwrap().is_none());
    store.close().await;
    let listing = admin(&server, &["list-users"]);
    assert!(listed(&listing, "bob").is_none(), "{listing}");
    assert!(listed(&listing, "alice").is_some(), "{listing}");

    // Unknown names are an error, not silence.
    let out = Command::new(BIN)
        .args(["admin", "delete-user", "nobody", "--data-dir"])
        .arg(server.data_dir())
        .env_remove("CONCLAVE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
}

/// Disabling ends sessions and refuses links and tokens; deleting removes
/// the account and its provider identity.
async fn disable_and_delete(store: &Store) {
    let ada = store.create_user("ada", None, false).await.unwrap();
    let session = conclave::auth::new_secret("");
    let ttl = std::time::Duration::from_secs(3600);
    store
        .create_session(&session.digest, ada.id, ttl)
        .await
        .unwrap();
    let token = conclave::auth::new_secret("cnv_");
    store
        .create_api_token(ada.id, "t", &token.digest)
        .await
        .unwrap();
    assert!(store.session_user(&session.digest).await.unwrap().is_some());

    assert!(store.set_user_disabled(ada.id, true).await.unwrap());
    assert!(store.user_by_id(ada.id).await.unwrap().unwrap().disabled);
    assert!(store.session_user(&session.digest).await.unwrap().is_none());
    assert!(store.api_token_user(&token.digest).await.unwrap().is_none());
    let link = conclave::auth::new_secret("");
    store
        .create_signin_link(ada.id, &link.digest, ttl)
        .await
        .unwrap();
    assert!(
        store
            .redeem_signin_link(&link.digest)
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.set_user_disabled(ada.id, false).await.unwrap());
    assert!(!store.user_by_id(ada.id).await.unwrap().unwrap().disabled);
    assert!(store.api_token_user(&token.digest).await.unwrap().is_some());
    // The session was ended, not just hidden.
    assert!(store.session_user(&session.digest).await.unwrap().is_none());

    let grace = store
        .oidc_account(&conclave::store::OidcClaims {
            issuer: "https://idp.example".into(),
            subject: "7".into(),
            email: Some("grace@example.org".into()),
            name: None,
            preferred_username: Some("grace".into()),
        })
        .await
        .unwrap();
    assert!(store.oidc_identity(grace.id).await.unwrap().is_some());
    assert!(store.delete_user(grace.id).await.unwrap());
    assert!(store.oidc_identity(grace.id).await.unwrap().is_none());
    assert!(store.user_by_id(grace.id).await.unwrap().is_none());
    assert!(!store.delete_user(grace.id).await.unwrap());
    assert!(!store.set_user_disabled(grace.id, true).await.unwrap());
}

#[tokio::test]
async fn sqlite_disables_and_deletes_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open SQLite store");
    disable_and_delete(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_disables_and_deletes_accounts() {
    let url = Postgres::shared().fresh_database().await;
    let store = Store::connect(&url)
        .await
        .expect("connect PostgreSQL store");
    disable_and_delete(&store).await;
    store.close().await;
}
