//! Vehicles, users and the gateway as separate `miliki serve --only`
//! processes, each service on its own fresh PostgreSQL database, events over
//! RabbitMQ (and the search cache in Redis when MILIKI_TEST_REDIS_URL is set):
//! a KYC approval in users enables a reservation in vehicles.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::car;

/// Child processes, killed (by their own handles) when the test ends, pass or fail.
struct Processes(Vec<(&'static str, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(client: &reqwest::Client, url: &str, what: &str, procs: &mut Processes) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{url}/health/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        for (name, child) in &mut procs.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited early with {status}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not become ready");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn kyc_approval_in_users_enables_a_reservation_in_vehicles() {
    let Some(pg) = postgres_url() else {
        eprintln!("SKIPPED: distributed::kyc_approval_in_users_enables_a_reservation_in_vehicles needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL");
        return;
    };
    let Some(amqp) = amqp_url() else {
        eprintln!("SKIPPED: distributed::kyc_approval_in_users_enables_a_reservation_in_vehicles needs MILIKI_TEST_AMQP_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users_db = fresh_postgres_database(&pg).await;
    let vehicles_db = fresh_postgres_database(&pg).await;
    let exchange = format!("miliki.test.{}", uuid::Uuid::now_v7().simple());
    let redis = redis_url();
    let (users_port, vehicles_port, gateway_port) = (free_port(), free_port(), free_port());
    let bin = env!("CARGO_BIN_EXE_miliki");
    let command = |args: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("MILIKI_USERS_DATABASE_URL", &users_db)
            .env("MILIKI_VEHICLES_DATABASE_URL", &vehicles_db)
            .env("MILIKI_AMQP_URL", &amqp)
            .env("MILIKI_AMQP_EXCHANGE", &exchange)
            .env("MILIKI_USERS_URL", format!("http://127.0.0.1:{users_port}"))
            .env(
                "MILIKI_VEHICLES_URL",
                format!("http://127.0.0.1:{vehicles_port}"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        match &redis {
            Some(r) => {
                cmd.env("MILIKI_REDIS_URL", r).env(
                    "MILIKI_REDIS_PREFIX",
                    format!("miliki-test-{}", uuid::Uuid::now_v7().simple()),
                );
            }
            None => {
                cmd.env_remove("MILIKI_REDIS_URL");
            }
        }
        cmd
    };
    let client = reqwest::Client::new();
    let mut procs = Processes(Vec::new());
    // Users first: it writes the shared embedded secrets file the others then read.
    procs.0.push((
        "users",
        command(&[
            "serve",
            "--only",
            "users",
            "--port",
            &users_port.to_string(),
        ])
        .spawn()
        .unwrap(),
    ));
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{users_port}"),
        "users",
        &mut procs,
    )
    .await;
    procs.0.push((
        "vehicles",
        command(&[
            "serve",
            "--only",
            "vehicles",
            "--port",
            &vehicles_port.to_string(),
        ])
        .spawn()
        .unwrap(),
    ));
    procs.0.push((
        "gateway",
        command(&[
            "serve",
            "--only",
            "gateway",
            "--port",
            &gateway_port.to_string(),
        ])
        .spawn()
        .unwrap(),
    ));
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{vehicles_port}"),
        "vehicles",
        &mut procs,
    )
    .await;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{gateway_port}"),
        "gateway",
        &mut procs,
    )
    .await;
    let gw = format!("http://127.0.0.1:{gateway_port}");

    // The first admin comes from the CLI, as an operator would create it.
    let admin_phone = unique_phone();
    let created = command(&[
        "admin",
        "create",
        "--name",
        "Ops Admin",
        "--phone",
        &admin_phone,
    ])
    .env("MILIKI_ADMIN_PASSWORD", PASSWORD)
    .output()
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = client.request(method, format!("{gw}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let login = |phone: String| {
        let call = &call;
        async move {
            let (status, body) = call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"login": phone, "password": PASSWORD})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let admin = login(admin_phone).await;
    let customer_phone = unique_phone();
    let (status, customer) = call(
        reqwest::Method::POST,
        "/api/v1/auth/register",
        None,
        Some(json!({"name": "Wanjiru Kamau", "phone": customer_phone, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let customer_token = login(customer_phone).await;

    let (status, vehicle) = call(
        reqwest::Method::POST,
        "/api/v1/vehicles",
        Some(&admin),
        Some(car()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{vehicle}");
    let reserve_path = format!(
        "/api/v1/vehicles/{}/reservations",
        vehicle["id"].as_str().unwrap()
    );
    let (status, body) = call(
        reqwest::Method::POST,
        &reserve_path,
        Some(&customer_token),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // KYC through users, decided by the admin.
    let resp = client
        .post(format!("{gw}/api/v1/kyc/submissions"))
        .bearer_auth(&customer_token)
        .multipart(kyc_form("national_id", "2345 6789", None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let submission: Value = resp.json().await.unwrap();
    let (status, body) = call(
        reqwest::Method::POST,
        &format!(
            "/api/v1/kyc/submissions/{}/decision",
            submission["id"].as_str().unwrap()
        ),
        Some(&admin),
        Some(json!({"decision": "approve"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The approval travels users → outbox → RabbitMQ → vehicles' projection.
    let mut reserved = None;
    for _ in 0..150 {
        let (status, body) = call(
            reqwest::Method::POST,
            &reserve_path,
            Some(&customer_token),
            Some(json!({})),
        )
        .await;
        if status == StatusCode::CREATED {
            reserved = Some(body);
            break;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reservation = reserved.expect("the KYC approval reached vehicles within 15 s");
    assert_eq!(reservation["status"], "active");
    assert_eq!(reservation["customer_id"], customer["id"]);

    // Suspending and reinstating the customer in users kills their old token
    // in the vehicles process too, within a second of the change.
    let customer_id = customer["id"].as_str().unwrap().to_owned();
    for action in ["suspend", "reinstate"] {
        let (status, body) = call(
            reqwest::Method::POST,
            &format!("/api/v1/users/{customer_id}/{action}"),
            Some(&admin),
            Some(json!({"reason": "access review"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let changed = std::time::Instant::now();
    let mut refused_after = None;
    while changed.elapsed() < Duration::from_secs(5) {
        let (status, _) = call(
            reqwest::Method::GET,
            "/api/v1/reservations",
            Some(&customer_token),
            None,
        )
        .await;
        if status == StatusCode::UNAUTHORIZED {
            refused_after = Some(changed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_after = refused_after.expect("vehicles kept accepting the stale token");
    eprintln!("stale token refused by the vehicles process after {refused_after:?}");
    assert!(refused_after < Duration::from_secs(1), "{refused_after:?}");
}
