//! Whether the account behind a valid access token still stands, as every
//! service sees it: a local projection of the users service's
//! `users.user.credentials_changed.v1` events, kept in each service's own
//! database. Suspension, reinstatement and any other change bump the
//! account's credential version, so a token minted before it (its `ver`
//! claim) stops working everywhere once the event arrives.
//!
//! Reads go through a cache that forgets entries after a second: the event may
//! have been applied by another replica, and a second is the promise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::{Db, Tx};
use crate::problem::ApiError;

/// The projection's table, installed into every service's database.
pub const SCHEMA: &str = "CREATE TABLE credentials (\
    user_id TEXT PRIMARY KEY, \
    role TEXT NOT NULL, \
    version BIGINT NOT NULL, \
    active BIGINT NOT NULL);";

/// What a service knows of an account's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    pub role: Role,
    pub version: i64,
    pub active: bool,
}

/// The projection, with its cache.
pub struct Credentials {
    db: Db,
    cache: Mutex<HashMap<Uuid, (Option<Credential>, Instant)>>,
    fresh_for: Duration,
    /// How long a token naming an account the projection has not caught up
    /// with may wait for the event before it is refused.
    wait_for: Duration,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

const CACHE_LIMIT: usize = 100_000;

impl Credentials {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            cache: Mutex::new(HashMap::new()),
            fresh_for: Duration::from_secs(1),
            wait_for: Duration::from_secs(1),
        }
    }

    /// Records `credential` within `tx` unless a newer version is already known
    /// (events may arrive out of order).
    pub async fn record(
        tx: &mut Tx,
        user: Uuid,
        credential: Credential,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO credentials (user_id, role, version, active) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET role = excluded.role, version = excluded.version, \
             active = excluded.active WHERE credentials.version <= excluded.version",
        )
        .bind(user.to_string())
        .bind(credential.role.as_str())
        .bind(credential.version)
        .bind(i64::from(credential.active))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Drops the cached entry of `user` (after this process recorded a change).
    pub fn forget(&self, user: Uuid) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&user);
    }

    async fn load(&self, user: Uuid, fresh: bool) -> Result<Option<Credential>, ApiError> {
        if !fresh {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((entry, at)) = cache.get(&user) {
                if at.elapsed() < self.fresh_for {
                    return Ok(*entry);
                }
            }
        }
        let row = sqlx::query("SELECT role, version, active FROM credentials WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(self.db.reader())
            .await?;
        let entry = match row {
            Some(row) => {
                let role: String = row.try_get("role")?;
                Some(Credential {
                    role: role.parse().map_err(|_| {
                        ApiError::internal(anyhow::anyhow!("unknown role {role:?} in credentials"))
                    })?,
                    version: row.try_get("version")?,
                    active: row.try_get::<i64, _>("active")? != 0,
                })
            }
            None => None,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(user, (entry, Instant::now()));
        Ok(entry)
    }

    /// Refuses a token's caller unless the account is known, active, in the
    /// same role and at the token's credential version.
    pub async fn check(&self, user: Uuid, role: Role, version: i64) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.wait_for;
        let mut fresh = false;
        loop {
            match self.load(user, fresh).await? {
                Some(c) if c.version == version && c.active && c.role == role => return Ok(()),
                Some(c) if c.version >= version => {
                    return Err(ApiError::Unauthenticated(
                        "the token has been revoked".into(),
                    ))
                }
                // Unknown, or behind the token: the event may still be on its way.
                _ if Instant::now() < deadline => {
                    fresh = true;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(ApiError::Unauthenticated("invalid token".into())),
            }
        }
    }
}
