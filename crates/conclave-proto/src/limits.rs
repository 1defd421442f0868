//! Sizes that follow from the largest meeting, so that every message stays under its cap at
//! any size a host may configure.
//!
//! The MLS objects a client sends grow with the group: a commit by one HPKE ciphertext for
//! each member whose part of the tree is blank and one reference for each proposal, a Welcome
//! by one encrypted GroupSecrets for each member it adds. The ratchet tree travels apart
//! (`mls_welcome.ratchet_tree`, from the server), so nothing a client sends carries it. Each
//! cap is the largest meeting times a per-member bound with a stated margin, plus a fixed
//! part; `crates/conclave-core/tests/mls_at_the_limit.rs` builds a group of
//! [`MAX_PARTICIPANTS_LIMIT`] and checks real objects against them.

/// The most members one meeting may be configured for.
pub const MAX_PARTICIPANTS_LIMIT: u32 = 1000;

/// The most one member adds to an MLS object a client sends, in bytes before base64. RFC 9420
/// encodings, suite 0x0001: in a Welcome, one EncryptedGroupSecrets (key package reference
/// 33, HPKE KEM output 33, joiner and path secret sealed 86: 152); in a commit, the path
/// secret sealed to a member below a blank node (82) plus references to a Remove and an Add
/// proposal (34 each): 150. 192 is the larger with a margin of a quarter.
pub const MLS_BYTES_PER_MEMBER: usize = 192;

/// The part of an MLS object that does not grow with the group: the committer's leaf node and
/// signature, the GroupInfo inside a Welcome (group context with the external sender, its
/// signature and confirmation tag), framing. About 1 KiB measured; 4 KiB allowed.
pub const MLS_FIXED_BYTES: usize = 4 * 1024;

/// Characters of base64 (padded) for `bytes` bytes.
pub const fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// Largest MLS object (key package, commit, Welcome, GroupInfo) a client sends, base64 text:
/// a commit or a Welcome at [`MAX_PARTICIPANTS_LIMIT`] members (about 255 KiB).
pub const MAX_MLS_BYTES: usize =
    base64_len(MAX_PARTICIPANTS_LIMIT as usize * MLS_BYTES_PER_MEMBER + MLS_FIXED_BYTES);

/// The JSON around the MLS objects of one message (`type`, field names, quotes), and room for
/// every message that carries no MLS object (SDP, chat: 32 and 16 KiB at most).
pub const ENVELOPE_BYTES: usize = 4 * 1024;

/// Largest text frame the server reads; larger frames close the connection. The largest
/// message is `mls_commit` with a commit and a Welcome, both at the limit (about 514 KiB).
pub const MAX_MESSAGE_BYTES: usize = 2 * MAX_MLS_BYTES + ENVELOPE_BYTES;

/// The most one member adds to the ratchet tree the server sends a newcomer, before base64:
/// its leaf node (HPKE and signature keys 33 each, credential, capabilities, lifetime or parent
/// hash up to 33, signature 65: about 190), its share of the parent nodes (HPKE key and parent
/// hash, 66 each, one parent per leaf) and of their unmerged-leaf lists (4 bytes in at most
/// one list per tree level, 10 levels): about 300. 384 allows a quarter more.
pub const RATCHET_TREE_BYTES_PER_MEMBER: usize = 384;

/// Largest ratchet tree, before base64, at [`MAX_PARTICIPANTS_LIMIT`] members (about 379 KiB).
/// Only the server sends one (`mls_welcome`), so no server cap follows from it; it bounds the
/// largest message a client receives.
pub const MAX_RATCHET_TREE_BYTES: usize =
    MAX_PARTICIPANTS_LIMIT as usize * RATCHET_TREE_BYTES_PER_MEMBER + MLS_FIXED_BYTES;

/// Largest `mls_welcome` a client receives: the Welcome and the tree, base64, in JSON.
pub const MAX_WELCOME_MESSAGE_BYTES: usize =
    MAX_MLS_BYTES + base64_len(MAX_RATCHET_TREE_BYTES) + ENVELOPE_BYTES;
