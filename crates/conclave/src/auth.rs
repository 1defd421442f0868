//! Passwords, passcodes and bearer secrets.
//!
//! Passwords and meeting passcodes are hashed with argon2id (the crate's
//! defaults: 19 MiB, 2 passes). Hashing is CPU-bound, so it runs on the
//! blocking pool behind a semaphore: a burst of sign-ins or joins queues up
//! instead of starving the async workers. Session cookies, API tokens and
//! sign-in links are 256-bit random strings of which only the SHA-256 is stored.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed")]
    Join,
}

/// A random secret for a cookie, token or link, and its stored digest.
pub struct Secret {
    pub text: String,
    pub digest: Vec<u8>,
}

/// A fresh 256-bit secret with an optional readable prefix (`cnv_` for API tokens).
pub fn new_secret(prefix: &str) -> Secret {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    // Hex keeps tokens free of characters that need quoting in shells and URLs.
    let text = format!("{prefix}{}", hex::encode(b));
    let digest = digest(&text);
    Secret { text, digest }
}

pub fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Runs argon2id off the async workers, at most `permits` at once.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random string, checked against when there is nothing real to
    /// check (unknown meeting, unknown user), so that both cost the same time.
    dummy: Arc<String>,
}

impl Hasher {
    pub fn new(permits: usize) -> Result<Self, HashError> {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        let dummy = hash_now(&hex::encode(b))?;
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, secret: String) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        tokio::task::spawn_blocking(move || hash_now(&secret))
            .await
            .map_err(|_| HashError::Join)?
    }

    /// Verifies `secret` against `hash`, or against the dummy hash when there is
    /// none (and then answers false). The time taken does not tell the two apart.
    pub async fn verify(&self, secret: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let ok = tokio::task::spawn_blocking(move || verify_now(&secret, &hash))
            .await
            .unwrap_or(false);
        ok && real
    }
}

pub fn hash_now(secret: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

fn verify_now(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a new password: 10 to 256 characters.
pub fn password_acceptable(p: &str) -> bool {
    (10..=256).contains(&p.chars().count())
}

/// Checks a username: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn username_acceptable(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_accepts_the_right_secret_only() {
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!h.verify("wrong".into(), Some(hash)).await);
        assert!(!h.verify("anything".into(), None).await);
        assert!(!h.verify("x".into(), Some("not a hash".into())).await);
    }

    #[test]
    fn secrets_are_distinct_and_digested() {
        let a = new_secret("cnv_");
        let b = new_secret("cnv_");
        assert_ne!(a.text, b.text);
        assert!(a.text.starts_with("cnv_"));
        assert_eq!(a.text.len(), 4 + 64);
        assert_eq!(digest(&a.text), a.digest);
    }

    #[test]
    fn usernames_and_passwords_are_bounded() {
        assert!(username_acceptable("ada.lovelace"));
        assert!(!username_acceptable("ada lovelace"));
        assert!(!username_acceptable(""));
        assert!(!password_acceptable("short"));
        assert!(password_acceptable("long enough password"));
    }
}
