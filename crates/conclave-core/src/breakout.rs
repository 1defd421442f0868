//! Breakout plans, checked and completed without any meeting state: the
//! host's rooms and assignments against the members actually present.
//!
//! Everything here is a pure function of its inputs, so the rules (caps,
//! duplicates, who may be sent where, how "Assign automatically" spreads
//! people) are tested with plain values.

use std::collections::BTreeSet;

use conclave_proto::{
    BreakoutRoomPlan, ErrorCode, MAX_NAME_CHARS, ParticipantId,
    breakout::{MAX_BREAKOUT_ROOMS, MAX_BROADCAST_CHARS, MAX_ROOM_NAME_CHARS},
};

/// A member as a plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: ParticipantId,
    /// Hosts and co-hosts stay in the main room unless named in a room.
    pub moderates: bool,
    /// Recorders are never moved: they record the main room.
    pub recorder: bool,
}

/// A checked plan: each room's clean name and the members sent there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub rooms: Vec<(String, Vec<ParticipantId>)>,
}

/// Why a plan is refused; each maps to the error code the host is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("between 1 and {MAX_BREAKOUT_ROOMS} rooms")]
    RoomCount,
    #[error("a room name has 1 to {MAX_ROOM_NAME_CHARS} characters and no control characters")]
    RoomName,
    #[error("no such participant")]
    Unknown,
    #[error("a participant is assigned twice, or is the sender, or a recorder")]
    Assignment,
}

impl PlanError {
    pub fn code(self) -> ErrorCode {
        match self {
            PlanError::Unknown => ErrorCode::UnknownParticipant,
            PlanError::RoomName => ErrorCode::InvalidName,
            PlanError::RoomCount | PlanError::Assignment => ErrorCode::BreakoutRefused,
        }
    }
}

/// Checks `rooms` against the members present (`members`, in join order)
/// and, with `auto_assign`, spreads every member not named and not a
/// moderator or recorder over the rooms, each to the emptiest room (the
/// first of equals), so room sizes differ by at most one among those moved.
/// `sender` (the host opening the rooms) stays in the main room.
pub fn check_plan(
    rooms: &[BreakoutRoomPlan],
    members: &[Candidate],
    sender: ParticipantId,
    auto_assign: bool,
) -> Result<Plan, PlanError> {
    if rooms.is_empty() || rooms.len() > MAX_BREAKOUT_ROOMS {
        return Err(PlanError::RoomCount);
    }
    let mut placed = BTreeSet::new();
    let mut out = Vec::with_capacity(rooms.len());
    for room in rooms {
        let name = clean_text(&room.name, MAX_ROOM_NAME_CHARS.min(MAX_NAME_CHARS))
            .ok_or(PlanError::RoomName)?;
        let mut ids = Vec::with_capacity(room.participants.len());
        for &id in &room.participants {
            let m = members
                .iter()
                .find(|m| m.id == id)
                .ok_or(PlanError::Unknown)?;
            if id == sender || m.recorder || !placed.insert(id) {
                return Err(PlanError::Assignment);
            }
            ids.push(id);
        }
        out.push((name, ids));
    }
    if auto_assign {
        for m in members {
            if m.moderates || m.recorder || m.id == sender || placed.contains(&m.id) {
                continue;
            }
            if let Some((_, ids)) = out.iter_mut().min_by_key(|(_, ids)| ids.len()) {
                ids.push(m.id);
                placed.insert(m.id);
            }
        }
    }
    Ok(Plan { rooms: out })
}

/// A host's broadcast as shown: trimmed, 1 to [`MAX_BROADCAST_CHARS`]
/// characters, no control characters but line breaks.
pub fn clean_broadcast(text: &str) -> Option<String> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.chars().count() <= MAX_BROADCAST_CHARS
        && !text.chars().any(|c| c.is_control() && c != '\n');
    ok.then(|| text.to_string())
}

fn clean_text(s: &str, max: usize) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control);
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> Candidate {
        Candidate {
            id: ParticipantId(id),
            moderates: false,
            recorder: false,
        }
    }

    fn room(name: &str, ids: &[u64]) -> BreakoutRoomPlan {
        BreakoutRoomPlan {
            name: name.into(),
            participants: ids.iter().map(|&i| ParticipantId(i)).collect(),
        }
    }

    const HOST: ParticipantId = ParticipantId(1);

    fn host() -> Candidate {
        Candidate {
            moderates: true,
            ..member(1)
        }
    }

    #[test]
    fn manual_plan_is_kept_as_given_with_names_trimmed() {
        let members = [host(), member(2), member(3)];
        let plan = check_plan(
            &[room(" Room 1 ", &[2]), room("Room 2", &[3])],
            &members,
            HOST,
            false,
        )
        .unwrap();
        assert_eq!(
            plan.rooms,
            vec![
                ("Room 1".to_string(), vec![ParticipantId(2)]),
                ("Room 2".to_string(), vec![ParticipantId(3)]),
            ]
        );
    }

    #[test]
    fn auto_assign_spreads_the_rest_evenly_and_leaves_moderators_and_recorders() {
        let cohost = Candidate {
            moderates: true,
            ..member(7)
        };
        let recorder = Candidate {
            recorder: true,
            ..member(8)
        };
        let members = [
            host(),
            member(2),
            member(3),
            member(4),
            member(5),
            member(6),
            cohost,
            recorder,
        ];
        let plan = check_plan(
            &[room("A", &[5]), room("B", &[]), room("C", &[])],
            &members,
            HOST,
            true,
        )
        .unwrap();
        let sizes: Vec<_> = plan.rooms.iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        let all: BTreeSet<_> = plan.rooms.iter().flat_map(|(_, ids)| ids.clone()).collect();
        let expected: BTreeSet<_> = [2, 3, 4, 5, 6].map(ParticipantId).into();
        assert_eq!(all, expected);
    }

    #[test]
    fn bad_plans_are_refused_with_their_reason() {
        let members = [host(), member(2), member(3)];
        let check = |rooms: &[BreakoutRoomPlan]| check_plan(rooms, &members, HOST, false);
        assert_eq!(check(&[]), Err(PlanError::RoomCount));
        let many: Vec<_> = (0..=MAX_BREAKOUT_ROOMS)
            .map(|i| room(&format!("R{i}"), &[]))
            .collect();
        assert_eq!(check(&many), Err(PlanError::RoomCount));
        assert_eq!(check(&[room("  ", &[])]), Err(PlanError::RoomName));
        assert_eq!(check(&[room("a\u{7}b", &[])]), Err(PlanError::RoomName));
        assert_eq!(
            check(&[room(&"x".repeat(65), &[])]),
            Err(PlanError::RoomName)
        );
        assert_eq!(check(&[room("A", &[99])]), Err(PlanError::Unknown));
        assert_eq!(
            check(&[room("A", &[2]), room("B", &[2])]),
            Err(PlanError::Assignment)
        );
        assert_eq!(check(&[room("A", &[2, 2])]), Err(PlanError::Assignment));
        assert_eq!(check(&[room("A", &[1])]), Err(PlanError::Assignment));
        assert_eq!(PlanError::Unknown.code(), ErrorCode::UnknownParticipant);
        assert_eq!(PlanError::RoomCount.code(), ErrorCode::BreakoutRefused);
    }

    #[test]
    fn hostile_room_names_are_kept_as_text() {
        let members = [host()];
        let plan = check_plan(
            &[room("<img src=x onerror=alert(1)>", &[])],
            &members,
            HOST,
            false,
        )
        .unwrap();
        assert_eq!(plan.rooms[0].0, "<img src=x onerror=alert(1)>");
    }

    #[test]
    fn broadcasts_are_bounded_and_clean() {
        assert_eq!(
            clean_broadcast("  5 minutes left \n"),
            Some("5 minutes left".into())
        );
        assert_eq!(clean_broadcast("two\nlines"), Some("two\nlines".into()));
        assert_eq!(clean_broadcast("   "), None);
        assert_eq!(clean_broadcast("bell\u{7}"), None);
        assert_eq!(clean_broadcast(&"x".repeat(MAX_BROADCAST_CHARS + 1)), None);
        assert!(clean_broadcast(&"x".repeat(MAX_BROADCAST_CHARS)).is_some());
    }
}
