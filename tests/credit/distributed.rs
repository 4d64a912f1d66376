//! The journey across separate processes on PostgreSQL and RabbitMQ: users,
//! vehicles, payments, credit and the gateway each `miliki serve --only …`
//! with its own database. Registered → KYC approved → reserved → applied
//! with a statement → approved with payments' quote → accepted → contract →
//! cash deposit → the bike under contract.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::payment_support::boda_product;
use crate::support::{statement, Shape};
use crate::vehicle_support::motorcycle;

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

const NAMES: [&str; 4] = ["users", "vehicles", "payments", "credit"];

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn the_journey_across_processes() {
    let (Some(pg), Some(amqp)) = (postgres_url(), amqp_url()) else {
        eprintln!("SKIPPED: credit distributed test needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = Vec::new();
    for _ in NAMES {
        dbs.push(fresh_postgres_database(&pg).await);
    }
    let ports: Vec<u16> = NAMES.iter().map(|_| port()).collect();
    let gateway_port = port();
    let exchange = format!("miliki.test.{}", uuid::Uuid::now_v7().simple());
    let command = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_miliki"));
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("MILIKI_AMQP_URL", &amqp)
            .env("MILIKI_AMQP_EXCHANGE", &exchange)
            .env_remove("MILIKI_REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (i, name) in NAMES.iter().enumerate() {
            let upper = name.to_uppercase();
            cmd.env(format!("MILIKI_{upper}_DATABASE_URL"), &dbs[i])
                .env(
                    format!("MILIKI_{upper}_URL"),
                    format!("http://127.0.0.1:{}", ports[i]),
                );
        }
        cmd
    };
    let client = reqwest::Client::new();
    let mut children = Children(Vec::new());
    let serve = |name: &str, p: u16| {
        command(&["serve", "--only", name, "--port", &p.to_string()])
            .spawn()
            .unwrap()
    };
    // Users first: it writes the development secrets file the others read.
    children.0.push(("users", serve("users", ports[0])));
    ready(
        &client,
        &format!("http://127.0.0.1:{}", ports[0]),
        &mut children,
    )
    .await;
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        children.0.push((name, serve(name, ports[i])));
    }
    children.0.push(("gateway", serve("gateway", gateway_port)));
    for p in ports.iter().skip(1).chain([&gateway_port]) {
        ready(&client, &format!("http://127.0.0.1:{p}"), &mut children).await;
    }
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
    let agent = login(agent_phone).await;
    let customer_phone = unique_phone();
    let (status, customer) = call(
        "/api/v1/users".into(),
        Some(agent.clone()),
        Some(json!({"name": "Juma Hassan", "phone": customer_phone, "password": PASSWORD})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let customer_id = customer["id"].as_str().unwrap().to_owned();

    // KYC, submitted by the agent and approved by the admin.
    let resp = client
        .post(format!("{gw}/api/v1/kyc/submissions"))
        .bearer_auth(&agent)
        .multipart(kyc_form(
            "national_id",
            "2345 6789",
            customer_id.parse().ok(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let submission: Value = resp.json().await.unwrap();
    let (status, b) = call(
        format!(
            "/api/v1/kyc/submissions/{}/decision",
            submission["id"].as_str().unwrap()
        ),
        Some(admin.clone()),
        Some(json!({"decision": "approve"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");

    let (status, bike) = call(
        "/api/v1/vehicles".into(),
        Some(admin.clone()),
        Some(motorcycle()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bike}");
    let vehicle_id = bike["id"].as_str().unwrap().to_owned();
    let (status, product) = call(
        "/api/v1/products".into(),
        Some(admin.clone()),
        Some(boda_product()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");

    // The customer reserves once vehicles has heard of the approval.
    let customer_token = login(customer_phone).await;
    let mut reservation = Value::Null;
    for _ in 0..200 {
        let (status, r) = call(
            format!("/api/v1/vehicles/{vehicle_id}/reservations"),
            Some(customer_token.clone()),
            Some(json!({})),
            None,
        )
        .await;
        if status == StatusCode::CREATED {
            reservation = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reservation["id"].is_string(), "never reserved");

    // The agent applies once credit has heard of the reservation (and payments of the bike).
    let application = json!({
        "customer_id": customer_id, "vehicle_id": vehicle_id, "product_id": product["id"],
        "deposit_minor": 40_000_00, "term_periods": 52, "occupation": "boda_rider",
        "income": {"declared_minor": 50_000_00, "frequency": "monthly"},
    });
    let csv = statement(&Shape::steady(50_000_00));
    let mut decided = Value::Null;
    for _ in 0..200 {
        let form = reqwest::multipart::Form::new()
            .part(
                "application",
                reqwest::multipart::Part::text(application.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "statement",
                reqwest::multipart::Part::text(csv.clone()).file_name("s.csv"),
            );
        let resp = client
            .post(format!("{gw}/api/v1/applications"))
            .bearer_auth(&agent)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == StatusCode::CREATED {
            decided = body;
            break;
        }
        assert!(
            status == StatusCode::CONFLICT || status == StatusCode::FORBIDDEN,
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(decided["status"], "approved", "{decided}");
    assert!(
        decided["offer"]["quote"]["installment_minor"]
            .as_i64()
            .unwrap()
            > 0
    );
    let id = decided["id"].as_str().unwrap();

    let (status, accepted) = call(
        format!("/api/v1/applications/{id}/accept"),
        Some(customer_token.clone()),
        Some(json!({})),
        Some("accept-1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");

    // Payments writes the contract from the event that crossed RabbitMQ.
    let mut contract = Value::Null;
    for _ in 0..200 {
        let (_, list) = call("/api/v1/contracts".into(), Some(agent.clone()), None, None).await;
        if let Some(c) = list["items"].as_array().and_then(|a| a.first()) {
            contract = c.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(contract["application_id"], decided["id"], "no contract");
    let cid = contract["id"].as_str().unwrap();
    let (_, detail) = call(
        format!("/api/v1/contracts/{cid}"),
        Some(agent.clone()),
        None,
        None,
    )
    .await;
    let deposit = detail["schedule"][0]["total_minor"].as_i64().unwrap();
    let (status, paid) = call(
        format!("/api/v1/contracts/{cid}/payments"),
        Some(agent.clone()),
        Some(json!({"amount_minor": deposit, "method": "cash"})),
        Some("deposit-1".into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["contract"]["status"], "active");

    let mut under_contract = false;
    for _ in 0..200 {
        let (_, v) = call(
            format!("/api/v1/vehicles/{vehicle_id}"),
            Some(admin.clone()),
            None,
            None,
        )
        .await;
        if v["status"] == "under_contract" {
            under_contract = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(under_contract, "the bike never went under contract");
}
