//! The meeting as the MLS group's delivery service, with real MLS members
//! (conclave-e2ee) on the other end: who gets asked to create the group, when
//! Add and Remove are proposed, which commit wins, who gets the Welcome — and
//! that nothing of the group reaches a waiting connection.
//!
//! One file though long: every section drives the same meeting with the same
//! real members, and the helpers they share sit at the top.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{COMMIT_TIMEOUT, ConnId, Input, Output, REFILL_INTERVAL};
use conclave_e2ee::{Chat, FrameCrypto, FrameKind, Member, Received};
use conclave_proto::{ClientMessage, ErrorCode, ParticipantId, ResumeToken, ServerMessage};
use data_encoding::BASE64;

use crate::support::{Clients, HOST, Room, error_of, guest, owner};

/// Per connection, an MLS member that acts on what it is sent the way a
/// client does: the layer the group's rules need on top of the harness.
#[derive(Default)]
struct Mls {
    members: BTreeMap<u64, Member>,
    /// Connections whose client does nothing with what it is sent (a frozen
    /// tab): it neither applies MLS messages nor commits.
    frozen: BTreeSet<u64>,
    /// What frozen clients were sent, for when they come back.
    backlog: BTreeMap<u64, Vec<ServerMessage>>,
    /// The participant list each client was shown, as its member is told.
    announced: BTreeMap<u64, BTreeSet<String>>,
    /// Connections whose client follows the group but never makes the update
    /// commit it is asked for (an old client).
    ignores_update_requests: BTreeSet<u64>,
    /// Connections whose client opens the chat it is sent, with what it read.
    reads_chat: BTreeMap<u64, Vec<String>>,
}

impl Clients for Mls {
    /// What a client does with an MLS message.
    fn react(&mut self, conn: u64, msg: &ServerMessage) -> Vec<ClientMessage> {
        if self.frozen.contains(&conn) {
            self.backlog.entry(conn).or_default().push(msg.clone());
            return Vec::new();
        }
        let announced = self.announced.entry(conn).or_default();
        match msg {
            ServerMessage::Joined { participants, .. } => {
                *announced = participants.iter().map(|p| p.id.0.to_string()).collect();
            }
            ServerMessage::ParticipantJoined { participant } => {
                announced.insert(participant.id.0.to_string());
            }
            ServerMessage::ParticipantLeft { participant, .. } => {
                announced.remove(&participant.0.to_string());
            }
            _ => {}
        }
        let announced = announced.clone();
        let mut replies = Vec::new();
        if let ServerMessage::Waiting { you, .. } | ServerMessage::Joined { you, .. } = msg
            && !self.members.contains_key(&conn)
        {
            replies.push(self.new_member(conn, *you));
        }
        let me = self.members.get_mut(&conn);
        let Some(member) = me else { return replies };
        member.set_announced(announced.iter().cloned());
        if !replies.is_empty() {
            return replies;
        }
        match msg {
            ServerMessage::MlsCreateGroup { e2ee } => {
                let gid = BASE64.decode(e2ee.group_id.as_bytes()).expect("b64");
                let ext = BASE64.decode(e2ee.external_sender.as_bytes()).expect("b64");
                let info = member.create_group(&gid, &ext).expect("create");
                vec![ClientMessage::MlsGroupInfo {
                    group_info: BASE64.encode(&info),
                }]
            }
            ServerMessage::MlsWelcome {
                welcome,
                ratchet_tree,
            } => {
                member
                    .join(
                        &BASE64.decode(welcome.as_bytes()).expect("b64"),
                        &BASE64.decode(ratchet_tree.as_bytes()).expect("b64"),
                    )
                    .expect("join by welcome and the server's tree");
                Vec::new()
            }
            ServerMessage::MlsMessage { message, commit_by } => {
                let bytes = BASE64.decode(message.as_bytes()).expect("b64");
                let received = member.handle(&bytes).expect("handle");
                let me = ParticipantId(member.participant_id().parse().expect("id"));
                match received {
                    Received::Proposal if *commit_by == Some(me) => commit(member),
                    _ => Vec::new(),
                }
            }
            ServerMessage::MlsCommitRequest => commit(member),
            ServerMessage::Chat { payload, .. } => {
                if let Some(read) = self.reads_chat.get_mut(&conn) {
                    let bytes = BASE64.decode(payload.as_bytes()).expect("b64");
                    let opened = member.open_chat(&bytes).expect("opens").expect("a chat");
                    read.push(opened.text);
                }
                Vec::new()
            }
            ServerMessage::MlsUpdateRequest if self.ignores_update_requests.contains(&conn) => {
                Vec::new()
            }
            ServerMessage::MlsUpdateRequest => {
                let c = member.update().expect("update");
                vec![ClientMessage::MlsCommit {
                    commit: BASE64.encode(&c.commit),
                    welcome: c.welcome.as_deref().map(|w| BASE64.encode(w)),
                    group_info: None,
                }]
            }
            _ => Vec::new(),
        }
    }
}

impl Mls {
    /// A client's MLS member for participant `you`, and the key package it
    /// hands in.
    fn new_member(&mut self, conn: u64, you: ParticipantId) -> ClientMessage {
        let member = Member::new(&you.0.to_string()).expect("member");
        let kp = BASE64.encode(&member.key_package().expect("key package"));
        self.members.insert(conn, member);
        ClientMessage::MlsKeyPackage { key_package: kp }
    }
}

impl Room<Mls> {
    /// A meeting whose clients are MLS members.
    fn with_mls(waiting_room: bool) -> Self {
        Room::with_clients(
            Mls::default(),
            |c| c.waiting_room = waiting_room,
            Vec::new(),
        )
    }

    /// A frozen client comes back and works through what it was sent
    /// meanwhile, in order.
    fn thaw(&mut self, conn: u64) -> Vec<Output> {
        self.clients.frozen.remove(&conn);
        let mut out = Vec::new();
        for msg in self.clients.backlog.remove(&conn).unwrap_or_default() {
            for reply in self.clients.react(conn, &msg) {
                out.extend(self.msg(conn, reply));
            }
        }
        out
    }

    fn member(&self, conn: u64) -> &Member {
        self.clients.members.get(&conn).expect("a member")
    }

    fn member_mut(&mut self, conn: u64) -> &mut Member {
        self.clients.members.get_mut(&conn).expect("a member")
    }
}

/// The member commits the proposals it holds, as a client does when named.
fn commit(member: &mut Member) -> Vec<ClientMessage> {
    match member.commit() {
        Ok(Some(c)) => vec![ClientMessage::MlsCommit {
            commit: BASE64.encode(&c.commit),
            welcome: c.welcome.as_deref().map(|w| BASE64.encode(w)),
            group_info: None,
        }],
        _ => Vec::new(),
    }
}

fn is_mls(msg: &ServerMessage) -> bool {
    matches!(
        msg,
        ServerMessage::MlsCreateGroup { .. }
            | ServerMessage::MlsMessage { .. }
            | ServerMessage::MlsCommitRequest
            | ServerMessage::MlsUpdateRequest
            | ServerMessage::MlsWelcome { .. }
    )
}

/// Host (conn 1, p1) alone in its group.
fn hosted() -> Room<Mls> {
    Room::with_mls(true).host()
}

#[test]
fn an_mls_handshake_sent_as_chat_is_refused_and_not_relayed() {
    let mut room = hosted();
    room.admit(2, "user2");
    // What a hostile member has at hand: the server's proposals and commits it was sent, a
    // key package, a GroupInfo. None of it may travel as chat.
    let mut handshakes: Vec<String> = room
        .log_to(2)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::MlsMessage { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    handshakes.push(BASE64.encode(&room.member(2).key_package().expect("kp")));
    room.admit(3, "user3");
    handshakes.extend(room.log_to(2).iter().filter_map(|m| match m {
        ServerMessage::MlsMessage { message, .. } => Some(message.clone()),
        _ => None,
    }));
    assert!(handshakes.len() >= 3, "{handshakes:?}");
    let relayed_before = room
        .log_to(HOST)
        .iter()
        .filter(|m| matches!(m, ServerMessage::Chat { .. }))
        .count();
    for payload in handshakes {
        let out = room.msg(2, ClientMessage::Chat { payload });
        assert_eq!(error_of(&out, 2), Some(ErrorCode::BadMessage));
    }
    let relayed_after = room
        .log_to(HOST)
        .iter()
        .filter(|m| matches!(m, ServerMessage::Chat { .. }))
        .count();
    assert_eq!(
        relayed_before, relayed_after,
        "a handshake was relayed as chat"
    );
    // Real chat still passes.
    let chat = room.member_mut(2).encrypt_chat("fine").expect("chat");
    let out = room.msg(
        2,
        ClientMessage::Chat {
            payload: BASE64.encode(&chat),
        },
    );
    assert_eq!(error_of(&out, 2), None);
}

#[test]
fn chat_of_an_epoch_the_group_has_left_is_refused_as_stale_and_not_relayed() {
    let mut room = hosted();
    room.admit(2, "user2");
    // Encrypted by the guest in this epoch, sent only after the group moved on.
    let late = room.member_mut(2).encrypt_chat("late").expect("chat");
    let epoch = room.member(2).epoch();
    room.admit(3, "user3");
    assert!(room.member(2).epoch() > epoch, "the group moved on");
    let relayed = |room: &Room<Mls>| {
        room.log_to(HOST)
            .iter()
            .filter(|m| matches!(m, ServerMessage::Chat { .. }))
            .count()
    };
    let before = relayed(&room);
    let out = room.msg(
        2,
        ClientMessage::Chat {
            payload: BASE64.encode(&late),
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::StaleChat));
    assert_eq!(
        relayed(&room),
        before,
        "a chat nobody could open was relayed"
    );
    // Encrypted again in the current epoch, it goes through and opens.
    let again = room.member_mut(2).encrypt_chat("late").expect("chat");
    let out = room.msg(
        2,
        ClientMessage::Chat {
            payload: BASE64.encode(&again),
        },
    );
    assert_eq!(error_of(&out, 2), None);
    let payload = room
        .log_to(3)
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Chat { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .expect("relayed to the newcomer");
    let bytes = BASE64.decode(payload.as_bytes()).expect("b64");
    let opened = room
        .clients
        .members
        .get_mut(&3)
        .expect("newcomer")
        .open_chat(&bytes)
        .expect("opens")
        .expect("a message");
    assert_eq!(opened.text, "late");
}

#[test]
fn the_first_member_creates_the_group_and_an_admitted_guest_is_added() {
    let mut room = hosted();
    assert!(
        room.log_to(HOST)
            .iter()
            .any(|m| matches!(m, ServerMessage::MlsCreateGroup { .. }))
    );
    assert_eq!(room.member(HOST).roster(), ["1"]);

    room.admit(2, "user2"); // waits, hands in its key package, is admitted
    // The host committed the server's Add, the guest joined by the Welcome.
    assert_eq!(room.member(HOST).roster(), ["1", "2"]);
    assert_eq!(room.member(2).roster(), ["1", "2"]);
    assert_eq!(room.member(HOST).epoch(), room.member(2).epoch());
    assert_eq!(
        room.member(HOST).security_code(),
        room.member(2).security_code()
    );

    // A third is added the same way, and everyone agrees again.
    room.admit(3, "user3");
    let code = room.member(HOST).security_code();
    for conn in [2, 3] {
        assert_eq!(room.member(conn).roster(), ["1", "2", "3"]);
        assert_eq!(room.member(conn).security_code(), code);
    }
}

#[test]
fn a_waiting_connection_receives_nothing_of_the_group() {
    let mut room = hosted();
    room.admit(2, "user2");
    room.join(3, "user3", guest("g3")); // stays waiting while the group changes and chats
    room.admit(4, "user4");
    let chat = room.member_mut(2).encrypt_chat("hello").expect("chat");
    room.msg(
        2,
        ClientMessage::Chat {
            payload: BASE64.encode(&chat),
        },
    );
    assert_eq!(room.member(HOST).roster(), ["1", "2", "4"]);
    // The server relayed the chat as ciphertext the host can open.
    let relayed = room
        .log_to(HOST)
        .iter()
        .find_map(|m| match m {
            ServerMessage::Chat { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .expect("the chat reached the host");
    let bytes = BASE64.decode(relayed.as_bytes()).expect("b64");
    assert!(!bytes.windows(5).any(|w| w == b"hello"));
    let opened = room
        .clients
        .members
        .get_mut(&HOST)
        .expect("host")
        .open_chat(&bytes)
        .expect("the host decrypts");
    assert_eq!(
        opened,
        Some(Chat {
            sender: "2".into(),
            text: "hello".into()
        })
    );
    assert!(
        matches!(room.log_to(3).as_slice(), [ServerMessage::Waiting { .. }]),
        "the waiting connection got {:?}",
        room.log_to(3)
    );
    assert!(!room.log_to(3).iter().any(is_mls));
}

#[test]
fn removal_starts_an_epoch_the_removed_member_cannot_read() {
    let mut room = hosted();
    room.admit(2, "user2");
    room.admit(3, "user3");
    let before = room.member(HOST).epoch();
    let old_keys = room.member(3).sframe_keys();

    room.msg(
        HOST,
        ClientMessage::Remove {
            participant: ParticipantId(3),
        },
    );
    assert_eq!(room.member(HOST).roster(), ["1", "2"]);
    assert_eq!(room.member(2).roster(), ["1", "2"]);
    assert!(room.member(HOST).epoch() > before);

    // The host sends a frame under the new epoch: the other member reads it,
    // the removed one, keeping all it had, cannot.
    let mut host = FrameCrypto::new();
    host.set_epoch(&room.member(HOST).sframe_keys(), 0);
    let mut frame = Vec::new();
    host.encrypt(FrameKind::Audio, b"after the removal", &mut frame)
        .expect("encrypt");
    let mut guest = FrameCrypto::new();
    guest.set_epoch(&room.member(2).sframe_keys(), 0);
    let mut clear = Vec::new();
    guest
        .decrypt(FrameKind::Audio, &frame, 1, &mut clear)
        .expect("a member reads it");
    assert_eq!(clear, b"after the removal");
    let mut removed = FrameCrypto::new();
    removed.set_epoch(&old_keys, 0);
    assert!(
        removed
            .decrypt(FrameKind::Audio, &frame, 1, &mut clear)
            .is_err()
    );
}

/// The member named to commit never does (its tab froze): after
/// COMMIT_TIMEOUT the next member is named, commits, and the admitted guest
/// is in; the frozen one is not asked first again.
#[test]
fn a_committer_that_does_not_commit_is_passed_over() {
    let mut room = hosted();
    room.admit(2, "user2");
    room.clients.frozen.insert(HOST);
    room.admit(3, "user3");
    // The host was named and did nothing: the guest waits outside.
    assert_eq!(room.member(2).roster(), ["1", "2"]);
    let deadline = room.meeting.poll_timeout().expect("a commit deadline");
    assert_eq!(deadline, room.now + COMMIT_TIMEOUT);
    // Nothing happens before the deadline...
    room.now += COMMIT_TIMEOUT - Duration::from_millis(1);
    room.input(Input::Timeout);
    assert_eq!(room.member(2).roster(), ["1", "2"]);
    assert!(!room.log_to(2).contains(&ServerMessage::MlsCommitRequest));
    // ...and at it, member 2 is asked, commits, and 3 joins by its Welcome.
    room.now = deadline;
    room.input(Input::Timeout);
    assert!(room.log_to(2).contains(&ServerMessage::MlsCommitRequest));
    assert!(!room.log_to(HOST).contains(&ServerMessage::MlsCommitRequest));
    assert_eq!(room.member(2).roster(), ["1", "2", "3"]);
    assert_eq!(room.member(3).roster(), ["1", "2", "3"]);
    assert_eq!(
        room.member(2).security_code(),
        room.member(3).security_code()
    );
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
    // The next change goes to member 2 at once, not to the frozen host.
    room.admit(4, "user4");
    assert_eq!(room.member(4).roster(), ["1", "2", "3", "4"]);
    assert_eq!(room.member(3).roster(), ["1", "2", "3", "4"]);
}

/// A meeting without a waiting room whose host's client hands in its key
/// package and then freezes, before the request to create the group.
fn frozen_host_with_a_key_package() -> Room<Mls> {
    let mut room = Room::with_mls(false);
    room.clients.frozen.insert(HOST);
    room.join(HOST, "Ada", owner());
    let kp = room.clients.new_member(HOST, ParticipantId(1));
    room.msg(HOST, kp);
    room
}

/// The member asked to create the group never does: its tab froze right
/// after it handed in its key package. Alone, it keeps the request; once
/// another member is there, that one is asked, for a group with a new id.
/// When the frozen client comes back, its late GroupInfo is dropped without
/// an error and it joins the real group by the Welcome it was sent.
#[test]
fn a_creator_that_does_not_create_is_passed_over() {
    let mut room = frozen_host_with_a_key_package();
    let asked = |room: &Room<Mls>, conn| {
        room.log_to(conn)
            .iter()
            .filter_map(|m| match m {
                ServerMessage::MlsCreateGroup { e2ee } => Some(e2ee.group_id.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(asked(&room, HOST).len(), 1);
    let deadline = room.meeting.poll_timeout().expect("a creation deadline");
    assert_eq!(deadline, room.now + COMMIT_TIMEOUT);
    // Nobody else to ask: the request stays, and no timer spins.
    room.now = deadline;
    room.input(Input::Timeout);
    assert_eq!(room.meeting.poll_timeout(), None);

    // A guest comes in: asked at once, as the host's time is up.
    room.now += Duration::from_secs(1);
    room.join(2, "user2", guest("g2"));
    let second = asked(&room, 2);
    assert_eq!(second.len(), 1);
    assert_ne!(second, asked(&room, HOST), "a new group id");
    // The guest made the group (leaf 0) and committed the host's Add.
    assert_eq!(room.member(2).roster(), ["2", "1"]);
    assert!(
        room.clients.backlog[&HOST]
            .iter()
            .any(|m| matches!(m, ServerMessage::MlsWelcome { .. }))
    );

    let out = room.thaw(HOST);
    assert_eq!(
        error_of(&out, HOST),
        None,
        "the late GroupInfo is dropped quietly"
    );
    assert_eq!(room.member(HOST).roster(), ["2", "1"]);
    assert_eq!(
        room.member(HOST).security_code(),
        room.member(2).security_code()
    );
    // Back in, the host is the longest present and commits the next Add.
    room.join(3, "user3", guest("g3"));
    assert!(room.log_to(HOST).iter().any(|m| matches!(
        m,
        ServerMessage::MlsMessage {
            commit_by: Some(ParticipantId(1)),
            ..
        }
    )));
    for conn in [HOST, 2, 3] {
        assert_eq!(room.member(conn).roster(), ["2", "1", "3"]);
    }
    assert_eq!(
        room.member(3).security_code(),
        room.member(HOST).security_code()
    );
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
}

/// The member asked to create the group drops before it answers: the next
/// one is asked. On resume its client gets the old request again, answers
/// it (dropped without an error) and joins the real group by Welcome.
#[test]
fn a_creator_that_drops_before_it_answers_catches_up_on_resume() {
    let mut room = frozen_host_with_a_key_package();
    let token = room.token_of(HOST);
    room.input(Input::Disconnected { conn: ConnId(HOST) });
    room.clients.backlog.remove(&HOST);
    room.clients.frozen.remove(&HOST);
    room.join(2, "user2", guest("g2"));
    assert_eq!(room.member(2).roster(), ["2", "1"], "made by 2, 1 added");

    let member = room
        .clients
        .members
        .remove(&HOST)
        .expect("the host's member");
    room.clients.members.insert(10, member);
    let out = room.resume_after(10, token, Some(0));
    assert_eq!(error_of(&out, 10), None);
    assert_eq!(room.member(10).roster(), ["2", "1"]);
    assert_eq!(
        room.member(10).security_code(),
        room.member(2).security_code()
    );
}

#[test]
fn only_the_first_commit_of_an_epoch_wins() {
    let mut room = hosted();
    room.admit(2, "user2");
    // The commit that added the guest ended its epoch; the same commit again
    // (or any other for that epoch) is stale and changes nothing.
    let first = room
        .log_to(HOST)
        .iter()
        .find_map(|m| match m {
            ServerMessage::MlsMessage {
                message,
                commit_by: None,
            } => Some(message.clone()),
            _ => None,
        })
        .expect("the host got its commit back");
    let epoch = room.member(HOST).epoch();
    let out = room.msg(
        HOST,
        ClientMessage::MlsCommit {
            commit: first,
            welcome: None,
            group_info: None,
        },
    );
    assert_eq!(error_of(&out, HOST), Some(ErrorCode::StaleCommit));
    assert_eq!(room.member(HOST).epoch(), epoch);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Send { msg, .. } if is_mls(msg))),
        "nothing was forwarded"
    );
}

#[test]
fn bad_mls_input_is_refused_and_changes_nothing() {
    let mut room = hosted();
    room.join(2, "user2", guest("g2"));
    // A second key package, or one naming someone else, is refused.
    let other = Member::new("9").expect("member");
    let out = room.msg(
        2,
        ClientMessage::MlsKeyPackage {
            key_package: BASE64.encode(&other.key_package().expect("kp")),
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::MlsRefused));
    for garbage in ["", "not base64!", "AAAA", &"QUFB".repeat(20_000)] {
        let out = room.msg(
            HOST,
            ClientMessage::MlsCommit {
                commit: garbage.into(),
                welcome: None,
                group_info: None,
            },
        );
        assert!(error_of(&out, HOST).is_some(), "{garbage:.20}");
        let out = room.msg(
            HOST,
            ClientMessage::MlsGroupInfo {
                group_info: garbage.into(),
            },
        );
        assert_eq!(error_of(&out, HOST), Some(ErrorCode::MlsRefused));
    }
    // A waiting guest may not commit or create; the group is unchanged.
    let out = room.msg(
        2,
        ClientMessage::MlsGroupInfo {
            group_info: "AAAA".into(),
        },
    );
    assert_eq!(error_of(&out, 2), Some(ErrorCode::NotJoined));
    room.msg(
        HOST,
        ClientMessage::Admit {
            participant: ParticipantId(2),
        },
    );
    assert_eq!(room.member(2).roster(), ["1", "2"]);
}

#[test]
fn a_member_who_leaves_is_removed_by_the_next_longest_present() {
    let mut room = Room::with_mls(false);
    room.join(HOST, "Ada", owner());
    room.join(2, "user2", guest("g2"));
    room.join(3, "user3", guest("g3"));
    assert_eq!(room.member(3).roster(), ["1", "2", "3"]);
    room.msg(HOST, ClientMessage::Leave);
    // The host is gone; the guest who came first commits its removal.
    assert_eq!(room.member(2).roster(), ["2", "3"]);
    assert_eq!(room.member(3).roster(), ["2", "3"]);
    assert_eq!(
        room.member(2).security_code(),
        room.member(3).security_code()
    );
}

#[test]
fn a_member_whose_client_lost_its_state_is_replaced_in_the_group() {
    let mut room = hosted();
    room.admit(2, "user2");
    let epoch = room.member(HOST).epoch();
    // The guest's page reloads and takes its seat back with a fresh member
    // and a new key package for the same participant id.
    let fresh = Member::new("2").expect("member");
    let kp = BASE64.encode(&fresh.key_package().expect("kp"));
    room.clients.members.insert(2, fresh);
    let out = room.msg(2, ClientMessage::MlsKeyPackage { key_package: kp });
    assert_eq!(error_of(&out, 2), None);
    // The old leaf was removed and the new one added by Welcome.
    assert_eq!(room.member(HOST).roster(), ["1", "2"]);
    assert_eq!(room.member(2).roster(), ["1", "2"]);
    assert!(room.member(HOST).epoch() >= epoch + 2);
    assert_eq!(
        room.member(HOST).security_code(),
        room.member(2).security_code()
    );
}

/// Members 1 to 3 in the group; member 2's socket then stops carrying
/// anything (the test decides whether the server notices), and while it is
/// away member 4 is admitted and member 3 leaves. Returns member 2's resume
/// token and how many MLS messages its client took in.
fn away_while_the_group_moves_on(server_notices: bool) -> (Room<Mls>, ResumeToken, u64) {
    let mut room = hosted();
    room.admit(2, "user2");
    room.admit(3, "user3");
    let token = room.token_of(2);
    let taken_in = room.log_to(2).iter().filter(|m| is_mls(m)).count() as u64;
    // Whatever is written to the socket from now on is lost.
    room.clients.frozen.insert(2);
    if server_notices {
        room.input(Input::Disconnected { conn: ConnId(2) });
    }
    room.admit(4, "user4");
    room.msg(3, ClientMessage::Leave);
    assert_eq!(room.member(HOST).roster(), ["1", "2", "4"]);
    assert_eq!(
        room.member(2).roster(),
        ["1", "2", "3"],
        "behind while away"
    );
    room.clients.backlog.remove(&2);
    room.clients.frozen.remove(&2);
    // The same client takes its seat back on a new socket.
    let member = room.clients.members.remove(&2).expect("member 2");
    room.clients.members.insert(20, member);
    room.now += Duration::from_secs(5);
    (room, token, taken_in)
}

/// A member whose socket dropped resumes: the MLS messages after the ones it
/// says it took in reach it again, in order, and it is in the same epoch as
/// everyone else, whether the server had noticed the drop (nothing was
/// written to the dead socket) or not (what was written to it is lost).
#[test]
fn a_member_who_resumes_catches_up_on_what_the_group_did_meanwhile() {
    for server_notices in [true, false] {
        let (mut room, token, taken_in) = away_while_the_group_moves_on(server_notices);
        let out = room.resume_after(20, token, Some(taken_in));
        assert_eq!(error_of(&out, 20), None);
        assert_eq!(room.member(20).roster(), ["1", "2", "4"]);
        assert_eq!(room.member(20).epoch(), room.member(HOST).epoch());
        assert_eq!(
            room.member(20).security_code(),
            room.member(HOST).security_code()
        );
        // It takes part in the next change as before.
        room.admit(5, "user5");
        // (5 takes the leaf 3 left.)
        assert_eq!(room.member(20).roster(), ["1", "2", "5", "4"]);
        assert_eq!(
            room.member(20).security_code(),
            room.member(5).security_code()
        );
    }
}

/// What a resume may ask for again is bounded: a client that missed MLS
/// messages no longer kept (sent over two minutes ago) cannot follow the
/// group, so its seat ends and it joins afresh; a count beyond what was
/// sent gets nothing again.
#[test]
fn a_resume_that_needs_messages_no_longer_kept_ends_the_seat() {
    let (mut room, token, _) = away_while_the_group_moves_on(false);
    room.now += Duration::from_secs(120);
    let out = room.resume_after(20, token, Some(0));
    assert_eq!(error_of(&out, 20), Some(ErrorCode::ResumeFailed));
    assert_eq!(
        room.member(HOST).roster(),
        ["1", "4"],
        "removed from the group"
    );

    let (mut room, token, _) = away_while_the_group_moves_on(false);
    let out = room.resume_after(20, token, Some(u64::MAX));
    assert_eq!(error_of(&out, 20), None);
    assert!(!room.log_to(20).iter().any(is_mls), "nothing sent again");
}

/// Chat sealed while a member was away, before and after a commit it missed,
/// is replayed on its resume among the MLS messages as it was relayed, so
/// its client opens the first in the old epoch and the second after
/// applying the commit: the ciphertext the server kept for the window is
/// enough, and nothing else is needed to read it.
#[test]
fn chat_sent_while_a_member_was_away_opens_on_its_resume_across_a_new_epoch() {
    let mut room = hosted();
    room.admit(2, "user2");
    room.admit(3, "user3");
    let token = room.token_of(2);
    let taken_in = room.log_to(2).iter().filter(|m| is_mls(m)).count() as u64;
    room.input(Input::Disconnected { conn: ConnId(2) });
    let epoch = room.member(HOST).epoch();
    let seal = |room: &mut Room<Mls>, text: &str| {
        let c = room.member_mut(HOST).encrypt_chat(text).expect("chat");
        let out = room.msg(
            HOST,
            ClientMessage::Chat {
                payload: BASE64.encode(&c),
            },
        );
        assert_eq!(error_of(&out, HOST), None);
    };
    seal(&mut room, "in the old epoch");
    room.admit(4, "user4");
    assert!(room.member(HOST).epoch() > epoch, "a commit while away");
    seal(&mut room, "in the new epoch");

    let member = room.clients.members.remove(&2).expect("member 2");
    room.clients.members.insert(20, member);
    room.clients.reads_chat.insert(20, Vec::new());
    let out = room.resume_after(20, token, Some(taken_in));
    assert_eq!(error_of(&out, 20), None);
    assert_eq!(
        room.clients.reads_chat[&20],
        ["in the old epoch", "in the new epoch"]
    );
    assert_eq!(room.member(20).epoch(), room.member(HOST).epoch());
}

fn update_requests(room: &Room<Mls>, conn: u64) -> usize {
    room.log_to(conn)
        .iter()
        .filter(|m| matches!(m, ServerMessage::MlsUpdateRequest))
        .count()
}

/// A room whose group holds the host and members on conns 2..=12: leaves 0..=11, so the
/// next newcomer (leaf 12) opens the block of leaves 8..=15 on the other side of the tree and
/// its update is one the server asks for (in groups of up to eight, none is).
fn hosted_with_twelve() -> Room<Mls> {
    let mut room = hosted();
    for conn in 2..=12 {
        room.admit(conn, &format!("user{conn}"));
    }
    room
}

/// Newcomers are asked, one at a time and only when no proposal is out, for an update commit
/// where it fills a parent later commits encrypt to: not in a small group, not twice, never
/// the host, and not every newcomer; everyone ends in one epoch.
#[test]
fn newcomers_update_only_where_their_path_needs_it() {
    let mut room = hosted();
    let epoch = room.member(HOST).epoch();
    for conn in 2..=8 {
        room.admit(conn, &format!("user{conn}"));
    }
    // Eight leaves: every parent below the root covers fewer than eight.
    for conn in 2..=8 {
        assert_eq!(update_requests(&room, conn), 0, "member {conn}");
    }
    assert_eq!(room.member(HOST).epoch(), epoch + 7, "one epoch per Add");
    for conn in 9..=16 {
        room.admit(conn, &format!("user{conn}"));
    }
    assert_eq!(update_requests(&room, HOST), 0);
    let asked: Vec<u64> = (2..=16)
        .filter(|c| update_requests(&room, *c) > 0)
        .collect();
    for conn in &asked {
        assert_eq!(update_requests(&room, *conn), 1, "member {conn}");
    }
    // Leaves 8..=11 come while the other half of their block is empty (their commit would
    // not fill its parent); leaf 12 (conn 13) fills it, and leaves 13..=15 are then up to
    // three unmerged leaves of that parent, which it may hold.
    assert_eq!(asked, [13]);
    assert_eq!(room.member(HOST).epoch(), epoch + 15 + 1);
    for conn in 2..=16 {
        assert_eq!(room.member(conn).epoch(), room.member(HOST).epoch());
        assert_eq!(
            room.member(conn).security_code(),
            room.member(HOST).security_code()
        );
    }
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
}

/// A newcomer whose client never makes the update commit (an old one) holds
/// nothing up: admissions go on, and after COMMIT_TIMEOUT the next newcomer
/// is asked in its place; it is not asked again.
#[test]
fn a_newcomer_that_never_updates_holds_nothing_up() {
    let mut room = hosted_with_twelve();
    room.clients.ignores_update_requests.insert(13);
    room.admit(13, "user13");
    assert_eq!(update_requests(&room, 13), 1);
    room.admit(14, "user14");
    assert_eq!(room.member(14).roster().len(), 14);
    // 13 holds the turn to update until its deadline.
    assert_eq!(update_requests(&room, 14), 0);
    let asked = update_requests(&room, 13);
    let deadline = room.meeting.poll_timeout().expect("an update deadline");
    room.now = deadline;
    room.input(Input::Timeout);
    assert_eq!(update_requests(&room, 14), 1);
    assert_eq!(update_requests(&room, 13), asked, "not asked again");
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
    for conn in [13, 14] {
        assert_eq!(room.member(conn).epoch(), room.member(HOST).epoch());
        assert_eq!(
            room.member(conn).security_code(),
            room.member(HOST).security_code()
        );
    }
}

/// A room whose group holds the host and members on conns 2..=24, admitted one at a time:
/// conn k sits on leaf k - 1, so the blocks of eight leaves are conns 1..=8, 9..=16 and
/// 17..=24.
fn hosted_with_twenty_four() -> Room<Mls> {
    let mut room = hosted();
    for conn in 2..=24 {
        room.admit(conn, &format!("user{conn}"));
    }
    room
}

/// Update requests each connection got, from `conns`.
fn update_requests_of(room: &Room<Mls>, conns: impl Iterator<Item = u64>) -> BTreeMap<u64, usize> {
    conns.map(|c| (c, update_requests(room, c))).collect()
}

/// Runs the meeting's timers until nothing is out; returns who got an update request at
/// each wake-up, with the time since the previous request.
fn refills(room: &mut Room<Mls>, conns: &[u64]) -> Vec<(u64, Duration)> {
    let mut asked = Vec::new();
    let mut last = room.now;
    for _ in 0..20 {
        let Some(at) = room.meeting.poll_timeout() else {
            return asked;
        };
        assert!(at > room.now, "a deadline in the past");
        let before = update_requests_of(room, conns.iter().copied());
        room.now = at;
        room.input(Input::Timeout);
        for (conn, n) in update_requests_of(room, conns.iter().copied()) {
            if n > before[&conn] {
                asked.push((conn, room.now - last));
                last = room.now;
            }
        }
    }
    panic!("the meeting keeps waking up: {asked:?}");
}

/// Removals blank the removed leaves' direct paths (the host's removing commit fills only its
/// own), so later commits encrypt to each leaf under those parents again. Once members stop
/// leaving, the server asks, one at a time and REFILL_INTERVAL apart, a member of each block
/// a removal hit for an update commit, and stops when nobody's update would fill anything.
#[test]
fn members_who_leave_have_the_parents_they_blanked_refilled() {
    let mut room = hosted_with_twenty_four();
    let conns: Vec<u64> = (1..=24).collect();
    let asked_as_newcomers = update_requests_of(&room, conns.iter().copied());
    // Leaf 9 (block 8..=15) and leaf 19 (block 16..=23) leave.
    room.msg(10, ClientMessage::Leave);
    room.advance(Duration::from_millis(100));
    room.msg(20, ClientMessage::Leave);
    assert_eq!(room.member(HOST).roster().len(), 22);
    assert_eq!(
        update_requests_of(&room, conns.iter().copied()),
        asked_as_newcomers,
        "nobody is asked while members may still be leaving"
    );
    let asked = refills(&mut room, &conns);
    // The lowest leaf of each hit block: leaf 8 (conn 9), then leaf 16 (conn 17).
    let who: Vec<u64> = asked.iter().map(|(c, _)| *c).collect();
    assert_eq!(who, [9, 17], "{asked:?}");
    for (_, gap) in &asked {
        assert!(*gap >= REFILL_INTERVAL, "{asked:?}");
    }
    let remaining = conns.iter().filter(|c| ![10, 20].contains(*c));
    for conn in remaining {
        assert_eq!(room.member(*conn).epoch(), room.member(HOST).epoch());
        assert_eq!(
            room.member(*conn).security_code(),
            room.member(HOST).security_code()
        );
    }
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
}

/// A member asked to refill that never does (an old client) is not asked again after its
/// deadline; another member of its block is, so the parents still get filled.
#[test]
fn a_member_that_does_not_refill_is_replaced_by_another_of_its_block() {
    let mut room = hosted_with_twenty_four();
    let conns: Vec<u64> = (1..=24).collect();
    room.clients.ignores_update_requests.insert(9);
    let before_leave = update_requests(&room, 9);
    room.msg(10, ClientMessage::Leave);
    let asked = refills(&mut room, &conns);
    let who: Vec<u64> = asked.iter().map(|(c, _)| *c).collect();
    assert_eq!(who, [9, 11], "{asked:?}");
    assert_eq!(update_requests(&room, 9), before_leave + 1, "asked once");
    assert_eq!(room.meeting.poll_timeout(), None, "nothing is out");
    assert_eq!(
        room.member(11).security_code(),
        room.member(HOST).security_code()
    );
}

/// A burst of admissions is one commit: only the last of the proposals sent
/// together names the committer, who commits them all at once.
#[test]
fn admissions_made_together_are_added_by_one_commit() {
    let mut room = hosted();
    for conn in 2..=4 {
        room.wait(conn, &format!("user{conn}"));
    }
    let epoch = room.member(HOST).epoch();
    let out = room.msg(HOST, ClientMessage::AdmitAll);
    assert_eq!(
        crate::support::errors(&out, HOST),
        [],
        "no commit lost a race"
    );
    let mut roster = room.member(HOST).roster();
    roster.sort();
    assert_eq!(roster, ["1", "2", "3", "4"]);
    // One epoch for the three Adds; in a group this small no update fills anything.
    assert_eq!(room.member(HOST).epoch(), epoch + 1);
    for conn in 2..=4 {
        assert_eq!(
            room.member(conn).security_code(),
            room.member(HOST).security_code()
        );
    }
}

/// A newcomer's update deadline that passes while proposals are out (their
/// committer hangs) is dropped then and there: no deadline is left in the
/// past for the meeting to be woken by again and again.
#[test]
fn an_update_deadline_passing_while_proposals_are_out_leaves_no_past_deadline() {
    let mut room = hosted_with_twelve();
    room.clients.ignores_update_requests.insert(13);
    room.admit(13, "user13");
    let update_deadline = room.meeting.poll_timeout().expect("an update deadline");
    room.clients.frozen.insert(HOST);
    room.now += Duration::from_millis(500);
    room.wait(14, "user14");
    room.msg(
        HOST,
        ClientMessage::Admit {
            participant: room.id_of(14),
        },
    );
    room.now = update_deadline;
    room.input(Input::Timeout);
    let next = room
        .meeting
        .poll_timeout()
        .expect("the committer's deadline");
    assert!(next > room.now, "a deadline in the past: {next:?}");
}
