//! The users service's SQL. Rows come back as records with personal fields
//! already decrypted; nothing outside this module sees a ciphertext.

use chrono::{DateTime, Utc};
use miliki_platform::auth::Role;
use miliki_platform::clock::to_micros;
use miliki_platform::contact::{EmailAddress, PhoneNumber};
use miliki_platform::crypto::Keyring;
use miliki_platform::db::{is_unique_violation, like_escape, Db, FilteredQuery, RowExt, Tx};
use miliki_platform::ApiError;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{DocumentSide, DocumentType, KycStatus, UserStatus};

pub const PHONE: &str = "users.phone";
pub const EMAIL: &str = "users.email";
pub const DOCUMENT_NUMBER: &str = "kyc.document_number";
pub const DOCUMENT_IMAGE: &str = "kyc.document_image";

/// An account as stored, personal fields decrypted.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    pub phone: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub onboarded_by: Option<Uuid>,
    pub auth_version: i64,
    pub kyc_status: String,
    pub created_at: DateTime<Utc>,
    pub phone_verified: bool,
    /// Since when an unverified phone has been waiting (its grace runs from here).
    pub phone_unverified_since: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str =
    "id, name, role, status, phone_enc, email_enc, password_hash, onboarded_by, \
                            auth_version, kyc_status, created_at, phone_verified_at, phone_unverified_since";

impl UserRecord {
    fn from_row(row: &AnyRow, keys: &Keyring) -> Result<Self, ApiError> {
        let phone: Vec<u8> = row.try_get("phone_enc")?;
        let email: Option<Vec<u8>> = row.try_get("email_enc")?;
        Ok(Self {
            id: row.uuid("id")?,
            name: row.try_get("name")?,
            role: row.parsed("role")?,
            status: row.parsed("status")?,
            phone: keys
                .decrypt_string(PHONE, &phone)
                .map_err(ApiError::internal)?,
            email: email
                .map(|e| keys.decrypt_string(EMAIL, &e))
                .transpose()
                .map_err(ApiError::internal)?,
            password_hash: row.try_get("password_hash")?,
            onboarded_by: row.opt_uuid("onboarded_by")?,
            auth_version: row.try_get("auth_version")?,
            kyc_status: row.try_get("kyc_status")?,
            created_at: row.time("created_at")?,
            phone_verified: row.opt_time("phone_verified_at")?.is_some(),
            phone_unverified_since: row.opt_time("phone_unverified_since")?,
        })
    }
}

/// A validated account about to be created.
#[derive(Debug)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub phone: PhoneNumber,
    pub email: Option<EmailAddress>,
    pub password_hash: String,
    pub onboarded_by: Option<Uuid>,
    /// The operator creating the account vouches for its phone; otherwise a
    /// code is sent to it.
    pub phone_vouched: bool,
}

/// The phone's blind index under the active blind key (what a new row stores).
pub fn phone_index(keys: &Keyring, phone: &PhoneNumber) -> String {
    keys.blind_index(PHONE, phone.as_str())
}

pub fn email_index(keys: &Keyring, email: &EmailAddress) -> String {
    keys.blind_index(EMAIL, email.as_str())
}

/// The phone's blind index under every blind key held, the active one's
/// first: what a lookup matches, so rows not yet re-indexed are found too.
pub fn phone_indexes(keys: &Keyring, phone: &PhoneNumber) -> Vec<String> {
    keys.blind_indexes(PHONE, phone.as_str())
}

pub fn email_indexes(keys: &Keyring, email: &EmailAddress) -> Vec<String> {
    keys.blind_indexes(EMAIL, email.as_str())
}

/// `$first, $first+1, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The id of an account whose `column` matches one of `indexes`.
async fn id_by_indexes<'e, E>(
    executor: E,
    column: &'static str,
    indexes: &[String],
) -> Result<Option<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    debug_assert!(column == "phone_index" || column == "email_index");
    if indexes.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT id FROM users WHERE {column} IN ({}) LIMIT 1",
        placeholders(1, indexes.len())
    );
    let mut query = sqlx::query_scalar(&sql);
    for index in indexes {
        query = query.bind(index);
    }
    query.fetch_optional(executor).await
}

/// Inserts an account; a phone or email already in use is a 409.
pub async fn insert_user(
    tx: &mut Tx,
    keys: &Keyring,
    user: &NewUser,
    now: DateTime<Utc>,
) -> Result<Uuid, ApiError> {
    // The unique columns catch a duplicate under the active blind key; one
    // indexed under an older key (not yet re-indexed) is caught here. A row
    // re-indexed meanwhile has the active key's index, which the insert meets.
    let older = |all: Vec<String>| all.into_iter().skip(1).collect::<Vec<_>>();
    if id_by_indexes(
        &mut **tx,
        "phone_index",
        &older(phone_indexes(keys, &user.phone)),
    )
    .await?
    .is_some()
    {
        return Err(ApiError::Conflict(
            "an account with this phone already exists".into(),
        ));
    }
    if let Some(email) = &user.email {
        if id_by_indexes(&mut **tx, "email_index", &older(email_indexes(keys, email)))
            .await?
            .is_some()
        {
            return Err(ApiError::Conflict(
                "an account with this email already exists".into(),
            ));
        }
    }
    let id = miliki_platform::id::new_id();
    let result = sqlx::query(
        "INSERT INTO users (id, name, name_search, role, status, phone_enc, phone_index, email_enc, \
         email_index, password_hash, onboarded_by, created_at, updated_at, blind_key, \
         phone_verified_at, phone_unverified_since) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)",
    )
    .bind(id.to_string())
    .bind(&user.name)
    .bind(user.name.to_lowercase())
    .bind(user.role.as_str())
    .bind(keys.encrypt_str(PHONE, user.phone.as_str()))
    .bind(phone_index(keys, &user.phone))
    .bind(user.email.as_ref().map(|e| keys.encrypt_str(EMAIL, e.as_str())))
    .bind(user.email.as_ref().map(|e| email_index(keys, e)))
    .bind(&user.password_hash)
    .bind(user.onboarded_by.map(|u| u.to_string()))
    .bind(to_micros(now))
    .bind(keys.active_blind_key_id())
    .bind(user.phone_vouched.then(|| to_micros(now)))
    .bind((!user.phone_vouched).then(|| to_micros(now)))
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(id),
        Err(e) if is_unique_violation(&e) => {
            let which = if e.to_string().contains("email") {
                "email"
            } else {
                "phone"
            };
            Err(ApiError::Conflict(format!(
                "an account with this {which} already exists"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives account `id` a new, unverified phone; one in use elsewhere is a 409.
pub async fn change_phone(
    tx: &mut Tx,
    keys: &Keyring,
    id: Uuid,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    // As in `insert_user`: the unique column meets the active key's index,
    // this an account still indexed under an older key. The row keeps its
    // `blind_key`: lookups try every key, and the re-indexer rewrites both.
    let older: Vec<String> = phone_indexes(keys, phone).into_iter().skip(1).collect();
    if id_by_indexes(&mut **tx, "phone_index", &older)
        .await?
        .is_some_and(|other| other != id.to_string())
    {
        return Err(ApiError::Conflict(
            "an account with this phone already exists".into(),
        ));
    }
    let result = sqlx::query(
        "UPDATE users SET phone_enc = $2, phone_index = $3, phone_verified_at = NULL, \
         phone_unverified_since = $4, updated_at = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(keys.encrypt_str(PHONE, phone.as_str()))
    .bind(phone_index(keys, phone))
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(ApiError::Conflict(
            "an account with this phone already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whether an account uses this phone or email already.
pub async fn contact_in_use(
    db: &Db,
    keys: &Keyring,
    phone: &PhoneNumber,
    email: Option<&EmailAddress>,
) -> Result<Option<&'static str>, ApiError> {
    let phone_taken =
        id_by_indexes(db.reader(), "phone_index", &phone_indexes(keys, phone)).await?;
    if phone_taken.is_some() {
        return Ok(Some("phone"));
    }
    if let Some(email) = email {
        let email_taken =
            id_by_indexes(db.reader(), "email_index", &email_indexes(keys, email)).await?;
        if email_taken.is_some() {
            return Ok(Some("email"));
        }
    }
    Ok(None)
}

pub async fn find_user(db: &Db, keys: &Keyring, id: Uuid) -> Result<Option<UserRecord>, ApiError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(db.reader())
        .await?;
    row.map(|r| UserRecord::from_row(&r, keys)).transpose()
}

/// Finds an account by the blind indexes of its phone or email (one per
/// blind key held: see [`phone_indexes`]).
pub async fn find_by_index(
    db: &Db,
    keys: &Keyring,
    column: &'static str,
    indexes: &[String],
) -> Result<Option<UserRecord>, ApiError> {
    debug_assert!(column == "phone_index" || column == "email_index");
    if indexes.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {column} IN ({}) LIMIT 1",
        placeholders(1, indexes.len())
    );
    let mut query = sqlx::query(&sql);
    for index in indexes {
        query = query.bind(index);
    }
    let row = query.fetch_optional(db.reader()).await?;
    row.map(|r| UserRecord::from_row(&r, keys)).transpose()
}

/// What a list of users is narrowed to.
#[derive(Debug, Default)]
pub struct UserFilter {
    /// Only customers this agent onboarded.
    pub onboarded_by: Option<Uuid>,
    pub role: Option<Role>,
    /// Lower-cased name fragment.
    pub name_contains: Option<String>,
    /// The phone's blind indexes under every key held.
    pub phone_indexes: Option<Vec<String>>,
    /// Ids below this one (the list runs newest first).
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list_users(
    db: &Db,
    keys: &Keyring,
    filter: &UserFilter,
) -> Result<Vec<UserRecord>, ApiError> {
    let mut query = FilteredQuery::new(&format!("SELECT {USER_COLUMNS} FROM users"));
    if let Some(agent) = filter.onboarded_by {
        query.and("onboarded_by = ?", agent.to_string());
    }
    if let Some(role) = filter.role {
        query.and("role = ?", role.as_str());
    }
    if let Some(fragment) = &filter.name_contains {
        query.and(
            "name_search LIKE ? ESCAPE '\\'",
            format!("%{}%", like_escape(fragment)),
        );
    }
    if let Some(indexes) = &filter.phone_indexes {
        query.and_in("phone_index", indexes);
    }
    if let Some(before) = filter.before {
        query.and("id < ?", before.to_string());
    }
    query.push(&format!(" ORDER BY id DESC LIMIT {}", filter.limit + 1));
    let rows = query.fetch_all(db.reader()).await?;
    rows.iter().map(|r| UserRecord::from_row(r, keys)).collect()
}

/// Sets an account's status, bumps its credential version (so its access
/// tokens stop working) and revokes its refresh tokens.
pub async fn set_status(
    tx: &mut Tx,
    user: Uuid,
    status: UserStatus,
    actor: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE users SET status = $1, auth_version = auth_version + 1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(to_micros(now))
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(to_micros(now))
    .bind(user.to_string())
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO user_status_history (id, user_id, status, actor_id, reason, at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(miliki_platform::id::new_id().to_string())
        .bind(user.to_string())
        .bind(status.as_str())
        .bind(actor.to_string())
        .bind(reason)
        .bind(to_micros(now))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A stored refresh token.
#[derive(Debug)]
pub struct RefreshRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
    pub revoked: bool,
}

pub async fn insert_refresh(
    tx: &mut Tx,
    family: Uuid,
    user: Uuid,
    hash: &str,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(family.to_string())
    .bind(user.to_string())
    .bind(hash)
    .bind(to_micros(now))
    .bind(to_micros(expires))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_refresh(tx: &mut Tx, hash: &str) -> Result<Option<RefreshRecord>, ApiError> {
    let row = sqlx::query("SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(RefreshRecord {
        id: row.uuid("id")?,
        family_id: row.uuid("family_id")?,
        user_id: row.uuid("user_id")?,
        expires_at: row.time("expires_at")?,
        used: row.opt_time("used_at")?.is_some(),
        revoked: row.opt_time("revoked_at")?.is_some(),
    }))
}

/// Marks a token used; false if another request used it first.
pub async fn use_refresh(tx: &mut Tx, id: Uuid, now: DateTime<Utc>) -> Result<bool, ApiError> {
    let done = sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL")
        .bind(to_micros(now))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_family(tx: &mut Tx, family: Uuid, now: DateTime<Utc>) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(to_micros(now))
    .bind(family.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A KYC submission as stored.
#[derive(Debug, Clone)]
pub struct SubmissionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub submitted_by: Uuid,
    pub document_type: DocumentType,
    pub document_number: String,
    pub status: KycStatus,
    pub reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SUBMISSION_COLUMNS: &str =
    "id, user_id, submitted_by, document_type, document_number_enc, status, reason, \
                                  reviewed_by, created_at, updated_at";

impl SubmissionRecord {
    fn from_row(row: &AnyRow, keys: &Keyring) -> Result<Self, ApiError> {
        let number: Vec<u8> = row.try_get("document_number_enc")?;
        Ok(Self {
            id: row.uuid("id")?,
            user_id: row.uuid("user_id")?,
            submitted_by: row.uuid("submitted_by")?,
            document_type: row.parsed("document_type")?,
            document_number: keys
                .decrypt_string(DOCUMENT_NUMBER, &number)
                .map_err(ApiError::internal)?,
            status: row.parsed("status")?,
            reason: row.try_get("reason")?,
            reviewed_by: row.opt_uuid("reviewed_by")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
        })
    }
}

/// A document image, still encrypted.
pub struct NewDocument {
    pub side: DocumentSide,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

pub struct NewSubmission<'a> {
    pub user_id: Uuid,
    pub submitted_by: Uuid,
    pub document_type: DocumentType,
    pub document_number: &'a str,
    pub documents: &'a [NewDocument],
}

pub async fn insert_submission(
    tx: &mut Tx,
    keys: &Keyring,
    s: &NewSubmission<'_>,
    now: DateTime<Utc>,
) -> Result<Uuid, ApiError> {
    let id = miliki_platform::id::new_id();
    let inserted = sqlx::query(&format!(
        "INSERT INTO kyc_submissions ({SUBMISSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'pending', NULL, NULL, $6, $6)"
    ))
    .bind(id.to_string())
    .bind(s.user_id.to_string())
    .bind(s.submitted_by.to_string())
    .bind(s.document_type.as_str())
    .bind(keys.encrypt_str(DOCUMENT_NUMBER, s.document_number))
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict(
                "a submission is already awaiting review".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    for doc in s.documents {
        sqlx::query("INSERT INTO kyc_documents (submission_id, side, content_type, size_bytes, data_enc) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.to_string())
            .bind(doc.side.as_str())
            .bind(doc.content_type)
            .bind(doc.bytes.len() as i64)
            .bind(keys.encrypt(DOCUMENT_IMAGE, &doc.bytes))
            .execute(&mut **tx)
            .await?;
    }
    record_kyc_state(
        tx,
        id,
        s.user_id,
        KycStatus::Pending,
        s.submitted_by,
        None,
        now,
    )
    .await?;
    Ok(id)
}

/// Records a submission's new state in its history and on the account.
pub async fn record_kyc_state(
    tx: &mut Tx,
    submission: Uuid,
    user: Uuid,
    status: KycStatus,
    actor: Uuid,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO kyc_history (id, submission_id, status, actor_id, reason, at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(miliki_platform::id::new_id().to_string())
        .bind(submission.to_string())
        .bind(status.as_str())
        .bind(actor.to_string())
        .bind(reason)
        .bind(to_micros(now))
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE users SET kyc_status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(to_micros(now))
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves a pending submission to its decided state; false if it was not pending any more.
pub async fn decide_submission(
    tx: &mut Tx,
    id: Uuid,
    status: KycStatus,
    reviewer: Uuid,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let done = sqlx::query("UPDATE kyc_submissions SET status = $1, reason = $2, reviewed_by = $3, updated_at = $4 WHERE id = $5 AND status = 'pending'")
        .bind(status.as_str())
        .bind(reason)
        .bind(reviewer.to_string())
        .bind(to_micros(now))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find_submission(
    db: &Db,
    keys: &Keyring,
    id: Uuid,
) -> Result<Option<SubmissionRecord>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM kyc_submissions WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| SubmissionRecord::from_row(&r, keys))
        .transpose()
}

/// The latest submission's status for a customer.
pub async fn latest_status(tx: &mut Tx, user: Uuid) -> Result<Option<KycStatus>, ApiError> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM kyc_submissions WHERE user_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(user.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    status
        .map(|s| {
            s.parse::<KycStatus>()
                .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))
        })
        .transpose()
}

#[derive(Debug, Default)]
pub struct SubmissionFilter {
    pub user_id: Option<Uuid>,
    /// Only submissions of customers this agent onboarded.
    pub onboarded_by: Option<Uuid>,
    pub status: Option<KycStatus>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list_submissions(
    db: &Db,
    keys: &Keyring,
    f: &SubmissionFilter,
) -> Result<Vec<SubmissionRecord>, ApiError> {
    let mut query =
        FilteredQuery::new(&format!("SELECT {SUBMISSION_COLUMNS} FROM kyc_submissions"));
    if let Some(user) = f.user_id {
        query.and("user_id = ?", user.to_string());
    }
    if let Some(agent) = f.onboarded_by {
        query.and(
            "user_id IN (SELECT id FROM users WHERE onboarded_by = ?)",
            agent.to_string(),
        );
    }
    if let Some(status) = f.status {
        query.and("status = ?", status.as_str());
    }
    if let Some(before) = f.before {
        query.and("id < ?", before.to_string());
    }
    query.push(&format!(" ORDER BY id DESC LIMIT {}", f.limit + 1));
    let rows = query.fetch_all(db.reader()).await?;
    rows.iter()
        .map(|r| SubmissionRecord::from_row(r, keys))
        .collect()
}

/// The documents of a submission, without their bytes.
pub async fn document_list(
    db: &Db,
    submission: Uuid,
) -> Result<Vec<(String, String, i64)>, ApiError> {
    let rows = sqlx::query("SELECT side, content_type, size_bytes FROM kyc_documents WHERE submission_id = $1 ORDER BY side")
        .bind(submission.to_string())
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("side")?,
                r.try_get("content_type")?,
                r.try_get("size_bytes")?,
            ))
        })
        .collect()
}

/// One document's content type and decrypted bytes.
pub async fn document(
    db: &Db,
    keys: &Keyring,
    submission: Uuid,
    side: DocumentSide,
) -> Result<Option<(String, Vec<u8>)>, ApiError> {
    let row = sqlx::query(
        "SELECT content_type, data_enc FROM kyc_documents WHERE submission_id = $1 AND side = $2",
    )
    .bind(submission.to_string())
    .bind(side.as_str())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let data: Vec<u8> = row.try_get("data_enc")?;
    let bytes = keys
        .decrypt(DOCUMENT_IMAGE, &data)
        .map_err(ApiError::internal)?;
    Ok(Some((row.try_get("content_type")?, bytes)))
}

/// One entry of a submission's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub status: String,
    pub actor_id: Uuid,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn history(db: &Db, submission: Uuid) -> Result<Vec<HistoryEntry>, ApiError> {
    let rows = sqlx::query(
        "SELECT status, actor_id, reason, at FROM kyc_history WHERE submission_id = $1 ORDER BY id",
    )
    .bind(submission.to_string())
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                status: r.try_get("status")?,
                actor_id: r.uuid("actor_id")?,
                reason: r.try_get("reason")?,
                at: r.time("at")?,
            })
        })
        .collect()
}
