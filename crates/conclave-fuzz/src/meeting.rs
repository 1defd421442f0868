//! Scripts of client frames from four connections, read as the signaling shell reads them and
//! fed to the meeting core ([`conclave_core::Meeting`]).
//!
//! Each line is one frame: its first byte picks the connection (byte mod 4: the owner, two
//! guests, a signed-in account), the rest is the text frame. An empty frame drops that
//! connection's socket; the next frame on it comes from a new connection. Every line moves the
//! virtual clock on 250 ms, and due timers fire.
//!
//! Checked on every output: nothing panics, every message sent survives its own JSON round
//! trip, and a connection in the waiting room gets only its own status (`waiting`, `error`,
//! then one of `joined`, `denied`, `removed`, `ended`), the isolation docs/security.md §7
//! promises.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use conclave_core::{ConnId, Identity, Input, Meeting, MeetingConfig, Output};
use conclave_proto::{
    ClientMessage, Permissions, ResumeToken, ServerMessage, parse_client_message,
};

const OWNER: i64 = 7;
const STEP: Duration = Duration::from_millis(250);
/// A script longer than this is cut: the core's cost per message is what is under test.
const MAX_LINES: usize = 200;

struct Conn {
    id: ConnId,
    identity: Identity,
    /// Handed to the room (joined or waiting): its frames go to the core.
    in_room: bool,
}

struct Script {
    meeting: Meeting,
    now: Instant,
    conns: Vec<Conn>,
    next_conn: u64,
    waiting: HashSet<ConnId>,
    closed: HashSet<ConnId>,
}

fn identity(slot: usize) -> Identity {
    let (account, guest) = match slot {
        0 => (Some(OWNER), "owner-laptop"),
        1 => (None, "guest-a"),
        2 => (None, "guest-b"),
        _ => (Some(9), "account-9"),
    };
    Identity {
        account,
        guest: Some(guest.into()),
        ..Identity::default()
    }
}

impl Script {
    fn new() -> Script {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let config = MeetingConfig {
            title: "Fuzz".into(),
            owner: OWNER,
            permissions: Permissions::default(),
            waiting_room: true,
            only_signed_in: false,
            max_participants: 10,
            join_before_host: true,
        };
        Script {
            meeting: Meeting::new(config, Vec::new()),
            now,
            conns: (0..4)
                .map(|slot| Conn {
                    id: ConnId(slot as u64 + 1),
                    identity: identity(slot),
                    in_room: false,
                })
                .collect(),
            next_conn: 5,
            waiting: HashSet::new(),
            closed: HashSet::new(),
        }
    }

    fn line(&mut self, slot: usize, frame: &str) {
        self.now += STEP;
        if self.meeting.poll_timeout().is_some_and(|t| t <= self.now) {
            self.input(Input::Timeout);
        }
        let conn = &self.conns[slot];
        let id = conn.id;
        if frame.is_empty() {
            if conn.in_room {
                self.input(Input::Disconnected { conn: id });
            }
            self.reconnect(slot);
            return;
        }
        // The shell's answer to a frame that does not parse is its own; the core never sees it.
        let Ok(msg) = parse_client_message(frame) else {
            return;
        };
        if conn.in_room {
            self.input(Input::Message { conn: id, msg });
            return;
        }
        match msg {
            // The shell checked the passcode (or ownership) before this.
            ClientMessage::Join { name, recorder, .. } => {
                let identity = conn.identity.clone();
                self.conns[slot].in_room = true;
                self.input(Input::Join {
                    conn: id,
                    name,
                    recorder,
                    identity,
                    resume_token: ResumeToken::generate(),
                });
            }
            ClientMessage::Resume {
                token,
                mls_received,
            } => {
                if let Some(token) = ResumeToken::decode(&token) {
                    self.conns[slot].in_room = true;
                    self.input(Input::Resume {
                        conn: id,
                        token,
                        next_token: ResumeToken::generate(),
                        mls_received,
                    });
                }
            }
            // Answered `not_joined` by the shell.
            _ => {}
        }
    }

    fn reconnect(&mut self, slot: usize) {
        self.conns[slot].id = ConnId(self.next_conn);
        self.conns[slot].in_room = false;
        self.next_conn += 1;
    }

    fn input(&mut self, input: Input) {
        self.meeting.handle(input, self.now);
        while let Some(out) = self.meeting.poll_output() {
            self.check(out);
        }
        // A connection the core closed is gone; its slot reconnects on its next frame.
        for slot in 0..self.conns.len() {
            if self.closed.contains(&self.conns[slot].id) {
                self.reconnect(slot);
            }
        }
    }

    fn check(&mut self, out: Output) {
        match out {
            Output::Send { conn, msg } => {
                let text = serde_json::to_string(&msg).expect("server message serializes");
                let back: ServerMessage =
                    serde_json::from_str(&text).expect("server message parses back");
                assert_eq!(back, msg, "server message changed in a round trip");
                assert!(
                    !self.closed.contains(&conn),
                    "{} sent to a closed connection",
                    msg.kind()
                );
                if self.waiting.contains(&conn) {
                    assert!(
                        matches!(
                            msg,
                            ServerMessage::Waiting { .. }
                                | ServerMessage::Error { .. }
                                | ServerMessage::Joined { .. }
                                | ServerMessage::Denied
                                | ServerMessage::Removed
                                | ServerMessage::Ended { .. }
                        ),
                        "a waiting connection was sent {}",
                        msg.kind()
                    );
                }
                match msg {
                    ServerMessage::Waiting { .. } => {
                        self.waiting.insert(conn);
                    }
                    ServerMessage::Joined { .. }
                    | ServerMessage::Denied
                    | ServerMessage::Removed
                    | ServerMessage::Ended { .. } => {
                        self.waiting.remove(&conn);
                    }
                    _ => {}
                }
            }
            Output::Close { conn } => {
                self.waiting.remove(&conn);
                self.closed.insert(conn);
            }
            _ => {}
        }
    }
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut script = Script::new();
    for line in text.split('\n').take(MAX_LINES) {
        let Some(&first) = line.as_bytes().first() else {
            continue;
        };
        let slot = usize::from(first % 4);
        // The selector is one byte; a multi-byte first character is a frame from slot 0.
        let frame = line.get(1..).unwrap_or(line);
        script.line(slot, frame);
    }
}

/// Scripts of a meeting's life: the owner hosts, guests wait and are admitted or denied,
/// people chat, change media, roles, the lock, leave and drop.
pub fn seeds() -> Vec<Vec<u8>> {
    let scripts = [
        // Guest waits, is admitted, chats; the host locks, renames, makes them co-host.
        concat!(
            "0{\"type\":\"join\",\"name\":\"Host\"}\n",
            "1{\"type\":\"join\",\"name\":\"Ada\",\"passcode\":\"x\"}\n",
            "1{\"type\":\"chat\",\"payload\":\"early\"}\n",
            "0{\"type\":\"admit\",\"participant\":2}\n",
            "1{\"type\":\"chat\",\"payload\":\"aGk=\"}\n",
            "0{\"type\":\"lock\"}\n",
            "2{\"type\":\"join\",\"name\":\"Late\"}\n",
            "0{\"type\":\"unlock\"}\n",
            "0{\"type\":\"rename\",\"participant\":2,\"name\":\"Grace\"}\n",
            "0{\"type\":\"set_role\",\"participant\":2,\"role\":\"cohost\"}\n",
            "1{\"type\":\"set_media\",\"audio\":true,\"video\":true}\n",
            "0{\"type\":\"mute_all\"}\n",
            "1{\"type\":\"leave\"}\n",
        ),
        // Two wait; one is denied, one removed; a third joins after an admit_all.
        concat!(
            "0{\"type\":\"join\",\"name\":\"Host\"}\n",
            "1{\"type\":\"join\",\"name\":\"A\"}\n",
            "2{\"type\":\"join\",\"name\":\"B\"}\n",
            "0{\"type\":\"deny\",\"participant\":2}\n",
            "0{\"type\":\"remove\",\"participant\":3}\n",
            "3{\"type\":\"join\",\"name\":\"C\"}\n",
            "0{\"type\":\"admit_all\"}\n",
            "3{\"type\":\"media_offer\",\"sdp\":\"v=0\\r\\n\",\"tracks\":[{\"mid\":\"0\",\"kind\":\"audio\"}]}\n",
            "0{\"type\":\"set_permissions\",\"permissions\":{\"chat\":false}}\n",
            "0{\"type\":\"suspend_activities\"}\n",
            "0{\"type\":\"resume_activities\"}\n",
            "0{\"type\":\"end_meeting\"}\n",
        ),
        // The host drops and comes back; MLS messages from a member; the host hands over.
        concat!(
            "0{\"type\":\"join\",\"name\":\"Host\"}\n",
            "0{\"type\":\"mls_key_package\",\"key_package\":\"AAEAAQ==\"}\n",
            "3{\"type\":\"join\",\"name\":\"Acct\"}\n",
            "3{\"type\":\"mls_key_package\",\"key_package\":\"AAEAAQ==\"}\n",
            "0{\"type\":\"admit\",\"participant\":2}\n",
            "3{\"type\":\"mls_commit\",\"commit\":\"AAEAAQ==\"}\n",
            "0{\"type\":\"mls_group_info\",\"group_info\":\"AAEAAQ==\"}\n",
            "0\n",
            "0{\"type\":\"join\",\"name\":\"Host again\"}\n",
            "0{\"type\":\"transfer_host\",\"participant\":2}\n",
            "3{\"type\":\"stop_media\",\"participant\":1,\"kind\":\"audio\"}\n",
            "3{\"type\":\"view_size\",\"participant\":1,\"kind\":\"video\",\"width\":320,\"height\":180}\n",
            "3{\"type\":\"key_frame_request\"}\n",
            "3{\"type\":\"deny_all\"}\n",
        ),
    ];
    scripts.iter().map(|s| s.as_bytes().to_vec()).collect()
}
