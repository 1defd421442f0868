//! ID tokens a provider (or someone in its place) might send, through the
//! server's real sign-in endpoints: a stand-in provider on loopback serves
//! discovery, its keys and a token endpoint that answers with the token the
//! test made. Only a token signed by the provider's current key, for this
//! client, unexpired, with this browser's nonce, signs anyone in.
//! (The flow with a real provider in Chromium is e2e/oidc.test.js.)

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use data_encoding::BASE64URL_NOPAD;
use openidconnect::core::{
    CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKey, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde_json::{Value, json};

use crate::common::TestServer;

pub(crate) const CLIENT_ID: &str = "conclave";

/// An RSA key in PKCS#1 PEM, from the system's openssl.
pub(crate) fn rsa_key(kid: &str) -> CoreRsaPrivateSigningKey {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("run openssl genrsa");
    assert!(out.status.success(), "openssl genrsa failed");
    let pem = String::from_utf8(out.stdout).expect("PEM");
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.into()))).expect("key")
}

/// `claims` signed with `key` (RS256) in compact form, as the stand-in
/// provider issues its ID tokens; logout tokens are built the same way.
pub(crate) fn rs256_signed<AC: openidconnect::AdditionalClaims>(
    claims: openidconnect::IdTokenClaims<AC, openidconnect::core::CoreGenderClaim>,
    key: &CoreRsaPrivateSigningKey,
) -> String {
    openidconnect::IdToken::<
        AC,
        openidconnect::core::CoreGenderClaim,
        openidconnect::core::CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .expect("sign")
    .to_string()
}

#[derive(Default)]
pub(crate) struct Provider {
    pub(crate) issuer: String,
    pub(crate) keys: Vec<CoreJsonWebKey>,
    /// What the token endpoint answers next.
    pub(crate) id_token: Option<String>,
    /// The `jwks_uri` discovery names, when not `ISSUER/jwks` (Google's
    /// keys are on another host than its issuer).
    pub(crate) jwks_uri: Option<String>,
}

pub(crate) type Shared = Arc<Mutex<Provider>>;

async fn discovery(State(p): State<Shared>) -> Json<Value> {
    let (issuer, jwks_uri) = {
        let p = p.lock().unwrap();
        (p.issuer.clone(), p.jwks_uri.clone())
    };
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{issuer}/jwks")),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
    }))
}

async fn jwks(State(p): State<Shared>) -> Json<Value> {
    Json(json!({ "keys": p.lock().unwrap().keys }))
}

async fn token(State(p): State<Shared>) -> Json<Value> {
    let id_token = p.lock().unwrap().id_token.clone();
    Json(json!({
        "access_token": "an access token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
}

pub(crate) async fn start_provider() -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shared: Shared = Arc::new(Mutex::new(Provider {
        issuer: format!("http://{addr}"),
        ..Provider::default()
    }));
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(Arc::clone(&shared));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    shared
}

/// The stand-in provider publishing one signing key, "k1", and that key.
pub(crate) async fn provider_with_key() -> (Shared, CoreRsaPrivateSigningKey) {
    let provider = start_provider().await;
    let key = rsa_key("k1");
    provider.lock().unwrap().keys = vec![key.as_verification_key()];
    (provider, key)
}

/// A server that knows the stand-in provider at `issuer` as "Fake" (this
/// client, the default scopes), as the logout and native sign-in tests use it.
pub(crate) async fn server_trusting(issuer: &str) -> TestServer {
    TestServer::start_with(|c| {
        c.oidc = vec![conclave::oidc::ProviderConfig {
            name: "Fake".into(),
            issuer: issuer.into(),
            client_id: CLIENT_ID.into(),
            ..Default::default()
        }];
    })
    .await
}

/// The stand-in provider publishing one signing key ("k1"), as most tests
/// here use it.
struct Fake {
    provider: Shared,
    key: CoreRsaPrivateSigningKey,
    issuer: String,
}

impl Fake {
    async fn start() -> Fake {
        let (provider, key) = provider_with_key().await;
        let issuer = provider.lock().unwrap().issuer.clone();
        Fake {
            provider,
            key,
            issuer,
        }
    }

    /// How the server is told of it: "Fake", this client, the email scope.
    fn config(&self) -> conclave::oidc::ProviderConfig {
        conclave::oidc::ProviderConfig {
            name: "Fake".into(),
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            scopes: vec!["email".into()],
            ..Default::default()
        }
    }

    /// The claims of a valid token for the sign-in `s`.
    fn claims(&self, s: &Started) -> Claims {
        Claims {
            issuer: self.issuer.clone(),
            audience: CLIENT_ID.into(),
            nonce: s.nonce.clone(),
            expires_in: 300,
        }
    }

    /// A whole sign-in of `sub` with `email` (verified or not, as the
    /// provider says) and `groups`: where the callback sends the browser.
    async fn sign_in(
        &self,
        server: &TestServer,
        sub: &str,
        email: &str,
        verified: Option<bool>,
        groups: Option<&[&str]>,
    ) -> String {
        let s = start(server).await;
        let t = person(&self.issuer, &s, sub, email, verified, groups, &self.key);
        finish(server, &self.provider, &s, t).await
    }
}

/// A browser's sign-in so far: its flow cookie, `state` and `nonce`.
struct Started {
    cookie: String,
    state: String,
    nonce: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn start(server: &TestServer) -> Started {
    let (started, url) = begin(server, "/auth/oidc/Fake").await;
    let method = url
        .query_pairs()
        .find(|(k, _)| k == "code_challenge_method")
        .map(|(_, v)| v.to_string());
    assert_eq!(method.as_deref(), Some("S256"));
    started
}

/// The start of a sign-in whose nonce the browser chose, as `/auth/oidc/NAME?key_nonce=`.
async fn start_with_key_nonce(server: &TestServer, key_nonce: &str) -> Started {
    begin(server, &format!("/auth/oidc/Fake?key_nonce={key_nonce}"))
        .await
        .0
}

/// A sign-in started at `path`: its flow, and the provider's URL the browser is sent to.
async fn begin(server: &TestServer, path: &str) -> (Started, url::Url) {
    let resp = client().get(server.url(path)).send().await.expect("start");
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let url = url::Url::parse(&location).expect("authorization URL");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| panic!("{name} in {location}"))
    };
    let started = Started {
        cookie,
        state: param("state"),
        nonce: param("nonce"),
    };
    (started, url)
}

/// The callback with `id_token` from the token endpoint: where it sends the browser.
async fn finish(server: &TestServer, provider: &Shared, s: &Started, id_token: String) -> String {
    let resp = callback(server, provider, s, id_token).await;
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The callback of the sign-in `s`, the token endpoint answering `id_token`: a redirect.
async fn callback(
    server: &TestServer,
    provider: &Shared,
    s: &Started,
    id_token: String,
) -> reqwest::Response {
    provider.lock().unwrap().id_token = Some(id_token);
    let resp = client()
        .get(server.url(&format!(
            "/auth/oidc/Fake/callback?code=a-code&state={}",
            s.state
        )))
        .header("cookie", &s.cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(resp.status(), 303);
    resp
}

struct Claims {
    issuer: String,
    audience: String,
    nonce: String,
    expires_in: i64,
}

/// One claim changed from a valid token's.
type ClaimsEdit = fn(Claims) -> Claims;

fn claims(c: &Claims) -> CoreIdTokenClaims {
    let now = chrono::Utc::now();
    CoreIdTokenClaims::new(
        IssuerUrl::new(c.issuer.clone()).unwrap(),
        vec![Audience::new(c.audience.clone())],
        now + chrono::Duration::seconds(c.expires_in),
        now - chrono::Duration::seconds(60),
        StandardClaims::new(SubjectIdentifier::new("mallory-or-grace".into()))
            .set_email(Some(EndUserEmail::new("grace@school.example".into()))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(c.nonce.clone())))
}

fn signed(c: &Claims, key: &CoreRsaPrivateSigningKey) -> String {
    rs256_signed(claims(c), key)
}

#[tokio::test]
async fn only_a_valid_id_token_signs_in() {
    let fake = Fake::start().await;
    let (provider, key) = (&fake.provider, &fake.key);
    let forger = rsa_key("k1");
    let server = TestServer::start_with(|c| c.oidc = vec![fake.config()]).await;
    let good = |s: &Started| fake.claims(s);
    const REFUSED: &str = "/signin#oidc_error=token";

    // Signed by another key under the provider's key ID.
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), &forger)).await,
        REFUSED
    );

    // Signed by the provider's key, but one claim wrong.
    let wrong: [(&str, ClaimsEdit); 3] = [
        ("for another client", |c| Claims {
            audience: "another-client".into(),
            ..c
        }),
        ("from another issuer", |c| Claims {
            issuer: "http://127.0.0.1:1".into(),
            ..c
        }),
        ("expired", |c| Claims {
            expires_in: -120,
            ..c
        }),
    ];
    for (why, edit) in wrong {
        let s = start(&server).await;
        let token = signed(&edit(good(&s)), key);
        assert_eq!(finish(&server, provider, &s, token).await, REFUSED, "{why}");
    }

    // With the nonce of another sign-in.
    let s = start(&server).await;
    let other = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&other), key)).await,
        REFUSED
    );

    // alg "none", unsigned.
    let s = start(&server).await;
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims(&good(&s))).unwrap());
    assert_eq!(
        finish(&server, provider, &s, format!("{header}.{body}.")).await,
        REFUSED
    );

    // HS256 with the provider's public key (its JWK as published) as the secret.
    let s = start(&server).await;
    let public = serde_json::to_vec(&key.as_verification_key()).unwrap();
    let hs = CoreIdToken::new(
        claims(&good(&s)),
        &CoreHmacKey::new(public),
        CoreJwsSigningAlgorithm::HmacSha256,
        None,
        None,
    )
    .expect("sign HS256")
    .to_string();
    assert_eq!(finish(&server, provider, &s, hs).await, REFUSED);

    // Nobody was signed in by any of those.
    assert_eq!(server.store().await.user_count().await.unwrap(), 2);

    // The real thing.
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), key)).await,
        "/signin#oidc=done"
    );
    assert_eq!(server.store().await.user_count().await.unwrap(), 3);

    // The provider rotates to a new key: a token signed with it is accepted
    // (its keys are fetched again), and one with the removed key is not.
    let rotated = rsa_key("k2");
    provider.lock().unwrap().keys = vec![rotated.as_verification_key()];
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), &rotated)).await,
        "/signin#oidc=done"
    );
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), key)).await,
        REFUSED
    );
    // Still the same one account.
    assert_eq!(server.store().await.user_count().await.unwrap(), 3);
}

#[tokio::test]
async fn a_provider_signs_in_with_passwords_off_but_not_into_a_disabled_account() {
    let fake = Fake::start().await;
    let (provider, key) = (&fake.provider, &fake.key);
    let server = TestServer::start_with(|c| {
        c.password_login = false;
        c.oidc = vec![fake.config()];
    })
    .await;
    let good = |s: &Started| fake.claims(s);
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), key)).await,
        "/signin#oidc=done"
    );

    let store = server.store().await;
    let (grace, _) = store
        .user_by_name("grace")
        .await
        .unwrap()
        .expect("grace's account");
    assert!(store.set_user_disabled(grace.id, true).await.unwrap());
    let s = start(&server).await;
    assert_eq!(
        finish(&server, provider, &s, signed(&good(&s), key)).await,
        "/signin#oidc_error=disabled"
    );
    // Still her one account, still disabled: the refusal made nothing new.
    assert_eq!(store.user_count().await.unwrap(), 3);
    assert!(store.user_by_id(grace.id).await.unwrap().unwrap().disabled);
    store.close().await;
}

/// Claims beyond openidconnect's: the groups a provider lists.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Groups {
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
}

impl openidconnect::AdditionalClaims for Groups {}

/// A token for `sub` with this email (and whether the provider says it
/// verified it) and these groups, for the sign-in `s` started.
fn person(
    issuer: &str,
    s: &Started,
    sub: &str,
    email: &str,
    verified: Option<bool>,
    groups: Option<&[&str]>,
    key: &CoreRsaPrivateSigningKey,
) -> String {
    let now = chrono::Utc::now();
    let claims = openidconnect::IdTokenClaims::new(
        IssuerUrl::new(issuer.into()).unwrap(),
        vec![Audience::new(CLIENT_ID.into())],
        now + chrono::Duration::seconds(300),
        now - chrono::Duration::seconds(60),
        StandardClaims::new(SubjectIdentifier::new(sub.into()))
            .set_email(Some(EndUserEmail::new(email.into())))
            .set_email_verified(verified),
        Groups {
            groups: groups.map(|g| g.iter().map(|x| x.to_string()).collect()),
        },
    )
    .set_nonce(Some(Nonce::new(s.nonce.clone())));
    rs256_signed(claims, key)
}

#[tokio::test]
async fn groups_decide_who_hosts_and_domains_who_signs_in() {
    let fake = Fake::start().await;
    let server = TestServer::start_with(|c| {
        c.oidc = vec![conclave::oidc::ProviderConfig {
            scopes: vec!["email".into(), "groups".into()],
            groups_claim: "groups".into(),
            host_groups: vec!["conclave-hosts".into()],
            allowed_email_domains: vec!["school.example".into()],
            ..fake.config()
        }];
    })
    .await;
    let store = server.store().await;
    let may_host = |name: &'static str| {
        let store = store.clone();
        async move {
            let (u, _) = store.user_by_name(name).await.unwrap().expect(name);
            u.may_host
        }
    };
    const DONE: &str = "/signin#oidc=done";
    const DOMAIN: &str = "/signin#oidc_error=domain";

    // In the host group: may host.
    assert_eq!(
        fake.sign_in(
            &server,
            "g",
            "grace@school.example",
            Some(true),
            Some(&["staff", "conclave-hosts"])
        )
        .await,
        DONE
    );
    assert!(may_host("grace").await);

    // Not in it: signs in, may not host.
    assert_eq!(
        fake.sign_in(&server, "a", "ada@school.example", None, Some(&["staff"]))
            .await,
        DONE
    );
    assert!(!may_host("ada").await);

    // Outside the allowed domains, or with an address the provider says it
    // did not verify: not signed in, no account made.
    let before = store.user_count().await.unwrap();
    assert_eq!(
        fake.sign_in(
            &server,
            "e",
            "eve@elsewhere.example",
            Some(true),
            Some(&["conclave-hosts"])
        )
        .await,
        DOMAIN
    );
    assert_eq!(
        fake.sign_in(
            &server,
            "m",
            "mallory@school.example",
            Some(false),
            Some(&["conclave-hosts"])
        )
        .await,
        DOMAIN
    );
    assert_eq!(store.user_count().await.unwrap(), before);

    // Groups are read at each sign-in: out of the group, out of hosting.
    assert_eq!(
        fake.sign_in(&server, "g", "grace@school.example", Some(true), None)
            .await,
        DONE
    );
    assert!(!may_host("grace").await);

    // The audit log has each, newest first.
    let log = store.signin_events(10).await.unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = log
        .iter()
        .map(|e| (e.method.as_str(), e.outcome.as_str(), e.username.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("oidc:Fake", "ok", Some("grace")),
            ("oidc:Fake", "domain", None),
            ("oidc:Fake", "domain", None),
            ("oidc:Fake", "ok", Some("ada")),
            ("oidc:Fake", "ok", Some("grace")),
        ]
    );
    assert!(
        log[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("sub=g email=grace@school.example")
    );
    assert!(!log[1].detail.as_deref().unwrap().contains("mallory"));
    assert!(
        log[2]
            .detail
            .as_deref()
            .unwrap()
            .contains("eve@elsewhere.example")
    );
    store.close().await;
}

#[tokio::test]
async fn admin_groups_grant_the_admin_role_and_take_it_back() {
    let fake = Fake::start().await;
    let server = TestServer::start_with(|c| {
        c.oidc = vec![conclave::oidc::ProviderConfig {
            scopes: Vec::new(),
            groups_claim: "groups".into(),
            admin_groups: vec!["conclave-admins".into()],
            ..fake.config()
        }];
    })
    .await;
    let store = server.store().await;
    store.create_user("root", None, true).await.unwrap();
    let role = |name: &'static str| {
        let store = store.clone();
        async move {
            let (u, _) = store.user_by_name(name).await.unwrap().expect(name);
            (u.is_admin, u.may_host)
        }
    };
    const DONE: &str = "/signin#oidc=done";
    let sign_in =
        |sub: &'static str, email: &'static str, groups: Option<&'static [&'static str]>| {
            fake.sign_in(&server, sub, email, Some(true), groups)
        };

    // In the admin group: an administrator (and, with no host_groups, a host).
    assert_eq!(
        sign_in(
            "g",
            "grace@school.example",
            Some(&["staff", "conclave-admins"])
        )
        .await,
        DONE
    );
    assert_eq!(role("grace").await, (true, true));
    // Not in it: signed in, not an administrator.
    assert_eq!(
        sign_in("a", "ada@school.example", Some(&["staff"])).await,
        DONE
    );
    assert_eq!(role("ada").await, (false, true));
    // A group of a similar name is not the group.
    assert_eq!(
        sign_in(
            "a",
            "ada@school.example",
            Some(&["Conclave-Admins", "conclave-admins-x"])
        )
        .await,
        DONE
    );
    assert_eq!(role("ada").await, (false, true));
    // Out of the group at the provider: out of the role at the next sign-in,
    // and a token without the groups claim at all counts as no group.
    assert_eq!(
        sign_in("g", "grace@school.example", Some(&["staff"])).await,
        DONE
    );
    assert_eq!(role("grace").await, (false, true));
    assert_eq!(
        sign_in("g", "grace@school.example", Some(&["conclave-admins"])).await,
        DONE
    );
    assert_eq!(role("grace").await, (true, true));
    assert_eq!(sign_in("g", "grace@school.example", None).await, DONE);
    assert_eq!(role("grace").await, (false, true));
    // The break-glass local administrator is not the provider's to change.
    let admins: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.is_admin)
        .map(|u| u.username)
        .collect();
    assert_eq!(admins, ["root"]);
    store.close().await;
}

/// The callback's `Set-Cookie` headers, for a sign-in that the token `id_token` finishes.
async fn callback_cookies(
    server: &TestServer,
    provider: &Shared,
    s: &Started,
    id_token: String,
) -> Vec<String> {
    let resp = callback(server, provider, s, id_token).await;
    assert_eq!(resp.headers()["location"], "/signin#oidc=done");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// OpenPubkey (docs/security.md §15): a browser that committed to its MLS key
/// in the nonce gets the provider's ID token back for its leaf; a sign-in
/// without that commitment never hands the token to the page.
#[tokio::test]
async fn a_key_nonce_becomes_the_tokens_nonce_and_the_token_comes_back_for_the_leaf() {
    let fake = Fake::start().await;
    let (provider, key) = (&fake.provider, &fake.key);
    let server = TestServer::start_with(|c| c.oidc = vec![fake.config()]).await;
    let claims_for = |s: &Started| fake.claims(s);
    let leaf_cookie = |cookies: &[String]| {
        cookies
            .iter()
            .find(|c| c.starts_with("conclave_leaf_token="))
            .cloned()
    };

    // The browser's commitment (base64url of a SHA-256) is the nonce the provider is asked for.
    let commitment = BASE64URL_NOPAD.encode(&[7u8; 32]);
    let s = start_with_key_nonce(&server, &commitment).await;
    assert_eq!(s.nonce, commitment);
    let token = signed(&claims_for(&s), key);
    let cookies = callback_cookies(&server, provider, &s, token.clone()).await;
    let leaf = leaf_cookie(&cookies).expect("the token comes back for the leaf");
    assert!(
        leaf.starts_with(&format!("conclave_leaf_token={token};")),
        "{leaf}"
    );
    assert!(leaf.contains("SameSite=Strict"), "{leaf}");
    assert!(leaf.contains("Path=/"), "{leaf}");
    assert!(!leaf.contains("HttpOnly"), "the page reads it: {leaf}");

    // Without a commitment, or with something that is not one, the nonce is the
    // server's own random one and the token stays with the server.
    for query in [
        None,
        Some("short"),
        Some(&*format!("{}!", &commitment[..42])),
    ] {
        let s = match query {
            None => start(&server).await,
            Some(q) => start_with_key_nonce(&server, q).await,
        };
        assert_ne!(s.nonce, commitment);
        let cookies = callback_cookies(&server, provider, &s, signed(&claims_for(&s), key)).await;
        assert_eq!(leaf_cookie(&cookies), None, "{query:?}");
    }
}

/// A provider's sign-in lasts `session_max_age_hours` at most: after it the
/// cookie is refused with a 401 that says the session ended. Sign-out
/// through a provider without an `end_session_endpoint` ends only the
/// Conclave session (204, no redirect).
#[tokio::test]
async fn a_provider_session_expires_and_signs_out_locally_without_an_end_session_endpoint() {
    let fake = Fake::start().await;
    let (provider, key) = (&fake.provider, &fake.key);
    let server = TestServer::start_with(|c| {
        c.oidc = vec![conclave::oidc::ProviderConfig {
            // Two seconds, injected for the test.
            session_max_age_hours: 2.0 / 3600.0,
            ..fake.config()
        }];
    })
    .await;
    let claims_for = |s: &Started| fake.claims(s);
    let session_of = |cookies: &[String]| {
        let c = cookies
            .iter()
            .find(|c| c.starts_with("conclave_session="))
            .expect("a session cookie")
            .clone();
        assert!(c.contains("Max-Age=2"), "{c}");
        c.split(';').next().unwrap().to_string()
    };
    let me = |session: String| {
        let url = server.url("/api/v1/me");
        async move {
            let resp = client()
                .get(url)
                .header("cookie", session)
                .send()
                .await
                .expect("me");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    let s = start(&server).await;
    let cookies = callback_cookies(&server, provider, &s, signed(&claims_for(&s), key)).await;
    let session = session_of(&cookies);
    assert_eq!(me(session.clone()).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, body) = me(session).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized", "{body}");

    // Sign-out with the logout cookie of a provider that offers no
    // end-session endpoint: the session ends here only.
    let s = start(&server).await;
    let cookies = callback_cookies(&server, provider, &s, signed(&claims_for(&s), key)).await;
    let session = session_of(&cookies);
    let logout = cookies
        .iter()
        .find(|c| c.starts_with("conclave_oidc_logout="))
        .expect("the logout cookie");
    assert!(logout.contains("Path=/api/v1/auth/signout"), "{logout}");
    assert!(logout.contains("HttpOnly"), "{logout}");
    let logout = logout.split(';').next().unwrap();
    let resp = client()
        .post(server.url("/api/v1/auth/signout"))
        .header("cookie", format!("{session}; {logout}"))
        .send()
        .await
        .expect("sign out");
    assert_eq!(resp.status(), 204);
    assert_eq!(me(session).await.0, 401);
}

/// The `connect-src` sources of a response's CSP.
fn connect_src(resp: &reqwest::Response) -> Vec<String> {
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("connect-src "))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A provider whose keys are on another origin than its issuer (Google's
/// jwks_uri is on www.googleapis.com): the server reads the jwks_uri from
/// the provider's discovery document at start and lets pages fetch from its
/// origin, so that their members can be verified in the browser. A jwks_uri
/// over plain http off loopback is not let in.
#[tokio::test]
async fn the_csp_lets_pages_fetch_a_providers_keys_from_another_origin() {
    let keys_host = start_provider().await;
    let keys_origin = keys_host.lock().unwrap().issuer.clone();
    let fake = Fake::start().await;
    fake.provider.lock().unwrap().jwks_uri = Some(format!("{keys_origin}/jwks"));
    let plain = start_provider().await;
    plain.lock().unwrap().jwks_uri = Some("http://keys.example.com/jwks".into());
    let plain_issuer = plain.lock().unwrap().issuer.clone();
    let server = TestServer::start_with(|c| {
        c.oidc = vec![
            fake.config(),
            conclave::oidc::ProviderConfig {
                name: "Plain".into(),
                issuer: plain_issuer.clone(),
                client_id: CLIENT_ID.into(),
                ..Default::default()
            },
        ]
    })
    .await;
    // Discovery runs in the background at start: wait for it (bounded).
    let mut sources = Vec::new();
    for _ in 0..100 {
        let resp = client().get(server.url("/")).send().await.expect("page");
        sources = connect_src(&resp);
        if sources.contains(&keys_origin) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(sources.contains(&keys_origin), "{sources:?}");
    assert!(sources.contains(&fake.issuer), "{sources:?}");
    assert!(sources.contains(&plain_issuer), "{sources:?}");
    assert!(
        !sources.iter().any(|s| s.contains("keys.example.com")),
        "{sources:?}"
    );
    assert_eq!(sources[0], "'self'");
    // Each origin once, and nothing else.
    assert_eq!(sources.len(), 4, "{sources:?}");
}
