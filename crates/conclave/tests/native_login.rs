//! `conclave login`: a native client signs in through the server's provider
//! by the loopback redirect of RFC 8252, as a person does it: the real
//! binary prints the address, an HTTP client plays the browser through the
//! server and the provider (the stand-in of oidc_tokens, which signs the
//! ID token for the nonce the client chose), the server sends that browser
//! to the command's loopback listener, and the command trades the one-time
//! code for a session. `conclave join --login` then joins a meeting for
//! signed-in people only, and another member sees the name as verified by
//! the provider: the key the command made is the one the token vouches for.

use std::time::Duration;

use openidconnect::core::CoreIdTokenClaims;
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, IssuerUrl, LocalizedClaim, Nonce,
    StandardClaims, SubjectIdentifier,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::Api;
use crate::native_cli::{Cli, invite};
use crate::oidc_tokens::{
    CLIENT_ID, provider_with_key, rs256_signed, server_trusting, start_provider,
};

/// A browser that does not follow redirects, so each step can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

fn location(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{resp:?}");
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The `Set-Cookie` values of a response (name=value only).
fn cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect()
}

fn id_token(
    issuer: &str,
    nonce: &str,
    key: &openidconnect::core::CoreRsaPrivateSigningKey,
) -> String {
    let now = chrono::Utc::now();
    let mut name = LocalizedClaim::new();
    name.insert(None, EndUserName::new("Grace Hopper".into()));
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer.into()).unwrap(),
        vec![Audience::new(CLIENT_ID.into())],
        now + chrono::Duration::seconds(300),
        now - chrono::Duration::seconds(60),
        StandardClaims::new(SubjectIdentifier::new("grace-sub".into()))
            .set_name(Some(name))
            .set_preferred_username(Some(openidconnect::EndUserUsername::new("grace".into())))
            .set_email(Some(EndUserEmail::new("grace@school.example".into()))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce.into())));
    rs256_signed(claims, key)
}

/// The address `conclave login` prints on standard output.
async fn first_url(cli: &Cli) -> String {
    for _ in 0..1500 {
        if let Some(url) = cli.stdout().lines().find(|l| l.starts_with("http")) {
            return url.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no address printed; stderr:\n{}", cli.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_through_the_provider_then_join_verified() {
    let (provider, key) = provider_with_key().await;
    let issuer = provider.lock().unwrap().issuer.clone();
    let server = server_trusting(&issuer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("login.json");
    let login = Cli::start(&[
        "login",
        "--server",
        &server.url(""),
        "--provider",
        "Fake",
        "--out",
        file.to_str().unwrap(),
        "--wait",
        "60",
    ]);
    let start_url = first_url(&login).await;
    assert!(
        start_url.starts_with(&server.url("/auth/oidc/Fake?")),
        "{start_url}"
    );

    // The browser: to the provider through the server...
    let b = browser();
    let resp = b.get(&start_url).send().await.expect("start");
    let at_provider = location(&resp);
    let flow = cookies(&resp).join("; ");
    assert!(at_provider.starts_with(&format!("{issuer}/authorize?")));
    // ...whose token commits to the command's key (the nonce it chose).
    let nonce = param(&at_provider, "nonce");
    assert_eq!(nonce, param(&start_url, "key_nonce"));
    provider.lock().unwrap().id_token = Some(id_token(&issuer, &nonce, &key));
    // Back at the server's callback: no session for the browser, but a
    // redirect to the command's loopback listener.
    let resp = b
        .get(server.url(&format!(
            "/auth/oidc/Fake/callback?code=a-code&state={}",
            param(&at_provider, "state")
        )))
        .header("cookie", &flow)
        .send()
        .await
        .expect("callback");
    let to_client = location(&resp);
    assert!(
        !cookies(&resp)
            .iter()
            .any(|c| c.starts_with("conclave_session=") || c.starts_with("conclave_leaf_token=")),
        "{:?}",
        cookies(&resp)
    );
    let port = param(&start_url, "loopback_port");
    assert!(
        to_client.starts_with(&format!("http://127.0.0.1:{port}/callback?code=")),
        "{to_client}"
    );
    let page = b.get(&to_client).send().await.expect("loopback");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Signed in to Conclave"));
    login
        .stderr_line(|l| l.starts_with("signed in as grace").then_some(()))
        .await;

    // The file: the owner's only, a session and the key with its token.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let token = saved["token"].as_str().expect("token").to_string();
    assert!(saved["leaf"]["id_token"].is_string(), "{saved}");
    let grace = Api::with_bearer(&server, &token);
    let (status, me) = grace.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "grace");
    assert_eq!(me["provider"]["email"], "grace@school.example");

    // The code was used: again, with any verifier, it is refused.
    let code = param(&to_client, "code");
    let (status, body) = server
        .api()
        .post(
            "/api/v1/auth/native/token",
            json!({"code": code, "code_verifier": "x".repeat(43)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A meeting for signed-in people only; its host watches with the
    // command too (her API token), and sees Grace as verified.
    let alice = server.signed_in("alice").await;
    let meeting = alice
        .create_meeting(json!({"settings": {"waiting_room": false, "who_may_join": "signed_in"}}))
        .await;
    let (_, created) = alice.post("/api/v1/tokens", json!({"name": "cli"})).await;
    let host = Cli::start(&[
        "join",
        &invite(&meeting),
        "--name",
        "Alice",
        "--token",
        created["token"].as_str().unwrap(),
    ]);
    host.stderr_line(|l| l.starts_with("Security code").then_some(()))
        .await;
    let member = Cli::start(&[
        "join",
        &invite(&meeting),
        "--name",
        "Grace Hopper",
        "--login",
        file.to_str().unwrap(),
    ]);
    let verified = host
        .stderr_line(|l| {
            l.starts_with("verified: Grace Hopper")
                .then(|| l.to_string())
        })
        .await;
    assert!(
        verified.ends_with("is verified by Fake (127.0.0.1) as Grace Hopper, grace@school.example"),
        "{verified}"
    );
    // Without the login a guest is refused this meeting.
    let guest = Cli::start(&["join", &invite(&meeting), "--name", "Guest"]);
    guest
        .stderr_line(|l| l.contains("only signed-in users").then_some(()))
        .await;
    drop(member);

    // conclave logout ends the session at the server and deletes the file.
    let logout = Cli::start(&["logout", "--login", file.to_str().unwrap()]);
    logout
        .stderr_line(|l| l.starts_with("signed out;").then_some(()))
        .await;
    assert!(!file.exists());
    assert_eq!(grace.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_sign_in_that_fails_reports_to_the_loopback_and_a_bad_start_is_refused() {
    let provider = start_provider().await;
    let issuer = provider.lock().unwrap().issuer.clone();
    let server = server_trusting(&issuer).await;
    let b = browser();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    // Half a native start, or a malformed challenge: refused, not turned
    // into a browser sign-in.
    for query in [
        "loopback_port=4711".to_string(),
        format!("code_challenge={challenge}"),
        "loopback_port=4711&code_challenge=short".to_string(),
        format!("loopback_port=0&code_challenge={challenge}"),
    ] {
        let resp = b
            .get(server.url(&format!("/auth/oidc/Fake?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(location(&resp), "/signin#oidc_error=refused", "{query}");
    }
    // A callback whose state is not the flow's: the client hears why.
    let resp = b
        .get(server.url(&format!(
            "/auth/oidc/Fake?loopback_port=4711&code_challenge={challenge}"
        )))
        .send()
        .await
        .unwrap();
    let flow = cookies(&resp).join("; ");
    let resp = b
        .get(server.url("/auth/oidc/Fake/callback?code=a-code&state=forged"))
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&resp),
        "http://127.0.0.1:4711/callback?error=state"
    );
    // A code nobody was granted.
    let (status, _) = server
        .api()
        .post(
            "/api/v1/auth/native/token",
            json!({"code": "0".repeat(64), "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
