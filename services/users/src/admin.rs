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
    let user = parse_new_user(
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
            &store::phone_index(&deps.keyring, &phone),
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
