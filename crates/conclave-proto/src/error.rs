//! Error codes a client may receive in an `error` message. Stable strings: clients
//! switch on them to show a person what happened.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or fields of the wrong shape.
    BadMessage,
    /// A `type` this server does not know.
    UnknownType,
    /// A frame over the cap (`MAX_MESSAGE_BYTES`). The connection is closed.
    TooLarge,
    /// Too many messages too fast on this connection.
    Flood,
    /// The meeting does not exist or the passcode is wrong. Deliberately one
    /// answer for both, so that meeting IDs cannot be probed.
    JoinRefused,
    /// Too many failed join attempts from this address or for this meeting.
    TooManyAttempts,
    /// The meeting is locked: nobody new may join or wait.
    Locked,
    /// The meeting (or its waiting room) is at its size limit.
    Full,
    /// Removed from this meeting earlier: this account or session may not rejoin.
    Banned,
    /// The meeting admits only signed-in users.
    SignInRequired,
    /// The meeting admits only people of the server's organisation (by
    /// provider and/or email domain) and the outside addresses the host
    /// invited. Sent, like `sign_in_required`, only after the passcode held.
    OrganisationOnly,
    /// The sender's role or the meeting's permissions do not allow this.
    NotPermitted,
    /// No such member (or waiting person) in this meeting.
    UnknownParticipant,
    /// The message needs an admitted member; this connection is not one (yet).
    NotJoined,
    /// `join` or `resume` on a connection that already did.
    AlreadyJoined,
    /// The resume token is unknown or its window has passed: join afresh.
    ResumeFailed,
    /// Display name empty, too long or containing control characters.
    InvalidName,
    /// Chat payload over its size limit.
    ChatTooLarge,
    /// An SDP the server cannot use (no usable codec, too large, malformed) or a
    /// track the member may not send. Nothing changed.
    MediaRefused,
    /// An MLS object the server cannot accept: malformed, a key package whose
    /// credential is not the sender's id, a second key package, a group info
    /// from a member not asked to create the group. Nothing changed.
    MlsRefused,
    /// A commit for an epoch that another commit already ended (or that does
    /// not apply): discard it and process the commit that won.
    StaleCommit,
    /// A chat message encrypted in an epoch the group has left: members no
    /// longer hold its keys. Encrypt it again in the current epoch and resend.
    StaleChat,
    /// The connection sent no `join` in time.
    Timeout,
    /// The server is shutting down.
    ShuttingDown,
    /// Temporarily unavailable: in a cluster, the coordination it needs
    /// (Redis) cannot be reached, or the meeting runs on a node this one
    /// cannot hand the connection to yet. Nothing changed; retry in a
    /// moment.
    Unavailable,
    /// A breakout request that cannot be carried out: too many or no rooms,
    /// a room name empty or too long, a member assigned twice or not in
    /// the meeting, rooms already open (or none open), or a ticket that is
    /// unknown, used up or someone else's. Nothing changed.
    BreakoutRefused,
    /// Something failed inside the server; nothing was changed.
    Internal,
}

impl ErrorCode {
    /// The human sentence that goes with the code.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "malformed message",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::TooLarge => "message too large",
            ErrorCode::Flood => "too many messages; slow down",
            ErrorCode::JoinRefused => "meeting not found or wrong passcode",
            ErrorCode::TooManyAttempts => "too many attempts",
            ErrorCode::Locked => "the meeting is locked",
            ErrorCode::Full => "the meeting is full",
            ErrorCode::Banned => "you were removed from this meeting and cannot rejoin",
            ErrorCode::SignInRequired => "only signed-in users may join this meeting",
            ErrorCode::OrganisationOnly => {
                "only people of this organisation, and those the host invited, may join this meeting"
            }
            ErrorCode::NotPermitted => "not permitted",
            ErrorCode::UnknownParticipant => "no such participant",
            ErrorCode::NotJoined => "join the meeting first",
            ErrorCode::AlreadyJoined => "already joined",
            ErrorCode::ResumeFailed => "cannot resume; join again",
            ErrorCode::InvalidName => "a name has 1 to 64 characters and no control characters",
            ErrorCode::ChatTooLarge => "chat message too large (16 KiB at most)",
            ErrorCode::MediaRefused => "media offer refused",
            ErrorCode::MlsRefused => "MLS message refused",
            ErrorCode::StaleCommit => "commit refused: another commit already ended this epoch",
            ErrorCode::StaleChat => {
                "chat refused: encrypted in an epoch the group has left; resend it"
            }
            ErrorCode::Timeout => "no join message in time",
            ErrorCode::ShuttingDown => "the server is shutting down",
            ErrorCode::Unavailable => "temporarily unavailable; try again in a moment",
            ErrorCode::BreakoutRefused => "breakout request refused; nothing was changed",
            ErrorCode::Internal => "internal error; nothing was changed",
        }
    }
}
