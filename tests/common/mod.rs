//! Spawns the real platform for a test: on a random port, against fresh
//! databases (SQLite in a temp dir by default; a fresh PostgreSQL database per
//! app when MILIKI_TEST_DATABASE_URL is set), with a clock the test moves, and
//! over RabbitMQ / Redis when MILIKI_TEST_AMQP_URL / MILIKI_TEST_REDIS_URL are set.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::auth::Role as UserRole;
use miliki_platform::clock::ManualClock;
use miliki_platform::config::Settings;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

pub const PASSWORD: &str = "correct-horse-battery";

/// Which backend this test run uses, from the environment.
pub fn postgres_url() -> Option<String> {
    std::env::var("MILIKI_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn amqp_url() -> Option<String> {
    std::env::var("MILIKI_TEST_AMQP_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn redis_url() -> Option<String> {
    std::env::var("MILIKI_TEST_REDIS_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates an empty PostgreSQL database on `server` (a URL without a
/// database name, e.g. `postgres://postgres@127.0.0.1:5432`) and returns its URL.
pub async fn fresh_postgres_database(server: &str) -> String {
    let server = server.trim_end_matches('/');
    let name = format!("miliki_test_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    format!("{server}/{name}")
}

/// Settings for a test app rooted at `dir`, on the backends the environment names.
pub async fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        data_dir: dir.to_owned(),
        port: 0,
        event_retry_base_ms: 20,
        event_max_attempts: 3,
        ..Settings::default()
    };
    // Tracker listeners on free ports, so parallel tests never collide;
    // telematics tests read the bound addresses from GET /api/v1/telematics/listeners.
    for key in ["teltonika_port", "gt06_port", "osmand_port"] {
        settings
            .extra
            .insert(format!("telematics_{key}"), "127.0.0.1:0".into());
    }
    if let Some(server) = postgres_url() {
        for service in miliki::SERVICES {
            let url = fresh_postgres_database(&server).await;
            settings
                .extra
                .insert(format!("{}_database_url", service.name), url.into());
        }
    }
    if let Some(amqp) = amqp_url() {
        settings.amqp_url = Some(amqp);
        settings.amqp_exchange = format!("miliki.test.{}", Uuid::now_v7().simple());
    }
    if let Some(redis) = redis_url() {
        settings.redis_url = Some(redis);
        settings.redis_prefix = format!("miliki-test-{}", Uuid::now_v7().simple());
    }
    settings
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub runtime: Option<Runtime>,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(dir.path()).await;
        configure(&mut settings);
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
        ));
        let kernel = Kernel::new(settings, clock.clone()).await.expect("kernel");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let runtime = Runtime::start(kernel, Role::Embedded, listener)
            .await
            .expect("start");
        let base = format!("http://{}", runtime.addr);
        Self {
            base,
            client: reqwest::Client::new(),
            clock,
            runtime: Some(runtime),
            dir,
        }
    }

    pub fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("running")
    }

    pub fn users(&self) -> &miliki_events::service::ServiceDeps {
        self.runtime().deps("users").expect("users service")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Puts `who`'s notification preferences (support), which must be taken.
    pub async fn set_preferences(&self, who: &Account, body: Value) {
        let (s, b) = self
            .send(
                reqwest::Method::PUT,
                "/api/v1/notifications/preferences",
                Some(&who.token),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// Trades a refresh token (any JSON value, so tests can send wrong types).
    pub async fn refresh(&self, token: impl serde::Serialize) -> (StatusCode, Value) {
        self.post(
            "/api/v1/auth/refresh",
            None,
            json!({ "refresh_token": token }),
        )
        .await
    }

    pub async fn login(&self, login: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body
    }

    /// Creates an account directly (as the CLI does) and logs it in.
    pub async fn account(&self, role: UserRole, onboarded_by: Option<Uuid>) -> Account {
        let phone = unique_phone();
        let id = miliki_users::admin::create_user(
            self.users(),
            &format!("Test {role}"),
            &phone,
            None,
            PASSWORD,
            role,
            onboarded_by,
        )
        .await
        .expect("create account");
        let tokens = self.login(&phone, PASSWORD).await;
        Account {
            id,
            phone,
            token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn admin(&self) -> Account {
        self.account(UserRole::Admin, None).await
    }

    pub async fn agent(&self) -> Account {
        self.account(UserRole::Agent, None).await
    }

    pub async fn customer(&self) -> Account {
        self.account(UserRole::Customer, None).await
    }

    /// A customer in `agent`'s book.
    pub async fn customer_of(&self, agent: &Account) -> Account {
        self.account(UserRole::Customer, Some(agent.id)).await
    }

    pub async fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.stop().await.expect("clean stop");
        }
    }
}

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub phone: String,
    pub token: String,
    pub refresh: String,
}

/// A valid, unused Kenyan mobile number.
pub fn unique_phone() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt = (Uuid::now_v7().as_u128() % 9000) as u32;
    format!(
        "+2547{:02}{:06}",
        10 + (salt % 89),
        (n * 7919 + salt) % 1_000_000
    )
}

/// Asserts a problem response: status, content type already checked by the caller, and the `type` slug.
pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, slug: &str) {
    assert_eq!(status, expected, "unexpected status; body: {body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    let kind = body["type"].as_str().unwrap_or_default();
    assert!(
        kind.ends_with(&format!("/problems/{slug}")),
        "problem type {kind:?} is not {slug:?}: {body}"
    );
}

/// The fields a validation problem names.
pub fn invalid_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A tiny but real PNG (1×1) and JPEG header, and a PDF.
pub fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 13, b'I', b'D', b'A',
        b'T', 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0, 0x05, 0, 0x01, 0xFF, 0x56, 0xC6,
        0x3A, 0x55, 0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82,
    ]
}

pub fn jpeg() -> Vec<u8> {
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00,
    ];
    bytes.extend(std::iter::repeat_n(0u8, 64));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec()
}

/// A KYC multipart form with the usual three images.
pub fn kyc_form(
    document_type: &str,
    number: &str,
    user_id: Option<Uuid>,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .text("document_type", document_type.to_owned())
        .text("document_number", number.to_owned())
        .part(
            "front",
            reqwest::multipart::Part::bytes(jpeg()).file_name("front.jpg"),
        )
        .part(
            "back",
            reqwest::multipart::Part::bytes(pdf()).file_name("back.pdf"),
        )
        .part(
            "selfie",
            reqwest::multipart::Part::bytes(png()).file_name("selfie.png"),
        );
    if let Some(u) = user_id {
        form = form.text("user_id", u.to_string());
    }
    form
}

impl TestApp {
    pub async fn submit_kyc(
        &self,
        token: &str,
        form: reqwest::multipart::Form,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url("/api/v1/kyc/submissions"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The `n`th (1-based) one-time code the SMS sandbox received for
    /// `phone`, waiting for it to arrive.
    pub async fn phone_code(&self, phone: &str, n: usize) -> String {
        self.eventually("the phone code by SMS", || async {
            let (s, messages) = self.get("/sandbox/sms/messages", None).await;
            assert_eq!(s, StatusCode::OK, "{messages}");
            codes_sent_to(&messages, phone).get(n - 1).cloned()
        })
        .await
    }

    /// Polls `check` until it returns Some, for effects that travel over the
    /// bus. Up to 30 s: on PostgreSQL and RabbitMQ with every test of a
    /// binary running at once on two cores, many seconds is not rare (a
    /// support test's twenty SMS once took more than fifteen). It polls every
    /// 50 ms, so waiting tests do not add much to that load themselves.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Skips a test that needs a server the environment does not provide, saying so.
#[macro_export]
macro_rules! require_env {
    ($var:literal) => {
        match std::env::var($var).ok().filter(|s| !s.is_empty()) {
            Some(v) => v,
            None => {
                eprintln!(
                    "SKIPPED: {} needs {} (set by .ci/run)",
                    module_path!(),
                    $var
                );
                return;
            }
        }
    };
}

/// The six-digit codes in the SMS sandbox's record (`GET /sandbox/sms/messages`)
/// sent to `phone`, oldest first.
pub fn codes_sent_to(messages: &Value, phone: &str) -> Vec<String> {
    let Some(messages) = messages.as_array() else {
        return Vec::new();
    };
    messages
        .iter()
        .filter(|m| m["request"]["to"] == phone)
        .filter_map(|m| {
            let text = m["request"]["message"].as_str()?;
            text.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .map(str::to_owned)
        })
        .collect()
}
