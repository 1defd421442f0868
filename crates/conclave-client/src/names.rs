//! Whose word each member's name is, told to the person at the native client
//! as the browser's roster badges tell it (docs/security.md §15): "verified by
//! PROVIDER" when the member's leaf carries the provider's ID token for its
//! key, checked here with keys this client fetched from the provider itself;
//! otherwise only the server's word; and a flag on a leaf that claims a
//! verified name the token does not give, or a name that copies a verified
//! member's.
//!
//! The checks are `conclave_e2ee`'s ([`NameChecker`]); this module only says
//! them in lines, and only when they change.

use std::collections::BTreeMap;

use conclave_e2ee::openpubkey::BindingError;
pub use conclave_e2ee::openpubkey::TrustedProvider;
use conclave_e2ee::{AnnouncedName, Badge, Leaf, NameCheck, NameChecker, NameWarning};

/// The name checks of one session: the tokens it verified while they were
/// valid stay verified (as in the browser), and what it last said.
#[derive(Debug, Default)]
pub struct Names {
    checker: NameChecker,
    providers: Vec<TrustedProvider>,
    unreachable: Vec<UnreachableProvider>,
    said: Vec<String>,
}

/// One of the server's providers whose keys this client could not fetch, or
/// that the user did not pin (`not_pinned`): its members' proofs are not
/// checked, and the lines say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreachableProvider {
    pub name: String,
    pub issuer: String,
    pub reason: String,
    /// The server names it, the user's own trust list does not: a modified
    /// server could have added it.
    pub not_pinned: bool,
}

impl Names {
    /// Checks against `providers`: the server's configured providers, each
    /// with the keys fetched from its own `jwks_uri`. None: every binding is
    /// refused (an issuer this client does not trust), every name the server's.
    pub fn new(providers: Vec<TrustedProvider>) -> Names {
        Names {
            providers,
            ..Names::default()
        }
    }

    /// Names the providers whose keys could not be fetched, so that their
    /// members' lines give that reason rather than an untrusted issuer.
    pub fn with_unreachable(mut self, unreachable: Vec<UnreachableProvider>) -> Names {
        self.unreachable = unreachable;
        self
    }

    /// The lines for the group's `leaves` against the names the server
    /// `announced` (by participant id), at `now` (seconds since the Unix
    /// epoch); `None` when they are the lines already said.
    pub fn changed(
        &mut self,
        leaves: &[Leaf],
        announced: &BTreeMap<String, AnnouncedName>,
        now: i64,
    ) -> Option<Vec<String>> {
        let checks = self.checker.check(leaves, announced, &self.providers, now);
        let lines = lines_with(&checks, announced, &self.unreachable);
        if lines == self.said {
            return None;
        }
        self.said.clone_from(&lines);
        Some(lines)
    }
}

/// "NAME (participant ID)", or the id alone when the server announced no name.
fn who(checks: &[NameCheck], id: &str) -> String {
    match checks.iter().find(|c| c.participant_id == id) {
        Some(c) if !c.server_name.is_empty() => format!("{} (participant {id})", c.server_name),
        _ => format!("participant {id}"),
    }
}

/// One line per member of the group, then one per warning.
///
/// - `verified: NAME (participant 2) is verified by School (idp.school.example) as Alice, alice@school.example`
/// - `NAME (participant 3): name from the server, signed in` / `: guest, name from the server`
/// - `WARNING: ... claims a verified name, but its sign-in proof is refused (WHY)`
/// - `WARNING: the server shows "X" for ..., but School vouches for "Y"`
/// - `WARNING: ... is not verified but has the name of ..., who is`
///
/// The issuer's host is shown beside the provider's name, as in the
/// browser, so that a provider the server made up is visible as such.
pub fn lines(checks: &[NameCheck], announced: &BTreeMap<String, AnnouncedName>) -> Vec<String> {
    lines_with(checks, announced, &[])
}

/// [`lines`], where a member whose token is from an `unreachable` provider
/// is said to be not verified because its keys could not be fetched.
fn lines_with(
    checks: &[NameCheck],
    announced: &BTreeMap<String, AnnouncedName>,
    unreachable: &[UnreachableProvider],
) -> Vec<String> {
    let mut out = Vec::new();
    for c in checks {
        let name = who(checks, &c.participant_id);
        let from_unreachable = match &c.badge {
            Badge::Refused(BindingError::UntrustedIssuer(issuer)) => unreachable
                .iter()
                .find(|p| p.issuer.trim_end_matches('/') == issuer.trim_end_matches('/')),
            _ => None,
        };
        if let Some(p) = from_unreachable
            && p.not_pinned
        {
            let host = url::Url::parse(&p.issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| p.issuer.clone());
            out.push(format!(
                "WARNING: {name} is not verified: vouched for by {} ({host}), a provider the server names that you did not trust (--trust-issuer); the name is only the server's",
                p.name
            ));
            continue;
        }
        if let Some(p) = from_unreachable {
            out.push(format!(
                "WARNING: {name} is not verified: could not fetch keys of {}: {}; the name is only the server's",
                p.name, p.reason
            ));
            continue;
        }
        out.push(match &c.badge {
            Badge::Verified(v) => {
                let host = url::Url::parse(&v.issuer)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string));
                let provider = match host {
                    Some(host) => format!("{} ({host})", v.provider),
                    None => v.provider.clone(),
                };
                let vouched: Vec<&str> = [v.name.as_deref(), v.email.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                let vouched = if vouched.is_empty() {
                    String::new()
                } else {
                    format!(" as {}", vouched.join(", "))
                };
                format!("verified: {name} is verified by {provider}{vouched}")
            }
            Badge::FromServer => {
                let signed_in = announced
                    .get(&c.participant_id)
                    .is_some_and(|a| a.signed_in);
                if signed_in {
                    format!("{name}: name from the server, signed in")
                } else {
                    format!("{name}: guest, name from the server")
                }
            }
            Badge::Refused(why) => format!(
                "WARNING: {name} claims a verified name, but its sign-in proof is refused ({why}): the name is only the server's"
            ),
        });
    }
    for c in checks {
        for w in &c.warnings {
            out.push(match w {
                NameWarning::Renamed {
                    server_says,
                    provider_says,
                } => {
                    let provider = match &c.badge {
                        Badge::Verified(v) => v.provider.as_str(),
                        _ => "the provider",
                    };
                    format!(
                        "WARNING: the server shows {server_says:?} for participant {}, but {provider} vouches for {provider_says:?}",
                        c.participant_id
                    )
                }
                NameWarning::SameNameAsVerified { verified } => format!(
                    "WARNING: {} is not verified but has the name of {}, who is",
                    who(checks, &c.participant_id),
                    who(checks, verified)
                ),
                // Said on the member's own line, and by the roster check.
                NameWarning::BadBinding(_) | NameWarning::NotAnnounced => continue,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use conclave_e2ee::openpubkey::{self, RZ_LEN};
    use conclave_e2ee::{DeliveryService, IdentityBinding, Member, Received};
    use openidconnect::core::{
        CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
        CoreRsaPrivateSigningKey,
    };
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId,
        LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
    };

    use super::*;

    const ISSUER: &str = "https://idp.school.example";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    }

    /// An RSA key from the system's openssl, as a provider signs with.
    fn rsa_key() -> CoreRsaPrivateSigningKey {
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .expect("run openssl genrsa");
        assert!(out.status.success(), "openssl genrsa failed");
        let pem = String::from_utf8(out.stdout).expect("PEM");
        CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("k1".into()))).expect("key")
    }

    /// A member whose leaf carries an ID token for its key, signed by `key`.
    fn signed_in_member(id: &str, key: &CoreRsaPrivateSigningKey) -> Member {
        let (secret, public) = Member::new_signing_key().expect("key");
        let (rz, _) = Member::new_signing_key().expect("random");
        let rz = rz[..RZ_LEN].to_vec();
        let at = chrono::DateTime::from_timestamp(now(), 0).expect("now");
        let mut name = LocalizedClaim::new();
        name.insert(None, EndUserName::new("Alice Example".into()));
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(ISSUER.into()).expect("issuer"),
            vec![Audience::new("conclave".into())],
            at + chrono::Duration::seconds(300),
            at - chrono::Duration::seconds(60),
            StandardClaims::new(SubjectIdentifier::new("u-alice".into()))
                .set_name(Some(name))
                .set_email(Some(EndUserEmail::new("alice@school.example".into()))),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(openpubkey::nonce(&public, &rz))));
        let id_token = CoreIdToken::new(
            claims,
            key,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .expect("sign")
        .to_string();
        Member::with_signing_key(id, &secret, &public, Some(IdentityBinding { id_token, rz }))
            .expect("member")
    }

    /// A group the way the server drives it: the delivery service proposes
    /// each newcomer, the first member commits, everyone follows.
    fn group(newcomers: Vec<Member>) -> Vec<Member> {
        let mut ds = DeliveryService::new().expect("ds");
        let mut members = vec![Member::new("1").expect("member")];
        let info = members[0]
            .create_group(b"g", &ds.external_sender())
            .expect("create");
        ds.observe_group(&info).expect("observe");
        for mut newcomer in newcomers {
            let mut ids: Vec<String> = members
                .iter()
                .map(|m| m.participant_id().to_string())
                .collect();
            ids.push(newcomer.participant_id().to_string());
            for m in &mut members {
                m.set_announced(ids.clone());
            }
            let proposal = ds
                .propose_add(&newcomer.key_package().expect("kp"))
                .expect("propose");
            for m in &mut members {
                assert_eq!(m.handle(&proposal).expect("proposal"), Received::Proposal);
            }
            let out = members[0].commit().expect("commit").expect("a commit");
            ds.accept_commit(&out.commit).expect("accepted");
            for m in &mut members {
                m.handle(&out.commit).expect("commit");
            }
            newcomer
                .join(
                    &out.welcome.expect("welcome"),
                    &ds.ratchet_tree().expect("tree"),
                )
                .expect("join");
            members.push(newcomer);
        }
        members
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

    #[test]
    fn a_verified_member_is_marked_and_names_that_claim_more_are_flagged() {
        let key = rsa_key();
        let forger = rsa_key();
        let jwks = CoreJsonWebKeySet::new(vec![key.as_verification_key()]);
        let providers = vec![TrustedProvider {
            name: "School".into(),
            issuer: ISSUER.into(),
            client_id: "conclave".into(),
            jwks_json: serde_json::to_string(&jwks).expect("jwks"),
        }];
        // 2 signed in at School; 3 is a guest the server shows under 2's
        // name; 4's leaf carries a token School never signed.
        let members = group(vec![
            signed_in_member("2", &key),
            Member::new("3").expect("member"),
            signed_in_member("4", &forger),
        ]);
        let leaves = members[0].leaves();
        assert_eq!(leaves.len(), 4);
        let honest = announced(&[
            ("1", "Host", true),
            ("2", "Alice Example", true),
            ("3", "alice example", false),
            ("4", "Bob", true),
        ]);
        let mut names = Names::new(providers.clone());
        let said = names.changed(&leaves, &honest, now()).expect("lines");
        assert_eq!(
            said,
            [
                "Host (participant 1): name from the server, signed in",
                "verified: Alice Example (participant 2) is verified by School (idp.school.example) as Alice Example, alice@school.example",
                "alice example (participant 3): guest, name from the server",
                "WARNING: Bob (participant 4) claims a verified name, but its sign-in proof is refused (token refused: Signature verification failed: Crypto error: bad signature): the name is only the server's",
                "WARNING: alice example (participant 3) is not verified but has the name of Alice Example (participant 2), who is",
            ],
            "{said:#?}"
        );
        // Said once; again only when something changes.
        assert_eq!(names.changed(&leaves, &honest, now()), None);

        // A server that renames the verified member is flagged at once.
        let renamed = announced(&[
            ("1", "Host", true),
            ("2", "Mallory", true),
            ("3", "alice example", false),
            ("4", "Bob", true),
        ]);
        let said = names.changed(&leaves, &renamed, now()).expect("changed");
        assert!(
            said.contains(&"WARNING: the server shows \"Mallory\" for participant 2, but School vouches for \"Alice Example\"".to_string()),
            "{said:#?}"
        );

        // Every other member's client says the same of the same leaves.
        for m in &members[1..] {
            let mut theirs = Names::new(providers.clone());
            assert_eq!(
                theirs.changed(&m.leaves(), &renamed, now()).as_ref(),
                Some(&said)
            );
        }

        // A client that trusts no provider verifies nobody: the token is
        // flagged as from an issuer it does not know, never shown as verified.
        let mut untrusting = Names::new(Vec::new());
        let said = untrusting.changed(&leaves, &honest, now()).expect("lines");
        assert!(
            said.iter().all(|l| !l.starts_with("verified:")),
            "{said:#?}"
        );
        assert!(
            said[1].starts_with("WARNING: Alice Example (participant 2) claims a verified name, but its sign-in proof is refused (token issuer \"https://idp.school.example\" is not a trusted provider)"),
            "{said:#?}"
        );

        // A client that pinned other issuers (`--trust-issuer`) while the
        // server names School: Alice is not verified, and the line says the
        // provider is one the user did not trust, not that her proof is forged.
        let mut pinned = Names::new(Vec::new()).with_unreachable(vec![UnreachableProvider {
            name: "School".into(),
            issuer: ISSUER.into(),
            reason: "not in your --trust-issuer list".into(),
            not_pinned: true,
        }]);
        let said = pinned.changed(&leaves, &honest, now()).expect("lines");
        assert_eq!(
            said[1],
            "WARNING: Alice Example (participant 2) is not verified: vouched for by School (idp.school.example), a provider the server names that you did not trust (--trust-issuer); the name is only the server's",
            "{said:#?}"
        );
        assert!(
            said.iter().all(|l| !l.starts_with("verified:")),
            "{said:#?}"
        );
    }
}
