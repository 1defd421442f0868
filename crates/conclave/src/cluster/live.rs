//! Live meeting state kept in Redis, so that it outlives the node running
//! the meeting: for now its lock. `conclave:live:<meeting>` holds
//! `"<fencing token> <0|1>"`; a write carries the writer's lease token and
//! is dropped when a later holder has written already, so a node that lost
//! the lease without noticing yet cannot undo the new owner's state. Bans
//! need no key here: they are in the store (PostgreSQL) already.

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

impl Cluster {
    /// Records whether `meeting` is locked, under the lease `token`.
    pub async fn save_lock(
        &self,
        meeting: &str,
        token: u64,
        locked: bool,
    ) -> Result<(), ClusterError> {
        let r = self
            .client
            .eval::<i64, _, _, _>(
                SAVE,
                vec![key(meeting)],
                vec![
                    token.to_string(),
                    u8::from(locked).to_string(),
                    LIVE_TTL_SECS.to_string(),
                ],
            )
            .await;
        self.noted(r).map(|_| ())
    }

    /// Whether `meeting` was locked when it last ran anywhere.
    pub async fn saved_lock(&self, meeting: &str) -> Result<bool, ClusterError> {
        let r = self.client.get::<Option<String>, _>(key(meeting)).await;
        Ok(self
            .noted(r)?
            .is_some_and(|v| v.split(' ').nth(1) == Some("1")))
    }
}
