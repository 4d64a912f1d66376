//! Immobilization: sent only once the vehicle is parked, acknowledged,
//! retried, recorded; the arrears policy; decommissioning when a contract ends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use miliki_events::catalogue::payments::{ArrearsChanged, ContractPaidOff, ContractPaused};
use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

async fn command(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/v1/telematics/commands/{id}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn wait_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    app.eventually(&format!("command {status}"), || async {
        let c = command(app, token, id).await;
        (c["status"] == status).then_some(c)
    })
    .await
}

fn at(app: &TestApp, secs: i64) -> DateTime<Utc> {
    app.clock.now() + chrono::Duration::seconds(secs)
}

#[tokio::test]
async fn an_immobilization_asked_for_while_moving_is_sent_only_after_the_vehicle_has_stopped() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    assert_eq!(
        t.report(&[record(at(&app, -5), -1.28, 36.82, 45, true, &[])])
            .await,
        1
    );
    wait_latest(&app, &admin.token, vehicle, at(&app, -5)).await;

    let path = format!("/api/v1/telematics/vehicles/{vehicle}/immobilization");
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"action": "explode"}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 2);
    let customer = app.customer().await;
    let (status, body) = app
        .post(
            &path,
            Some(&customer.token),
            json!({"action": "immobilize", "reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &format!(
                "/api/v1/telematics/vehicles/{}/immobilization",
                Uuid::now_v7()
            ),
            Some(&admin.token),
            json!({"action": "immobilize", "reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    let (status, c) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"action": "immobilize", "reason": "reported stolen"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    assert_eq!(c["status"], "queued");
    let id = c["id"].as_str().unwrap().to_owned();
    // Moving: nothing is sent, whatever the time.
    app.clock.advance(chrono::Duration::minutes(10));
    assert_eq!(t.command(Duration::from_millis(300)).await, None);
    let c = command(&app, &admin.token, &id).await;
    assert_eq!(c["status"], "queued");
    assert!(c["waiting_for"].as_str().unwrap().contains("parked"), "{c}");

    // It stops, engine off; 30 s later it is still too soon.
    let stopped = at(&app, 0);
    assert_eq!(
        t.report(&[record(stopped, -1.28, 36.82, 0, false, &[])])
            .await,
        1
    );
    app.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(t.command(Duration::from_millis(300)).await, None);
    // After a minute parked the command goes out, as Codec 12.
    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(
        t.command(Duration::from_secs(5)).await.as_deref(),
        Some("setdigout 1")
    );
    let c = wait_status(&app, &admin.token, &id, "sent").await;
    assert_eq!(c["attempts"], 1);
    // Not acknowledged in time: sent again.
    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(
        t.command(Duration::from_secs(5)).await.as_deref(),
        Some("setdigout 1")
    );
    t.reply("DOUT1:1 DOUT2:0").await;
    let c = wait_status(&app, &admin.token, &id, "acknowledged").await;
    assert_eq!(c["response"], "DOUT1:1 DOUT2:0");
    let steps: Vec<&str> = c["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["queued", "sent", "sent", "acknowledged"]);
    assert_eq!(c["requested_by"], admin.id.to_string());

    // Restore is sent at once.
    let (status, r) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"action": "restore", "reason": "recovered"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert_eq!(
        t.command(Duration::from_secs(5)).await.as_deref(),
        Some("setdigout 0")
    );
    t.reply("DOUT1:0 DOUT2:0").await;
    wait_status(
        &app,
        &admin.token,
        r["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    let (_, list) = app
        .get(
            &format!("/api/v1/telematics/commands?vehicle_id={vehicle}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (status, body) = app
        .post(
            &format!("/api/v1/telematics/commands/{id}/cancel"),
            Some(&admin.token),
            json!({"reason": "too late"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
}

fn arrears(contract: Uuid, customer: Uuid, vehicle: Uuid, days: i64) -> ArrearsChanged {
    ArrearsChanged {
        contract_id: contract,
        customer_id: customer,
        vehicle_id: vehicle,
        days_past_due: days,
        bucket: if days == 0 {
            "current".into()
        } else {
            "1-30".into()
        },
        overdue_minor: days * 50_000,
    }
}

async fn open_commands(app: &TestApp, token: &str, vehicle: Uuid) -> Vec<Value> {
    let (_, list) = app
        .get(
            &format!("/api/v1/telematics/commands?vehicle_id={vehicle}"),
            Some(token),
        )
        .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_arrears_policy_warns_immobilizes_when_parked_cancels_on_payment_and_restores_when_current(
) {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let contract = hold(&app, vehicle, &customer).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    assert_eq!(
        t.report(&[record(at(&app, -120), -1.28, 36.82, 0, false, &[])])
            .await,
        1
    );

    // Six days late: nothing. Seven: a scheduled immobilization, announced.
    publish(&app, &arrears(contract, customer.id, vehicle, 6)).await;
    publish(&app, &arrears(contract, customer.id, vehicle, 7)).await;
    let first = app
        .eventually("the policy's command", || async {
            open_commands(&app, &admin.token, vehicle)
                .await
                .into_iter()
                .find(|c| c["status"] == "queued")
        })
        .await;
    assert_eq!(first["source"], "policy");
    let warned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'telematics.immobilization.scheduled.v1'",
    )
    .fetch_one(telematics(&app).db.reader())
    .await
    .unwrap();
    assert_eq!(warned, 1);
    // Parked all along, but the warning period holds it back.
    assert_eq!(t.command(Duration::from_millis(300)).await, None);
    // The customer pays within the warning: cancelled.
    publish(&app, &arrears(contract, customer.id, vehicle, 2)).await;
    wait_status(
        &app,
        &admin.token,
        first["id"].as_str().unwrap(),
        "cancelled",
    )
    .await;

    // Late again, and this time the warning runs out.
    publish(&app, &arrears(contract, customer.id, vehicle, 9)).await;
    let second = app
        .eventually("the second command", || async {
            open_commands(&app, &admin.token, vehicle)
                .await
                .into_iter()
                .find(|c| c["status"] == "queued")
        })
        .await;
    app.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    // Access tokens expired meanwhile, by the same clock.
    let fresh = |a: &Account, token: &Value| Account {
        token: token["access_token"].as_str().unwrap().to_owned(),
        ..a.clone()
    };
    let admin = fresh(&admin, &app.login(&admin.phone, PASSWORD).await);
    let customer = fresh(&customer, &app.login(&customer.phone, PASSWORD).await);
    assert_eq!(
        t.command(Duration::from_secs(5)).await.as_deref(),
        Some("setdigout 1")
    );
    t.reply("DOUT1:1").await;
    wait_status(
        &app,
        &admin.token,
        second["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;

    // Back to current: restored automatically.
    publish(&app, &arrears(contract, customer.id, vehicle, 0)).await;
    assert_eq!(
        t.command(Duration::from_secs(5)).await.as_deref(),
        Some("setdigout 0")
    );
    t.reply("DOUT1:0").await;
    let restore = app
        .eventually("the restore", || async {
            open_commands(&app, &admin.token, vehicle)
                .await
                .into_iter()
                .find(|c| c["action"] == "restore" && c["status"] == "acknowledged")
        })
        .await;
    assert_eq!(restore["source"], "policy");
    // The customer sees their vehicle's command history too.
    assert_eq!(open_commands(&app, &customer.token, vehicle).await.len(), 3);
}

#[tokio::test]
async fn paused_contracts_are_exempt_and_paid_off_ones_lose_their_tracker() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let contract = hold(&app, vehicle, &customer).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    assert_eq!(
        t.report(&[record(at(&app, -120), -1.28, 36.82, 0, false, &[])])
            .await,
        1
    );

    publish(
        &app,
        &ContractPaused {
            contract_id: contract,
            customer_id: customer.id,
            vehicle_id: vehicle,
            days: 30,
            reason: "hardship".into(),
        },
    )
    .await;
    publish(&app, &arrears(contract, customer.id, vehicle, 30)).await;
    let db = telematics(&app).db.clone();
    app.eventually("the policy to see the arrears", || {
        let db = db.clone();
        async move {
            let d: Option<i64> = sqlx::query_scalar(
                "SELECT days_past_due FROM contract_policy WHERE contract_id = $1",
            )
            .bind(contract.to_string())
            .fetch_optional(db.reader())
            .await
            .ok()?;
            (d == Some(30)).then_some(())
        }
    })
    .await;
    assert!(open_commands(&app, &admin.token, vehicle).await.is_empty());

    publish(
        &app,
        &ContractPaidOff {
            contract_id: contract,
            customer_id: customer.id,
            vehicle_id: vehicle,
        },
    )
    .await;
    app.eventually("the tracker to be decommissioned", || async {
        let (_, dev) = app
            .get(&format!("/api/v1/devices/{}", d.id), Some(&admin.token))
            .await;
        (dev["status"] == "decommissioned").then_some(())
    })
    .await;
    let said: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'telematics.device.decommissioned.v1'",
    )
    .fetch_one(telematics(&app).db.reader())
    .await
    .unwrap();
    assert_eq!(said, 1);
    // Its connection is dropped and it can no longer report.
    t.send(&miliki_telematics::protocol::teltonika::encode_avl(
        miliki_telematics::protocol::teltonika::CODEC_8E,
        &[record(at(&app, 0), -1.28, 36.82, 0, false, &[])],
    ))
    .await;
    assert_eq!(t.ack(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn gt06_trackers_get_the_relay_command_and_answer_it() {
    use miliki_telematics::protocol::gt06;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "gt06", vehicle).await;
    let mut s = tokio::net::TcpStream::connect(l.gt06).await.unwrap();
    s.write_all(&gt06::encode_login(&d.imei, 1)).await.unwrap();
    let mut ack = [0u8; 10];
    s.read_exact(&mut ack).await.unwrap();
    let parked = miliki_telematics::domain::position::Position {
        at: chrono::DateTime::from_timestamp(app.clock.now().timestamp(), 0).unwrap(),
        lat: -1.2921,
        lon: 36.8219,
        speed_kmh: 0.0,
        ..Default::default()
    };
    s.write_all(&gt06::encode_location(&parked, 2))
        .await
        .unwrap();
    wait_latest(&app, &admin.token, vehicle, parked.at).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let (status, c) = app
        .post(
            &format!("/api/v1/telematics/vehicles/{vehicle}/immobilization"),
            Some(&admin.token),
            json!({"action": "immobilize", "reason": "90 days past due, approved by the credit committee"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    // The command packet: 78 78 len 80 cmd-len flag(4) "Relay,1#" serial crc 0D 0A.
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a command")
        .unwrap();
    let packet = &buf[..n];
    assert_eq!(&packet[..2], &[0x78, 0x78]);
    assert_eq!(packet[3], 0x80);
    let text_len = packet[4] as usize - 4;
    assert_eq!(&packet[9..9 + text_len], b"Relay,1#");
    let flag = &packet[5..9];
    // The tracker's reply (0x15) echoes the server flag.
    let mut content = vec![(4 + 11) as u8];
    content.extend_from_slice(flag);
    content.extend_from_slice(b"Relay,1 OK!");
    s.write_all(&gt06::encode(0x15, &content, 3)).await.unwrap();
    let done = wait_status(
        &app,
        &admin.token,
        c["id"].as_str().unwrap(),
        "acknowledged",
    )
    .await;
    assert_eq!(done["response"], "Relay,1 OK!");
}

#[tokio::test]
async fn admins_cancel_waiting_commands() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let vehicle = Uuid::now_v7();
    register(&app, &admin, "teltonika", vehicle).await;
    hold(&app, vehicle, &customer).await;
    let (status, c) = app
        .post(
            &format!("/api/v1/telematics/vehicles/{vehicle}/immobilization"),
            Some(&admin.token),
            json!({"action": "immobilize", "reason": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    let path = format!(
        "/api/v1/telematics/commands/{}/cancel",
        c["id"].as_str().unwrap()
    );
    let (status, body) = app
        .post(&path, Some(&customer.token), json!({"reason": "no"}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app.post(&path, Some(&admin.token), json!({})).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["reason"]);
    let (status, body) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"reason": "paid at the branch"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"reason": "again"}))
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    // The holder sees the history; a stranger does not.
    let stranger = app.customer().await;
    let (status, body) = app
        .get(
            &format!("/api/v1/telematics/commands/{}", c["id"].as_str().unwrap()),
            Some(&stranger.token),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, _) = app
        .get(
            &format!("/api/v1/telematics/commands/{}", c["id"].as_str().unwrap()),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
