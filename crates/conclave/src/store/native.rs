//! One-time grants of a native client's provider sign-in (`conclave login`,
//! RFC 8252's loopback redirect): made at the provider's callback, traded
//! once for a session by the client that holds the PKCE verifier.

use std::time::Duration;

use sqlx::Row;

use super::{Pool, Result, Store, expiry, unix_now};

/// A grant as taken: whose it is and what the client must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeGrant {
    pub user_id: i64,
    /// base64url(SHA-256(verifier)), as the client sent it at the start.
    pub code_challenge: String,
    /// The provider's ID token, when the client's nonce committed to its key.
    pub id_token: Option<String>,
    /// How long the session may last (the provider's maximum).
    pub session: Duration,
}

impl Store {
    /// Stores a grant under the digest of its code, for `ttl`; grants past
    /// their time are swept out on the way.
    pub async fn create_native_grant(
        &self,
        code_hash: &[u8],
        grant: &NativeGrant,
        ttl: Duration,
    ) -> Result<()> {
        let session = i64::try_from(grant.session.as_secs()).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM native_grants WHERE expires_at <= $1")
                .bind(unix_now())
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO native_grants
                    (code_hash, user_id, code_challenge, id_token, session_secs, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(code_hash)
            .bind(grant.user_id)
            .bind(&grant.code_challenge)
            .bind(&grant.id_token)
            .bind(session)
            .bind(expiry(ttl))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Uses up the grant of a code: it is gone whether or not the caller
    /// then proves the verifier, so a code works at most once.
    pub async fn take_native_grant(&self, code_hash: &[u8]) -> Result<Option<NativeGrant>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "DELETE FROM native_grants WHERE code_hash = $1 AND expires_at > $2
                 RETURNING user_id, code_challenge, id_token, session_secs",
            )
            .bind(code_hash)
            .bind(unix_now())
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                let secs: i64 = r.try_get("session_secs")?;
                Ok(NativeGrant {
                    user_id: r.try_get("user_id")?,
                    code_challenge: r.try_get("code_challenge")?,
                    id_token: r.try_get("id_token")?,
                    session: Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
                })
            })
            .transpose()
        })
    }

    /// Ends every session of an account, native ones and grants not yet
    /// traded included (a provider's back-channel logout). Its API tokens
    /// stay: they are the person's own, not a sign-in's.
    pub async fn end_sessions(&self, user_id: i64) -> Result<u64> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM native_grants WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            n
        }))
    }
}
