//! Single SFrame operations with an explicit KID and CTR, as RFC 9605 Appendix C states its
//! test vectors: for conformance tests (native and wasm) and tools, not for media, where
//! [`crate::FrameCrypto`] chooses the CTR so it never repeats.

use sframe::{
    frame::{EncryptedFrameView, MediaFrameView, SingleUseCounter},
    key::{DecryptionKey, EncryptionKey},
};

use crate::{E2eeError, frame::SUITE};

/// `SFrame header | ciphertext | tag` of `plaintext` under AES_128_GCM_SHA256_128 with the
/// key and salt derived from `base_key` and `kid` (§4.4.2) and `metadata` as part of the AAD.
pub fn encrypt(
    base_key: &[u8],
    kid: u64,
    ctr: u64,
    metadata: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, E2eeError> {
    let key = EncryptionKey::derive_from(SUITE, kid, base_key)?;
    let mut counter = SingleUseCounter::new(ctr);
    let media = MediaFrameView::try_with_meta_data(&mut counter, plaintext, metadata)?;
    let mut out = Vec::new();
    let encrypted = media.encrypt_into(&key, &mut out)?;
    Ok(encrypted.sframe_cipher_text().to_vec())
}

/// The plaintext of `ciphertext` (`SFrame header | ciphertext | tag`), whose KID must derive
/// from `base_key`, with `metadata` as part of the AAD.
pub fn decrypt(base_key: &[u8], metadata: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, E2eeError> {
    let view = EncryptedFrameView::try_with_meta_data(ciphertext, metadata)?;
    let key = DecryptionKey::derive_from(SUITE, view.header().key_id(), base_key)?;
    let mut out = Vec::new();
    let media = view.decrypt_into(&key, &mut out)?;
    Ok(media.payload().to_vec())
}
