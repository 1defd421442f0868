//! What the administrators' HTTP API reads and writes beyond the account
//! calls of [`Store`]: the accounts with their provider identities in one
//! query, whether a refused credential belongs to a disabled account (so
//! that its holder hears why), and the audit entries of administrators'
//! actions.

use sqlx::Row;

use super::{OidcIdentity, Pool, Result, Store, StoredRow, User, unix_now};

/// An account as the administrators' list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub user: User,
    pub created_at: i64,
    /// The provider identity, for accounts that sign in through one.
    pub identity: Option<OidcIdentity>,
}

impl Store {
    /// Every account, oldest first, with its provider identity if any.
    pub async fn list_accounts(&self) -> Result<Vec<AccountRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT u.*, i.issuer AS oidc_issuer, i.email AS oidc_email, i.name AS oidc_name
                 FROM users u LEFT JOIN oidc_identities i ON i.user_id = u.id
                 ORDER BY u.id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let issuer: Option<String> = r.try_get("oidc_issuer")?;
                    Ok(AccountRow {
                        user: r.user()?,
                        created_at: r.try_get("created_at")?,
                        identity: match issuer {
                            Some(issuer) => Some(OidcIdentity {
                                issuer,
                                email: r.try_get("oidc_email")?,
                                name: r.try_get("oidc_name")?,
                            }),
                            None => None,
                        },
                    })
                })
                .collect()
        })
    }

    /// Whether `hash` is the digest of a session or API token of an account
    /// that is disabled now. Asked only after the credential was refused:
    /// whoever holds it was that person, and should hear why rather than a
    /// bare "sign in first".
    pub async fn credential_of_disabled_account(&self, hash: &[u8]) -> Result<bool> {
        let n: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM users u WHERE u.disabled_at IS NOT NULL AND u.id IN (
                 SELECT user_id FROM sessions WHERE token_hash = $1
                 UNION SELECT user_id FROM api_tokens WHERE token_hash = $1)",
        )
        .bind(hash)
        .fetch_one(pool)
        .await)?;
        Ok(n > 0)
    }

    /// Adds an administrator's action to the audit log (the sign-in log,
    /// `conclave admin signins`): method `admin`, the action as its outcome
    /// (`disable_user`, `enable_user`, `delete_user`, or a refusal's code),
    /// the account acted on, and who acted in `detail`.
    pub async fn record_admin_action(
        &self,
        action: &str,
        target: Option<(i64, &str)>,
        detail: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let address = address.map(|a| a.to_string());
        let detail: String = detail.chars().take(200).collect();
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO signin_events (at, method, outcome, user_id, username, detail, address)
             VALUES ($1, 'admin', $2, $3, $4, $5, $6)",
        )
        .bind(unix_now())
        .bind(action)
        .bind(target.map(|t| t.0))
        .bind(target.map(|t| t.1))
        .bind(detail)
        .bind(address)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }
}
