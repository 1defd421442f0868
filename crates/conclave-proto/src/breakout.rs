//! Breakout rooms on the wire: the host's plan, what moderators are shown,
//! and the ticket that lets one person into one room (or back).
//!
//! A breakout room is a meeting of its own, with its own ID, media router
//! and MLS group; the parent meeting hands each assigned member a ticket for
//! its room and one for coming back, over that member's own socket.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{MeetingId, ParticipantId};

/// Most rooms one meeting may open at once: each is a running meeting with
/// its own router, so the cap bounds what one host can make the server run.
pub const MAX_BREAKOUT_ROOMS: usize = 20;
/// Longest room name, in characters (as a display name).
pub const MAX_ROOM_NAME_CHARS: usize = 64;
/// Longest host broadcast to the rooms, in characters.
pub const MAX_BROADCAST_CHARS: usize = 500;
/// Longest "Close rooms" countdown, in seconds.
pub const MAX_CLOSE_COUNTDOWN_SECS: u32 = 120;

/// One room of a `breakout_open` plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakoutRoomPlan {
    pub name: String,
    /// Members of the parent meeting sent to this room.
    #[serde(default)]
    pub participants: Vec<ParticipantId>,
}

/// One open room, as moderators of the parent meeting see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakoutRoomInfo {
    pub room: MeetingId,
    pub name: String,
    /// Display names of those sent there (who is actually in it is the
    /// room's own business).
    pub assigned: Vec<String>,
}

/// A 128-bit secret that admits one identity to one meeting, skipping the
/// passcode and the waiting room: into a breakout room, or back into the
/// parent meeting from one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakoutTicket(pub [u8; 16]);

impl BreakoutTicket {
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        BreakoutTicket(b)
    }

    pub fn encode(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.0)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let v = data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
        Some(BreakoutTicket(v.try_into().ok()?))
    }
}

impl fmt::Debug for BreakoutTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BreakoutTicket(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_round_trips_and_refuses_other_lengths() {
        let t = BreakoutTicket::generate();
        assert_eq!(BreakoutTicket::decode(&t.encode()), Some(t));
        assert_eq!(BreakoutTicket::decode("abc"), None);
        assert_eq!(BreakoutTicket::decode(""), None);
        assert_ne!(BreakoutTicket::generate(), t);
    }

    #[test]
    fn breakout_open_parses_with_its_flags_false_and_refuses_unknown_fields() {
        use crate::{ClientMessage, ErrorCode, parse_client_message};
        let open = r#"{"type":"breakout_open","rooms":[{"name":"A","participants":[2]}],"auto_assign":false,"allow_return":false}"#;
        assert_eq!(
            parse_client_message(open),
            Ok(ClientMessage::BreakoutOpen {
                rooms: vec![BreakoutRoomPlan {
                    name: "A".into(),
                    participants: vec![ParticipantId(2)],
                }],
                auto_assign: false,
                allow_return: false,
            })
        );
        let extra = r#"{"type":"breakout_open","rooms":[{"name":"A","who":[2]}]}"#;
        assert_eq!(parse_client_message(extra), Err(ErrorCode::BadMessage));
        let close = r#"{"type":"breakout_close"}"#;
        assert_eq!(
            parse_client_message(close),
            Ok(ClientMessage::BreakoutClose { countdown_secs: 0 })
        );
    }
}
