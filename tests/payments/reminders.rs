//! Installment-due reminders on the injected clock: payments' daily job
//! publishes `payments.installment.due.v1` two days before and on the due
//! date of each unpaid installment, once; support turns it into
//! notifications in the customer's language.

use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// An active weekly contract (first installment KES 2,454.00 due 2026-03-09).
async fn active(app: &TestApp, admin: &Account, customer: &Account) -> String {
    let p = create_product(app, admin, boda_product()).await;
    let c = create_contract(
        app,
        admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let (_, r) = pay(app, &admin.token, &id, deposit_due(&c)).await;
    assert_eq!(r["contract"]["status"], "active");
    id
}

/// The customer's in-app installment reminders, oldest first.
async fn reminders(app: &TestApp, who: &Account) -> Vec<Value> {
    let (s, page) = app
        .get("/api/v1/notifications?limit=100", Some(&who.token))
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let mut items: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["template"]
                .as_str()
                .is_some_and(|t| t.starts_with("installment_due"))
        })
        .cloned()
        .collect();
    items.reverse();
    items
}

async fn wait_reminders(app: &TestApp, who: &Account, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} installment reminders"), || async {
        let got = reminders(app, who).await;
        (got.len() == n).then_some(got)
    })
    .await
}

/// Waits until the daily job has aged `contract` through `day` (a pass ran that day).
async fn aged_through(app: &TestApp, contract: &str, day: &str) {
    let db = app.runtime().deps("payments").unwrap().db.clone();
    app.eventually("the daily job to pass", || {
        let db = db.clone();
        async move {
            let aged: String =
                sqlx::query_scalar("SELECT aged_through FROM contracts WHERE id = $1")
                    .bind(contract)
                    .fetch_one(db.reader())
                    .await
                    .ok()?;
            (aged == day).then_some(())
        }
    })
    .await;
    // Reminders follow ageing in the same pass; give it a few more passes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn reminders_go_two_days_before_and_on_the_day_once_and_not_when_paid_ahead() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let mut late = app.customer().await;
    let mut ahead = app.customer().await;
    let id = active(&app, &admin, &late).await;
    let ahead_id = active(&app, &admin, &ahead).await;
    // Swahili, by SMS too, with quiet hours 10:00-12:00 local (07:00-09:00 UTC).
    let number = unique_phone();
    app.set_preferences(
        &late,
        json!({"language": "sw", "sms_number": number, "quiet_start": "10:00", "quiet_end": "12:00"}),
    )
    .await;
    // The other pays the first installment ahead: it waits as credit.
    let (s, r) = pay(&app, &admin.token, &ahead_id, 2_454_00).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");

    // 2026-03-06 is three days before: nothing yet.
    advance_days(&app, 4, &mut [&mut admin, &mut late, &mut ahead]).await;
    aged_through(&app, &id, "2026-03-06").await;
    assert!(reminders(&app, &late).await.is_empty());

    // 2026-03-07, 11:00 local: two days before.
    advance_days(&app, 1, &mut [&mut admin, &mut late, &mut ahead]).await;
    let got = wait_reminders(&app, &late, 1).await;
    assert_eq!(got[0]["template"], "installment_due_soon");
    assert_eq!(got[0]["language"], "sw");
    let body = got[0]["body"].as_str().unwrap();
    assert!(body.contains("KES 2,454.00"), "{body}");
    assert!(body.contains("2026-03-09"), "{body}");
    assert!(body.contains("Awamu ya 1 "), "{body}");
    // By SMS the two-day reminder is low priority: held for the 18:00 local digest.
    let (_, outbox) = app
        .get("/api/v1/notifications/outbox", Some(&late.token))
        .await;
    let sms = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["template"] == "installment_due_soon" && n["channel"] == "sms")
        .expect("the SMS reminder")
        .clone();
    assert_eq!(sms["send_after"], "2026-03-07T15:00:00Z");
    assert_eq!(sms["status"], "digest");

    // A second replica's pass (or a restart) publishes nothing again.
    let payments = app.runtime().deps("payments").unwrap().clone();
    let replica = miliki_payments::AppState::new(payments).unwrap();
    let again = miliki_payments::reminders::remind_due(&replica, replica.today(), app.clock.now())
        .await
        .unwrap();
    assert_eq!(again, 0);

    // 2026-03-09: the day itself.
    advance_days(&app, 2, &mut [&mut admin, &mut late, &mut ahead]).await;
    let got = wait_reminders(&app, &late, 2).await;
    assert_eq!(got[1]["template"], "installment_due_today");
    assert!(got[1]["subject"].as_str().unwrap().contains("leo"));
    // On the day it is normal priority and obeys the quiet hours: held until 12:00 local.
    let (_, outbox) = app
        .get("/api/v1/notifications/outbox", Some(&late.token))
        .await;
    let sms = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["template"] == "installment_due_today" && n["channel"] == "sms")
        .expect("the SMS reminder")
        .clone();
    assert_eq!(sms["send_after"], "2026-03-09T09:00:00Z");
    let again = miliki_payments::reminders::remind_due(&replica, replica.today(), app.clock.now())
        .await
        .unwrap();
    assert_eq!(again, 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(reminders(&app, &late).await.len(), 2, "nothing twice");

    // Paid ahead: neither reminder, on either day.
    aged_through(&app, &ahead_id, "2026-03-09").await;
    assert!(reminders(&app, &ahead).await.is_empty());
    let d = contract(&app, &admin.token, &ahead_id).await;
    assert_eq!(d["schedule"][1]["state"], "paid", "{d}");
    app.stop().await;
}

#[tokio::test]
async fn a_clock_that_jumps_past_a_due_date_sends_no_stale_reminder() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let mut customer = app.customer().await;
    let id = active(&app, &admin, &customer).await;
    // From 2026-03-02 straight to 2026-03-10: installment 1 (03-09) is past.
    advance_days(&app, 8, &mut [&mut admin, &mut customer]).await;
    aged_through(&app, &id, "2026-03-10").await;
    assert!(reminders(&app, &customer).await.is_empty());
    // The next one is reminded on time: installment 2 is due 03-16.
    advance_days(&app, 4, &mut [&mut admin, &mut customer]).await;
    let got = wait_reminders(&app, &customer, 1).await;
    assert_eq!(got[0]["template"], "installment_due_soon");
    assert_eq!(got[0]["language"], "en");
    let body = got[0]["body"].as_str().unwrap();
    assert!(body.contains("Installment 2 "), "{body}");
    assert!(body.contains("2026-03-16"), "{body}");
    // Installment 1 is still unpaid, so collection will ask for both.
    assert!(
        body.contains("KES 4,908.00") || body.contains("KES 5,408.00"),
        "{body}"
    );
    app.stop().await;
}
