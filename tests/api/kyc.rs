use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = $1 ORDER BY id")
            .bind(kind)
            .fetch_all(app.users().db.reader())
            .await
            .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test]
async fn a_customer_submits_and_an_admin_approves() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let me = app.customer().await;
    let (status, sub) = app
        .submit_kyc(&me.token, kyc_form("national_id", "2345 6789", None))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["status"], "pending");
    assert_eq!(sub["user_id"], me.id.to_string());
    assert_eq!(
        sub["document_number"], "****6789",
        "masked for the customer"
    );
    let sides: Vec<_> = sub["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["side"].as_str().unwrap(),
                d["content_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sides,
        [
            ("back", "application/pdf"),
            ("front", "image/jpeg"),
            ("selfie", "image/png")
        ]
    );
    let id = sub["id"].as_str().unwrap();

    // The owner gets the image back, byte for byte.
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/kyc/submissions/{id}/documents/selfie")))
        .bearer_auth(&me.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
    // A download that cannot run as a page in our origin.
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png());

    // A second submission while one is pending conflicts.
    let (status, _) = app
        .submit_kyc(&me.token, kyc_form("passport", "AK123456", None))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, decided) = app
        .post(
            &format!("/api/v1/kyc/submissions/{id}/decision"),
            Some(&admin.token),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(
        decided["document_number"], "23456789",
        "admins see it in full"
    );
    let history: Vec<_> = decided["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["pending", "approved"]);
    let (_, me_now) = app.get("/api/v1/users/me", Some(&me.token)).await;
    assert_eq!(me_now["kyc_status"], "approved");

    // Decided once: deciding again conflicts; submitting after approval conflicts.
    let (status, body) = app
        .post(
            &format!("/api/v1/kyc/submissions/{id}/decision"),
            Some(&admin.token),
            json!({"decision": "reject", "reason": "late"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, _) = app
        .submit_kyc(&me.token, kyc_form("passport", "AK123456", None))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The events went into the outbox with ids only, no personal data.
    let submitted = events_of(&app, "users.kyc.submitted.v1").await;
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0]["data"]["user_id"], me.id.to_string());
    assert!(!submitted[0].to_string().contains("23456789"));
    let approved = events_of(&app, "users.kyc.approved.v1").await;
    assert_eq!(approved[0]["data"]["submission_id"], id);
    assert_eq!(approved[0]["specversion"], "1.0");
    assert_eq!(approved[0]["source"], "/miliki/users");
    app.stop().await;
}

#[tokio::test]
async fn rejection_and_resubmission_need_reasons_and_allow_a_new_submission() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let me = app.customer().await;
    let (_, sub) = app
        .submit_kyc(&me.token, kyc_form("driving_licence", "DL-778899", None))
        .await;
    let path = format!(
        "/api/v1/kyc/submissions/{}/decision",
        sub["id"].as_str().unwrap()
    );
    let (status, body) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"decision": "request_resubmission"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), ["reason"]);
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"decision": "maybe"}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, decided) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"decision": "request_resubmission", "reason": "selfie is blurred"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decided["reason"], "selfie is blurred");
    assert_eq!(
        events_of(&app, "users.kyc.resubmission_requested.v1")
            .await
            .len(),
        1
    );

    let (status, second) = app
        .submit_kyc(&me.token, kyc_form("passport", "AK123456", None))
        .await;
    assert_eq!(status, StatusCode::CREATED, "a new submission is allowed");
    let (status, _) = app
        .post(
            &format!(
                "/api/v1/kyc/submissions/{}/decision",
                second["id"].as_str().unwrap()
            ),
            Some(&admin.token),
            json!({"decision": "reject", "reason": "document expired"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events_of(&app, "users.kyc.rejected.v1").await.len(), 1);
    let (_, list) = app.get("/api/v1/kyc/submissions", Some(&me.token)).await;
    let statuses: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["rejected", "resubmission_requested"]);
    app.stop().await;
}

#[tokio::test]
async fn agents_submit_for_their_own_customers_only() {
    let app = TestApp::spawn().await;
    let agent = app.agent().await;
    let other_agent = app.agent().await;
    let mine = app.customer_of(&agent).await;
    let theirs = app.customer_of(&other_agent).await;
    let (status, sub) = app
        .submit_kyc(
            &agent.token,
            kyc_form("national_id", "11223344", Some(mine.id)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["submitted_by"], agent.id.to_string());
    let (status, _) = app
        .submit_kyc(
            &agent.token,
            kyc_form("national_id", "55667788", Some(theirs.id)),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without user_id an agent has no one to submit for.
    let (status, body) = app
        .submit_kyc(&agent.token, kyc_form("national_id", "55667788", None))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );

    // Who may see the submission and its images.
    let id = sub["id"].as_str().unwrap();
    let doc = format!("/api/v1/kyc/submissions/{id}/documents/front");
    for (token, expected) in [
        (&agent.token, StatusCode::OK),
        (&mine.token, StatusCode::OK),
        (&other_agent.token, StatusCode::NOT_FOUND),
        (&theirs.token, StatusCode::NOT_FOUND),
    ] {
        let resp = app
            .client
            .get(app.url(&doc))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
        let (status, _) = app
            .get(&format!("/api/v1/kyc/submissions/{id}"), Some(token))
            .await;
        assert_eq!(status, expected);
    }
    let resp = app.client.get(app.url(&doc)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (_, list) = app
        .get("/api/v1/kyc/submissions", Some(&other_agent.token))
        .await;
    assert!(list["items"].as_array().unwrap().is_empty());

    // Only admins decide.
    let (status, body) = app
        .post(
            &format!("/api/v1/kyc/submissions/{id}/decision"),
            Some(&agent.token),
            json!({"decision": "approve"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = app
        .post(
            &format!("/api/v1/kyc/submissions/{id}/decision"),
            Some(&mine.token),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn uploads_are_sniffed_capped_and_validated_and_failures_store_nothing() {
    let app = TestApp::spawn_with(|s| s.max_upload_bytes = 64 * 1024).await;
    let me = app.customer().await;
    let part = |bytes: Vec<u8>| {
        reqwest::multipart::Part::bytes(bytes)
            .file_name("x.jpg")
            .mime_str("image/jpeg")
            .unwrap()
    };

    // A text file claiming to be a JPEG.
    let form = reqwest::multipart::Form::new()
        .text("document_type", "passport")
        .text("document_number", "AK123456")
        .part("front", part(b"just some text pretending".to_vec()))
        .part("selfie", part(pdf()));
    let (status, body) = app.submit_kyc(&me.token, form).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut fields = invalid_fields(&body);
    fields.sort();
    assert_eq!(fields, ["front", "selfie"], "{body}");

    // Missing everything.
    let (status, body) = app
        .submit_kyc(
            &me.token,
            reqwest::multipart::Form::new().text("document_type", "visa"),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut fields = invalid_fields(&body);
    fields.sort();
    // With no known document type, the back side counts as required too.
    assert_eq!(
        fields,
        [
            "back",
            "document_number",
            "document_type",
            "front",
            "selfie"
        ],
        "{body}"
    );

    // Too big.
    let mut big = jpeg();
    big.resize(65 * 1024, 0);
    let form = reqwest::multipart::Form::new()
        .text("document_type", "passport")
        .text("document_number", "AK123456")
        .part("front", part(big))
        .part("selfie", part(png()));
    let (status, body) = app.submit_kyc(&me.token, form).await;
    assert_problem(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    );

    // Not multipart at all.
    let (status, body) = app
        .post(
            "/api/v1/kyc/submissions",
            Some(&me.token),
            json!({"document_type": "passport"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );

    // A customer naming someone else.
    let other = app.customer().await;
    let (status, _) = app
        .submit_kyc(
            &me.token,
            kyc_form("national_id", "12345678", Some(other.id)),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kyc_submissions")
        .fetch_one(app.users().db.reader())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let (status, body) = app
        .get(
            &format!("/api/v1/kyc/submissions/{}", uuid::Uuid::now_v7()),
            Some(&me.token),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    app.stop().await;
}

#[tokio::test]
async fn admins_work_a_review_queue() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for n in 0..3 {
        let c = app.customer().await;
        let (status, _) = app
            .submit_kyc(
                &c.token,
                kyc_form("national_id", &format!("3000000{n}"), None),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, queue) = app
        .get(
            "/api/v1/kyc/submissions?status=pending&limit=2",
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue["items"].as_array().unwrap().len(), 2);
    assert!(queue["next_cursor"].is_string());
    let (status, body) = app
        .get("/api/v1/kyc/submissions?status=lost", Some(&admin.token))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    app.stop().await;
}
