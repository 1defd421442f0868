//! The MLS group through the DeliveryService, as the server and the clients run it.

mod common;

use common::Meeting;
use conclave_e2ee::{Chat, DeliveryService, E2eeError, Member, Received};

#[test]
fn three_members_share_roster_epoch_and_security_code() {
    let m = Meeting::with_members(3);
    let code = m.members[0].security_code();
    assert_eq!(code.len(), 60 + 11);
    assert_eq!(code.split(' ').count(), 12);
    assert!(
        code.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    for member in &m.members {
        assert_eq!(member.epoch(), 2);
        assert_eq!(member.security_code(), code);
        assert_eq!(member.roster(), vec!["1", "2", "3"]);
    }
    assert_eq!(m.ds.roster(), vec!["1", "2", "3"]);
    assert_eq!(m.ds.epoch(), Some(2));
    let indexes: Vec<u32> = m.members.iter().map(|x| x.my_index()).collect();
    assert_eq!(indexes, vec![0, 1, 2]);
}

#[test]
fn security_code_changes_with_the_epoch() {
    let mut m = Meeting::with_members(2);
    let before = m.members[0].security_code();
    m.add("3");
    assert_ne!(m.members[0].security_code(), before);
}

#[test]
fn commit_reports_who_was_added_and_removed() {
    let mut m = Meeting::with_members(2);
    m.announce(&["3"]);
    let newcomer = Member::new("3").expect("member");
    let kp = newcomer.key_package().expect("kp");
    let proposal = m.ds.propose_add(&kp).expect("propose");
    for x in &mut m.members {
        x.handle(&proposal).expect("proposal");
    }
    let out = m.members[1].commit().expect("commit").expect("out");
    assert!(out.welcome.is_some());
    m.ds.accept_commit(&out.commit).expect("accepted");
    let expected = Received::Commit {
        epoch: 2,
        added: vec!["3".into()],
        removed: vec![],
        removed_me: false,
    };
    for x in &mut m.members {
        assert_eq!(x.handle(&out.commit).expect("commit"), expected);
    }

    let proposal = m.ds.propose_remove("2").expect("propose remove");
    for x in &mut m.members {
        x.handle(&proposal).expect("proposal");
    }
    let out = m.members[0].commit().expect("commit").expect("out");
    assert!(out.welcome.is_none());
    m.ds.accept_commit(&out.commit).expect("accepted");
    assert_eq!(
        m.members[0].handle(&out.commit).expect("commit"),
        Received::Commit {
            epoch: 3,
            added: vec![],
            removed: vec!["2".into()],
            removed_me: false
        }
    );
    match m.members[1].handle(&out.commit).expect("commit") {
        Received::Commit { removed_me, .. } => assert!(removed_me),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.members[1].encrypt_chat("hi"),
        Err(E2eeError::Removed)
    ));
    assert_eq!(m.ds.roster(), vec!["1", "3"]);
}

#[test]
fn nothing_to_commit_gives_none() {
    let mut m = Meeting::with_members(2);
    assert!(m.members[0].commit().expect("commit").is_none());
}

#[test]
fn confirm_commit_applies_without_the_echo() {
    let mut m = Meeting::with_members(1);
    m.announce(&["2"]);
    let newcomer = Member::new("2").expect("member");
    let proposal =
        m.ds.propose_add(&newcomer.key_package().expect("kp"))
            .expect("propose");
    m.members[0].handle(&proposal).expect("proposal");
    let out = m.members[0].commit().expect("commit").expect("out");
    m.ds.accept_commit(&out.commit).expect("accept");
    match m.members[0].confirm_commit().expect("confirm") {
        Received::Commit { epoch, added, .. } => {
            assert_eq!(epoch, 1);
            assert_eq!(added, vec!["2".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    // The echo arriving later is of an epoch already left.
    assert_eq!(
        m.members[0].handle(&out.commit).expect("echo"),
        Received::Ignored
    );
}

#[test]
fn first_commit_of_an_epoch_wins_and_the_other_committer_follows() {
    let mut m = Meeting::with_members(2);
    m.announce(&["3"]);
    let newcomer = Member::new("3").expect("member");
    let proposal =
        m.ds.propose_add(&newcomer.key_package().expect("kp"))
            .expect("propose");
    for x in &mut m.members {
        x.handle(&proposal).expect("proposal");
    }
    let first = m.members[0].commit().expect("commit").expect("out");
    let second = m.members[1].commit().expect("commit").expect("out");
    m.ds.accept_commit(&first.commit).expect("first accepted");
    assert!(
        m.ds.accept_commit(&second.commit).is_err(),
        "second is for an old epoch"
    );
    for x in &mut m.members {
        x.handle(&first.commit).expect("commit");
    }
    assert_eq!(m.members[0].security_code(), m.members[1].security_code());
    assert_eq!(m.members[1].epoch(), 2);
}

#[test]
fn chat_round_trip() {
    let mut m = Meeting::with_members(3);
    let wire = m.members[1]
        .encrypt_chat("hello, <b>world</b> ✓")
        .expect("encrypt");
    for i in [0, 2] {
        assert_eq!(
            m.members[i].open_chat(&wire).expect("chat"),
            Some(Chat {
                sender: "2".into(),
                text: "hello, <b>world</b> ✓".into()
            })
        );
    }
    // The sender's own message relayed back is ignored, not an error.
    assert_eq!(m.members[1].open_chat(&wire).expect("echo"), None);
    // The server's view holds nothing that opens it.
    assert!(!wire.windows(5).any(|w| w == b"hello"));
}

#[test]
fn removed_member_cannot_read_chat_of_the_next_epoch() {
    let mut m = Meeting::with_members(3);
    // "3" keeps its state but the server stops sending it anything.
    let mut removed = m.members.pop().expect("member 3");
    let proposal = m.ds.propose_remove("3").expect("remove");
    removed.handle(&proposal).expect("it may see the proposal");
    m.propose_and_commit(&proposal);
    let wire = m.members[0].encrypt_chat("after removal").expect("encrypt");
    assert!(
        !matches!(removed.open_chat(&wire), Ok(Some(_))),
        "no plaintext for the removed member"
    );
    assert_eq!(
        m.members[1].open_chat(&wire).expect("chat"),
        Some(Chat {
            sender: "1".into(),
            text: "after removal".into()
        })
    );
}

#[test]
fn tampered_commit_is_refused_and_leaves_the_view() {
    let mut m = Meeting::with_members(2);
    m.announce(&["3"]);
    let newcomer = Member::new("3").expect("member");
    let proposal =
        m.ds.propose_add(&newcomer.key_package().expect("kp"))
            .expect("propose");
    for x in &mut m.members {
        x.handle(&proposal).expect("proposal");
    }
    let out = m.members[0].commit().expect("commit").expect("out");
    // Everything but the two MACs at the end is covered by the committer's signature, which the
    // server checks. The confirmation tag and the membership tag (32 bytes and a length byte
    // each) are MACs under keys of the group's secret schedule: only members can check them.
    let signed = out.commit.len() - 66;
    for i in (0..signed).step_by(5).chain([signed - 1]) {
        let mut bad = out.commit.clone();
        bad[i] ^= 0x04;
        assert!(
            m.ds.accept_commit(&bad).is_err(),
            "flipped byte {i} accepted"
        );
        assert_eq!(m.ds.epoch(), Some(1));
    }
    // A flipped confirmation or membership tag the members refuse.
    for back in [1, 34] {
        let mut bad_tag = out.commit.clone();
        let i = bad_tag.len() - back;
        bad_tag[i] ^= 0x04;
        assert!(
            m.members[1].handle(&bad_tag).is_err(),
            "tag byte {i} accepted"
        );
    }
    assert_eq!(m.ds.accept_commit(&out.commit).expect("untampered"), 2);
    // Replayed: a commit for an old epoch.
    assert!(m.ds.accept_commit(&out.commit).is_err());
    // Other kinds of message are not commits.
    assert!(m.ds.accept_commit(&proposal).is_err());
    for x in &mut m.members {
        x.handle(&out.commit).expect("commit");
    }
    let chat = m.members[0].encrypt_chat("x").expect("chat");
    assert!(m.ds.accept_commit(&chat).is_err());
    assert_eq!(m.ds.epoch(), Some(2));
}

#[test]
fn key_package_with_another_participants_credential_is_refused() {
    let mallory = Member::new("5").expect("member");
    let kp = mallory.key_package().expect("kp");
    assert!(DeliveryService::check_key_package(&kp, "5").is_ok());
    match DeliveryService::check_key_package(&kp, "6") {
        Err(E2eeError::IdentityMismatch { expected, found }) => {
            assert_eq!(expected, "6");
            assert_eq!(found, "5");
        }
        other => panic!("{other:?}"),
    }
    assert!(DeliveryService::check_key_package(&kp, "").is_err());
    // A key package with a flipped bit no longer verifies.
    for i in (0..kp.len()).step_by(11) {
        let mut bad = kp.clone();
        bad[i] ^= 0x10;
        assert!(
            DeliveryService::check_key_package(&bad, "5").is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn participant_ids_are_decimal_numbers() {
    assert!(Member::new("12").is_ok());
    assert!(Member::new("").is_err());
    assert!(Member::new("conclave-server").is_err());
    assert!(Member::new("1 2").is_err());
    assert!(Member::new("012").is_err(), "one spelling per participant");
}

#[test]
fn group_not_naming_the_server_is_refused() {
    let ds = DeliveryService::new().expect("ds");
    let other = DeliveryService::new().expect("other");
    let mut a = Member::new("1").expect("member");
    let info = a
        .create_group(b"g", &other.external_sender())
        .expect("create");
    let mut ds = ds;
    assert!(ds.observe_group(&info).is_err());
    assert_eq!(ds.epoch(), None);
}

/// A member asked to create the group answers too late: the server has had
/// another member create it. The late one's own group (epoch 0, alone) gives
/// way to the Welcome into the real one; a group others are in never does.
#[test]
fn a_group_nobody_joined_gives_way_to_a_welcome_and_a_shared_one_does_not() {
    let mut m = Meeting::new();
    let mut late = Member::new("2").expect("member");
    let kp = late.key_package().expect("key package");
    let ds_of_old_request = DeliveryService::new().expect("ds");
    late.create_group(b"meeting-old", &ds_of_old_request.external_sender())
        .expect("its own group");
    assert_eq!(late.roster(), ["2"]);
    m.announce(&["2"]);
    let proposal = m.ds.propose_add(&kp).expect("propose add");
    let (_, welcome) = m.propose_and_commit(&proposal);
    let welcome = welcome.expect("welcome");
    let tree = m.ds.ratchet_tree().expect("tree");
    late.join(&welcome, &tree)
        .expect("the Welcome replaces a group nobody joined");
    assert_eq!(late.roster(), ["1", "2"]);
    assert_eq!(late.security_code(), m.members[0].security_code());

    // Now in a group with others: neither a Welcome nor a request to create
    // takes the member out of it.
    assert!(matches!(
        late.join(&welcome, &tree),
        Err(E2eeError::AlreadyInGroup)
    ));
    assert!(matches!(
        late.create_group(b"meeting-new", &m.ds.external_sender()),
        Err(E2eeError::AlreadyInGroup)
    ));
    // Nor for the one who made it, once it committed an add.
    assert!(matches!(
        m.members[0].create_group(b"meeting-new", &m.ds.external_sender()),
        Err(E2eeError::AlreadyInGroup)
    ));
    assert_eq!(late.roster(), ["1", "2"]);
}

/// A newcomer's update commit (no proposal, a fresh path) is accepted by the server and every
/// member, and moves everyone to the same epoch and code; it changes nobody's membership.
#[test]
fn an_update_commit_moves_the_epoch_and_nothing_else() {
    let mut m = Meeting::with_members(4);
    let roster = m.members[0].roster();
    let out = m.members[3].update().expect("update");
    assert!(out.welcome.is_none());
    let epoch =
        m.ds.accept_commit(&out.commit)
            .expect("the server takes it");
    for x in &mut m.members {
        match x.handle(&out.commit).expect("commit") {
            Received::Commit {
                epoch: e,
                added,
                removed,
                removed_me: false,
            } => {
                assert_eq!(e, epoch);
                assert!(added.is_empty() && removed.is_empty());
            }
            other => panic!("expected a commit, got {other:?}"),
        }
    }
    let codes: Vec<String> = m.members.iter().map(|x| x.security_code()).collect();
    assert!(codes.iter().all(|c| c == &codes[0]));
    assert_eq!(m.members[2].roster(), roster);
}
