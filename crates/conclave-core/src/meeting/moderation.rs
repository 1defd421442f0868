//! Moderators at work: the permission checks every control goes through
//! (co-hosts may not act on the host), removing and banning, stopping
//! someone's media, renames, roles and host transfer, and the meeting-wide
//! controls: lock, suspension, permissions, ending it.

use conclave_proto::{
    ClientMessage, EndReason, ErrorCode, LeaveReason, MediaKind, ParticipantId, PermissionsPatch,
    Role, ScreenShare, ServerMessage, clean_display_name,
};

use super::{Identity, Meeting, Output, Refusal};

impl Meeting {
    /// A moderator acting on one member (or anyone renaming themselves,
    /// where the meeting allows it).
    pub(super) fn member_control(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        match msg {
            ClientMessage::Remove { participant } => self.remove(me, participant),
            ClientMessage::StopMedia { participant, kind } => {
                self.acts_on(me, participant)?;
                self.stop_media(participant, kind);
                Ok(())
            }
            ClientMessage::MuteAll => self.mute_all(me),
            ClientMessage::AllowPublish {
                participant,
                allowed,
            } => self.allow_publish(me, participant, allowed),
            ClientMessage::Rename { participant, name } => self.rename(me, participant, &name),
            ClientMessage::SetRole { participant, role } => self.set_role(me, participant, role),
            ClientMessage::TransferHost { participant } => self.transfer_host(me, participant),
            // `message` routes no other kind here.
            _ => Err(ErrorCode::BadMessage),
        }
    }

    /// A moderator changing the meeting itself; only the host may end it.
    pub(super) fn meeting_control(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
    ) -> Result<(), Refusal> {
        self.moderator(me)?;
        match msg {
            ClientMessage::SetPermissions { permissions } => self.set_permissions(permissions),
            ClientMessage::Lock => self.set_locked(true),
            ClientMessage::Unlock => self.set_locked(false),
            ClientMessage::SuspendActivities => self.suspend(),
            ClientMessage::ResumeActivities => self.resume_activities(),
            ClientMessage::EndMeeting => {
                if self.role_of(me)? != Role::Host {
                    return Err(ErrorCode::NotPermitted);
                }
                self.end(EndReason::EndedByHost);
            }
            // `message` routes no other kind here.
            _ => return Err(ErrorCode::BadMessage),
        }
        Ok(())
    }

    pub(super) fn role_of(&self, id: ParticipantId) -> Result<Role, Refusal> {
        self.members
            .get(&id)
            .map(|m| m.role)
            .ok_or(ErrorCode::NotJoined)
    }

    pub(super) fn moderator(&self, id: ParticipantId) -> Result<Role, Refusal> {
        let role = self.role_of(id)?;
        if role.moderates() {
            Ok(role)
        } else {
            Err(ErrorCode::NotPermitted)
        }
    }

    /// A moderator acting on a member: co-hosts may not act on the host.
    pub(super) fn acts_on(
        &self,
        me: ParticipantId,
        target: ParticipantId,
    ) -> Result<Role, Refusal> {
        let my_role = self.moderator(me)?;
        let target_role = self
            .role_of(target)
            .map_err(|_| ErrorCode::UnknownParticipant)?;
        if my_role == Role::Cohost && target_role == Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        Ok(target_role)
    }

    fn remove(&mut self, me: ParticipantId, target: ParticipantId) -> Result<(), Refusal> {
        if me == target {
            return Err(ErrorCode::NotPermitted);
        }
        self.moderator(me)?;
        if let Some(w) = self.waiting.remove(&target) {
            self.ban(&w.identity);
            self.seats.remove(&w.conn);
            self.send(w.conn, ServerMessage::Removed);
            self.out.push_back(Output::Close { conn: w.conn });
            self.broadcast_waiting_room();
            return Ok(());
        }
        let target_role = self.acts_on(me, target)?;
        let owner = self
            .members
            .get(&target)
            .is_some_and(|m| m.identity.account == Some(self.config.owner));
        if target_role == Role::Host || owner {
            return Err(ErrorCode::NotPermitted);
        }
        if let Some((identity, conn)) = self
            .members
            .get(&target)
            .map(|m| (m.identity.clone(), m.conn))
        {
            self.ban(&identity);
            if let Some(conn) = conn {
                self.send(conn, ServerMessage::Removed);
            }
        }
        self.depart(target, LeaveReason::Removed);
        Ok(())
    }

    fn ban(&mut self, identity: &Identity) {
        let keys = identity.ban_keys();
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            if !self.bans.contains(k) {
                self.bans.push(k.clone());
            }
        }
        self.out.push_back(Output::Ban(keys));
    }

    fn stop_media(&mut self, id: ParticipantId, kind: MediaKind) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let hold = !m.role.moderates();
        let changed = match kind {
            MediaKind::Audio => {
                m.held_audio |= hold;
                std::mem::replace(&mut m.audio, false)
            }
            MediaKind::Video => {
                m.held_video |= hold;
                std::mem::replace(&mut m.video, false)
            }
            MediaKind::Screen => {
                m.held_screen |= hold;
                std::mem::replace(&mut m.screen, false)
            }
        };
        if changed {
            self.broadcast_participant(id);
        }
    }

    /// The members whom mute-all and suspension act on: everyone but hosts and co-hosts.
    fn non_moderators(&self) -> Vec<ParticipantId> {
        self.members
            .iter()
            .filter(|(_, m)| !m.role.moderates())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops every participant's microphone and holds it; moderators keep theirs.
    fn mute_all(&mut self, me: ParticipantId) -> Result<(), Refusal> {
        self.moderator(me)?;
        let ids = self.non_moderators();
        for id in ids {
            self.stop_media(id, MediaKind::Audio);
        }
        Ok(())
    }

    fn rename(
        &mut self,
        me: ParticipantId,
        target: Option<ParticipantId>,
        name: &str,
    ) -> Result<(), Refusal> {
        let target = target.unwrap_or(me);
        if target == me {
            let role = self.role_of(me)?;
            // Suspension stops every participant activity, a new name included.
            if !role.moderates() && (!self.config.permissions.rename_self || self.suspended) {
                return Err(ErrorCode::NotPermitted);
            }
        } else {
            self.acts_on(me, target)?;
        }
        let name = clean_display_name(name)?;
        if let Some(m) = self.members.get_mut(&target) {
            m.name = name;
        }
        self.broadcast_participant(target);
        Ok(())
    }

    fn set_permissions(&mut self, patch: PermissionsPatch) {
        patch.apply(&mut self.config.permissions);
        self.out
            .push_back(Output::SavePermissions(self.config.permissions));
        self.enforce_screen_policy();
        self.enforce_publish_policy();
        self.broadcast_meeting();
    }

    /// When screen share becomes host-only, participants' shares stop.
    pub(super) fn enforce_screen_policy(&mut self) {
        if self.config.permissions.screen_share == ScreenShare::HostOnly {
            let sharing: Vec<_> = self
                .members
                .iter()
                .filter(|(_, m)| m.screen && !m.role.moderates())
                .map(|(id, _)| *id)
                .collect();
            for id in sharing {
                if let Some(m) = self.members.get_mut(&id) {
                    m.screen = false;
                }
                self.broadcast_participant(id);
            }
        }
    }

    fn set_role(
        &mut self,
        me: ParticipantId,
        target: ParticipantId,
        role: Role,
    ) -> Result<(), Refusal> {
        if self.role_of(me)? != Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        if role == Role::Host {
            return self.transfer_host(me, target);
        }
        if target == me {
            return Err(ErrorCode::NotPermitted);
        }
        let m = self
            .members
            .get_mut(&target)
            .ok_or(ErrorCode::UnknownParticipant)?;
        let was = std::mem::replace(&mut m.role, role);
        if was != role {
            self.role_changed(target, was);
        }
        Ok(())
    }

    fn transfer_host(&mut self, me: ParticipantId, target: ParticipantId) -> Result<(), Refusal> {
        if self.role_of(me)? != Role::Host {
            return Err(ErrorCode::NotPermitted);
        }
        if target == me {
            return Ok(());
        }
        let m = self
            .members
            .get_mut(&target)
            .ok_or(ErrorCode::UnknownParticipant)?;
        let was = std::mem::replace(&mut m.role, Role::Host);
        self.role_changed(target, was);
        if let Some(old) = self.members.get_mut(&me) {
            old.role = Role::Cohost;
        }
        self.role_changed(me, Role::Host);
        Ok(())
    }

    /// Tells everyone, and gives a new moderator the waiting room it now manages.
    fn role_changed(&mut self, id: ParticipantId, was: Role) {
        self.broadcast_participant(id);
        if was.moderates() {
            self.enforce_publish_policy();
        }
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if let (true, Some(conn)) = (m.role.moderates() && !was.moderates(), m.conn) {
            let list = self.waiting_list();
            self.send(conn, ServerMessage::WaitingRoom { waiting: list });
        }
    }

    fn suspend(&mut self) {
        self.suspended = true;
        self.locked = true;
        let ids = self.non_moderators();
        for id in ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if m.audio || m.video || m.screen {
                m.audio = false;
                m.video = false;
                m.screen = false;
                self.broadcast_participant(id);
            }
        }
        self.broadcast_meeting();
    }

    /// Lifting the suspension also lifts every hold a moderator put on
    /// someone's media; the lock stays until a host unlocks.
    fn resume_activities(&mut self) {
        self.suspended = false;
        for m in self.members.values_mut() {
            m.held_audio = false;
            m.held_video = false;
            m.held_screen = false;
        }
        self.broadcast_meeting();
    }

    fn set_locked(&mut self, locked: bool) {
        self.locked = locked;
        self.broadcast_meeting();
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Puts back the lock the meeting had where it ran before (cluster
    /// mode: another node, or this one before a restart), before anyone
    /// joins here, so that a move does not open a locked meeting.
    pub fn restore_lock(&mut self, locked: bool) {
        self.locked = locked;
    }
}
