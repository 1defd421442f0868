//! Guest identities: minted and signed by the server, never chosen by a client.
//!
//! A ban holds on to a guest's identity, so the identity must not be something
//! a client can pick: a banned guest would simply pick another, and the server
//! could not tell a fresh browser from a cookie made up on the spot. The
//! `conclave_guest` cookie is therefore `<id>.<tag>`: 128 random bits the
//! server chose, and an HMAC-SHA256 (truncated to 128 bits) of them under a
//! key kept in the store, so that cookies outlive restarts. A cookie whose tag
//! does not verify is ignored and a new identity is issued in its place.
//!
//! Minting is limited per network (an IPv4 address or an IPv6 /64, see
//! [`network`]): clearing cookies gets a removed guest a new identity, but not
//! an unlimited supply of them, and each one from a banned network waits for a
//! moderator anyway (see `conclave_core::BanKey`).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_core::{AttemptLimiter, AttemptPolicy};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::store::{Store, StoreError};

/// A guest cookie lives a year: it is what a ban holds on to.
pub const GUEST_COOKIE_SECS: i64 = 365 * 24 * 3600;
/// The name of the signing key in the store.
const KEY_NAME: &str = "guest_cookie_hmac";
/// Random bytes in an identity, and bytes of the tag kept.
const ID_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// Binds the tag to this use of the key.
const CONTEXT: &[u8] = b"conclave guest identity v1\0";
/// Networks whose minting is tracked at most (least recently active forgotten first).
const MAX_NETWORKS: usize = 100_000;

/// The network a ban and the minting limit key on: the IPv4 address, or the
/// first 64 bits of an IPv6 address. An IPv6 host is normally handed a whole
/// /64 and may use any address in it, so the full address would be no key.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Who the `conclave_guest` cookie says the browser is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guest {
    /// The cookie verified: this identity, nothing to set.
    Known(String),
    /// A new identity (or a ban-era one adopted, see [`GuestIds::identify`]):
    /// set `cookie` on the response.
    Issued { id: String, cookie: String },
    /// No valid cookie, and this network has minted its share: no identity
    /// for the next `retry_after`.
    Refused { retry_after: Duration },
}

/// The key that signs guest identities and the per-network minting limit.
pub struct GuestIds {
    /// Keyed once; cloned for each tag.
    mac: Hmac<Sha256>,
    mints: Mutex<AttemptLimiter<IpAddr>>,
}

impl GuestIds {
    /// The signing key from the store (made on first use), and a limit of
    /// `per_minute` new identities per network.
    pub async fn load(store: &Store, per_minute: u32) -> Result<GuestIds, StoreError> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let stored = store.server_key(KEY_NAME, &fresh).await?;
        if stored.len() != 32 {
            return Err(StoreError::Corrupt("guest cookie key"));
        }
        GuestIds::new(&stored, per_minute).ok_or(StoreError::Corrupt("guest cookie key"))
    }

    /// `None` only if HMAC refused the key, which it does for no length.
    pub fn new(key: &[u8], per_minute: u32) -> Option<GuestIds> {
        Some(GuestIds {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?,
            mints: Mutex::new(AttemptLimiter::new(AttemptPolicy {
                failures: per_minute.max(1),
                window: Duration::from_secs(60),
                // No doubling: a busy NAT that ran out waits a minute, no more.
                first_block: Duration::from_secs(60),
                longest_block: Duration::from_secs(60),
                max_keys: MAX_NETWORKS,
            })),
        })
    }

    fn tag(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(id.as_bytes());
        mac
    }

    /// The cookie value for `id`.
    pub fn sign(&self, id: &str) -> String {
        let tag = self.tag(id).finalize().into_bytes();
        format!("{id}.{}", hex::encode(&tag[..TAG_BYTES]))
    }

    /// The identity in a cookie value, if the server signed it.
    pub fn verify(&self, value: &str) -> Option<String> {
        let (id, tag) = value.split_once('.')?;
        if !is_id(id) || tag.len() != TAG_BYTES * 2 {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        // Constant-time comparison of the tag.
        self.tag(id).verify_truncated_left(&tag).ok()?;
        Some(id.to_string())
    }

    /// Makes a new identity for a connection from `network`, if it has not
    /// used up its share; `counted` is false for signed-in connections, which
    /// an account identifies anyway.
    pub fn mint(&self, network: IpAddr, counted: bool, now: Instant) -> Result<String, Duration> {
        if counted {
            let mut mints = self.mints.lock().unwrap_or_else(|e| e.into_inner());
            mints.check(&network, now)?;
            if let Some(block) = mints.record_failure(network, now).blocked_for {
                tracing::warn!(%network, secs = block.as_secs(), "no more new guest identities for this network for now");
            }
        }
        let mut b = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut b);
        Ok(hex::encode(b))
    }

    /// Settles the identity of a connection from `network` that presented
    /// `cookie`. A cookie from before identities were signed (32 hex digits,
    /// chosen by whoever held it) is taken over only when a ban names it, so
    /// that upgrading lifts no ban; any other is ignored like a forged one.
    pub async fn identify(
        &self,
        store: &Store,
        cookie: Option<&str>,
        network: IpAddr,
        signed_in: bool,
        now: Instant,
    ) -> Guest {
        if let Some(value) = cookie {
            if let Some(id) = self.verify(value) {
                return Guest::Known(id);
            }
            if is_id(value) {
                match store.guest_banned_anywhere(value).await {
                    Ok(true) => {
                        return Guest::Issued {
                            id: value.to_string(),
                            cookie: self.sign(value),
                        };
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "store failed checking an old guest cookie")
                    }
                }
            }
        }
        match self.mint(network, !signed_in, now) {
            Ok(id) => Guest::Issued {
                cookie: self.sign(&id),
                id,
            },
            Err(retry_after) => Guest::Refused { retry_after },
        }
    }

    /// Forgets networks with nothing left to remember; the server calls it
    /// every minute.
    pub fn prune(&self, now: Instant) {
        self.mints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .prune(now);
    }
}

/// 32 hex digits: an identity, or a cookie from before they were signed.
fn is_id(s: &str) -> bool {
    s.len() == ID_BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
// One real instant is the origin of the tests' clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn ids() -> GuestIds {
        GuestIds::new(&[7; 32], 3).unwrap()
    }

    #[test]
    fn a_signed_identity_verifies_and_nothing_else_does() {
        let g = ids();
        let cookie = g.sign("00112233445566778899aabbccddeeff");
        assert_eq!(
            g.verify(&cookie).as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        // Another identity under this tag, a changed tag, the bare id, another key.
        let (_, tag) = cookie.split_once('.').unwrap();
        assert_eq!(
            g.verify(&format!("ffeeddccbbaa99887766554433221100.{tag}")),
            None
        );
        let mut bad = cookie.clone();
        let last = if bad.ends_with('0') { "1" } else { "0" };
        bad.replace_range(bad.len() - 1.., last);
        assert_eq!(g.verify(&bad), None);
        assert_eq!(g.verify("00112233445566778899aabbccddeeff"), None);
        assert_eq!(GuestIds::new(&[8; 32], 3).unwrap().verify(&cookie), None);
        for junk in [
            "",
            ".",
            "x.y",
            &format!("{cookie}."),
            &format!("{cookie}00"),
        ] {
            assert_eq!(g.verify(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn minting_is_limited_per_network_but_not_for_accounts() {
        let g = ids();
        let t0 = Instant::now();
        let net = network("198.51.100.7".parse().unwrap());
        let other = network("198.51.100.8".parse().unwrap());
        for _ in 0..3 {
            assert!(g.mint(net, true, t0).is_ok());
        }
        let wait = g.mint(net, true, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(g.mint(net, false, t0).is_ok(), "a signed-in connection");
        assert!(g.mint(other, true, t0).is_ok(), "another network");
        assert!(g.mint(net, true, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn an_ipv6_network_is_its_slash_64() {
        let a = network("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = network("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, network("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            network("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
