//! The store: accounts, sessions, API tokens, meetings, bans and the server's
//! own keys, in SQLite (the embedded default) or PostgreSQL.
//!
//! SQLite is one file in the data directory, WAL mode, so that one machine
//! needs no setup. PostgreSQL (`database_url = "postgres://…"`) is for an
//! operator who already runs one and for several nodes sharing one store.
//! Migrations are embedded in the binary and applied at open, one directory
//! per engine with the same numbering (`migrations/sqlite`,
//! `migrations/postgres`); the integration tests check that both reach the
//! same schema.
//!
//! Why an enum over two typed pools rather than `sqlx::Any`: `Any` converts
//! every value through its own small type set, so SQLite's 0/1 flags would
//! not read as booleans, and the SQLite pool would lose its typed options
//! (WAL, synchronous, busy timeout). Every query here is one text both engines
//! accept (`$n` placeholders, `RETURNING`, `ON CONFLICT DO NOTHING`,
//! `IS DISTINCT FROM`), and `on_pool!` expands each method's body once per
//! engine, so each is type-checked against its own driver and the shared
//! store tests run every query on both.
//!
//! Secrets that only need checking (sessions, tokens, sign-in links) are
//! stored as SHA-256 digests, passwords as argon2id hashes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use conclave_core::{BanKey, MeetingConfig};
use conclave_proto::{MeetingId, Permissions, Publishing, ScreenShare};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

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
    #[error("database_url: only postgres:// and postgresql:// URLs are supported")]
    UnsupportedUrl,
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub has_password: bool,
    /// Disabled by an administrator: signs in by no means until enabled again.
    pub disabled: bool,
    /// May create meetings: always for a local account; for a provider's,
    /// as its `host_groups` said at the latest sign-in.
    pub may_host: bool,
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
    /// With `only_signed_in`: only the organisation's people and the
    /// `invited_emails` ([`crate::join_policy`]).
    pub organisation_only: bool,
    /// Outside addresses the host invited, lower-case.
    pub invited_emails: Vec<String>,
    pub max_participants: u32,
    pub created_at: i64,
    /// When the meeting is planned to start, Unix seconds (UTC); `None` when
    /// it is not scheduled.
    pub starts_at: Option<i64>,
    /// How long it is planned to last; set whenever `starts_at` is.
    pub duration_minutes: Option<u32>,
    /// Whether guests are seated before a host or co-host is in the meeting.
    pub join_before_host: bool,
}

impl MeetingRecord {
    pub fn who_may_join(&self) -> crate::join_policy::WhoMayJoin {
        use crate::join_policy::WhoMayJoin;
        match (self.only_signed_in, self.organisation_only) {
            (_, true) => WhoMayJoin::Organisation,
            (true, false) => WhoMayJoin::SignedIn,
            (false, false) => WhoMayJoin::Anyone,
        }
    }

    pub fn set_who_may_join(&mut self, w: crate::join_policy::WhoMayJoin) {
        use crate::join_policy::WhoMayJoin;
        self.only_signed_in = w != WhoMayJoin::Anyone;
        self.organisation_only = w == WhoMayJoin::Organisation;
    }

    pub fn core_config(&self) -> MeetingConfig {
        MeetingConfig {
            title: self.title.clone(),
            owner: self.owner_id,
            permissions: self.permissions,
            waiting_room: self.waiting_room,
            only_signed_in: self.only_signed_in,
            max_participants: self.max_participants,
            join_before_host: self.join_before_host,
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

/// Which engine a store runs on, as named in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever engine it
/// is: the body is written once and type-checked for each driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Seconds since the Unix epoch, for stored timestamps.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn expiry(ttl: Duration) -> i64 {
    unix_now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

fn screen_share_str(s: ScreenShare) -> &'static str {
    match s {
        ScreenShare::HostOnly => "host_only",
        ScreenShare::Everyone => "everyone",
    }
}

fn publishing_str(p: Publishing) -> &'static str {
    match p {
        Publishing::Everyone => "everyone",
        Publishing::Allowed => "allowed",
    }
}

fn ban_parts(k: &BanKey) -> (&'static str, String) {
    match k {
        BanKey::Account(a) => ("account", a.to_string()),
        BanKey::Guest(g) => ("guest", g.clone()),
        BanKey::Address(ip) => ("address", ip.to_string()),
    }
}

fn ban_from_parts(kind: &str, value: String) -> Result<BanKey> {
    Ok(match kind {
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
    })
}

/// Rows of either engine read into the store's records.
trait StoredRow {
    fn user(&self) -> Result<User>;
    fn meeting(&self) -> Result<MeetingRecord>;
    fn api_token(&self) -> Result<ApiTokenInfo>;
}

macro_rules! stored_row {
    ($row:ty) => {
        impl StoredRow for $row {
            fn user(&self) -> Result<User> {
                let hash: Option<String> = self.try_get("password_hash")?;
                let disabled_at: Option<i64> = self.try_get("disabled_at")?;
                Ok(User {
                    id: self.try_get("id")?,
                    username: self.try_get("username")?,
                    is_admin: self.try_get("is_admin")?,
                    has_password: hash.is_some(),
                    disabled: disabled_at.is_some(),
                    may_host: self.try_get("may_host")?,
                })
            }

            fn meeting(&self) -> Result<MeetingRecord> {
                let id: String = self.try_get("id")?;
                let screen: String = self.try_get("screen_share")?;
                let max: i64 = self.try_get("max_participants")?;
                Ok(MeetingRecord {
                    id: MeetingId::from_str(&id).map_err(|_| StoreError::Corrupt("meeting id"))?,
                    owner_id: self.try_get("owner_id")?,
                    title: self.try_get("title")?,
                    passcode: self.try_get("passcode")?,
                    passcode_hash: self.try_get("passcode_hash")?,
                    waiting_room: self.try_get("waiting_room")?,
                    permissions: Permissions {
                        screen_share: match screen.as_str() {
                            "everyone" => ScreenShare::Everyone,
                            "host_only" => ScreenShare::HostOnly,
                            _ => return Err(StoreError::Corrupt("screen_share")),
                        },
                        chat: self.try_get("chat")?,
                        self_unmute: self.try_get("self_unmute")?,
                        rename_self: self.try_get("rename_self")?,
                        publish: match self.try_get::<String, _>("publish")?.as_str() {
                            "everyone" => Publishing::Everyone,
                            "allowed" => Publishing::Allowed,
                            _ => return Err(StoreError::Corrupt("publish")),
                        },
                    },
                    only_signed_in: self.try_get("only_signed_in")?,
                    organisation_only: self.try_get("organisation_only")?,
                    invited_emails: {
                        let text: String = self.try_get("invited_emails")?;
                        text.lines().map(str::to_string).collect()
                    },
                    max_participants: u32::try_from(max).map_err(|_| StoreError::Corrupt("max"))?,
                    created_at: self.try_get("created_at")?,
                    starts_at: self.try_get("starts_at")?,
                    duration_minutes: {
                        let d: Option<i64> = self.try_get("duration_minutes")?;
                        d.map(u32::try_from)
                            .transpose()
                            .map_err(|_| StoreError::Corrupt("duration_minutes"))?
                    },
                    join_before_host: self.try_get("join_before_host")?,
                })
            }

            fn api_token(&self) -> Result<ApiTokenInfo> {
                Ok(ApiTokenInfo {
                    id: self.try_get("id")?,
                    name: self.try_get("name")?,
                    created_at: self.try_get("created_at")?,
                    last_used_at: self.try_get("last_used_at")?,
                })
            }
        }
    };
}

stored_row!(SqliteRow);
stored_row!(PgRow);

/// Binds a meeting's title, passcode and settings, in the order both the
/// INSERT and the UPDATE list those columns.
macro_rules! bind_settings {
    ($query:expr, $m:expr) => {
        $query
            .bind(&$m.title)
            .bind(&$m.passcode)
            .bind(&$m.passcode_hash)
            .bind($m.waiting_room)
            .bind(screen_share_str($m.permissions.screen_share))
            .bind($m.permissions.chat)
            .bind($m.permissions.self_unmute)
            .bind($m.permissions.rename_self)
            .bind($m.only_signed_in)
            .bind(i64::from($m.max_participants))
            .bind($m.organisation_only)
            .bind($m.invited_emails.join("\n"))
            .bind($m.starts_at)
            .bind($m.duration_minutes.map(i64::from))
            .bind($m.join_before_host)
            .bind(publishing_str($m.permissions.publish))
    };
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// The store the configuration names: PostgreSQL at `database_url` when
    /// it is set, otherwise SQLite in `data_dir`.
    pub async fn open_configured(database_url: Option<&str>, data_dir: &Path) -> Result<Store> {
        match database_url {
            Some(url) => Store::connect(url).await,
            None => Store::open(data_dir).await,
        }
    }

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
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:pass@host/db`)
    /// and migrates it. The database and its owner must exist; the tables are
    /// created here.
    pub async fn connect(url: &str) -> Result<Store> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::UnsupportedUrl);
        }
        let options = PgConnectOptions::from_str(url)?.application_name("conclave");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A request waits at most this long for a connection when the
            // database is slow or gone, then fails instead of hanging.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store {
            pool: Pool::Postgres(pool),
        })
    }

    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// One round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Checkpoints SQLite's WAL and closes every connection.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await;
                pool.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    // ---- users ----

    pub async fn user_count(&self) -> Result<i64> {
        Ok(
            on_pool!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await)?,
        )
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
    ) -> Result<User> {
        let res: std::result::Result<i64, sqlx::Error> = on_pool!(self, pool => sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, is_admin, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(is_admin)
        .bind(unix_now())
        .fetch_one(pool)
        .await);
        match res {
            Ok(id) => Ok(User {
                id,
                username: username.to_string(),
                is_admin,
                has_password: password_hash.is_some(),
                disabled: false,
                may_host: true,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// The user and their password hash, for sign-in. Names match regardless
    /// of case.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, Option<String>)>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Ok((r.user()?, r.try_get("password_hash")?)))
                .transpose()
        })
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.user()).transpose()
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT * FROM users ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| r.user()).collect()
        })
    }

    /// Disables or enables an account. Disabling also ends its sessions and
    /// voids its sign-in links at once; its API tokens are kept but refused
    /// while it is disabled ([`Store::api_token_user`]). False when there is
    /// no such account.
    pub async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
        let at = disabled.then(unix_now);
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(at)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if disabled {
                // Sessions end (expire now) rather than vanish: a browser
                // that presents one then hears that the account is disabled
                // ([`Store::credential_of_disabled_account`]), not "sign in
                // first". Enabling the account does not revive them.
                for table in ["UPDATE sessions SET expires_at = 0 WHERE user_id = $1",
                              "DELETE FROM signin_links WHERE user_id = $1"] {
                    sqlx::query(table).bind(user_id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            n > 0
        }))
    }

    /// Deletes an account with everything that hangs off it (sessions,
    /// tokens, links, meetings, its provider identity: `ON DELETE CASCADE`).
    /// False when there is no such account.
    pub async fn delete_user(&self, id: i64) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Records what a provider's `host_groups` said at a sign-in.
    pub async fn set_may_host(&self, user_id: i64, may_host: bool) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET may_host = $1 WHERE id = $2")
            .bind(may_host)
            .bind(user_id)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    pub async fn password_hash(&self, user_id: i64) -> Result<Option<String>> {
        let hash: Option<Option<String>> = on_pool!(self, pool =>
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await)?;
        Ok(hash.flatten())
    }

    pub async fn set_password(&self, user_id: i64, hash: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Whether any account can sign in with a password yet.
    pub async fn any_password_set(&self) -> Result<bool> {
        let n: i64 = on_pool!(self, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL")
                .fetch_one(pool)
                .await)?;
        Ok(n > 0)
    }

    // ---- sessions, tokens, links ----

    pub async fn create_session(&self, hash: &[u8], user_id: i64, ttl: Duration) -> Result<()> {
        let now = unix_now();
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(now)
        .bind(expiry(ttl))
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    pub async fn session_user(&self, hash: &[u8]) -> Result<Option<User>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            )
            .bind(hash)
            .bind(unix_now())
            .fetch_optional(pool)
            .await?;
            row.map(|r| r.user()).transpose()
        })
    }

    pub async fn delete_session(&self, hash: &[u8]) -> Result<()> {
        on_pool!(self, pool => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Ends every session of a user but `keep` (after a password change).
    pub async fn delete_other_sessions(&self, user_id: i64, keep: Option<&[u8]>) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2",
        )
        .bind(user_id)
        .bind(keep)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    pub async fn create_api_token(&self, user_id: i64, name: &str, hash: &[u8]) -> Result<i64> {
        Ok(on_pool!(self, pool => sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(unix_now())
        .fetch_one(pool)
        .await)?)
    }

    pub async fn api_token_user(&self, hash: &[u8]) -> Result<Option<User>> {
        let user_id: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(
            "UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2
             RETURNING user_id",
        )
        .bind(unix_now())
        .bind(hash)
        .fetch_optional(pool)
        .await)?;
        self.enabled_user(user_id).await
    }

    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenInfo>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, name, created_at, last_used_at FROM api_tokens
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.api_token()).collect()
        })
    }

    pub async fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool> {
        let r = on_pool!(self, pool => sqlx::query(
            "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(r > 0)
    }

    /// Replaces the user's sign-in links with this one.
    pub async fn create_signin_link(&self, user_id: i64, hash: &[u8], ttl: Duration) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM signin_links WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO signin_links (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(hash)
            .bind(user_id)
            .bind(expiry(ttl))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Uses up a sign-in link: it works once.
    pub async fn redeem_signin_link(&self, hash: &[u8]) -> Result<Option<User>> {
        let user_id: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(
            "DELETE FROM signin_links WHERE token_hash = $1 AND expires_at > $2
             RETURNING user_id",
        )
        .bind(hash)
        .bind(unix_now())
        .fetch_optional(pool)
        .await)?;
        self.enabled_user(user_id).await
    }

    /// The account `id` names, unless there is none or it is disabled.
    async fn enabled_user(&self, id: Option<i64>) -> Result<Option<User>> {
        let Some(id) = id else { return Ok(None) };
        Ok(self.user_by_id(id).await?.filter(|u| !u.disabled))
    }

    // ---- meetings ----

    pub async fn insert_meeting(&self, m: &MeetingRecord) -> Result<()> {
        let now = unix_now();
        on_pool!(self, pool => {
            let query = sqlx::query(
                "INSERT INTO meetings (id, owner_id, title, passcode, passcode_hash, waiting_room,
                   screen_share, chat, self_unmute, rename_self, only_signed_in, max_participants,
                   organisation_only, invited_emails, starts_at, duration_minutes,
                   join_before_host, publish, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18, $19, $20)",
            )
            .bind(m.id.compact())
            .bind(m.owner_id);
            bind_settings!(query, m)
                // The record's own time, so that what the API answered at
                // creation is what it reads back later.
                .bind(m.created_at)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn update_meeting(&self, m: &MeetingRecord) -> Result<()> {
        on_pool!(self, pool => {
            let query = sqlx::query(
                "UPDATE meetings SET title = $1, passcode = $2, passcode_hash = $3,
                   waiting_room = $4, screen_share = $5, chat = $6, self_unmute = $7,
                   rename_self = $8, only_signed_in = $9, max_participants = $10,
                   organisation_only = $11, invited_emails = $12, starts_at = $13,
                   duration_minutes = $14, join_before_host = $15, publish = $16,
                   updated_at = $17
                 WHERE id = $18",
            );
            bind_settings!(query, m)
                .bind(unix_now())
                .bind(m.id.compact())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn save_permissions(&self, id: MeetingId, p: Permissions) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE meetings SET screen_share = $1, chat = $2, self_unmute = $3, rename_self = $4,
               publish = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(screen_share_str(p.screen_share))
        .bind(p.chat)
        .bind(p.self_unmute)
        .bind(p.rename_self)
        .bind(publishing_str(p.publish))
        .bind(unix_now())
        .bind(id.compact())
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    pub async fn meeting(&self, id: MeetingId) -> Result<Option<MeetingRecord>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT * FROM meetings WHERE id = $1")
                .bind(id.compact())
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.meeting()).transpose()
        })
    }

    /// The owner's meetings, oldest first (in the order they were created
    /// when several share a second).
    pub async fn meetings_of(&self, owner_id: i64) -> Result<Vec<MeetingRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT * FROM meetings WHERE owner_id = $1 ORDER BY created_at, rowid",
            )
            .bind(owner_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.meeting()).collect()
        })
    }

    pub async fn delete_meeting(&self, id: MeetingId) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query("DELETE FROM meetings WHERE id = $1")
            .bind(id.compact())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn add_bans(&self, id: MeetingId, keys: &[BanKey]) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for k in keys {
                let (kind, value) = ban_parts(k);
                sqlx::query(
                    "INSERT INTO meeting_bans (meeting_id, kind, value, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(id.compact())
                .bind(kind)
                .bind(value)
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn bans(&self, id: MeetingId) -> Result<Vec<BanKey>> {
        let rows: Vec<(String, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT kind, value FROM meeting_bans WHERE meeting_id = $1",
        )
        .bind(id.compact())
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|(kind, value)| ban_from_parts(&kind, value))
            .collect()
    }

    /// Whether any meeting bans this guest identity.
    pub async fn guest_banned_anywhere(&self, guest: &str) -> Result<bool> {
        let n: i64 = on_pool!(self, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM meeting_bans WHERE kind = 'guest' AND value = $1",
        )
        .bind(guest)
        .fetch_one(pool)
        .await)?;
        Ok(n > 0)
    }

    // ---- server keys ----

    /// The server's key called `name`; `fresh` becomes it if there is none
    /// yet. Two servers starting on one store at once agree on one key.
    pub async fn server_key(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO server_keys (name, value, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(fresh)
            .bind(unix_now())
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT value FROM server_keys WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        }))
    }
}

mod admin;
mod audit;
mod native;
mod oidc;
pub use admin::AccountRow;
pub use audit::{SigninEvent, SigninOutcome};
pub use native::NativeGrant;
pub use oidc::{OidcClaims, OidcIdentity};
