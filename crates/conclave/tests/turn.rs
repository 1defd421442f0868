//! TURN relays (docs/operations.md, TURN): an admitted member's `joined`
//! carries the operator's TURN servers with a credential of its own that the
//! relay will refuse after the configured time; the waiting room never gets
//! one, and a server without TURN servers sends none.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{TestServer, Ws};
use conclave::turn::{TurnSecret, TurnServer};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

const SECRET: &str = "turn-shared-secret-for-tests";
const TTL: u64 = 3600;
const RELAY: &str = "turns:127.0.0.1:5349?transport=tcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// coturn's `use-auth-secret` check, written out here rather than calling
/// the server's own function: base64(HMAC-SHA1(secret, username)).
fn coturn_password(username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    data_encoding::BASE64.encode(&mac.finalize().into_bytes())
}

async fn relayed_server() -> TestServer {
    TestServer::start_with(|c| {
        let mut minted = TurnServer::with_secret(
            vec![RELAY.into(), "turn:127.0.0.1:3478?transport=udp".into()],
            TurnSecret::new(SECRET),
        );
        minted.credential_ttl_secs = TTL;
        c.turn_servers = vec![
            minted,
            TurnServer {
                urls: vec!["turn:192.0.2.7:3478".into()],
                secret: None,
                username: Some("fixed-user".into()),
                credential: Some("fixed-password".into()),
                credential_ttl_secs: TTL,
            },
        ];
    })
    .await
}

/// Checks the minted credential of `joined` and returns its username.
fn minted_username(joined: &Value) -> String {
    let you = joined["you"].as_u64().expect("you");
    let servers = joined["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 2, "{joined}");
    let minted = &servers[0];
    assert_eq!(
        minted["urls"],
        json!([RELAY, "turn:127.0.0.1:3478?transport=udp"])
    );
    let username = minted["username"].as_str().expect("username").to_string();
    let (expiry, tag) = username.split_once(':').expect("<expiry>:<tag>");
    let expiry: u64 = expiry.parse().expect("a unix time");
    let t = now();
    assert!(
        expiry > t + TTL - 60 && expiry <= t + TTL,
        "expires in the configured time: {expiry} vs now {t}"
    );
    assert!(tag.starts_with(&format!("{you}-")), "{tag}");
    assert_eq!(minted["credential"], coturn_password(&username));
    assert_eq!(
        servers[1],
        json!({"urls": ["turn:192.0.2.7:3478"], "username": "fixed-user", "credential": "fixed-password"})
    );
    username
}

fn never_saw_relays(ws: &Ws) {
    for v in &ws.log {
        let text = v.to_string();
        assert!(
            v.get("ice_servers").is_none() && !text.contains(SECRET) && !text.contains("fixed-"),
            "the waiting room got relay details: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_their_own_expiring_credentials_and_the_waiting_room_none() {
    let server = relayed_server().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Relayed"})).await;

    let (mut host, host_joined) = server.host_joins(&alice, &meeting.id).await;
    let host_user = minted_username(&host_joined);

    // Waiting: nothing of the relays, however long the wait.
    let (mut grace, gid) = server.guest_waits(&meeting, "Grace").await;
    host.recv_until("waiting_room").await;
    never_saw_relays(&grace);

    // Admitted: her own credential, not the host's.
    host.send(json!({"type": "admit", "participant": gid}))
        .await;
    let joined = grace.recv().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let grace_user = minted_username(&joined);
    assert_ne!(grace_user, host_user);
    // And nobody else's `joined`-time credentials leak through other messages.
    let pj = host.recv_until("participant_joined").await;
    assert!(pj.get("ice_servers").is_none(), "{pj}");

    // A denied guest never gets any either.
    let (mut eve, eid) = server.guest_waits(&meeting, "Eve").await;
    host.recv_until("waiting_room").await;
    host.send(json!({"type": "deny", "participant": eid})).await;
    let denied = eve.recv().await;
    assert_eq!(denied["type"], "denied", "{denied}");
    never_saw_relays(&eve);

    // A resume is a new `joined` with a fresh credential.
    let token = joined["resume_token"].as_str().expect("token").to_string();
    drop(grace);
    let mut back = server.ws(&meeting.id, Default::default()).await;
    back.send(json!({"type": "resume", "token": token})).await;
    let rejoined = back.recv_until("joined").await;
    assert_eq!(rejoined["you"], gid);
    let again = minted_username(&rejoined);
    assert_ne!(again, grace_user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_servers_joined_has_no_ice_servers() {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Direct"})).await;
    let (_host, joined) = server.host_joins(&alice, &meeting.id).await;
    assert!(joined.get("ice_servers").is_none(), "{joined}");
}
