//! Accounts of people who sign in through an OpenID Connect provider.
//!
//! The key is (issuer, `sub`): the one pair the OpenID Connect spec promises
//! is stable and unique for a person. Email and name are refreshed from each
//! sign-in and only shown; matching on email would let whoever is given an
//! address later, or a second provider, take over someone's account.

use sqlx::Row;

use super::{Pool, Result, Store, StoreError, StoredRow, User, is_unique_violation, unix_now};

/// What a provider said about a person at sign-in, after the ID token was
/// checked.
#[derive(Debug, Clone)]
pub struct OidcClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The provider's `preferred_username`, a hint for the local username.
    pub preferred_username: Option<String>,
}

/// The provider identity behind an account, as last signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    pub issuer: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Tries for a free username before giving up (each with another suffix).
const USERNAME_TRIES: u32 = 20;

impl Store {
    /// Makes the account an administrator or not: from the provider's
    /// groups at each sign-in (`admin_groups`).
    pub async fn set_admin(&self, user_id: i64, is_admin: bool) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
            .bind(is_admin)
            .bind(user_id)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The account of the person `claims` names, created at their first
    /// sign-in, with email and name updated from the claims.
    pub async fn oidc_account(&self, claims: &OidcClaims) -> Result<User> {
        if let Some(user) = self.oidc_user(claims).await? {
            return Ok(user);
        }
        let base = username_base(claims);
        for n in 0..USERNAME_TRIES {
            let username = match n {
                0 => base.clone(),
                n => format!("{base}-{}", n + 1),
            };
            let user = match self.create_user(&username, None, false).await {
                Ok(u) => u,
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            };
            let linked: std::result::Result<(), sqlx::Error> = on_pool!(self, pool => sqlx::query(
                "INSERT INTO oidc_identities
                    (issuer, subject, user_id, email, name, created_at, last_sign_in)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&claims.issuer)
            .bind(&claims.subject)
            .bind(user.id)
            .bind(&claims.email)
            .bind(&claims.name)
            .bind(unix_now())
            .execute(pool)
            .await
            .map(drop));
            return match linked {
                Ok(_) => Ok(user),
                Err(e) if is_unique_violation(&e) => {
                    // The same person's first sign-in in another tab won.
                    self.delete_user(user.id).await?;
                    self.oidc_user(claims)
                        .await?
                        .ok_or(StoreError::Corrupt("oidc identity"))
                }
                Err(e) => {
                    self.delete_user(user.id).await?;
                    Err(e.into())
                }
            };
        }
        Err(StoreError::Conflict)
    }

    /// The account already linked to (issuer, sub), refreshed from `claims`.
    async fn oidc_user(&self, claims: &OidcClaims) -> Result<Option<User>> {
        on_pool!(self, pool => {
            let updated = sqlx::query(
                "UPDATE oidc_identities SET email = $1, name = $2, last_sign_in = $3
                 WHERE issuer = $4 AND subject = $5",
            )
            .bind(&claims.email)
            .bind(&claims.name)
            .bind(unix_now())
            .bind(&claims.issuer)
            .bind(&claims.subject)
            .execute(pool)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(None);
            }
            let row = sqlx::query(
                "SELECT u.* FROM oidc_identities i JOIN users u ON u.id = i.user_id
                 WHERE i.issuer = $1 AND i.subject = $2",
            )
            .bind(&claims.issuer)
            .bind(&claims.subject)
            .fetch_optional(pool)
            .await?;
            row.map(|r| r.user()).transpose()
        })
    }

    /// The account linked to (issuer, `sub`), if any, without touching it.
    pub async fn oidc_account_of(&self, issuer: &str, subject: &str) -> Result<Option<User>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT u.* FROM oidc_identities i JOIN users u ON u.id = i.user_id
                 WHERE i.issuer = $1 AND i.subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_optional(pool)
            .await?;
            row.map(|r| r.user()).transpose()
        })
    }

    /// The provider identity of an account, if it has one.
    pub async fn oidc_identity(&self, user_id: i64) -> Result<Option<OidcIdentity>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT issuer, email, name FROM oidc_identities WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(OidcIdentity {
                    issuer: r.try_get("issuer")?,
                    email: r.try_get("email")?,
                    name: r.try_get("name")?,
                })
            })
            .transpose()
        })
    }
}

/// A local username for a new account: the provider's `preferred_username`,
/// else the email's local part, else "user", cut to what
/// [`crate::auth::username_acceptable`] allows.
fn username_base(claims: &OidcClaims) -> String {
    let hint = claims
        .preferred_username
        .as_deref()
        .or_else(|| claims.email.as_deref().and_then(|e| e.split('@').next()))
        .unwrap_or_default();
    let cleaned: String = hint
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    if cleaned.is_empty() {
        "user".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(preferred: Option<&str>, email: Option<&str>) -> OidcClaims {
        OidcClaims {
            issuer: "https://idp.example".into(),
            subject: "1".into(),
            email: email.map(Into::into),
            name: None,
            preferred_username: preferred.map(Into::into),
        }
    }

    #[test]
    fn usernames_come_from_claims_and_stay_acceptable() {
        assert_eq!(username_base(&claims(Some("ada"), None)), "ada");
        assert_eq!(
            username_base(&claims(None, Some("ada.l@example.org"))),
            "ada.l"
        );
        assert_eq!(
            username_base(&claims(Some("Ada Lovelace!"), None)),
            "AdaLovelace"
        );
        assert_eq!(username_base(&claims(Some("日本"), None)), "user");
        assert!(crate::auth::username_acceptable(&username_base(&claims(
            Some(&"x".repeat(200)),
            None
        ))));
    }
}
