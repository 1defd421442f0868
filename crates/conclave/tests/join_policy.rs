//! Who may join (issue 20), over real HTTP and WebSockets: each kind of
//! person (a guest, someone of another organisation by provider, by email
//! domain, a local account, someone of this organisation, an invited
//! outside address) against each policy (anyone, signed-in only,
//! organisation only). Each gets the outcome and message the policy says,
//! and nobody learns more: without the passcode every answer is the unknown
//! meeting's, and a refusal is the same whether the meeting runs or not and
//! is followed by nothing.
//!
//! Accounts from a provider are made in the store as a sign-in makes them
//! (keyed by issuer and subject, tests/oidc_accounts.rs); the sign-in flow
//! itself is tests/oidc_tokens.rs and e2e/oidc.test.js.

use std::net::Ipv4Addr;
use std::time::Duration;

use conclave::join_policy::{OrganisationConfig, WhoMayJoin};
use conclave::oidc::ProviderConfig;
use conclave::store::OidcClaims;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, WsOpts, join};

const SCHOOL: &str = "https://idp.school.example";
const OTHER: &str = "https://idp.other.example";
const INVITED: &str = "vic@partner.example";

fn provider(name: &str, issuer: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        issuer: issuer.into(),
        client_id: "conclave".into(),
        scopes: vec!["email".into()],
        ..Default::default()
    }
}

/// The organisation is School's people with a school.example address.
async fn school_server() -> TestServer {
    TestServer::start_with(|c| {
        // Providers are only contacted at a sign-in, which these tests make
        // in the store instead.
        c.oidc = vec![provider("School", SCHOOL), provider("Other", OTHER)];
        c.organisation = OrganisationConfig {
            providers: vec!["School".into()],
            email_domains: vec!["school.example".into()],
            default_who_may_join: WhoMayJoin::Organisation,
        };
        c.limits.new_guests_per_minute = 1000;
    })
    .await
}

struct Person {
    label: &'static str,
    /// The `Cookie` header of its browser; none for a guest.
    cookie: Option<String>,
}

/// A browser signed in as the account a provider sign-in would make for
/// (issuer, sub, email).
async fn from_provider(server: &TestServer, issuer: &str, sub: &str, email: &str) -> String {
    let store = server.store().await;
    let user = store
        .oidc_account(&OidcClaims {
            issuer: issuer.into(),
            subject: sub.into(),
            email: Some(email.into()),
            name: Some(sub.into()),
            preferred_username: Some(sub.into()),
        })
        .await
        .expect("account");
    let cookie = session_of(&store, user.id).await;
    store.close().await;
    cookie
}

async fn session_of(store: &conclave::store::Store, user_id: i64) -> String {
    let secret = conclave::auth::new_secret("");
    store
        .create_session(&secret.digest, user_id, Duration::from_secs(3600))
        .await
        .expect("session");
    format!("conclave_session={}", secret.text)
}

async fn people(server: &TestServer) -> Vec<Person> {
    let store = server.store().await;
    let (bob, _) = store.user_by_name("bob").await.unwrap().unwrap();
    let local = session_of(&store, bob.id).await;
    store.close().await;
    vec![
        Person {
            label: "guest",
            cookie: None,
        },
        Person {
            label: "other organisation (provider)",
            cookie: Some(from_provider(server, OTHER, "ada", "ada@school.example").await),
        },
        Person {
            label: "other organisation (email domain)",
            cookie: Some(from_provider(server, SCHOOL, "eve", "eve@elsewhere.example").await),
        },
        Person {
            label: "local account",
            cookie: Some(local),
        },
        Person {
            label: "this organisation",
            cookie: Some(from_provider(server, SCHOOL, "grace", "Grace@School.example").await),
        },
        Person {
            label: "invited exception",
            cookie: Some(from_provider(server, OTHER, "vic", INVITED).await),
        },
    ]
}

/// What each person gets under each policy, in the order of [`people`].
fn expected(policy: WhoMayJoin) -> [&'static str; 6] {
    match policy {
        WhoMayJoin::Anyone => ["joined"; 6],
        WhoMayJoin::SignedIn => [
            "sign_in_required",
            "joined",
            "joined",
            "joined",
            "joined",
            "joined",
        ],
        WhoMayJoin::Organisation => [
            "organisation_only",
            "organisation_only",
            "organisation_only",
            "organisation_only",
            "joined",
            "joined",
        ],
    }
}

/// One join attempt from its own loopback address (so that the wrong
/// passcodes below do not block each other): the first answer, and what
/// else arrived before the socket closed after a refusal.
async fn attempt(
    server: &TestServer,
    meeting: &str,
    who: &Person,
    passcode: &str,
    from: u8,
) -> (Value, Vec<Value>) {
    let opts = WsOpts {
        cookie: who.cookie.clone(),
        source: Some(Ipv4Addr::new(127, 0, 0, from)),
        ..WsOpts::default()
    };
    let mut ws = server.ws(meeting, opts).await;
    ws.send(join(who.label, passcode)).await;
    let first = ws.recv().await;
    // A wrong passcode leaves the socket open for another try; any other
    // refusal closes it.
    let rest = if first["type"] == "error" && first["code"] != "join_refused" {
        ws.expect_closed().await
    } else {
        Vec::new()
    };
    (first, rest)
}

fn outcome(v: &Value) -> String {
    match v["type"].as_str() {
        Some("error") => v["code"].as_str().unwrap_or_default().to_string(),
        Some(t) => t.to_string(),
        None => v.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_against_each_policy() {
    let server = school_server().await;
    let host = server.signed_in("alice").await;
    let people = people(&server).await;

    // The operator's default applies when the host picks nothing.
    let plain = host.create_meeting(json!({})).await;
    assert_eq!(plain.view["settings"]["who_may_join"], "organisation");
    assert_eq!(plain.view["settings"]["only_signed_in"], true);

    // Without the passcode, an unknown meeting's answer, to everyone.
    let unknown = {
        let (v, rest) = attempt(
            &server,
            "abcd-efgh-jkmn-pqrs",
            &people[0],
            "wrong passcode!",
            200,
        )
        .await;
        assert_eq!(outcome(&v), "join_refused", "{v}");
        assert!(rest.is_empty(), "{rest:?}");
        v
    };

    let mut from = 10;
    for policy in [
        WhoMayJoin::Anyone,
        WhoMayJoin::SignedIn,
        WhoMayJoin::Organisation,
    ] {
        let m = host
            .create_meeting(json!({"settings": {
                "waiting_room": false,
                "who_may_join": policy,
                "invited_emails": [INVITED.to_uppercase()],
            }}))
            .await;
        assert_eq!(m.view["settings"]["who_may_join"], json!(policy));
        assert_eq!(m.view["settings"]["invited_emails"], json!([INVITED]));

        for who in &people {
            from += 1;
            let (wrong, rest) = attempt(&server, &m.id, who, "not the passcode", from).await;
            assert_eq!(
                wrong, unknown,
                "{policy:?}, {}: a wrong passcode",
                who.label
            );
            assert!(rest.is_empty());
        }

        // The meeting not running, then running: the same refusals.
        let mut refusals = Vec::new();
        for running in [false, true] {
            let host_ws = if running {
                Some(server.host_joins(&host, &m.id).await.0)
            } else {
                None
            };
            for (who, want) in people.iter().zip(expected(policy)) {
                from += 1;
                let (got, rest) = attempt(&server, &m.id, who, &m.passcode, from).await;
                assert_eq!(
                    outcome(&got),
                    want,
                    "{policy:?}, {} (running: {running}): {got}",
                    who.label
                );
                if want == "joined" {
                    continue;
                }
                // A refusal is a code and a sentence, and the socket closes.
                let keys: Vec<&str> = got
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(keys.len(), 3, "{got}");
                assert!(got.get("message").is_some_and(Value::is_string));
                assert!(
                    rest.is_empty(),
                    "{}: more after the refusal: {rest:?}",
                    who.label
                );
                let text = got["message"].as_str().unwrap();
                match want {
                    "organisation_only" => assert!(text.contains("organisation"), "{text}"),
                    "sign_in_required" => assert!(text.contains("signed-in"), "{text}"),
                    other => panic!("unexpected refusal {other}"),
                }
                assert!(!text.contains(&m.view["title"].as_str().unwrap().to_string()));
                refusals.push((running, who.label, got));
            }
            drop(host_ws);
        }
        let (before, after): (Vec<_>, Vec<_>) = refusals.into_iter().partition(|r| !r.0);
        let before: Vec<_> = before.into_iter().map(|(_, l, g)| (l, g)).collect();
        let after: Vec<_> = after.into_iter().map(|(_, l, g)| (l, g)).collect();
        assert_eq!(
            before, after,
            "{policy:?}: a refusal shows whether the meeting runs"
        );
    }
    let _ = from;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcode_and_waiting_room_still_apply_and_a_change_takes_effect_at_once() {
    let server = school_server().await;
    let host = server.signed_in("alice").await;
    let people = people(&server).await;
    let grace = &people[4];
    let m = host
        .create_meeting(json!({"settings": {"who_may_join": "organisation"}}))
        .await;
    let (mut host_ws, _) = server.host_joins(&host, &m.id).await;
    // Of the organisation, and still in the waiting room.
    let (got, _) = attempt(&server, &m.id, grace, &m.passcode, 50).await;
    assert_eq!(outcome(&got), "waiting", "{got}");
    host_ws.recv_until("waiting_room").await;

    // The host opens the meeting to anyone: a guest now waits too.
    let (status, view) = host
        .patch(
            &format!("/api/v1/meetings/{}", m.id),
            json!({"settings": {"who_may_join": "anyone"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["settings"]["only_signed_in"], false);
    let (got, _) = attempt(&server, &m.id, &people[0], &m.passcode, 51).await;
    assert_eq!(outcome(&got), "waiting", "{got}");

    // And closes it again: the guest's next try is refused.
    let (status, _) = host
        .patch(
            &format!("/api/v1/meetings/{}", m.id),
            json!({"settings": {"only_signed_in": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (got, _) = attempt(&server, &m.id, &people[0], &m.passcode, 52).await;
    assert_eq!(outcome(&got), "sign_in_required", "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_is_not_an_invitation() {
    let server = school_server().await;
    let host = server.signed_in("alice").await;
    let m = host.create_meeting(json!({})).await;
    let path = format!("/api/v1/meetings/{}", m.id);
    for bad in [
        json!({"settings": {"invited_emails": ["not an address"]}}),
        json!({"settings": {"invited_emails": ["a@b@c.example"]}}),
        json!({"settings": {"invited_emails": (0..101).map(|i| format!("p{i}@x.example")).collect::<Vec<_>>()}}),
        json!({"settings": {"who_may_join": "everybody"}}),
    ] {
        let (status, body) = host.patch(&path, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Nothing changed.
    let (_, view) = host.get(&path).await;
    assert_eq!(view["settings"], m.view["settings"]);

    // An account its provider does not let host creates no meeting.
    let store = server.store().await;
    let (bob, _) = store.user_by_name("bob").await.unwrap().unwrap();
    store.set_may_host(bob.id, false).await.unwrap();
    store.close().await;
    let bob = server.signed_in("bob").await;
    let (status, body) = bob.post("/api/v1/meetings", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, me) = bob.get("/api/v1/me").await;
    assert_eq!(me["may_host"], false);
}
