//! The store on both engines: every test of the suite runs once on SQLite in a
//! temporary directory (`store::sqlite::…`) and once on a PostgreSQL server the
//! test process starts itself (`store::postgres::…`); both migration
//! directories reach the same schema; and a server on PostgreSQL serves a
//! meeting and keeps its accounts and meetings across a restart.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use conclave::store::{MeetingRecord, Store, StoreError, unix_now};
use conclave_core::BanKey;
use conclave_proto::{MeetingId, Permissions, Publishing, ScreenShare};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};

use crate::common::TestServer;
use crate::common::postgres::Postgres;

/// A store under test and what keeps it alive (SQLite's directory).
struct Subject {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open SQLite store");
    Subject {
        store,
        _dir: Some(dir),
    }
}

async fn postgres() -> Subject {
    let url = Postgres::shared().fresh_database().await;
    let store = Store::connect(&url)
        .await
        .expect("connect PostgreSQL store");
    Subject { store, _dir: None }
}

/// Runs each listed suite function on both engines.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let s = super::sqlite().await;
                    super::$name(&s.store).await;
                    s.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let s = super::postgres().await;
                    super::$name(&s.store).await;
                    s.store.close().await;
                }
            )*
        }
    };
}

on_both_engines!(
    accounts,
    sessions,
    api_tokens,
    signin_links,
    meetings,
    meeting_order,
    bans,
    server_keys,
    ping,
);

fn record(owner_id: i64, title: &str, created_at: i64) -> MeetingRecord {
    MeetingRecord {
        id: MeetingId::generate(),
        owner_id,
        title: title.to_string(),
        passcode: Some("482913".to_string()),
        passcode_hash: Some("$argon2id$stand-in".to_string()),
        waiting_room: true,
        permissions: Permissions {
            screen_share: ScreenShare::HostOnly,
            chat: true,
            self_unmute: false,
            rename_self: true,
            publish: Publishing::Everyone,
        },
        only_signed_in: false,
        organisation_only: false,
        invited_emails: Vec::new(),
        max_participants: 100,
        created_at,
        starts_at: None,
        duration_minutes: None,
        join_before_host: true,
    }
}

async fn accounts(store: &Store) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    assert!(!store.any_password_set().await.unwrap());
    let admin = store.create_user("Alice", None, true).await.unwrap();
    let bob = store.create_user("bob", Some("h1"), false).await.unwrap();
    assert_ne!(admin.id, bob.id);
    assert!(admin.is_admin && !admin.has_password);

    // Names are unique and found regardless of case.
    assert!(matches!(
        store.create_user("ALICE", Some("h"), false).await,
        Err(StoreError::Conflict)
    ));
    let (found, hash) = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(found, admin);
    assert_eq!(hash, None);
    assert!(store.user_by_name("carol").await.unwrap().is_none());

    assert_eq!(store.user_by_id(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.list_users().await.unwrap(), vec![admin.clone(), bob]);
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert!(store.any_password_set().await.unwrap());

    store.set_password(admin.id, "h2").await.unwrap();
    assert_eq!(
        store.password_hash(admin.id).await.unwrap().as_deref(),
        Some("h2")
    );
    assert!(
        store
            .user_by_id(admin.id)
            .await
            .unwrap()
            .unwrap()
            .has_password
    );
    assert_eq!(store.password_hash(9999).await.unwrap(), None);

    // A provider's host_groups can take hosting away, and give it back.
    assert!(admin.may_host);
    store.set_may_host(admin.id, false).await.unwrap();
    assert!(!store.user_by_id(admin.id).await.unwrap().unwrap().may_host);
    store.set_may_host(admin.id, true).await.unwrap();
    assert!(store.user_by_id(admin.id).await.unwrap().unwrap().may_host);
}

async fn sessions(store: &Store) {
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let bob = store.create_user("bob", Some("h"), false).await.unwrap();
    let day = Duration::from_secs(86_400);
    for hash in [b"a1".as_slice(), b"a2", b"a3"] {
        store.create_session(hash, alice.id, day).await.unwrap();
    }
    store.create_session(b"b1", bob.id, day).await.unwrap();
    // A session whose time is up is no session.
    store
        .create_session(b"gone", alice.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.session_user(b"gone").await.unwrap(), None);
    assert_eq!(
        store.session_user(b"a1").await.unwrap().map(|u| u.id),
        Some(alice.id)
    );

    store.delete_session(b"a1").await.unwrap();
    assert_eq!(store.session_user(b"a1").await.unwrap(), None);

    // A password change keeps the session it came from, and only that.
    store
        .delete_other_sessions(alice.id, Some(b"a2"))
        .await
        .unwrap();
    assert!(store.session_user(b"a2").await.unwrap().is_some());
    assert!(store.session_user(b"a3").await.unwrap().is_none());
    assert!(store.session_user(b"b1").await.unwrap().is_some());
    store.delete_other_sessions(alice.id, None).await.unwrap();
    assert!(store.session_user(b"a2").await.unwrap().is_none());
    assert!(store.session_user(b"b1").await.unwrap().is_some());
}

async fn api_tokens(store: &Store) {
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let bob = store.create_user("bob", Some("h"), false).await.unwrap();
    let t1 = store.create_api_token(alice.id, "ci", b"t1").await.unwrap();
    let t2 = store
        .create_api_token(alice.id, "bot", b"t2")
        .await
        .unwrap();
    assert_ne!(t1, t2);

    let listed = store.list_api_tokens(alice.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.id, t.name.as_str()))
            .collect::<Vec<_>>(),
        vec![(t1, "ci"), (t2, "bot")]
    );
    assert!(listed.iter().all(|t| t.last_used_at.is_none()));

    // Using a token finds its user and records when.
    let before = unix_now();
    assert_eq!(
        store.api_token_user(b"t1").await.unwrap().map(|u| u.id),
        Some(alice.id)
    );
    let used = store.list_api_tokens(alice.id).await.unwrap();
    assert!(used[0].last_used_at.is_some_and(|t| t >= before));
    assert_eq!(store.api_token_user(b"nope").await.unwrap(), None);

    // Only the owner deletes a token.
    assert!(!store.delete_api_token(bob.id, t1).await.unwrap());
    assert!(store.delete_api_token(alice.id, t1).await.unwrap());
    assert_eq!(store.api_token_user(b"t1").await.unwrap(), None);
    assert!(store.list_api_tokens(bob.id).await.unwrap().is_empty());
}

async fn signin_links(store: &Store) {
    let alice = store.create_user("alice", None, true).await.unwrap();
    let hour = Duration::from_secs(3600);
    store
        .create_signin_link(alice.id, b"l1", hour)
        .await
        .unwrap();
    // A new link replaces the old one.
    store
        .create_signin_link(alice.id, b"l2", hour)
        .await
        .unwrap();
    assert_eq!(store.redeem_signin_link(b"l1").await.unwrap(), None);
    // A link works once.
    assert_eq!(
        store.redeem_signin_link(b"l2").await.unwrap().map(|u| u.id),
        Some(alice.id)
    );
    assert_eq!(store.redeem_signin_link(b"l2").await.unwrap(), None);
    // An expired link does not work.
    store
        .create_signin_link(alice.id, b"l3", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.redeem_signin_link(b"l3").await.unwrap(), None);
}

async fn meetings(store: &Store) {
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let mut m = record(alice.id, "Planning", unix_now());
    store.insert_meeting(&m).await.unwrap();
    assert_eq!(store.meeting(m.id).await.unwrap(), Some(m.clone()));

    // Every setting survives an update, a passcode turned off included.
    m.title = "Retro".to_string();
    m.passcode = None;
    m.passcode_hash = None;
    m.waiting_room = false;
    m.only_signed_in = true;
    m.organisation_only = true;
    m.invited_emails = vec!["vic@partner.example".into(), "ann@x.example".into()];
    m.max_participants = 7;
    m.permissions.screen_share = ScreenShare::Everyone;
    store.update_meeting(&m).await.unwrap();
    assert_eq!(store.meeting(m.id).await.unwrap(), Some(m.clone()));

    let p = Permissions {
        screen_share: ScreenShare::HostOnly,
        chat: false,
        self_unmute: true,
        rename_self: false,
        publish: Publishing::Allowed,
    };
    store.save_permissions(m.id, p).await.unwrap();
    m.permissions = p;
    assert_eq!(store.meeting(m.id).await.unwrap(), Some(m.clone()));

    assert!(store.delete_meeting(m.id).await.unwrap());
    assert!(!store.delete_meeting(m.id).await.unwrap());
    assert_eq!(store.meeting(m.id).await.unwrap(), None);
}

async fn meeting_order(store: &Store) {
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let bob = store.create_user("bob", Some("h"), false).await.unwrap();
    // Several in one second list in the order they were made, after older ones.
    let now = unix_now();
    let titles = ["c", "a", "d", "b"];
    for t in titles {
        store
            .insert_meeting(&record(alice.id, t, now))
            .await
            .unwrap();
    }
    store
        .insert_meeting(&record(alice.id, "older", now - 60))
        .await
        .unwrap();
    store
        .insert_meeting(&record(bob.id, "bob's", now))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .meetings_of(alice.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.title)
        .collect();
    assert_eq!(listed, ["older", "c", "a", "d", "b"]);
}

async fn bans(store: &Store) {
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let m = record(alice.id, "Planning", unix_now());
    store.insert_meeting(&m).await.unwrap();
    let keys = vec![
        BanKey::Account(42),
        BanKey::Guest("g-1".to_string()),
        BanKey::Address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
        BanKey::Address("2001:db8::".parse().unwrap()),
    ];
    store.add_bans(m.id, &keys).await.unwrap();
    // Banning again is no error and no duplicate.
    store.add_bans(m.id, &keys[..2]).await.unwrap();
    let stored = store.bans(m.id).await.unwrap();
    assert_eq!(stored.len(), keys.len());
    let as_text = |ks: &[BanKey]| ks.iter().map(|k| format!("{k:?}")).collect::<BTreeSet<_>>();
    assert_eq!(as_text(&stored), as_text(&keys));

    assert!(store.guest_banned_anywhere("g-1").await.unwrap());
    assert!(!store.guest_banned_anywhere("g-2").await.unwrap());
    // The meeting's bans go with it.
    store.delete_meeting(m.id).await.unwrap();
    assert!(store.bans(m.id).await.unwrap().is_empty());
    assert!(!store.guest_banned_anywhere("g-1").await.unwrap());
}

async fn server_keys(store: &Store) {
    let first = store.server_key("guest", &[1; 32]).await.unwrap();
    assert_eq!(first, vec![1; 32]);
    // The first key stays: a second server starting later agrees on it.
    let again = store.server_key("guest", &[2; 32]).await.unwrap();
    assert_eq!(again, first);
    let other = store.server_key("other", &[3; 16]).await.unwrap();
    assert_eq!(other, vec![3; 16]);
}

async fn ping(store: &Store) {
    store.ping().await.unwrap();
}

/// (table, column, type class, nullable) for every column of the schema, with
/// types named by what the store reads from them.
type Schema = BTreeSet<(String, String, &'static str, bool)>;

fn type_class(engine_type: &str) -> &'static str {
    match engine_type.to_ascii_lowercase().as_str() {
        // SQLite's INTEGER holds both numbers and 0/1 flags.
        "integer" | "bigint" | "boolean" => "integer",
        "text" => "text",
        "blob" | "bytea" => "bytes",
        _ => "other",
    }
}

async fn sqlite_schema(dir: &std::path::Path) -> (Schema, BTreeSet<String>) {
    let url = format!("sqlite://{}", dir.join("conclave.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for t in tables {
        let cols = sqlx::query(&format!("PRAGMA table_info({t})"))
            .fetch_all(&mut db)
            .await
            .unwrap();
        for c in cols {
            let ty: String = c.get("type");
            let notnull: i64 = c.get("notnull");
            let pk: i64 = c.get("pk");
            // SQLite lets a non-integer primary key hold NULL (a historical
            // quirk); the store never writes one, and PostgreSQL forbids it.
            schema.insert((
                t.clone(),
                c.get("name"),
                type_class(&ty),
                notnull == 0 && pk == 0,
            ));
        }
    }
    let indexes = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    (schema, indexes.into_iter().collect())
}

async fn postgres_schema(url: &str) -> (Schema, BTreeSet<String>) {
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    let cols = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty,
                is_nullable::text AS n
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let schema = cols
        .iter()
        .filter(|r| {
            // SQLite's implicit rowid, explicit in PostgreSQL (see its 0001).
            !(r.get::<String, _>("t") == "meetings" && r.get::<String, _>("c") == "rowid")
        })
        .map(|r| {
            let ty: String = r.get("ty");
            let n: String = r.get("n");
            (r.get("t"), r.get("c"), type_class(&ty), n == "YES")
        })
        .collect();
    // Named indexes: those of primary keys and UNIQUE are implicit in both.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()
         AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    (schema, indexes.into_iter().collect())
}

#[tokio::test]
async fn both_migration_directories_reach_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).await.unwrap().close().await;
    let url = Postgres::shared().fresh_database().await;
    Store::connect(&url).await.unwrap().close().await;

    let (lite, lite_indexes) = sqlite_schema(dir.path()).await;
    let (pg, pg_indexes) = postgres_schema(&url).await;
    assert!(lite.len() > 30, "the SQLite schema was read: {lite:?}");
    let only_sqlite: Vec<_> = lite.difference(&pg).collect();
    let only_postgres: Vec<_> = pg.difference(&lite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "columns only in SQLite: {only_sqlite:?}\ncolumns only in PostgreSQL: {only_postgres:?}"
    );
    assert_eq!(lite_indexes, pg_indexes);
}

#[tokio::test]
async fn a_postgres_store_keeps_everything_across_a_reconnect() {
    let url = Postgres::shared().fresh_database().await;
    let store = Store::connect(&url).await.unwrap();
    let alice = store.create_user("alice", Some("h"), false).await.unwrap();
    let m = record(alice.id, "Planning", unix_now());
    store.insert_meeting(&m).await.unwrap();
    store
        .add_bans(m.id, &[BanKey::Guest("g".to_string())])
        .await
        .unwrap();
    store.close().await;

    // Migrations already applied are not applied again.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap().0, alice);
    assert_eq!(store.meeting(m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(store.bans(m.id).await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_database_url_that_is_not_postgres_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db", dir.path().display());
    assert!(matches!(
        Store::connect(&url).await,
        Err(StoreError::UnsupportedUrl)
    ));
}

/// A server with `database_url` set: an account signs up, makes a meeting, a
/// guest joins it, and after a restart the account and the meeting are still
/// there, read from PostgreSQL (the data directory holds no SQLite store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_serves_a_meeting() {
    let url = Postgres::shared().fresh_database().await;
    let server = TestServer::start_on_postgres(&url, |c| c.allow_signup = true).await;
    let carol = server.api();
    let (status, body) = carol
        .post(
            "/api/v1/auth/signup",
            json!({"username": "carol", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let meeting = carol
        .create_meeting(json!({"title": "On PostgreSQL"}))
        .await;

    let (mut host, joined) = server.host_joins(&carol, &meeting.id).await;
    assert_eq!(joined["meeting"]["title"], "On PostgreSQL");
    let (_guest, joined) = server.guest_admitted(&mut host, &meeting, "Grace").await;
    assert_eq!(joined["participants"].as_array().map(Vec::len), Some(2));

    let (status, _) = server.api().get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !server.data_dir().join("conclave.db").exists(),
        "no SQLite store beside PostgreSQL"
    );
    drop(host);

    let server = server.restart().await;
    let carol = server.api();
    let (status, body) = carol.sign_in("carol", "a long enough password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = carol.meetings().await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], meeting.id.as_str());
    let (_host, joined) = server.host_joins(&carol, &meeting.id).await;
    assert_eq!(joined["meeting"]["title"], "On PostgreSQL");
}

/// `/readyz` follows the store: `503` while PostgreSQL is down, `200` again
/// once it is back, without restarting the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_postgres_down_and_back() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let server = TestServer::start_on_postgres(&url, |_| {}).await;
    let api = server.api();
    let (status, body) = api.get("/readyz").await;
    assert_eq!((status, body), (StatusCode::OK, json!("ready\n")));

    pg.stop();
    let (status, body) = api.get("/readyz").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("store unavailable\n")
        )
    );
    let (status, _) = api.sign_in("alice", crate::common::PASSWORD).await;
    assert!(
        status.is_server_error(),
        "sign-in without a store: {status}"
    );

    pg.start_again();
    let (status, _) = api.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.sign_in("alice", crate::common::PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "sign-in once it is back: {body}");
}
