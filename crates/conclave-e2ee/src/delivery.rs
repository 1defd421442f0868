//! The server's side of the group: delivery service and only external sender.

use mls_rs::{
    MlsMessage, MlsMessageDescription, WireFormat,
    extension::built_in::ExternalSendersExt,
    external_client::{ExternalClient, ExternalGroup, ExternalReceivedMessage},
    group::{CommitEffect, ContentType, Sender, proposal::Proposal},
    identity::{SigningIdentity, basic::BasicIdentityProvider},
    mls_rs_codec::MlsEncode,
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use crate::{
    E2eeError,
    mls::{self, DsConfig},
    tree_fill,
};

/// What [`DeliveryService::classify_chat`] found in a chat payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatPayload {
    /// An MLS application message encrypted in `epoch`.
    Application { epoch: u64 },
    /// An MLS message that is not an application message.
    Handshake,
    /// Not an MLS message.
    NotMls,
}

/// Name in the server's credential; never a participant id (those are digits only).
const SERVER_NAME: &str = "conclave-server";

/// The server's view of one meeting's group. It signs Add and Remove proposals (the host's
/// decisions) and checks members' commits against the group's public state, so it forwards
/// only a commit every member can process. It never learns a key that opens frames or chat.
pub struct DeliveryService {
    client: ExternalClient<DsConfig>,
    identity: SigningIdentity,
    group: Option<ExternalGroup<DsConfig>>,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService")
            .field("epoch", &self.epoch())
            .field("roster", &self.roster())
            .finish_non_exhaustive()
    }
}

fn decode(bytes: &[u8]) -> Result<MlsMessage, E2eeError> {
    Ok(MlsMessage::from_bytes(bytes)?)
}

/// An external client only for checking key packages (no signing key).
fn checker() -> ExternalClient<DsConfig> {
    ExternalClient::builder()
        .identity_provider(BasicIdentityProvider::new())
        .crypto_provider(RustCryptoProvider::default())
        .mls_rules(mls::rules())
        .build()
}

impl DeliveryService {
    /// A fresh external-sender signing key, in memory for the meeting's life.
    pub fn new() -> Result<Self, E2eeError> {
        let (secret, identity) = mls::new_identity(SERVER_NAME)?;
        let client = ExternalClient::builder()
            .identity_provider(BasicIdentityProvider::new())
            .crypto_provider(RustCryptoProvider::default())
            .mls_rules(mls::rules())
            .signer(secret, identity.clone())
            .build();
        Ok(DeliveryService {
            client,
            identity,
            group: None,
        })
    }

    /// What a chat payload is, as far as the server can tell without a key: an application
    /// message (a PrivateMessage whose content type, epoch and group are in the clear), an MLS
    /// handshake message (a proposal, commit, Welcome, GroupInfo or key package sent where
    /// only chat belongs), or no MLS message at all (members refuse those).
    pub fn classify_chat(payload: &[u8]) -> ChatPayload {
        match MlsMessage::from_bytes(payload) {
            Ok(message) => match message.description() {
                MlsMessageDescription::PrivateProtocolMessage {
                    content_type: ContentType::Application,
                    epoch_id,
                    ..
                } => ChatPayload::Application { epoch: epoch_id },
                _ => ChatPayload::Handshake,
            },
            Err(_) => ChatPayload::NotMls,
        }
    }

    /// The server's SigningIdentity, encoded, for [`crate::Member::create_group`].
    pub fn external_sender(&self) -> Vec<u8> {
        // Encoding a credential and a public key into a Vec cannot fail.
        self.identity.mls_encode_to_vec().unwrap_or_default()
    }

    /// Start following the group from the creator's GroupInfo (ratchet tree included). Refused
    /// when the group does not name this server as its external sender.
    pub fn observe_group(&mut self, group_info: &[u8]) -> Result<(), E2eeError> {
        let group = self.client.observe_group(decode(group_info)?, None, None)?;
        let senders = group
            .group_context()
            .extensions
            .get_as::<ExternalSendersExt>()
            .map_err(|_| E2eeError::InvalidArgument("external senders extension"))?
            .ok_or(E2eeError::InvalidArgument("group has no external sender"))?;
        if !senders.allowed_senders.contains(&self.identity) {
            return Err(E2eeError::InvalidArgument(
                "group does not name this server as its external sender",
            ));
        }
        if group.group_context().cipher_suite != mls::CIPHER_SUITE {
            return Err(E2eeError::InvalidArgument("cipher suite"));
        }
        self.group = Some(group);
        Ok(())
    }

    /// A key package that verifies (signature, lifetime, cipher suite) and whose credential is
    /// `participant_id`: what the server requires before it proposes anyone.
    pub fn check_key_package(key_package: &[u8], participant_id: &str) -> Result<(), E2eeError> {
        mls::check_participant_id(participant_id)?;
        let package = checker().validate_key_package(decode(key_package)?, None)?;
        if package.cipher_suite() != mls::CIPHER_SUITE {
            return Err(E2eeError::InvalidArgument("cipher suite"));
        }
        let found = mls::identity_name(package.signing_identity());
        if package.signing_identity().credential.as_basic().is_none() || found != participant_id {
            return Err(E2eeError::IdentityMismatch {
                expected: participant_id.to_string(),
                found,
            });
        }
        Ok(())
    }

    fn group_mut(&mut self) -> Result<&mut ExternalGroup<DsConfig>, E2eeError> {
        self.group.as_mut().ok_or(E2eeError::NoGroup)
    }

    /// An Add proposal (PublicMessage) for the current epoch, to send to every member.
    pub fn propose_add(&mut self, key_package: &[u8]) -> Result<Vec<u8>, E2eeError> {
        let message = decode(key_package)?;
        let group = self.group_mut()?;
        Ok(group.propose_add(message, Vec::new())?.to_bytes()?)
    }

    /// A Remove proposal for the member whose credential is `participant_id`.
    pub fn propose_remove(&mut self, participant_id: &str) -> Result<Vec<u8>, E2eeError> {
        let group = self.group_mut()?;
        let index = group
            .roster()
            .members_iter()
            .find(|m| mls::identity_name(&m.signing_identity) == participant_id)
            .map(|m| m.index)
            .ok_or_else(|| E2eeError::UnknownParticipant(participant_id.to_string()))?;
        Ok(group.propose_remove(index, Vec::new())?.to_bytes()?)
    }

    /// Validate a member's commit against the current epoch. It must be a PublicMessage from a
    /// member, for this epoch, verify, and change the membership only through this server's
    /// proposals. Ok moves the server's view to the new epoch (returned); an error leaves it.
    /// The committer's signature covers everything but the confirmation and membership tags,
    /// MACs under keys only members have: members check those, the server cannot.
    pub fn accept_commit(&mut self, commit: &[u8]) -> Result<u64, E2eeError> {
        let message = decode(commit)?;
        if message.wire_format() != WireFormat::PublicMessage {
            return Err(E2eeError::UnexpectedMessage("a commit as a PublicMessage"));
        }
        let group = self.group_mut()?;
        // Work on a copy: the view moves only when everything checks out.
        let mut next = group.clone();
        let description = match next.process_incoming_message(message)? {
            ExternalReceivedMessage::Commit(description) => description,
            _ => return Err(E2eeError::UnexpectedMessage("a commit")),
        };
        if description.is_external {
            return Err(E2eeError::UnauthorizedProposal);
        }
        let new_epoch = match &description.effect {
            CommitEffect::NewEpoch(new_epoch) | CommitEffect::Removed { new_epoch, .. } => {
                new_epoch
            }
            CommitEffect::ReInit(_) => return Err(E2eeError::UnauthorizedProposal),
        };
        let membership_by_member = new_epoch.applied_proposals.iter().any(|info| {
            let changes_membership = matches!(
                info.proposal,
                Proposal::Add(_) | Proposal::Remove(_) | Proposal::ExternalInit(_)
            );
            changes_membership && !matches!(info.sender, Sender::External(_))
        });
        let changes_context = new_epoch.applied_proposals.iter().any(|info| {
            matches!(
                info.proposal,
                Proposal::GroupContextExtensions(_) | Proposal::ReInit(_)
            )
        });
        if membership_by_member || changes_context {
            return Err(E2eeError::UnauthorizedProposal);
        }
        let epoch = new_epoch.epoch;
        *group = next;
        Ok(epoch)
    }

    /// The ratchet tree of the current epoch (RFC 9420 §12.4.3.3 encoding), for the members the
    /// last commit added: Welcomes leave it out. It is the group's public state (leaves'
    /// credentials and public keys, parent keys and hashes), which the server holds anyway to
    /// check commits; a newcomer checks it against its Welcome, so it need not trust the server.
    pub fn ratchet_tree(&self) -> Result<Vec<u8>, E2eeError> {
        let group = self.group.as_ref().ok_or(E2eeError::NoGroup)?;
        Ok(group.export_tree()?)
    }

    /// Whether the member `participant_id`'s update commit would fill the tree where later
    /// commits need it (see [`crate::tree_fill`]): the delivery service asks only those
    /// newcomers, so that a burst of admissions costs one update epoch per block of leaves,
    /// not one per newcomer.
    pub fn update_would_fill(&self, participant_id: &str) -> Result<bool, E2eeError> {
        let group = self.group.as_ref().ok_or(E2eeError::NoGroup)?;
        let leaf = group
            .roster()
            .members_iter()
            .find(|m| mls::identity_name(&m.signing_identity) == participant_id)
            .map(|m| m.index)
            .ok_or_else(|| E2eeError::UnknownParticipant(participant_id.to_string()))?;
        Ok(tree_fill::update_would_fill(
            group.exported_tree().nodes(),
            leaf,
        ))
    }

    /// The member whose update commit would fill the most parents later commits encrypt to
    /// (see [`crate::tree_fill::parents_to_fill`]), among those `eligible` says may be asked;
    /// the lowest leaf of those with as many. `None` when no eligible member's update would
    /// fill anything. Removals blank the removed leaves' direct paths, so after members leave,
    /// commits grow again until someone commits through those parents: the delivery service
    /// asks such members, one at a time, for an update commit.
    pub fn refill_candidate(
        &self,
        eligible: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, E2eeError> {
        let group = self.group.as_ref().ok_or(E2eeError::NoGroup)?;
        let tree = group.exported_tree();
        let nodes = tree.nodes();
        let mut best: Option<(usize, String)> = None;
        for m in group.roster().members_iter() {
            let id = mls::identity_name(&m.signing_identity);
            if !eligible(&id) {
                continue;
            }
            let fills = tree_fill::parents_to_fill(nodes, m.index);
            if fills > 0 && best.as_ref().is_none_or(|(most, _)| fills > *most) {
                best = Some((fills, id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Participant ids of the group's members by leaf index, as the server's view has them.
    pub fn roster(&self) -> Vec<String> {
        self.group
            .as_ref()
            .map(|g| {
                g.roster()
                    .members_iter()
                    .map(|m| mls::identity_name(&m.signing_identity))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The epoch the server's view is at; `None` before [`DeliveryService::observe_group`].
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.group_context().epoch)
    }
}
