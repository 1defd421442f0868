//! The crate's one error type.

/// Everything that can go wrong in the group or with a frame. Messages from the network that
/// do not parse, do not verify or do not fit the group's state end here, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    /// mls-rs refused the operation or the message (bad encoding, signature, epoch, ...).
    #[error("MLS: {0}")]
    Mls(#[from] mls_rs::error::MlsError),
    /// The SFrame layer refused the frame (bad header, failed authentication, ...).
    #[error("SFrame: {0}")]
    Sframe(#[from] sframe::error::SframeError),
    /// A message of the wrong kind for this entry point (e.g. a commit where a Welcome belongs).
    #[error("unexpected MLS message: expected {0}")]
    UnexpectedMessage(&'static str),
    /// The member has no group yet (neither created nor joined).
    #[error("not in a group")]
    NoGroup,
    /// The member already has a group.
    #[error("already in a group")]
    AlreadyInGroup,
    /// The member was removed from the group; its state opens nothing of later epochs.
    #[error("removed from the group")]
    Removed,
    /// A credential is not the participant id it was stated to be.
    #[error("credential is {found:?}, expected participant {expected:?}")]
    IdentityMismatch {
        /// The participant id that was stated.
        expected: String,
        /// What the credential carries (lossy UTF-8).
        found: String,
    },
    /// A participant id that is not a decimal number, or is not in the group.
    #[error("unknown participant {0:?}")]
    UnknownParticipant(String),
    /// A commit that adds or removes members on a member's own authority: only the server's
    /// proposals (the host's decisions) may change the membership.
    #[error("commit changes membership without the server's proposal")]
    UnauthorizedProposal,
    /// A chat message that is not UTF-8.
    #[error("chat text is not UTF-8")]
    NotUtf8,
    /// A VP8 frame shorter than its payload header.
    #[error("frame too short: {0} bytes")]
    FrameTooShort(usize),
    /// No key for this KID (another epoch, a stranger, or the grace period is over).
    #[error("no key for KID {0}")]
    UnknownKey(u64),
    /// A frame whose KID belongs to another member than the one whose track carried it.
    #[error("KID {kid} is not participant {expected:?}'s")]
    WrongSender {
        /// The frame's KID.
        kid: u64,
        /// The participant the track belongs to.
        expected: String,
    },
    /// No sending key yet: `FrameCrypto::set_epoch` was not called.
    #[error("no SFrame key set")]
    NoKey,
    /// The group id or external sender given to `create_group` does not decode.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl E2eeError {
    /// A message made for another epoch than the group's: for a commit, another
    /// commit already ended its epoch (the delivery service answers "stale").
    pub fn is_wrong_epoch(&self) -> bool {
        matches!(self, E2eeError::Mls(mls_rs::error::MlsError::InvalidEpoch))
    }
}
