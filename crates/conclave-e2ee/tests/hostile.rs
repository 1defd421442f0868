//! Attacks on the group from inside it and from the server, each of which used to work:
//! a commit sent as chat, a member added by a member, a ghost the server proposes, a second
//! leaf under a colleague's id, frames replayed or sent under another member's KID, and a
//! ratchet tree the server hands a newcomer that is not the group's.
//!
//! The hostile member is a plain mls-rs client with mls-rs's default rules: it does whatever
//! the protocol lets a member with the group's keys do, and none of Conclave's checks.

mod common;

use common::Meeting;
use conclave_e2ee::{
    ChatPayload, DeliveryService, E2eeError, FrameCrypto, FrameKind, Member, Received,
};
use mls_rs::{
    CipherSuite, CipherSuiteProvider, Client, CryptoProvider, ExtensionList, Group, MlsMessage,
    client_builder::{BaseConfig, WithCryptoProvider, WithIdentityProvider, WithMlsRules},
    group::ExportedTree,
    identity::{
        SigningIdentity,
        basic::{BasicCredential, BasicIdentityProvider},
    },
    mls_rules::{CommitOptions, DefaultMlsRules},
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

type HostileConfig = WithMlsRules<
    DefaultMlsRules,
    WithCryptoProvider<RustCryptoProvider, WithIdentityProvider<BasicIdentityProvider, BaseConfig>>,
>;

const SUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

/// An mls-rs client whose credential is `name`, with no rules beyond the protocol's.
fn hostile_client(name: &str) -> Client<HostileConfig> {
    let cs = RustCryptoProvider::default()
        .cipher_suite_provider(SUITE)
        .expect("suite");
    let (secret, public) = cs.signature_key_generate().expect("key");
    let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
    Client::builder()
        .identity_provider(BasicIdentityProvider::new())
        .crypto_provider(RustCryptoProvider::default())
        .mls_rules(
            DefaultMlsRules::new().with_commit_options(
                CommitOptions::new()
                    .with_ratchet_tree_extension(true)
                    .with_single_welcome_message(true)
                    .with_path_required(true),
            ),
        )
        .signing_identity(SigningIdentity::new(credential, public), secret, SUITE)
        .build()
}

fn key_package(client: &Client<HostileConfig>) -> Vec<u8> {
    client
        .generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)
        .expect("key package")
        .to_bytes()
        .expect("encode")
}

/// Members "1" and "2" (honest) and "3" (hostile, admitted the normal way).
fn meeting_with_a_hostile_member() -> (Meeting, Group<HostileConfig>) {
    let mut m = Meeting::with_members(2);
    m.announce(&["3"]);
    let hostile = hostile_client("3");
    let proposal = m.ds.propose_add(&key_package(&hostile)).expect("propose");
    let (_, welcome) = m.propose_and_commit(&proposal);
    let welcome = MlsMessage::from_bytes(&welcome.expect("welcome")).expect("decode");
    let tree = ExportedTree::from_bytes(&m.ds.ratchet_tree().expect("tree")).expect("tree");
    let (group, _) = hostile
        .join_group(Some(tree), &welcome, None)
        .expect("join");
    (m, group)
}

/// The hostile member's commit adding a key package of `name` by value: a member acting on
/// its own authority, which only the server's proposals may do.
fn adds_on_its_own(hostile: &mut Group<HostileConfig>, name: &str) -> Vec<u8> {
    hostile
        .commit_builder()
        .add_member(MlsMessage::from_bytes(&key_package(&hostile_client(name))).expect("kp"))
        .expect("add")
        .build()
        .expect("commit")
        .commit_message
        .to_bytes()
        .expect("encode")
}

/// The hostile member's commit of a server proposal (by reference), with mls-rs's own rules
/// only: what a member that skips Conclave's checks would commit.
fn commits_the_proposal(hostile: &mut Group<HostileConfig>, proposal: &[u8]) -> Vec<u8> {
    hostile
        .process_incoming_message(MlsMessage::from_bytes(proposal).expect("decode"))
        .expect("hostile takes the proposal");
    let commit = hostile.commit(Vec::new()).expect("commit");
    commit.commit_message.to_bytes().expect("encode")
}

/// What the honest members hold: (epoch, roster, security code) each.
fn state(m: &Meeting) -> Vec<(u64, Vec<String>, String)> {
    m.members
        .iter()
        .map(|x| (x.epoch(), x.roster(), x.security_code()))
        .collect()
}

#[test]
fn a_commit_sent_as_chat_changes_nothing() {
    let (mut m, mut hostile) = meeting_with_a_hostile_member();
    let before = state(&m);
    let commit = adds_on_its_own(&mut hostile, "4");

    // The server sees what it is and refuses to relay it as chat.
    assert_eq!(
        DeliveryService::classify_chat(&commit),
        ChatPayload::Handshake
    );
    // A modified server relays it anyway: the members refuse it before MLS applies it.
    for x in &mut m.members {
        assert!(matches!(
            x.open_chat(&commit),
            Err(E2eeError::UnexpectedMessage(_))
        ));
    }
    assert_eq!(state(&m), before, "the group did not move");

    // Real chat still goes through, and the server lets it pass.
    let chat = m.members[0].encrypt_chat("still ours").expect("chat");
    assert!(matches!(
        DeliveryService::classify_chat(&chat),
        ChatPayload::Application { .. }
    ));
    let opened = m.members[1].open_chat(&chat).expect("chat").expect("text");
    assert_eq!(
        (opened.sender.as_str(), opened.text.as_str()),
        ("1", "still ours")
    );
    // And chat cannot come in through the handshake path either.
    assert!(m.members[1].handle(&chat).is_err());
}

#[test]
fn a_member_cannot_add_anyone_even_through_a_modified_server() {
    let (mut m, mut hostile) = meeting_with_a_hostile_member();
    let before = state(&m);
    let commit = adds_on_its_own(&mut hostile, "4");
    // An honest server refuses it ...
    assert!(m.ds.accept_commit(&commit).is_err());
    // ... and a modified one that forwards it gets no honest member to follow.
    for x in &mut m.members {
        let refused = x
            .handle(&commit)
            .expect_err("a member's own Add is refused");
        assert!(refused.to_string().contains("membership"), "{refused}");
    }
    assert_eq!(state(&m), before);
}

#[test]
fn a_ghost_alone_gets_no_commit_at_all() {
    let mut m = Meeting::with_members(2);
    let ghost = Member::new("9").expect("ghost");
    let add =
        m.ds.propose_add(&ghost.key_package().expect("kp"))
            .expect("p");
    let before = state(&m);
    for x in &mut m.members {
        x.handle(&add).expect("proposal");
        // No empty commit either: it would only move the epoch, again and again.
        assert!(x.commit().expect("commit").is_none());
    }
    assert_eq!(state(&m), before);
}

#[test]
fn an_honest_committer_leaves_out_a_ghost_the_server_never_announced() {
    let mut m = Meeting::with_members(2);
    // A modified server proposes "9", whom it shows nobody, together with "3", whom it shows.
    m.announce(&["3"]);
    let ghost = Member::new("9").expect("ghost");
    let newcomer = Member::new("3").expect("newcomer");
    let ghost_add =
        m.ds.propose_add(&ghost.key_package().expect("kp"))
            .expect("p");
    let real_add =
        m.ds.propose_add(&newcomer.key_package().expect("kp"))
            .expect("p");
    for x in &mut m.members {
        assert_eq!(x.handle(&ghost_add).expect("proposal"), Received::Proposal);
        assert_eq!(x.handle(&real_add).expect("proposal"), Received::Proposal);
    }
    let out = m.members[0].commit().expect("commit").expect("something");
    m.ds.accept_commit(&out.commit).expect("valid");
    for x in &mut m.members {
        match x.handle(&out.commit).expect("commit") {
            Received::Commit { added, .. } => assert_eq!(added, vec!["3".to_string()]),
            other => panic!("{other:?}"),
        }
        assert_eq!(x.roster(), vec!["1", "2", "3"]);
        assert!(x.roster_check().not_announced.is_empty());
    }
}

#[test]
fn a_ghost_committed_by_a_hostile_member_is_shown_to_every_honest_member() {
    let (mut m, mut hostile) = meeting_with_a_hostile_member();
    // A modified server proposes "9" (announced to nobody); the hostile member commits it.
    let ghost = Member::new("9").expect("ghost");
    let add =
        m.ds.propose_add(&ghost.key_package().expect("kp"))
            .expect("p");
    for x in &mut m.members {
        x.handle(&add).expect("proposal");
    }
    let commit = commits_the_proposal(&mut hostile, &add);
    m.ds.accept_commit(&commit).expect("protocol-valid");
    for x in &mut m.members {
        x.handle(&commit)
            .expect("a by-reference Add of a canonical id is protocol-valid");
        // The group holds a member nobody announced: every honest client shows it.
        let check = x.roster_check();
        assert_eq!(check.not_announced, vec!["9".to_string()]);
        assert!(check.not_in_group.is_empty());
    }
}

#[test]
fn a_second_leaf_under_an_announced_id_or_an_odd_spelling_is_refused() {
    for credential in ["2", "01", "ghost", "1.0"] {
        // The server signs an Add for a key package whose credential is `credential`, and
        // announces that spelling too, so only the rules on the credential itself can stop it.
        let (mut m, _) = meeting_with_a_hostile_member();
        m.announce(&[credential]);
        let add =
            m.ds.propose_add(&key_package(&hostile_client(credential)))
                .expect("p");
        for x in &mut m.members {
            x.handle(&add).expect("proposal");
        }
        // An honest committer leaves it out: with nothing else to commit, it commits nothing,
        // and the group stays as it was.
        let before = state(&m);
        for x in &mut m.members {
            assert!(x.commit().expect("commit").is_none(), "{credential}");
        }
        assert_eq!(state(&m), before, "{credential}");

        // A hostile committer's commit of it never puts it in an honest member's group: our
        // rules refuse the commit ("01", "ghost", "1.0"), or mls-rs left the duplicate out of
        // the hostile commit already ("2").
        let (mut m, mut hostile) = meeting_with_a_hostile_member();
        m.announce(&[credential]);
        let before = state(&m);
        let add =
            m.ds.propose_add(&key_package(&hostile_client(credential)))
                .expect("p");
        for x in &mut m.members {
            x.handle(&add).expect("proposal");
        }
        let commit = commits_the_proposal(&mut hostile, &add);
        let mut refused = 0;
        for x in &mut m.members {
            match x.handle(&commit) {
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("twice") || text.contains("canonical"),
                        "{credential}: {text}"
                    );
                    refused += 1;
                }
                Ok(_) => assert_eq!(x.roster(), vec!["1", "2", "3"], "{credential}"),
            }
        }
        if refused > 0 {
            assert_eq!(refused, m.members.len(), "honest members agree");
            assert_eq!(state(&m), before, "{credential}");
        }
        assert_eq!(refused > 0, credential != "2", "{credential}");
    }
}

#[test]
fn the_roster_check_compares_exact_strings_with_multiplicity() {
    let mut m = Meeting::with_members(3);
    // The server's list says "1", "02" (not "2") and "4"; the group holds 1, 2 and 3.
    m.members[0].set_announced(["1", "02", "4"]);
    let check = m.members[0].roster_check();
    assert_eq!(check.not_in_group, vec!["02".to_string(), "4".to_string()]);
    assert_eq!(check.not_announced, vec!["2".to_string(), "3".to_string()]);
}

#[test]
fn a_replayed_frame_is_refused() {
    let m = Meeting::with_members(2);
    let mut sender = FrameCrypto::new();
    sender.set_epoch(&m.members[0].sframe_keys(), 0);
    let mut receiver = FrameCrypto::new();
    receiver.set_epoch(&m.members[1].sframe_keys(), 0);
    let mut frames = Vec::new();
    for i in 0..5u8 {
        let mut wire = Vec::new();
        sender
            .encrypt(FrameKind::Audio, &[i; 80], &mut wire)
            .expect("encrypt");
        frames.push(wire);
    }
    let mut out = Vec::new();
    // Out of order is fine, once each.
    for i in [1, 0, 3, 2, 4] {
        receiver
            .decrypt_from(FrameKind::Audio, &frames[i], "1", 10, &mut out)
            .expect("first time");
        assert_eq!(out, vec![i as u8; 80]);
    }
    for frame in &frames {
        assert!(
            receiver
                .decrypt_from(FrameKind::Audio, frame, "1", 20, &mut out)
                .is_err(),
            "a replay decrypted"
        );
    }
}

#[test]
fn a_frame_opens_only_as_the_member_whose_kid_it_carries() {
    let m = Meeting::with_members(3);
    // Member "2" encrypts under its own KID; the server forwards it on a track it says is "3".
    let mut forger = FrameCrypto::new();
    forger.set_epoch(&m.members[1].sframe_keys(), 0);
    let mut wire = Vec::new();
    forger
        .encrypt(FrameKind::Audio, &[7; 80], &mut wire)
        .expect("encrypt");
    let mut receiver = FrameCrypto::new();
    receiver.set_epoch(&m.members[0].sframe_keys(), 0);
    let mut out = Vec::new();
    assert!(matches!(
        receiver.decrypt_from(FrameKind::Audio, &wire, "3", 10, &mut out),
        Err(E2eeError::WrongSender { .. })
    ));
    // On "2"'s own track it plays.
    receiver
        .decrypt_from(FrameKind::Audio, &wire, "2", 10, &mut out)
        .expect("its own track");
    // A participant the group does not hold has no KID at all.
    assert!(
        receiver
            .decrypt_from(FrameKind::Audio, &wire, "9", 10, &mut out)
            .is_err()
    );
}

/// The ratchet tree travels apart from the Welcome, from the server. A modified server that
/// hands a newcomer any other tree than the group's (the last epoch's, another group's with the
/// same members, one with a byte changed, none) gets it refused: the Welcome's GroupInfo,
/// signed by the committer, holds the tree hash. The newcomer is left in no group, and the
/// true tree still lets it in.
#[test]
fn a_newcomer_refuses_any_ratchet_tree_but_the_groups() {
    let mut m = Meeting::with_members(3);
    let tree_before = m.ds.ratchet_tree().expect("tree");
    let (mut newcomer, welcome) = m.welcome_for("4");
    let tree = m.ds.ratchet_tree().expect("tree");

    // The same people in a group of the server's own making.
    let mut twin = Meeting::with_members(3);
    let (_, _) = twin.welcome_for("4");
    let twin_tree = twin.ds.ratchet_tree().expect("tree");

    let mut flipped = tree.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut cut = tree.clone();
    cut.truncate(tree.len() - 1);

    for (what, wrong) in [
        ("the last epoch's tree", tree_before),
        ("another group's tree", twin_tree),
        ("a byte changed", flipped),
        ("cut short", cut),
        ("no tree", Vec::new()),
    ] {
        assert!(newcomer.join(&welcome, &wrong).is_err(), "{what} was taken");
        assert_eq!(newcomer.epoch(), 0, "{what}");
        assert!(newcomer.roster().is_empty(), "{what}");
        assert!(newcomer.security_code().is_empty(), "{what}");
    }

    newcomer.join(&welcome, &tree).expect("the group's tree");
    m.members.push(newcomer);
    let codes: Vec<String> = m.members.iter().map(|x| x.security_code()).collect();
    assert!(codes.iter().all(|c| c == &codes[0]), "{codes:?}");
    assert_eq!(m.members[3].roster(), ["1", "2", "3", "4"]);
}
