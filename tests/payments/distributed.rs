//! Payments as its own `miliki serve --only payments` process on its own
//! PostgreSQL database, users and the gateway as others, events over
//! RabbitMQ: an agent's customer registered in users becomes visible to the
//! agent in payments, and the agent's cash payment activates the contract.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::boda_product;

/// Child processes, killed by their own handles when the test ends.
struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn ready(client: &reqwest::Client, url: &str, children: &mut Children) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{url}/health/ready")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited early with {status}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become ready");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn payments_runs_as_its_own_process() {
    let (Some(pg), Some(amqp)) = (postgres_url(), amqp_url()) else {
        eprintln!("SKIPPED: payments distributed test needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users_db = fresh_postgres_database(&pg).await;
    let payments_db = fresh_postgres_database(&pg).await;
    let exchange = format!("miliki.test.{}", uuid::Uuid::now_v7().simple());
    let (users_port, payments_port, gateway_port) = (port(), port(), port());
    let command = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_miliki"));
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("MILIKI_USERS_DATABASE_URL", &users_db)
            .env("MILIKI_PAYMENTS_DATABASE_URL", &payments_db)
            .env("MILIKI_AMQP_URL", &amqp)
            .env("MILIKI_AMQP_EXCHANGE", &exchange)
            .env("MILIKI_USERS_URL", format!("http://127.0.0.1:{users_port}"))
            .env(
                "MILIKI_PAYMENTS_URL",
                format!("http://127.0.0.1:{payments_port}"),
            )
            .env_remove("MILIKI_REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        cmd
    };
    let client = reqwest::Client::new();
    let mut children = Children(Vec::new());
    // Users first: it writes the embedded secrets file the others read.
    let serve = |name: &str, p: u16| {
        command(&["serve", "--only", name, "--port", &p.to_string()])
            .spawn()
            .unwrap()
    };
    children.0.push(("users", serve("users", users_port)));
    ready(
        &client,
        &format!("http://127.0.0.1:{users_port}"),
        &mut children,
    )
    .await;
    children
        .0
        .push(("payments", serve("payments", payments_port)));
    children.0.push(("gateway", serve("gateway", gateway_port)));
    ready(
        &client,
        &format!("http://127.0.0.1:{payments_port}"),
        &mut children,
    )
    .await;
    ready(
        &client,
        &format!("http://127.0.0.1:{gateway_port}"),
        &mut children,
    )
    .await;
    let gw = format!("http://127.0.0.1:{gateway_port}");

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

    let call = |path: String, token: Option<String>, body: Option<Value>, key: Option<String>| {
        let mut req = match body {
            Some(b) => client.post(format!("{gw}{path}")).json(&b),
            None => client.get(format!("{gw}{path}")),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
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
                "/api/v1/auth/login".into(),
                None,
                Some(json!({"login": phone, "password": PASSWORD})),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let admin = login(admin_phone).await;
    let agent_phone = unique_phone();
    let (status, agent) = call(
        "/api/v1/users".into(),
        Some(admin.clone()),
        Some(json!({"name": "Field Agent", "phone": agent_phone, "password": PASSWORD, "role": "agent"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let agent_token = login(agent_phone).await;
    let (status, customer) = call(
        "/api/v1/users".into(),
        Some(agent_token.clone()),
        Some(json!({"name": "Juma Hassan", "phone": unique_phone(), "password": PASSWORD})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");

    let (status, product) = call(
        "/api/v1/products".into(),
        Some(admin.clone()),
        Some(boda_product()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let body = json!({
        "customer_id": customer["id"], "vehicle_id": uuid::Uuid::now_v7(), "product_id": product["id"],
        "price_minor": 16_500_000, "currency": "KES", "deposit_minor": 3_300_000, "term_periods": 52
    });
    let (status, contract) = call(
        "/api/v1/contracts".into(),
        Some(admin.clone()),
        Some(body),
        Some("k-1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{contract}");
    let id = contract["id"].as_str().unwrap().to_owned();

    // The registration crossed RabbitMQ: the agent sees the contract of their customer.
    let mut seen = false;
    for _ in 0..200 {
        let (_, list) = call(
            "/api/v1/contracts".into(),
            Some(agent_token.clone()),
            None,
            None,
        )
        .await;
        if list["items"].as_array().is_some_and(|a| a.len() == 1) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the agent never saw the customer's contract");
    let deposit = contract["schedule"][0]["total_minor"].as_i64().unwrap();
    let pay = json!({"amount_minor": deposit, "method": "cash"});
    let path = format!("/api/v1/contracts/{id}/payments");
    let (status, first) = call(
        path.clone(),
        Some(agent_token.clone()),
        Some(pay.clone()),
        Some("p-1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["contract"]["status"], "active");
    let (status, again) = call(
        path,
        Some(agent_token.clone()),
        Some(pay),
        Some("p-1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["payment"]["id"], first["payment"]["id"]);
    let (_, detail) = call(
        format!("/api/v1/contracts/{id}"),
        Some(admin.clone()),
        None,
        None,
    )
    .await;
    assert_eq!(detail["balances"]["paid_to_date_minor"], deposit);
}
