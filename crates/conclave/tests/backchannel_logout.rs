//! OpenID Connect Back-Channel Logout 1.0 at `/auth/oidc/NAME/backchannel-logout`:
//! a logout token the provider signed ends every session of that person
//! (browsers' and native clients'), and nothing else does: tokens that are
//! forged, expired, for another audience, old, without the logout event,
//! with a nonce (an ID token passed off as one), unsigned, MACed, without a
//! `sub`, or replayed are refused with 400 and end nothing. A key the
//! provider rotated in is fetched and accepted.

use conclave::oidc::LogoutClaims;
use conclave::store::OidcClaims;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, Mac};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{
    Audience, IdTokenClaims, IssuerUrl, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Api, TestServer};
use crate::oidc_tokens::{CLIENT_ID, provider_with_key, rs256_signed, rsa_key, server_trusting};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout token says; each test case changes one thing.
#[derive(Clone)]
struct Logout {
    issuer: String,
    audience: String,
    subject: Option<String>,
    /// Seconds from now.
    iat: i64,
    exp: i64,
    event: bool,
    nonce: Option<String>,
    jti: String,
}

impl Logout {
    fn for_grace(issuer: &str) -> Logout {
        Logout {
            issuer: issuer.into(),
            audience: CLIENT_ID.into(),
            subject: Some("grace-sub".into()),
            iat: 0,
            exp: 120,
            event: true,
            nonce: None,
            jti: format!("jti-{}", rand::random::<u64>()),
        }
    }

    fn payload(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut v = json!({
            "iss": self.issuer, "aud": [self.audience], "iat": now + self.iat,
            "exp": now + self.exp, "jti": self.jti, "sid": "a-session",
        });
        if let Some(sub) = &self.subject {
            v["sub"] = json!(sub);
        }
        if self.event {
            v["events"] = json!({ EVENT: {} });
        }
        if let Some(n) = &self.nonce {
            v["nonce"] = json!(n);
        }
        v
    }

    /// Signed as a provider signs, by openidconnect (RS256).
    fn signed(&self, key: &CoreRsaPrivateSigningKey) -> String {
        let now = chrono::Utc::now();
        let claims = IdTokenClaims::new(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            vec![Audience::new(self.audience.clone())],
            now + chrono::Duration::seconds(self.exp),
            now + chrono::Duration::seconds(self.iat),
            StandardClaims::new(SubjectIdentifier::new(
                self.subject.clone().unwrap_or_default(),
            )),
            LogoutClaims {
                events: if self.event {
                    json!({ EVENT: {} }).as_object().unwrap().clone()
                } else {
                    Default::default()
                },
                jti: Some(self.jti.clone()),
                sid: Some("a-session".into()),
            },
        )
        .set_nonce(self.nonce.clone().map(Nonce::new));
        rs256_signed(claims, key)
    }

    /// A compact JWS with this header and a signature made by `sign`.
    fn with_header(&self, header: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let h = BASE64URL_NOPAD.encode(header.to_string().as_bytes());
        let p = BASE64URL_NOPAD.encode(self.payload().to_string().as_bytes());
        let input = format!("{h}.{p}");
        let sig = BASE64URL_NOPAD.encode(&sign(input.as_bytes()));
        format!("{input}.{sig}")
    }
}

async fn post(server: &TestServer, provider: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("/auth/oidc/{provider}/backchannel-logout")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    crate::common::read(resp).await
}

async fn logout(server: &TestServer, token: &str) -> (StatusCode, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    post(server, "Fake", &body).await
}

/// Whether each of two clients is still signed in.
async fn both(a: &Api, b: &Api) -> (StatusCode, StatusCode) {
    (a.get("/api/v1/me").await.0, b.get("/api/v1/me").await.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_logout_token_ends_that_persons_sessions() {
    let (provider, k1) = provider_with_key().await;
    let issuer = provider.lock().unwrap().issuer.clone();
    let server = server_trusting(&issuer).await;
    let store = server.store().await;
    let account = |sub: &str, name: &str| OidcClaims {
        issuer: issuer.clone(),
        subject: sub.into(),
        email: Some(format!("{name}@school.example")),
        name: None,
        preferred_username: Some(name.into()),
    };
    let grace = store
        .oidc_account(&account("grace-sub", "grace"))
        .await
        .unwrap();
    let ada = store
        .oidc_account(&account("ada-sub", "ada"))
        .await
        .unwrap();
    let (laptop, _) = server.session_for(&store, grace.id).await;
    let (_, native) = server.session_for(&store, grace.id).await;
    let native = Api::with_bearer(&server, &native);
    let (ada_browser, _) = server.session_for(&store, ada.id).await;
    let (_, created) = laptop.post("/api/v1/tokens", json!({"name": "bot"})).await;
    let bot = Api::with_bearer(&server, created["token"].as_str().unwrap());
    let signed_in = || both(&laptop, &native);
    assert_eq!(signed_in().await, (StatusCode::OK, StatusCode::OK));

    // Every one of these is refused, and ends nothing.
    let good = Logout::for_grace(&issuer);
    let forger = rsa_key("k1");
    let hs256 = |input: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(CLIENT_ID.as_bytes()).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    };
    let refused: Vec<(&str, String)> = vec![
        (
            "signed with another key under k1's id",
            good.signed(&forger),
        ),
        (
            "signed with a key the provider never had",
            good.signed(&rsa_key("k9")),
        ),
        (
            "expired",
            Logout {
                exp: -60,
                iat: -120,
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "for another client",
            Logout {
                audience: "someone-else".into(),
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "from another issuer",
            Logout {
                issuer: "http://127.0.0.1:9".into(),
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "issued long ago",
            Logout {
                iat: -3600,
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "without the logout event",
            Logout {
                event: false,
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "with a nonce, as an ID token",
            Logout {
                nonce: Some("n".into()),
                ..good.clone()
            }
            .signed(&k1),
        ),
        (
            "without sub",
            Logout {
                subject: None,
                ..good.clone()
            }
            .with_header(json!({"alg": "RS256", "kid": "k1"}), |m| {
                k1.sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, m)
                    .unwrap()
            }),
        ),
        (
            "alg none",
            good.with_header(json!({"alg": "none"}), |_| Vec::new()),
        ),
        (
            "HS256 under the client id",
            good.with_header(json!({"alg": "HS256", "kid": "k1"}), hs256),
        ),
        ("not a JWT", "garbage".into()),
    ];
    for (why, token) in &refused {
        let (status, body) = logout(&server, token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"], "invalid_request", "{why}");
        assert_eq!(
            signed_in().await,
            (StatusCode::OK, StatusCode::OK),
            "{why} ended a session"
        );
    }
    let (status, _) = post(&server, "Fake", "something=else").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(&server, "Nobody", "logout_token=x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The provider rotates in a new key and signs the real one with it: the
    // keys are fetched again, and Grace's sessions end, browser and native.
    let k2 = rsa_key("k2");
    provider.lock().unwrap().keys = vec![k1.as_verification_key(), k2.as_verification_key()];
    let token = good.signed(&k2);
    let (status, body) = logout(&server, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        signed_in().await,
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    // Her API token is hers, not a sign-in's: it stays. Ada is untouched.
    assert_eq!(bot.get("/api/v1/me").await.0, StatusCode::OK);
    assert_eq!(ada_browser.get("/api/v1/me").await.0, StatusCode::OK);
    // The same token again is a replay.
    let (laptop_again, _) = server.session_for(&store, grace.id).await;
    let (status, body) = logout(&server, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(laptop_again.get("/api/v1/me").await.0, StatusCode::OK);
    // A logout for someone with no account here: done, nothing to end.
    let stranger = Logout {
        subject: Some("nobody-here".into()),
        jti: "another".into(),
        ..good.clone()
    };
    assert_eq!(
        logout(&server, &stranger.signed(&k1)).await.0,
        StatusCode::OK
    );

    let log = store.signin_events(100).await.unwrap();
    let ours: Vec<_> = log.iter().filter(|e| e.method == "logout:Fake").collect();
    assert!(
        ours.iter()
            .any(|e| e.outcome == "ok" && e.username.as_deref() == Some("grace")),
        "{ours:?}"
    );
    assert_eq!(
        ours.iter().filter(|e| e.outcome == "token").count(),
        refused.len() + 2,
        "{ours:?}"
    );
    store.close().await;
}
