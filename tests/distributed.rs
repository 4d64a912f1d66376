//! Distributed mode: the gateway and the users service as separate processes,
//! on PostgreSQL and RabbitMQ, configured for production the way an operator
//! would (secrets from the environment).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn secret(len: usize) -> String {
    let bytes: Vec<u8> = (0..len).map(|_| rand_byte()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn rand_byte() -> u8 {
    (Uuid::new_v4().as_u128() & 0xff) as u8
}

/// The environment every process of this deployment shares.
fn deployment_env(users_db: &str, amqp: &str, exchange: &str) -> Vec<(String, String)> {
    vec![
        ("MILIKI_ENV".into(), "production".into()),
        ("MILIKI_JWT_SECRET".into(), secret(48)),
        (
            "MILIKI_ENCRYPTION_KEYS".into(),
            format!("k1:{}", secret(32)),
        ),
        ("MILIKI_BLIND_INDEX_KEY".into(), secret(32)),
        ("MILIKI_USERS_DATABASE_URL".into(), users_db.into()),
        ("MILIKI_AMQP_URL".into(), amqp.into()),
        ("MILIKI_AMQP_EXCHANGE".into(), exchange.into()),
        ("MILIKI_LOG_FORMAT".into(), "json".into()),
    ]
}

fn start(args: &[&str], env: &[(String, String)], port: u16) -> Proc {
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_miliki"));
    cmd.arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().contains("Press Ctrl-C") {
            break;
        }
    }
    Proc(child)
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn gateway_and_users_as_separate_processes() {
    let (Some(pg), Some(amqp)) = (
        std::env::var("MILIKI_TEST_DATABASE_URL")
            .ok()
            .filter(|s| !s.is_empty()),
        std::env::var("MILIKI_TEST_AMQP_URL")
            .ok()
            .filter(|s| !s.is_empty()),
    ) else {
        eprintln!("SKIPPED: distributed::gateway_and_users_as_separate_processes needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL (set by .ci/run)");
        return;
    };
    let pg = pg.trim_end_matches('/').to_owned();
    let name = format!("miliki_test_{}", Uuid::now_v7().simple());
    let mut admin_conn = sqlx::PgConnection::connect(&format!("{pg}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let users_db = format!("{pg}/{name}");
    let exchange = format!("miliki.test.{}", Uuid::now_v7().simple());
    let mut env = deployment_env(&users_db, &amqp, &exchange);

    let users_port = free_port();
    let users = start(&["--only", "users"], &env, users_port);
    env.push((
        "MILIKI_USERS_URL".into(),
        format!("http://127.0.0.1:{users_port}"),
    ));
    let gateway_port = free_port();
    let _gateway = start(&["--only", "gateway"], &env, gateway_port);
    let base = format!("http://127.0.0.1:{gateway_port}");
    let client = reqwest::Client::new();

    // Both processes answer their own health checks; the service checks its database and the broker.
    let ready: Value = client
        .get(format!("http://127.0.0.1:{users_port}/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["users_database"], "ok", "{ready}");
    assert_eq!(ready["checks"]["event_bus"], "ok", "{ready}");

    // The first admin, created with the CLI against the same database.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_miliki"));
    cmd.args([
        "admin",
        "create",
        "--name",
        "Ops",
        "--phone",
        "0700111222",
        "--password",
        "operator-password-1",
    ]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Register, log in and submit KYC, all through the gateway.
    let phone = "+254722333444";
    let r = client.post(format!("{base}/api/v1/auth/register")).json(&json!({"name": "Distributed Customer", "phone": phone, "password": "customer-password-1"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let tokens: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": phone, "password": "customer-password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let jpeg = {
        let mut b = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ];
        b.extend([0u8; 32]);
        b
    };
    let form = reqwest::multipart::Form::new()
        .text("document_type", "passport")
        .text("document_number", "AK998877")
        .part(
            "front",
            reqwest::multipart::Part::bytes(jpeg.clone()).file_name("f.jpg"),
        )
        .part(
            "selfie",
            reqwest::multipart::Part::bytes(jpeg).file_name("s.jpg"),
        );
    let r = client
        .post(format!("{base}/api/v1/kyc/submissions"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let admin: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "0700111222", "password": "operator-password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queue: Value = client
        .get(format!("{base}/api/v1/kyc/submissions?status=pending"))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queue["items"].as_array().unwrap().len(), 1);

    // The users service's relay published its events over RabbitMQ.
    let mut db = sqlx::PgConnection::connect(&users_db).await.unwrap();
    let mut pending = -1i64;
    for _ in 0..100 {
        pending = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0, "outbox not relayed");
    let mut published: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox")
        .fetch_all(&mut db)
        .await
        .unwrap();
    published.sort();
    // Two registrations and their credential announcements; the CLI's admin is vouched for,
    // the customer is sent a phone code; one KYC submission.
    assert_eq!(
        published,
        [
            "users.kyc.submitted.v1",
            "users.phone.code_issued.v1",
            "users.phone.verified.v1",
            "users.user.credentials_changed.v1",
            "users.user.credentials_changed.v1",
            "users.user.registered.v1",
            "users.user.registered.v1",
        ],
    );

    // With the users service down, its routes answer 503 problems and the gateway stays up.
    drop(users);
    let r = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
