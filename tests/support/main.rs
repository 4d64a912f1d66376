//! The support service through its public surface: tickets and notifications
//! over HTTP via the gateway of an embedded app (SQLite by default,
//! PostgreSQL/RabbitMQ when the MILIKI_TEST_* variables are set), with a
//! clock the tests move.

// Amounts are written as shillings_cents (1_234_50 is KES 1,234.50).
#![allow(clippy::inconsistent_digit_grouping)]

#[path = "../common/mod.rs"]
mod common;

mod channels;

use chrono::Duration;
use common::{assert_problem, invalid_fields, Account, TestApp};
use miliki_events::catalogue::{payments, telematics, users, vehicles};
use miliki_events::envelope::EventPayload;
use miliki_platform::clock::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

async fn publish<P: EventPayload>(app: &TestApp, payload: &P) {
    let deps = app.users();
    let mut tx = deps.db.begin().await.unwrap();
    deps.events.write(&mut tx, payload).await.unwrap();
    deps.events.commit(tx).await.unwrap();
}

fn support(app: &TestApp) -> &miliki_events::service::ServiceDeps {
    app.runtime().deps("support").expect("support service")
}

/// Logs `who` in again: moving the clock expires access tokens.
async fn relogin(app: &TestApp, who: &mut Account) {
    let t = app.login(&who.phone, common::PASSWORD).await;
    who.token = t["access_token"].as_str().unwrap().to_owned();
}

async fn ticket(app: &TestApp, who: &Account, body: Value) -> Value {
    let (status, t) = app.post("/api/v1/tickets", Some(&who.token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    t
}

fn basic() -> Value {
    json!({"subject": "Brake noise", "body": "The rear brake squeals", "category": "vehicle"})
}

async fn ids(app: &TestApp, path: &str, who: &Account) -> Vec<String> {
    let (status, page) = app.get(path, Some(&who.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the support service has learned of `customer` (its standing
/// projection), so an agent's book includes them.
async fn known(app: &TestApp, customer: &Account) {
    let db = support(app).db.clone();
    let id = customer.id.to_string();
    app.eventually("support to learn the customer", || {
        let (db, id) = (db.clone(), id.clone());
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM user_standing WHERE user_id = $1")
                    .bind(id)
                    .fetch_one(db.reader())
                    .await
                    .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn tickets_follow_role_and_owner_rules() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let other_agent = app.agent().await;
    let mine = app.customer_of(&agent).await;
    let stranger = app.customer().await;
    known(&app, &mine).await;
    known(&app, &stranger).await;

    // A customer opens one for themselves; the SLA targets come from the priority.
    let t = ticket(&app, &mine, basic()).await;
    assert_eq!(t["status"], "open");
    assert_eq!(t["priority"], "normal");
    assert_eq!(t["customer_id"], mine.id.to_string());
    assert_eq!(t["first_response_due"], "2026-03-02T16:00:00Z");
    let id = t["id"].as_str().unwrap().to_owned();

    // Not for someone else.
    let mut body = basic();
    body["customer_id"] = json!(stranger.id);
    let (s, b) = app
        .post("/api/v1/tickets", Some(&mine.token), body.clone())
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    // An agent for a customer in their book, not outside it.
    let mut for_mine = basic();
    for_mine["customer_id"] = json!(mine.id);
    for_mine["priority"] = json!("high");
    let by_agent = ticket(&app, &agent, for_mine.clone()).await;
    assert_eq!(by_agent["created_by"], agent.id.to_string());
    let (s, b) = app
        .post("/api/v1/tickets", Some(&agent.token), body.clone())
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post("/api/v1/tickets", Some(&agent.token), basic())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // Admins for anyone.
    let for_stranger = ticket(&app, &admin, body).await;

    // Bad inputs: named fields, nothing written.
    let (s, b) = app
        .post(
            "/api/v1/tickets",
            Some(&mine.token),
            json!({"subject": " ", "body": "x", "category": "weather", "priority": "asap"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let mut fields = invalid_fields(&b);
    fields.sort();
    assert_eq!(fields, ["category", "priority", "subject"]);
    let mut extra = basic();
    extra["status"] = json!("resolved");
    let (s, _) = app.post("/api/v1/tickets", Some(&mine.token), extra).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.post("/api/v1/tickets", None, basic()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .post("/api/v1/tickets", Some("forged.token.here"), basic())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Who sees what.
    assert_eq!(ids(&app, "/api/v1/tickets", &mine).await.len(), 2);
    assert!(
        ids(&app, "/api/v1/tickets", &stranger).await
            == vec![for_stranger["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(ids(&app, "/api/v1/tickets", &agent).await.len(), 2);
    assert!(ids(&app, "/api/v1/tickets", &other_agent).await.is_empty());
    assert_eq!(ids(&app, "/api/v1/tickets", &admin).await.len(), 3);
    let (s, b) = app
        .get(&format!("/api/v1/tickets/{id}"), Some(&stranger.token))
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not-found");
    let (s, _) = app
        .get(&format!("/api/v1/tickets/{id}"), Some(&other_agent.token))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get(&format!("/api/v1/tickets/{id}"), Some(&agent.token))
        .await;
    assert_eq!(s, StatusCode::OK);

    // Filters, text search, cursors.
    assert_eq!(
        ids(&app, "/api/v1/tickets?priority=high", &admin).await,
        vec![by_agent["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        ids(&app, "/api/v1/tickets?category=payment", &admin)
            .await
            .len(),
        0
    );
    ticket(
        &app,
        &mine,
        json!({"subject": "M-Pesa payment missing", "body": "Paid 5,000 on Monday", "category": "payment"}),
    )
    .await;
    assert_eq!(
        ids(&app, "/api/v1/tickets?q=m-pesa%20MONDAY", &mine)
            .await
            .len(),
        1
    );
    assert_eq!(ids(&app, "/api/v1/tickets?q=100%25", &mine).await.len(), 0);
    let (s, b) = app
        .get("/api/v1/tickets?status=nope&limit=0", Some(&admin.token))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut f = invalid_fields(&b);
    f.sort();
    assert_eq!(f, ["limit", "status"]);
    let (_, first) = app.get("/api/v1/tickets?limit=2", Some(&admin.token)).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(
            &format!("/api/v1/tickets?limit=2&cursor={cursor}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert!(second["next_cursor"].is_null());
    let (s, _) = app
        .get("/api/v1/tickets?cursor=garbage", Some(&admin.token))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn internal_notes_never_reach_customers_and_the_status_machine_holds() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin().await;
    let mut agent = app.agent().await;
    let mut customer = app.customer_of(&agent).await;
    known(&app, &customer).await;
    let t = ticket(&app, &customer, basic()).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let path = |rest: &str| format!("/api/v1/tickets/{id}{rest}");

    // Customers cannot move an open ticket or take it.
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&customer.token),
            json!({"status": "in_progress"}),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = app
        .post(
            &path("/assign"),
            Some(&customer.token),
            json!({"assignee_id": customer.id}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Agents take tickets themselves only.
    let (s, _) = app
        .post(
            &path("/assign"),
            Some(&agent.token),
            json!({"assignee_id": admin.id}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app
        .post(
            &path("/assign"),
            Some(&agent.token),
            json!({"assignee_id": agent.id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["assignee_id"], agent.id.to_string());
    assert_eq!(
        ids(
            &app,
            &format!("/api/v1/tickets?assignee={}", agent.id),
            &admin
        )
        .await
        .len(),
        1
    );

    // An internal note, then a reply.
    let (s, _) = app
        .post(
            &path("/comments"),
            Some(&customer.token),
            json!({"body": "psst", "internal": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app
        .post(
            &path("/comments"),
            Some(&agent.token),
            json!({"body": "Customer sounds upset; check fleet notes", "internal": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(
        b["first_response_at"].is_null(),
        "an internal note is no response"
    );
    let (s, b) = app
        .post(
            &path("/comments"),
            Some(&agent.token),
            json!({"body": "Please bring it to the Westlands branch"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(b["first_response_at"].is_string());
    let (_, seen) = app.get(&path(""), Some(&customer.token)).await;
    let bodies: Vec<&str> = seen["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Please bring it to the Westlands branch"]);
    assert!(!seen.to_string().contains("upset"));
    let (_, staff) = app.get(&path(""), Some(&admin.token)).await;
    assert_eq!(staff["comments"].as_array().unwrap().len(), 2);

    // The reply (not the note) became an in-app notification.
    let list = app
        .eventually("the ticket reply notification", || async {
            let (_, page) = app
                .get("/api/v1/notifications", Some(&customer.token))
                .await;
            let items = page["items"].as_array()?.clone();
            (!items.is_empty()).then_some(items)
        })
        .await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["template"], "ticket_reply");
    assert!(list[0]["body"].as_str().unwrap().contains("Brake noise"));

    // waiting_on_customer → the customer's answer puts it back in progress.
    let (s, _) = app
        .post(
            &path("/status"),
            Some(&agent.token),
            json!({"status": "waiting_on_customer"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = app
        .post(
            &path("/comments"),
            Some(&customer.token),
            json!({"body": "Tomorrow at 9"}),
        )
        .await;
    assert_eq!(b["status"], "in_progress");
    // Not rateable yet; no such move.
    let (s, _) = app
        .post(&path("/rating"), Some(&customer.token), json!({"score": 5}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&agent.token),
            json!({"status": "open"}),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    let (s, _) = app
        .post(
            &path("/status"),
            Some(&agent.token),
            json!({"status": "archived"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&agent.token),
            json!({"status": "resolved", "reason": "pads replaced"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["resolved_at"].is_string());

    // Rating: the customer, once, 1–5.
    let (s, _) = app
        .post(&path("/rating"), Some(&agent.token), json!({"score": 5}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app
        .post(&path("/rating"), Some(&customer.token), json!({"score": 6}))
        .await;
    assert_eq!(invalid_fields(&b), ["score"], "{s}");
    let (s, b) = app
        .post(
            &path("/rating"),
            Some(&customer.token),
            json!({"score": 4, "comment": "quick"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["rating"], 4);
    let (s, _) = app
        .post(&path("/rating"), Some(&customer.token), json!({"score": 1}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Reopen within the window (7 days by default), not after.
    app.clock.advance(Duration::days(2));
    relogin(&app, &mut customer).await;
    relogin(&app, &mut agent).await;
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&customer.token),
            json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = app
        .post(
            &path("/status"),
            Some(&agent.token),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.clock.advance(Duration::days(8));
    relogin(&app, &mut customer).await;
    relogin(&app, &mut agent).await;
    relogin(&app, &mut admin).await;
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&customer.token),
            json!({"status": "in_progress"}),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    let (s, b) = app
        .post(
            &path("/status"),
            Some(&customer.token),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["closed_at"].is_string());
    let (s, _) = app
        .post(
            &path("/comments"),
            Some(&agent.token),
            json!({"body": "late"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app
        .post(
            &path("/status"),
            Some(&admin.token),
            json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn service_levels_breach_on_the_clock_with_an_event_and_an_overdue_filter() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin().await;
    let customer = app.customer().await;
    let urgent = ticket(
        &app,
        &customer,
        json!({"subject": "Stranded", "body": "Engine died on Thika Road", "category": "breakdown", "priority": "urgent"}),
    )
    .await;
    let normal = ticket(&app, &customer, basic()).await;
    let urgent_id = urgent["id"].as_str().unwrap().to_owned();
    assert_eq!(urgent["first_response_due"], "2026-03-02T09:00:00Z");
    assert!(ids(&app, "/api/v1/tickets?overdue=true", &admin)
        .await
        .is_empty());

    app.clock.advance(Duration::minutes(61));
    relogin(&app, &mut admin).await;
    let breached = app
        .eventually("the first-response breach", || async {
            let (_, t) = app
                .get(&format!("/api/v1/tickets/{urgent_id}"), Some(&admin.token))
                .await;
            (t["response_breached"] == true).then_some(t)
        })
        .await;
    assert_eq!(breached["overdue"], true);
    assert_eq!(breached["resolution_breached"], false);
    assert_eq!(
        ids(&app, "/api/v1/tickets?overdue=true", &admin).await,
        vec![urgent_id.clone()]
    );
    let (_, n) = app
        .get(
            &format!("/api/v1/tickets/{}", normal["id"].as_str().unwrap()),
            Some(&admin.token),
        )
        .await;
    assert_eq!(n["response_breached"], false);

    // One breach event for the target, however often the job looks.
    let db = support(&app).db.clone();
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'support.ticket.sla_breached.v1'",
        )
        .fetch_one(db.reader())
        .await
        .unwrap()
    };
    assert_eq!(count().await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(count().await, 1);

    // Answering clears the overdue flag until the resolution target passes too.
    let (s, _) = app
        .post(
            &format!("/api/v1/tickets/{urgent_id}/comments"),
            Some(&admin.token),
            json!({"body": "A tow truck is on its way"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(ids(&app, "/api/v1/tickets?overdue=true", &admin)
        .await
        .is_empty());
    app.clock.advance(Duration::hours(4));
    relogin(&app, &mut admin).await;
    app.eventually("the resolution breach", || async {
        let (_, t) = app
            .get(&format!("/api/v1/tickets/{urgent_id}"), Some(&admin.token))
            .await;
        (t["resolution_breached"] == true).then_some(())
    })
    .await;
    assert_eq!(count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_crash_opens_one_urgent_accident_ticket_for_the_holder() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let vehicle = Uuid::now_v7();
    publish(
        &app,
        &payments::ContractActivated {
            contract_id: Uuid::now_v7(),
            customer_id: customer.id,
            vehicle_id: vehicle,
        },
    )
    .await;
    let risk = |kind: &str| telematics::RiskDetected {
        event_id: Uuid::now_v7(),
        vehicle_id: vehicle,
        device_id: Uuid::now_v7(),
        kind: kind.into(),
        severity: "high".into(),
        at: app.clock.now(),
        lat: -1.2921,
        lon: 36.8219,
        details: json!({}),
    };
    // Harsh braking is no accident.
    publish(&app, &risk("harsh_braking")).await;
    publish(&app, &risk("crash")).await;
    let t = app
        .eventually("the crash ticket", || async {
            let (_, page) = app
                .get("/api/v1/tickets?category=accident", Some(&admin.token))
                .await;
            page["items"].as_array()?.first().cloned()
        })
        .await;
    assert_eq!(t["priority"], "urgent");
    assert_eq!(t["customer_id"], customer.id.to_string());
    assert_eq!(t["vehicle_id"], vehicle.to_string());
    assert!(t["created_by"].is_null());
    assert!(t["body"].as_str().unwrap().contains("-1.29210"));
    // The customer sees it too; only one ticket in all.
    assert_eq!(ids(&app, "/api/v1/tickets", &customer).await.len(), 1);
    assert_eq!(ids(&app, "/api/v1/tickets", &admin).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn attachments_are_sniffed_capped_and_private() {
    let app = TestApp::spawn_with(|s| s.max_upload_bytes = 64 * 1024).await;
    let customer = app.customer().await;
    let stranger = app.customer().await;
    let t = ticket(&app, &customer, basic()).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let upload = |who: &Account, bytes: Vec<u8>, field: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            field,
            reqwest::multipart::Part::bytes(bytes).file_name("brake.jpg"),
        );
        app.client
            .post(app.url(&format!("/api/v1/tickets/{id}/attachments")))
            .bearer_auth(&who.token)
            .multipart(form)
            .send()
    };
    let r = upload(&customer, common::png(), "file").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["content_type"], "image/png");
    // A text file named .jpg is refused; so is too much; so is a stranger.
    let r = upload(&customer, b"just words, not a picture".to_vec(), "file")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = upload(&customer, vec![0u8; 70 * 1024], "file")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = upload(&customer, common::png(), "photo").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = upload(&stranger, common::png(), "file").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Listed on the ticket, downloadable by its owner only.
    let (_, t) = app
        .get(&format!("/api/v1/tickets/{id}"), Some(&customer.token))
        .await;
    assert_eq!(t["attachments"].as_array().unwrap().len(), 1);
    let url = a["url"].as_str().unwrap();
    let r = app
        .client
        .get(app.url(url))
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), common::png());
    let (s, _) = app.get(url, Some(&stranger.token)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

// ---------------------------------------------------------------- notifications

async fn sandbox(app: &TestApp, which: &str) -> Vec<Value> {
    let (s, b) = app.get(&format!("/sandbox/{which}/messages"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

async fn sms_to(app: &TestApp, which: &str, number: &str) -> Vec<String> {
    sandbox(app, which)
        .await
        .iter()
        .filter(|m| m["request"]["to"] == number)
        .map(|m| m["request"]["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets `who`'s preferences with every channel addressed.
async fn subscribe(app: &TestApp, who: &Account, language: &str, extra: Value) -> String {
    let number = common::unique_phone();
    let mut body = json!({
        "language": language,
        "sms_number": number,
        "email": format!("c{}@example.com", who.id.simple()),
        "push_token": format!("fcm-{}", who.id.simple()),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.set_preferences(who, body).await;
    number
}

#[tokio::test]
async fn each_event_kind_notifies_on_every_channel_in_the_customers_language() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let mut swahili = app.customer().await;
    let mut english = app.customer().await;
    let sw_number = subscribe(&app, &swahili, "sw", json!({})).await;
    let en_number = subscribe(&app, &english, "en", json!({})).await;
    let contract = Uuid::now_v7();
    let vehicle = Uuid::now_v7();
    let now = app.clock.now();

    for c in [&swahili, &english] {
        let id = c.id;
        publish(
            &app,
            &users::KycApproved {
                submission_id: Uuid::now_v7(),
                user_id: id,
                reviewed_by: admin.id,
            },
        )
        .await;
        publish(
            &app,
            &users::KycRejected {
                submission_id: Uuid::now_v7(),
                user_id: id,
                reviewed_by: admin.id,
                reason: "blurred photo".into(),
            },
        )
        .await;
        publish(
            &app,
            &users::KycResubmissionRequested {
                submission_id: Uuid::now_v7(),
                user_id: id,
                reviewed_by: admin.id,
                reason: "expired ID".into(),
            },
        )
        .await;
        publish(
            &app,
            &vehicles::ReservationCreated {
                reservation_id: Uuid::now_v7(),
                vehicle_id: vehicle,
                customer_id: id,
                expires_at: now + Duration::hours(48),
            },
        )
        .await;
        publish(
            &app,
            &payments::ContractActivated {
                contract_id: contract,
                customer_id: id,
                vehicle_id: vehicle,
            },
        )
        .await;
        publish(
            &app,
            &payments::PaymentReceived {
                payment_id: Uuid::now_v7(),
                contract_id: contract,
                customer_id: id,
                amount_minor: 1_234_50,
                currency: "KES".into(),
                method: "mpesa".into(),
                days_late: 0,
            },
        )
        .await;
        publish(
            &app,
            &payments::ArrearsChanged {
                contract_id: contract,
                customer_id: id,
                vehicle_id: vehicle,
                days_past_due: 3,
                bucket: "1-7".into(),
                overdue_minor: 500_00,
            },
        )
        .await;
        publish(
            &app,
            &telematics::ImmobilizationScheduled {
                command_id: Uuid::now_v7(),
                vehicle_id: vehicle,
                contract_id: contract,
                customer_id: id,
                days_past_due: 7,
                not_before: now + Duration::hours(24),
            },
        )
        .await;
        publish(
            &app,
            &payments::ContractPaidOff {
                contract_id: contract,
                customer_id: id,
                vehicle_id: vehicle,
            },
        )
        .await;
        publish(
            &app,
            &payments::ContractOwnershipTransferred {
                contract_id: contract,
                customer_id: id,
                vehicle_id: vehicle,
            },
        )
        .await;
    }
    // Credit's decision, matched by its type name.
    {
        let deps = app.users();
        for c in [&swahili, &english] {
            let event = miliki_events::Event {
                specversion: "1.0".into(),
                id: Uuid::now_v7(),
                source: "credit".into(),
                event_type: "credit.application.decided.v1".into(),
                time: app.clock.now(),
                subject: None,
                datacontenttype: "application/json".into(),
                data: json!({"application_id": Uuid::now_v7(), "customer_id": c.id, "status": "approved", "score": 710, "reasons": []}),
                traceparent: None,
                tracestate: None,
            };
            let state = miliki_support::AppState::new(support(&app).clone());
            let consumer = miliki_support::events::Consumer { state };
            miliki_events::EventHandler::handle(&consumer, &event)
                .await
                .unwrap();
        }
        let _ = deps;
    }
    let expected = [
        "kyc_approved",
        "kyc_rejected",
        "kyc_resubmission",
        "reservation_made",
        "contract_active",
        "payment_received",
        "arrears",
        "immobilization_warning",
        "paid_off",
        "ownership_transferred",
        "application_decided",
    ];
    // Low priority: listed in-app at once, held for the evening digest elsewhere.
    let sent = expected.len() - ["reservation_made"].len();
    for (who, number, lang) in [(&swahili, &sw_number, "sw"), (&english, &en_number, "en")] {
        let items = app
            .eventually("every in-app notification", || async {
                let (_, page) = app
                    .get("/api/v1/notifications?limit=100", Some(&who.token))
                    .await;
                let items = page["items"].as_array()?.clone();
                (items.len() == expected.len()).then_some(items)
            })
            .await;
        for t in expected {
            let n = items
                .iter()
                .find(|n| n["template"] == t)
                .unwrap_or_else(|| panic!("{t}"));
            assert_eq!(n["language"], lang, "{t}");
        }
        // The reminder is held for 6 h before the reservation ends, not shown yet.
        assert!(items
            .iter()
            .all(|n| n["template"] != "reservation_expiring"));
        let receipt = items
            .iter()
            .find(|n| n["template"] == "payment_received")
            .unwrap();
        assert!(receipt["body"].as_str().unwrap().contains("KES 1,234.50"));
        let sms = app
            .eventually("every SMS", || async {
                let got = sms_to(&app, "sms", number).await;
                (got.len() == sent).then_some(got)
            })
            .await;
        let approved = if lang == "sw" {
            "kimethibitishwa"
        } else {
            "verified"
        };
        assert!(sms.iter().any(|m| m.contains(approved)), "{sms:?}");
        // Push is delivered on its own: wait for it as for the others.
        let mine: Vec<Value> = app
            .eventually("every push", || async {
                let push = sandbox(&app, "push").await;
                let mine: Vec<Value> = push
                    .into_iter()
                    .filter(|m| {
                        m["request"]["message"]["token"] == format!("fcm-{}", who.id.simple())
                    })
                    .collect();
                (mine.len() == sent).then_some(mine)
            })
            .await;
        assert_eq!(mine[0]["request"]["project"], "sandbox");
    }
    // Email went to the sink, readable by admins only.
    let (s, _) = app
        .get("/api/v1/notifications/email-sink", Some(&english.token))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let sink = app
        .eventually("the email sink", || async {
            let (_, b) = app
                .get("/api/v1/notifications/email-sink", Some(&admin.token))
                .await;
            let all = b.as_array()?.clone();
            (all.len() == 2 * sent).then_some(all)
        })
        .await;
    assert!(sink
        .iter()
        .any(|e| e["subject"] == "Your vehicle will be immobilized"));
    assert!(sink.iter().any(|e| e["subject"] == "Gari lako litazimwa"));

    // The reservation reminder shows up when the clock reaches it, everywhere.
    app.clock.advance(Duration::hours(43));
    relogin(&app, &mut english).await;
    relogin(&app, &mut swahili).await;
    app.eventually("the reservation reminder by SMS", || async {
        sms_to(&app, "sms", &en_number)
            .await
            .iter()
            .any(|m| m.contains("reservation ends"))
            .then_some(())
    })
    .await;
    let (_, page) = app
        .get("/api/v1/notifications?limit=100", Some(&english.token))
        .await;
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["template"] == "reservation_expiring"));

    // Unread count, mark read; not someone else's.
    let (_, c) = app
        .get("/api/v1/notifications/unread-count", Some(&english.token))
        .await;
    assert_eq!(c["unread"], expected.len() + 1);
    let first = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&swahili.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .post(
            &format!("/api/v1/notifications/{first}/read"),
            Some(&english.token),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["read_at"].is_string());
    let (_, c) = app
        .get("/api/v1/notifications/unread-count", Some(&english.token))
        .await;
    assert_eq!(c["unread"], expected.len());
    let (_, unread) = app
        .get(
            "/api/v1/notifications?unread=true&limit=100",
            Some(&english.token),
        )
        .await;
    assert_eq!(unread["items"].as_array().unwrap().len(), expected.len());
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_sends_nothing_twice() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let number = subscribe(&app, &customer, "en", json!({})).await;
    let event = miliki_events::Event::new(
        "payments",
        app.clock.now(),
        &payments::ContractPaidOff {
            contract_id: Uuid::now_v7(),
            customer_id: customer.id,
            vehicle_id: Uuid::now_v7(),
        },
    );
    let state = miliki_support::AppState::new(support(&app).clone());
    let consumer = miliki_support::events::Consumer { state };
    for _ in 0..3 {
        miliki_events::EventHandler::handle(&consumer, &event)
            .await
            .unwrap();
    }
    app.eventually("the SMS", || async {
        (sms_to(&app, "sms", &number).await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(sms_to(&app, "sms", &number).await.len(), 1);
    let (_, page) = app
        .get("/api/v1/notifications", Some(&customer.token))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, all) = app
        .get("/api/v1/notifications/outbox", Some(&customer.token))
        .await;
    // One per channel: in-app, SMS, email, push.
    assert_eq!(all.as_array().unwrap().len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn quiet_hours_hold_a_receipt_but_not_an_immobilization_warning() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    // 08:00 UTC is 11:00 in Nairobi: inside 10:00–12:00.
    let number = subscribe(
        &app,
        &customer,
        "en",
        json!({"quiet_start": "10:00", "quiet_end": "12:00"}),
    )
    .await;
    let contract = Uuid::now_v7();
    publish(
        &app,
        &payments::PaymentReceived {
            payment_id: Uuid::now_v7(),
            contract_id: contract,
            customer_id: customer.id,
            amount_minor: 100_00,
            currency: "KES".into(),
            method: "mpesa".into(),
            days_late: 0,
        },
    )
    .await;
    publish(
        &app,
        &telematics::ImmobilizationScheduled {
            command_id: Uuid::now_v7(),
            vehicle_id: Uuid::now_v7(),
            contract_id: contract,
            customer_id: customer.id,
            days_past_due: 7,
            not_before: app.clock.now() + Duration::hours(24),
        },
    )
    .await;
    let got = app
        .eventually("the critical SMS", || async {
            let got = sms_to(&app, "sms", &number).await;
            (!got.is_empty()).then_some(got)
        })
        .await;
    assert!(got[0].contains("URGENT"));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        sms_to(&app, "sms", &number).await.len(),
        1,
        "the receipt waits"
    );
    // The delivery log says why.
    let (_, all) = app
        .get("/api/v1/notifications/outbox", Some(&customer.token))
        .await;
    let held = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["template"] == "payment_received" && n["channel"] == "sms")
        .unwrap();
    assert_eq!(held["send_after"], "2026-03-02T09:00:00Z");
    let (_, detail) = app
        .get(
            &format!("/api/v1/notifications/{}", held["id"].as_str().unwrap()),
            Some(&customer.token),
        )
        .await;
    assert!(detail["deliveries"][0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("held until"));
    app.clock.advance(Duration::minutes(61));
    app.eventually("the receipt after quiet hours", || async {
        (sms_to(&app, "sms", &number).await.len() == 2).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_failing_provider_is_retried_with_backoff_and_sms_fails_over() {
    let app = TestApp::spawn_with(|s| {
        s.extra.insert(
            "sms_fallback_base_url".into(),
            "/sandbox/sms-fallback".into(),
        );
    })
    .await;
    let customer = app.customer().await;
    let number = subscribe(
        &app,
        &customer,
        "en",
        json!({"channels": {"contracts": ["sms", "push"]}}),
    )
    .await;
    // SMS: the primary is down, the fallback takes it at once.
    let (s, _) = app
        .post("/sandbox/sms/outage", None, json!({"failures": 100}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Push: down for one request, then back.
    app.post("/sandbox/push/outage", None, json!({"failures": 1}))
        .await;
    publish(
        &app,
        &payments::ContractPaidOff {
            contract_id: Uuid::now_v7(),
            customer_id: customer.id,
            vehicle_id: Uuid::now_v7(),
        },
    )
    .await;
    app.eventually("the SMS through the fallback", || async {
        (sms_to(&app, "sms-fallback", &number).await.len() == 1).then_some(())
    })
    .await;
    assert!(sms_to(&app, "sms", &number).await.is_empty());
    // Only the chosen channels: no in-app, no email for contracts.
    let (_, page) = app
        .get("/api/v1/notifications", Some(&customer.token))
        .await;
    assert!(page["items"].as_array().unwrap().is_empty());
    let all = app
        .eventually("the push retry scheduled", || async {
            let (_, all) = app
                .get("/api/v1/notifications/outbox", Some(&customer.token))
                .await;
            let push = all
                .as_array()?
                .iter()
                .find(|n| n["channel"] == "push")?
                .clone();
            (push["attempts"] == 1 && push["status"] == "queued").then_some(all)
        })
        .await;
    let push = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["channel"] == "push")
        .unwrap()
        .clone();
    let sms = all
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["channel"] == "sms")
        .unwrap()
        .clone();
    // The first retry waits 30 s on the clock.
    assert_eq!(push["send_after"], "2026-03-02T08:00:30Z");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(sandbox(&app, "push").await.is_empty());
    app.clock.advance(Duration::seconds(31));
    app.eventually("the push after recovery", || async {
        (sandbox(&app, "push").await.len() == 1).then_some(())
    })
    .await;
    // The provider has it; its delivery is recorded just after.
    let steps: Vec<String> = app
        .eventually("the push delivery to be recorded", || async {
            let (_, detail) = app
                .get(
                    &format!("/api/v1/notifications/{}", push["id"].as_str().unwrap()),
                    Some(&customer.token),
                )
                .await;
            let steps: Vec<String> = detail["deliveries"]
                .as_array()?
                .iter()
                .filter_map(|d| d["status"].as_str().map(str::to_owned))
                .collect();
            (steps.last().map(String::as_str) == Some("sent")).then_some(steps)
        })
        .await;
    assert_eq!(steps, ["queued", "failed", "retry_scheduled", "sent"]);
    let (_, detail) = app
        .get(
            &format!("/api/v1/notifications/{}", sms["id"].as_str().unwrap()),
            Some(&customer.token),
        )
        .await;
    let steps: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "failed", "sent"], "{detail}");
    assert!(detail["deliveries"][1]["detail"]
        .as_str()
        .unwrap()
        .contains("503"));
    // Others cannot read the log.
    let stranger = app.customer().await;
    let (s, _) = app
        .get(
            &format!("/api/v1/notifications/{}", push["id"].as_str().unwrap()),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn preferences_are_validated_and_the_customers_own() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let agent = app.agent().await;
    let (s, p) = app
        .get("/api/v1/notifications/preferences", Some(&customer.token))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["language"], "en");
    let shared = &app;
    let put = |who: &Account, body: Value| {
        let token = who.token.clone();
        async move {
            shared
                .send(
                    Method::PUT,
                    "/api/v1/notifications/preferences",
                    Some(&token),
                    Some(body),
                )
                .await
        }
    };
    let (s, b) = put(
        &customer,
        json!({"language": "fr", "channels": {"payments": ["pigeon"], "weather": ["sms"]}, "quiet_start": "25:00", "quiet_end": "07:00", "timezone": "Mars/Olympus", "sms_number": "12", "email": "nope"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut f = invalid_fields(&b);
    f.sort();
    assert_eq!(
        f,
        [
            "channels.payments",
            "channels.weather",
            "email",
            "language",
            "quiet_start",
            "sms_number",
            "timezone"
        ]
    );
    let (s, _) = put(&customer, json!({"quiet_start": "22:00"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = put(&customer, json!({"colour": "blue"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, p) = app
        .get("/api/v1/notifications/preferences", Some(&customer.token))
        .await;
    assert_eq!(p["language"], "en", "nothing changed");
    let (s, _) = put(&agent, json!({"language": "sw"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, p) = put(&customer, json!({"language": "sw", "sms_number": "0712 345 678", "quiet_start": "22:00", "quiet_end": "06:30"})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["sms_number"], "+254712345678");
    let (_, p) = app
        .get("/api/v1/notifications/preferences", Some(&customer.token))
        .await;
    assert_eq!(p["language"], "sw");
    assert_eq!(p["quiet_end"], "06:30");
    let (s, _) = app
        .get(
            "/api/v1/notifications/outbox?customer_id=00000000-0000-7000-8000-000000000000",
            Some(&customer.token),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn the_live_stream_delivers_new_in_app_notifications() {
    use futures::StreamExt;
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let resp = app
        .client
        .get(app.url("/api/v1/notifications/stream"))
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    publish(
        &app,
        &payments::ContractPaidOff {
            contract_id: Uuid::now_v7(),
            customer_id: customer.id,
            vehicle_id: Uuid::now_v7(),
        },
    )
    .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("paid_off") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event in time");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    assert!(seen.contains("event: notification"));
    let (s, _) = app.get("/api/v1/notifications/stream", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
