//! TURN relays for members whose network lets no UDP out: the operator's
//! TURN servers (coturn, see docs/operations.md) and the credentials each
//! admitted member gets for them in `joined`.
//!
//! The router is ICE-lite with host candidates only, so a client that can
//! reach neither its UDP nor its TCP port directly has no path but a relay.
//! Conclave does not relay itself: coturn is maintained, audited and tuned
//! for it, and runs where the operator wants it (often on 443 of another
//! address). For a server with a shared secret, Conclave mints TURN REST API
//! credentials (coturn's `use-auth-secret`): the username is
//! `<unix expiry>:<tag>` and the password `base64(HMAC-SHA1(secret, username))`,
//! so the relay checks them with no call back to Conclave, refuses them after
//! the expiry, and the secret never leaves the two servers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_proto::{IceServer, ParticipantId};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha1::Sha1;

/// How long a minted credential is valid when the operator does not say:
/// a long working day's meeting. A TURN allocation is refreshed with the
/// same credential, so a relayed member loses the relay when it expires;
/// every `joined` (a resume included) brings a fresh one.
pub const DEFAULT_CREDENTIAL_TTL_SECS: u64 = 8 * 3600;

/// The longest validity accepted: past it a leaked credential is a standing
/// key to the relay rather than a short-lived one.
pub const MAX_CREDENTIAL_TTL_SECS: u64 = 48 * 3600;

/// URLs one entry may list; browsers try each, so a long list only slows ICE.
const MAX_URLS: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TurnConfigError {
    #[error("turn_servers: {url:?} is not a turn:, turns: or stun: URL with a host")]
    BadUrl { url: String },
    #[error("turn_servers: {url:?} has transport={transport:?}; it must be udp or tcp")]
    BadTransport { url: String, transport: String },
    #[error("turn_servers: an entry needs between 1 and {MAX_URLS} URLs")]
    UrlCount,
    #[error(
        "turn_servers: an entry with turn: URLs needs either `secret` or both `username` and `credential`, not both kinds"
    )]
    Auth,
    #[error("turn_servers: an empty secret would let anyone mint credentials")]
    EmptySecret,
    #[error("turn_servers: credential_ttl_secs must be between 60 and {MAX_CREDENTIAL_TTL_SECS}")]
    Ttl,
}

/// The shared secret of coturn's `static-auth-secret`. Its own type so that
/// no `Debug` of the configuration ever prints it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct TurnSecret(String);

impl TurnSecret {
    pub fn new(secret: impl Into<String>) -> TurnSecret {
        TurnSecret(secret.into())
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

/// One TURN (or STUN) server as the operator configures it:
///
/// ```toml
/// [[turn_servers]]
/// urls = ["turns:turn.example.org:443?transport=tcp", "turn:turn.example.org:3478?transport=udp"]
/// secret = "the static-auth-secret of coturn"
/// ```
///
/// or, for a relay with one fixed account, `username` and `credential`
/// instead of `secret` (every member then shares that account).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TurnServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub secret: Option<TurnSecret>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
    /// Seconds a minted credential is valid (with `secret` only).
    #[serde(default = "default_ttl")]
    pub credential_ttl_secs: u64,
}

fn default_ttl() -> u64 {
    DEFAULT_CREDENTIAL_TTL_SECS
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A static credential is as secret as the shared one.
        f.debug_struct("TurnServer")
            .field("urls", &self.urls)
            .field("secret", &self.secret)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .finish()
    }
}

impl TurnServer {
    /// A server with shared-secret credentials valid for the default time.
    pub fn with_secret(urls: Vec<String>, secret: TurnSecret) -> TurnServer {
        TurnServer {
            urls,
            secret: Some(secret),
            username: None,
            credential: None,
            credential_ttl_secs: DEFAULT_CREDENTIAL_TTL_SECS,
        }
    }

    pub fn validate(&self) -> Result<(), TurnConfigError> {
        if self.urls.is_empty() || self.urls.len() > MAX_URLS {
            return Err(TurnConfigError::UrlCount);
        }
        let mut needs_auth = false;
        for url in &self.urls {
            needs_auth |= check_url(url)?;
        }
        let fixed = (self.username.is_some(), self.credential.is_some());
        match (&self.secret, fixed) {
            (Some(s), (false, false)) if s.0.is_empty() => Err(TurnConfigError::EmptySecret),
            (Some(_), (false, false)) => {
                if (60..=MAX_CREDENTIAL_TTL_SECS).contains(&self.credential_ttl_secs) {
                    Ok(())
                } else {
                    Err(TurnConfigError::Ttl)
                }
            }
            (None, (true, true)) => Ok(()),
            (None, (false, false)) if !needs_auth => Ok(()),
            _ => Err(TurnConfigError::Auth),
        }
    }

    /// What `participant` gets for this server at `now`: a fresh credential
    /// of its own when the server has a secret.
    fn for_participant(&self, participant: ParticipantId, now: SystemTime) -> IceServer {
        let (username, credential) = match &self.secret {
            Some(secret) => {
                let expiry = now + Duration::from_secs(self.credential_ttl_secs);
                let username = rest_username(expiry, participant);
                let credential = rest_credential(secret, &username);
                (Some(username), Some(credential))
            }
            None => (self.username.clone(), self.credential.clone()),
        };
        IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }
    }
}

/// Checks one URL's shape (RFC 7064/7065); true when it is a TURN URL, which
/// needs credentials.
fn check_url(url: &str) -> Result<bool, TurnConfigError> {
    let bad = || TurnConfigError::BadUrl {
        url: url.to_string(),
    };
    let (scheme, rest) = url.split_once(':').ok_or_else(bad)?;
    let turn = match scheme {
        "turn" | "turns" => true,
        "stun" | "stuns" => false,
        _ => return Err(bad()),
    };
    let (host_port, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if host_port.is_empty()
        || host_port.starts_with('/')
        || host_port.chars().any(|c| c.is_whitespace() || c == '@')
    {
        return Err(bad());
    }
    if let Some(q) = query {
        let transport = q.strip_prefix("transport=").ok_or_else(bad)?;
        if !turn || !matches!(transport, "udp" | "tcp") {
            return Err(TurnConfigError::BadTransport {
                url: url.to_string(),
                transport: transport.to_string(),
            });
        }
    }
    Ok(turn)
}

/// The REST API username: `<unix expiry>:<participant>-<random>`. The random
/// part makes it one participant's alone (participant IDs repeat across
/// meetings) without naming the meeting in the relay's logs.
fn rest_username(expiry: SystemTime, participant: ParticipantId) -> String {
    let secs = expiry
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut tag = [0u8; 6];
    rand::rng().fill_bytes(&mut tag);
    format!(
        "{secs}:{}-{}",
        participant.0,
        data_encoding::BASE64URL_NOPAD.encode(&tag)
    )
}

/// The REST API password coturn's `use-auth-secret` expects for `username`:
/// base64 (with padding) of HMAC-SHA1 keyed with the shared secret.
pub fn rest_credential(secret: &TurnSecret, username: &str) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.0.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(username.as_bytes());
    data_encoding::BASE64.encode(&mac.finalize().into_bytes())
}

/// The TURN servers a member gets in `joined`, credentials minted per call.
#[derive(Debug, Clone, Default)]
pub struct IceServers {
    servers: Vec<TurnServer>,
}

impl IceServers {
    pub fn new(servers: Vec<TurnServer>) -> IceServers {
        IceServers { servers }
    }

    pub fn for_participant(&self, participant: ParticipantId) -> Vec<IceServer> {
        self.for_participant_at(participant, SystemTime::now())
    }

    pub fn for_participant_at(
        &self,
        participant: ParticipantId,
        now: SystemTime,
    ) -> Vec<IceServer> {
        self.servers
            .iter()
            .map(|s| s.for_participant(participant, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> TurnSecret {
        TurnSecret::new("north")
    }

    /// Known answers computed independently with
    /// `printf %s "$user" | openssl dgst -sha1 -hmac "$secret" -binary | base64`,
    /// the scheme coturn checks under `use-auth-secret` (and that
    /// e2e/turn.test.js checks against a running coturn).
    #[test]
    fn credential_matches_the_turn_rest_api_known_answers() {
        assert_eq!(
            rest_credential(&secret(), "1700000000:2-abcdefgh"),
            "X6/zMl62eFBXvA+7BuN6mzb0bvs="
        );
        assert_eq!(
            rest_credential(&TurnSecret::new("logen"), "1433895918:username"),
            "UiGyVNy3yp+4uQ2PyFZPniAfZXc="
        );
    }

    #[test]
    fn each_participant_gets_its_own_expiring_credential() {
        let s = IceServers::new(vec![TurnServer::with_secret(
            vec!["turns:turn.example.org:443?transport=tcp".into()],
            secret(),
        )]);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = s.for_participant_at(ParticipantId(2), now);
        let b = s.for_participant_at(ParticipantId(2), now);
        assert_eq!(a.len(), 1);
        let user = a[0].username.as_deref().unwrap();
        let (expiry, tag) = user.split_once(':').unwrap();
        assert_eq!(
            expiry,
            (1_000_000 + DEFAULT_CREDENTIAL_TTL_SECS).to_string()
        );
        assert!(tag.starts_with("2-"), "{tag}");
        assert_ne!(a[0].username, b[0].username, "a tag per credential");
        assert_eq!(
            a[0].credential.as_deref(),
            Some(rest_credential(&secret(), user).as_str())
        );
    }

    #[test]
    fn static_credentials_are_handed_out_as_they_are() {
        let t = TurnServer {
            urls: vec!["turn:192.0.2.1:3478".into()],
            secret: None,
            username: Some("u".into()),
            credential: Some("p".into()),
            credential_ttl_secs: DEFAULT_CREDENTIAL_TTL_SECS,
        };
        assert_eq!(t.validate(), Ok(()));
        let got = IceServers::new(vec![t]).for_participant(ParticipantId(1));
        assert_eq!(got[0].username.as_deref(), Some("u"));
        assert_eq!(got[0].credential.as_deref(), Some("p"));
    }

    #[test]
    fn bad_entries_are_refused() {
        let with = |urls: &[&str]| {
            TurnServer::with_secret(urls.iter().map(|u| u.to_string()).collect(), secret())
        };
        assert_eq!(
            with(&[
                "turn:a.example:3478?transport=udp",
                "turns:a.example:443?transport=tcp",
                "stun:a.example"
            ])
            .validate(),
            Ok(())
        );
        for bad in [
            "http://a.example",
            "turn:",
            "turn://a",
            "a.example:3478",
            "turn:a b",
        ] {
            assert!(
                matches!(with(&[bad]).validate(), Err(TurnConfigError::BadUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            with(&["turn:a.example?transport=sctp"]).validate(),
            Err(TurnConfigError::BadTransport { .. })
        ));
        assert_eq!(with(&[]).validate(), Err(TurnConfigError::UrlCount));
        let mut t = with(&["turn:a.example"]);
        t.credential_ttl_secs = MAX_CREDENTIAL_TTL_SECS + 1;
        assert_eq!(t.validate(), Err(TurnConfigError::Ttl));
        t.credential_ttl_secs = 600;
        t.username = Some("u".into());
        assert_eq!(t.validate(), Err(TurnConfigError::Auth));
        let mut t = with(&["turn:a.example"]);
        t.secret = None;
        assert_eq!(t.validate(), Err(TurnConfigError::Auth));
        t.secret = Some(TurnSecret::new(""));
        assert_eq!(t.validate(), Err(TurnConfigError::EmptySecret));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let mut t = TurnServer::with_secret(
            vec!["turn:a.example".into()],
            TurnSecret::new("hush-secret"),
        );
        t.credential = Some("hush-password".into());
        let shown = format!("{t:?}");
        assert!(!shown.contains("hush"), "{shown}");
    }
}
