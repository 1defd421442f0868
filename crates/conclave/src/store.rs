//! The SQLite store: accounts, sessions, API tokens, meetings, bans and the
//! server's own keys.
//!
//! One file in the data directory, WAL mode, migrations embedded in the binary
//! and applied at open. Secrets that only need checking (sessions, tokens,
//! sign-in links) are stored as SHA-256 digests, passwords as argon2id hashes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use conclave_core::{BanKey, MeetingConfig};
use conclave_proto::{MeetingId, Permissions, ScreenShare};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the name is taken")]
    Conflict,
    #[error("a stored row is corrupt: {0}")]
    Corrupt(&'static str),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub has_password: bool,
}

/// A meeting as stored, with everything the HTTP API and the core need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    pub id: MeetingId,
    pub owner_id: i64,
    pub title: String,
    /// `None` when the owner turned the passcode off.
    pub passcode: Option<String>,
    pub passcode_hash: Option<String>,
    pub waiting_room: bool,
    pub permissions: Permissions,
    pub only_signed_in: bool,
    pub max_participants: u32,
    pub created_at: i64,
}

impl MeetingRecord {
    pub fn core_config(&self) -> MeetingConfig {
        MeetingConfig {
            title: self.title.clone(),
            owner: self.owner_id,
            permissions: self.permissions,
            waiting_room: self.waiting_room,
            only_signed_in: self.only_signed_in,
            max_participants: self.max_participants,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

/// Seconds since the Unix epoch, for stored timestamps.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn screen_share_str(s: ScreenShare) -> &'static str {
    match s {
        ScreenShare::HostOnly => "host_only",
        ScreenShare::Everyone => "everyone",
    }
}

fn meeting_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MeetingRecord> {
    let id: String = row.try_get("id")?;
    let screen: String = row.try_get("screen_share")?;
    let max: i64 = row.try_get("max_participants")?;
    Ok(MeetingRecord {
        id: MeetingId::from_str(&id).map_err(|_| StoreError::Corrupt("meeting id"))?,
        owner_id: row.try_get("owner_id")?,
        title: row.try_get("title")?,
        passcode: row.try_get("passcode")?,
        passcode_hash: row.try_get("passcode_hash")?,
        waiting_room: row.try_get("waiting_room")?,
        permissions: Permissions {
            screen_share: match screen.as_str() {
                "everyone" => ScreenShare::Everyone,
                "host_only" => ScreenShare::HostOnly,
                _ => return Err(StoreError::Corrupt("screen_share")),
            },
            chat: row.try_get("chat")?,
            self_unmute: row.try_get("self_unmute")?,
            rename_self: row.try_get("rename_self")?,
        },
        only_signed_in: row.try_get("only_signed_in")?,
        max_participants: u32::try_from(max).map_err(|_| StoreError::Corrupt("max"))?,
        created_at: row.try_get("created_at")?,
    })
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User> {
    let hash: Option<String> = row.try_get("password_hash")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        is_admin: row.try_get("is_admin")?,
        has_password: hash.is_some(),
    })
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds a meeting's title, passcode and settings, in the order both the
/// INSERT and the UPDATE list those columns.
fn bind_settings<'q>(query: SqliteQuery<'q>, m: &'q MeetingRecord) -> SqliteQuery<'q> {
    query
        .bind(&m.title)
        .bind(&m.passcode)
        .bind(&m.passcode_hash)
        .bind(m.waiting_room)
        .bind(screen_share_str(m.permissions.screen_share))
        .bind(m.permissions.chat)
        .bind(m.permissions.self_unmute)
        .bind(m.permissions.rename_self)
        .bind(m.only_signed_in)
        .bind(i64::from(m.max_participants))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) `conclave.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("conclave.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL survives a killed process; only a power cut may
            // lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Checkpoints the WAL and closes every connection.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    // ---- users ----

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
    ) -> Result<User> {
        let res = sqlx::query(
            "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(is_admin)
        .bind(unix_now())
        .execute(&self.pool)
        .await;
        match res {
            Ok(r) => Ok(User {
                id: r.last_insert_rowid(),
                username: username.to_string(),
                is_admin,
                has_password: password_hash.is_some(),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// The user and their password hash, for sign-in.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn password_hash(&self, user_id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    pub async fn set_password(&self, user_id: i64, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any account can sign in with a password yet.
    pub async fn any_password_set(&self) -> Result<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }

    // ---- sessions, tokens, links ----

    pub async fn create_session(&self, hash: &[u8], user_id: i64, ttl: Duration) -> Result<()> {
        let now = unix_now();
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(hash)
            .bind(user_id)
            .bind(now)
            .bind(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn session_user(&self, hash: &[u8]) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(hash)
        .bind(unix_now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    pub async fn delete_session(&self, hash: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of a user but `keep` (after a password change).
    pub async fn delete_other_sessions(&self, user_id: i64, keep: Option<&[u8]>) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?")
            .bind(user_id)
            .bind(keep)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_api_token(&self, user_id: i64, name: &str, hash: &[u8]) -> Result<i64> {
        let r = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(r.last_insert_rowid())
    }

    pub async fn api_token_user(&self, hash: &[u8]) -> Result<Option<User>> {
        let row = sqlx::query(
            "UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ?
             RETURNING user_id",
        )
        .bind(unix_now())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => self.user_by_id(r.try_get("user_id")?).await,
            None => Ok(None),
        }
    }

    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenInfo {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM api_tokens WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Replaces the user's sign-in links with this one.
    pub async fn create_signin_link(&self, user_id: i64, hash: &[u8], ttl: Duration) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM signin_links WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signin_links (token_hash, user_id, expires_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(user_id)
            .bind(unix_now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Uses up a sign-in link: it works once.
    pub async fn redeem_signin_link(&self, hash: &[u8]) -> Result<Option<User>> {
        let row = sqlx::query(
            "DELETE FROM signin_links WHERE token_hash = ? AND expires_at > ? RETURNING user_id",
        )
        .bind(hash)
        .bind(unix_now())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => self.user_by_id(r.try_get("user_id")?).await,
            None => Ok(None),
        }
    }

    // ---- meetings ----

    pub async fn insert_meeting(&self, m: &MeetingRecord) -> Result<()> {
        let now = unix_now();
        let query = sqlx::query(
            "INSERT INTO meetings (id, owner_id, title, passcode, passcode_hash, waiting_room,
               screen_share, chat, self_unmute, rename_self, only_signed_in, max_participants,
               created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id.compact())
        .bind(m.owner_id);
        bind_settings(query, m)
            // The record's own time, so that what the API answered at creation
            // is what it reads back later.
            .bind(m.created_at)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn update_meeting(&self, m: &MeetingRecord) -> Result<()> {
        let query = sqlx::query(
            "UPDATE meetings SET title = ?, passcode = ?, passcode_hash = ?, waiting_room = ?,
               screen_share = ?, chat = ?, self_unmute = ?, rename_self = ?, only_signed_in = ?,
               max_participants = ?, updated_at = ?
             WHERE id = ?",
        );
        bind_settings(query, m)
            .bind(unix_now())
            .bind(m.id.compact())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn save_permissions(&self, id: MeetingId, p: Permissions) -> Result<()> {
        sqlx::query(
            "UPDATE meetings SET screen_share = ?, chat = ?, self_unmute = ?, rename_self = ?,
               updated_at = ? WHERE id = ?",
        )
        .bind(screen_share_str(p.screen_share))
        .bind(p.chat)
        .bind(p.self_unmute)
        .bind(p.rename_self)
        .bind(unix_now())
        .bind(id.compact())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn meeting(&self, id: MeetingId) -> Result<Option<MeetingRecord>> {
        let row = sqlx::query("SELECT * FROM meetings WHERE id = ?")
            .bind(id.compact())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| meeting_from_row(&r)).transpose()
    }

    pub async fn meetings_of(&self, owner_id: i64) -> Result<Vec<MeetingRecord>> {
        let rows =
            sqlx::query("SELECT * FROM meetings WHERE owner_id = ? ORDER BY created_at, rowid")
                .bind(owner_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(meeting_from_row).collect()
    }

    pub async fn delete_meeting(&self, id: MeetingId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM meetings WHERE id = ?")
            .bind(id.compact())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn add_bans(&self, id: MeetingId, keys: &[BanKey]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for k in keys {
            let (kind, value) = match k {
                BanKey::Account(a) => ("account", a.to_string()),
                BanKey::Guest(g) => ("guest", g.clone()),
                BanKey::Address(ip) => ("address", ip.to_string()),
            };
            sqlx::query(
                "INSERT OR IGNORE INTO meeting_bans (meeting_id, kind, value, created_at)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(id.compact())
            .bind(kind)
            .bind(value)
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn bans(&self, id: MeetingId) -> Result<Vec<BanKey>> {
        let rows = sqlx::query("SELECT kind, value FROM meeting_bans WHERE meeting_id = ?")
            .bind(id.compact())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get("kind")?;
            let value: String = r.try_get("value")?;
            out.push(match kind.as_str() {
                "account" => BanKey::Account(
                    value
                        .parse()
                        .map_err(|_| StoreError::Corrupt("ban account"))?,
                ),
                "address" => BanKey::Address(
                    value
                        .parse()
                        .map_err(|_| StoreError::Corrupt("ban address"))?,
                ),
                "guest" => BanKey::Guest(value),
                _ => return Err(StoreError::Corrupt("ban kind")),
            });
        }
        Ok(out)
    }

    /// Whether any meeting bans this guest identity.
    pub async fn guest_banned_anywhere(&self, guest: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM meeting_bans WHERE kind = 'guest' AND value = ?",
        )
        .bind(guest)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    // ---- server keys ----

    /// The server's key called `name`; `fresh` becomes it if there is none
    /// yet. Two servers starting on one store at once agree on one key.
    pub async fn server_key(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        sqlx::query("INSERT OR IGNORE INTO server_keys (name, value, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(fresh)
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM server_keys WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
