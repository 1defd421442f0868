//! The meeting's MLS group as its delivery service sees it: who should be in
//! it, who is, and which proposals are out for the current epoch.
//!
//! The server never holds a key that opens content. It holds the group's
//! public state (to validate commits and to sign its own proposals as the only
//! external sender) and it decides *when*: it proposes Add for an admitted
//! member's key package and Remove for a member who left, names one member to
//! commit, and forwards the first valid commit of each epoch. Everything is
//! reconciled against the meeting's membership after each input, so a proposal
//! that an epoch change made void is simply proposed again in the next epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use conclave_e2ee::{ChatPayload, DeliveryService, E2eeError};
use conclave_proto::{E2eeSetup, ErrorCode, MAX_MLS_BYTES, ParticipantId, ServerMessage};
use data_encoding::BASE64;

/// How long the member named to commit an epoch's proposals, or asked to
/// create the group, has before the next one is. Clients answer within
/// milliseconds; this is for one that never will (a frozen tab, a client that
/// lost its group state), which would otherwise hold every admission and
/// removal, or the whole meeting's encryption, until it left.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long after the last commit that removed someone, and between two
/// requests, the delivery service waits before it asks a member for an update
/// commit that refills the parents removals blanked. Every such update is an
/// epoch that every member processes (and a new security code), so they come
/// at most twice a second, and not while members are still leaving (a class
/// walking out), whose removals would blank the same parents again.
pub const REFILL_INTERVAL: Duration = Duration::from_millis(500);

/// Where the group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No group yet: the first member with a key package will be asked.
    None,
    /// This member was asked, at this instant, to create the group and send
    /// its GroupInfo.
    Creating(ParticipantId, Instant),
    /// The group exists; the delivery service follows it.
    Live,
}

/// Why a member was asked for an update commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A commit added it and its path holds parents to fill.
    Newcomer,
    /// Removals blanked parents on its path.
    Refill,
}

/// After a commit that removed members, their leaves' direct paths are
/// blank, and every later commit whose copath crosses one encrypts to each
/// leaf below it: commits grow back toward O(n) as members leave. Members
/// whose update would fill the most of those parents are asked, one at a
/// time and [`REFILL_INTERVAL`] apart, until nobody's would.
#[derive(Debug, Default)]
struct Refill {
    /// A commit removed someone since the tree was last found full.
    due: bool,
    /// That commit was accepted in this input: the quiet interval starts now.
    removed_just_now: bool,
    /// No refill request before this.
    not_before: Option<Instant>,
    /// When the meeting must wake for the next request (never in the past:
    /// recomputed at every reconcile).
    wake: Option<Instant>,
    /// Members asked to refill who did not in time (old clients, frozen
    /// tabs): not asked to refill again.
    declined: BTreeSet<ParticipantId>,
}

/// The delivery service's part of one meeting.
pub(crate) struct Group {
    ds: DeliveryService,
    setup: E2eeSetup,
    phase: Phase,
    /// Checked key packages of waiting people and members, by participant.
    key_packages: BTreeMap<ParticipantId, Vec<u8>>,
    /// Adds and removes proposed in the current epoch; cleared by each commit.
    proposed_add: BTreeSet<ParticipantId>,
    proposed_remove: BTreeSet<ParticipantId>,
    /// Members whose leaf belongs to a client state that is gone (a reloaded
    /// page resuming its seat brings a new key package): the old leaf is
    /// removed, then the new key package added.
    stale: BTreeSet<ParticipantId>,
    /// The member named to commit the proposals that are out, and since when.
    asked: Option<(ParticipantId, Instant)>,
    /// Members that were named and did not commit, or create the group, in
    /// time: named again only when nobody else can, until they commit
    /// something.
    passed_over: BTreeSet<ParticipantId>,
    /// Members a commit added who have not committed since: their leaves sit
    /// under blank parents until they do, and every commit encrypts to each of
    /// them one by one. Asked, one at a time when no proposal is out, to make
    /// an update commit.
    needs_update: BTreeSet<ParticipantId>,
    /// The member asked for an update commit, since when, the epoch it was
    /// last asked in, and why.
    updating: Option<(ParticipantId, Instant, u64, Why)>,
    /// Refilling the parents that removals blanked.
    refill: Refill,
    /// Members asked to create a group that was then given to another: the
    /// GroupInfo they may still send is dropped without an error, as their
    /// client then joins the real group by its Welcome.
    creation_withdrawn: BTreeSet<ParticipantId>,
    /// Messages for members, drained by the meeting.
    out: Vec<(ParticipantId, ServerMessage)>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("phase", &self.phase)
            .field("key_packages", &self.key_packages.len())
            .field("proposed_add", &self.proposed_add)
            .field("proposed_remove", &self.proposed_remove)
            .finish_non_exhaustive()
    }
}

/// A group id: random, so a meeting that empties and fills again starts a
/// group nobody's old state belongs to.
fn fresh_group_id() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

fn decode(b64: &str) -> Result<Vec<u8>, ErrorCode> {
    if b64.len() > MAX_MLS_BYTES {
        return Err(ErrorCode::MlsRefused);
    }
    BASE64
        .decode(b64.as_bytes())
        .map_err(|_| ErrorCode::MlsRefused)
}

/// Whether the server relays a chat payload (base64, as the client sent it). Chat must never
/// change the group, so an MLS handshake message is refused (`bad_message`). An application
/// message of another epoch than the group's is refused as `stale_chat`: relayed after the
/// commit that ended its epoch, no member could open it, so its sender encrypts it again.
/// Payloads that are not base64 or no MLS message are left to the members, who refuse them.
pub(crate) fn check_chat(payload: &str, group: Option<&Group>) -> Result<(), ErrorCode> {
    let Ok(bytes) = BASE64.decode(payload.as_bytes()) else {
        return Ok(());
    };
    match DeliveryService::classify_chat(&bytes) {
        ChatPayload::Handshake => Err(ErrorCode::BadMessage),
        ChatPayload::Application { epoch } => match group.and_then(|g| g.ds.epoch()) {
            Some(current) if current != epoch => Err(ErrorCode::StaleChat),
            _ => Ok(()),
        },
        ChatPayload::NotMls => Ok(()),
    }
}

/// The credential of a member is its participant id in decimal.
fn credential(id: ParticipantId) -> String {
    id.0.to_string()
}

fn participant(credential: &str) -> Option<ParticipantId> {
    credential.parse().ok().map(ParticipantId)
}

impl Group {
    pub(crate) fn new() -> Result<Self, E2eeError> {
        let ds = DeliveryService::new()?;
        let setup = E2eeSetup {
            group_id: BASE64.encode(&fresh_group_id()),
            external_sender: BASE64.encode(&ds.external_sender()),
        };
        Ok(Group {
            ds,
            setup,
            phase: Phase::None,
            key_packages: BTreeMap::new(),
            proposed_add: BTreeSet::new(),
            proposed_remove: BTreeSet::new(),
            stale: BTreeSet::new(),
            asked: None,
            passed_over: BTreeSet::new(),
            needs_update: BTreeSet::new(),
            updating: None,
            refill: Refill::default(),
            creation_withdrawn: BTreeSet::new(),
            out: Vec::new(),
        })
    }

    pub(crate) fn setup(&self) -> &E2eeSetup {
        &self.setup
    }

    /// When the member named to commit, or asked to create the group, runs
    /// out of time. A creator already passed over has no deadline: nobody
    /// else could take over, and the next change of membership looks again.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Creating(by, since) if !self.passed_over.contains(&by) => {
                Some(since + COMMIT_TIMEOUT)
            }
            Phase::Creating(..) => None,
            _ => [
                self.asked.map(|(_, since)| since + COMMIT_TIMEOUT),
                self.updating.map(|(_, since, ..)| since + COMMIT_TIMEOUT),
                self.refill.wake,
            ]
            .into_iter()
            .flatten()
            .min(),
        }
    }

    /// Messages for members produced since the last call.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, (ParticipantId, ServerMessage)> {
        self.out.drain(..)
    }

    /// The group's members as the delivery service knows them (empty before
    /// the group exists).
    pub(crate) fn roster(&self) -> BTreeSet<ParticipantId> {
        if self.phase != Phase::Live {
            return BTreeSet::new();
        }
        self.ds
            .roster()
            .iter()
            .filter_map(|c| participant(c))
            .collect()
    }

    /// A waiting person's or member's key package: kept until they are admitted.
    /// A second one from a member in the group means its client lost its MLS
    /// state (a reloaded page took its seat back): the old leaf is replaced.
    pub(crate) fn key_package(&mut self, from: ParticipantId, b64: &str) -> Result<(), ErrorCode> {
        let again = self.key_packages.contains_key(&from);
        if again && !self.roster().contains(&from) {
            return Err(ErrorCode::MlsRefused);
        }
        let bytes = decode(b64)?;
        DeliveryService::check_key_package(&bytes, &credential(from))
            .map_err(|_| ErrorCode::MlsRefused)?;
        self.key_packages.insert(from, bytes);
        if again {
            self.stale.insert(from);
        }
        Ok(())
    }

    /// The creator's GroupInfo: the group exists from now on, with the creator
    /// as its only member.
    pub(crate) fn group_info(&mut self, from: ParticipantId, b64: &str) -> Result<(), ErrorCode> {
        let asked = matches!(self.phase, Phase::Creating(by, _) if by == from);
        // A late answer to a request that went to another member is dropped
        // without an error: its client joins the real group by Welcome. (Its
        // group names the external sender of a group since restarted, so it
        // is never taken, even if its author was asked again.)
        let withdrawn = self.creation_withdrawn.remove(&from);
        let refusal = if withdrawn {
            Ok(())
        } else {
            Err(ErrorCode::MlsRefused)
        };
        if !asked {
            return refusal;
        }
        let bytes = decode(b64)?;
        if self.ds.observe_group(&bytes).is_err() {
            return refusal;
        }
        self.phase = Phase::Live;
        if self.roster() != BTreeSet::from([from]) {
            // A group that starts with anyone else was not made as asked.
            self.restart();
            return Err(ErrorCode::MlsRefused);
        }
        Ok(())
    }

    /// A member's commit: the first valid one of the epoch is forwarded to the
    /// group (its author included, who applies it on receipt) and its Welcome
    /// to the members it adds.
    pub(crate) fn commit(
        &mut self,
        from: ParticipantId,
        commit_b64: &str,
        welcome_b64: Option<&str>,
    ) -> Result<(), ErrorCode> {
        let before = self.roster();
        if !before.contains(&from) {
            return Err(ErrorCode::NotPermitted);
        }
        let commit = decode(commit_b64)?;
        if let Some(w) = welcome_b64 {
            decode(w)?;
        }
        self.ds.accept_commit(&commit).map_err(|e| {
            if e.is_wrong_epoch() {
                ErrorCode::StaleCommit
            } else {
                tracing::info!(participant = %from, error = %e, "commit refused");
                ErrorCode::MlsRefused
            }
        })?;
        self.proposed_add.clear();
        self.proposed_remove.clear();
        self.asked = None;
        self.passed_over.remove(&from);
        // Its path is fresh now.
        self.needs_update.remove(&from);
        if self.updating.is_some_and(|(who, ..)| who == from) {
            self.updating = None;
        }
        let after = self.roster();
        self.needs_update.extend(after.difference(&before));
        if !before.is_subset(&after) {
            self.refill.due = true;
            self.refill.removed_just_now = true;
        }
        let msg = ServerMessage::MlsMessage {
            message: commit_b64.to_string(),
            commit_by: None,
        };
        // A stale leaf's client has no group state to apply it to.
        for id in before.difference(&self.stale) {
            self.out.push((*id, msg.clone()));
        }
        if let Some(welcome) = welcome_b64 {
            // The tree of the epoch just accepted, from the server's own view:
            // nobody uploads it, so nobody can upload a wrong one, and the
            // newcomer checks it against the Welcome all the same.
            let ratchet_tree: std::sync::Arc<str> = match self.ds.ratchet_tree() {
                Ok(tree) => BASE64.encode(&tree).into(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot export the ratchet tree");
                    return Ok(());
                }
            };
            for id in after.difference(&before) {
                self.out.push((
                    *id,
                    ServerMessage::MlsWelcome {
                        welcome: welcome.to_string(),
                        ratchet_tree: ratchet_tree.clone(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// Brings the group toward the meeting's membership: `members` are the
    /// admitted members (dropped ones still inside their resume window
    /// included), `connected` those with a live socket, `waiting` the people
    /// in the waiting room (whose key packages are kept for their admission).
    pub(crate) fn reconcile(
        &mut self,
        members: &BTreeSet<ParticipantId>,
        connected: &BTreeSet<ParticipantId>,
        waiting: &BTreeSet<ParticipantId>,
        now: Instant,
    ) {
        self.key_packages
            .retain(|id, _| members.contains(id) || waiting.contains(id));
        self.creation_withdrawn.retain(|id| members.contains(id));
        let wanted: BTreeSet<ParticipantId> = members
            .iter()
            .filter(|id| self.key_packages.contains_key(id))
            .copied()
            .collect();
        match self.phase {
            Phase::None => self.ask_to_create(&wanted, connected, now),
            Phase::Creating(by, _) if !wanted.contains(&by) || !connected.contains(&by) => {
                if wanted.contains(&by) {
                    // Dropped inside its resume window: it gets the request
                    // again on resume and may answer it, late.
                    self.creation_withdrawn.insert(by);
                }
                self.restart();
                self.ask_to_create(&wanted, connected, now);
            }
            Phase::Creating(by, since) if now >= since + COMMIT_TIMEOUT => {
                self.withdraw_creation(by, &wanted, connected, now);
            }
            Phase::Creating(..) => {}
            Phase::Live => self.propose_changes(&wanted, connected, now),
        }
    }

    /// Asks the longest-present connected member to create the group; one
    /// that let such a request pass comes last.
    fn ask_to_create(
        &mut self,
        wanted: &BTreeSet<ParticipantId>,
        connected: &BTreeSet<ParticipantId>,
        now: Instant,
    ) {
        let able = wanted.iter().copied().filter(|id| connected.contains(id));
        if let Some(first) = self.first_not_passed_over(able) {
            self.phase = Phase::Creating(first, now);
            self.out.push((
                first,
                ServerMessage::MlsCreateGroup {
                    e2ee: self.setup.clone(),
                },
            ));
        }
    }

    /// The first of `able` that did not let a turn pass, or else the first:
    /// one that did is asked again only when nobody else can be.
    fn first_not_passed_over(
        &self,
        able: impl Iterator<Item = ParticipantId> + Clone,
    ) -> Option<ParticipantId> {
        able.clone()
            .find(|id| !self.passed_over.contains(id))
            .or_else(|| able.clone().next())
    }

    /// The member asked to create the group did not in time: another one is
    /// asked, for a group with a new id and external sender, so that a late
    /// GroupInfo for the old request cannot be taken for the new one. With
    /// nobody else to ask, the request stays where it is.
    fn withdraw_creation(
        &mut self,
        by: ParticipantId,
        wanted: &BTreeSet<ParticipantId>,
        connected: &BTreeSet<ParticipantId>,
        now: Instant,
    ) {
        if self.passed_over.insert(by) {
            tracing::info!(participant = %by, "member asked to create the group did not in time");
        }
        let someone_else = wanted
            .iter()
            .any(|id| connected.contains(id) && !self.passed_over.contains(id));
        if !someone_else {
            return;
        }
        self.creation_withdrawn.insert(by);
        self.restart();
        self.ask_to_create(wanted, connected, now);
    }

    fn propose_changes(
        &mut self,
        wanted: &BTreeSet<ParticipantId>,
        connected: &BTreeSet<ParticipantId>,
        now: Instant,
    ) {
        let roster = self.roster();
        if roster.is_disjoint(wanted) {
            // Everyone in the group has gone; nobody is left to commit. Start
            // a new group (new id, new external sender) for those who remain.
            self.restart();
            self.ask_to_create(wanted, connected, now);
            return;
        }
        self.stale.retain(|id| roster.contains(id));
        self.passed_over.retain(|id| roster.contains(id));
        if let Some((asked, since)) = self.asked
            && now >= since + COMMIT_TIMEOUT
        {
            tracing::info!(participant = %asked, "named committer did not commit in time");
            self.passed_over.insert(asked);
            self.asked = None;
        }
        // Here, not only when nothing is out: a deadline left in the past
        // would have the meeting woken again at once, over and over.
        if let Some((who, since, _, why)) = self.updating
            && now >= since + COMMIT_TIMEOUT
        {
            tracing::debug!(participant = %who, ?why, "member did not update in time");
            match why {
                Why::Newcomer => self.needs_update.remove(&who),
                Why::Refill => self.refill.declined.insert(who),
            };
            self.updating = None;
        }
        self.refill.wake = None;
        self.refill.declined.retain(|id| roster.contains(id));
        if std::mem::take(&mut self.refill.removed_just_now) {
            self.refill.not_before = Some(now + REFILL_INTERVAL);
        }
        // The longest-present connected member commits: one committer per
        // epoch keeps commits from racing (a race is still settled by order).
        // One that let its turn pass comes last.
        let able = roster
            .iter()
            .copied()
            .filter(|id| connected.contains(id) && wanted.contains(id) && !self.stale.contains(id));
        let Some(committer) = self.first_not_passed_over(able) else {
            return;
        };
        let mut proposals = Vec::new();
        let leaving: BTreeSet<ParticipantId> = roster
            .difference(wanted)
            .chain(self.stale.iter())
            .copied()
            .collect();
        for id in &leaving {
            if self.proposed_remove.contains(id) {
                continue;
            }
            match self.ds.propose_remove(&credential(*id)) {
                Ok(p) => {
                    self.proposed_remove.insert(*id);
                    proposals.push(p);
                }
                Err(e) => tracing::warn!(participant = %id, error = %e, "cannot propose remove"),
            }
        }
        for id in wanted.difference(&roster) {
            if self.proposed_add.contains(id) {
                continue;
            }
            let Some(kp) = self.key_packages.get(id) else {
                continue;
            };
            match self.ds.propose_add(kp) {
                Ok(p) => {
                    self.proposed_add.insert(*id);
                    proposals.push(p);
                }
                Err(e) => {
                    // A key package the group cannot take (reused, expired):
                    // the member stays outside and every client shows it.
                    tracing::warn!(participant = %id, error = %e, "cannot propose add");
                    self.key_packages.remove(id);
                }
            }
        }
        let named_in_proposals = !proposals.is_empty();
        let count = proposals.len();
        for (i, proposal) in proposals.into_iter().enumerate() {
            // Only the last of the proposals made together names the
            // committer, so that it commits them together: a burst of
            // admissions becomes one commit (and later ones, made while that
            // commit is out, the next), not one commit each.
            let msg = ServerMessage::MlsMessage {
                message: BASE64.encode(&proposal),
                commit_by: (i + 1 == count).then_some(committer),
            };
            // Members inside their resume window too: they get it on resume.
            for id in roster
                .iter()
                .filter(|id| wanted.contains(id) && !self.stale.contains(id))
            {
                self.out.push((*id, msg.clone()));
            }
        }
        if self.proposed_add.is_empty() && self.proposed_remove.is_empty() {
            self.asked = None;
            self.ask_for_update(&roster, connected, now);
            return;
        }
        // Proposals are out: their committer has COMMIT_TIMEOUT from the
        // moment it is named. One named in place of another (who went
        // quiet or lost its socket) already holds them and only needs
        // telling.
        if self.asked.is_none_or(|(asked, _)| asked != committer) {
            self.asked = Some((committer, now));
            if !named_in_proposals {
                self.out.push((committer, ServerMessage::MlsCommitRequest));
            }
        }
    }

    /// With no proposal out, one newcomer at a time makes an update commit,
    /// so that the tree fills and commits stay about O(log n) however the
    /// group grew; only those whose update would fill something
    /// (`conclave_e2ee::tree_fill`). One that does not within `COMMIT_TIMEOUT` (an old client,
    /// a frozen tab) is not asked again (`propose_changes` drops it): it only
    /// costs later commits bytes.
    fn ask_for_update(
        &mut self,
        roster: &BTreeSet<ParticipantId>,
        connected: &BTreeSet<ParticipantId>,
        now: Instant,
    ) {
        self.needs_update.retain(|id| roster.contains(id));
        let epoch = self.ds.epoch().unwrap_or_default();
        if let Some((who, since, asked_in, why)) = self.updating {
            let still = match why {
                Why::Newcomer => self.needs_update.contains(&who),
                Why::Refill => roster.contains(&who),
            };
            if still {
                if asked_in != epoch {
                    // Another commit ended the epoch it was asked in (an
                    // update it sent then is refused as stale): again, with
                    // the same deadline.
                    self.updating = Some((who, since, epoch, why));
                    self.out.push((who, ServerMessage::MlsUpdateRequest));
                }
                return;
            }
            self.updating = None;
        }
        // Only a newcomer whose path still holds a blank or unmerged parent
        // that later commits encrypt to: once one newcomer of a block of
        // leaves has updated, its neighbours' updates would fill nothing,
        // and each would cost every member one more epoch in sequence.
        let ds = &self.ds;
        self.needs_update.retain(|id| {
            ds.update_would_fill(&credential(*id)).unwrap_or_else(|e| {
                tracing::warn!(participant = %id, error = %e, "cannot look at its path");
                false
            })
        });
        let next = self
            .needs_update
            .iter()
            .copied()
            .find(|id| connected.contains(id) && !self.stale.contains(id));
        if let Some(id) = next {
            self.updating = Some((id, now, epoch, Why::Newcomer));
            self.out.push((id, ServerMessage::MlsUpdateRequest));
            return;
        }
        self.ask_to_refill(connected, now, epoch);
    }

    /// With no proposal out and no newcomer updating: after removals, the
    /// member whose update fills the most blanked parents is asked for one
    /// (the same request, deadline and re-asking as a newcomer's), at most
    /// one every [`REFILL_INTERVAL`], until no eligible member's would fill
    /// anything.
    fn ask_to_refill(&mut self, connected: &BTreeSet<ParticipantId>, now: Instant, epoch: u64) {
        if !self.refill.due {
            return;
        }
        if let Some(at) = self.refill.not_before
            && now < at
        {
            self.refill.wake = Some(at);
            return;
        }
        let (refill, stale, passed_over) = (&self.refill, &self.stale, &self.passed_over);
        let eligible = |c: &str| {
            participant(c).is_some_and(|id| {
                connected.contains(&id)
                    && !stale.contains(&id)
                    && !passed_over.contains(&id)
                    && !refill.declined.contains(&id)
            })
        };
        match self.ds.refill_candidate(eligible) {
            Ok(Some(c)) => {
                let Some(id) = participant(&c) else { return };
                tracing::debug!(participant = %id, "asking for an update that refills the tree");
                self.updating = Some((id, now, epoch, Why::Refill));
                self.refill.not_before = Some(now + REFILL_INTERVAL);
                self.out.push((id, ServerMessage::MlsUpdateRequest));
            }
            Ok(None) => self.refill.due = false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look at the tree to refill it");
                self.refill.due = false;
            }
        }
    }

    fn restart(&mut self) {
        match Group::new() {
            Ok(fresh) => {
                // What is known of people, not of the old group, stays.
                *self = Group {
                    key_packages: std::mem::take(&mut self.key_packages),
                    passed_over: std::mem::take(&mut self.passed_over),
                    creation_withdrawn: std::mem::take(&mut self.creation_withdrawn),
                    out: std::mem::take(&mut self.out),
                    ..fresh
                };
            }
            Err(e) => tracing::error!(error = %e, "cannot start a new MLS group"),
        }
    }
}
