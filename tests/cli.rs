//! The `miliki` binary as an operator uses it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

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
    let mut child = miliki(data_dir)
        .args(["serve", "--port", &port.to_string()])
        .args(extra)
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
