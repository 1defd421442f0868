//! Accounts from an OpenID Connect provider, on both store engines: the key
//! is (issuer, sub), never the email. (The sign-in itself, through a real
//! provider in Chromium, is e2e/oidc.test.js.)

use conclave::store::{OidcClaims, Store};

use crate::common::postgres::Postgres;

fn claims(issuer: &str, sub: &str, email: &str) -> OidcClaims {
    OidcClaims {
        issuer: issuer.into(),
        subject: sub.into(),
        email: Some(email.into()),
        name: Some("Grace Hopper".into()),
        preferred_username: Some("grace".into()),
    }
}

const SCHOOL: &str = "https://idp.school.example";
const OTHER: &str = "https://login.other.example/tenant";

async fn keyed_by_issuer_and_subject(store: &Store) {
    let first = store
        .oidc_account(&claims(SCHOOL, "42", "grace@school.example"))
        .await
        .expect("first sign-in");
    assert_eq!(first.username, "grace");
    assert!(!first.has_password);

    // Her address changes at the provider: the same account, the new address.
    let again = store
        .oidc_account(&claims(SCHOOL, "42", "g.hopper@school.example"))
        .await
        .expect("second sign-in");
    assert_eq!(again.id, first.id);
    let identity = store.oidc_identity(first.id).await.unwrap().unwrap();
    assert_eq!(identity.email.as_deref(), Some("g.hopper@school.example"));
    assert_eq!(identity.issuer, SCHOOL);

    // The same sub at another issuer is someone else.
    let elsewhere = store
        .oidc_account(&claims(OTHER, "42", "g.hopper@school.example"))
        .await
        .expect("other issuer");
    assert_ne!(elsewhere.id, first.id);
    assert_eq!(elsewhere.username, "grace-2");

    // Someone else claiming her address gets no access to her account.
    let impostor = store
        .oidc_account(&claims(SCHOOL, "43", "g.hopper@school.example"))
        .await
        .expect("another subject");
    assert_ne!(impostor.id, first.id);
    assert_ne!(impostor.id, elsewhere.id);

    // A local account of the same name is not taken over either.
    let local = store
        .user_by_name("grace")
        .await
        .unwrap()
        .expect("the first account");
    assert_eq!(local.0.id, first.id);
    assert_eq!(store.user_count().await.unwrap(), 3);
}

#[tokio::test]
async fn sqlite_keys_accounts_by_issuer_and_subject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).await.expect("open SQLite store");
    keyed_by_issuer_and_subject(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_keys_accounts_by_issuer_and_subject() {
    let url = Postgres::shared().fresh_database().await;
    let store = Store::connect(&url)
        .await
        .expect("connect PostgreSQL store");
    keyed_by_issuer_and_subject(&store).await;
    store.close().await;
}
