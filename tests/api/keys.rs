//! Blind-index key rotation while serving: phone and email logins keep
//! working before, during and after re-indexing, and a phone or email stays
//! unique across keys.

use miliki_platform::config::{read_jwt_secret, write_secrets_file};
use miliki_platform::crypto::read_key_file;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

fn email_for(phone: &str) -> String {
    format!("u{}@example.com", phone.trim_start_matches('+'))
}

async fn register(app: &TestApp, phone: &str, email: &str) -> (StatusCode, serde_json::Value) {
    app.post(
        "/api/v1/auth/register",
        None,
        json!({"name": "Wanjiru Kamau", "phone": phone, "email": email, "password": PASSWORD}),
    )
    .await
}

async fn can_log_in(app: &TestApp, login: &str) -> bool {
    let (status, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": login, "password": PASSWORD}),
        )
        .await;
    status == StatusCode::OK
}

/// Adds a blind key to the app's secrets file and makes it active, as
/// `miliki keys rotate-blind` does first; the running app re-reads the file.
fn add_blind_key(app: &TestApp) -> String {
    let path = app.dir.path().join("secrets.toml");
    let mut material = read_key_file(&path).expect("key file");
    let id = material.add_blind_key();
    let jwt = read_jwt_secret(&path).expect("jwt secret");
    write_secrets_file(&path, &jwt, &material).expect("write key file");
    app.users().keyring.reload().expect("reload");
    id
}

async fn usage(app: &TestApp) -> Vec<(String, i64)> {
    miliki_users::admin::blind_key_usage(&app.users().db)
        .await
        .unwrap()
}

#[tokio::test]
async fn logins_work_before_during_and_after_a_blind_key_rotation() {
    // Re-indexing only when the test says, so "during" is a real half-way state.
    let app = TestApp::spawn_with(|s| {
        s.extra.insert("users_blind_reindex_secs".into(), json!(0));
    })
    .await;
    let phones: Vec<String> = (0..3).map(|_| unique_phone()).collect();
    for phone in &phones {
        let (status, body) = register(&app, phone, &email_for(phone)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for phone in &phones {
        assert!(can_log_in(&app, phone).await, "before: {phone}");
        assert!(can_log_in(&app, &email_for(phone)).await, "before: email");
    }
    assert_eq!(usage(&app).await, vec![("b1".to_owned(), 3)]);

    let new_key = add_blind_key(&app);
    assert_eq!(new_key, "b2");
    // During: one account re-indexed, two still under the old key.
    let keyring = app.users().keyring.clone();
    let n = miliki_users::admin::reindex_contacts(&app.users().db, &keyring, Some(1))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        usage(&app).await,
        vec![("b1".to_owned(), 2), ("b2".to_owned(), 1)]
    );
    for phone in &phones {
        assert!(can_log_in(&app, phone).await, "during: {phone}");
        assert!(can_log_in(&app, &email_for(phone)).await, "during: email");
    }
    // Uniqueness holds across keys: the phone of an account still under b1,
    // and the email of one already under b2, are both taken.
    let (status, body) = register(&app, &phones[2], "someone-new@example.com").await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(body["detail"].as_str().unwrap().contains("phone"), "{body}");
    let (status, body) = register(&app, &unique_phone(), &email_for(&phones[0])).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(body["detail"].as_str().unwrap().contains("email"), "{body}");
    // A new account is indexed under the new key and found.
    let fresh = unique_phone();
    let (status, body) = register(&app, &fresh, &email_for(&fresh)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(can_log_in(&app, &fresh).await);
    // An admin's search by phone finds accounts under either key.
    let admin = app.admin().await;
    for phone in [&phones[0], &phones[2]] {
        let (status, page) = app
            .get(
                &format!("/api/v1/users?q={}", phone.replace('+', "%2B")),
                Some(&admin.token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "{phone}: {page}"
        );
    }

    // After: everyone under b2; b1 can go, and logins still work without it.
    miliki_users::admin::reindex_contacts(&app.users().db, &keyring, None)
        .await
        .unwrap();
    assert!(usage(&app).await.iter().all(|(k, _)| k == "b2"));
    let path = app.dir.path().join("secrets.toml");
    let mut material = read_key_file(&path).unwrap();
    material.remove_blind_key("b1").unwrap();
    write_secrets_file(&path, &read_jwt_secret(&path).unwrap(), &material).unwrap();
    keyring.reload().unwrap();
    assert_eq!(keyring.blind_key_ids(), vec!["b2".to_owned()]);
    for phone in phones.iter().chain([&fresh]) {
        assert!(can_log_in(&app, phone).await, "after: {phone}");
        assert!(can_log_in(&app, &email_for(phone)).await, "after: email");
    }
    let (status, body) = register(&app, &phones[1], "another@example.com").await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn a_running_service_re_indexes_by_itself_after_a_rotation() {
    let app = TestApp::spawn_with(|s| {
        s.extra
            .insert("users_blind_reindex_secs".into(), json!(0.2));
    })
    .await;
    let phone = unique_phone();
    let (status, body) = register(&app, &phone, &email_for(&phone)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Written to the file only: the service learns of the key from it.
    let path = app.dir.path().join("secrets.toml");
    let mut material = read_key_file(&path).unwrap();
    material.add_blind_key();
    write_secrets_file(&path, &read_jwt_secret(&path).unwrap(), &material).unwrap();
    app.eventually("every account re-indexed under b2", || async {
        let u = usage(&app).await;
        (u == vec![("b2".to_owned(), 1)]).then_some(())
    })
    .await;
    assert!(can_log_in(&app, &phone).await);
    assert!(can_log_in(&app, &email_for(&phone)).await);
    app.stop().await;
}
