use miliki_platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn admins_create_staff_and_agents_build_their_customer_book() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (status, agent) = app
        .post("/api/v1/users", Some(&admin.token), json!({"name": "Field Agent", "phone": unique_phone(), "password": PASSWORD, "role": "agent"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    assert_eq!(agent["role"], "agent");
    let agent_phone = agent["phone"].as_str().unwrap().to_owned();
    let agent_token = app.login(&agent_phone, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The agent registers a customer, who is linked to them.
    let (status, customer) = app
        .post(
            "/api/v1/users",
            Some(&agent_token),
            json!({"name": "Juma Hassan", "phone": unique_phone(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    assert_eq!(customer["role"], "customer");
    assert_eq!(customer["onboarded_by"], agent["id"]);

    // The agent sees that customer, and only theirs.
    let other_customer = app.customer().await;
    let (status, page) = app.get("/api/v1/users", Some(&agent_token)).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    assert_eq!(ids, vec![customer["id"].clone()]);
    let (status, _) = app
        .get(
            &format!("/api/v1/users/{}", customer["id"].as_str().unwrap()),
            Some(&agent_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .get(
            &format!("/api/v1/users/{}", other_customer.id),
            Some(&agent_token),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");

    // The admin sees everyone and can search by name or phone.
    let (_, page) = app.get("/api/v1/users?q=juma", Some(&admin.token)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "Juma Hassan");
    let national = customer["phone"].as_str().unwrap().replacen("+254", "0", 1);
    let (_, page) = app
        .get(&format!("/api/v1/users?q={national}"), Some(&admin.token))
        .await;
    assert_eq!(page["items"][0]["id"], customer["id"]);
    let (_, page) = app
        .get("/api/v1/users?role=agent", Some(&admin.token))
        .await;
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["role"] == "agent"));
    app.stop().await;
}

#[tokio::test]
async fn roles_are_enforced_when_creating_accounts() {
    let app = TestApp::spawn().await;
    let agent = app.agent().await;
    let customer = app.customer().await;
    let body =
        json!({"name": "Someone", "phone": unique_phone(), "password": PASSWORD, "role": "admin"});
    let (status, problem) = app
        .post("/api/v1/users", Some(&agent.token), body.clone())
        .await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "forbidden");
    let (status, problem) = app
        .post("/api/v1/users", Some(&customer.token), body.clone())
        .await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "forbidden");
    let (status, problem) = app.post("/api/v1/users", None, body).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    let (status, problem) = app.get("/api/v1/users", Some(&customer.token)).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn customers_see_only_themselves() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    let other = app.customer().await;
    let (status, _) = app
        .get(&format!("/api/v1/users/{}", me.id), Some(&me.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .get(&format!("/api/v1/users/{}", other.id), Some(&me.token))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    app.stop().await;
}

#[tokio::test]
async fn lists_page_with_cursors() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for _ in 0..5 {
        app.customer().await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/users?role=customer&limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path, Some(&admin.token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/users?role=customer&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    for bad in ["cursor=not-a-cursor", "limit=0", "limit=101", "role=pilot"] {
        let (status, body) = app
            .get(&format!("/api/v1/users?{bad}"), Some(&admin.token))
            .await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
    }
    // One rule for every list: a parameter that does not parse is a 422 naming it.
    let (status, body) = app.get("/api/v1/users?limit=abc", Some(&admin.token)).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    app.stop().await;
}

#[tokio::test]
async fn only_admins_suspend_and_never_themselves() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let path = format!("/api/v1/users/{}/suspend", customer.id);
    let (status, body) = app
        .post(&path, Some(&agent.token), json!({"reason": "x"}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app.post(&path, Some(&admin.token), json!({})).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), ["reason"]);
    let (status, body) = app
        .post(
            &format!("/api/v1/users/{}/suspend", admin.id),
            Some(&admin.token),
            json!({"reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .post(
            &format!("/api/v1/users/{}/suspend", uuid::Uuid::now_v7()),
            Some(&admin.token),
            json!({"reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, body) = app
        .post(
            "/api/v1/users/not-an-id/suspend",
            Some(&admin.token),
            json!({"reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "bad-request");
    let (status, user) = app
        .post(&path, Some(&admin.token), json!({"reason": "fraud"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["status"], "suspended");
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"reason": "again"}))
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn the_cli_path_creates_admins_with_the_same_rules() {
    let app = TestApp::spawn().await;
    let err =
        miliki_users::admin::create_user(app.users(), "X", "123", None, "short", Role::Admin, None)
            .await
            .unwrap_err();
    let problem = err.to_problem();
    assert_eq!(problem.status, 422);
    assert_eq!(problem.errors.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn only_admins_reinstate() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/users/{}/suspend", customer.id),
            Some(&admin.token),
            json!({"reason": "arrears"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/api/v1/users/{}/reinstate", customer.id);
    let (status, body) = app
        .post(&path, Some(&agent.token), json!({"reason": "paid"}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app.post(&path, None, json!({"reason": "paid"})).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, user) = app
        .post(&path, Some(&admin.token), json!({"reason": "paid"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["status"], "active");
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"reason": "again"}))
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}
