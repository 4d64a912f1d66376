//! `Idempotency-Key` for POSTs that move money or create things, with the
//! semantics of the IETF httpapi draft as Stripe practises them: the first
//! response (status and body) is kept per caller and key and replayed for a
//! retry with the same body; the same key with another body is a 422; a retry
//! while the first is still being handled is a 409; a missing key is a 400.
//!
//! The response is recorded in the same transaction as the effect
//! ([`Claim::complete`]), so either both happened or neither did: a crash in
//! between leaves an in-flight claim that a retry takes over once it is older
//! than any request can run.
//!
//! A service that uses this adds [`SCHEMA`] to its migrations.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::to_micros;
use crate::db::{Db, Tx};
use crate::http::{parse_json, Json};
use crate::problem::ApiError;

/// The table, for a service's own migrations.
pub const SCHEMA: &str = "CREATE TABLE idempotency_keys (\
    scope TEXT NOT NULL, \
    idem_key TEXT NOT NULL, \
    fingerprint TEXT NOT NULL, \
    status BIGINT, \
    body TEXT, \
    created_at BIGINT NOT NULL, \
    PRIMARY KEY (scope, idem_key)); \
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);";

/// The request header.
pub static HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// Set on a replayed response.
pub static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a completed response is kept and replayed.
pub fn retention() -> Duration {
    Duration::hours(24)
}

/// After this long an unfinished claim belongs to a request that can no
/// longer be running (requests time out well before), so a retry may take it.
pub fn abandoned_after() -> Duration {
    Duration::minutes(2)
}

/// A JSON body sent with an `Idempotency-Key`, and the fingerprint of the
/// request that a retry must match.
#[derive(Debug, Clone)]
pub struct Idempotent<T> {
    pub key: String,
    pub fingerprint: String,
    pub body: T,
}

impl<S, T> FromRequest<S> for Idempotent<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let key = req
            .headers()
            .get(&HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        if key.is_empty() {
            return Err(ApiError::BadRequest(
                "this request moves money or creates a record: send an Idempotency-Key header"
                    .into(),
            ));
        }
        if key.len() > 255 {
            return Err(ApiError::BadRequest(
                "the Idempotency-Key header must be at most 255 characters".into(),
            ));
        }
        let route = format!("{} {}", req.method(), req.uri().path());
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        // serde_json's maps are ordered, so key order and spacing do not matter.
        let canonical = serde_json::to_vec(&value).map_err(ApiError::internal)?;
        let mut hash = Sha256::new();
        hash.update(route.as_bytes());
        hash.update([0]);
        hash.update(&canonical);
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let body = parse_json(&canonical)?;
        Ok(Idempotent {
            key,
            fingerprint,
            body,
        })
    }
}

/// What claiming a key found.
#[derive(Debug)]
pub enum Outcome {
    /// First time: handle the request, then [`Claim::complete`] it in the
    /// effect's transaction (or [`Claim::release`] it on failure).
    Fresh(Claim),
    /// Seen and finished before: answer this.
    Replay(Response),
}

/// A key this request holds.
#[derive(Debug, Clone)]
pub struct Claim {
    scope: String,
    key: String,
}

/// Claims `key` for `scope` (the caller), or finds what became of it.
pub async fn claim<T>(
    db: &Db,
    scope: &str,
    request: &Idempotent<T>,
    now: DateTime<Utc>,
) -> Result<Outcome, ApiError> {
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idem_key) DO NOTHING",
        )
        .bind(scope)
        .bind(&request.key)
        .bind(&request.fingerprint)
        .bind(to_micros(now))
        .execute(db.writer())
        .await?;
        let claim = Claim {
            scope: scope.to_owned(),
            key: request.key.clone(),
        };
        if inserted.rows_affected() == 1 {
            return Ok(Outcome::Fresh(claim));
        }
        let Some(row) = sqlx::query(
            "SELECT fingerprint, status, body, created_at FROM idempotency_keys \
             WHERE scope = $1 AND idem_key = $2",
        )
        .bind(scope)
        .bind(&request.key)
        .fetch_optional(db.writer())
        .await?
        else {
            continue;
        };
        let created: i64 = row.try_get("created_at")?;
        let status: Option<i64> = row.try_get("status")?;
        let stale = match status {
            Some(_) => created < to_micros(now - retention()),
            None => created < to_micros(now - abandoned_after()),
        };
        if stale {
            // Expired, or abandoned by a request that can no longer finish: start over.
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND created_at = $3",
            )
            .bind(scope)
            .bind(&request.key)
            .bind(created)
            .execute(db.writer())
            .await?;
            continue;
        }
        let fingerprint: String = row.try_get("fingerprint")?;
        if fingerprint != request.fingerprint {
            return Err(ApiError::field(
                "Idempotency-Key",
                "was already used with a different request; use a new key for a new request",
            ));
        }
        let Some(status) = status else {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being handled; retry shortly".into(),
            ));
        };
        let body: String = row
            .try_get::<Option<String>, _>("body")?
            .unwrap_or_default();
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        response
            .headers_mut()
            .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
        return Ok(Outcome::Replay(response));
    }
    Err(ApiError::Conflict(
        "the Idempotency-Key is being reused concurrently; retry shortly".into(),
    ))
}

impl Claim {
    /// Records the response inside the transaction that makes the effect.
    pub async fn complete<B: Serialize>(
        &self,
        tx: &mut Tx,
        status: StatusCode,
        body: &B,
    ) -> Result<(), ApiError> {
        let text = serde_json::to_string(body).map_err(ApiError::internal)?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE scope = $3 AND idem_key = $4",
        )
        .bind(i64::from(status.as_u16()))
        .bind(text)
        .bind(&self.scope)
        .bind(&self.key)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Gives the key up after a failure that changed nothing, so a corrected
    /// retry with the same key is handled afresh.
    pub async fn release(&self, db: &Db) {
        let result = sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND status IS NULL",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .execute(db.writer())
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not release an idempotency key; it lapses on its own");
        }
    }
}

/// Deletes keys past their retention; returns how many.
pub async fn purge(db: &Db, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(to_micros(now - retention() - abandoned_after()))
        .execute(db.writer())
        .await?;
    Ok(done.rows_affected())
}
