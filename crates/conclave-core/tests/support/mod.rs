//! The harness every rule suite drives: a [`Room`] feeds the meeting core
//! inputs on a virtual clock and drains everything it outputs, and the
//! functions below read that output. Clients that act on what they are sent
//! (the group suite's MLS members) plug in as [`Clients`].
// One real instant is the origin of the virtual clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use conclave_core::{
    BanKey, ConnId, Identity, Input, MediaCommand, Meeting, MeetingConfig, Output, RESUME_WINDOW,
};
use conclave_proto::{
    ClientMessage, ErrorCode, MeetingState, Participant, ParticipantId, Permissions,
    PermissionsPatch, ResumeToken, Role, ScreenShare, ServerMessage, WaitingParticipant,
};

/// The account that owns the meeting.
pub const OWNER: i64 = 7;
/// The connection the owner joins on in [`Room::hosted`].
pub const HOST: u64 = 1;

// ---------------------------------------------------------------- harness ----

/// What the clients on the other end do with what they are sent. The rule
/// suites mostly need clients that answer nothing ([`Silent`]); the group
/// suite plugs in real MLS members that hand in key packages and commit.
pub trait Clients {
    /// The messages the client on `conn` sends back on receiving `msg`.
    fn react(&mut self, conn: u64, msg: &ServerMessage) -> Vec<ClientMessage>;
}

/// Clients that never answer on their own: each test sends what it means to.
pub struct Silent;

impl Clients for Silent {
    fn react(&mut self, _: u64, _: &ServerMessage) -> Vec<ClientMessage> {
        Vec::new()
    }
}

/// A meeting on a virtual clock, with its clients and a log of everything it
/// ever output.
pub struct Room<C: Clients = Silent> {
    pub meeting: Meeting,
    pub now: Instant,
    pub log: Vec<Output>,
    pub clients: C,
}

pub fn config() -> MeetingConfig {
    MeetingConfig {
        title: "Standup".into(),
        owner: OWNER,
        permissions: Permissions::default(),
        waiting_room: true,
        only_signed_in: false,
        max_participants: 100,
        join_before_host: true,
    }
}

pub fn guest(key: &str) -> Identity {
    Identity {
        account: None,
        guest: Some(key.into()),
        address: None,
    }
}

pub fn account(id: i64, key: &str) -> Identity {
    Identity {
        account: Some(id),
        guest: Some(key.into()),
        address: None,
    }
}

pub fn owner() -> Identity {
    account(OWNER, "owner-laptop")
}

impl Room {
    pub fn new() -> Self {
        Room::with(|_| {})
    }

    pub fn with(change: impl FnOnce(&mut MeetingConfig)) -> Self {
        Room::with_bans(change, Vec::new())
    }

    pub fn with_bans(change: impl FnOnce(&mut MeetingConfig), bans: Vec<BanKey>) -> Self {
        Room::with_clients(Silent, change, bans)
    }

    /// The owner joined on [`HOST`] and is host.
    pub fn hosted() -> Self {
        Room::hosted_with(|_| {})
    }

    pub fn hosted_with(change: impl FnOnce(&mut MeetingConfig)) -> Self {
        Room::with(change).host()
    }
}

impl<C: Clients> Room<C> {
    pub fn with_clients(
        clients: C,
        change: impl FnOnce(&mut MeetingConfig),
        bans: Vec<BanKey>,
    ) -> Self {
        let mut config = config();
        change(&mut config);
        Room {
            meeting: Meeting::new(config, bans),
            now: Instant::now(),
            log: Vec::new(),
            clients,
        }
    }

    /// The owner joins on [`HOST`] and is host.
    pub fn host(mut self) -> Self {
        let out = self.join(HOST, "Ada", owner());
        assert_eq!(joined(&out, HOST).role, Role::Host);
        self
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn input(&mut self, input: Input) -> Vec<Output> {
        self.meeting.handle(input, self.now);
        self.drain()
    }

    /// Everything output since the last drain (also kept in the log), and
    /// what follows from the clients' answers to it, until they answer
    /// nothing more.
    pub fn drain(&mut self) -> Vec<Output> {
        let mut all = Vec::new();
        let mut answers = VecDeque::new();
        loop {
            let out: Vec<Output> = std::iter::from_fn(|| self.meeting.poll_output()).collect();
            self.log.extend(out.iter().cloned());
            for o in &out {
                if let Output::Send { conn, msg } = o {
                    for msg in self.clients.react(conn.0, msg) {
                        answers.push_back(Input::Message { conn: *conn, msg });
                    }
                }
            }
            all.extend(out);
            let Some(answer) = answers.pop_front() else {
                return all;
            };
            self.meeting.handle(answer, self.now);
        }
    }

    pub fn join(&mut self, conn: u64, name: &str, identity: Identity) -> Vec<Output> {
        self.input(Input::Join {
            conn: ConnId(conn),
            name: name.into(),
            recorder: false,
            identity,
            resume_token: ResumeToken::generate(),
        })
    }

    pub fn msg(&mut self, conn: u64, msg: ClientMessage) -> Vec<Output> {
        self.input(Input::Message {
            conn: ConnId(conn),
            msg,
        })
    }

    pub fn disconnect(&mut self, conn: u64) -> Vec<Output> {
        self.input(Input::Disconnected { conn: ConnId(conn) })
    }

    pub fn resume(&mut self, conn: u64, token: ResumeToken) -> Vec<Output> {
        self.resume_after(conn, token, None)
    }

    /// A resume whose client says it took in `mls_received` MLS messages.
    pub fn resume_after(
        &mut self,
        conn: u64,
        token: ResumeToken,
        mls_received: Option<u64>,
    ) -> Vec<Output> {
        self.input(Input::Resume {
            conn: ConnId(conn),
            token,
            next_token: ResumeToken::generate(),
            mls_received,
        })
    }

    pub fn timeout(&mut self) -> Vec<Output> {
        self.input(Input::Timeout)
    }

    /// Every message the meeting ever sent to `conn`.
    pub fn log_to(&self, conn: u64) -> Vec<ServerMessage> {
        sent(&self.log, conn)
    }

    /// The participant id `conn` was last given (by `joined` or `waiting`).
    pub fn id_of(&self, conn: u64) -> ParticipantId {
        self.log_to(conn)
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMessage::Joined { you, .. } | ServerMessage::Waiting { you, .. } => {
                    Some(*you)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("conn {conn} never got an id"))
    }

    /// The resume token from the latest `joined` sent to `conn`.
    pub fn token_of(&self, conn: u64) -> ResumeToken {
        let token = self
            .log_to(conn)
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMessage::Joined { resume_token, .. } => Some(resume_token.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("conn {conn} never joined"));
        ResumeToken::decode(&token).expect("a well-formed resume token")
    }

    /// A guest (key `g<conn>`) enters the waiting room.
    pub fn wait(&mut self, conn: u64, name: &str) -> ParticipantId {
        self.wait_as(conn, name, guest(&format!("g{conn}")))
    }

    pub fn wait_as(&mut self, conn: u64, name: &str, identity: Identity) -> ParticipantId {
        let out = self.join(conn, name, identity);
        match sent(&out, conn).as_slice() {
            [ServerMessage::Waiting { you, .. }] => *you,
            other => panic!("conn {conn} expected to wait, got {other:?}"),
        }
    }

    /// A guest waits and the host admits them.
    pub fn admit(&mut self, conn: u64, name: &str) -> ParticipantId {
        self.admit_as(conn, name, guest(&format!("g{conn}")))
    }

    pub fn admit_as(&mut self, conn: u64, name: &str, identity: Identity) -> ParticipantId {
        let id = self.wait_as(conn, name, identity);
        let out = self.msg(HOST, ClientMessage::Admit { participant: id });
        let j = joined(&out, conn);
        assert_eq!(j.you, id);
        id
    }

    pub fn set_role(&mut self, id: ParticipantId, role: Role) {
        let out = self.msg(
            HOST,
            ClientMessage::SetRole {
                participant: id,
                role,
            },
        );
        assert!(errors(&out, HOST).is_empty(), "{out:?}");
    }

    pub fn permissions(&mut self, patch: PermissionsPatch) -> Vec<Output> {
        let out = self.msg(HOST, ClientMessage::SetPermissions { permissions: patch });
        assert!(errors(&out, HOST).is_empty(), "{out:?}");
        out
    }

    pub fn media(&mut self, conn: u64, audio: Option<bool>, video: Option<bool>) -> Vec<Output> {
        self.msg(
            conn,
            ClientMessage::SetMedia {
                audio,
                video,
                screen: None,
            },
        )
    }

    pub fn screen(&mut self, conn: u64, on: bool) -> Vec<Output> {
        self.msg(
            conn,
            ClientMessage::SetMedia {
                audio: None,
                video: None,
                screen: Some(on),
            },
        )
    }
}

// ----------------------------------------------------- reading the output ----

/// The messages sent to `conn`, in order.
pub fn sent(out: &[Output], conn: u64) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, msg } if *c == ConnId(conn) => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// The error codes sent to `conn`, in order.
pub fn errors(out: &[Output], conn: u64) -> Vec<ErrorCode> {
    sent(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

/// The first error sent to `conn`, if any.
pub fn error_of(out: &[Output], conn: u64) -> Option<ErrorCode> {
    errors(out, conn).into_iter().next()
}

/// The whole output is one error to the sender: refused, nothing changed.
#[track_caller]
pub fn assert_refused(out: &[Output], conn: u64, code: ErrorCode) {
    assert_eq!(
        out,
        [Output::Send {
            conn: ConnId(conn),
            msg: ServerMessage::error(code),
        }],
        "expected only {code:?} to conn {conn}"
    );
}

/// The whole output is an error to `conn` followed by closing it.
#[track_caller]
pub fn assert_turned_away(out: &[Output], conn: u64, code: ErrorCode) {
    assert_eq!(
        out,
        [
            Output::Send {
                conn: ConnId(conn),
                msg: ServerMessage::error(code),
            },
            Output::Close { conn: ConnId(conn) },
        ],
        "expected {code:?} and a close for conn {conn}"
    );
}

pub fn position(out: &[Output], wanted: impl Fn(&Output) -> bool) -> Option<usize> {
    out.iter().position(wanted)
}

pub fn closes(out: &[Output], conn: u64) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)))
}

/// The latest view of `id` sent to `conn` in a `participant_updated`.
pub fn update_of(out: &[Output], conn: u64, id: ParticipantId) -> Option<Participant> {
    sent(out, conn).into_iter().rev().find_map(|m| match m {
        ServerMessage::ParticipantUpdated { participant } if participant.id == id => {
            Some(participant)
        }
        _ => None,
    })
}

/// Participants any `participant_updated` in `out` is about.
pub fn updated_ids(out: &[Output]) -> Vec<ParticipantId> {
    let mut ids: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                msg: ServerMessage::ParticipantUpdated { participant },
                ..
            } => Some(participant.id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

pub fn meeting_update(out: &[Output], conn: u64) -> Option<MeetingState> {
    sent(out, conn).into_iter().rev().find_map(|m| match m {
        ServerMessage::MeetingUpdated { meeting } => Some(meeting),
        _ => None,
    })
}

pub fn waiting_rooms(out: &[Output], conn: u64) -> Vec<Vec<WaitingParticipant>> {
    sent(out, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::WaitingRoom { waiting } => Some(waiting),
            _ => None,
        })
        .collect()
}

pub fn bans(out: &[Output]) -> Vec<Vec<BanKey>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Ban(keys) => Some(keys.clone()),
            _ => None,
        })
        .collect()
}

pub fn media(out: &[Output]) -> Vec<MediaCommand> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub fn allowed(out: &[Output], id: ParticipantId) -> Option<(bool, bool, bool)> {
    media(out).into_iter().rev().find_map(|c| match c {
        MediaCommand::Allow {
            participant,
            audio,
            video,
            screen,
        } if participant == id => Some((audio, video, screen)),
        _ => None,
    })
}

/// A `joined` message, unpacked.
pub struct Joined {
    pub you: ParticipantId,
    pub role: Role,
    pub token: String,
    pub meeting: MeetingState,
    pub participants: Vec<Participant>,
    pub waiting: Vec<WaitingParticipant>,
}

#[track_caller]
pub fn joined(out: &[Output], conn: u64) -> Joined {
    sent(out, conn)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Joined {
                you,
                role,
                resume_token,
                resume_window,
                meeting,
                participants,
                waiting,
                e2ee,
                ice_servers,
            } => {
                assert_eq!(resume_window, RESUME_WINDOW.as_secs());
                // Relay credentials need the operator's secret and the wall
                // clock: the server's shell adds them, never the core.
                assert!(ice_servers.is_empty());
                assert!(e2ee.is_some(), "every member learns the group's setup");
                Some(Joined {
                    you,
                    role,
                    token: resume_token,
                    meeting,
                    participants,
                    waiting,
                })
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no joined to conn {conn} in {out:?}"))
}

pub fn chat(payload: &str) -> ClientMessage {
    ClientMessage::Chat {
        payload: payload.into(),
    }
}

pub fn screen_share(s: ScreenShare) -> PermissionsPatch {
    PermissionsPatch {
        screen_share: Some(s),
        ..PermissionsPatch::default()
    }
}
