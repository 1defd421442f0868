//! The signaling messages exchanged over a meeting's WebSocket, as JSON text frames.
//!
//! Every message is an object with a `type` field naming it (snake_case). The
//! full catalogue, with examples and the order in which they flow, is in
//! `docs/protocol.md`; the types here are its source of truth.
//!
//! Longer than most modules on purpose: the two message enums and the types
//! they carry are one catalogue, read side by side with protocol.md, and
//! splitting them would send a reader to several files for one message.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::limits::MAX_MESSAGE_BYTES;

/// Bumped on any change a deployed client would notice.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest chat payload, in bytes. The payload is opaque to the server
/// (ciphertext once E2EE is on), so only its size is checked.
pub const MAX_CHAT_BYTES: usize = 16 * 1024;
/// Largest `app` payload (hands, reactions, polls), in bytes of base64. Their
/// plaintexts are a few hundred bytes; a bound well under chat's keeps a
/// member from using the channel that chat-off leaves open as a chat.
pub const MAX_APP_BYTES: usize = 8 * 1024;
/// `app` messages one member may have relayed in a burst, and per second after it.
/// A member re-announces at most three (hand, poll, results) after each commit.
pub const APP_BURST: u32 = 20;
pub const APP_PER_SEC: u32 = 5;

/// A member's number within one meeting. Not secret: it only names a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    Cohost,
    Participant,
}

impl Role {
    /// Hosts and co-hosts moderate: admit, remove, mute, lock, set permissions.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Host | Role::Cohost)
    }
}

/// Who may share their screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenShare {
    HostOnly,
    Everyone,
}

/// Which attendees may publish media (camera, microphone, screen) at all.
/// A lecture or an all-hands makes most of its audience view-only: they
/// watch, raise a hand, and speak when a moderator allows them to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publishing {
    #[default]
    Everyone,
    /// Only hosts, co-hosts and the participants a moderator allowed
    /// (`allow_publish`); everyone else is view-only.
    Allowed,
}

/// What participants (not hosts or co-hosts) may do. Hosts may always do all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub screen_share: ScreenShare,
    pub chat: bool,
    pub self_unmute: bool,
    pub rename_self: bool,
    /// Absent in what older servers and stores wrote: everyone then.
    #[serde(default)]
    pub publish: Publishing,
}

impl Default for Permissions {
    /// The safe defaults: host-only screen share, chat on, self-unmute on, no renaming.
    fn default() -> Self {
        Permissions {
            screen_share: ScreenShare::HostOnly,
            chat: true,
            self_unmute: true,
            rename_self: false,
            publish: Publishing::Everyone,
        }
    }
}

/// A partial update of [`Permissions`]: absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_share: Option<ScreenShare>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_unmute: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_self: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publishing>,
}

impl PermissionsPatch {
    pub fn apply(&self, p: &mut Permissions) {
        if let Some(v) = self.screen_share {
            p.screen_share = v;
        }
        if let Some(v) = self.chat {
            p.chat = v;
        }
        if let Some(v) = self.self_unmute {
            p.self_unmute = v;
        }
        if let Some(v) = self.rename_self {
            p.rename_self = v;
        }
        if let Some(v) = self.publish {
            p.publish = v;
        }
    }
}

/// Whether a member's socket is up, or dropped and inside its resume window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Connected,
    Reconnecting,
}

/// One admitted member, as every other member sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// True when signed in with an account (the name is then the account's choice).
    pub signed_in: bool,
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
    pub presence: Presence,
    /// A recorder: it writes the meeting's media to files.
    #[serde(default)]
    pub recording: bool,
    /// A moderator allowed this participant to publish while the meeting's
    /// `publish` permission is `allowed`. Clients work out who is view-only
    /// from this, the role and that permission, so changing the permission
    /// does not resend a thousand participants. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_allowed: bool,
}

impl Participant {
    /// Whether this participant may publish media under `permissions`.
    pub fn may_publish(&self, permissions: &Permissions) -> bool {
        self.role.moderates() || permissions.publish == Publishing::Everyone || self.publish_allowed
    }
}

/// Someone in the waiting room, as hosts and co-hosts see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingParticipant {
    pub id: ParticipantId,
    pub name: String,
    pub signed_in: bool,
    /// Asks to join in order to record.
    #[serde(default)]
    pub recording: bool,
    /// Comes from the network (IPv4 address, IPv6 /64) of someone removed
    /// from this meeting, under a guest identity and account that are not
    /// banned: perhaps the removed person with cleared cookies, perhaps a
    /// neighbour behind the same NAT. Such a person always waits, even when
    /// the meeting's waiting room is off, so that a moderator decides.
    /// Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_network_as_removed: bool,
}

/// The meeting-wide state every member sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingState {
    pub title: String,
    pub locked: bool,
    /// "Suspend participant activities" is in force: participants may not
    /// unmute, start video, share or chat until a host resumes activities.
    pub suspended: bool,
    pub permissions: Permissions,
}

/// Why a member left the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Removed,
    /// The socket dropped and the resume window passed.
    TimedOut,
}

/// Why the meeting ended for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// A host chose "End meeting for all".
    EndedByHost,
    /// The host deleted the meeting.
    Deleted,
    /// The server is shutting down.
    ServerShutdown,
    /// A breakout room closed: its members go back to the parent meeting.
    BreakoutClosed,
}

/// A media kind a member sends, for the host's "stop" controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
    Screen,
}

/// Largest SDP accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;

/// A track a client sends, named by its SDP `mid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedTrack {
    pub mid: String,
    pub kind: MediaKind,
}

/// A track the server forwards to a client: whose it is and what it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTrack {
    pub mid: String,
    pub participant: ParticipantId,
    pub kind: MediaKind,
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of a connection. The passcode may be omitted by the
    /// meeting's owner when the socket was opened with their session or token.
    Join {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<String>,
        /// This client records the meeting (`conclave record`). Everyone,
        /// hosts in the waiting room included, sees it marked as recording.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recorder: bool,
    },
    /// First message of a connection that takes back a seat after a drop.
    Resume {
        token: String,
        /// How many MLS messages (`mls_create_group`, `mls_message`,
        /// `mls_welcome`, `mls_commit_request`, `mls_update_request`) the client took in for this
        /// seat: the server sends the ones after them again, as messages sent
        /// to a dying socket are lost. Absent when the client kept no MLS
        /// state (a reloaded page): nothing is sent again, and the count
        /// starts afresh.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mls_received: Option<u64>,
    },
    Leave,
    Admit {
        participant: ParticipantId,
    },
    Deny {
        participant: ParticipantId,
    },
    AdmitAll,
    DenyAll,
    /// Remove and ban from this meeting.
    Remove {
        participant: ParticipantId,
    },
    /// Stop one kind of a member's media: audio (mute), video or screen share.
    StopMedia {
        participant: ParticipantId,
        kind: MediaKind,
    },
    MuteAll,
    /// A moderator lets a participant publish ("Allow to speak") or takes
    /// that back ("Stop"), which also stops what they were sending. Only
    /// matters while the meeting's `publish` permission is `allowed`.
    AllowPublish {
        participant: ParticipantId,
        allowed: bool,
    },
    /// A member's own media state: what it is sending. Turning something on is
    /// checked against the permissions; turning it off is always allowed.
    SetMedia {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screen: Option<bool>,
    },
    /// Rename oneself (no `participant`) or, as a moderator, someone else.
    Rename {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant: Option<ParticipantId>,
        name: String,
    },
    SetPermissions {
        permissions: PermissionsPatch,
    },
    Lock,
    Unlock,
    /// Make a member co-host or participant. Host only.
    SetRole {
        participant: ParticipantId,
        role: Role,
    },
    TransferHost {
        participant: ParticipantId,
    },
    SuspendActivities,
    ResumeActivities,
    EndMeeting,
    /// An opaque payload relayed to every member (ciphertext once E2EE is on).
    Chat {
        payload: String,
    },
    /// An MLS application message that is not chat (hands, reactions,
    /// polls), relayed like chat but allowed while chat is off: only
    /// suspension stops it.
    App {
        payload: String,
    },
    /// The client's SDP offer for what it sends (and receives), with the kind of
    /// each track it sends so the server can tell camera from screen share.
    MediaOffer {
        sdp: String,
        #[serde(default)]
        tracks: Vec<PublishedTrack>,
    },
    /// The client's answer to a server `media_offer`.
    MediaAnswer {
        sdp: String,
    },
    /// The size a video is shown at, so the server can pick a simulcast layer.
    ViewSize {
        participant: ParticipantId,
        kind: MediaKind,
        width: u32,
        height: u32,
    },
    /// This client's MLS key package (base64), sent once it knows its id. The
    /// server keeps it until a host admits the client, then proposes the Add.
    MlsKeyPackage {
        key_package: String,
    },
    /// From the member told to `mls_create_group`: the new group's GroupInfo.
    MlsGroupInfo {
        group_info: String,
    },
    /// A commit of the pending proposals, with the Welcome for those it adds.
    /// `group_info` (the new epoch's) is accepted but not needed: the server
    /// follows the group from the commits themselves.
    MlsCommit {
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_info: Option<String>,
    },
    /// After an epoch change: ask the server to request a key frame of this
    /// member's own video (a PLI to it), so receivers get a frame under the new key.
    KeyFrameRequest,
    /// First message of a connection that comes with a breakout ticket:
    /// into a breakout room, or back into the meeting that opened it.
    BreakoutJoin {
        name: String,
        ticket: String,
    },
    /// Host or co-host: open these rooms and move the members named in them
    /// (`auto_assign`: spread the others evenly too).
    BreakoutOpen {
        rooms: Vec<crate::BreakoutRoomPlan>,
        #[serde(default)]
        auto_assign: bool,
        #[serde(default)]
        allow_return: bool,
    },
    /// Host or co-host: a line of text shown in every open room.
    BreakoutBroadcast {
        text: String,
    },
    /// Host or co-host: a ticket into one open room, to visit it.
    BreakoutVisit {
        room: crate::MeetingId,
    },
    /// Host or co-host: close every room after `countdown_secs`; their
    /// members come back.
    BreakoutClose {
        #[serde(default)]
        countdown_secs: u32,
    },
}

/// What a member needs to create or check the meeting's MLS group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eeSetup {
    /// The MLS group id (base64).
    pub group_id: String,
    /// The server's external-sender entry (base64), the only one the group may have.
    pub external_sender: String,
}

/// A STUN or TURN server a client may use to reach the media router, shaped
/// like WebRTC's `RTCIceServer` so a browser can take it as it is. The router
/// itself is ICE-lite with only host candidates; a TURN relay is what carries
/// media for a client whose network lets nothing out but TCP or TLS to 443.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:`/`turns:` (or `stun:`) URLs, e.g. `turns:turn.example.org:443?transport=tcp`.
    pub urls: Vec<String>,
    /// For servers with shared-secret (TURN REST API) credentials,
    /// `<unix expiry>:<per-participant tag>`: the relay refuses it after
    /// the expiry, so a leaked credential is worth hours, not forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The only message a waiting connection ever receives (besides its own
    /// admission, denial or an error): "you are waiting". Sent again, with
    /// the same `you`, whenever `recording` changes.
    Waiting {
        you: ParticipantId,
        /// A recorder is in the meeting: a person deciding whether to stay
        /// must know it before they are let in. The one fact about the
        /// meeting the waiting room learns (docs/security.md).
        #[serde(default)]
        recording: bool,
    },
    /// Sent to a waiting connection after `waiting` when the meeting does
    /// not let guests in before a host (`join_before_host` off) and no host
    /// or co-host is in yet: the person waits for one, not for admission.
    WaitingForHost,
    /// Admitted (or resumed): the whole state a member needs.
    Joined {
        you: ParticipantId,
        role: Role,
        /// Present this in a `resume` message within the resume window after a drop.
        resume_token: String,
        /// Seconds a dropped seat is kept.
        resume_window: u64,
        meeting: MeetingState,
        participants: Vec<Participant>,
        /// Only moderators see the waiting room; empty for others.
        waiting: Vec<WaitingParticipant>,
        /// The MLS group's setup. Absent only if the server could not start
        /// its delivery service; such a meeting cannot carry media or chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e2ee: Option<E2eeSetup>,
        /// TURN servers with credentials for this participant only, sent
        /// on admission and never to the waiting room, so that relay
        /// capacity is spent on members alone. Empty when the operator
        /// configured none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    ParticipantJoined {
        participant: Participant,
    },
    ParticipantUpdated {
        participant: Participant,
    },
    ParticipantLeft {
        participant: ParticipantId,
        reason: LeaveReason,
    },
    /// The whole waiting room, sent to moderators whenever it changes.
    WaitingRoom {
        waiting: Vec<WaitingParticipant>,
    },
    MeetingUpdated {
        meeting: MeetingState,
    },
    Chat {
        from: ParticipantId,
        payload: String,
    },
    App {
        from: ParticipantId,
        payload: String,
    },
    /// The server's answer to a client `media_offer`.
    MediaAnswer {
        sdp: String,
    },
    /// The server offers new or changed tracks (other members' media) to this
    /// client; answer with `media_answer`.
    MediaOffer {
        sdp: String,
        tracks: Vec<RemoteTrack>,
    },
    /// The member who is speaking loudest now.
    ActiveSpeaker {
        participant: ParticipantId,
    },
    /// Dynacast, to a simulcast track's publisher alone: of the track it
    /// sends on its m-line `mid`, send only the encodings `rids` (empty:
    /// none, nobody receives it). Sent when the set changes; a layer is
    /// dropped from it only after nobody received it for a while, and added
    /// at once when someone needs it. Ignoring it costs only the sender's
    /// uplink.
    LayersWanted {
        mid: String,
        rids: Vec<String>,
    },
    /// To one member alone: of the video it receives on its m-line `mid`,
    /// nothing is forwarded now (`paused`: its downlink is congested and
    /// even that video's smallest layer does not fit beside its others),
    /// or it is forwarded again. Its tile can say why the picture stopped.
    VideoPaused {
        mid: String,
        paused: bool,
    },
    /// You are the first member with a key package: create the MLS group with
    /// this setup (the same as `joined`'s unless the group had to be started
    /// afresh because all its members left) and send `mls_group_info`.
    MlsCreateGroup {
        e2ee: E2eeSetup,
    },
    /// An MLS handshake message for the group (base64): the server's Add or
    /// Remove proposal, or a member's commit. `commit_by` names the member who
    /// should commit, on the last of the proposals sent together only, so
    /// that they are committed together.
    MlsMessage {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit_by: Option<ParticipantId>,
    },
    /// To the member now named to commit the proposals already sent this
    /// epoch: the one named in them did not commit in time.
    MlsCommitRequest,
    /// To a member the group gained since it last committed, when no proposal
    /// is out: make an update commit (a fresh path, nothing else), so that
    /// the tree fills and commits stay small. One member at a time.
    MlsUpdateRequest,
    /// The Welcome that brings this member into the group (base64), and the
    /// ratchet tree of the epoch it welcomes to (base64, RFC 9420 §12.4.3.3),
    /// which Welcomes leave out so that no client message grows with the
    /// group. The tree is the server's own public view; the member checks it
    /// against the tree hash in the Welcome and refuses any other. Shared: a
    /// batch's newcomers get one tree (up to ~350 KB of text at 1,000
    /// members), which each seat keeps a while to send again on resume.
    MlsWelcome {
        welcome: String,
        ratchet_tree: std::sync::Arc<str>,
    },
    /// To moderators: join attempts with a wrong passcode are being made.
    SecurityNotice {
        failed_attempts: u32,
        window_secs: u64,
    },
    /// To a waiting connection: a host declined. The socket closes.
    Denied,
    /// To a removed member: removed and banned. The socket closes.
    Removed,
    /// The meeting ended for everyone. The socket closes.
    Ended {
        reason: EndReason,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// For `too_many_attempts` and `flood`: seconds before trying again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// To one member: go to this breakout room (`ticket` admits you there;
    /// `return_ticket` brings you back to this meeting, when returning is
    /// allowed or the rooms close).
    BreakoutMove {
        room: crate::MeetingId,
        name: String,
        ticket: String,
        return_ticket: String,
        allow_return: bool,
    },
    /// To the parent's moderators: the open rooms (none once closed), and
    /// seconds until they close when a countdown runs.
    BreakoutRooms {
        rooms: Vec<crate::BreakoutRoomInfo>,
        allow_return: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closing_in: Option<u32>,
    },
    /// To everyone in the rooms and the parent: the host's announcement.
    /// Not end-to-end encrypted (security.md, breakout rooms).
    BreakoutBroadcast {
        from: String,
        text: String,
    },
    /// To the rooms' members: the rooms close in `seconds`.
    BreakoutClosing {
        seconds: u32,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode) -> Self {
        ServerMessage::Error {
            code,
            message: code.describe().to_string(),
            retry_after: None,
        }
    }

    pub fn error_retry(code: ErrorCode, retry_after: u64) -> Self {
        ServerMessage::Error {
            code,
            message: format!("{}; retry after {retry_after} s", code.describe()),
            retry_after: Some(retry_after),
        }
    }

    /// The `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Waiting { .. } => "waiting",
            ServerMessage::WaitingForHost => "waiting_for_host",
            ServerMessage::Joined { .. } => "joined",
            ServerMessage::ParticipantJoined { .. } => "participant_joined",
            ServerMessage::ParticipantUpdated { .. } => "participant_updated",
            ServerMessage::ParticipantLeft { .. } => "participant_left",
            ServerMessage::WaitingRoom { .. } => "waiting_room",
            ServerMessage::MeetingUpdated { .. } => "meeting_updated",
            ServerMessage::Chat { .. } => "chat",
            ServerMessage::App { .. } => "app",
            ServerMessage::SecurityNotice { .. } => "security_notice",
            ServerMessage::MediaAnswer { .. } => "media_answer",
            ServerMessage::MediaOffer { .. } => "media_offer",
            ServerMessage::ActiveSpeaker { .. } => "active_speaker",
            ServerMessage::LayersWanted { .. } => "layers_wanted",
            ServerMessage::VideoPaused { .. } => "video_paused",
            ServerMessage::MlsCreateGroup { .. } => "mls_create_group",
            ServerMessage::MlsMessage { .. } => "mls_message",
            ServerMessage::MlsCommitRequest => "mls_commit_request",
            ServerMessage::MlsUpdateRequest => "mls_update_request",
            ServerMessage::MlsWelcome { .. } => "mls_welcome",
            ServerMessage::Denied => "denied",
            ServerMessage::Removed => "removed",
            ServerMessage::Ended { .. } => "ended",
            ServerMessage::Error { .. } => "error",
            ServerMessage::BreakoutMove { .. } => "breakout_move",
            ServerMessage::BreakoutRooms { .. } => "breakout_rooms",
            ServerMessage::BreakoutBroadcast { .. } => "breakout_broadcast",
            ServerMessage::BreakoutClosing { .. } => "breakout_closing",
        }
    }
}

/// The message types a client may send, for telling "unknown type" from "malformed".
const CLIENT_TYPES: &[&str] = &[
    "join",
    "resume",
    "leave",
    "admit",
    "deny",
    "admit_all",
    "deny_all",
    "remove",
    "stop_media",
    "mute_all",
    "allow_publish",
    "set_media",
    "rename",
    "set_permissions",
    "lock",
    "unlock",
    "set_role",
    "transfer_host",
    "suspend_activities",
    "resume_activities",
    "end_meeting",
    "chat",
    "app",
    "media_offer",
    "media_answer",
    "view_size",
    "mls_key_package",
    "mls_group_info",
    "mls_commit",
    "key_frame_request",
    "breakout_join",
    "breakout_open",
    "breakout_broadcast",
    "breakout_visit",
    "breakout_close",
];

/// Reads one client text frame, telling apart the ways it can be wrong.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ErrorCode> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ErrorCode::TooLarge);
    }
    // A parsed object keeps the last of two equal keys; refuse them first.
    serde_json::from_str::<DistinctKeys>(text).map_err(|_| ErrorCode::BadMessage)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| ErrorCode::BadMessage)?;
    match value.get("type").and_then(|t| t.as_str()) {
        Some(t) if CLIENT_TYPES.contains(&t) => {}
        Some(_) => return Err(ErrorCode::UnknownType),
        None => return Err(ErrorCode::BadMessage),
    }
    let msg: ClientMessage =
        serde_json::from_value(value.clone()).map_err(|_| ErrorCode::BadMessage)?;
    // serde ignores unknown fields on variants without fields; refuse them like
    // everywhere else, so that a misspelt field is never silently dropped.
    if let (Some(given), Ok(serde_json::Value::Object(known))) =
        (value.as_object(), serde_json::to_value(&msg))
        && given
            .iter()
            .any(|(k, v)| !known.contains_key(k) && !v.is_null())
    {
        return Err(ErrorCode::BadMessage);
    }
    Ok(msg)
}

/// JSON in which no object has the same key twice, at any depth. serde_json
/// keeps the last of two equal keys, so `{"type":"chat",…,"type":"leave"}`
/// was a `leave` to the server while a filter or log reading the first key
/// saw a chat: one message, two meanings. Keys are compared after their
/// escapes are decoded (`"t\u0079pe"` is `"type"`). serde_json's nesting limit
/// (128) bounds the recursion.
struct DistinctKeys;

impl<'de> Deserialize<'de> for DistinctKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DistinctKeysVisitor)
    }
}

struct DistinctKeysVisitor;

impl<'de> serde::de::Visitor<'de> for DistinctKeysVisitor {
    type Value = DistinctKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without a key twice in one object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<DistinctKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("a key appears twice"));
            }
            map.next_value::<DistinctKeys>()?;
        }
        Ok(DistinctKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<DistinctKeys, A::Error> {
        while seq.next_element::<DistinctKeys>()?.is_some() {}
        Ok(DistinctKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }

    fn visit_unit<E>(self) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys)
    }
}

/// Checks and tidies a display name: trimmed, 1 to [`MAX_NAME_CHARS`]
/// characters, no control characters. It is still shown as text, never as markup.
pub fn clean_display_name(name: &str) -> Result<String, ErrorCode> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(|c| c.is_control())
    {
        return Err(ErrorCode::InvalidName);
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_parses_with_and_without_passcode() {
        assert_eq!(
            parse_client_message(r#"{"type":"join","name":"Ada","passcode":"x"}"#),
            Ok(ClientMessage::Join {
                name: "Ada".into(),
                passcode: Some("x".into()),
                recorder: false,
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"join","name":"Ada"}"#),
            Ok(ClientMessage::Join {
                name: "Ada".into(),
                passcode: None,
                recorder: false,
            })
        );
    }

    #[test]
    fn every_listed_type_is_a_variant() {
        // A type listed but not parseable would turn into `bad_message` forever.
        for t in CLIENT_TYPES {
            let err = parse_client_message(&format!(r#"{{"type":"{t}"}}"#));
            assert_ne!(err, Err(ErrorCode::UnknownType), "{t}");
        }
    }

    #[test]
    fn bad_input_gets_the_right_code() {
        assert_eq!(parse_client_message("{"), Err(ErrorCode::BadMessage));
        assert_eq!(parse_client_message("[]"), Err(ErrorCode::BadMessage));
        assert_eq!(
            parse_client_message(r#"{"type":"launch_missiles"}"#),
            Err(ErrorCode::UnknownType)
        );
        assert_eq!(
            parse_client_message(r#"{"type":"admit","participant":"p1"}"#),
            Err(ErrorCode::BadMessage)
        );
        assert_eq!(
            parse_client_message(r#"{"type":"lock","extra":1}"#),
            Err(ErrorCode::BadMessage)
        );
        let big = format!(
            r#"{{"type":"chat","payload":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(parse_client_message(&big), Err(ErrorCode::TooLarge));
    }

    #[test]
    fn a_key_twice_is_a_bad_message() {
        for text in [
            r#"{"type":"chat","payload":"hi","type":"leave"}"#,
            r#"{"type":"leave","type":"leave"}"#,
            // The same key, spelt with an escape.
            r#"{"type":"leave","t\u0079pe":"chat","payload":"x"}"#,
            r#"{"type":"join","name":"Ada","name":"Eve"}"#,
            // Inside a nested object too.
            r#"{"type":"set_permissions","permissions":{"chat":true,"chat":false}}"#,
            r#"{"type":"set_media","audio":true,"video":false,"audio":false}"#,
        ] {
            assert_eq!(
                parse_client_message(text),
                Err(ErrorCode::BadMessage),
                "{text}"
            );
        }
        // Equal keys in different objects are fine.
        assert!(
            parse_client_message(r#"{"type":"set_permissions","permissions":{"chat":true}}"#)
                .is_ok()
        );
    }

    #[test]
    fn deep_or_odd_json_is_refused_without_a_panic() {
        for depth in [10, 127, 128, 129, 10_000] {
            let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(parse_client_message(&arrays), Err(ErrorCode::BadMessage));
            let objects = format!(r#"{}1{}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
            assert_eq!(parse_client_message(&objects), Err(ErrorCode::BadMessage));
        }
        for text in [
            "",
            "null",
            "1e999",
            r#""type""#,
            "{\"type\":\"leave\"",
            "\u{0}",
        ] {
            assert_eq!(
                parse_client_message(text),
                Err(ErrorCode::BadMessage),
                "{text:?}"
            );
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_display_name("  Ada "), Ok("Ada".into()));
        assert_eq!(clean_display_name(""), Err(ErrorCode::InvalidName));
        assert_eq!(clean_display_name("a\u{0}b"), Err(ErrorCode::InvalidName));
        assert_eq!(
            clean_display_name(&"x".repeat(65)),
            Err(ErrorCode::InvalidName)
        );
        // Markup is allowed as text: clients render it with textContent.
        assert!(clean_display_name("<img src=x onerror=alert(1)>").is_ok());
    }

    #[test]
    fn server_messages_are_tagged_snake_case() {
        let m = ServerMessage::error_retry(ErrorCode::TooManyAttempts, 12);
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "too_many_attempts");
        assert_eq!(v["retry_after"], 12);
        assert_eq!(m.kind(), "error");
    }

    #[test]
    fn waiting_says_whether_the_meeting_is_recorded_and_nothing_more() {
        let m = ServerMessage::Waiting {
            you: ParticipantId(2),
            recording: true,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"type": "waiting", "you": 2, "recording": true})
        );
        // From a server that predates the bit: not recorded.
        let old: ServerMessage = serde_json::from_str(r#"{"type":"waiting","you":2}"#).unwrap();
        assert_eq!(
            old,
            ServerMessage::Waiting {
                you: ParticipantId(2),
                recording: false
            }
        );
    }
}
