//! Chat, hands, reactions and polls at the native client: what a person
//! types (one command a line, [`Command::parse`]) and what the group's
//! application messages change, told back as lines to show
//! ([`Features::apply`]). Sans-IO: the session seals and sends, this only
//! decides, so every rule is tested with plain values.
//!
//! The rules are the web client's (web/appmsg.js): hands in the order the
//! server relayed them, only a host's or co-host's `hand_lower`, `poll` and
//! `poll_results` count (as the server's roster shows the sender), a sender's
//! reactions beyond [`RECEIVE_REACTIONS`] in [`RATE_WINDOW`] are dropped.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use conclave_proto::ParticipantId;

use crate::appmsg::{self, AppMessage};

/// Reactions shown per sender within [`RATE_WINDOW`]; more are dropped.
pub const RECEIVE_REACTIONS: usize = 5;
/// Reactions this client sends within [`RATE_WINDOW`] (under the receivers' limit).
pub const SEND_REACTIONS: usize = 4;
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// What a person at the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Chat(String),
    /// Raise (true) or lower (false) one's own hand.
    Hand(bool),
    React(&'static str),
    /// Answer the poll shown: an index into its options.
    Vote(usize),
    Help,
}

/// The commands, for `/help` and for a line that is not one.
pub const HELP: &str = "Type a line to chat. Commands: /hand (raise your hand), /lower (lower it), \
/react EMOJI-OR-NAME (👍 thumbs up, 👏 clapping hands, 😂 laughter, ❤️ heart, 🎉 party popper), \
/vote N (answer the poll shown with option N), /help. Start a chat line with // to begin it with /.";

impl Command {
    /// One typed line; `Err` says what is wrong with it. An empty line is `Ok(None)`.
    pub fn parse(line: &str) -> Result<Option<Command>, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Ok(None);
        }
        if let Some(chat) = line.strip_prefix("//") {
            return Ok(Some(Command::Chat(format!("/{chat}"))));
        }
        let Some(cmd) = line.strip_prefix('/') else {
            return Ok(Some(Command::Chat(line.to_string())));
        };
        let (word, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let rest = rest.trim();
        match word {
            "hand" | "raise" => Ok(Some(Command::Hand(true))),
            "lower" => Ok(Some(Command::Hand(false))),
            "react" => appmsg::reaction(rest)
                .map(|e| Some(Command::React(e)))
                .ok_or_else(|| format!("No such reaction: {rest:?}. {HELP}")),
            "vote" => match rest.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Some(Command::Vote(n - 1))),
                _ => Err(format!("/vote takes an option's number, from 1: {rest:?}")),
            },
            "help" => Ok(Some(Command::Help)),
            other => Err(format!("Unknown command /{other}. {HELP}")),
        }
    }
}

/// The poll shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub id: String,
    pub from: ParticipantId,
    pub question: String,
    pub options: Vec<String>,
    /// This member's answer, once echoed.
    pub mine: Option<usize>,
    pub results: Option<Vec<u64>>,
}

/// What a sender is, as the server's roster says when its message arrives.
#[derive(Debug, Clone)]
pub struct Sender {
    pub id: ParticipantId,
    pub name: String,
    pub moderates: bool,
}

/// Hands, the poll and reaction limits, as this member applied the group's messages.
#[derive(Debug, Default)]
pub struct Features {
    /// Raised hands, in the order the server relayed them.
    pub hands: Vec<ParticipantId>,
    pub poll: Option<Poll>,
    received: BTreeMap<ParticipantId, VecDeque<Instant>>,
    sent: VecDeque<Instant>,
}

impl Features {
    /// Applies one application message from `from` (this member's own,
    /// echoed, included); returns the line to show, if any. `you` is this
    /// member.
    pub fn apply(
        &mut self,
        you: ParticipantId,
        from: &Sender,
        msg: AppMessage,
        now: Instant,
    ) -> Option<String> {
        let who = if from.id == you {
            "You".to_string()
        } else {
            from.name.clone()
        };
        match msg {
            AppMessage::Hand { raised } => {
                let had = self.hands.contains(&from.id);
                if raised == had {
                    return None; // a repeat for a newcomer
                }
                self.set_hand(from.id, raised);
                let verb = if raised { "raised" } else { "lowered" };
                let whose = if from.id == you { "your" } else { "their" };
                Some(format!("{who} {verb} {whose} hand."))
            }
            AppMessage::HandLower { participant } => {
                if !from.moderates {
                    tracing::warn!(from = %from.id, "hand_lower from a non-host ignored");
                    return None;
                }
                let id = ParticipantId(participant);
                if !self.hands.contains(&id) {
                    return None;
                }
                self.set_hand(id, false);
                (id == you && from.id != you).then(|| "A host lowered your hand.".to_string())
            }
            AppMessage::Reaction { emoji } => {
                let recent = self.received.entry(from.id).or_default();
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
                {
                    recent.pop_front();
                }
                if recent.len() >= RECEIVE_REACTIONS {
                    return None;
                }
                recent.push_back(now);
                let name = appmsg::reaction_name(emoji).unwrap_or("");
                Some(format!("{who} reacted {emoji} ({name})."))
            }
            AppMessage::Poll {
                id,
                question,
                options,
            } => {
                if !from.moderates {
                    tracing::warn!(from = %from.id, "poll from a non-host ignored");
                    return None;
                }
                if self
                    .poll
                    .as_ref()
                    .is_some_and(|p| p.id == id && p.from == from.id)
                {
                    return None;
                }
                let list: Vec<String> = options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("{}) {o}", i + 1))
                    .collect();
                let line = format!(
                    "Poll from {who}: {question} {} (answer with /vote N)",
                    list.join(" ")
                );
                self.poll = Some(Poll {
                    id,
                    from: from.id,
                    question,
                    options,
                    mine: None,
                    results: None,
                });
                Some(line)
            }
            AppMessage::PollAnswer { id, choice } => {
                let poll = self.poll.as_mut().filter(|p| p.id == id)?;
                let option = poll.options.get(choice)?.clone();
                if from.id == you {
                    poll.mine = Some(choice);
                    return Some(format!("You answered the poll: {option}."));
                }
                None
            }
            AppMessage::PollResults { id, counts } => {
                if !from.moderates {
                    tracing::warn!(from = %from.id, "poll_results from a non-host ignored");
                    return None;
                }
                let poll = self
                    .poll
                    .as_mut()
                    .filter(|p| p.id == id && p.options.len() == counts.len())?;
                if poll.results.as_ref() == Some(&counts) {
                    return None;
                }
                let list: Vec<String> = poll
                    .options
                    .iter()
                    .zip(&counts)
                    .map(|(o, c)| format!("{o}: {c}"))
                    .collect();
                poll.results = Some(counts);
                Some(format!(
                    "Poll results: {} ({})",
                    poll.question,
                    list.join(", ")
                ))
            }
            AppMessage::Spotlight { .. } => None,
        }
    }

    fn set_hand(&mut self, id: ParticipantId, raised: bool) {
        self.hands.retain(|h| *h != id);
        if raised {
            self.hands.push(id);
        }
    }

    /// A member left: their hand goes down.
    pub fn left(&mut self, id: ParticipantId) {
        self.hands.retain(|h| *h != id);
        self.received.remove(&id);
    }

    /// The message a command sends, or why not (`Err`, to show). Chat and
    /// help are not application messages: `Ok(None)`.
    pub fn message_for(
        &mut self,
        cmd: &Command,
        now: Instant,
    ) -> Result<Option<AppMessage>, String> {
        match cmd {
            Command::Chat(_) | Command::Help => Ok(None),
            Command::Hand(raised) => Ok(Some(AppMessage::Hand { raised: *raised })),
            Command::React(emoji) => {
                while self
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
                {
                    self.sent.pop_front();
                }
                if self.sent.len() >= SEND_REACTIONS {
                    return Err("Too many reactions; wait a moment.".into());
                }
                self.sent.push_back(now);
                Ok(Some(AppMessage::Reaction { emoji }))
            }
            Command::Vote(choice) => {
                let poll = self.poll.as_ref().ok_or("There is no poll to answer.")?;
                if *choice >= poll.options.len() {
                    return Err(format!("The poll has options 1 to {}.", poll.options.len()));
                }
                Ok(Some(AppMessage::PollAnswer {
                    id: poll.id.clone(),
                    choice: *choice,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YOU: ParticipantId = ParticipantId(1);

    fn sender(id: u64, moderates: bool) -> Sender {
        Sender {
            id: ParticipantId(id),
            name: format!("P{id}"),
            moderates,
        }
    }

    fn poll() -> AppMessage {
        AppMessage::Poll {
            id: "0123456789abcdef".into(),
            question: "Lunch?".into(),
            options: vec!["Pizza".into(), "<b>Salad</b>".into()],
        }
    }

    #[test]
    fn lines_parse_into_commands() {
        assert_eq!(Command::parse(""), Ok(None));
        assert_eq!(
            Command::parse("hi all\n"),
            Ok(Some(Command::Chat("hi all".into())))
        );
        assert_eq!(
            Command::parse("//shrug"),
            Ok(Some(Command::Chat("/shrug".into())))
        );
        assert_eq!(Command::parse("/hand"), Ok(Some(Command::Hand(true))));
        assert_eq!(Command::parse("/lower"), Ok(Some(Command::Hand(false))));
        assert_eq!(Command::parse("/react 👍"), Ok(Some(Command::React("👍"))));
        assert_eq!(
            Command::parse("/react heart"),
            Ok(Some(Command::React("❤️")))
        );
        assert_eq!(Command::parse("/vote 2"), Ok(Some(Command::Vote(1))));
        assert!(Command::parse("/vote 0").is_err());
        assert!(Command::parse("/vote two").is_err());
        assert!(Command::parse("/react 🚀").is_err());
        assert!(Command::parse("/nuke").is_err());
    }

    #[test]
    fn hands_go_up_in_order_and_only_a_host_lowers_another() {
        let now = Instant::now();
        let mut f = Features::default();
        let line = f.apply(
            YOU,
            &sender(2, false),
            AppMessage::Hand { raised: true },
            now,
        );
        assert_eq!(line.as_deref(), Some("P2 raised their hand."));
        f.apply(
            YOU,
            &sender(1, false),
            AppMessage::Hand { raised: true },
            now,
        );
        assert_eq!(f.hands, [ParticipantId(2), ParticipantId(1)]);
        // A repeat (for a newcomer) changes nothing and says nothing.
        assert_eq!(
            f.apply(
                YOU,
                &sender(2, false),
                AppMessage::Hand { raised: true },
                now
            ),
            None
        );
        // A participant's hand_lower is ignored.
        let lower = AppMessage::HandLower { participant: 1 };
        assert_eq!(f.apply(YOU, &sender(2, false), lower.clone(), now), None);
        assert_eq!(f.hands.len(), 2);
        // A host's is not.
        let line = f.apply(YOU, &sender(3, true), lower, now);
        assert_eq!(line.as_deref(), Some("A host lowered your hand."));
        assert_eq!(f.hands, [ParticipantId(2)]);
        f.left(ParticipantId(2));
        assert!(f.hands.is_empty());
    }

    #[test]
    fn reactions_beyond_the_limit_are_dropped_per_sender() {
        let t0 = Instant::now();
        let mut f = Features::default();
        let react = || AppMessage::Reaction { emoji: "🎉" };
        for _ in 0..RECEIVE_REACTIONS {
            assert!(f.apply(YOU, &sender(2, false), react(), t0).is_some());
        }
        assert_eq!(f.apply(YOU, &sender(2, false), react(), t0), None);
        assert!(f.apply(YOU, &sender(3, false), react(), t0).is_some());
        assert!(
            f.apply(YOU, &sender(2, false), react(), t0 + RATE_WINDOW)
                .is_some()
        );
        // Sending is held under the receivers' limit.
        for _ in 0..SEND_REACTIONS {
            assert!(f.message_for(&Command::React("👍"), t0).is_ok());
        }
        assert!(f.message_for(&Command::React("👍"), t0).is_err());
        assert!(
            f.message_for(&Command::React("👍"), t0 + RATE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn only_a_hosts_poll_shows_and_a_vote_answers_it() {
        let now = Instant::now();
        let mut f = Features::default();
        assert!(f.message_for(&Command::Vote(0), now).is_err());
        assert_eq!(f.apply(YOU, &sender(2, false), poll(), now), None);
        let line = f.apply(YOU, &sender(3, true), poll(), now).expect("shown");
        assert_eq!(
            line,
            "Poll from P3: Lunch? 1) Pizza 2) <b>Salad</b> (answer with /vote N)"
        );
        assert!(f.message_for(&Command::Vote(2), now).is_err());
        let answer = f
            .message_for(&Command::Vote(1), now)
            .expect("ok")
            .expect("a message");
        assert_eq!(
            answer,
            AppMessage::PollAnswer {
                id: "0123456789abcdef".into(),
                choice: 1
            }
        );
        let line = f.apply(YOU, &sender(1, false), answer, now);
        assert_eq!(
            line.as_deref(),
            Some("You answered the poll: <b>Salad</b>.")
        );
        let results = AppMessage::PollResults {
            id: "0123456789abcdef".into(),
            counts: vec![2, 1],
        };
        assert_eq!(f.apply(YOU, &sender(2, false), results.clone(), now), None);
        let line = f.apply(YOU, &sender(3, true), results, now);
        assert_eq!(
            line.as_deref(),
            Some("Poll results: Lunch? (Pizza: 2, <b>Salad</b>: 1)")
        );
    }
}
