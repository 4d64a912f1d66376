//! The `miliki` binary as an operator uses it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "common/mod.rs"]
mod common;

/// A child process that is killed if the test ends early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn miliki(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_miliki"));
    cmd.arg("--data-dir").arg(data_dir);
    // The test's own environment must not leak backends into these runs.
    for (key, _) in std::env::vars() {
        if key.starts_with("MILIKI_") {
            cmd.env_remove(key);
        }
    }
    // Tracker listeners on free ports: these tests run servers side by side.
    for key in ["TELTONIKA", "GT06", "OSMAND"] {
        cmd.env(format!("MILIKI_TELEMATICS_{key}_PORT"), "127.0.0.1:0");
    }
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `serve` and waits for its banner; returns the process and what it printed.
fn serve(data_dir: &std::path::Path, port: u16, extra: &[&str]) -> (Proc, String) {
    serve_with(data_dir, port, extra, &[])
}

/// [`serve`] with more environment.
fn serve_with(
    data_dir: &std::path::Path,
    port: u16,
    extra: &[&str],
    env: &[(String, String)],
) -> (Proc, String) {
    let mut child = miliki(data_dir)
        .args(["serve", "--port", &port.to_string()])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    (Proc(child), banner)
}

async fn count_users(client: &reqwest::Client, base: &str, token: &str) -> usize {
    let page: serde_json::Value = client
        .get(format!("{base}/api/v1/users?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn serve_demo_starts_fast_seeds_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut proc, banner) = serve(dir.path(), port, &["--demo"]);
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/api/docs")),
        "{banner}"
    );
    assert!(banner.contains("+254700000001"), "{banner}");
    let ms: u64 = banner
        .split(" ready in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(ms < 1000, "ready in {ms} ms");

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "+254700000001", "password": "demo-admin-2026"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(count_users(&client, &base, &token).await, 4);

    // SIGTERM: a clean, prompt exit.
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // Seeding twice changes nothing. (A new client: the old one's pooled
    // connections died with the first server.)
    let (_proc, _) = serve(dir.path(), port, &["--demo"]);
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "admin@demo.miliki.dev", "password": "demo-admin-2026"}))
        .send()
        .await
        .unwrap();
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(count_users(&client, &base, &token).await, 4);
}

#[test]
fn production_refuses_to_start_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = miliki(dir.path())
        .args(["serve", "--port", "0"])
        .env("MILIKI_ENV", "production")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MILIKI_JWT_SECRET") && err.contains("MILIKI_ENCRYPTION_KEYS"),
        "{err}"
    );
    assert!(
        !dir.path().join("secrets.toml").exists(),
        "nothing generated in production"
    );
}

#[test]
fn migrate_and_admin_create() {
    let dir = tempfile::tempdir().unwrap();
    let out = miliki(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("users: migrations applied"));

    let out = miliki(dir.path())
        .args([
            "admin",
            "create",
            "--name",
            "Operator One",
            "--phone",
            "0711222333",
            "--email",
            "ops@example.com",
        ])
        .env("MILIKI_ADMIN_PASSWORD", "a-long-admin-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin Operator One created"));

    // The same phone again, and a weak password: refused with reasons.
    let out = miliki(dir.path())
        .args([
            "admin",
            "create",
            "--name",
            "Operator Two",
            "--phone",
            "+254711222333",
            "--password",
            "short",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password"), "{err}");
}

#[test]
fn unknown_services_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = miliki(dir.path())
        .args(["serve", "--only", "billing", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service \"billing\""));
}

/// Production settings with valid secrets, so what is checked next is the rest.
fn production(cmd: &mut Command) -> &mut Command {
    cmd.env("MILIKI_ENV", "production")
        .env("MILIKI_JWT_SECRET", "x".repeat(48))
        .env(
            "MILIKI_ENCRYPTION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env(
            "MILIKI_BLIND_INDEX_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
}

#[test]
fn production_without_a_database_url_names_the_variable_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["migrate"],
        vec![
            "admin",
            "create",
            "--name",
            "Ops",
            "--phone",
            "0711222333",
            "--password",
            "a-long-admin-password",
        ],
    ] {
        let out = production(&mut miliki(dir.path()))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("MILIKI_USERS_DATABASE_URL"), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} wrote files"
        );
    }
}

#[test]
fn migrate_refuses_unknown_services() {
    let dir = tempfile::tempdir().unwrap();
    let out = miliki(dir.path())
        .args(["migrate", "--only", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service \"nonsense\""));
}

#[test]
fn configuration_errors_name_the_variable_and_never_echo_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_looking = "a3JRcye3bm90LWEta2V5LWJ1dC1zZWNyZXQ";
    let out = production(&mut miliki(dir.path()))
        .env("MILIKI_ENCRYPTION_KEYS", secret_looking)
        .args(["serve", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MILIKI_ENCRYPTION_KEYS"), "{err}");
    assert!(
        !err.contains(&secret_looking[..8]),
        "the key was echoed: {err}"
    );
    let out = production(&mut miliki(dir.path()))
        .env("MILIKI_JWT_SECRET", "too-short")
        .args(["serve", "--port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MILIKI_JWT_SECRET must be at least 32 characters"),
        "{err}"
    );
}

#[test]
fn cli_validation_errors_list_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = miliki(dir.path())
        .args([
            "admin",
            "create",
            "--name",
            "",
            "--phone",
            "07ABC",
            "--password",
            "short",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["name", "phone", "password"] {
        assert!(err.contains(field), "{field} missing from: {err}");
    }
}

#[tokio::test]
async fn a_login_burst_is_shed_with_retry_after_and_logs_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = miliki(dir.path())
        .args(["serve", "--port", &port.to_string()])
        .env("MILIKI_HASH_CONCURRENCY", "1")
        .env("MILIKI_HASH_WAIT_MS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _proc = Proc(child);
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("Press Ctrl-C"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .join()
    .unwrap();
    assert!(
        !lines.contains('\u{1b}'),
        "colour codes in piped output: {lines}"
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/auth/login");
    let attempts = (0..16).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(url)
                .json(&json!({"login": format!("07000{i:05}"), "password": "not-the-password"}))
                .send()
                .await
                .unwrap()
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let shed: Vec<_> = responses
        .iter()
        .filter(|r| r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!shed.is_empty(), "no login was shed");
    assert!(shed.iter().all(|r| r.headers().contains_key("retry-after")));
    assert!(responses
        .iter()
        .all(|r| { [401, 503].contains(&r.status().as_u16()) }));
}

#[tokio::test]
async fn the_telematics_service_runs_alone_and_a_taken_tracker_port_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_proc, banner) = serve(dir.path(), port, &["--only", "telematics"]);
    assert!(banner.contains("the telematics service"), "{banner}");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Its routes answer (a bearer token is needed).
    let devices = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/devices"))
        .await
        .unwrap();
    assert_eq!(devices.status(), 401);

    // A tracker port another program holds: the service refuses to start, saying which.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let other = tempfile::tempdir().unwrap();
    let out = miliki(other.path())
        .args(["serve", "--only", "telematics", "--port", "0"])
        .env("MILIKI_TELEMATICS_TELTONIKA_PORT", &addr)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Teltonika listener cannot bind"), "{err}");
}

/// Polls `check` every 50 ms for up to `secs` seconds.
async fn within<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut req = client
        .request(method, url)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the platform answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn sign_in(client: &reqwest::Client, base: &str, phone: &str, password: &str) -> String {
    let (status, t) = call(
        client,
        reqwest::Method::POST,
        format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({"login": phone, "password": password})),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    t["access_token"].as_str().unwrap().to_owned()
}

/// The platform is killed (SIGKILL) while the collector's prompts are out at
/// the rail, and started again on the same data: the payers are not prompted
/// a second time, and every payment they made is credited once.
#[tokio::test]
async fn a_collection_run_killed_midway_sends_no_second_prompt_and_loses_no_payment() {
    const CONTRACTS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    // The rail outlives the platform: the sandboxes run as their own process.
    let sandbox_port = free_port();
    let mut rail = miliki(dir.path())
        .args(["sandbox", "--port", &sandbox_port.to_string()])
        .env("MILIKI_SANDBOX_ANSWER_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rail.stdout.take().unwrap()).lines();
    assert!(lines
        .next()
        .unwrap()
        .unwrap()
        .contains("Provider sandboxes on"));
    let _rail = Proc(rail);
    let rail_base = format!("http://127.0.0.1:{sandbox_port}");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sms_base = format!("{rail_base}/sandbox/sms");
    let mut env: Vec<(String, String)> = [
        ("MILIKI_SANDBOX_URL", rail_base.as_str()),
        ("MILIKI_SANDBOXES", "false"),
        ("MILIKI_SMS_BASE_URL", sms_base.as_str()),
        ("MILIKI_PAYMENTS_COLLECT_POLL_MS", "50"),
        ("MILIKI_CALLBACK_SECRET", "restart-test-callback-secret"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    // On PostgreSQL and RabbitMQ too, when the environment has them (.ci/run).
    if let Some(server) = common::postgres_url() {
        for service in miliki::SERVICES {
            let url = common::fresh_postgres_database(&server).await;
            env.push((
                format!("MILIKI_{}_DATABASE_URL", service.name.to_uppercase()),
                url,
            ));
        }
    }
    if let Some(amqp) = common::amqp_url() {
        env.push(("MILIKI_AMQP_URL".into(), amqp));
        env.push((
            "MILIKI_AMQP_EXCHANGE".into(),
            format!("miliki.test.{}", uuid::Uuid::now_v7().simple()),
        ));
    }
    let client = reqwest::Client::new();
    let (platform, _) = serve_with(dir.path(), port, &["--demo", "--simulated-clock"], &env);
    let admin = sign_in(&client, &base, "+254700000001", "demo-admin-2026").await;
    let (_, products) = call(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/v1/products"),
        Some(&admin),
        None,
    )
    .await;
    let product = products["items"]
        .as_array()
        .or(products.as_array())
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Boda-boda weekly (78 weeks)")
        .unwrap()["id"]
        .clone();

    // Customers with active contracts, collected by M-Pesa from midnight.
    let mut contracts = Vec::new();
    for i in 0..CONTRACTS {
        let phone = format!("+25471100{:04}", 7000 + i * 10);
        let (status, user) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/auth/register"),
            None,
            Some(json!({"name": format!("Rider {i}"), "phone": phone, "password": "a-long-rider-password"})),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        // The phone is verified with the code it got, or no prompt may go to it.
        let code = within(30, "the phone code by SMS", || async {
            let (_, sent) = call(
                &client,
                reqwest::Method::GET,
                format!("{rail_base}/sandbox/sms/messages"),
                None,
                None,
            )
            .await;
            common::codes_sent_to(&sent, &phone).into_iter().next()
        })
        .await;
        let (status, verified) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/auth/verify-phone"),
            None,
            Some(json!({"phone": phone, "code": code})),
        )
        .await;
        assert_eq!(status, 200, "{verified}");
        let body = json!({
            "customer_id": user["id"], "vehicle_id": uuid::Uuid::now_v7(), "product_id": product,
            "price_minor": 16_500_000, "currency": "KES", "deposit_minor": 3_300_000, "term_periods": 78
        });
        let c = within(10, "payments to learn the customer", || async {
            let (status, c) = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/contracts"),
                Some(&admin),
                Some(body.clone()),
            )
            .await;
            (status == 201).then_some(c)
        })
        .await;
        let id = c["id"].as_str().unwrap().to_owned();
        let deposit = c["schedule"][0]["total_minor"].as_i64().unwrap();
        let (status, r) = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/contracts/{id}/payments"),
            Some(&admin),
            Some(json!({"amount_minor": deposit, "method": "cash"})),
        )
        .await;
        assert_eq!(status, 201, "{r}");
        // Refused (409) until payments has heard the phone is verified.
        let (status, r) = within(60, "collection settings to be taken", || async {
            let (status, r) = call(
                &client,
                reqwest::Method::PUT,
                format!("{base}/api/v1/contracts/{id}/collection"),
                Some(&admin),
                Some(json!({"rail": "mpesa", "phone": phone, "collect_at": "00:00"})),
            )
            .await;
            if status == 409 {
                // Gently: the gateway limits how often one client may ask.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (status != 409).then_some((status, r))
        })
        .await;
        assert_eq!(status, 200, "{r}");
        contracts.push((id, phone));
    }

    // A week on, the collector prompts every payer; the payers take 3 s to answer.
    let (status, moved) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/simulation/clock"),
        Some(&admin),
        Some(json!({"advance_days": 7})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    let today = moved["today"].as_str().unwrap().to_owned();
    let statement = || async {
        let (_, s) = call(
            &client,
            reqwest::Method::GET,
            format!("{rail_base}/sandbox/mpesa/transactions"),
            None,
            None,
        )
        .await;
        s.as_array().cloned().unwrap_or_default()
    };
    let prompted = within(10, "the prompts to reach the rail", || async {
        let s = statement().await;
        (s.len() == CONTRACTS).then_some(s)
    })
    .await;
    assert!(
        prompted.iter().all(|t| t["status"] == "pending"),
        "{prompted:?}"
    );
    // Killed while every prompt is out and recorded with the rail's id (a kill
    // between the rail taking a prompt and that record is the one window a
    // query cannot close: Daraja is queried by its CheckoutRequestID only).
    // A fresh token: the week the clock moved outlived the first one.
    let admin = sign_in(&client, &base, "+254700000001", "demo-admin-2026").await;
    for (id, _) in &contracts {
        within(10, "the rail's ids to be recorded", || async {
            let (_, attempts) = call(
                &client,
                reqwest::Method::GET,
                format!("{base}/api/v1/contracts/{id}/collection-attempts"),
                Some(&admin),
                None,
            )
            .await;
            attempts[0]["rail_reference"].is_string().then_some(())
        })
        .await;
    }
    // Their callbacks will find nobody.
    drop(platform);
    // The payers answer while it is down (the rail keeps their answers for
    // the query the restarted platform sends).
    within(15, "the payers to answer at the rail", || async {
        let s = statement().await;
        s.iter().all(|t| t["status"] != "pending").then_some(())
    })
    .await;

    let (platform, _) = serve_with(dir.path(), port, &["--simulated-clock"], &env);
    // A new client: the old one's pooled connections died with the process.
    let client = reqwest::Client::new();
    let admin = sign_in(&client, &base, "+254700000001", "demo-admin-2026").await;
    // The restarted clock starts from the wall clock again: back to the same
    // day, past the minute after which an unanswered prompt is queried.
    let (status, moved) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/simulation/clock"),
        Some(&admin),
        Some(json!({"advance_days": 7, "advance_secs": 61})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["today"], today.as_str());
    let admin = sign_in(&client, &base, "+254700000001", "demo-admin-2026").await;
    for (id, _) in &contracts {
        let detail = within(15, "the installment to be credited", || async {
            let (_, d) = call(
                &client,
                reqwest::Method::GET,
                format!("{base}/api/v1/contracts/{id}"),
                Some(&admin),
                None,
            )
            .await;
            (d["schedule"][1]["state"] == "paid").then_some(d)
        })
        .await;
        assert_eq!(
            detail["balances"]["paid_to_date_minor"],
            detail["schedule"][0]["total_minor"].as_i64().unwrap()
                + detail["schedule"][1]["total_minor"].as_i64().unwrap()
        );
        let (_, attempts) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/v1/contracts/{id}/collection-attempts"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
        assert_eq!(attempts[0]["status"], "succeeded");
    }
    // No payer was prompted twice, and every prompt ended paid.
    let after = statement().await;
    assert_eq!(after.len(), CONTRACTS, "{after:?}");
    assert!(
        after.iter().all(|t| t["status"] == "succeeded"),
        "{after:?}"
    );
    drop(platform);

    // The ledger balances.
    let out = miliki(dir.path())
        .args(["ledger", "verify"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
