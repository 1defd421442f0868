//! Names a modified server cannot fake (OpenPubkey on the MLS signature key): the checks one
//! token goes through, then a meeting whose server lies about names.
//!
//! The provider here is a real RSA key (from the system's openssl) signing real ID tokens
//! with openidconnect; what a client knows of it is its JWK Set, as it would fetch it from the
//! provider's `jwks_uri`.

mod common;

use std::collections::BTreeMap;

use common::Meeting;
use conclave_e2ee::{
    AnnouncedName, Badge, BindingError, DeliveryService, IdentityBinding, Member, NameCheck,
    NameChecker, NameWarning, check_names,
    openpubkey::{self, RZ_LEN, TrustedProvider},
};
use data_encoding::BASE64URL_NOPAD;
use openidconnect::core::{
    CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, EndUserUsername, IssuerUrl,
    JsonWebKeyId, LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
};

const ISSUER: &str = "https://idp.school.example";
const CLIENT_ID: &str = "conclave";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An RSA key in PKCS#1 PEM, from the system's openssl.
fn rsa_key(kid: &str) -> CoreRsaPrivateSigningKey {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("run openssl genrsa");
    assert!(out.status.success(), "openssl genrsa failed");
    let pem = String::from_utf8(out.stdout).expect("PEM");
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.into()))).expect("key")
}

/// The provider as clients know it: its issuer, Conclave's client id, its published keys.
fn trusted(key: &CoreRsaPrivateSigningKey) -> Vec<TrustedProvider> {
    let jwks = CoreJsonWebKeySet::new(vec![key.as_verification_key()]);
    vec![TrustedProvider {
        name: "School".into(),
        issuer: ISSUER.into(),
        client_id: CLIENT_ID.into(),
        jwks_json: serde_json::to_string(&jwks).expect("jwks"),
    }]
}

struct Person {
    sub: &'static str,
    username: &'static str,
    name: &'static str,
    email: &'static str,
}

const ALICE: Person = Person {
    sub: "u-alice",
    username: "alice",
    name: "Alice Example",
    email: "alice@school.example",
};

struct TokenSpec<'a> {
    issuer: &'a str,
    audience: &'a str,
    nonce: String,
    /// Seconds from now to `exp` (negative: already expired).
    expires_in: i64,
    person: &'a Person,
}

fn claims(t: &TokenSpec) -> CoreIdTokenClaims {
    let now = chrono::DateTime::from_timestamp(now(), 0).expect("now");
    let mut name = LocalizedClaim::new();
    name.insert(None, EndUserName::new(t.person.name.into()));
    CoreIdTokenClaims::new(
        IssuerUrl::new(t.issuer.into()).expect("issuer"),
        vec![Audience::new(t.audience.into())],
        now + chrono::Duration::seconds(t.expires_in),
        now - chrono::Duration::seconds(60),
        StandardClaims::new(SubjectIdentifier::new(t.person.sub.into()))
            .set_name(Some(name))
            .set_preferred_username(Some(EndUserUsername::new(t.person.username.into())))
            .set_email(Some(EndUserEmail::new(t.person.email.into())))
            .set_email_verified(Some(true)),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(t.nonce.clone())))
}

fn signed(t: &TokenSpec, key: &CoreRsaPrivateSigningKey) -> String {
    CoreIdToken::new(
        claims(t),
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .expect("sign")
    .to_string()
}

/// What a client does before the redirect: a key pair and `rz`, and the nonce to ask for.
struct SignIn {
    secret: Vec<u8>,
    public: Vec<u8>,
    rz: Vec<u8>,
}

impl SignIn {
    fn new() -> SignIn {
        let (secret, public) = Member::new_signing_key().expect("key");
        // Distinct per sign-in is all the test needs of it; a client uses its CSPRNG.
        let (rz, _) = Member::new_signing_key().expect("random");
        SignIn {
            secret,
            public,
            rz: rz[..RZ_LEN].to_vec(),
        }
    }

    fn nonce(&self) -> String {
        openpubkey::nonce(&self.public, &self.rz)
    }

    fn good(&self) -> TokenSpec<'static> {
        TokenSpec {
            issuer: ISSUER,
            audience: CLIENT_ID,
            nonce: self.nonce(),
            expires_in: 300,
            person: &ALICE,
        }
    }

    fn binding(&self, id_token: String) -> IdentityBinding {
        IdentityBinding {
            id_token,
            rz: self.rz.clone(),
        }
    }

    fn verify(
        &self,
        id_token: String,
        providers: &[TrustedProvider],
    ) -> Result<conclave_e2ee::openpubkey::VerifiedName, BindingError> {
        openpubkey::verify(&self.binding(id_token), &self.public, providers, now())
    }

    fn member(&self, participant_id: &str, binding: Option<IdentityBinding>) -> Member {
        Member::with_signing_key(participant_id, &self.secret, &self.public, binding)
            .expect("member")
    }
}

/// Refused as a bad token, for a reason that says `why`.
fn refused_for(r: &Result<conclave_e2ee::openpubkey::VerifiedName, BindingError>, why: &str) {
    match r {
        Err(BindingError::Token(reason)) => assert!(reason.contains(why), "{reason} ({why})"),
        other => panic!("expected a refusal for {why:?}, got {other:?}"),
    }
}

#[test]
fn a_token_signed_by_the_provider_for_this_key_verifies() {
    let key = rsa_key("k1");
    let s = SignIn::new();
    let v = s
        .verify(signed(&s.good(), &key), &trusted(&key))
        .expect("verified");
    assert_eq!(v.provider, "School");
    assert_eq!(v.issuer, ISSUER);
    assert_eq!(v.subject, "u-alice");
    assert_eq!(v.name.as_deref(), Some("Alice Example"));
    assert_eq!(v.email.as_deref(), Some("alice@school.example"));
    assert!(v.expires_at > now());
}

#[test]
fn every_bad_token_is_refused() {
    let key = rsa_key("k1");
    let providers = trusted(&key);
    let s = SignIn::new();

    // Forged: signed by another key under the provider's key id.
    let forger = rsa_key("k1");
    let r = s.verify(signed(&s.good(), &forger), &providers);
    refused_for(&r, "bad signature");

    // For another client (audience).
    let r = s.verify(
        signed(
            &TokenSpec {
                audience: "another-app",
                ..s.good()
            },
            &key,
        ),
        &providers,
    );
    refused_for(&r, "Invalid audiences");

    // Expired.
    let r = s.verify(
        signed(
            &TokenSpec {
                expires_in: -120,
                ..s.good()
            },
            &key,
        ),
        &providers,
    );
    refused_for(&r, "Expired");

    // From an issuer nobody configured, even one signing with the same key.
    let r = s.verify(
        signed(
            &TokenSpec {
                issuer: "https://idp.elsewhere.example",
                ..s.good()
            },
            &key,
        ),
        &providers,
    );
    assert_eq!(
        r,
        Err(BindingError::UntrustedIssuer(
            "https://idp.elsewhere.example".into()
        ))
    );

    // alg "none", unsigned.
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims(&s.good())).expect("json"));
    let r = s.verify(format!("{header}.{body}."), &providers);
    refused_for(&r, "No signature");
    // ... and with something in the signature's place, the algorithm itself is refused.
    let r = s.verify(format!("{header}.{body}.AAAA"), &providers);
    refused_for(&r, "Signature verification failed");

    // HS256 with the provider's public key (its JWK as published) as the secret.
    let public = serde_json::to_vec(&key.as_verification_key()).expect("jwk");
    let hs = CoreIdToken::new(
        claims(&s.good()),
        &CoreHmacKey::new(public),
        CoreJwsSigningAlgorithm::HmacSha256,
        None,
        None,
    )
    .expect("sign HS256")
    .to_string();
    let r = s.verify(hs, &providers);
    refused_for(&r, "Disallowed signature algorithm: algorithm `HS256`");

    // Not a token at all.
    refused_for(&s.verify("x.y.z".into(), &providers), "not a JWS");
}

#[test]
fn the_nonce_binds_the_token_to_one_key_and_one_rz() {
    let key = rsa_key("k1");
    let providers = trusted(&key);
    let alice = SignIn::new();
    let token = signed(&alice.good(), &key);

    // Alice's token (and rz) under another key: what a server that copied her leaf's token
    // into a leaf of its own would have.
    let thief = SignIn::new();
    let stolen = alice.binding(token.clone());
    assert_eq!(
        openpubkey::verify(&stolen, &thief.public, &providers, now()),
        Err(BindingError::NonceMismatch)
    );
    // Her key with another rz.
    let other_rz = IdentityBinding {
        id_token: token.clone(),
        rz: thief.rz.clone(),
    };
    assert_eq!(
        openpubkey::verify(&other_rz, &alice.public, &providers, now()),
        Err(BindingError::NonceMismatch)
    );
    // A token with no nonce, or any other nonce, is refused too.
    let r = alice.verify(
        signed(
            &TokenSpec {
                nonce: "an-ordinary-sign-in-nonce".into(),
                ..alice.good()
            },
            &key,
        ),
        &providers,
    );
    assert_eq!(r, Err(BindingError::NonceMismatch));
    // The right pair still verifies.
    assert!(alice.verify(token, &providers).is_ok());
}

#[test]
fn a_binding_that_does_not_decode_is_malformed() {
    let s = SignIn::new();
    let good = s.binding("a.b.c".into());
    let bytes = good.to_bytes();
    assert_eq!(IdentityBinding::from_bytes(&bytes), Ok(good));
    assert_eq!(
        IdentityBinding::from_bytes(&bytes[..bytes.len() - 1]),
        Err(BindingError::Malformed)
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        IdentityBinding::from_bytes(&longer),
        Err(BindingError::Malformed)
    );
    let short_rz = IdentityBinding {
        id_token: "a.b.c".into(),
        rz: vec![1; 8],
    };
    assert_eq!(
        IdentityBinding::from_bytes(&short_rz.to_bytes()),
        Err(BindingError::Malformed)
    );
}

/// Admit `newcomer` as participant `id` the way the server does.
fn admit(m: &mut Meeting, id: &str, mut newcomer: Member) {
    m.announce(&[id]);
    let kp = newcomer.key_package().expect("key package");
    DeliveryService::check_key_package(&kp, id).expect("the participant's key package");
    let proposal = m.ds.propose_add(&kp).expect("propose add");
    let (_, welcome) = m.propose_and_commit(&proposal);
    let tree = m.ds.ratchet_tree().expect("tree");
    newcomer
        .join(&welcome.expect("welcome"), &tree)
        .expect("join");
    m.members.push(newcomer);
}

fn announced(names: &[(&str, &str, bool)]) -> BTreeMap<String, AnnouncedName> {
    names
        .iter()
        .map(|(id, name, signed_in)| {
            (
                id.to_string(),
                AnnouncedName {
                    name: name.to_string(),
                    signed_in: *signed_in,
                },
            )
        })
        .collect()
}

/// What every member of `m` sees, checked against `names`; all must see the same.
fn seen_by_all(
    m: &Meeting,
    names: &BTreeMap<String, AnnouncedName>,
    providers: &[TrustedProvider],
) -> Vec<NameCheck> {
    let views: Vec<Vec<NameCheck>> = m
        .members
        .iter()
        .map(|member| check_names(&member.leaves(), names, providers, now()))
        .collect();
    for view in &views[1..] {
        assert_eq!(view, &views[0], "every member sees the same badges");
    }
    views[0].clone()
}

fn of<'a>(checks: &'a [NameCheck], id: &str) -> &'a NameCheck {
    checks
        .iter()
        .find(|c| c.participant_id == id)
        .expect("in the group")
}

#[test]
fn a_server_that_renames_or_impersonates_a_verified_member_is_flagged_on_every_client() {
    let key = rsa_key("k1");
    let providers = trusted(&key);

    // A guest creates the meeting; Alice joins with her key bound to her School token.
    let mut m = Meeting::new();
    let alice = SignIn::new();
    let alice_binding = alice.binding(signed(&alice.good(), &key));
    admit(&mut m, "2", alice.member("2", Some(alice_binding.clone())));
    let honest = announced(&[("1", "Guest", false), ("2", "Alice Example", true)]);
    let checks = seen_by_all(&m, &honest, &providers);
    assert_eq!(of(&checks, "1").badge, Badge::FromServer);
    assert!(of(&checks, "1").warnings.is_empty());
    match &of(&checks, "2").badge {
        Badge::Verified(v) => {
            assert_eq!(v.provider, "School");
            assert_eq!(v.name.as_deref(), Some("Alice Example"));
            assert_eq!(v.email.as_deref(), Some("alice@school.example"));
        }
        other => panic!("Alice not verified: {other:?}"),
    }
    assert!(of(&checks, "2").warnings.is_empty());

    // The server renames Alice: every client keeps the provider's name and flags the change.
    // Her username (the token's preferred_username) or email is hers too: no warning.
    for hers in ["alice", "alice@school.example", "alice  EXAMPLE"] {
        let names = announced(&[("1", "Guest", false), ("2", hers, true)]);
        let checks = seen_by_all(&m, &names, &providers);
        assert!(of(&checks, "2").warnings.is_empty(), "{hers}");
    }
    let renamed = announced(&[("1", "Guest", false), ("2", "Head Teacher", true)]);
    let checks = seen_by_all(&m, &renamed, &providers);
    assert!(matches!(of(&checks, "2").badge, Badge::Verified(_)));
    assert_eq!(
        of(&checks, "2").warnings,
        vec![NameWarning::Renamed {
            server_says: "Head Teacher".into(),
            provider_says: "Alice Example".into(),
        }]
    );

    // The server adds someone under Alice's name with no token: the name is the server's,
    // and it is flagged as the name of a verified member.
    let impostor = SignIn::new();
    admit(&mut m, "3", impostor.member("3", None));
    // ... and someone under her name carrying her own token (a bearer secret the server has
    // seen) in a leaf of its own key: the nonce does not open to that key.
    let thief = SignIn::new();
    admit(&mut m, "4", thief.member("4", Some(alice_binding.clone())));
    // ... and someone with a token the server made itself, signed with its own key.
    let forger_key = rsa_key("k1");
    let forged = SignIn::new();
    let forged_binding = forged.binding(signed(&forged.good(), &forger_key));
    admit(&mut m, "5", forged.member("5", Some(forged_binding)));

    let lies = announced(&[
        ("1", "Guest", false),
        ("2", "Alice Example", true),
        ("3", "Alice Example", true),
        ("4", "alice@school.example", true),
        ("5", "alice example", true),
    ]);
    let checks = seen_by_all(&m, &lies, &providers);
    assert!(matches!(of(&checks, "2").badge, Badge::Verified(_)));
    assert!(of(&checks, "2").warnings.is_empty());

    assert_eq!(of(&checks, "3").badge, Badge::FromServer);
    assert_eq!(
        of(&checks, "3").warnings,
        vec![NameWarning::SameNameAsVerified {
            verified: "2".into()
        }]
    );
    assert_eq!(
        of(&checks, "4").badge,
        Badge::Refused(BindingError::NonceMismatch)
    );
    assert!(
        of(&checks, "4")
            .warnings
            .contains(&NameWarning::BadBinding(BindingError::NonceMismatch))
    );
    assert!(
        of(&checks, "4")
            .warnings
            .contains(&NameWarning::SameNameAsVerified {
                verified: "2".into()
            })
    );
    assert!(matches!(
        of(&checks, "5").badge,
        Badge::Refused(BindingError::Token(_))
    ));
    assert!(
        of(&checks, "5")
            .warnings
            .contains(&NameWarning::SameNameAsVerified {
                verified: "2".into()
            })
    );

    // A member the server never announced has no name and is flagged as such.
    let hidden = announced(&[("1", "Guest", false), ("2", "Alice Example", true)]);
    let checks = seen_by_all(&m, &hidden, &providers);
    assert!(
        of(&checks, "3")
            .warnings
            .contains(&NameWarning::NotAnnounced)
    );
}

#[test]
fn a_member_who_joins_later_checks_the_names_already_in_the_tree() {
    // The verdict rests on the leaves in the ratchet tree the newcomer checked against the
    // Welcome, not on anything the server says about them.
    let key = rsa_key("k1");
    let providers = trusted(&key);
    let mut m = Meeting::new();
    let alice = SignIn::new();
    let binding = alice.binding(signed(&alice.good(), &key));
    admit(&mut m, "2", alice.member("2", Some(binding)));
    m.add("3");
    let names = announced(&[
        ("1", "Guest", false),
        ("2", "Alice Example", true),
        ("3", "Bob", false),
    ]);
    let newcomer = m.members.last().expect("newcomer");
    let checks = check_names(&newcomer.leaves(), &names, &providers, now());
    assert!(matches!(of(&checks, "2").badge, Badge::Verified(_)));
    assert_eq!(of(&checks, "3").badge, Badge::FromServer);

    // The same tree checked by a client that trusts another provider: nothing is verified.
    let other = trusted(&rsa_key("k1"));
    let mut other_provider = other.clone();
    other_provider[0].issuer = "https://idp.partner.example".into();
    let checks = check_names(&newcomer.leaves(), &names, &other_provider, now());
    assert!(matches!(
        of(&checks, "2").badge,
        Badge::Refused(BindingError::UntrustedIssuer(_))
    ));
    // Trusting the issuer but holding other keys for it (a rotated-out or forged JWKS):
    // the signature does not verify.
    let checks = check_names(&newcomer.leaves(), &names, &other, now());
    assert!(matches!(
        of(&checks, "2").badge,
        Badge::Refused(BindingError::Token(_))
    ));
}

#[test]
fn a_name_verified_while_its_token_was_valid_stays_verified_for_that_client() {
    let key = rsa_key("k1");
    let providers = trusted(&key);
    let mut m = Meeting::new();
    let alice = SignIn::new();
    let short = TokenSpec {
        expires_in: 60,
        ..alice.good()
    };
    admit(
        &mut m,
        "2",
        alice.member("2", Some(alice.binding(signed(&short, &key)))),
    );
    let names = announced(&[("1", "Guest", false), ("2", "Alice Example", true)]);
    let leaves = m.members[0].leaves();
    let mut checker = NameChecker::default();
    let at_join = checker.check(&leaves, &names, &providers, now());
    assert!(matches!(of(&at_join, "2").badge, Badge::Verified(_)));
    // Two hours on, past the token's exp: still verified for the client that checked it in
    // time, and even with the provider's keys gone from its JWKS.
    let later = now() + 7200;
    let rotated = trusted(&rsa_key("k2"));
    let kept = checker.check(&leaves, &names, &rotated, later);
    assert_eq!(of(&kept, "2").badge, of(&at_join, "2").badge);
    assert!(of(&kept, "2").warnings.is_empty());
    // A client that first looks then refuses it as expired.
    let late = check_names(&leaves, &names, &providers, later);
    match &of(&late, "2").badge {
        Badge::Refused(BindingError::Token(reason)) => {
            assert!(reason.contains("Expired"), "{reason}")
        }
        other => panic!("expected expired, got {other:?}"),
    }
    // The memory is per leaf: another leaf (another key) with the same token is checked anew.
    let thief = SignIn::new();
    let stolen = conclave_e2ee::Leaf {
        participant_id: "3".into(),
        signature_key: thief.public.clone(),
        binding: leaves[1].binding.clone(),
    };
    let checks = checker.check(&[stolen], &names, &providers, now());
    assert_eq!(
        of(&checks, "3").badge,
        Badge::Refused(BindingError::NonceMismatch)
    );
}
