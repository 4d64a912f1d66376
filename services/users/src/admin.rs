//! Operator tasks run from the command line: the first admin, demo accounts,
//! and re-encryption after a key rotation.

use miliki_events::service::ServiceDeps;
use miliki_platform::auth::{Password, Role};
use miliki_platform::contact::{EmailAddress, PhoneNumber};
use miliki_platform::crypto::Keyring;
use miliki_platform::db::Db;
use miliki_platform::problem::Validator;
use miliki_platform::ApiError;
use sqlx::Row;
use uuid::Uuid;

use crate::api::auth::{create_account, parse_new_user, AccountFields};
use crate::state::AppState;
use crate::store;

/// Creates an account with any role, as `miliki admin create` does.
pub async fn create_user(
    deps: &ServiceDeps,
    name: &str,
    phone: &str,
    email: Option<&str>,
    password: &str,
    role: Role,
    onboarded_by: Option<Uuid>,
) -> Result<Uuid, ApiError> {
    let state = AppState::new(deps.clone());
    let (name, phone, email, password) = (
        Some(name.to_owned()),
        Some(phone.to_owned()),
        email.map(str::to_owned),
        Some(password.to_owned()),
    );
    let mut user = parse_new_user(
        &state,
        AccountFields {
            name: &name,
            phone: &phone,
            email: &email,
            password: &password,
        },
        role,
        onboarded_by,
        Validator::new(),
    )
    .await?;
    // The operator typing the account in vouches for its phone.
    user.phone_vouched = true;
    create_account(&state, &user).await
}

/// A demo account and how to log in as it.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub role: Role,
    pub name: &'static str,
    pub phone: &'static str,
    pub email: &'static str,
    pub password: &'static str,
}

/// The demo cast. The passwords are public on purpose: demo data only.
pub const DEMO_ACCOUNTS: &[DemoAccount] = &[
    DemoAccount {
        role: Role::Admin,
        name: "Amina Wanjiku (admin)",
        phone: "+254700000001",
        email: "admin@demo.miliki.dev",
        password: "demo-admin-2026",
    },
    DemoAccount {
        role: Role::Agent,
        name: "Brian Otieno (agent)",
        phone: "+254700000002",
        email: "agent@demo.miliki.dev",
        password: "demo-agent-2026",
    },
    DemoAccount {
        role: Role::Customer,
        name: "Chebet Kiprono",
        phone: "+254700000003",
        email: "chebet@demo.miliki.dev",
        password: "demo-customer-2026",
    },
    DemoAccount {
        role: Role::Customer,
        name: "David Mwangi",
        phone: "+254700000004",
        email: "david@demo.miliki.dev",
        password: "demo-customer-2026",
    },
];

/// Creates the demo accounts that do not exist yet; seeding twice changes nothing.
/// Customers are onboarded by the demo agent. Returns how many were created.
pub async fn seed_demo(deps: &ServiceDeps) -> Result<usize, ApiError> {
    let mut created = 0;
    let mut agent = None;
    for account in DEMO_ACCOUNTS {
        let phone = PhoneNumber::parse(account.phone, "KE")
            .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
        let existing = store::find_by_index(
            &deps.db,
            &deps.keyring,
            "phone_index",
            &store::phone_indexes(&deps.keyring, &phone),
        )
        .await?;
        let id = match existing {
            Some(user) => user.id,
            None => {
                let onboarded_by = if account.role == Role::Customer {
                    agent
                } else {
                    None
                };
                created += 1;
                create_user(
                    deps,
                    account.name,
                    account.phone,
                    Some(account.email),
                    account.password,
                    account.role,
                    onboarded_by,
                )
                .await?
            }
        };
        if account.role == Role::Agent {
            agent = Some(id);
        }
    }
    Ok(created)
}

/// Checks that `password` meets the policy, for CLI prompts.
pub fn check_password(password: &str) -> Result<(), String> {
    Password::parse(password).map(|_| ())
}

/// Checks an email for CLI input.
pub fn check_email(email: &str) -> Result<(), String> {
    EmailAddress::parse(email).map(|_| ())
}

/// Re-encrypts, under the keyring's active key, every field sealed under an
/// older key. Rows are rewritten one at a time and only if unchanged since
/// read, so the service keeps running throughout. Returns fields rewritten.
pub async fn reencrypt_all(db: &Db, keys: &Keyring) -> anyhow::Result<u64> {
    let mut rewritten = 0;
    for (table, key_column, column, field) in [
        ("users", "id", "phone_enc", store::PHONE),
        ("users", "id", "email_enc", store::EMAIL),
        (
            "kyc_submissions",
            "id",
            "document_number_enc",
            store::DOCUMENT_NUMBER,
        ),
    ] {
        rewritten += reencrypt_column(db, keys, table, &[key_column], column, field).await?;
    }
    rewritten += reencrypt_column(
        db,
        keys,
        "kyc_documents",
        &["submission_id", "side"],
        "data_enc",
        store::DOCUMENT_IMAGE,
    )
    .await?;
    Ok(rewritten)
}

async fn reencrypt_column(
    db: &Db,
    keys: &Keyring,
    table: &str,
    key_columns: &[&str],
    column: &str,
    field: &str,
) -> anyhow::Result<u64> {
    let select = format!(
        "SELECT {}, {column} FROM {table} WHERE {column} IS NOT NULL",
        key_columns.join(", ")
    );
    let rows = sqlx::query(&select).fetch_all(db.reader()).await?;
    let mut rewritten = 0;
    for row in rows {
        let old: Vec<u8> = row.try_get(column)?;
        if !keys.needs_rotation(&old) {
            continue;
        }
        let plain = keys.decrypt(field, &old)?;
        let new = keys.encrypt(field, &plain);
        let conditions: Vec<String> = key_columns
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 3))
            .collect();
        let update = format!(
            "UPDATE {table} SET {column} = $1 WHERE {column} = $2 AND {}",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(&update).bind(new).bind(old);
        for k in key_columns {
            query = query.bind(row.try_get::<String, _>(*k)?);
        }
        rewritten += query.execute(db.writer()).await?.rows_affected();
    }
    Ok(rewritten)
}

/// Re-indexes, under the active blind-index key, the phone and email of
/// accounts indexed under an older key, at most `limit` of them (none: all).
/// Each row is rewritten on its own and only if no one re-indexed it
/// meanwhile, so the service keeps serving and replicas can run this at
/// once; lookups try every key held, so a half-done run finds everyone.
/// Returns the rows re-indexed.
pub async fn reindex_contacts(db: &Db, keys: &Keyring, limit: Option<u32>) -> anyhow::Result<u64> {
    let active = keys.active_blind_key_id();
    let sql = match limit {
        Some(n) => format!(
            "SELECT id, phone_enc, email_enc, blind_key FROM users WHERE blind_key <> $1 ORDER BY id LIMIT {n}"
        ),
        None => "SELECT id, phone_enc, email_enc, blind_key FROM users WHERE blind_key <> $1 ORDER BY id".to_owned(),
    };
    let rows = sqlx::query(&sql)
        .bind(&active)
        .fetch_all(db.reader())
        .await?;
    let mut reindexed = 0;
    for row in rows {
        let id: String = row.try_get("id")?;
        let old_key: String = row.try_get("blind_key")?;
        let phone: Vec<u8> = row.try_get("phone_enc")?;
        let email: Option<Vec<u8>> = row.try_get("email_enc")?;
        let phone = keys.decrypt_string(store::PHONE, &phone)?;
        let email = email
            .map(|e| keys.decrypt_string(store::EMAIL, &e))
            .transpose()?;
        // Stored values are already normalised (E.164, lower-case email).
        let phone_index = keys.blind_index(store::PHONE, &phone);
        let email_index = email.map(|e| keys.blind_index(store::EMAIL, &e));
        reindexed += sqlx::query(
            "UPDATE users SET phone_index = $1, email_index = $2, blind_key = $3 \
             WHERE id = $4 AND blind_key = $5",
        )
        .bind(phone_index)
        .bind(email_index)
        .bind(&active)
        .bind(&id)
        .bind(&old_key)
        .execute(db.writer())
        .await?
        .rows_affected();
    }
    Ok(reindexed)
}

/// How many accounts are indexed under each blind-index key.
pub async fn blind_key_usage(db: &Db) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT blind_key, COUNT(*) AS n FROM users GROUP BY blind_key ORDER BY blind_key",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("blind_key")?, r.try_get("n")?)))
        .collect()
}

/// Re-indexes in the background, a batch per tick, after re-reading the key
/// file (how a running server learns of a rotation made by `miliki keys
/// rotate-blind`): rows written by a process that had not heard of the new
/// key yet are caught up too.
pub async fn reindex_in_background(
    db: Db,
    keys: std::sync::Arc<Keyring>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = keys.reload() {
            tracing::warn!(error = %e, "re-reading the key file failed");
        }
        match reindex_contacts(&db, &keys, Some(500)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                rows = n,
                key = %keys.active_blind_key_id(),
                "re-indexed contacts under the active blind key"
            ),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "re-indexing contacts failed"),
        }
    }
}
