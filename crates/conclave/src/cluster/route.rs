//! Where a meeting's WebSocket belongs: the node holding its lease, or for a
//! meeting not running anywhere the least-loaded serving node, which takes
//! the lease when the join reaches it. And the header by which one node
//! vouches to another for a relayed client's real address.
//!
//! The header is `x-conclave-relay: <unix seconds>.<address>.<hex HMAC>`,
//! the HMAC-SHA256 under `cluster.secret` of the time, the address and the
//! request's path: a client cannot forge it, and a captured one works only
//! for that path and [`RELAY_SKEW_SECS`] either side of its time.

use std::net::IpAddr;

use fred::prelude::KeysInterface;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::registry::NodeRecord;
use super::{Cluster, ClusterError};

/// The header a relaying node adds.
pub const RELAY_HEADER: &str = "x-conclave-relay";
/// How far a relay header's time may be from the receiving node's clock.
pub const RELAY_SKEW_SECS: u64 = 30;

/// Where a meeting's WebSocket should be served.
#[derive(Debug)]
pub enum Route {
    /// Here: the meeting runs here, or will start here.
    Here,
    /// On another node, reached at its record's `internal_url`.
    Relay(NodeRecord),
}

fn mac(secret: &str, at: u64, ip: IpAddr, path: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    m.update(format!("conclave-relay\n{at}\n{ip}\n{path}").as_bytes());
    m
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The relay header's value vouching that `ip` asked for `path`.
pub fn vouch(secret: &str, ip: IpAddr, path: &str) -> String {
    let at = now_secs();
    let tag = mac(secret, at, ip, path).finalize().into_bytes();
    format!("{at}.{ip}.{}", hex::encode(tag))
}

/// The client address a relay header vouches for, if its HMAC is right
/// (compared in constant time) and its time close to ours.
pub fn vouched(secret: &str, value: &str, path: &str) -> Option<IpAddr> {
    let (at, rest) = value.split_once('.')?;
    let (ip, tag) = rest.rsplit_once('.')?;
    let at: u64 = at.parse().ok()?;
    let ip: IpAddr = ip.parse().ok()?;
    if now_secs().abs_diff(at) > RELAY_SKEW_SECS {
        return None;
    }
    let tag = hex::decode(tag).ok()?;
    mac(secret, at, ip, path).verify_slice(&tag).ok()?;
    Some(ip)
}

impl Cluster {
    /// Where `meeting`'s WebSocket belongs. A lease held by a node whose
    /// record ran out (it died) is served here: the join then waits for the
    /// lease like any other.
    pub async fn route(&self, meeting: &str) -> Result<Route, ClusterError> {
        let lease = format!("conclave:lease:{meeting}");
        let holder = self
            .read(|| self.client.get::<Option<String>, _>(&lease))
            .await?;
        let target = match holder {
            Some(value) => {
                let node = value.split(' ').next().unwrap_or_default().to_string();
                if node == self.node_id {
                    return Ok(Route::Here);
                }
                self.nodes().await?.into_iter().find(|n| n.node_id == node)
            }
            None => self.place(meeting).await?,
        };
        Ok(match target {
            Some(n) if n.node_id != self.node_id => Route::Relay(n),
            _ => Route::Here,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vouch_holds_only_for_its_secret_and_path() {
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let v = vouch("s3cret-s3cret-s3cret", ip, "/api/v1/meetings/x/ws");
        assert_eq!(
            vouched("s3cret-s3cret-s3cret", &v, "/api/v1/meetings/x/ws"),
            Some(ip)
        );
        assert_eq!(
            vouched("another-secret-here", &v, "/api/v1/meetings/x/ws"),
            None
        );
        assert_eq!(
            vouched("s3cret-s3cret-s3cret", &v, "/api/v1/meetings/y/ws"),
            None
        );
        let forged = v.replace("203.0.113.7", "198.51.100.1");
        assert_eq!(
            vouched("s3cret-s3cret-s3cret", &forged, "/api/v1/meetings/x/ws"),
            None
        );
        let old = format!("1.{ip}.{}", v.rsplit_once('.').expect("tag").1);
        assert_eq!(
            vouched("s3cret-s3cret-s3cret", &old, "/api/v1/meetings/x/ws"),
            None
        );
    }
}
