//! The client's end of the meeting's end-to-end encryption: an MLS member
//! driven by the server's `mls_*` messages, whose epoch keys the media peer
//! uses to SFrame-encrypt every frame it sends and decrypt every one it gets.
//!
//! No frame ever leaves in clear: until the first epoch's keys exist the peer
//! drops what it would send.

use std::collections::{BTreeSet, VecDeque};

use conclave_e2ee::{CommitOut, E2eeError, EpochKeys, Member, Received, RosterCheck, SendSwitch};
use conclave_proto::{ClientMessage, ErrorCode, ParticipantId, ServerMessage};
use data_encoding::BASE64;

/// How hands, reactions and polls begin inside the MLS plaintext
/// ([`crate::appmsg`]): an old web client sent them on the chat relay, and
/// they must not show as chat lines.
pub use crate::appmsg::APP_MESSAGE_PREFIX;

/// Which relay a sealed message went out on: the server answers both in
/// the order sent, so one queue keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    Chat,
    App,
}

/// What a server message changed, for the session to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new epoch: hand its keys to the media peer, which sends with them
    /// as the [`SendSwitch`] says. At once (and with a key frame) for the
    /// first epoch and for a commit that removed someone, who must not read
    /// what is sent from then on; otherwise after a short delay, once every
    /// member holds them, with no key frame (see `conclave_e2ee::SEND_SWITCH_DELAY_MS`).
    Epoch(EpochKeys, SendSwitch),
    /// A chat message from another member, decrypted.
    Chat { from: String, text: String },
    /// An application message (hands, reactions, polls: [`crate::appmsg`])
    /// whose MLS sender is `from`, the one the server named; or our own,
    /// as the server relayed it back (in the order every member applies).
    App { from: String, text: String },
    /// The group removed this member: it can decrypt nothing more.
    Removed,
}

/// One member's MLS state and what it has to say to the server.
pub struct E2ee {
    me: ParticipantId,
    member: Member,
    in_group: bool,
    /// The participants the server announced (`joined`, `participant_joined/left`): the
    /// member commits Adds only for these, and shows group members outside them.
    announced: BTreeSet<ParticipantId>,
    /// Our commit is out and neither it nor another member's has come back.
    /// A second commit in the same epoch would replace the first in the
    /// member's state; if the server then took the first, its echo could not
    /// be applied and this member would stay behind for good.
    committing: bool,
    /// Texts of our chat messages the server has neither relayed back nor
    /// refused yet, oldest first: it answers each in order.
    unanswered: VecDeque<(Relay, String)>,
    /// Texts the server refused as `stale_chat`, to encrypt again once MLS
    /// lets us (after the commit that ended their epoch).
    resend: VecDeque<(Relay, String)>,
    out: Vec<ClientMessage>,
}

/// Our chat texts kept for a possible resend, at most.
const MAX_UNANSWERED_CHATS: usize = 64;

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, E2eeError> {
    BASE64
        .decode(text.as_bytes())
        .map_err(|_| E2eeError::InvalidArgument("base64"))
}

impl E2ee {
    /// A member for participant `me`, and the key package message to send.
    pub fn new(me: ParticipantId) -> Result<Self, E2eeError> {
        Self::with_member(me, Member::new(&me.0.to_string())?)
    }

    /// [`E2ee::new`] around a member made elsewhere: one whose leaf carries
    /// an ID token for its key ([`Member::with_signing_key`]), as a browser
    /// signed in through a provider makes it.
    pub fn with_member(me: ParticipantId, member: Member) -> Result<Self, E2eeError> {
        let key_package = b64(&member.key_package()?);
        Ok(E2ee {
            me,
            member,
            in_group: false,
            announced: BTreeSet::new(),
            committing: false,
            unanswered: VecDeque::new(),
            resend: VecDeque::new(),
            out: vec![ClientMessage::MlsKeyPackage { key_package }],
        })
    }

    /// Messages for the server.
    pub fn take_messages(&mut self) -> Vec<ClientMessage> {
        std::mem::take(&mut self.out)
    }

    pub fn in_group(&self) -> bool {
        self.in_group
    }

    pub fn epoch(&self) -> u64 {
        self.member.epoch()
    }

    /// The digits every member compares (empty before the group).
    pub fn security_code(&self) -> String {
        if self.in_group {
            self.member.security_code()
        } else {
            String::new()
        }
    }

    /// Participant ids in the group, as the group itself says.
    pub fn roster(&self) -> Vec<String> {
        if self.in_group {
            self.member.roster()
        } else {
            Vec::new()
        }
    }

    /// The group against the participants the server announced: a member in
    /// `not_announced` holds the meeting's keys without being in the list.
    pub fn roster_check(&self) -> RosterCheck {
        if self.in_group {
            self.member.roster_check()
        } else {
            RosterCheck::default()
        }
    }

    /// The group's leaves, for the names their ID tokens vouch for
    /// ([`crate::names`]); none before the group.
    pub fn leaves(&self) -> Vec<conclave_e2ee::Leaf> {
        if self.in_group {
            self.member.leaves()
        } else {
            Vec::new()
        }
    }

    /// The participant list `joined` gave (the session makes this member after
    /// it, so the member never sees that message itself). Without it, a member
    /// named to commit would leave out the Add of anyone already here: the
    /// server would propose them again, epoch after epoch.
    pub fn set_participants(&mut self, ids: impl IntoIterator<Item = ParticipantId>) {
        self.announced = ids.into_iter().collect();
        self.announce();
    }

    fn announce(&mut self) {
        self.member
            .set_announced(self.announced.iter().map(|id| id.0.to_string()));
    }

    /// A chat message for the server to relay.
    pub fn chat(&mut self, text: &str) -> Result<ClientMessage, E2eeError> {
        self.seal(Relay::Chat, text)
    }

    /// An application message (its whole plaintext, prefix included) for
    /// the server's `app` relay, which carries it while chat is off too.
    pub fn app(&mut self, text: &str) -> Result<ClientMessage, E2eeError> {
        self.seal(Relay::App, text)
    }

    fn seal(&mut self, relay: Relay, text: &str) -> Result<ClientMessage, E2eeError> {
        let payload = b64(&self.member.encrypt_chat(text)?);
        if self.unanswered.len() == MAX_UNANSWERED_CHATS {
            self.unanswered.pop_front();
        }
        self.unanswered.push_back((relay, text.to_string()));
        Ok(match relay {
            Relay::Chat => ClientMessage::Chat { payload },
            Relay::App => ClientMessage::App { payload },
        })
    }

    /// Encrypts again, in the current epoch, what the server refused as stale.
    fn resend_stale(&mut self) {
        while let Some((relay, text)) = self.resend.pop_front() {
            match self.seal(relay, &text) {
                Ok(msg) => self.out.push(msg),
                Err(_) => {
                    // MLS will not encrypt yet (a proposal waits): after the next commit.
                    self.resend.push_front((relay, text));
                    break;
                }
            }
        }
    }

    /// Commits the proposals received this epoch, if any; the server
    /// forwards the commit back and it is applied then.
    fn commit(&mut self) -> Result<(), E2eeError> {
        if self.committing {
            // Proposals that came after our commit wait for the next epoch:
            // the server proposes them again there.
            return Ok(());
        }
        if let Some(c) = self.member.commit()? {
            self.send_commit(&c);
        }
        Ok(())
    }

    /// An update commit (a fresh path, and whatever proposals this member
    /// holds), as the server asks of a newcomer so the tree fills.
    fn update(&mut self) -> Result<(), E2eeError> {
        if self.committing {
            return Ok(());
        }
        let c = self.member.update()?;
        self.send_commit(&c);
        Ok(())
    }

    /// Sends our commit `c`, and commits nothing more while it is out.
    fn send_commit(&mut self, c: &CommitOut) {
        self.committing = true;
        self.out.push(ClientMessage::MlsCommit {
            commit: b64(&c.commit),
            welcome: c.welcome.as_deref().map(b64),
            group_info: None,
        });
    }

    /// The epoch's keys as they are now, for a media peer started after
    /// the group (a new peer connection after a resume); `None` outside it.
    pub fn current_keys(&self) -> Option<EpochKeys> {
        self.in_group.then(|| self.member.sframe_keys())
    }

    fn keys(&self, send: SendSwitch) -> Change {
        Change::Epoch(self.member.sframe_keys(), send)
    }

    /// Takes one server message; the ones E2EE does not care about pass by.
    pub fn handle(&mut self, msg: &ServerMessage) -> Result<Option<Change>, E2eeError> {
        match msg {
            ServerMessage::Joined { participants, .. } => {
                self.announced = participants.iter().map(|p| p.id).collect();
                self.announce();
                Ok(None)
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.announced.insert(participant.id);
                self.announce();
                Ok(None)
            }
            ServerMessage::ParticipantLeft { participant, .. } => {
                self.announced.remove(participant);
                self.announce();
                Ok(None)
            }
            ServerMessage::MlsCreateGroup { e2ee } => {
                let group_id = unb64(&e2ee.group_id)?;
                let external = unb64(&e2ee.external_sender)?;
                let group_info = self.member.create_group(&group_id, &external)?;
                self.in_group = true;
                self.out.push(ClientMessage::MlsGroupInfo {
                    group_info: b64(&group_info),
                });
                Ok(Some(self.keys(SendSwitch::AtOnce)))
            }
            ServerMessage::MlsWelcome {
                welcome,
                ratchet_tree,
            } => {
                self.member.join(&unb64(welcome)?, &unb64(ratchet_tree)?)?;
                self.in_group = true;
                Ok(Some(self.keys(SendSwitch::AtOnce)))
            }
            ServerMessage::MlsMessage { message, commit_by } => {
                match self.member.handle(&unb64(message)?)? {
                    Received::Proposal => {
                        if *commit_by == Some(self.me) {
                            self.commit()?;
                        }
                        Ok(None)
                    }
                    Received::Commit {
                        removed_me: true, ..
                    } => {
                        self.committing = false;
                        Ok(Some(Change::Removed))
                    }
                    Received::Commit { removed, .. } => {
                        self.committing = false;
                        self.resend_stale();
                        let send = if removed.is_empty() {
                            SendSwitch::AfterDelay
                        } else {
                            SendSwitch::AtOnce
                        };
                        Ok(Some(self.keys(send)))
                    }
                    Received::Ignored => Ok(None),
                }
            }
            ServerMessage::MlsCommitRequest if self.in_group => {
                self.commit()?;
                Ok(None)
            }
            ServerMessage::MlsUpdateRequest if self.in_group => {
                self.update()?;
                Ok(None)
            }
            ServerMessage::Chat { from, .. } | ServerMessage::App { from, .. }
                if *from == self.me =>
            {
                // Ours, relayed: the server took it. MLS cannot open our own
                // ciphertext; the text was kept.
                Ok(match self.unanswered.pop_front() {
                    Some((Relay::App, text)) => Some(Change::App {
                        from: self.me.0.to_string(),
                        text,
                    }),
                    _ => None,
                })
            }
            // Only an MLS application message opens: a commit sent as chat is refused.
            ServerMessage::Chat { payload, .. } => {
                Ok(self.member.open_chat(&unb64(payload)?)?.map(|chat| {
                    if chat.text.starts_with(APP_MESSAGE_PREFIX) {
                        Change::App {
                            from: chat.sender,
                            text: chat.text,
                        }
                    } else {
                        Change::Chat {
                            from: chat.sender,
                            text: chat.text,
                        }
                    }
                }))
            }
            // Never shown as chat, whatever it holds: `app` must not carry
            // chat while chat is off. The server's `from` must be the MLS sender.
            ServerMessage::App { from, payload } => Ok(self
                .member
                .open_chat(&unb64(payload)?)?
                .filter(|m| {
                    m.sender == from.0.to_string() && m.text.starts_with(APP_MESSAGE_PREFIX)
                })
                .map(|m| Change::App {
                    from: m.sender,
                    text: m.text,
                })),
            // Encrypted in an epoch the group left before the server relayed
            // it: nobody could open it. Again, in the current epoch.
            ServerMessage::Error {
                code: ErrorCode::StaleChat,
                ..
            } => {
                if let Some(sent) = self.unanswered.pop_front() {
                    self.resend.push_back(sent);
                    self.resend_stale();
                }
                Ok(None)
            }
            // The commit that won arrives as an mls_message; a refused one
            // leaves us free to commit when asked again.
            ServerMessage::Error {
                code: ErrorCode::StaleCommit | ErrorCode::MlsRefused,
                ..
            } => {
                self.committing = false;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use conclave_e2ee::DeliveryService;
    use conclave_proto::{E2eeSetup, Participant, Presence, Role};

    use super::*;

    fn joined(id: u64) -> ServerMessage {
        ServerMessage::ParticipantJoined {
            participant: Participant {
                id: ParticipantId(id),
                name: format!("p{id}"),
                role: Role::Participant,
                signed_in: false,
                audio: false,
                video: false,
                screen: false,
                presence: Presence::Connected,
                recording: false,
                publish_allowed: false,
            },
        }
    }

    /// A delivery service and participant 1, who created the group.
    fn hosted_group() -> (DeliveryService, E2ee) {
        let mut ds = DeliveryService::new().expect("ds");
        let mut host = E2ee::new(ParticipantId(1)).expect("host");
        host.take_messages();
        let setup = E2eeSetup {
            group_id: b64(b"g"),
            external_sender: b64(&ds.external_sender()),
        };
        host.handle(&ServerMessage::MlsCreateGroup { e2ee: setup })
            .expect("create");
        let Some(ClientMessage::MlsGroupInfo { group_info }) = host.take_messages().pop() else {
            panic!("no group info");
        };
        ds.observe_group(&unb64(&group_info).expect("b64"))
            .expect("observe");
        (ds, host)
    }

    fn key_package(e: &mut E2ee) -> Vec<u8> {
        match e.take_messages().pop() {
            Some(ClientMessage::MlsKeyPackage { key_package }) => unb64(&key_package).expect("b64"),
            other => panic!("{other:?}"),
        }
    }

    fn proposal(bytes: &[u8], commit_by: u64) -> ServerMessage {
        ServerMessage::MlsMessage {
            message: b64(bytes),
            commit_by: Some(ParticipantId(commit_by)),
        }
    }

    /// A committer that gets more proposals while its commit is out must not
    /// commit again: the second commit would replace the first in its state,
    /// and when the server takes the first, its echo could not be applied.
    #[test]
    fn a_committer_does_not_commit_twice_in_one_epoch_and_follows_its_first_commit() {
        let (mut ds, mut host) = hosted_group();
        let kp2 = key_package(&mut E2ee::new(ParticipantId(2)).expect("2"));
        let kp3 = key_package(&mut E2ee::new(ParticipantId(3)).expect("3"));
        for id in [1, 2, 3] {
            host.handle(&joined(id)).expect("announced");
        }

        let add2 = ds.propose_add(&kp2).expect("propose 2");
        host.handle(&proposal(&add2, 1)).expect("proposal");
        let first = match host.take_messages().pop() {
            Some(ClientMessage::MlsCommit { commit, .. }) => unb64(&commit).expect("b64"),
            other => panic!("expected a commit, got {other:?}"),
        };
        // Another proposal of the same epoch while the commit is out.
        let add3 = ds.propose_add(&kp3).expect("propose 3");
        host.handle(&proposal(&add3, 1)).expect("proposal");
        assert!(host.take_messages().is_empty(), "no second commit");

        // The server takes the first; its echo moves the host on.
        let epoch = ds.accept_commit(&first).expect("accepted");
        let change = host
            .handle(&ServerMessage::MlsMessage {
                message: b64(&first),
                commit_by: None,
            })
            .expect("echo");
        assert!(matches!(change, Some(Change::Epoch(..))), "{change:?}");
        assert_eq!(host.epoch(), epoch);
        assert_eq!(host.roster(), ["1", "2"]);
    }

    /// The web client's hands, reactions and polls (sent on the chat relay
    /// before they had the `app` relay, and on `app` now) open as
    /// application messages, never as chat lines; on `app`, only from the
    /// MLS sender the server names.
    #[test]
    fn web_application_messages_open_as_such_never_as_chat() {
        let (mut ds, mut host) = hosted_group();
        let mut guest = E2ee::new(ParticipantId(2)).expect("guest");
        let kp2 = key_package(&mut guest);
        for id in [1, 2] {
            host.handle(&joined(id)).expect("announced");
            guest.handle(&joined(id)).expect("announced");
        }
        let add = ds.propose_add(&kp2).expect("propose");
        host.handle(&proposal(&add, 1)).expect("proposal");
        let Some(ClientMessage::MlsCommit {
            commit,
            welcome: Some(welcome),
            ..
        }) = host.take_messages().pop()
        else {
            panic!("no commit with a welcome");
        };
        let commit = unb64(&commit).expect("b64");
        ds.accept_commit(&commit).expect("accepted");
        host.handle(&ServerMessage::MlsMessage {
            message: b64(&commit),
            commit_by: None,
        })
        .expect("echo");
        guest
            .handle(&ServerMessage::MlsWelcome {
                welcome,
                ratchet_tree: b64(&ds.ratchet_tree().expect("tree")).into(),
            })
            .expect("welcome");
        assert!(guest.in_group());

        let relay = |host: &mut E2ee, text: &str| {
            let ClientMessage::Chat { payload } = host.chat(text).expect("chat") else {
                panic!("not chat");
            };
            ServerMessage::Chat {
                from: ParticipantId(1),
                payload,
            }
        };
        let line = relay(&mut host, "hello");
        assert_eq!(
            guest.handle(&line).expect("open"),
            Some(Change::Chat {
                from: "1".into(),
                text: "hello".into()
            })
        );
        let hand = relay(
            &mut host,
            &format!(r#"{APP_MESSAGE_PREFIX}{{"type":"hand","raised":true}}"#),
        );
        assert_eq!(
            guest.handle(&hand).expect("open"),
            Some(Change::App {
                from: "1".into(),
                text: format!(r#"{APP_MESSAGE_PREFIX}{{"type":"hand","raised":true}}"#),
            })
        );
        // On the `app` relay: opened for the member named as sender only.
        let ClientMessage::App { payload } = host.app("\u{0}conclave-app:{}").expect("app") else {
            panic!("not app");
        };
        let forged = ServerMessage::App {
            from: ParticipantId(3),
            payload: payload.clone(),
        };
        assert_eq!(guest.handle(&forged).expect("open"), None);
        // The host's own, relayed back in order (its two chat lines first),
        // is the text it sent.
        for _ in 0..2 {
            let chat_echo = ServerMessage::Chat {
                from: ParticipantId(1),
                payload: String::new(),
            };
            assert_eq!(host.handle(&chat_echo).expect("echo"), None);
        }
        let echo = ServerMessage::App {
            from: ParticipantId(1),
            payload,
        };
        assert!(matches!(
            host.handle(&echo).expect("echo"),
            Some(Change::App { .. })
        ));
    }
}
