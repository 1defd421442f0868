//! Breakout rooms, both ends: a meeting that opens rooms (the parent) and
//! a meeting that is one (a room).
//!
//! Each room is a meeting of its own, with its own ID, router and MLS
//! group, so that keys and media never cross between rooms: the parent
//! only asks the shell to start it ([`BreakoutOutput::Open`]) and passes it
//! notes ([`RoomNote`]). Who may enter is decided by tickets the parent
//! draws: one per assigned member for its room, handed to the room before
//! the member hears of it, and one for coming back to the parent, which
//! skips the passcode and the waiting room only while returning is allowed
//! or the rooms close. A ticket is bound to the identity it was drawn for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use conclave_proto::{
    BreakoutRoomInfo, BreakoutTicket, ClientMessage, EndReason, ErrorCode, MeetingId,
    ParticipantId, Role, ServerMessage, breakout::MAX_CLOSE_COUNTDOWN_SECS, clean_display_name,
};

use super::{BanKey, ConnId, Identity, Meeting, MeetingConfig, Output, Refusal, Waiter};
use crate::breakout::{Candidate, check_plan, clean_broadcast};

/// How long after the rooms close their members' return tickets still
/// admit them to the parent: long enough for a slow page to come back.
pub const RETURN_GRACE: Duration = Duration::from_secs(120);

/// Rooms left open this long close as if a host had closed them: rooms
/// nobody closes (the host gone for good) must not run forever.
pub const MAX_ROOMS_OPEN: Duration = Duration::from_secs(12 * 3600);

/// What a parent meeting asks of the shell for its rooms, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum BreakoutOutput {
    /// Start (when first needed) `room` as a breakout room of this meeting.
    Open {
        room: MeetingId,
        config: MeetingConfig,
        bans: Vec<BanKey>,
    },
    /// Hand `note` to the running room `room`.
    Note { room: MeetingId, note: RoomNote },
    /// The room is closed: forget it.
    Forget { room: MeetingId },
}

/// From a parent meeting to one of its rooms.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomNote {
    /// Let `identity` in with `ticket`.
    Admit {
        ticket: BreakoutTicket,
        identity: Identity,
    },
    Broadcast {
        from: String,
        text: String,
    },
    Closing {
        seconds: u32,
    },
    /// The rooms are closed: end this one.
    Close,
}

/// A ticket's holder.
#[derive(Debug, Clone)]
struct Pass {
    identity: Identity,
    /// A return ticket that works while the rooms are open whatever the
    /// plan says: a moderator's, back from a visit.
    anytime: bool,
}

impl Pass {
    /// The same signed-in account, or the same server-minted guest identity.
    fn admits(&self, who: &Identity) -> bool {
        let account = self.identity.account.is_some() && self.identity.account == who.account;
        let guest = self.identity.guest.is_some() && self.identity.guest == who.guest;
        account || guest
    }
}

#[derive(Debug)]
struct OpenRoom {
    id: MeetingId,
    name: String,
    assigned: Vec<String>,
}

#[derive(Debug)]
struct Opened {
    rooms: Vec<OpenRoom>,
    allow_return: bool,
    closing_at: Option<Instant>,
    /// When they close at the latest ([`MAX_ROOMS_OPEN`]).
    closes_by: Instant,
}

/// A meeting's breakout state.
#[derive(Debug, Default)]
pub(super) struct Breakouts {
    /// This meeting is a breakout room: it opens none and lives until closed.
    room: bool,
    closed: bool,
    /// As a room: tickets that admit here.
    admits: HashMap<BreakoutTicket, Pass>,
    /// As a parent: the open rooms.
    opened: Option<Opened>,
    /// As a parent: tickets back here, and until when after a close.
    returns: HashMap<BreakoutTicket, Pass>,
    returns_until: Option<Instant>,
}

impl Breakouts {
    /// A room runs until the parent closes it, even while empty; a parent
    /// runs while its rooms are open, so that someone can close them.
    pub(super) fn keeps_alive(&self) -> bool {
        (self.room && !self.closed) || self.opened.is_some()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let closing = self
            .opened
            .as_ref()
            .map(|o| o.closing_at.map_or(o.closes_by, |t| t.min(o.closes_by)));
        closing.into_iter().chain(self.returns_until).min()
    }
}

impl Meeting {
    /// A meeting that is a breakout room of another.
    pub fn new_breakout_room(config: MeetingConfig, bans: Vec<BanKey>) -> Self {
        let mut m = Meeting::new(config, bans);
        m.breakout.room = true;
        m
    }

    /// Whether this meeting is a breakout room.
    pub fn is_breakout_room(&self) -> bool {
        self.breakout.room
    }

    /// A `breakout_join`: admitted by a ticket this meeting holds, for the
    /// identity it was drawn for, past bans and the size cap; or refused
    /// (`breakout_refused`) and closed, as an unknown passcode is.
    pub(super) fn breakout_join(
        &mut self,
        conn: ConnId,
        name: String,
        identity: Identity,
        token: conclave_proto::ResumeToken,
        ticket: BreakoutTicket,
        now: Instant,
    ) {
        if self.seats.contains_key(&conn) {
            self.send(conn, ServerMessage::error(ErrorCode::AlreadyJoined));
            return;
        }
        if let Err(code) = self.ticket_admits(&ticket, &identity, now) {
            self.refuse(conn, code);
            return;
        }
        let is_owner = identity.account == Some(self.config.owner);
        let banned = identity
            .ban_keys()
            .iter()
            .any(|k| !matches!(k, BanKey::Address(_)) && self.bans.contains(k));
        if banned && !is_owner {
            self.refuse(conn, ErrorCode::Banned);
            return;
        }
        if self.members.len() >= self.config.max_participants as usize {
            self.refuse(conn, ErrorCode::Full);
            return;
        }
        let name = match clean_display_name(&name) {
            Ok(n) => n,
            Err(code) => {
                self.refuse(conn, code);
                return;
            }
        };
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let has_host = self.members.values().any(|m| m.role == Role::Host);
        let role = match (is_owner, has_host) {
            (true, false) => Role::Host,
            (true, true) => Role::Cohost,
            (false, _) => Role::Participant,
        };
        let waiter = Waiter {
            conn,
            name,
            recording: false,
            identity,
            resume_token: token,
            same_network_as_removed: false,
            for_host: false,
        };
        self.seat(id, waiter, role);
        // A moderator back from a visit is shown the rooms again.
        if role.moderates() && self.breakout.opened.is_some() {
            self.tell_rooms(now);
        }
    }

    fn ticket_admits(
        &self,
        ticket: &BreakoutTicket,
        who: &Identity,
        now: Instant,
    ) -> Result<(), Refusal> {
        let b = &self.breakout;
        let pass = if b.room {
            b.admits.get(ticket).filter(|_| !b.closed)
        } else {
            let may_return = match &b.opened {
                Some(o) => o.allow_return || o.closing_at.is_some(),
                None => b.returns_until.is_some_and(|t| now < t),
            };
            b.returns.get(ticket).filter(|p| may_return || p.anytime)
        };
        match pass {
            Some(p) if p.admits(who) => Ok(()),
            _ => Err(ErrorCode::BreakoutRefused),
        }
    }

    /// A note from the parent meeting (to a room only).
    pub(super) fn room_note(&mut self, note: RoomNote) {
        if !self.breakout.room || self.breakout.closed {
            return;
        }
        match note {
            RoomNote::Admit { ticket, identity } => {
                self.breakout.admits.insert(
                    ticket,
                    Pass {
                        identity,
                        anytime: false,
                    },
                );
            }
            RoomNote::Broadcast { from, text } => {
                self.broadcast(&ServerMessage::BreakoutBroadcast { from, text });
            }
            RoomNote::Closing { seconds } => {
                self.broadcast(&ServerMessage::BreakoutClosing { seconds });
            }
            RoomNote::Close => {
                self.breakout.closed = true;
                self.breakout.admits.clear();
                self.end(EndReason::BreakoutClosed);
            }
        }
    }

    /// `breakout_*` from a member: hosts and co-hosts of a meeting that is
    /// not itself a room.
    pub(super) fn breakout_message(
        &mut self,
        me: ParticipantId,
        msg: ClientMessage,
        now: Instant,
    ) -> Result<(), Refusal> {
        let moderates = self.members.get(&me).is_some_and(|m| m.role.moderates());
        if !moderates || self.breakout.room {
            return Err(ErrorCode::NotPermitted);
        }
        match msg {
            ClientMessage::BreakoutOpen {
                rooms,
                auto_assign,
                allow_return,
            } => self.open_rooms(me, &rooms, auto_assign, allow_return, now),
            ClientMessage::BreakoutBroadcast { text } => {
                let text = clean_broadcast(&text).ok_or(ErrorCode::BreakoutRefused)?;
                let opened = self.breakout.opened.as_ref();
                let rooms: Vec<_> = opened
                    .ok_or(ErrorCode::BreakoutRefused)?
                    .rooms
                    .iter()
                    .map(|r| r.id)
                    .collect();
                let from = self
                    .members
                    .get(&me)
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                for room in rooms {
                    let note = RoomNote::Broadcast {
                        from: from.clone(),
                        text: text.clone(),
                    };
                    self.out
                        .push_back(Output::Breakout(BreakoutOutput::Note { room, note }));
                }
                self.broadcast(&ServerMessage::BreakoutBroadcast { from, text });
                Ok(())
            }
            ClientMessage::BreakoutVisit { room } => self.visit(me, room),
            ClientMessage::BreakoutClose { countdown_secs } => {
                if countdown_secs > MAX_CLOSE_COUNTDOWN_SECS {
                    return Err(ErrorCode::BreakoutRefused);
                }
                let Some(opened) = self.breakout.opened.as_mut() else {
                    return Err(ErrorCode::BreakoutRefused);
                };
                if countdown_secs == 0 {
                    self.close_rooms(now);
                    return Ok(());
                }
                opened.closing_at = Some(now + Duration::from_secs(countdown_secs.into()));
                let rooms: Vec<_> = opened.rooms.iter().map(|r| r.id).collect();
                for room in rooms {
                    let note = RoomNote::Closing {
                        seconds: countdown_secs,
                    };
                    self.out
                        .push_back(Output::Breakout(BreakoutOutput::Note { room, note }));
                }
                self.broadcast(&ServerMessage::BreakoutClosing {
                    seconds: countdown_secs,
                });
                self.tell_rooms(now);
                Ok(())
            }
            _ => Err(ErrorCode::BadMessage),
        }
    }

    fn open_rooms(
        &mut self,
        me: ParticipantId,
        plan: &[conclave_proto::BreakoutRoomPlan],
        auto_assign: bool,
        allow_return: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.breakout.opened.is_some() {
            return Err(ErrorCode::BreakoutRefused);
        }
        let candidates: Vec<_> = self
            .members
            .iter()
            .filter(|(_, m)| m.conn.is_some())
            .map(|(&id, m)| Candidate {
                id,
                moderates: m.role.moderates(),
                recorder: m.recording,
            })
            .collect();
        let plan = check_plan(plan, &candidates, me, auto_assign).map_err(|e| e.code())?;
        // A fresh grace starts with these rooms; older return tickets go.
        self.breakout.returns.clear();
        self.breakout.returns_until = None;
        let mut rooms = Vec::with_capacity(plan.rooms.len());
        for (name, ids) in plan.rooms {
            let id = MeetingId::generate();
            let config = MeetingConfig {
                title: format!("{} · {name}", self.config.title),
                waiting_room: false,
                only_signed_in: false,
                join_before_host: true,
                ..self.config.clone()
            };
            let bans = self.bans.clone();
            self.out.push_back(Output::Breakout(BreakoutOutput::Open {
                room: id,
                config,
                bans,
            }));
            let mut assigned = Vec::with_capacity(ids.len());
            for participant in ids {
                if let Some(name) = self.members.get(&participant).map(|m| m.name.clone()) {
                    assigned.push(name);
                }
                self.send_to_room(participant, id, &name, allow_return);
            }
            rooms.push(OpenRoom { id, name, assigned });
        }
        self.breakout.opened = Some(Opened {
            rooms,
            allow_return,
            closing_at: None,
            closes_by: now + MAX_ROOMS_OPEN,
        });
        self.tell_rooms(now);
        Ok(())
    }

    /// Draws `participant`'s tickets, gives the room its admission first,
    /// then tells the member where to go.
    fn send_to_room(
        &mut self,
        participant: ParticipantId,
        room: MeetingId,
        name: &str,
        allow_return: bool,
    ) {
        let Some(identity) = self.members.get(&participant).map(|m| m.identity.clone()) else {
            return;
        };
        let (ticket, back) = (BreakoutTicket::generate(), BreakoutTicket::generate());
        let note = RoomNote::Admit {
            ticket,
            identity: identity.clone(),
        };
        self.out
            .push_back(Output::Breakout(BreakoutOutput::Note { room, note }));
        let anytime = allow_return;
        self.breakout
            .returns
            .insert(back, Pass { identity, anytime });
        self.send_to_member(
            participant,
            ServerMessage::BreakoutMove {
                room,
                name: name.to_string(),
                ticket: ticket.encode(),
                return_ticket: back.encode(),
                allow_return,
            },
        );
    }

    fn visit(&mut self, me: ParticipantId, room: MeetingId) -> Result<(), Refusal> {
        let name = self
            .breakout
            .opened
            .as_ref()
            .and_then(|o| o.rooms.iter().find(|r| r.id == room))
            .map(|r| r.name.clone())
            .ok_or(ErrorCode::BreakoutRefused)?;
        // A moderator may always come back from a visit.
        self.send_to_room(me, room, &name, true);
        Ok(())
    }

    fn close_rooms(&mut self, now: Instant) {
        let Some(opened) = self.breakout.opened.take() else {
            return;
        };
        for r in opened.rooms {
            let room = r.id;
            self.out.push_back(Output::Breakout(BreakoutOutput::Note {
                room,
                note: RoomNote::Close,
            }));
            self.out
                .push_back(Output::Breakout(BreakoutOutput::Forget { room }));
        }
        self.breakout.returns_until = Some(now + RETURN_GRACE);
        self.tell_rooms(now);
    }

    /// Runs the close countdown and the return grace.
    pub(super) fn breakout_timeout(&mut self, now: Instant) {
        let due = self
            .breakout
            .opened
            .as_ref()
            .is_some_and(|o| o.closes_by <= now || o.closing_at.is_some_and(|t| t <= now));
        if due {
            self.close_rooms(now);
        }
        if self.breakout.opened.is_none() && self.breakout.returns_until.is_some_and(|t| t <= now) {
            self.breakout.returns.clear();
            self.breakout.returns_until = None;
        }
    }

    /// The parent ends: its rooms end with it.
    pub(super) fn end_rooms(&mut self) {
        if let Some(opened) = self.breakout.opened.take() {
            for r in opened.rooms {
                let room = r.id;
                self.out.push_back(Output::Breakout(BreakoutOutput::Note {
                    room,
                    note: RoomNote::Close,
                }));
                self.out
                    .push_back(Output::Breakout(BreakoutOutput::Forget { room }));
            }
        }
        self.breakout.returns.clear();
        self.breakout.returns_until = None;
    }

    fn tell_rooms(&mut self, now: Instant) {
        let msg = match &self.breakout.opened {
            Some(o) => ServerMessage::BreakoutRooms {
                rooms: o
                    .rooms
                    .iter()
                    .map(|r| BreakoutRoomInfo {
                        room: r.id,
                        name: r.name.clone(),
                        assigned: r.assigned.clone(),
                    })
                    .collect(),
                allow_return: o.allow_return,
                closing_in: o.closing_at.map(|t| {
                    u32::try_from(t.saturating_duration_since(now).as_secs().max(1))
                        .unwrap_or(u32::MAX)
                }),
            },
            None => ServerMessage::BreakoutRooms {
                rooms: Vec::new(),
                allow_return: false,
                closing_in: None,
            },
        };
        self.send_to_moderators(&msg);
    }
}
