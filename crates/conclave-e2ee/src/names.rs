//! The roster's names, each with what vouches for it: the provider (through the member's
//! [`IdentityBinding`](crate::IdentityBinding), checked here) or only the server.
//!
//! The server announces every participant with a display name and whether they signed in;
//! nothing in that is signed by anyone but the server. [`check_names`] sets it against the
//! group's leaves, so that a server that renames a verified member, or puts someone in under
//! a verified member's name without that member's token, is flagged on every honest client.

use std::collections::BTreeMap;

use crate::{
    member::Leaf,
    openpubkey::{BindingError, TrustedProvider, VerifiedName, verify},
};

/// What the server said about a participant: its display name and whether it signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedName {
    pub name: String,
    pub signed_in: bool,
}

/// What vouches for a member's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Badge {
    /// "verified by PROVIDER": the provider's token binds this name to the leaf's key.
    Verified(VerifiedName),
    /// No binding in the leaf: the name is only the server's word (a guest, a local account,
    /// or a sign-in that could not carry the binding).
    FromServer,
    /// The leaf carries a binding that does not hold: a forged, replayed, expired or foreign
    /// token. Shown as the server's name, with a warning.
    Refused(BindingError),
}

/// Something about a member's name that the user should be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameWarning {
    /// The server shows a name the provider's token does not give (not its `name`,
    /// `preferred_username` or `email`).
    Renamed {
        server_says: String,
        provider_says: String,
    },
    /// The leaf's binding is refused (see [`Badge::Refused`]).
    BadBinding(BindingError),
    /// An unverified member shown under the name or email of `verified` (a participant id),
    /// whose name the provider does vouch for.
    SameNameAsVerified { verified: String },
    /// In the group, not announced by the server: no name at all.
    NotAnnounced,
}

/// One member of the group with its badge and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCheck {
    pub participant_id: String,
    /// The name the server announced (empty when it announced none).
    pub server_name: String,
    pub badge: Badge,
    pub warnings: Vec<NameWarning>,
}

fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// Every leaf of the group with its badge, checked at `now` (seconds since the Unix epoch)
/// against `providers` (keys fetched from each provider), and the server's `announced` names.
pub fn check_names(
    leaves: &[Leaf],
    announced: &BTreeMap<String, AnnouncedName>,
    providers: &[TrustedProvider],
    now: i64,
) -> Vec<NameCheck> {
    NameChecker::default().check(leaves, announced, providers, now)
}

/// [`check_names`] that remembers what it verified: a leaf (its signature key and binding)
/// whose token this client verified while it was valid stays verified here after the token
/// expires or the provider rotates its key out. A client that first sees the leaf after that
/// refuses it (docs/security.md §15, expiry).
#[derive(Debug, Default)]
pub struct NameChecker {
    verified: BTreeMap<(Vec<u8>, Vec<u8>), VerifiedName>,
}

impl NameChecker {
    pub fn check(
        &mut self,
        leaves: &[Leaf],
        announced: &BTreeMap<String, AnnouncedName>,
        providers: &[TrustedProvider],
        now: i64,
    ) -> Vec<NameCheck> {
        check_leaves(leaves, announced, |leaf, binding| {
            let key = (leaf.signature_key.clone(), binding.to_bytes());
            if let Some(v) = self.verified.get(&key) {
                return Ok(v.clone());
            }
            let v = verify(binding, &leaf.signature_key, providers, now)?;
            self.verified.insert(key, v.clone());
            Ok(v)
        })
    }
}

fn check_leaves(
    leaves: &[Leaf],
    announced: &BTreeMap<String, AnnouncedName>,
    mut verify_leaf: impl FnMut(&Leaf, &crate::IdentityBinding) -> Result<VerifiedName, BindingError>,
) -> Vec<NameCheck> {
    let mut checks: Vec<NameCheck> = leaves
        .iter()
        .map(|leaf| {
            let server_name = announced
                .get(&leaf.participant_id)
                .map(|a| a.name.clone())
                .unwrap_or_default();
            let mut warnings = Vec::new();
            if !announced.contains_key(&leaf.participant_id) {
                warnings.push(NameWarning::NotAnnounced);
            }
            let badge = match &leaf.binding {
                None => Badge::FromServer,
                Some(Err(e)) => Badge::Refused(e.clone()),
                Some(Ok(binding)) => match verify_leaf(leaf, binding) {
                    Ok(verified) => Badge::Verified(verified),
                    Err(e) => Badge::Refused(e),
                },
            };
            match &badge {
                Badge::Verified(v) => {
                    // Any name the token gives (name, preferred_username, email) is one the
                    // provider vouches for; anything else is the server's own.
                    let vouched = [&v.name, &v.preferred_username, &v.email]
                        .into_iter()
                        .flatten()
                        .any(|n| same_name(&server_name, n));
                    if let Some(provider_says) = v.name.as_ref().or(v.email.as_ref())
                        && !server_name.is_empty()
                        && !vouched
                    {
                        warnings.push(NameWarning::Renamed {
                            server_says: server_name.clone(),
                            provider_says: provider_says.clone(),
                        });
                    }
                }
                Badge::Refused(e) => warnings.push(NameWarning::BadBinding(e.clone())),
                Badge::FromServer => {}
            }
            NameCheck {
                participant_id: leaf.participant_id.clone(),
                server_name,
                badge,
                warnings,
            }
        })
        .collect();
    // Names and emails the provider vouches for, and whose they are.
    let vouched: Vec<(String, Vec<String>)> = checks
        .iter()
        .filter_map(|c| match &c.badge {
            Badge::Verified(v) => Some((
                c.participant_id.clone(),
                v.name.iter().chain(v.email.iter()).cloned().collect(),
            )),
            _ => None,
        })
        .collect();
    for check in &mut checks {
        if matches!(check.badge, Badge::Verified(_)) || check.server_name.is_empty() {
            continue;
        }
        for (verified, names) in &vouched {
            if names.iter().any(|n| same_name(n, &check.server_name)) {
                check.warnings.push(NameWarning::SameNameAsVerified {
                    verified: verified.clone(),
                });
            }
        }
    }
    checks
}
