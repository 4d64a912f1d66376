use base64::Engine;
use miliki_platform::auth::{Role, Tokens};
use miliki_platform::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

use crate::common::*;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[tokio::test]
async fn expired_forged_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    let (status, _) = app.get("/api/v1/users/me", Some(&me.token)).await;
    assert_eq!(status, StatusCode::OK);

    let claims_of = |token: &str| -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let mut claims = claims_of(&me.token);

    // alg=none with the same claims.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    // Claims edited to admin, old signature kept.
    claims["role"] = json!("admin");
    let parts: Vec<&str> = me.token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    // Signed with someone else's secret.
    let forged = Tokens::new(
        b"an-attacker-secret-of-32-bytes!!",
        "miliki",
        "miliki-api",
        900,
        Arc::new(SystemClock),
    )
    .issue(me.id, Role::Admin, 0)
    .unwrap()
    .token;
    for (what, token) in [
        ("alg=none", none.as_str()),
        ("tampered", tampered.as_str()),
        ("forged", forged.as_str()),
        ("garbage", "abc.def.ghi"),
    ] {
        let (status, body) = app.get("/api/v1/users/me", Some(token)).await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(!body.to_string().contains("admin\":true"), "{what}");
    }
    let resp = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("authorization", format!("Basic {}", b64(b"a:b")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"miliki\""
    );

    // Expiry follows the injected clock.
    app.clock.advance(chrono::Duration::minutes(16));
    let (status, body) = app.get("/api/v1/users/me", Some(&me.token)).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    app.stop().await;
}

const SECRET_PHONE: &str = "+254733123987";
const SECRET_EMAIL: &str = "wambui.secret@example.org";
const SECRET_DOCUMENT: &str = "87654321";

async fn seed_personal_data(app: &TestApp) -> String {
    let (status, _) = app
        .post("/api/v1/auth/register", None, json!({"name": "Wambui Kariuki", "phone": SECRET_PHONE, "email": SECRET_EMAIL, "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = app.login(SECRET_PHONE, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app
        .submit_kyc(&token, kyc_form("national_id", SECRET_DOCUMENT, None))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    token
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn personal_data_is_not_stored_in_plaintext() {
    let app = TestApp::spawn().await;
    seed_personal_data(&app).await;
    let db = &app.users().db;

    // Every column of every row, as the database hands it out.
    for table in [
        "users",
        "kyc_submissions",
        "kyc_documents",
        "outbox",
        "user_status_history",
        "kyc_history",
    ] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(db.reader())
            .await
            .unwrap();
        for row in rows {
            use sqlx::{Column, Row};
            for column in row.columns() {
                let raw: Option<Vec<u8>> = row
                    .try_get::<Option<Vec<u8>>, _>(column.ordinal())
                    .ok()
                    .flatten()
                    .or_else(|| {
                        row.try_get::<Option<String>, _>(column.ordinal())
                            .ok()
                            .flatten()
                            .map(String::into_bytes)
                    });
                if let Some(raw) = raw {
                    for secret in [SECRET_PHONE, "733123987", SECRET_EMAIL, SECRET_DOCUMENT] {
                        assert!(
                            !contains(&raw, secret),
                            "{table}.{} holds {secret} in plaintext",
                            column.name()
                        );
                    }
                }
            }
        }
    }

    // And, on SQLite, the files themselves (database and write-ahead log).
    if postgres_url().is_none() {
        let mut checked = 0;
        for entry in std::fs::read_dir(app.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("users.db") {
                let bytes = std::fs::read(&path).unwrap();
                for secret in [SECRET_PHONE, "733123987", SECRET_EMAIL, SECRET_DOCUMENT] {
                    assert!(
                        !contains(&bytes, secret),
                        "{name} holds {secret} in plaintext"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 1);
    }
    app.stop().await;
}

#[tokio::test]
async fn key_rotation_reencrypts_everything_and_keeps_it_readable_while_serving() {
    let app = TestApp::spawn().await;
    let token = seed_personal_data(&app).await;
    let secrets_file = app.dir.path().join("secrets.toml");
    let before = std::fs::read_to_string(&secrets_file).unwrap();
    assert!(before.contains("active_key = \"k1\""), "{before}");

    // Rotate with the real command, against the live app's data.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_miliki"));
    cmd.args([
        "--data-dir",
        app.dir.path().to_str().unwrap(),
        "keys",
        "rotate",
    ]);
    if let Some(url) = app
        .runtime()
        .kernel
        .settings
        .extra
        .get("users_database_url")
    {
        cmd.env("MILIKI_USERS_DATABASE_URL", url.as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("added key k2"), "{stdout}");

    // Every ciphertext now names k2.
    let db = &app.users().db;
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT phone_enc FROM users UNION ALL SELECT document_number_enc FROM kyc_submissions UNION ALL SELECT data_enc FROM kyc_documents")
        .fetch_all(db.reader())
        .await
        .unwrap();
    assert!(blobs.len() >= 5);
    for blob in &blobs {
        assert_eq!(&blob[2..4], b"k2", "not re-encrypted");
    }

    // The running server, which started with only k1, still reads everything.
    let (status, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["phone"], SECRET_PHONE);
    assert_eq!(me["email"], SECRET_EMAIL);
    app.login(SECRET_EMAIL, PASSWORD).await;
    let (_, list) = app.get("/api/v1/kyc/submissions", Some(&token)).await;
    let id = list["items"][0]["id"].as_str().unwrap();
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/kyc/submissions/{id}/documents/selfie")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png());
    // New data is written under the new key.
    let (status, _) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"name": "After Rotation", "phone": unique_phone(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}
