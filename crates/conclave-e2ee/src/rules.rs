//! What a member lets into its group: the check every proposal and commit passes before mls-rs
//! applies it, so that neither a hostile member nor a modified server can change the
//! membership behind the meeting's back.
//!
//! Two kinds of rule, because members must agree on commits or the group splits:
//!
//! - **Deterministic rules**, applied to every commit, sent or received: membership changes only
//!   through the server's proposals by reference (a member can neither add nor remove anyone on
//!   its own authority), no other proposal type at all, every added credential is a canonical
//!   participant id, and no participant id holds two leaves. These depend only on the group's
//!   state, so every honest member reaches the same verdict and a commit that breaks them is
//!   refused by all of them.
//! - **The announcement rule**, applied only when this member commits: an Add is committed only
//!   for a participant the server announced to this client (the participant list it shows its
//!   user). It depends on what this client has seen, so it filters (the Add stays out of the
//!   commit) rather than failing received commits; a member the group holds but the server did
//!   not announce is shown as a warning instead ([`crate::Member::roster`] against the list).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use mls_rs::{
    MlsRules,
    error::IntoAnyError,
    group::{GroupContext, Roster, Sender, proposal::BorrowedProposal},
    mls_rules::{
        CommitDirection, CommitOptions, CommitSource, DefaultMlsRules, EncryptionOptions,
        ProposalBundle, ProposalSource,
    },
};

use crate::mls;

/// Why a commit was refused: it would change the group in a way the meeting did not decide.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A proposal type Conclave never uses (Update, PSK, ReInit, ExternalInit, context changes).
    #[error("an {0} proposal is not allowed in a Conclave group")]
    ForbiddenProposal(&'static str),
    /// An Add or Remove not proposed by the server by reference: a member acting on its own.
    #[error("membership changed by a member, not by the server's proposal")]
    MembershipByMember,
    /// An added credential that is not a participant id in canonical form ("01", "1.0", "ghost").
    #[error("added credential {0:?} is not a canonical participant id")]
    NonCanonicalCredential(String),
    /// A participant id that would hold two leaves: a second device under someone's name.
    #[error("participant {0:?} would be in the group twice")]
    DuplicateParticipant(String),
}

impl IntoAnyError for RulesError {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(self.into())
    }
}

/// The participants the server announced to this client, shared with the member that owns the
/// rules. `None` until the client has told the member anything: then no Add is committed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Announced(Arc<Mutex<Option<BTreeSet<String>>>>);

impl Announced {
    pub(crate) fn set(&self, ids: BTreeSet<String>) {
        // A poisoned lock only means another thread panicked while holding it; the set is
        // replaced whole, so the value inside is never half-written.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some(ids);
    }

    /// What was announced last; empty before anything was.
    pub(crate) fn snapshot(&self) -> BTreeSet<String> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().unwrap_or_default()
    }

    fn contains(&self, id: &str) -> bool {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|ids| ids.contains(id))
    }
}

/// The rules every Conclave member runs: [`mls::rules`]'s options plus the checks above.
#[derive(Debug, Clone)]
pub(crate) struct MemberRules {
    options: DefaultMlsRules,
    announced: Announced,
}

impl MemberRules {
    pub(crate) fn new(announced: Announced) -> Self {
        MemberRules {
            options: mls::rules(),
            announced,
        }
    }
}

/// Whether `id` is how the server writes a participant id: decimal digits of a u64, no sign, no
/// leading zero. One spelling per participant, so that "1", "01" and "1.0" cannot be three
/// people that a client shows as one.
pub(crate) fn is_canonical_participant_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && id.parse::<u64>().is_ok_and(|n| n.to_string() == id)
}

fn from_server(sender: &Sender, source: &ProposalSource) -> bool {
    matches!(sender, Sender::External(_)) && matches!(source, ProposalSource::ByReference(_))
}

/// Leaves per participant id once the bundle's Removes are applied, before its Adds.
fn leaves_after_removes(roster: &Roster, proposals: &ProposalBundle) -> BTreeMap<String, usize> {
    let removed: BTreeSet<u32> = proposals
        .remove_proposals()
        .iter()
        .map(|p| p.proposal.to_remove())
        .collect();
    let mut leaves: BTreeMap<String, usize> = BTreeMap::new();
    for member in roster.members_iter() {
        if !removed.contains(&member.index) {
            *leaves
                .entry(mls::identity_name(&member.signing_identity))
                .or_default() += 1;
        }
    }
    leaves
}

/// The deterministic rules: the same verdict on every honest member.
pub(crate) fn check_bundle(roster: &Roster, proposals: &ProposalBundle) -> Result<(), RulesError> {
    for info in proposals.iter_proposals() {
        let kind = match &info.proposal {
            BorrowedProposal::Add(_) | BorrowedProposal::Remove(_) => None,
            BorrowedProposal::Update(_) => Some("Update"),
            BorrowedProposal::ReInit(_) => Some("ReInit"),
            BorrowedProposal::ExternalInit(_) => Some("ExternalInit"),
            BorrowedProposal::GroupContextExtensions(_) => Some("GroupContextExtensions"),
        };
        if let Some(kind) = kind {
            return Err(RulesError::ForbiddenProposal(kind));
        }
        if !from_server(&info.sender, &info.source) {
            return Err(RulesError::MembershipByMember);
        }
    }
    let mut leaves = leaves_after_removes(roster, proposals);
    for add in proposals.add_proposals() {
        let identity = add.proposal.signing_identity();
        let id = mls::identity_name(identity);
        if identity.credential.as_basic().is_none() || !is_canonical_participant_id(&id) {
            return Err(RulesError::NonCanonicalCredential(id));
        }
        let count = leaves.entry(id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            return Err(RulesError::DuplicateParticipant(id));
        }
    }
    Ok(())
}

impl MlsRules for MemberRules {
    type Error = RulesError;

    fn filter_proposals(
        &self,
        direction: CommitDirection,
        _source: CommitSource,
        roster: &Roster,
        _context: &GroupContext,
        mut proposals: ProposalBundle,
    ) -> Result<ProposalBundle, RulesError> {
        if direction == CommitDirection::Send {
            // Our own commit: leave out what the server proposed but never announced to us (a
            // ghost), and anything the deterministic rules would refuse, so that one bad
            // proposal cannot keep the legitimate ones from being committed.
            let mut leaves = leaves_after_removes(roster, &proposals);
            proposals
                .retain(|info| {
                    let keep = from_server(&info.sender, &info.source)
                        && match &info.proposal {
                            BorrowedProposal::Add(add) => {
                                let id = mls::identity_name(add.signing_identity());
                                let count = leaves.entry(id.clone()).or_default();
                                let keep = add.signing_identity().credential.as_basic().is_some()
                                    && is_canonical_participant_id(&id)
                                    && self.announced.contains(&id)
                                    && *count == 0;
                                if keep {
                                    *count += 1;
                                }
                                keep
                            }
                            BorrowedProposal::Remove(_) => true,
                            _ => false,
                        };
                    if !keep {
                        tracing::warn!(
                            "a proposal the meeting did not announce is left out of the commit"
                        );
                    }
                    Ok::<_, Infallible>(keep)
                })
                .unwrap_or(());
        }
        check_bundle(roster, &proposals)?;
        Ok(proposals)
    }

    fn commit_options(
        &self,
        roster: &Roster,
        context: &GroupContext,
        proposals: &ProposalBundle,
    ) -> Result<CommitOptions, RulesError> {
        let Ok(options) = self.options.commit_options(roster, context, proposals);
        Ok(options)
    }

    fn encryption_options(
        &self,
        roster: &Roster,
        context: &GroupContext,
    ) -> Result<EncryptionOptions, RulesError> {
        let Ok(options) = self.options.encryption_options(roster, context);
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::is_canonical_participant_id;

    #[test]
    fn only_the_servers_spelling_of_a_participant_id_is_canonical() {
        for good in ["0", "1", "42", "18446744073709551615"] {
            assert!(is_canonical_participant_id(good), "{good}");
        }
        for bad in [
            "",
            "01",
            "1.0",
            "+1",
            "-1",
            " 1",
            "1 ",
            "ghost",
            "18446744073709551616",
            "１",
        ] {
            assert!(!is_canonical_participant_id(bad), "{bad:?}");
        }
    }
}
