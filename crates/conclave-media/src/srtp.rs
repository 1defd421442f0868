//! SRTP sealing of forwarded RTP outside str0m (issue 16's fast path),
//! sans-IO: clear packet in, protected packet out into the caller's buffer.
//!
//! str0m seals everything it sends with one SRTP context per session, and
//! that context's state (each SSRC's rollover counter, which indices it has
//! used) is private. A second sealer on the same session keys is therefore
//! safe only if the two never seal the same SSRC: AES-GCM with a repeated
//! (SSRC, ROC, SEQ) nonce leaks the XOR of two plaintexts and lets anyone
//! forge tags. Who owns which SSRC of a subscriber's session:
//!
//! - **The fast path owns the main SSRC of each forwarded stream**, and
//!   str0m must never be handed a packet for it (`StreamTx::write_rtp`):
//!   with nothing written, str0m has nothing to send, resend or pad on it.
//!   str0m 0.25 pads only on RTX SSRCs or its separate probe SSRC
//!   (`StreamTx::padding_enabled`), never on a main SSRC.
//! - **str0m keeps the RTX SSRCs and the probe SSRC** (bandwidth probing
//!   with padding). A NACK for a fast-path stream must therefore be answered
//!   by sending the same sealed bytes again on the main SSRC, not over RTX:
//!   the same nonce over the same plaintext gives the same ciphertext and
//!   discloses nothing, and a receiver that did get the first copy drops the
//!   second as a replay. (str0m's own resend finds nothing to resend: its
//!   history for that stream is empty.)
//! - **RTCP stays str0m's**: SRTCP has its own index and str0m's counter is
//!   private, so this module seals no RTCP. That leaves one open problem for
//!   the fast path: str0m 0.25 sends sender reports for every send stream,
//!   and for one it was never given a packet it reports RTP time 0 and no
//!   packets, a mapping that would mislead a receiver's A/V sync. Either the
//!   fast-path SSRCs are kept out of str0m's send streams (and signalled some
//!   other way), or their SRs are written and sealed here under an SRTCP
//!   index str0m can never reach.
//!
//! Inside the fast path, [`SrtpSealer`] refuses to seal an index twice per
//! SSRC: each stream keeps the highest index sealed and a window of the 128
//! below it, and a packet whose index is sealed already, or too old to tell,
//! is refused ([`SealError::IndexReused`], [`SealError::TooOld`]). The
//! rollover counter follows RFC 3711 §3.3.1: a sequence number is placed in
//! the rollover period that puts it closest to the highest one sealed, so a
//! forwarded stream may reorder a little and still wrap at 65 535.
//!
//! The ciphers are str0m's own provider (aws-lc-rs by default): the same
//! AES-GCM, AES-CM and HMAC-SHA1 str0m seals with, and no other crypto
//! dependency. The key derivation (RFC 3711 §4.3.1 with a derivation rate of
//! 0, as DTLS-SRTP uses) is the one piece written here, over the provider's
//! AES block function.

use rustc_hash::FxHashMap;
use str0m::crypto::dtls::SrtpProfile;
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoProvider, Sha1HmacProvider,
};

/// Bytes SRTP adds to an RTP packet: the AES-GCM tag (the HMAC-SHA1-80 tag
/// is shorter). A sealing buffer `SRTP_OVERHEAD` longer than the packet
/// always suffices.
pub const SRTP_OVERHEAD: usize = 16;

/// Sealed indices remembered per SSRC below the highest.
const WINDOW: u64 = 128;

/// RFC 3711 §4.3.1 labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_SALT: u8 = 5;

/// Why a packet was not sealed. Nothing was written to the buffer's tail
/// that a caller may send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not an RTP packet (short, wrong version or header overruns it)")]
    Malformed,
    #[error("sealing buffer too small: {need} bytes needed")]
    BufferTooSmall { need: usize },
    #[error("SRTP index {index} of SSRC {ssrc} was sealed already")]
    IndexReused { ssrc: u32, index: u64 },
    #[error("SRTP index {index} of SSRC {ssrc} was never sealed here: not resealed")]
    NeverSealed { ssrc: u32, index: u64 },
    #[error("SRTP index {index} of SSRC {ssrc} is older than the reuse window")]
    TooOld { ssrc: u32, index: u64 },
    #[error("the keying material does not fit its profile {0:?}")]
    BadKeyingMaterial(SrtpProfile),
    #[error("unsupported SRTP profile {0:?}")]
    UnsupportedProfile(SrtpProfile),
    #[error("SRTP cipher failed: {0}")]
    Cipher(String),
}

enum Cipher {
    Gcm128(Box<dyn AeadAes128GcmCipher>),
    Gcm256(Box<dyn AeadAes256GcmCipher>),
    Cm {
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        auth_key: [u8; Aes128CmSha1_80::HMAC_KEY_LEN],
        hmac: &'static dyn Sha1HmacProvider,
    },
}

/// Our sending half of DTLS-SRTP keying `material` for `profile`: its
/// master key and master salt (RFC 5764 §4.2: client key ‖ server key ‖
/// client salt ‖ server salt; ours is the client's if we were the DTLS
/// client, `active`).
fn sending_master(
    profile: SrtpProfile,
    material: &[u8],
    active: bool,
) -> Result<(&[u8], &[u8]), SealError> {
    let (key_len, salt_len) = match profile {
        SrtpProfile::AES128_CM_SHA1_80 => (Aes128CmSha1_80::KEY_LEN, Aes128CmSha1_80::SALT_LEN),
        SrtpProfile::AEAD_AES_128_GCM => (AeadAes128Gcm::KEY_LEN, AeadAes128Gcm::SALT_LEN),
        SrtpProfile::AEAD_AES_256_GCM => (AeadAes256Gcm::KEY_LEN, AeadAes256Gcm::SALT_LEN),
        other => return Err(SealError::UnsupportedProfile(other)),
    };
    if material.len() != 2 * (key_len + salt_len) {
        return Err(SealError::BadKeyingMaterial(profile));
    }
    let (key_at, salt_at) = if active {
        (0, 2 * key_len)
    } else {
        (key_len, 2 * key_len + salt_len)
    };
    Ok((
        &material[key_at..key_at + key_len],
        &material[salt_at..salt_at + salt_len],
    ))
}

/// Seals RTP for one session's sending direction.
pub struct SrtpSealer {
    cipher: Cipher,
    /// The session salt (12 bytes for AES-GCM, 14 for AES-CM).
    salt: [u8; 14],
    /// By the SSRCs this session sends on, ours (FxHash: no peer picks them).
    streams: FxHashMap<u32, StreamIndex>,
}

impl std::fmt::Debug for SrtpSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSealer")
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpSealer {
    /// A sealer for our sending half of DTLS-SRTP keying `material`
    /// (RFC 5764 §4.2: client key ‖ server key ‖ client salt ‖ server salt;
    /// ours is the client's if we were the DTLS client, `active`).
    pub fn new(
        provider: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        active: bool,
    ) -> Result<Self, SealError> {
        let srtp = provider.srtp_provider;
        let (master, master_salt) = sending_master(profile, material, active)?;
        let kdf = |label: u8, out: &mut [u8]| derive(srtp, master, master_salt, label, out);

        let mut salt = [0u8; 14];
        kdf(LABEL_RTP_SALT, &mut salt[..master_salt.len()]);
        let cipher = match profile {
            SrtpProfile::AEAD_AES_128_GCM => {
                let mut key = [0u8; AeadAes128Gcm::KEY_LEN];
                kdf(LABEL_RTP_ENCRYPTION, &mut key);
                Cipher::Gcm128(srtp.aead_aes_128_gcm().create_cipher(key, true))
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let mut key = [0u8; AeadAes256Gcm::KEY_LEN];
                kdf(LABEL_RTP_ENCRYPTION, &mut key);
                Cipher::Gcm256(srtp.aead_aes_256_gcm().create_cipher(key, true))
            }
            _ => {
                let mut key = [0u8; Aes128CmSha1_80::KEY_LEN];
                kdf(LABEL_RTP_ENCRYPTION, &mut key);
                let mut auth_key = [0u8; Aes128CmSha1_80::HMAC_KEY_LEN];
                kdf(LABEL_RTP_AUTH, &mut auth_key);
                Cipher::Cm {
                    cipher: srtp.aes_128_cm_sha1_80().create_cipher(key, true),
                    auth_key,
                    hmac: provider.sha1_hmac_provider,
                }
            }
        };
        Ok(SrtpSealer {
            cipher,
            salt,
            streams: FxHashMap::default(),
        })
    }

    /// Seals the clear RTP packet `clear` into `out` and returns the sealed
    /// length. `out` needs `clear.len() + SRTP_OVERHEAD` bytes; nothing is
    /// allocated. A packet whose (SSRC, index) this sealer sealed before is
    /// refused, so a caller cannot reuse a nonce by mistake.
    pub fn seal_rtp(&mut self, clear: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        let (header, payload) = split(clear)?;
        self.seal(header, payload, None, out)
    }

    /// [`SrtpSealer::seal_rtp`] at the extended sequence number `index`
    /// (rollover counter ‖ sequence number) the caller keeps, as str0m's
    /// `RtpWrite` takes it, instead of one estimated from the header. Its
    /// low 16 bits must be the header's sequence number.
    pub fn seal_rtp_at(
        &mut self,
        clear: &[u8],
        index: u64,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let (header, payload) = split(clear)?;
        self.seal(header, payload, Some(index), out)
    }

    /// [`SrtpSealer::seal_rtp_at`] of the packet `header` ‖ `payload`, read
    /// where they lie: the fast path seals the publisher's payload without
    /// first copying it behind the header it built. `header` must be the
    /// whole RTP header (extensions included) and nothing more.
    pub(crate) fn seal_parts_at(
        &mut self,
        header: &[u8],
        payload: &[u8],
        index: u64,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        whole_header(header)?;
        self.seal(header, payload, Some(index), out)
    }

    /// Marks `index` of `ssrc` as sealed elsewhere (a packet handed to str0m
    /// on a stream this sealer otherwise owns): this sealer will refuse it.
    pub fn reserve(&mut self, ssrc: u32, index: u64) -> Result<(), SealError> {
        self.streams
            .entry(ssrc)
            .or_insert_with(|| StreamIndex::starting_at(index as u16))
            .claim_index(ssrc, index)
            .map(|_| ())
    }

    /// Notes that `seq` of `ssrc` was sealed elsewhere (str0m sent it), at
    /// the index closest to the highest known: so this sealer keeps the
    /// stream's rollover counter if it seals on it later. An index this
    /// sealer has sealed or reserved is an error, and changes nothing.
    pub fn observe(&mut self, ssrc: u32, seq: u16) -> Result<u64, SealError> {
        self.streams
            .entry(ssrc)
            .or_insert_with(|| StreamIndex::starting_at(seq))
            .claim(ssrc, seq)
    }

    fn seal(
        &mut self,
        header: &[u8],
        payload: &[u8],
        index: Option<u64>,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        // Checked before the index is claimed: a refused packet uses none.
        let total = header.len() + payload.len() + self.tag_len();
        if out.len() < total {
            return Err(SealError::BufferTooSmall { need: total });
        }
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if index.is_some_and(|i| i as u16 != seq) {
            return Err(SealError::Malformed);
        }
        let stream = self
            .streams
            .entry(ssrc)
            .or_insert_with(|| StreamIndex::starting_at(seq));
        let index = match index {
            Some(i) => stream.claim_index(ssrc, i)?,
            None => stream.claim(ssrc, seq)?,
        };
        self.encrypt(header, payload, index, out)
    }

    /// Seals again, at `index`, the packet `header` ‖ `payload` this sealer
    /// sealed there before ([`SrtpSealer::seal_parts_at`]): to resend it
    /// without keeping its ciphertext. Same key, same nonce, same
    /// plaintext: the same bytes as the first time, which disclose nothing
    /// new (a receiver that got them drops the copy as a replay).
    ///
    /// The caller must pass exactly the bytes it sealed at `index` (the
    /// fast path's history keeps the clear header and the shared payload,
    /// which nothing mutates). What can be checked is: an index above the
    /// highest sealed, or in the window and not marked sealed, is refused,
    /// so this can never take a fresh index.
    pub(crate) fn reseal_parts_at(
        &mut self,
        header: &[u8],
        payload: &[u8],
        index: u64,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        whole_header(header)?;
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if index as u16 != seq {
            return Err(SealError::Malformed);
        }
        let never = SealError::NeverSealed { ssrc, index };
        let Some(stream) = self.streams.get(&ssrc) else {
            return Err(never);
        };
        if index > stream.highest {
            return Err(never);
        }
        let behind = stream.highest - index;
        if behind < WINDOW && stream.sealed & (1u128 << behind) == 0 {
            return Err(never);
        }
        self.encrypt(header, payload, index, out)
    }

    fn tag_len(&self) -> usize {
        match self.cipher {
            Cipher::Cm { .. } => Aes128CmSha1_80::HMAC_TAG_LEN,
            _ => AeadAes128Gcm::TAG_LEN,
        }
    }

    /// Encrypts `header` ‖ `payload` at `index`, claimed.
    fn encrypt(
        &mut self,
        header: &[u8],
        payload: &[u8],
        index: u64,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let clear_len = header.len() + payload.len();
        let total = clear_len + self.tag_len();
        if out.len() < total {
            return Err(SealError::BufferTooSmall { need: total });
        }
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let roc = (index >> 16) as u32;
        out[..header.len()].copy_from_slice(header);
        let body = &mut out[header.len()..total];
        let mut salt12 = [0u8; 12];
        salt12.copy_from_slice(&self.salt[..12]);
        let failed = |e: str0m::crypto::CryptoError| SealError::Cipher(e.to_string());
        match &mut self.cipher {
            Cipher::Gcm128(c) => {
                let iv = AeadAes128Gcm::rtp_iv(salt12, ssrc, roc, seq);
                c.encrypt(&iv, header, payload, body).map_err(failed)?;
            }
            Cipher::Gcm256(c) => {
                let iv = AeadAes256Gcm::rtp_iv(salt12, ssrc, roc, seq);
                c.encrypt(&iv, header, payload, body).map_err(failed)?;
            }
            Cipher::Cm {
                cipher,
                auth_key,
                hmac,
            } => {
                let iv = Aes128CmSha1_80::rtp_iv(self.salt, ssrc, index);
                cipher
                    .encrypt(&iv, payload, &mut body[..payload.len()])
                    .map_err(failed)?;
                Aes128CmSha1_80::rtp_hmac(
                    |key, parts| hmac.sha1_hmac(key, parts),
                    auth_key,
                    &mut out[..total],
                    index,
                    clear_len,
                );
            }
        }
        Ok(total)
    }

    /// The highest SRTP index sealed on `ssrc`: the rollover counter is its
    /// upper 32 bits.
    pub fn highest_index(&self, ssrc: u32) -> Option<u64> {
        self.streams.get(&ssrc).map(|s| s.highest)
    }
}

/// Seals SRTCP (the AES-GCM profiles, RFC 7714 §9) for one side of a
/// session: what a member can send the router with its own keys.
///
/// The router never seals RTCP (str0m owns its SRTCP index, see the module
/// notes). This exists so that tests can play a hostile member: one that
/// forges feedback (NACK storms, bogus sequence numbers) with the session
/// keys it legitimately holds, which no stock WebRTC stack would send.
#[doc(hidden)]
pub struct SrtcpSealer {
    cipher: Cipher,
    salt: [u8; 12],
    next_index: u32,
}

impl SrtcpSealer {
    /// A sealer for the sending half of `material` (as [`SrtpSealer::new`])
    /// whose SRTCP indices start at `first_index` (31 bits).
    pub fn new(
        provider: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        active: bool,
        first_index: u32,
    ) -> Result<Self, SealError> {
        let srtp = provider.srtp_provider;
        if !matches!(
            profile,
            SrtpProfile::AEAD_AES_128_GCM | SrtpProfile::AEAD_AES_256_GCM
        ) {
            return Err(SealError::UnsupportedProfile(profile));
        }
        let (master, master_salt) = sending_master(profile, material, active)?;
        let kdf = |label: u8, out: &mut [u8]| derive(srtp, master, master_salt, label, out);
        let mut salt = [0u8; 12];
        kdf(LABEL_RTCP_SALT, &mut salt);
        let cipher = if profile == SrtpProfile::AEAD_AES_128_GCM {
            let mut key = [0u8; AeadAes128Gcm::KEY_LEN];
            kdf(LABEL_RTCP_ENCRYPTION, &mut key);
            Cipher::Gcm128(srtp.aead_aes_128_gcm().create_cipher(key, true))
        } else {
            let mut key = [0u8; AeadAes256Gcm::KEY_LEN];
            kdf(LABEL_RTCP_ENCRYPTION, &mut key);
            Cipher::Gcm256(srtp.aead_aes_256_gcm().create_cipher(key, true))
        };
        Ok(SrtcpSealer {
            cipher,
            salt,
            next_index: first_index & 0x7fff_ffff,
        })
    }

    /// Seals the clear compound RTCP packet `clear` (at least its 8-byte
    /// header and sender SSRC) under the next SRTCP index.
    pub fn seal(&mut self, clear: &[u8]) -> Result<Vec<u8>, SealError> {
        if clear.len() < 8 {
            return Err(SealError::Malformed);
        }
        let index = self.next_index;
        self.next_index = (index + 1) & 0x7fff_ffff;
        let e_and_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([clear[4], clear[5], clear[6], clear[7]]);
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(&clear[..8]);
        aad[8..].copy_from_slice(&e_and_index);
        let mut out = vec![0u8; clear.len() + AeadAes128Gcm::TAG_LEN + 4];
        out[..8].copy_from_slice(&clear[..8]);
        let body_end = clear.len() + AeadAes128Gcm::TAG_LEN;
        let failed = |e: str0m::crypto::CryptoError| SealError::Cipher(e.to_string());
        match &mut self.cipher {
            Cipher::Gcm128(c) => {
                let iv = AeadAes128Gcm::rtcp_iv(self.salt, ssrc, index);
                c.encrypt(&iv, &aad, &clear[8..], &mut out[8..body_end])
                    .map_err(failed)?;
            }
            Cipher::Gcm256(c) => {
                let iv = AeadAes256Gcm::rtcp_iv(self.salt, ssrc, index);
                c.encrypt(&iv, &aad, &clear[8..], &mut out[8..body_end])
                    .map_err(failed)?;
            }
            Cipher::Cm { .. } => return Err(SealError::Malformed),
        }
        out[body_end..].copy_from_slice(&e_and_index);
        Ok(out)
    }
}

/// A clear RTP packet as (header, payload).
fn split(clear: &[u8]) -> Result<(&[u8], &[u8]), SealError> {
    let len = rtp_header_len(clear).ok_or(SealError::Malformed)?;
    Ok(clear.split_at(len))
}

/// `header` is one whole RTP header, extensions included.
fn whole_header(header: &[u8]) -> Result<(), SealError> {
    match rtp_header_len(header) {
        Some(len) if len == header.len() => Ok(()),
        _ => Err(SealError::Malformed),
    }
}

/// The header length of an RTP packet (fixed part, CSRCs, extension), if
/// `packet` is one whose header fits in it.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if packet.len() < 12 || first >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

/// RFC 3711 §4.3.1 key derivation with key_derivation_rate 0: AES in counter
/// mode over (master salt XOR label at byte 7), the block counter in the
/// last two bytes. A 12-byte AES-GCM salt is zero-extended, as libsrtp and
/// str0m do (RFC 7714 §11).
fn derive(
    srtp: &dyn str0m::crypto::SrtpProvider,
    master: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) {
    let mut input = [0u8; 16];
    input[..master_salt.len()].copy_from_slice(master_salt);
    input[7] ^= label;
    // The provider's block function writes a padded block: room for two.
    let mut block = [0u8; 32];
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(round as u16).to_be_bytes());
        if master.len() == 16 {
            srtp.srtp_aes_128_ecb_round(master, &input, &mut block);
        } else {
            srtp.srtp_aes_256_ecb_round(master, &input, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// One SSRC's sending index: the highest sealed and which of the
/// [`WINDOW`] below it were sealed too.
#[derive(Debug)]
struct StreamIndex {
    highest: u64,
    /// Bit `d` set: index `highest - d` was sealed.
    sealed: u128,
}

impl StreamIndex {
    /// A stream's rollover counter starts at 0 with its first packet
    /// (RFC 3711 §3.3.1), whatever that packet's sequence number.
    fn starting_at(seq: u16) -> Self {
        StreamIndex {
            highest: u64::from(seq),
            sealed: 0,
        }
    }

    /// The index of `seq` (RFC 3711 §3.3.1: the rollover period closest to
    /// the highest), marked sealed.
    fn claim(&mut self, ssrc: u32, seq: u16) -> Result<u64, SealError> {
        self.claim_index(ssrc, self.estimate(seq))
    }

    /// Marks `index` sealed; an error if it was, or is too old to tell.
    fn claim_index(&mut self, ssrc: u32, index: u64) -> Result<u64, SealError> {
        if index > self.highest {
            let ahead = index - self.highest;
            self.sealed = if ahead >= WINDOW {
                0
            } else {
                self.sealed << ahead
            };
            self.sealed |= 1;
            self.highest = index;
            return Ok(index);
        }
        let behind = self.highest - index;
        if behind >= WINDOW {
            return Err(SealError::TooOld { ssrc, index });
        }
        let bit = 1u128 << behind;
        if self.sealed & bit != 0 {
            return Err(SealError::IndexReused { ssrc, index });
        }
        self.sealed |= bit;
        Ok(index)
    }

    fn estimate(&self, seq: u16) -> u64 {
        let roc = self.highest >> 16;
        let s_l = (self.highest & 0xffff) as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                // Belongs to the previous period; there is none before 0,
                // so it stays in this one (and is then too old or ahead).
                roc.saturating_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        (v << 16) | u64::from(seq)
    }
}

#[cfg(test)]
mod tests;
