//! View-only attendees. While the meeting's `publish` permission is
//! `allowed`, a participant publishes nothing (no microphone, camera or
//! screen) until a moderator allows them; hosts and co-hosts always may.
//!
//! The rule is enforced here and not only in clients: `may_send` refuses a
//! view-only member's `set_media` and screen offer, and what the router may
//! forward of a member follows its media state (`broadcast_participant`), so
//! a modified client that sends RTP anyway has every packet dropped.

use conclave_proto::{ErrorCode, ParticipantId, Publishing};

use super::{Meeting, Member, Refusal};

impl Member {
    /// Whether this member may publish anything at all under `publish`.
    pub(super) fn may_publish(&self, publish: Publishing) -> bool {
        self.role.moderates() || publish == Publishing::Everyone || self.publish_allowed
    }
}

impl Meeting {
    /// "Allow to speak" (`allowed`) or "Stop" for one participant.
    pub(super) fn allow_publish(
        &mut self,
        me: ParticipantId,
        target: ParticipantId,
        allowed: bool,
    ) -> Result<(), Refusal> {
        self.acts_on(me, target)?;
        let m = self
            .members
            .get_mut(&target)
            .ok_or(ErrorCode::UnknownParticipant)?;
        if m.publish_allowed == allowed {
            return Ok(());
        }
        m.publish_allowed = allowed;
        // One update either way: a "Stop" that silences tells it with the media off.
        if !allowed && (m.audio || m.video || m.screen) {
            self.enforce_publish_policy();
        } else {
            self.broadcast_participant(target);
        }
        Ok(())
    }

    /// Stops the media of every member who may no longer publish (the
    /// permission changed, an allowance was taken back, a role was lowered).
    pub(super) fn enforce_publish_policy(&mut self) {
        let publish = self.config.permissions.publish;
        let silenced: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| !m.may_publish(publish) && (m.audio || m.video || m.screen))
            .map(|(id, _)| *id)
            .collect();
        for id in silenced {
            if let Some(m) = self.members.get_mut(&id) {
                m.audio = false;
                m.video = false;
                m.screen = false;
            }
            self.broadcast_participant(id);
        }
    }
}
