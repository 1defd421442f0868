//! A meeting driven the way the server drives it: the DeliveryService proposes, one member
//! commits, the service accepts, everyone handles the commit, the newcomer joins.
#![allow(dead_code)]

use conclave_e2ee::{DeliveryService, Member, Received};

pub struct Meeting {
    pub ds: DeliveryService,
    pub members: Vec<Member>,
}

impl Meeting {
    /// Member "1" creates the group.
    pub fn new() -> Meeting {
        let ds = DeliveryService::new().expect("ds");
        let mut first = Member::new("1").expect("member");
        let info = first
            .create_group(b"meeting-42", &ds.external_sender())
            .expect("create");
        let mut meeting = Meeting {
            ds,
            members: vec![first],
        };
        meeting.ds.observe_group(&info).expect("observe");
        meeting
    }

    pub fn with_members(n: usize) -> Meeting {
        let mut m = Meeting::new();
        for i in 2..=n {
            m.add(&i.to_string());
        }
        m
    }

    pub fn index_of(&self, id: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.participant_id() == id)
            .expect("member")
    }

    /// Distribute a server proposal to every member; member 0 commits; the DS accepts; every
    /// member handles the commit. Returns the commit's bytes and Welcome.
    pub fn propose_and_commit(&mut self, proposal: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        for m in &mut self.members {
            assert_eq!(m.handle(proposal).expect("proposal"), Received::Proposal);
        }
        let out = self.members[0]
            .commit()
            .expect("commit")
            .expect("something to commit");
        let epoch = self.ds.accept_commit(&out.commit).expect("accepted");
        for m in &mut self.members {
            match m.handle(&out.commit).expect("commit") {
                Received::Commit { epoch: e, .. } => assert_eq!(e, epoch),
                other => panic!("expected a commit, got {other:?}"),
            }
        }
        (out.commit, out.welcome)
    }

    /// Every member is told that the participants are the members and `extra`, as the server's
    /// participant list would say before it proposes adding them.
    pub fn announce(&mut self, extra: &[&str]) {
        let mut ids: Vec<String> = self
            .members
            .iter()
            .map(|m| m.participant_id().to_string())
            .collect();
        ids.extend(extra.iter().map(|s| s.to_string()));
        for m in &mut self.members {
            m.set_announced(ids.clone());
        }
    }

    /// The server proposes `id`, member 0 commits, everyone moves to the new epoch: the
    /// newcomer and its Welcome, not yet joined.
    pub fn welcome_for(&mut self, id: &str) -> (Member, Vec<u8>) {
        self.announce(&[id]);
        let newcomer = Member::new(id).expect("member");
        let kp = newcomer.key_package().expect("key package");
        DeliveryService::check_key_package(&kp, id).expect("key package is the participant's");
        let proposal = self.ds.propose_add(&kp).expect("propose add");
        let (_, welcome) = self.propose_and_commit(&proposal);
        (newcomer, welcome.expect("welcome"))
    }

    pub fn add(&mut self, id: &str) {
        let (mut newcomer, welcome) = self.welcome_for(id);
        let tree = self.ds.ratchet_tree().expect("tree");
        newcomer.join(&welcome, &tree).expect("join");
        self.members.push(newcomer);
    }
}
