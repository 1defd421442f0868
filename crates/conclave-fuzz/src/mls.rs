//! MLS messages at a member (RFC 9420): what the server relays to it. The first byte picks the
//! entry point (mod 3), the rest is the message:
//! - 0: [`Member::handle`] at a member of a two-member group (proposals, commits, chat);
//! - 1: [`Member::join`] at a member in no group: a Welcome and a ratchet tree, the Welcome's
//!   length first (two bytes, big-endian), as [`welcome_and_tree`] lays them out;
//! - 2: [`Member::create_group`] with the bytes as the server's external-sender entry.
//!
//! Checked: nothing panics; a message refused changes neither the member's epoch nor its
//! security code; a Welcome meant for nobody this member is never accepted.

use conclave_e2ee::{DeliveryService, Member};

use crate::corpus;

/// A group the way the server runs one: the delivery service proposes, member "1" commits,
/// everyone handles the commit, the newcomer joins from the Welcome.
pub struct Group {
    pub ds: DeliveryService,
    pub members: Vec<Member>,
    /// Real messages seen while the group was made: (what, bytes).
    pub wire: Vec<(&'static str, Vec<u8>)>,
}

impl Group {
    /// Members "1" and "2"; `None` if the library refuses its own messages (not this
    /// target's concern: the e2ee crate's tests catch that).
    pub fn two() -> Option<Group> {
        let ds = DeliveryService::new().ok()?;
        let mut first = Member::new("1").ok()?;
        let external_sender = ds.external_sender();
        let info = first.create_group(b"meeting-fuzz", &external_sender).ok()?;
        let mut group = Group {
            ds,
            members: vec![first],
            wire: vec![
                ("external_sender", external_sender),
                ("group_info", info.clone()),
            ],
        };
        group.ds.observe_group(&info).ok()?;
        group.add("2")?;
        Some(group)
    }

    fn add(&mut self, id: &str) -> Option<()> {
        let mut newcomer = Member::new(id).ok()?;
        let key_package = newcomer.key_package().ok()?;
        let proposal = self.ds.propose_add(&key_package).ok()?;
        let mut roster: Vec<String> = self
            .members
            .iter()
            .map(|m| m.participant_id().to_string())
            .collect();
        roster.push(id.to_string());
        for m in &mut self.members {
            // The server announces the newcomer before it proposes the Add.
            m.set_announced(roster.clone());
            m.handle(&proposal).ok()?;
        }
        let out = self.members[0].commit().ok()??;
        self.ds.accept_commit(&out.commit).ok()?;
        for m in &mut self.members {
            m.handle(&out.commit).ok()?;
        }
        let welcome = out.welcome?;
        let tree = self.ds.ratchet_tree().ok()?;
        newcomer.join(&welcome, &tree).ok()?;
        self.members.push(newcomer);
        self.wire.extend([
            ("key_package", key_package),
            ("proposal", proposal),
            ("commit", out.commit),
            ("welcome", welcome_and_tree(&welcome, &tree)),
        ]);
        Some(())
    }
}

pub fn run(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let Some(mut group) = Group::two() else {
                return;
            };
            let member = &mut group.members[1];
            let (epoch, code) = (member.epoch(), member.security_code());
            if member.handle(message).is_err() {
                assert_eq!(member.epoch(), epoch, "a refused message moved the epoch");
                assert_eq!(
                    member.security_code(),
                    code,
                    "a refused message changed the code"
                );
            }
            // As chat: only an application message opens, and nothing moves the group.
            let (epoch, code) = (member.epoch(), member.security_code());
            let _ = member.open_chat(message);
            assert_eq!(member.epoch(), epoch, "a chat payload moved the epoch");
            assert_eq!(
                member.security_code(),
                code,
                "a chat payload changed the code"
            );
            // Whatever it was, the member goes on: it can still send.
            let _ = member.encrypt_chat("still here");
        }
        1 => {
            let Ok(mut fresh) = Member::new("9") else {
                return;
            };
            let (welcome, tree) = split_welcome_and_tree(message);
            assert!(
                fresh.join(welcome, tree).is_err(),
                "a Welcome for a key package nobody saw was accepted"
            );
        }
        _ => {
            let Ok(mut fresh) = Member::new("9") else {
                return;
            };
            if fresh.create_group(b"meeting-fuzz", message).is_ok() {
                assert_eq!(fresh.epoch(), 0);
                assert_eq!(fresh.roster(), vec!["9".to_string()]);
            }
        }
    }
}

/// A Welcome and a ratchet tree as one fuzz input: the Welcome's length (u16, big-endian),
/// the Welcome, the tree. A Welcome longer than 65,535 bytes is cut (no seed has one).
pub fn welcome_and_tree(welcome: &[u8], tree: &[u8]) -> Vec<u8> {
    let welcome = &welcome[..welcome.len().min(usize::from(u16::MAX))];
    let len = u16::try_from(welcome.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(welcome);
    out.extend_from_slice(tree);
    out
}

/// The inverse of [`welcome_and_tree`], for any bytes: what is missing is empty.
fn split_welcome_and_tree(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()))
}

/// Real messages of a group being made, each behind the selector of the entry point that
/// takes it, plus a chat message and a proposal the member has not seen.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(mut group) = Group::two() else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    let mut push = |selector: u8, bytes: &[u8]| seeds.push(corpus::with_selector(selector, bytes));
    for (what, bytes) in &group.wire {
        let selector = match *what {
            "welcome" => 1,
            "external_sender" => 2,
            _ => 0,
        };
        push(selector, bytes);
    }
    if let Ok(chat) = group.members[0].encrypt_chat("hello") {
        push(0, &chat);
    }
    if let Ok(remove) = group.ds.propose_remove("2") {
        push(0, &remove);
    }
    if let Ok(Some(out)) = group.members[0].commit() {
        push(0, &out.commit);
    }
    seeds
}
