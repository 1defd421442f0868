//! Hands, reactions and polls: MLS application messages like chat, on their
//! own relay (`app`) so that a host turning chat off does not also take away
//! raising a hand. The server reads none of them; it bounds their size and
//! rate and lets only seated members send them.

use std::time::Instant;

use conclave_proto::{
    APP_BURST, APP_PER_SEC, ErrorCode, MAX_APP_BYTES, ParticipantId, ServerMessage,
};

use super::{Meeting, Refusal};
use crate::rate::TokenBucket;

impl Meeting {
    /// Relays one `app` payload to every member. Suspension stops it for
    /// participants (as it stops everything they do); chat off does not.
    /// The bucket lives with the seat, so a resume does not refill it.
    pub(super) fn app(
        &mut self,
        me: ParticipantId,
        payload: String,
        now: Instant,
    ) -> Result<(), Refusal> {
        let role = self.role_of(me)?;
        if !role.moderates() && self.suspended {
            return Err(ErrorCode::NotPermitted);
        }
        if payload.len() > MAX_APP_BYTES {
            return Err(ErrorCode::TooLarge);
        }
        let member = self.members.get_mut(&me).ok_or(ErrorCode::NotJoined)?;
        let bucket = member
            .app_bucket
            .get_or_insert_with(|| TokenBucket::new(APP_BURST, APP_PER_SEC, now));
        if !bucket.try_take(now) {
            return Err(ErrorCode::Flood);
        }
        if let Err(code) = crate::group::check_chat(&payload, self.group.as_ref()) {
            if code == ErrorCode::BadMessage {
                tracing::warn!(participant = %me, "an MLS handshake message sent as app refused");
            }
            return Err(code);
        }
        let bytes = payload.len();
        self.relay_sealed(ServerMessage::App { from: me, payload }, bytes);
        Ok(())
    }
}
