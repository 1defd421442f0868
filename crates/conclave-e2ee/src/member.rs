//! One meeting member's end of the MLS group.

use std::collections::{BTreeMap, BTreeSet};

use mls_rs::{
    Client, ExtensionList, Group, MlsMessage, MlsMessageDescription,
    error::MlsError,
    extension::built_in::ExternalSendersExt,
    group::{CommitEffect, ContentType, ExportedTree, ReceivedMessage, Sender},
    identity::{SigningIdentity, basic::BasicIdentityProvider},
    mls_rs_codec::MlsDecode,
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use crate::{
    E2eeError, code,
    frame::{EpochKeys, base_key_len, kid_for},
    mls::{self, MemberConfig},
    openpubkey::{BINDING_EXTENSION, BindingError, IdentityBinding},
    rules::{Announced, MemberRules},
};

/// What a message given to [`Member::handle`] was, and what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A proposal from the server, stored; the member named to commit calls [`Member::commit`].
    Proposal,
    /// A commit moved the group to `epoch`. `added`/`removed` are participant ids.
    /// `removed_me`: this member is out; its state decrypts nothing of `epoch` or later.
    Commit {
        epoch: u64,
        added: Vec<String>,
        removed: Vec<String>,
        removed_me: bool,
    },
    /// Nothing to do: our own commit coming back, a message of an older epoch.
    Ignored,
}

/// A chat message from another member, opened by [`Member::open_chat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The sender's participant id, from its MLS credential (not from the server's word).
    pub sender: String,
    pub text: String,
}

/// Where the group's membership and the server's participant list differ, from
/// [`Member::roster_check`]. Each entry is a participant id, once per difference: an id the
/// group holds twice appears once in `not_announced` even when it was announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterCheck {
    /// Announced by the server, not (yet) in the group.
    pub not_in_group: Vec<String>,
    /// In the group, never announced (or in the group more often than announced): someone
    /// holds the group's keys whom this client's user cannot see.
    pub not_announced: Vec<String>,
}

/// What [`Member::commit`] produced, for the server: the commit for the group and the Welcome
/// for newcomers (when the commit adds someone). Neither carries the ratchet tree: the server
/// follows the tree from the commits and hands it to newcomers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOut {
    pub commit: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
}

/// One meeting member's end of the group: single-threaded, in memory, gone with the session.
pub struct Member {
    id: String,
    client: Client<MemberConfig>,
    group: Option<Group<MemberConfig>>,
    removed: bool,
    announced: Announced,
    /// Our leaf's extensions: the identity binding, when this member signed in with one.
    leaf_extensions: ExtensionList,
}

/// One leaf's identity as the group holds it, for checking names ([`Member::leaves`]).
#[derive(Debug, Clone)]
pub struct Leaf {
    pub participant_id: String,
    /// The leaf's Ed25519 signature public key.
    pub signature_key: Vec<u8>,
    /// The binding in the leaf: none, one that decodes, or one that does not.
    pub binding: Option<Result<IdentityBinding, BindingError>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("epoch", &self.epoch())
            .field("removed", &self.removed)
            .finish_non_exhaustive()
    }
}

fn decode(bytes: &[u8]) -> Result<MlsMessage, E2eeError> {
    Ok(MlsMessage::from_bytes(bytes)?)
}

impl Member {
    /// A member with a fresh signing key whose credential is `participant_id`.
    pub fn new(participant_id: &str) -> Result<Member, E2eeError> {
        let (secret, public) = Member::new_signing_key()?;
        Member::with_signing_key(participant_id, &secret, &public, None)
    }

    /// A fresh Ed25519 signature key pair (secret, public), made before sign-in so that the
    /// ID token's nonce can commit to the public key ([`crate::openpubkey::nonce`]).
    pub fn new_signing_key() -> Result<(Vec<u8>, Vec<u8>), E2eeError> {
        let (secret, identity) = mls::new_identity("0")?;
        Ok((
            secret.as_bytes().to_vec(),
            identity.signature_key.as_bytes().to_vec(),
        ))
    }

    /// A member whose credential is `participant_id`, signing with the key pair from
    /// [`Member::new_signing_key`], and whose leaf carries `binding` (the ID token that vouches
    /// for that key) when there is one.
    pub fn with_signing_key(
        participant_id: &str,
        secret: &[u8],
        public: &[u8],
        binding: Option<IdentityBinding>,
    ) -> Result<Member, E2eeError> {
        mls::check_participant_id(participant_id)?;
        if public.len() != 32 {
            return Err(E2eeError::InvalidArgument("signature key is not Ed25519"));
        }
        let identity = mls::identity_with_key(participant_id, public);
        let secret = mls_rs::crypto::SignatureSecretKey::new(secret.to_vec());
        let announced = Announced::default();
        let client = Client::builder()
            .identity_provider(BasicIdentityProvider::new())
            .crypto_provider(RustCryptoProvider::default())
            .mls_rules(MemberRules::new(announced.clone()))
            .extension_type(mls_rs::extension::ExtensionType::new(BINDING_EXTENSION))
            .signing_identity(identity, secret, mls::CIPHER_SUITE)
            .build();
        Ok(Member {
            id: participant_id.to_string(),
            client,
            group: None,
            removed: false,
            announced,
            leaf_extensions: binding.map(|b| b.leaf_extensions()).unwrap_or_default(),
        })
    }

    /// The participants the server has announced to this client (the list its user sees).
    /// Call it whenever that list changes, before the MLS messages that follow. This member
    /// commits an Add only for an announced participant: a server that proposes someone it
    /// shows nobody gets no commit for them from an honest member.
    pub fn set_announced<I, S>(&mut self, participant_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.announced
            .set(participant_ids.into_iter().map(Into::into).collect());
    }

    /// A new KeyPackage (as an MlsMessage); its private part stays here for [`Member::join`].
    pub fn key_package(&self) -> Result<Vec<u8>, E2eeError> {
        let message = self.client.generate_key_package_message(
            ExtensionList::default(),
            self.leaf_extensions.clone(),
            None,
        )?;
        Ok(message.to_bytes()?)
    }

    /// First member: make the group with `external_sender` (from
    /// [`crate::DeliveryService::external_sender`]) as its only external sender. Returns the
    /// GroupInfo, ratchet tree included, for the server.
    pub fn create_group(
        &mut self,
        group_id: &[u8],
        external_sender: &[u8],
    ) -> Result<Vec<u8>, E2eeError> {
        if self.holds_shared_group() {
            return Err(E2eeError::AlreadyInGroup);
        }
        if group_id.is_empty() || group_id.len() > 255 {
            return Err(E2eeError::InvalidArgument(
                "group id must be 1 to 255 bytes",
            ));
        }
        let mut rest = external_sender;
        let sender = SigningIdentity::mls_decode(&mut rest)
            .map_err(|_| E2eeError::InvalidArgument("external sender does not decode"))?;
        // The server's identity: a BasicCredential and an Ed25519 key, nothing after it.
        if !rest.is_empty()
            || sender.credential.as_basic().is_none()
            || sender.signature_key.as_bytes().len() != 32
        {
            return Err(E2eeError::InvalidArgument(
                "external sender is not a server identity",
            ));
        }
        let mut extensions = ExtensionList::new();
        extensions
            .set_from(ExternalSendersExt::new(vec![sender]))
            .map_err(|_| E2eeError::InvalidArgument("external sender extension"))?;
        let group = self.client.create_group_with_id(
            group_id.to_vec(),
            extensions,
            self.leaf_extensions.clone(),
            None,
        )?;
        let info = group.group_info_message(true)?.to_bytes()?;
        self.group = Some(group);
        self.removed = false;
        Ok(info)
    }

    /// Join from a Welcome and the ratchet tree of the epoch it welcomes to. The tree travels
    /// apart from the Welcome (RFC 9420 §12.4.3.3), from the server's public view
    /// ([`crate::DeliveryService::ratchet_tree`]), so that no message grows with the group.
    /// The server is not trusted with it: MLS checks the tree against the tree hash in the
    /// Welcome's signed GroupInfo, and every leaf and parent-hash signature in it, so a tree
    /// the server made up or took from another epoch is refused.
    pub fn join(&mut self, welcome: &[u8], ratchet_tree: &[u8]) -> Result<(), E2eeError> {
        if self.holds_shared_group() {
            return Err(E2eeError::AlreadyInGroup);
        }
        let welcome = decode(welcome)?;
        let tree = ExportedTree::from_bytes(ratchet_tree)?;
        let (group, _info) = self.client.join_group(Some(tree), &welcome, None)?;
        self.group = Some(group);
        self.removed = false;
        Ok(())
    }

    /// Whether this member is in a group that anyone else is in, or ever
    /// was: one it joined, or made and then committed in. Only such a group
    /// keeps a Welcome or a request to create from replacing it. A group
    /// this member made and nobody joined (epoch 0, alone) is let go: the
    /// server gives the creation to another member when the one it asked
    /// answers too late, and that one's group holds nothing anybody reads.
    fn holds_shared_group(&self) -> bool {
        match &self.group {
            Some(g) if !self.removed => {
                g.current_epoch() > 0 || g.roster().members_iter().count() > 1
            }
            _ => false,
        }
    }

    fn group(&self) -> Result<&Group<MemberConfig>, E2eeError> {
        if self.removed {
            return Err(E2eeError::Removed);
        }
        self.group.as_ref().ok_or(E2eeError::NoGroup)
    }

    fn group_mut(&mut self) -> Result<&mut Group<MemberConfig>, E2eeError> {
        if self.removed {
            return Err(E2eeError::Removed);
        }
        self.group.as_mut().ok_or(E2eeError::NoGroup)
    }

    /// A handshake message from the server's delivery path (`mls_message`): a proposal the
    /// server made, or a member's commit (ours coming back applies our pending commit; another
    /// member's first discards ours). Anything else is refused before MLS looks at it: chat
    /// goes through [`Member::open_chat`], so a handshake sent as chat changes nothing.
    pub fn handle(&mut self, message: &[u8]) -> Result<Received, E2eeError> {
        let message = decode(message)?;
        let handshake = matches!(
            message.description(),
            MlsMessageDescription::PublicProtocolMessage {
                content_type: ContentType::Proposal,
                sender: Sender::External(_),
                ..
            } | MlsMessageDescription::PublicProtocolMessage {
                content_type: ContentType::Commit,
                sender: Sender::Member(_),
                ..
            }
        );
        if !handshake {
            return Err(E2eeError::UnexpectedMessage(
                "a proposal from the server or a member's commit, in the clear",
            ));
        }
        let group = self.group_mut()?;
        let before = roster_of(group);
        let received = match group.process_incoming_message(message) {
            Ok(received) => received,
            // A message of an epoch already left behind.
            Err(MlsError::CantProcessMessageFromSelf | MlsError::InvalidEpoch) => {
                return Ok(Received::Ignored);
            }
            Err(e) => return Err(e.into()),
        };
        match received {
            ReceivedMessage::Proposal(_) => Ok(Received::Proposal),
            ReceivedMessage::Commit(description) => {
                let (epoch, removed_me) = match &description.effect {
                    CommitEffect::NewEpoch(new_epoch) => (new_epoch.epoch, false),
                    CommitEffect::Removed { new_epoch, .. } => (new_epoch.epoch, true),
                    CommitEffect::ReInit(_) => {
                        return Err(E2eeError::UnexpectedMessage("no ReInit"));
                    }
                };
                self.commit_received(before, epoch, removed_me)
            }
            ReceivedMessage::ApplicationMessage(_)
            | ReceivedMessage::GroupInfo(_)
            | ReceivedMessage::Welcome
            | ReceivedMessage::KeyPackage(_) => {
                Err(E2eeError::UnexpectedMessage("a proposal or a commit"))
            }
        }
    }

    /// A chat payload: only an MLS application message (a PrivateMessage whose content type is
    /// application) is opened. A proposal or commit sent as chat is refused before MLS
    /// processes it, so it cannot change the group. `None`: our own message relayed back, or
    /// one of an epoch already left behind.
    pub fn open_chat(&mut self, payload: &[u8]) -> Result<Option<Chat>, E2eeError> {
        let message = decode(payload)?;
        let application = matches!(
            message.description(),
            MlsMessageDescription::PrivateProtocolMessage {
                content_type: ContentType::Application,
                ..
            }
        );
        if !application {
            return Err(E2eeError::UnexpectedMessage(
                "a chat message (an MLS application message)",
            ));
        }
        let group = self.group_mut()?;
        let received = match group.process_incoming_message(message) {
            Ok(received) => received,
            Err(MlsError::CantProcessMessageFromSelf | MlsError::InvalidEpoch) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The content type is authenticated data of the PrivateMessage, so nothing else can
        // come out here; refuse it all the same rather than trust that.
        let ReceivedMessage::ApplicationMessage(app) = received else {
            return Err(E2eeError::UnexpectedMessage("an application message"));
        };
        let sender = group
            .member_at_index(app.sender_index)
            .map(|m| mls::identity_name(&m.signing_identity))
            .unwrap_or_default();
        let text = String::from_utf8(app.data().to_vec()).map_err(|_| E2eeError::NotUtf8)?;
        Ok(Some(Chat { sender, text }))
    }

    fn commit_received(
        &mut self,
        before: Vec<(u32, String)>,
        epoch: u64,
        removed_me: bool,
    ) -> Result<Received, E2eeError> {
        if removed_me {
            self.removed = true;
            return Ok(Received::Commit {
                epoch,
                added: Vec::new(),
                removed: vec![self.id.clone()],
                removed_me: true,
            });
        }
        let after = self.group.as_ref().map(roster_of).unwrap_or_default();
        let old: BTreeSet<_> = before.iter().collect();
        let new: BTreeSet<_> = after.iter().collect();
        let added = after
            .iter()
            .filter(|m| !old.contains(m))
            .map(|m| m.1.clone())
            .collect();
        let removed = before
            .iter()
            .filter(|m| !new.contains(m))
            .map(|m| m.1.clone())
            .collect();
        Ok(Received::Commit {
            epoch,
            added,
            removed,
            removed_me: false,
        })
    }

    /// Commit every proposal received from the server that this member's rules let in
    /// (`crate::rules`). `None` when there is none, or when the rules left all out. The commit is
    /// applied when it comes back through [`Member::handle`] (or [`Member::confirm_commit`]); a
    /// pending commit of ours is replaced.
    pub fn commit(&mut self) -> Result<Option<CommitOut>, E2eeError> {
        let group = self.group_mut()?;
        let cached = group.get_cached_proposals().len();
        if cached == 0 {
            return Ok(None);
        }
        group.clear_pending_commit();
        let output = group.commit(Vec::new())?;
        if output.unused_proposals.len() >= cached {
            // Our rules left every proposal out (a ghost, an odd credential): an empty commit
            // would only move the epoch, and the server would propose the same again in the
            // next. Commit nothing; the server passes the turn to someone else.
            group.clear_pending_commit();
            return Ok(None);
        }
        let welcome = match output.welcome_messages.first() {
            Some(welcome) => Some(welcome.to_bytes()?),
            None => None,
        };
        Ok(Some(CommitOut {
            commit: output.commit_message.to_bytes()?,
            welcome,
        }))
    }

    /// A commit that refreshes this member's path (new HPKE keys from its leaf to the root),
    /// with whatever proposals from the server it holds. A member that joined sits in the tree
    /// with blank parents above it until it commits, and every commit must then encrypt to its
    /// leaf and to each blank parent's children one by one: a group where only one member ever
    /// commits keeps commits O(n). A newcomer's one update makes its part of the tree full
    /// again, so commits stay about O(log n). Applied like [`Member::commit`]'s.
    pub fn update(&mut self) -> Result<CommitOut, E2eeError> {
        let group = self.group_mut()?;
        group.clear_pending_commit();
        let output = group.commit(Vec::new())?;
        let welcome = match output.welcome_messages.first() {
            Some(welcome) => Some(welcome.to_bytes()?),
            None => None,
        };
        Ok(CommitOut {
            commit: output.commit_message.to_bytes()?,
            welcome,
        })
    }

    /// Apply our pending commit without waiting for its echo (the server said it accepted it).
    pub fn confirm_commit(&mut self) -> Result<Received, E2eeError> {
        let group = self.group_mut()?;
        if !group.has_pending_commit() {
            return Ok(Received::Ignored);
        }
        let before = roster_of(group);
        let description = group.apply_pending_commit()?;
        let epoch = match &description.effect {
            CommitEffect::NewEpoch(new_epoch) | CommitEffect::Removed { new_epoch, .. } => {
                new_epoch.epoch
            }
            CommitEffect::ReInit(_) => return Err(E2eeError::UnexpectedMessage("no ReInit")),
        };
        self.commit_received(before, epoch, false)
    }

    /// A chat message as an MLS PrivateMessage. Fails while a proposal waits for its commit
    /// (MLS forbids application data then); send it after the commit arrived.
    pub fn encrypt_chat(&mut self, text: &str) -> Result<Vec<u8>, E2eeError> {
        let group = self.group_mut()?;
        Ok(group
            .encrypt_application_message(text.as_bytes(), Vec::new())?
            .to_bytes()?)
    }

    /// The current epoch; 0 before the group exists.
    pub fn epoch(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.current_epoch())
    }

    /// 12 groups of 5 digits from the epoch authenticator; the same for every member of the
    /// epoch. Empty before the group exists or after removal.
    pub fn security_code(&self) -> String {
        match self.group().map(|g| g.epoch_authenticator()) {
            Ok(Ok(secret)) => code::security_code(&secret),
            _ => String::new(),
        }
    }

    /// Participant ids of the group's members, by leaf index.
    pub fn roster(&self) -> Vec<String> {
        self.group()
            .map(|g| roster_of(g).into_iter().map(|(_, id)| id).collect())
            .unwrap_or_default()
    }

    /// The group's membership against the participants announced with
    /// [`Member::set_announced`], as exact strings and with multiplicity. Empty while this
    /// member holds no group.
    pub fn roster_check(&self) -> RosterCheck {
        let Ok(group) = self.group() else {
            return RosterCheck::default();
        };
        let announced = self.announced.snapshot();
        let mut in_group: BTreeMap<String, usize> = BTreeMap::new();
        for (_, id) in roster_of(group) {
            *in_group.entry(id).or_default() += 1;
        }
        let not_in_group = announced
            .iter()
            .filter(|id| !in_group.contains_key(*id))
            .cloned()
            .collect();
        let mut not_announced = Vec::new();
        for (id, count) in in_group {
            let allowed = usize::from(announced.contains(&id));
            not_announced.extend(std::iter::repeat_n(id, count.saturating_sub(allowed)));
        }
        RosterCheck {
            not_in_group,
            not_announced,
        }
    }

    /// Every leaf's participant id, signature key and identity binding, by leaf index: what a
    /// client checks names against. Empty while this member holds no group.
    pub fn leaves(&self) -> Vec<Leaf> {
        let Ok(group) = self.group() else {
            return Vec::new();
        };
        group
            .roster()
            .members_iter()
            .map(|m| Leaf {
                participant_id: mls::identity_name(&m.signing_identity),
                signature_key: m.signing_identity.signature_key.as_bytes().to_vec(),
                binding: IdentityBinding::of_leaf(&m.extensions),
            })
            .collect()
    }

    /// Own leaf index (0 before the group exists).
    pub fn my_index(&self) -> u32 {
        self.group.as_ref().map_or(0, |g| g.current_member_index())
    }

    /// This member's participant id.
    pub fn participant_id(&self) -> &str {
        &self.id
    }

    /// The SFrame keys of the current epoch (RFC 9605 §5.2): one base key from the MLS
    /// exporter, one KID per member. Empty keys before the group exists or after removal.
    pub fn sframe_keys(&self) -> EpochKeys {
        let Ok(group) = self.group() else {
            return EpochKeys::default();
        };
        let epoch = group.current_epoch();
        let Ok(base_key) = group.export_secret(b"SFrame 1.0 Base Key", b"", base_key_len()) else {
            return EpochKeys::default();
        };
        let roster = roster_of(group);
        let keys = roster
            .iter()
            .map(|(index, _)| (kid_for(epoch, *index), base_key.to_vec()))
            .collect();
        let senders = roster
            .into_iter()
            .map(|(index, id)| (kid_for(epoch, index), id))
            .collect();
        EpochKeys {
            epoch,
            sender_kid: kid_for(epoch, group.current_member_index()),
            keys,
            senders,
        }
    }
}

/// (leaf index, participant id) of every member.
fn roster_of(group: &Group<MemberConfig>) -> Vec<(u32, String)> {
    group
        .roster()
        .members_iter()
        .map(|m| (m.index, mls::identity_name(&m.signing_identity)))
        .collect()
}
