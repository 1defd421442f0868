//! Who may join a meeting: anyone with the link, signed-in people only, or
//! the organisation's people only (plus the outside addresses the host
//! invited). The host picks per meeting; `[organisation]` in the
//! configuration says who "the organisation" is and sets the default.
//!
//! These are server-enforced checks, and they run only after the passcode
//! held (see `http::signaling`): someone without the passcode gets the same
//! `join_refused` as for a meeting that does not exist, so a policy shows no
//! more of a meeting than `sign_in_required` always did. A modified or
//! compromised server can of course skip them; docs/security.md says so.

use conclave_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::oidc::ProviderConfig;
use crate::store::OidcIdentity;

/// The most outside addresses one meeting may invite.
pub const MAX_INVITED: usize = 100;
/// An email address is at most this long (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhoMayJoin {
    /// Anyone with the link and passcode (guests wait in the waiting room).
    #[default]
    Anyone,
    /// Signed-in accounts only, of any kind.
    SignedIn,
    /// People of the organisation (`[organisation]`), and the invited addresses.
    Organisation,
}

/// `[organisation]`: who counts as "this organisation", and the policy new
/// meetings start with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganisationConfig {
    /// Names of `[[oidc]]` providers whose people are the organisation's.
    /// Empty: every configured provider.
    pub providers: Vec<String>,
    /// Email domains (exact, case-insensitive) whose people are the
    /// organisation's; the address must come from the provider and not be
    /// marked unverified. Empty: any address.
    pub email_domains: Vec<String>,
    /// The policy a new meeting gets when its host does not pick one.
    pub default_who_may_join: WhoMayJoin,
}

#[derive(Debug, thiserror::Error)]
pub enum OrganisationConfigError {
    #[error("organisation.providers names {0:?}, which is no [[oidc]] provider")]
    UnknownProvider(String),
    #[error("organisation.email_domains: {0:?} is not a domain name")]
    Domain(String),
    #[error(
        "organisation.default_who_may_join = \"organisation\" needs an [[oidc]] provider: \
         without one nobody but a meeting's owner could join"
    )]
    NoProvider,
}

impl OrganisationConfig {
    pub fn validate(&self, providers: &[ProviderConfig]) -> Result<(), OrganisationConfigError> {
        if self.default_who_may_join == WhoMayJoin::Organisation && providers.is_empty() {
            return Err(OrganisationConfigError::NoProvider);
        }
        for name in &self.providers {
            if !providers.iter().any(|p| &p.name == name) {
                return Err(OrganisationConfigError::UnknownProvider(name.clone()));
            }
        }
        for d in &self.email_domains {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.contains('.')
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
            if !ok {
                return Err(OrganisationConfigError::Domain(d.clone()));
            }
        }
        Ok(())
    }

    /// Whether the provider identity `id` (from one of `providers`) is one of
    /// the organisation's people.
    fn member(&self, providers: &[ProviderConfig], id: &OidcIdentity) -> bool {
        let Some(provider) = known_provider(providers, id) else {
            return false;
        };
        let by_provider = self.providers.is_empty() || self.providers.contains(&provider.name);
        let by_domain = self.email_domains.is_empty()
            || id
                .email
                .as_deref()
                .and_then(email_domain)
                .is_some_and(|d| self.email_domains.iter().any(|x| x.eq_ignore_ascii_case(d)));
        by_provider && by_domain
    }
}

/// The configured provider `id` came from; none for an identity whose
/// provider the operator has since removed (it vouches for nothing now).
fn known_provider<'a>(
    providers: &'a [ProviderConfig],
    id: &OidcIdentity,
) -> Option<&'a ProviderConfig> {
    providers
        .iter()
        .find(|p| p.issuer.trim_end_matches('/') == id.issuer.trim_end_matches('/'))
}

/// The part after the one `@`, if the address has exactly one.
pub fn email_domain(email: &str) -> Option<&str> {
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Some(domain)
        }
        _ => None,
    }
}

/// An invited address as stored: trimmed and lower-cased; `None` if it is
/// not an address.
pub fn clean_invited_email(e: &str) -> Option<String> {
    let e = e.trim().to_ascii_lowercase();
    let ok = e.len() <= MAX_EMAIL_LEN
        && email_domain(&e).is_some_and(|d| d.contains('.'))
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>'));
    ok.then_some(e)
}

/// Who is asking to join, as far as the policy cares.
pub enum Joiner<'a> {
    Guest,
    /// A signed-in account; its provider identity if it signs in through one.
    Account(Option<&'a OidcIdentity>),
}

/// Whether `who` may join a meeting with this policy and these invited
/// addresses; the error code to answer with if not. The owner never gets
/// here (they always may join their own meeting).
pub fn admit(
    policy: WhoMayJoin,
    invited: &[String],
    org: &OrganisationConfig,
    providers: &[ProviderConfig],
    who: &Joiner<'_>,
) -> Result<(), ErrorCode> {
    match (policy, who) {
        (WhoMayJoin::Anyone, _) => Ok(()),
        (WhoMayJoin::SignedIn, Joiner::Guest) => Err(ErrorCode::SignInRequired),
        (WhoMayJoin::SignedIn, Joiner::Account(_)) => Ok(()),
        (WhoMayJoin::Organisation, Joiner::Guest | Joiner::Account(None)) => {
            Err(ErrorCode::OrganisationOnly)
        }
        (WhoMayJoin::Organisation, Joiner::Account(Some(id))) => {
            let invited = known_provider(providers, id).is_some()
                && id
                    .email
                    .as_deref()
                    .is_some_and(|e| invited.iter().any(|i| i.eq_ignore_ascii_case(e.trim())));
            if invited || org.member(providers, id) {
                Ok(())
            } else {
                Err(ErrorCode::OrganisationOnly)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, issuer: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            issuer: issuer.into(),
            ..ProviderConfig::default()
        }
    }

    fn id(issuer: &str, email: Option<&str>) -> OidcIdentity {
        OidcIdentity {
            issuer: issuer.into(),
            email: email.map(Into::into),
            name: None,
        }
    }

    #[test]
    fn invited_addresses_are_cleaned_and_checked() {
        assert_eq!(
            clean_invited_email(" Ada@Example.ORG "),
            Some("ada@example.org".into())
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "a@b@example.org",
            "ada@localhost",
            "a b@example.org",
        ] {
            assert_eq!(clean_invited_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_configuration_names_real_providers_and_domains() {
        let providers = [provider("School", "https://idp.school.example")];
        let org = |names: &[&str], domains: &[&str], default| OrganisationConfig {
            providers: names.iter().map(|s| s.to_string()).collect(),
            email_domains: domains.iter().map(|s| s.to_string()).collect(),
            default_who_may_join: default,
        };
        assert!(
            org(&["School"], &["school.example"], WhoMayJoin::Organisation)
                .validate(&providers)
                .is_ok()
        );
        assert!(matches!(
            org(&["Nope"], &[], WhoMayJoin::Anyone).validate(&providers),
            Err(OrganisationConfigError::UnknownProvider(_))
        ));
        for bad in ["", "school", "@school.example", "school.example/x"] {
            assert!(
                org(&[], &[bad], WhoMayJoin::Anyone)
                    .validate(&providers)
                    .is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            org(&[], &[], WhoMayJoin::Organisation).validate(&[]),
            Err(OrganisationConfigError::NoProvider)
        ));
        assert!(org(&[], &[], WhoMayJoin::SignedIn).validate(&[]).is_ok());
    }

    #[test]
    fn each_policy_admits_whom_it_says() {
        let providers = [
            provider("School", "https://idp.school.example"),
            provider("Other", "https://idp.other.example"),
        ];
        let org = OrganisationConfig {
            providers: vec!["School".into()],
            email_domains: vec!["school.example".into()],
            default_who_may_join: WhoMayJoin::Anyone,
        };
        let member = id("https://idp.school.example", Some("Grace@School.Example"));
        let other_issuer = id("https://idp.other.example", Some("ada@school.example"));
        let other_domain = id("https://idp.school.example", Some("eve@elsewhere.example"));
        let no_email = id("https://idp.school.example", None);
        let invited = id("https://idp.other.example", Some("vic@partner.example"));
        let list = vec!["vic@partner.example".to_string()];
        let check = |policy, who: &Joiner<'_>| admit(policy, &list, &org, &providers, who);
        use ErrorCode::{OrganisationOnly, SignInRequired};
        use WhoMayJoin::{Anyone, Organisation, SignedIn};
        /// Who joins, and the outcome under Anyone, SignedIn, Organisation.
        type Case<'a> = (&'a str, Joiner<'a>, [Result<(), ErrorCode>; 3]);
        let people: [Case<'_>; 7] = [
            (
                "guest",
                Joiner::Guest,
                [Ok(()), Err(SignInRequired), Err(OrganisationOnly)],
            ),
            (
                "local",
                Joiner::Account(None),
                [Ok(()), Ok(()), Err(OrganisationOnly)],
            ),
            (
                "member",
                Joiner::Account(Some(&member)),
                [Ok(()), Ok(()), Ok(())],
            ),
            (
                "other issuer",
                Joiner::Account(Some(&other_issuer)),
                [Ok(()), Ok(()), Err(OrganisationOnly)],
            ),
            (
                "other domain",
                Joiner::Account(Some(&other_domain)),
                [Ok(()), Ok(()), Err(OrganisationOnly)],
            ),
            (
                "no email",
                Joiner::Account(Some(&no_email)),
                [Ok(()), Ok(()), Err(OrganisationOnly)],
            ),
            (
                "invited",
                Joiner::Account(Some(&invited)),
                [Ok(()), Ok(()), Ok(())],
            ),
        ];
        for (label, who, want) in &people {
            for (policy, want) in [Anyone, SignedIn, Organisation].into_iter().zip(want) {
                assert_eq!(check(policy, who), *want, "{label} under {policy:?}");
            }
        }
    }

    #[test]
    fn a_removed_provider_vouches_for_nobody() {
        let providers = [provider("School", "https://idp.school.example/")];
        let org = OrganisationConfig::default();
        let school = id("https://idp.school.example", Some("ada@school.example"));
        let gone = id("https://idp.gone.example", Some("ada@school.example"));
        let invited = vec!["ada@school.example".to_string()];
        let check = |who| {
            admit(
                WhoMayJoin::Organisation,
                &invited,
                &org,
                &providers,
                &Joiner::Account(Some(who)),
            )
        };
        assert_eq!(check(&school), Ok(()));
        assert_eq!(check(&gone), Err(ErrorCode::OrganisationOnly));
    }
}
