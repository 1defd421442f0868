//! SFrame (RFC 9605) for media frames, with the keys MLS gives each epoch.
//!
//! Keys (RFC 9605 §5.2): every member exports `base_key = MLS-Exporter("SFrame 1.0 Base Key",
//! "", AEAD.Nk)` in each epoch; a sender's KID is `(leaf index << E) | (epoch mod 2^E)` with
//! E = 4 and context 0, and the per-KID key and salt follow from the base key and KID (§4.4.2).
//! Cipher suite AES_128_GCM_SHA256_128 (§4.5).
//!
//! Frame layout on the wire: `clear header | SFrame header | ciphertext | tag`. For VP8 the
//! payload header (10 bytes for a key frame, 3 for a delta frame, told by the P bit of the
//! first byte) stays clear so the SFU can read it, and is bound as SFrame metadata (part of the
//! AAD, §4.4.3): changing one bit of it fails decryption. Opus frames are encrypted whole.
//!
//! Receivers keep a replay window per KID (RFC 9605 §9.3): a frame whose counter was already
//! decrypted, or lags [`REPLAY_TOLERANCE`] frames behind the newest, is refused. And a frame is
//! opened only as the participant the SFU says sent its track ([`FrameCrypto::decrypt_from`]):
//! the KID's leaf index must be that participant's leaf in the epoch. Every member can derive
//! every member's key from the shared base key, so this does not stop a member from forging
//! another's frames through a server that helps it; it does stop a member from injecting
//! frames into someone else's track through an honest server, which attributes every track to
//! the connection that sent it.

use std::collections::HashMap;

use sframe::{
    CipherSuite,
    frame::{
        EncryptedFrameView, MediaFrameView, MonotonicCounter,
        validation::{ReplayAttackProtectionStore, Tolerance},
    },
    key::{DecryptionKey, EncryptionKey},
};

use crate::E2eeError;

/// How long a receiver keeps an epoch's keys after it switched to the next one: frames a
/// sender encrypted under the old key (for [`SEND_SWITCH_DELAY_MS`] after it processed the
/// commit, or because it processed the commit later) still play, as do frames held back for a
/// retransmission.
pub const PREVIOUS_EPOCH_GRACE_MS: u64 = 5_000;

/// How long a sender keeps encrypting with the previous epoch's key after it processed a commit
/// that removed nobody ([`SendSwitch::AfterDelay`]).
///
/// The server delivers a commit to every member at once, so by then the others have processed
/// it too and hold the new keys: the switch needs no key frame, and every receiver that was in
/// the group decrypts on without a gap (they keep the old keys for [`PREVIOUS_EPOCH_GRACE_MS`],
/// well past this delay). Only a newcomer, which holds the new epoch alone, cannot read these
/// frames; it needs a key frame anyway, as a new subscriber.
///
/// A second covers a member that processes a commit late (a 1,000-member commit costs about
/// 3 ms natively and, by docs/benchmarks.md's bound, under 0.13 s in wasm) and a commit's
/// fan-out to a large meeting. The cost: an update commit's fresh secrets protect media a
/// second later. It is not used when a commit removes a member ([`SendSwitch::AtOnce`]).
pub const SEND_SWITCH_DELAY_MS: u64 = 1_000;

// A sender's old key must stay readable past its switch, with room for late frames.
const _: () = assert!(PREVIOUS_EPOCH_GRACE_MS >= SEND_SWITCH_DELAY_MS + 3_000);

/// How many epochs a sender's key may lag behind the newest it holds. A KID carries only the
/// epoch mod 16 (E = 4), so a receiver that takes epoch `n + 16` drops epoch `n`'s keys: in a
/// burst of commits faster than [`SEND_SWITCH_DELAY_MS`] the sender moves on early, to the
/// oldest key within this lag, leaving receivers that are up to four epochs ahead of it room.
pub const MAX_SEND_LAG_EPOCHS: u64 = 12;
const _: () = assert!(MAX_SEND_LAG_EPOCHS < 1 << EPOCH_BITS);

/// When a sender starts encrypting with a new epoch's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendSwitch {
    /// Now: the first epoch, or a commit that removed a member. The removed member holds the
    /// old epoch's key, and a second more of media to someone just removed (perhaps for
    /// misconduct) is not worth a saved key frame; removals are rare next to joins. Receivers
    /// still on the old epoch miss frames until they process the same commit, so the sender
    /// should send a key frame (docs/security.md, "When a sender changes keys").
    AtOnce,
    /// After [`SEND_SWITCH_DELAY_MS`], when every member can have the new keys: no key frame.
    AfterDelay,
}

/// How far (in frames of one sender) a frame may lag behind the newest one decrypted under its
/// KID. A sender's one counter runs over all its frames (audio, every simulcast layer, screen),
/// up to ~200 a second, and a video frame held back for a retransmission can arrive a second
/// after audio that left later: 2,048 frames is about ten seconds of that.
pub const REPLAY_TOLERANCE: usize = 2048;

/// E of RFC 9605 §5.2: bits of the epoch in the KID; 16 epochs can be told apart.
const EPOCH_BITS: u32 = 4;

pub(crate) const SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;

/// AEAD.Nk of AES_128_GCM_SHA256_128: the length of the exported base key.
pub(crate) fn base_key_len() -> usize {
    16
}

/// KID of RFC 9605 §5.2 with context 0.
pub(crate) fn kid_for(epoch: u64, leaf_index: u32) -> u64 {
    (u64::from(leaf_index) << EPOCH_BITS) | (epoch & ((1 << EPOCH_BITS) - 1))
}

/// The SFrame keys of one epoch, as [`crate::Member::sframe_keys`] gives them: what a media
/// worker needs and nothing more.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EpochKeys {
    /// The MLS epoch.
    pub epoch: u64,
    /// The KID this member sends with.
    pub sender_kid: u64,
    /// (KID, base key) for every member, the sender included.
    pub keys: Vec<(u64, Vec<u8>)>,
    /// (KID, participant id) for every member: whose frames each KID may open, for
    /// [`FrameCrypto::decrypt_from`].
    pub senders: Vec<(u64, String)>,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<u64> = self.keys.iter().map(|(kid, _)| *kid).collect();
        f.debug_struct("EpochKeys")
            .field("epoch", &self.epoch)
            .field("sender_kid", &self.sender_kid)
            .field("kids", &kids)
            .field("senders", &self.senders)
            .finish()
    }
}

/// Which codec a frame is, which decides what stays clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Opus: the whole frame is encrypted.
    Audio,
    /// VP8: the payload header stays clear and is authenticated as metadata.
    Vp8,
}

impl FrameKind {
    /// Bytes at the front that stay clear.
    fn clear_len(self, frame: &[u8]) -> Result<usize, E2eeError> {
        match self {
            FrameKind::Audio => Ok(0),
            FrameKind::Vp8 => {
                let first = *frame.first().ok_or(E2eeError::FrameTooShort(0))?;
                // RFC 6386 §9.1: P (bit 0 of the frame tag) is 0 for a key frame, whose tag is
                // followed by the start code and the dimensions (10 bytes in all).
                let len = if first & 0x01 == 0 { 10 } else { 3 };
                if frame.len() < len {
                    return Err(E2eeError::FrameTooShort(frame.len()));
                }
                Ok(len)
            }
        }
    }
}

/// Encrypts this member's frames and decrypts everyone's, with the keys of the current epoch
/// and, for [`PREVIOUS_EPOCH_GRACE_MS`] after each change, those of the epochs before it.
pub struct FrameCrypto {
    epoch: Option<u64>,
    /// The key this member sends with, and its epoch.
    sender: Option<(u64, EncryptionKey)>,
    /// Sending keys of newer epochs, oldest first: (time it takes over, epoch, key).
    next_senders: Vec<(u64, u64, EncryptionKey)>,
    /// One counter for every frame this member sends, never reset: (key, CTR) never repeats.
    counter: MonotonicCounter,
    current: HashMap<u64, DecryptionKey>,
    /// Keys of epochs left behind, each with the time it is dropped: a sender may still use one
    /// for [`SEND_SWITCH_DELAY_MS`], and a burst of commits leaves several behind at once.
    previous: HashMap<u64, (DecryptionKey, u64)>,
    /// The earliest drop time in `previous`.
    previous_until_ms: u64,
    /// Participant id per KID of the current and the previous epochs.
    senders: HashMap<u64, String>,
    /// One replay window per KID that has decrypted a frame.
    replay: ReplayAttackProtectionStore,
}

impl std::fmt::Debug for FrameCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCrypto")
            .field("epoch", &self.epoch)
            .field("current_kids", &self.current.keys().collect::<Vec<_>>())
            .field("previous_kids", &self.previous.keys().collect::<Vec<_>>())
            .field("previous_until_ms", &self.previous_until_ms)
            .field("next_senders", &self.next_senders.len())
            .finish_non_exhaustive()
    }
}

impl Default for FrameCrypto {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCrypto {
    /// No keys yet: encryption fails with [`E2eeError::NoKey`] until [`FrameCrypto::set_epoch`].
    pub fn new() -> Self {
        FrameCrypto {
            epoch: None,
            sender: None,
            next_senders: Vec::new(),
            counter: MonotonicCounter::default(),
            current: HashMap::new(),
            previous: HashMap::new(),
            previous_until_ms: 0,
            senders: HashMap::new(),
            replay: ReplayAttackProtectionStore::new(Tolerance::new(REPLAY_TOLERANCE)),
        }
    }

    /// Switch to the keys of a new epoch at `now_ms`, sending with them at once
    /// ([`SendSwitch::AtOnce`]).
    pub fn set_epoch(&mut self, keys: &EpochKeys, now_ms: u64) {
        self.switch_epoch(keys, now_ms, SendSwitch::AtOnce);
    }

    /// Take the keys of a new epoch at `now_ms`: frames of every member decrypt with them from
    /// now, while the keys of the epochs before stay until `now_ms + PREVIOUS_EPOCH_GRACE_MS`.
    /// This member sends with the new key as `send` says; without a sending key yet (its first
    /// epoch) it does at once. Setting the same epoch again only replaces its keys.
    pub fn switch_epoch(&mut self, keys: &EpochKeys, now_ms: u64, send: SendSwitch) {
        let mut fresh = HashMap::with_capacity(keys.keys.len());
        for (kid, base_key) in &keys.keys {
            match DecryptionKey::derive_from(SUITE, *kid, base_key) {
                Ok(key) => {
                    fresh.insert(*kid, key);
                }
                Err(e) => tracing::warn!(kid, error = %e, "SFrame key derivation failed"),
            }
        }
        if self.epoch.is_some() && self.epoch != Some(keys.epoch) {
            let until = now_ms.saturating_add(PREVIOUS_EPOCH_GRACE_MS);
            for (kid, key) in std::mem::take(&mut self.current) {
                self.previous.insert(kid, (key, until));
            }
            // RFC 9605 §5.2: an epoch whose low bits come back replaces the old one.
            self.previous.retain(|kid, _| !fresh.contains_key(kid));
            self.previous_until_ms = self.previous.values().map(|(_, t)| *t).min().unwrap_or(0);
            // A KID that comes back with a new key starts a new window: its sender may be a
            // newcomer whose counter starts again at zero.
            let previous = &self.previous;
            self.replay.retain(|kid| previous.contains_key(&kid));
            self.senders.retain(|kid, _| previous.contains_key(kid));
        }
        self.current = fresh;
        for (kid, participant) in &keys.senders {
            self.senders.insert(*kid, participant.clone());
        }
        self.epoch = Some(keys.epoch);
        let key = keys
            .keys
            .iter()
            .find(|(kid, _)| *kid == keys.sender_kid)
            .and_then(|(kid, base_key)| EncryptionKey::derive_from(SUITE, *kid, base_key).ok());
        match (send, key) {
            (SendSwitch::AfterDelay, Some(key)) if self.sender.is_some() => {
                let at = now_ms.saturating_add(SEND_SWITCH_DELAY_MS);
                self.next_senders.push((at, keys.epoch, key));
                // Keys too far behind for receivers to tell apart are skipped now.
                let oldest = keys.epoch.saturating_sub(MAX_SEND_LAG_EPOCHS);
                self.next_senders.retain(|(_, e, _)| *e >= oldest);
                if self.sender.as_ref().is_some_and(|(e, _)| *e < oldest)
                    && !self.next_senders.is_empty()
                {
                    let (_, epoch, key) = self.next_senders.remove(0);
                    self.sender = Some((epoch, key));
                }
            }
            (_, key) => {
                // Nothing waiting may take over later: a removed member's key is gone for good.
                self.next_senders.clear();
                self.sender = key.map(|k| (keys.epoch, k));
            }
        }
    }

    /// Whether a newer epoch's key waits to take over sending ([`SendSwitch::AfterDelay`]).
    pub fn sending_key_pending(&self) -> bool {
        !self.next_senders.is_empty()
    }

    /// Encrypt one frame of this member into `out` (cleared first), with the newest key whose
    /// time has come at `now_ms`.
    pub fn encrypt_at(
        &mut self,
        kind: FrameKind,
        frame: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), E2eeError> {
        let due = self
            .next_senders
            .iter()
            .take_while(|(at, _, _)| *at <= now_ms)
            .count();
        if let Some((_, epoch, key)) = self.next_senders.drain(..due).next_back() {
            self.sender = Some((epoch, key));
        }
        let clear = kind.clear_len(frame)?;
        let (meta, payload) = frame.split_at(clear);
        let (_, key) = self.sender.as_ref().ok_or(E2eeError::NoKey)?;
        let media = MediaFrameView::try_with_meta_data(&mut self.counter, payload, meta)?;
        out.clear();
        media.encrypt_into(key, out)?;
        Ok(())
    }

    /// [`FrameCrypto::encrypt_at`] with every waiting key taken over: the newest epoch's key.
    pub fn encrypt(
        &mut self,
        kind: FrameKind,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), E2eeError> {
        self.encrypt_at(kind, frame, u64::MAX, out)
    }

    /// Decrypt one frame into `out` (cleared first; the clear header comes back in front).
    /// Returns the sender's KID. A frame already decrypted once is refused (replay).
    /// Receivers of tracks use [`FrameCrypto::decrypt_from`], which also checks the sender.
    pub fn decrypt(
        &mut self,
        kind: FrameKind,
        frame: &[u8],
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, E2eeError> {
        self.open(kind, frame, None, now_ms, out)
    }

    /// [`FrameCrypto::decrypt`] for a frame of a track the SFU says `participant` sends:
    /// refused unless its KID is that participant's in the current or previous epoch.
    pub fn decrypt_from(
        &mut self,
        kind: FrameKind,
        frame: &[u8],
        participant: &str,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, E2eeError> {
        self.open(kind, frame, Some(participant), now_ms, out)
    }

    fn open(
        &mut self,
        kind: FrameKind,
        frame: &[u8],
        participant: Option<&str>,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<u64, E2eeError> {
        if now_ms >= self.previous_until_ms && !self.previous.is_empty() {
            self.previous.retain(|_, (_, until)| *until > now_ms);
            self.previous_until_ms = self.previous.values().map(|(_, t)| *t).min().unwrap_or(0);
            let (current, previous) = (&self.current, &self.previous);
            self.replay
                .retain(|kid| current.contains_key(&kid) || previous.contains_key(&kid));
            self.senders
                .retain(|kid, _| current.contains_key(kid) || previous.contains_key(kid));
        }
        let clear = kind.clear_len(frame)?;
        let (meta, data) = frame.split_at(clear);
        let view = EncryptedFrameView::try_with_meta_data(data, meta)?;
        let kid = view.header().key_id();
        let key = self
            .current
            .get(&kid)
            .or_else(|| self.previous.get(&kid).map(|(key, _)| key))
            .ok_or(E2eeError::UnknownKey(kid))?;
        if let Some(expected) = participant
            && self.senders.get(&kid).map(String::as_str) != Some(expected)
        {
            return Err(E2eeError::WrongSender {
                kid,
                expected: expected.to_string(),
            });
        }
        out.clear();
        view.validated_decrypt_into(key, out, &mut self.replay)?;
        Ok(kid)
    }
}
