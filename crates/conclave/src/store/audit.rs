//! The audit log of sign-ins and their failures: by password, sign-in link
//! or provider, who (as far as known), from where, and why one failed.
//! Read by `conclave admin signins`. Entries are never secrets: a typed
//! password or token is not written, only the name it was typed with.

use sqlx::Row;

use super::{Pool, Result, Store, unix_now};

/// How a sign-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninOutcome {
    Ok,
    /// Wrong password, unknown name, used link, a refused token...: the
    /// failure's code, as the answer or the callback named it.
    Failed(&'static str),
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigninEvent {
    pub at: i64,
    /// `password`, `link`, or `oidc:NAME`.
    pub method: String,
    /// `ok`, or the failure's code.
    pub outcome: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// What else helps an administrator: the provider's issuer and subject,
    /// the error in words.
    pub detail: Option<String>,
    pub address: Option<String>,
}

/// The longest text kept in one field (a typed name, an error).
const MAX_FIELD: usize = 200;

fn cut(s: Option<&str>) -> Option<String> {
    s.map(|s| s.chars().take(MAX_FIELD).collect())
}

impl Store {
    /// Adds an entry. The caller logs a failure to write it and goes on:
    /// the audit log never keeps anyone from signing in.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_signin(
        &self,
        method: &str,
        outcome: SigninOutcome,
        user_id: Option<i64>,
        username: Option<&str>,
        detail: Option<&str>,
        address: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let outcome = match outcome {
            SigninOutcome::Ok => "ok",
            SigninOutcome::Failed(code) => code,
        };
        let address = address.map(|a| a.to_string());
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO signin_events (at, method, outcome, user_id, username, detail, address)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(unix_now())
        .bind(cut(Some(method)))
        .bind(outcome)
        .bind(user_id)
        .bind(cut(username))
        .bind(cut(detail))
        .bind(address)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// Deletes the entries written before `before` (seconds since the Unix
    /// epoch); how many went.
    pub async fn prune_signin_events(&self, before: i64) -> Result<u64> {
        let done = on_pool!(self, pool => sqlx::query("DELETE FROM signin_events WHERE at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// The latest `limit` entries, newest first.
    pub async fn signin_events(&self, limit: i64) -> Result<Vec<SigninEvent>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT at, method, outcome, user_id, username, detail, address
                 FROM signin_events ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(SigninEvent {
                        at: r.try_get("at")?,
                        method: r.try_get("method")?,
                        outcome: r.try_get("outcome")?,
                        user_id: r.try_get("user_id")?,
                        username: r.try_get("username")?,
                        detail: r.try_get("detail")?,
                        address: r.try_get("address")?,
                    })
                })
                .collect()
        })
    }
}
