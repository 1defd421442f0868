//! Raised hands, reactions and polls as the web client sends them
//! (web/appmsg.js, docs/protocol.md "Application messages inside the
//! group"): MLS application messages whose plaintext is
//! [`APP_MESSAGE_PREFIX`] and one JSON object, on the server's `app` relay.
//!
//! A receiver checks everything itself, whoever sent it: the server cannot
//! read these, so it cannot vouch for them. The checks are the web client's,
//! field by field, so that both kinds of client take and drop the same
//! messages and show the same hands in the same order.

use serde_json::{Value, json};

/// How an application message begins inside the MLS plaintext; chat text
/// never starts with a NUL, so the two cannot be confused.
pub const APP_MESSAGE_PREFIX: &str = "\u{0}conclave-app:";
/// Largest plaintext taken, in UTF-16 code units as the web client counts.
pub const MAX_APP_CHARS: usize = 4096;
pub const POLL_MAX_QUESTION: usize = 300;
pub const POLL_MAX_OPTION: usize = 100;
pub const POLL_MIN_OPTIONS: usize = 2;
pub const POLL_MAX_OPTIONS: usize = 6;
/// Largest count in shared poll results.
pub const POLL_MAX_COUNT: u64 = 100_000;

/// The reactions on offer, with the names people type; anything else
/// received is dropped.
pub const REACTIONS: [(&str, &str); 5] = [
    ("👍", "thumbs up"),
    ("👏", "clapping hands"),
    ("😂", "laughter"),
    ("❤️", "heart"),
    ("🎉", "party popper"),
];

/// The emoji of a reaction, from the emoji itself or its name (or the
/// name's first word, "thumbs", "heart"), or `None` when it is not offered.
pub fn reaction(input: &str) -> Option<&'static str> {
    let t = input.trim();
    let lower = t.to_lowercase();
    REACTIONS
        .iter()
        .find(|(emoji, name)| {
            *emoji == t
                || emoji.trim_end_matches('\u{fe0f}') == t
                || *name == lower
                || name.split(' ').next() == Some(lower.as_str())
        })
        .map(|(emoji, _)| *emoji)
}

/// The name of an offered reaction's emoji.
pub fn reaction_name(emoji: &str) -> Option<&'static str> {
    REACTIONS.iter().find(|(e, _)| *e == emoji).map(|(_, n)| *n)
}

/// One application message, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppMessage {
    /// The sender's own hand goes up or down.
    Hand {
        raised: bool,
    },
    /// A host lowers someone's hand.
    HandLower {
        participant: u64,
    },
    Reaction {
        emoji: &'static str,
    },
    /// A host asks; `id` is 16 lowercase hex digits.
    Poll {
        id: String,
        question: String,
        options: Vec<String>,
    },
    /// A member's answer: an index into the poll's options.
    PollAnswer {
        id: String,
        choice: usize,
    },
    /// A host shares the counts, one per option.
    PollResults {
        id: String,
        counts: Vec<u64>,
    },
    /// A host shows one member big for everyone (`None`: no longer).
    Spotlight {
        participant: Option<u64>,
    },
}

/// UTF-16 code units, as JavaScript's `length` counts.
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A trimmed text of 1 to `max` code units.
fn text(v: &Value, max: usize) -> Option<String> {
    let t = v.as_str()?.trim();
    (!t.is_empty() && js_len(t) <= max).then(|| t.to_string())
}

/// A participant ID: a non-negative integer JavaScript holds exactly.
fn participant_id(v: &Value) -> Option<u64> {
    v.as_u64().filter(|n| *n < (1 << 53))
}

fn poll_id(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    (s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| s.to_string())
}

impl AppMessage {
    /// `raw` as the web client's `validate` takes it, or `None`.
    pub fn validate(raw: &Value) -> Option<AppMessage> {
        let obj = raw.as_object()?;
        let field = |name: &str| obj.get(name).unwrap_or(&Value::Null);
        match obj.get("type")?.as_str()? {
            "hand" => Some(AppMessage::Hand {
                raised: field("raised").as_bool()?,
            }),
            "hand_lower" => Some(AppMessage::HandLower {
                participant: participant_id(field("participant"))?,
            }),
            "reaction" => {
                let e = field("emoji").as_str()?;
                let emoji = REACTIONS.iter().find(|(x, _)| *x == e)?.0;
                Some(AppMessage::Reaction { emoji })
            }
            "poll" => {
                let id = poll_id(field("id"))?;
                let question = text(field("question"), POLL_MAX_QUESTION)?;
                let options = field("options").as_array()?;
                if !(POLL_MIN_OPTIONS..=POLL_MAX_OPTIONS).contains(&options.len()) {
                    return None;
                }
                let options = options
                    .iter()
                    .map(|o| text(o, POLL_MAX_OPTION))
                    .collect::<Option<Vec<_>>>()?;
                Some(AppMessage::Poll {
                    id,
                    question,
                    options,
                })
            }
            "poll_answer" => {
                let id = poll_id(field("id"))?;
                let choice = usize::try_from(field("choice").as_u64()?).ok()?;
                (choice < POLL_MAX_OPTIONS).then_some(AppMessage::PollAnswer { id, choice })
            }
            "poll_results" => {
                let id = poll_id(field("id"))?;
                let counts = field("counts").as_array()?;
                if !(POLL_MIN_OPTIONS..=POLL_MAX_OPTIONS).contains(&counts.len()) {
                    return None;
                }
                let counts = counts
                    .iter()
                    .map(|c| c.as_u64().filter(|n| *n <= POLL_MAX_COUNT))
                    .collect::<Option<Vec<_>>>()?;
                Some(AppMessage::PollResults { id, counts })
            }
            "spotlight" => match obj.get("participant")? {
                Value::Null => Some(AppMessage::Spotlight { participant: None }),
                v => Some(AppMessage::Spotlight {
                    participant: Some(participant_id(v)?),
                }),
            },
            _ => None,
        }
    }

    /// The MLS plaintext for this message.
    pub fn encode(&self) -> String {
        let v = match self {
            AppMessage::Hand { raised } => json!({"type": "hand", "raised": raised}),
            AppMessage::HandLower { participant } => {
                json!({"type": "hand_lower", "participant": participant})
            }
            AppMessage::Reaction { emoji } => json!({"type": "reaction", "emoji": emoji}),
            AppMessage::Poll {
                id,
                question,
                options,
            } => json!({"type": "poll", "id": id, "question": question, "options": options}),
            AppMessage::PollAnswer { id, choice } => {
                json!({"type": "poll_answer", "id": id, "choice": choice})
            }
            AppMessage::PollResults { id, counts } => {
                json!({"type": "poll_results", "id": id, "counts": counts})
            }
            AppMessage::Spotlight { participant } => {
                json!({"type": "spotlight", "participant": participant})
            }
        };
        format!("{APP_MESSAGE_PREFIX}{v}")
    }
}

/// What an opened group plaintext is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// No prefix: a chat line.
    Chat,
    /// An application message this client drops (malformed, unknown, too large).
    Dropped,
    App(AppMessage),
}

/// Tells chat from application messages, and checks the latter.
pub fn decode(plaintext: &str) -> Decoded {
    let Some(body) = plaintext.strip_prefix(APP_MESSAGE_PREFIX) else {
        return Decoded::Chat;
    };
    if js_len(plaintext) > MAX_APP_CHARS {
        return Decoded::Dropped;
    }
    match serde_json::from_str::<Value>(body)
        .ok()
        .as_ref()
        .and_then(AppMessage::validate)
    {
        Some(m) => Decoded::App(m),
        None => Decoded::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: &str) -> Decoded {
        decode(&format!("{APP_MESSAGE_PREFIX}{json}"))
    }

    #[test]
    fn the_web_clients_examples_open_and_encode_back_the_same() {
        // The examples of docs/protocol.md, byte for byte as JSON.stringify writes them.
        for text in [
            r#"{"type":"hand","raised":true}"#,
            r#"{"type":"hand_lower","participant":3}"#,
            r#"{"type":"reaction","emoji":"👍"}"#,
            r#"{"type":"poll","id":"9f2c4a1b7d3e5f60","question":"Lunch?","options":["Pizza","Salad"]}"#,
            r#"{"type":"poll_answer","id":"9f2c4a1b7d3e5f60","choice":1}"#,
            r#"{"type":"poll_results","id":"9f2c4a1b7d3e5f60","counts":[2,1]}"#,
            r#"{"type":"spotlight","participant":2}"#,
            r#"{"type":"spotlight","participant":null}"#,
        ] {
            let Decoded::App(m) = app(text) else {
                panic!("{text} did not open");
            };
            let back: Value =
                serde_json::from_str(&m.encode()[APP_MESSAGE_PREFIX.len()..]).expect("json");
            let want: Value = serde_json::from_str(text).expect("json");
            assert_eq!(back, want, "{text}");
        }
    }

    #[test]
    fn chat_is_chat_and_anything_malformed_is_dropped() {
        assert_eq!(decode("hello"), Decoded::Chat);
        assert_eq!(decode(" \u{0}conclave-app:{}"), Decoded::Chat);
        for bad in [
            "not json",
            "[]",
            r#"{"type":"hand"}"#,
            r#"{"type":"hand","raised":"yes"}"#,
            r#"{"type":"hand_lower","participant":-1}"#,
            r#"{"type":"hand_lower","participant":1.5}"#,
            r#"{"type":"reaction","emoji":"💩"}"#,
            r#"{"type":"poll","id":"9F2C4A1B7D3E5F60","question":"q","options":["a","b"]}"#,
            r#"{"type":"poll","id":"9f2c4a1b7d3e5f60","question":"  ","options":["a","b"]}"#,
            r#"{"type":"poll","id":"9f2c4a1b7d3e5f60","question":"q","options":["a"]}"#,
            r#"{"type":"poll","id":"9f2c4a1b7d3e5f60","question":"q","options":["a",""]}"#,
            r#"{"type":"poll_answer","id":"9f2c4a1b7d3e5f60","choice":6}"#,
            r#"{"type":"poll_results","id":"9f2c4a1b7d3e5f60","counts":[1,100001]}"#,
            r#"{"type":"spotlight"}"#,
            r#"{"type":"launch_missiles"}"#,
        ] {
            assert_eq!(app(bad), Decoded::Dropped, "{bad}");
        }
        let long = format!(
            r#"{{"type":"hand","raised":true,"pad":"{}"}}"#,
            "x".repeat(4096)
        );
        assert_eq!(app(&long), Decoded::Dropped);
        // Extra fields are ignored, as by the web client.
        assert_eq!(
            app(r#"{"type":"hand","raised":false,"extra":1}"#),
            Decoded::App(AppMessage::Hand { raised: false })
        );
    }

    #[test]
    fn poll_text_is_trimmed_and_counted_as_javascript_does() {
        // 100 emoji are 200 UTF-16 code units: too long for an option.
        let options = format!(r#"["a","{}"]"#, "😂".repeat(100));
        let text = format!(
            r#"{{"type":"poll","id":"0123456789abcdef","question":" Q ","options":{options}}}"#
        );
        assert_eq!(app(&text), Decoded::Dropped);
        let ok =
            r#"{"type":"poll","id":"0123456789abcdef","question":" Q ","options":[" a ","b"]}"#;
        assert_eq!(
            app(ok),
            Decoded::App(AppMessage::Poll {
                id: "0123456789abcdef".into(),
                question: "Q".into(),
                options: vec!["a".into(), "b".into()],
            })
        );
    }

    #[test]
    fn reactions_by_emoji_or_name() {
        assert_eq!(reaction("👍"), Some("👍"));
        assert_eq!(reaction("thumbs up"), Some("👍"));
        assert_eq!(reaction("Heart"), Some("❤️"));
        assert_eq!(reaction("❤"), Some("❤️"));
        assert_eq!(reaction("party"), Some("🎉"));
        assert_eq!(reaction("🚀"), None);
        assert_eq!(reaction_name("🎉"), Some("party popper"));
    }
}
