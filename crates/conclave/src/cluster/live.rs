//! Live meeting state kept in Redis, so that it outlives the node running
//! the meeting: its lock and suspension, its members with their roles and
//! resume tokens' hashes (never the tokens), and the waiting list
//! (`conclave_core::LiveState`).
//! `conclave:live:<meeting>` holds `"<fencing token> <JSON>"`; a write
//! carries the writer's lease token and is dropped when a later holder has
//! written already, so a node that lost the lease without noticing yet
//! cannot undo the new owner's state. Bans need no key here: they are in
//! the store (PostgreSQL) already.
//!
//! Resume tokens are seat credentials: Redis is one of the cluster's
//! trusted engines, reachable by the nodes only (operations.md).

use conclave_core::LiveState;
use fred::prelude::{KeysInterface, LuaInterface};

use super::{Cluster, ClusterError};

/// A day: a meeting's live state outlives any pause between two of its
/// runs that matters, without piling up keys for meetings long over.
const LIVE_TTL_SECS: &str = "86400";

/// Writes `ARGV[2]` under token `ARGV[1]` unless a later token wrote.
const SAVE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local token = tonumber(string.match(cur, '^(%d+)'))
  if token and token > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return 1
"#;

fn key(meeting: &str) -> String {
    format!("conclave:live:{meeting}")
}

/// Whether a write went in, or a later lease holder's stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    Fenced,
}

/// The state after the token in a stored value. Before the whole state
/// was kept, the value was the lock alone, `0` or `1`.
fn parse(value: &str) -> Option<LiveState> {
    let (_, rest) = value.split_once(' ')?;
    match rest {
        "0" | "1" => Some(LiveState {
            locked: rest == "1",
            ..LiveState::default()
        }),
        json => serde_json::from_str(json)
            .inspect_err(|e| tracing::warn!(error = %e, "unreadable live meeting state in Redis"))
            .ok(),
    }
}

impl Cluster {
    /// Records `meeting`'s live state under the lease `token`.
    pub async fn save_live(
        &self,
        meeting: &str,
        token: u64,
        state: &LiveState,
    ) -> Result<Saved, ClusterError> {
        let json = serde_json::to_string(state)
            .map_err(|e| ClusterError::Unexpected(format!("live state: {e}")))?;
        let r = self
            .client
            .eval::<i64, _, _, _>(
                SAVE,
                vec![key(meeting)],
                vec![token.to_string(), json, LIVE_TTL_SECS.to_string()],
            )
            .await;
        Ok(match self.noted(r)? {
            1 => Saved::Written,
            _ => Saved::Fenced,
        })
    }

    /// `meeting`'s live state as it last ran anywhere; none if it never
    /// ran (or the day passed).
    pub async fn saved_live(&self, meeting: &str) -> Result<Option<LiveState>, ClusterError> {
        let key = key(meeting);
        let saved = self
            .read(|| self.client.get::<Option<String>, _>(&key))
            .await?;
        Ok(saved.as_deref().and_then(parse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lock_alone_as_written_before_and_the_whole_state() {
        assert!(parse("7 1").is_some_and(|s| s.locked && s.members.is_empty()));
        assert!(parse("7 0").is_some_and(|s| !s.locked));
        let state = LiveState {
            locked: true,
            suspended: true,
            next_id: 4,
            ..LiveState::default()
        };
        let value = format!("9 {}", serde_json::to_string(&state).expect("json"));
        assert_eq!(parse(&value), Some(state));
        assert_eq!(parse("9 {not json"), None);
        assert_eq!(parse("garbage"), None);
    }
}
