//! Real providers' wire formats: email over SMTP to a receiver written here
//! (a real peer speaking SMTP), the digest of low-priority messages, FCM
//! access tokens minted from a service account, and the per-customer rate
//! limit. All on the clock the tests move.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use miliki_events::catalogue::{payments, telematics, vehicles};
use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

use super::common::TestApp;
use super::{publish, sandbox, sms_to, subscribe};

// ---------------------------------------------------------------- an SMTP receiver

/// One message the receiver took in (whatever it answered).
#[derive(Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

#[derive(Default)]
struct Mailbox {
    /// Answers to the end of DATA, in turn; `250 …` once empty.
    refusals: VecDeque<String>,
    received: Vec<Received>,
}

/// A small SMTP server on a free port: EHLO/HELO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT. Returns its port and what it received.
async fn smtp_receiver(refusals: &[&str]) -> (u16, Arc<Mutex<Mailbox>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mailbox = Arc::new(Mutex::new(Mailbox {
        refusals: refusals.iter().map(|r| (*r).to_owned()).collect(),
        received: Vec::new(),
    }));
    let shared = mailbox.clone();
    tokio::spawn(async move {
        let mut queued = 0u32;
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let mailbox = shared.clone();
            queued += 1;
            let id = queued;
            tokio::spawn(async move {
                let _ = write.write_all(b"220 receiver.test ESMTP ready\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let command = line.trim_end().to_owned();
                    let verb = command
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" => "250-receiver.test greets you\r\n250 8BITMIME\r\n".to_owned(),
                        "HELO" => "250 receiver.test\r\n".to_owned(),
                        "MAIL" => {
                            from = angle(&command);
                            to.clear();
                            "250 2.1.0 Ok\r\n".to_owned()
                        }
                        "RCPT" => {
                            to.push(angle(&command));
                            "250 2.1.5 Ok\r\n".to_owned()
                        }
                        "DATA" => {
                            let _ = write
                                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                                .await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                // Dot-unstuffing (RFC 5321 4.5.2).
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            }
                            let mut m = mailbox.lock().unwrap();
                            m.received.push(Received {
                                from: from.clone(),
                                to: to.clone(),
                                data,
                            });
                            match m.refusals.pop_front() {
                                Some(refusal) => format!("{refusal}\r\n"),
                                None => format!("250 2.0.0 Ok: queued as Q{id}\r\n"),
                            }
                        }
                        "RSET" => "250 2.0.0 Ok\r\n".to_owned(),
                        "NOOP" => "250 2.0.0 Ok\r\n".to_owned(),
                        "QUIT" => {
                            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        }
                        _ => "502 5.5.2 Command not recognized\r\n".to_owned(),
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mailbox)
}

/// The `<address>` of a MAIL or RCPT command (parameters after it ignored).
fn angle(command: &str) -> String {
    let start = command.find('<').unwrap_or(0);
    let end = command[start..]
        .find('>')
        .map(|i| start + i + 1)
        .unwrap_or(command.len());
    command[start..end].to_owned()
}

/// A header's value in a received message (unfolded).
fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The body of a received text message, decoded from its transfer encoding.
fn text_body(data: &str) -> String {
    let body = data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    match header(data, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "quoted-printable" => {
            let joined = body.replace("=\r\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.replace("\r\n", "\n"),
    }
}

async fn outbox(app: &TestApp, token: &str) -> Vec<Value> {
    let (s, all) = app.get("/api/v1/notifications/outbox", Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    all.as_array().unwrap().clone()
}

/// A notification's delivery steps, `(status, detail)`.
async fn steps(app: &TestApp, token: &str, id: &str) -> Vec<(String, String)> {
    let (s, detail) = app
        .get(&format!("/api/v1/notifications/{id}"), Some(token))
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["status"].as_str().unwrap().to_owned(),
                d["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn paid_off(customer: Uuid) -> payments::ContractPaidOff {
    payments::ContractPaidOff {
        contract_id: Uuid::now_v7(),
        customer_id: customer,
        vehicle_id: Uuid::now_v7(),
    }
}

#[tokio::test]
async fn email_goes_over_smtp_in_the_customers_language_and_refusals_are_retried() {
    let (port, mailbox) = smtp_receiver(&[
        "451 4.3.0 Mailbox busy, try again later",
        "550 5.1.1 Mailbox unavailable",
    ])
    .await;
    let app = TestApp::spawn_with(|s| {
        s.extra.insert(
            "smtp_url".into(),
            format!("smtp://127.0.0.1:{port}?tls=none").into(),
        );
        s.extra
            .insert("smtp_from".into(), "Miliki <no-reply@miliki.test>".into());
    })
    .await;
    let admin = app.admin().await;
    let swahili = app.customer().await;
    subscribe(
        &app,
        &swahili,
        "sw",
        json!({"channels": {"contracts": ["email"]}}),
    )
    .await;
    publish(&app, &paid_off(swahili.id)).await;

    // The receiver answers 451 first: failed with its reply, retried after 30 s.
    let email = app
        .eventually("the first refusal to be recorded", || async {
            let all = outbox(&app, &swahili.token).await;
            let e = all.iter().find(|n| n["channel"] == "email")?.clone();
            (e["attempts"] == 1 && e["status"] == "queued").then_some(e)
        })
        .await;
    assert_eq!(email["send_after"], "2026-03-02T08:00:30Z");
    let id = email["id"].as_str().unwrap().to_owned();
    // Then 550, retried after 60 s more; then it is accepted.
    app.clock.advance(Duration::seconds(31));
    app.eventually("the second refusal", || async {
        let all = outbox(&app, &swahili.token).await;
        let e = all.iter().find(|n| n["channel"] == "email")?;
        (e["attempts"] == 2 && e["status"] == "queued").then_some(())
    })
    .await;
    app.clock.advance(Duration::seconds(61));
    let log: Vec<(String, String)> = app
        .eventually("the email to be accepted", || async {
            let log = steps(&app, &swahili.token, &id).await;
            (log.last()?.0 == "sent").then_some(log)
        })
        .await;
    let statuses: Vec<&str> = log.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "queued",
            "failed",
            "retry_scheduled",
            "failed",
            "retry_scheduled",
            "sent"
        ]
    );
    assert!(
        log[1].1.contains("451") && log[1].1.contains("Mailbox busy"),
        "{log:?}"
    );
    assert!(
        log[3].1.contains("550") && log[3].1.contains("Mailbox unavailable"),
        "{log:?}"
    );
    assert!(
        log[5].1.contains("accepted: 250") && log[5].1.contains("queued as"),
        "{log:?}"
    );

    // What arrived: three transmissions, the last one taken, in Swahili.
    let received = mailbox.lock().unwrap().received.clone();
    assert_eq!(received.len(), 3);
    let m = &received[2];
    assert_eq!(m.from, "<no-reply@miliki.test>");
    assert_eq!(m.to, [format!("<c{}@example.com>", swahili.id.simple())]);
    assert_eq!(
        header(&m.data, "Subject").as_deref(),
        Some("Umelipa kikamilifu: hongera")
    );
    assert!(header(&m.data, "From")
        .unwrap()
        .contains("no-reply@miliki.test"));
    assert!(
        text_body(&m.data).contains("Umelipa mkataba wako kikamilifu"),
        "{}",
        m.data
    );

    // English for an English customer, at the first try; nothing in the local sink.
    let english = app.customer().await;
    subscribe(
        &app,
        &english,
        "en",
        json!({"channels": {"contracts": ["email"]}}),
    )
    .await;
    publish(&app, &paid_off(english.id)).await;
    let m = app
        .eventually("the English email", || async {
            let got = mailbox.lock().unwrap().received.clone();
            (got.len() == 4).then(|| got[3].clone())
        })
        .await;
    assert_eq!(
        header(&m.data, "Subject").as_deref(),
        Some("Paid in full: congratulations")
    );
    assert!(text_body(&m.data).contains("You have paid your contract in full"));
    let (_, sink) = app
        .get("/api/v1/notifications/email-sink", Some(&admin.token))
        .await;
    assert_eq!(sink, json!([]));
    app.stop().await;
}

// ---------------------------------------------------------------- the digest

#[tokio::test]
async fn low_priority_messages_go_out_as_one_digest_per_channel_at_the_digest_time() {
    // 12:00 in Nairobi is 09:00 UTC; the test clock starts at 08:00 UTC.
    let app = TestApp::spawn_with(|s| {
        s.extra.insert("digest_at".into(), "12:00".into());
    })
    .await;
    let mut admin = app.admin().await;
    let mut customer = app.customer().await;
    let number = subscribe(&app, &customer, "en", json!({})).await;
    let contract = Uuid::now_v7();
    // Two low-priority messages (a reservation made, an installment two days
    // off) and a receipt, which is normal priority.
    publish(
        &app,
        &vehicles::ReservationCreated {
            reservation_id: Uuid::now_v7(),
            vehicle_id: Uuid::now_v7(),
            customer_id: customer.id,
            expires_at: app.clock.now() + Duration::hours(48),
        },
    )
    .await;
    publish(
        &app,
        &payments::InstallmentDue {
            contract_id: contract,
            customer_id: customer.id,
            installment: 3,
            due_date: "2026-03-04".into(),
            amount_due_minor: 245_400,
            currency: "KES".into(),
            days_before: 2,
        },
    )
    .await;
    publish(
        &app,
        &payments::PaymentReceived {
            payment_id: Uuid::now_v7(),
            contract_id: contract,
            customer_id: customer.id,
            amount_minor: 100_000,
            currency: "KES".into(),
            method: "mpesa".into(),
            days_late: 0,
        },
    )
    .await;
    // In-app lists each one at once.
    app.eventually("three in-app notifications", || async {
        let (_, page) = app
            .get("/api/v1/notifications", Some(&customer.token))
            .await;
        (page["items"].as_array()?.len() == 3).then_some(())
    })
    .await;
    // By SMS only the receipt goes now.
    app.eventually("the receipt by SMS", || async {
        (sms_to(&app, "sms", &number).await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sms = sms_to(&app, "sms", &number).await;
    assert_eq!(sms.len(), 1);
    assert!(sms[0].contains("received KES 1,000.00"), "{sms:?}");
    let all = outbox(&app, &customer.token).await;
    let held: Vec<&Value> = all.iter().filter(|n| n["status"] == "digest").collect();
    // Reservation and installment, on SMS, email and push.
    assert_eq!(held.len(), 6, "{all:?}");
    assert!(held
        .iter()
        .all(|n| n["send_after"] == "2026-03-02T09:00:00Z"));
    let reservation_sms = held
        .iter()
        .find(|n| n["template"] == "reservation_made" && n["channel"] == "sms")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = steps(&app, &customer.token, &reservation_sms).await;
    assert_eq!(log[0].0, "digest");
    assert!(log[0]
        .1
        .starts_with("held for the digest at 2026-03-02T09:00:00"));

    // At the digest time: one digest per channel, carrying both.
    app.clock.advance(Duration::hours(1));
    relogin_after(&app, &mut admin).await;
    relogin_after(&app, &mut customer).await;
    let sms = app
        .eventually("the SMS digest", || async {
            let got = sms_to(&app, "sms", &number).await;
            (got.len() == 2).then_some(got)
        })
        .await;
    let digest = &sms[1];
    assert!(digest.starts_with("Miliki (2): "), "{digest}");
    assert!(digest.contains("vehicle reserved until"), "{digest}");
    assert!(
        digest.contains("installment 3 of KES 2,454.00 is due on 2026-03-04"),
        "{digest}"
    );
    let token = format!("fcm-{}", customer.id.simple());
    app.eventually("the push digest", || async {
        let push: Vec<Value> = sandbox(&app, "push")
            .await
            .into_iter()
            .filter(|m| m["request"]["message"]["token"] == token.as_str())
            .collect();
        (push.len() == 2
            && push[1]["request"]["message"]["notification"]["title"] == "Your Miliki updates (2)")
            .then_some(())
    })
    .await;
    let sink = app
        .eventually("the email digest", || async {
            let (_, b) = app
                .get("/api/v1/notifications/email-sink", Some(&admin.token))
                .await;
            let all = b.as_array()?.clone();
            (all.len() == 2).then_some(all)
        })
        .await;
    let email = sink
        .iter()
        .find(|e| e["subject"] == "Your Miliki updates (2)")
        .expect("the email digest");
    let body = email["body"].as_str().unwrap();
    assert!(
        body.contains("Vehicle reserved\n")
            && body.contains("Your installment is due in two days\n"),
        "{body}"
    );

    // Each original's log names the digest that carried it.
    let all = app
        .eventually("the SMS digest to be recorded as sent", || async {
            let all = outbox(&app, &customer.token).await;
            all.iter()
                .any(|n| {
                    n["template"] == "digest" && n["channel"] == "sms" && n["status"] == "sent"
                })
                .then_some(all)
        })
        .await;
    let digest_sms = all
        .iter()
        .find(|n| n["template"] == "digest" && n["channel"] == "sms")
        .unwrap();
    let log = steps(&app, &customer.token, &reservation_sms).await;
    assert_eq!(log.last().unwrap().0, "digested");
    assert_eq!(
        log.last().unwrap().1,
        format!("carried by digest {}", digest_sms["id"].as_str().unwrap())
    );
    assert_eq!(
        all.iter().filter(|n| n["status"] == "digested").count(),
        6,
        "{all:?}"
    );
    // A low-priority message after today's digest waits for tomorrow's.
    app.clock.advance(Duration::minutes(1));
    publish(
        &app,
        &payments::InstallmentDue {
            contract_id: contract,
            customer_id: customer.id,
            installment: 4,
            due_date: "2026-03-11".into(),
            amount_due_minor: 245_400,
            currency: "KES".into(),
            days_before: 2,
        },
    )
    .await;
    let later = app
        .eventually("the next held message", || async {
            let all = outbox(&app, &customer.token).await;
            let n = all
                .iter()
                .find(|n| n["status"] == "digest" && n["channel"] == "sms")?
                .clone();
            Some(n)
        })
        .await;
    assert_eq!(later["send_after"], "2026-03-03T09:00:00Z");
    app.stop().await;
}

async fn relogin_after(app: &TestApp, who: &mut super::common::Account) {
    let t = app.login(&who.phone, super::common::PASSWORD).await;
    who.token = t["access_token"].as_str().unwrap().to_owned();
}

// ---------------------------------------------------------------- FCM service account

/// A fresh RSA key: the service account's private key (PKCS#8 PEM) and its
/// public key (SPKI PEM).
async fn rsa_key() -> (String, String) {
    tokio::task::spawn_blocking(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let public = rsa::RsaPublicKey::from(&private);
        (
            private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public.to_public_key_pem(LineEnding::LF).unwrap(),
        )
    })
    .await
    .unwrap()
}

/// Writes a service-account key file and the key the sandbox trusts.
fn key_files(dir: &std::path::Path, private: &str, trusted_public: &str) -> (String, String) {
    let account = dir.join("service-account.json");
    std::fs::write(
        &account,
        json!({
            "type": "service_account",
            "project_id": "miliki-test",
            "private_key_id": "k1",
            "private_key": private,
            "client_email": "push@miliki-test.iam.gserviceaccount.com",
            "client_id": "1",
            // A path: the token endpoint of this process's sandbox.
            "token_uri": "/sandbox/push/token",
        })
        .to_string(),
    )
    .unwrap();
    let public = dir.join("trusted.pem");
    std::fs::write(&public, trusted_public).unwrap();
    (
        account.to_string_lossy().into_owned(),
        public.to_string_lossy().into_owned(),
    )
}

async fn spawn_with_account(account: String, public: String) -> TestApp {
    TestApp::spawn_with(move |s| {
        s.extra
            .insert("push_service_account_file".into(), account.into());
        s.extra
            .insert("push_sandbox_public_key_file".into(), public.into());
    })
    .await
}

async fn pushes(app: &TestApp, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} pushes"), || async {
        let got = sandbox(app, "push").await;
        (got.len() == n).then_some(got)
    })
    .await
}

async fn tokens(app: &TestApp) -> Vec<Value> {
    let (s, b) = app.get("/sandbox/push/tokens", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

#[tokio::test]
async fn push_uses_a_bearer_minted_from_the_service_account_until_near_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let ((private, public), (other_private, _)) = tokio::join!(rsa_key(), rsa_key());
    let (account, trusted) = key_files(dir.path(), &private, &public);
    let app = spawn_with_account(account, trusted).await;
    let customer = app.customer().await;
    subscribe(
        &app,
        &customer,
        "en",
        json!({"channels": {"contracts": ["push"]}}),
    )
    .await;

    publish(&app, &paid_off(customer.id)).await;
    let got = pushes(&app, 1).await;
    let minted = tokens(&app).await;
    assert_eq!(minted.len(), 1);
    assert_eq!(
        minted[0]["client_email"],
        "push@miliki-test.iam.gserviceaccount.com"
    );
    assert_eq!(got[0]["request"]["bearer"], minted[0]["access_token"]);
    // The project comes from the service account.
    assert_eq!(got[0]["request"]["project"], "miliki-test");

    // Reused: another push now, and another 58 minutes on.
    publish(&app, &paid_off(customer.id)).await;
    pushes(&app, 2).await;
    app.clock.advance(Duration::minutes(58));
    publish(&app, &paid_off(customer.id)).await;
    let got = pushes(&app, 3).await;
    assert_eq!(tokens(&app).await.len(), 1);
    assert!(got
        .iter()
        .all(|m| m["request"]["bearer"] == minted[0]["access_token"]));
    // Within a minute of its expiry (3599 s): a new one.
    app.clock.advance(Duration::seconds(90));
    publish(&app, &paid_off(customer.id)).await;
    let got = pushes(&app, 4).await;
    let minted = tokens(&app).await;
    assert_eq!(minted.len(), 2);
    assert_ne!(minted[0]["access_token"], minted[1]["access_token"]);
    assert_eq!(got[3]["request"]["bearer"], minted[1]["access_token"]);
    // The sandbox takes no bearer it did not issue.
    let forged = app
        .client
        .post(app.url("/sandbox/push/v1/projects/miliki-test/messages:send"))
        .bearer_auth("ya29.forged")
        .json(&json!({"message": {"token": "t"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;

    // Signed with a key the token endpoint does not know: refused, and the
    // push fails with Google's answer in its log.
    let other = tempfile::tempdir().unwrap();
    let (account, trusted) = key_files(other.path(), &other_private, &public);
    let app = spawn_with_account(account, trusted).await;
    let customer = app.customer().await;
    subscribe(
        &app,
        &customer,
        "en",
        json!({"channels": {"contracts": ["push"]}}),
    )
    .await;
    publish(&app, &paid_off(customer.id)).await;
    let push = app
        .eventually("the push to fail", || async {
            let all = outbox(&app, &customer.token).await;
            let p = all.iter().find(|n| n["channel"] == "push")?.clone();
            (p["attempts"] == 1).then_some(p)
        })
        .await;
    let log = steps(&app, &customer.token, push["id"].as_str().unwrap()).await;
    assert_eq!(log[1].0, "failed");
    assert!(
        log[1].1.contains("400")
            && log[1].1.contains("invalid_grant")
            && log[1].1.contains("Invalid JWT Signature"),
        "{log:?}"
    );
    assert!(tokens(&app).await.is_empty());
    assert!(sandbox(&app, "push").await.is_empty());
    app.stop().await;
}

// ---------------------------------------------------------------- rate limit

#[tokio::test]
async fn the_per_customer_rate_limit_holds_the_rest_for_later_but_not_critical_messages() {
    let app = TestApp::spawn_with(|s| {
        s.extra
            .insert("support_notify_per_customer_per_hour".into(), 2.into());
    })
    .await;
    let mut customer = app.customer().await;
    let number = subscribe(
        &app,
        &customer,
        "en",
        json!({"channels": {"contracts": ["sms"]}}),
    )
    .await;
    let neighbour = app.customer().await;
    let other = subscribe(
        &app,
        &neighbour,
        "en",
        json!({"channels": {"contracts": ["sms"]}}),
    )
    .await;
    for _ in 0..3 {
        publish(&app, &paid_off(customer.id)).await;
    }
    app.eventually("two SMS", || async {
        (sms_to(&app, "sms", &number).await.len() == 2).then_some(())
    })
    .await;
    let limited = app
        .eventually("the third to be held", || async {
            let all = outbox(&app, &customer.token).await;
            all.iter()
                .find(|n| {
                    n["channel"] == "sms"
                        && n["status"] == "queued"
                        && n["send_after"] != "2026-03-02T08:00:00Z"
                })
                .cloned()
        })
        .await;
    assert_eq!(limited["send_after"], "2026-03-02T08:10:00Z");
    let log = steps(&app, &customer.token, limited["id"].as_str().unwrap()).await;
    assert_eq!(
        log.last().unwrap(),
        &(
            "rate_limited".to_owned(),
            "held until 2026-03-02T08:10:00+00:00".to_owned()
        )
    );
    // Another customer is not held back, nor is a critical message.
    publish(&app, &paid_off(neighbour.id)).await;
    app.eventually("the neighbour's SMS", || async {
        (sms_to(&app, "sms", &other).await.len() == 1).then_some(())
    })
    .await;
    publish(
        &app,
        &telematics::ImmobilizationScheduled {
            command_id: Uuid::now_v7(),
            vehicle_id: Uuid::now_v7(),
            contract_id: Uuid::now_v7(),
            customer_id: customer.id,
            days_past_due: 7,
            not_before: app.clock.now() + Duration::hours(24),
        },
    )
    .await;
    app.eventually("the critical SMS", || async {
        let got = sms_to(&app, "sms", &number).await;
        (got.len() == 3 && got[2].contains("URGENT")).then_some(())
    })
    .await;
    // Ten minutes on the hour is still full (three sent): held again.
    app.clock.advance(Duration::minutes(10));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sms_to(&app, "sms", &number).await.len(), 3);
    // Once the hour has passed, it goes.
    app.clock.advance(Duration::minutes(51));
    app.eventually("the held SMS", || async {
        (sms_to(&app, "sms", &number).await.len() == 4).then_some(())
    })
    .await;
    relogin_after(&app, &mut customer).await;
    let log = steps(&app, &customer.token, limited["id"].as_str().unwrap()).await;
    let statuses: Vec<&str> = log.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["queued", "rate_limited", "rate_limited", "sent"]);
    app.stop().await;
}
