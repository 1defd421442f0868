//! The keys of a link between two nodes, all from `cluster.secret`: HKDF
//! over the two node IDs, one key per direction and per sender *epoch* (a
//! number each process picks when it starts), so that a restarted node
//! never seals under a nonce it used before (its sequence numbers start
//! again at 0 under a new key).

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Prk, Salt};

/// Separates this use of the secret from every other.
const SALT: &[u8] = b"conclave media link v1";

/// The AEAD's tag.
pub const TAG_LEN: usize = 16;

/// The cluster secret, extracted once.
#[derive(Clone)]
pub struct LinkSecret(Prk);

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl LinkSecret {
    pub fn new(secret: &[u8]) -> Self {
        LinkSecret(Salt::new(HKDF_SHA256, SALT).extract(secret))
    }

    /// The 8 bytes that name `node` in the clear header of what it sends,
    /// so a receiver finds the link (and key) without trusting the source
    /// address. Derived from the secret, so a stranger cannot tell nodes
    /// apart by it across clusters.
    pub fn node_tag(&self, node: &str) -> [u8; 8] {
        let mut out = [0u8; 8];
        let len = len_prefix(node);
        // 8 bytes are far below HKDF-SHA256's output limit.
        if let Ok(okm) = self.0.expand(&[b"tag", &len, node.as_bytes()], Len(8)) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// The key `from` seals with for `to` in its epoch `epoch` (`None`
    /// only if HKDF refused a 32-byte output, which it does not).
    pub fn key(&self, from: &str, to: &str, epoch: u64) -> Option<SealKey> {
        let (fl, tl) = (len_prefix(from), len_prefix(to));
        let epoch = epoch.to_be_bytes();
        let info: [&[u8]; 6] = [b"key", &fl, from.as_bytes(), &tl, to.as_bytes(), &epoch];
        let key = self.0.expand(&info, &CHACHA20_POLY1305).ok()?;
        Some(SealKey(LessSafeKey::new(UnboundKey::from(key))))
    }
}

fn len_prefix(s: &str) -> [u8; 2] {
    u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes()
}

/// One direction's AEAD key (ChaCha20-Poly1305).
pub struct SealKey(LessSafeKey);

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl SealKey {
    /// Encrypts `datagram` past its first `header_len` bytes in place and
    /// appends the tag; the header is authenticated too. One buffer, no
    /// copy.
    pub fn seal(&self, seq: u64, header_len: usize, datagram: &mut Vec<u8>) -> bool {
        let Some((header, body)) = datagram.split_at_mut_checked(header_len) else {
            return false;
        };
        let Ok(tag) = self
            .0
            .seal_in_place_separate_tag(nonce(seq), Aad::from(&*header), body)
        else {
            return false;
        };
        datagram.extend_from_slice(tag.as_ref());
        true
    }

    /// Opens `body` (ciphertext and tag) in place; `None` when it is not
    /// what the holder of this key sealed with this header.
    pub fn open<'a>(&self, seq: u64, header: &[u8], body: &'a mut [u8]) -> Option<&'a mut [u8]> {
        self.0
            .open_in_place(nonce(seq), Aad::from(header), body)
            .ok()
    }
}
