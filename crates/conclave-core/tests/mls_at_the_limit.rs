//! The size caps against real MLS objects of a meeting at the limit: a group of
//! `MAX_PARTICIPANTS_LIMIT` members made by the real delivery service and member code, in the
//! shapes that make the largest objects. The host admits a full waiting room at once (one
//! Welcome for 999), then half the meeting leaves while as many come in (one commit removing
//! every other leaf and adding 500, over a tree whose parents are blank: the largest commit).
//! Each `mls_commit` a client would send must parse under `MAX_MESSAGE_BYTES`, each object be
//! under `MAX_MLS_BYTES`, and each tree the server hands a newcomer under
//! `MAX_RATCHET_TREE_BYTES`.
//!
//! What it does not do: make every member process every message (only the committer, the
//! server's view and a few members stay live; the others' states are not needed to make the
//! objects). Sizes depend on the tree's shape and not on who processes, so this checks the
//! caps; `bench/mls_scale.rs` measures a group where everyone processes everything.

use conclave_e2ee::{DeliveryService, Member, Received};
use conclave_proto::limits::{MAX_RATCHET_TREE_BYTES, base64_len};
use conclave_proto::{
    ClientMessage, MAX_MESSAGE_BYTES, MAX_MLS_BYTES, MAX_PARTICIPANTS_LIMIT, parse_client_message,
};
use data_encoding::BASE64;

/// The server's view, the committer ("1") and a few members that process everything.
struct Meeting {
    ds: DeliveryService,
    live: Vec<Member>,
    /// Participant ids in the group, in order of joining.
    ids: Vec<String>,
    next_id: u32,
}

/// What one commit produced, as the client sends it and as the server passes it on.
struct Sent {
    message_len: usize,
    welcome: Option<Vec<u8>>,
}

impl Meeting {
    fn new() -> Meeting {
        let ds = DeliveryService::new().expect("ds");
        let mut first = Member::new("1").expect("member");
        let info = first
            .create_group(b"limit", &ds.external_sender())
            .expect("group");
        let mut m = Meeting {
            ds,
            live: vec![first],
            ids: vec!["1".into()],
            next_id: 2,
        };
        m.ds.observe_group(&info).expect("observe");
        m
    }

    /// The server proposes every Remove and Add, the committer commits them all in one commit,
    /// the client's `mls_commit` goes through the server's parser, the server accepts it and
    /// every live member applies it. Returns the newcomers' states (not yet joined).
    fn commit(&mut self, remove: &[String], add: usize) -> (Vec<Member>, Sent) {
        let mut proposals = Vec::new();
        for id in remove {
            proposals.push(self.ds.propose_remove(id).expect("remove"));
        }
        self.ids.retain(|id| !remove.contains(id));
        let mut newcomers = Vec::new();
        for _ in 0..add {
            let id = self.next_id.to_string();
            self.next_id += 1;
            let newcomer = Member::new(&id).expect("member");
            let kp = newcomer.key_package().expect("kp");
            assert!(base64_len(kp.len()) <= MAX_MLS_BYTES);
            proposals.push(self.ds.propose_add(&kp).expect("add"));
            self.ids.push(id);
            newcomers.push(newcomer);
        }
        for member in &mut self.live {
            member.set_announced(self.ids.iter().cloned());
            for p in &proposals {
                assert_eq!(member.handle(p).expect("proposal"), Received::Proposal);
            }
        }
        let out = self.live[0].commit().expect("commit").expect("something");
        let text = serde_json::to_string(&ClientMessage::MlsCommit {
            commit: BASE64.encode(&out.commit),
            welcome: out.welcome.as_deref().map(|w| BASE64.encode(w)),
            group_info: None,
        })
        .expect("json");
        assert!(
            matches!(
                parse_client_message(&text),
                Ok(ClientMessage::MlsCommit { .. })
            ),
            "an mls_commit of {} bytes (commit {} B, Welcome {:?} B) is refused",
            text.len(),
            out.commit.len(),
            out.welcome.as_ref().map(Vec::len),
        );
        assert!(base64_len(out.commit.len()) <= MAX_MLS_BYTES);
        if let Some(w) = &out.welcome {
            assert!(base64_len(w.len()) <= MAX_MLS_BYTES);
        }
        let epoch = self.ds.accept_commit(&out.commit).expect("accepted");
        for member in &mut self.live {
            match member.handle(&out.commit).expect("commit") {
                Received::Commit { epoch: e, .. } => assert_eq!(e, epoch),
                other => panic!("expected a commit, got {other:?}"),
            }
        }
        (
            newcomers,
            Sent {
                message_len: text.len(),
                welcome: out.welcome,
            },
        )
    }

    /// Some newcomers join with the server's tree and stay live.
    fn join(&mut self, newcomers: Vec<Member>, welcome: &[u8], how_many: usize) {
        let tree = self.ds.ratchet_tree().expect("tree");
        assert!(
            tree.len() <= MAX_RATCHET_TREE_BYTES,
            "tree of {} members: {} B",
            self.ids.len(),
            tree.len()
        );
        let step = (newcomers.len() / how_many).max(1);
        for mut n in newcomers.into_iter().step_by(step).take(how_many) {
            n.join(welcome, &tree).expect("join");
            self.live.push(n);
        }
    }

    fn all_agree(&self) {
        let first = &self.live[0];
        for member in &self.live {
            assert_eq!(member.epoch(), first.epoch());
            assert_eq!(member.security_code(), first.security_code());
            assert_eq!(member.roster(), self.ds.roster());
        }
    }
}

#[test]
fn every_mls_message_stays_under_the_caps_at_the_meeting_limit() {
    let limit = MAX_PARTICIPANTS_LIMIT as usize;
    let mut m = Meeting::new();

    // A full waiting room admitted at once: one Welcome for everyone.
    let (newcomers, sent) = m.commit(&[], limit - 1);
    assert!(sent.message_len <= MAX_MESSAGE_BYTES);
    m.join(newcomers, &sent.welcome.expect("welcome"), 3);
    assert_eq!(m.ids.len(), limit);
    m.all_agree();

    // Every other member leaves (none of them live) while as many come in, in one commit:
    // the path is sealed to each remaining member one by one (the tree above them is blank)
    // and the commit references a thousand proposals.
    let live: Vec<String> = m.live.iter().map(|x| x.participant_id().into()).collect();
    let leaving: Vec<String> = m
        .ids
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|id| !live.contains(id))
        .cloned()
        .collect();
    let (newcomers, sent) = m.commit(&leaving, leaving.len());
    m.join(newcomers, &sent.welcome.expect("welcome"), 2);
    assert_eq!(m.ids.len(), limit);
    m.all_agree();
}
