//! Contracts: admin creation with Idempotency-Key, who sees what, lifecycle routes.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn admins_create_contracts_idempotently() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    let body = contract_body(&p, customer.id, 165_000_00, 33_000_00, 78);
    let k = key();
    let (status, first, replayed) = post_idem(
        &app,
        "/api/v1/contracts",
        &admin.token,
        Some(&k),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!replayed);
    assert_eq!(first["status"], "pending_deposit");
    let account = first["account_number"].as_str().unwrap();
    assert!(
        account.starts_with("MLK") && account.len() <= 12,
        "{account}"
    );
    assert_eq!(first["schedule"].as_array().unwrap().len(), 79);
    assert_eq!(
        first["balances"]["outstanding_total_minor"],
        first["total_payable_minor"]
    );
    assert_eq!(first["schedule"][0]["due"]["principal_minor"], 33_000_00);
    assert_eq!(first["schedule"][0]["state"], "due");
    assert_eq!(first["product"]["name"], "Boda weekly");

    // The retry gets the first answer, marked as a replay.
    let (status, again, replayed) = post_idem(
        &app,
        "/api/v1/contracts",
        &admin.token,
        Some(&k),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(replayed);
    assert_eq!(again["id"], first["id"]);
    // The same key with another body is refused.
    let mut other = body.clone();
    other["term_periods"] = json!(52);
    let (status, problem, _) =
        post_idem(&app, "/api/v1/contracts", &admin.token, Some(&k), other).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&problem), vec!["Idempotency-Key"]);
    // No key at all.
    let (status, problem, _) =
        post_idem(&app, "/api/v1/contracts", &admin.token, None, body.clone()).await;
    assert_problem(status, &problem, StatusCode::BAD_REQUEST, "bad-request");
    // Another admin's same key is theirs alone: a new contract... for another vehicle.
    let (_, list) = app.get("/api/v1/contracts", Some(&admin.token)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // The same vehicle cannot be under two live contracts.
    let (status, problem, _) =
        post_idem(&app, "/api/v1/contracts", &admin.token, Some(&key()), body).await;
    assert_problem(status, &problem, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn contract_fields_are_checked_and_nothing_is_written() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    let (status, body, _) = post_idem(
        &app,
        "/api/v1/contracts",
        &admin.token,
        Some(&key()),
        json!({"currency": "KSH"}),
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
    assert_eq!(
        fields,
        vec![
            "currency",
            "customer_id",
            "deposit_minor",
            "price_minor",
            "product_id",
            "term_periods",
            "vehicle_id"
        ]
    );
    let cases = [
        (json!({"deposit_minor": 100}), "deposit_minor"),
        (json!({"term_periods": 5}), "term_periods"),
        (json!({"product_id": uuid::Uuid::now_v7()}), "product_id"),
        (json!({"currency": "UGX"}), "currency"),
        (json!({"price_minor": -5}), "price_minor"),
    ];
    for (change, field) in cases {
        let mut b = contract_body(&p, customer.id, 165_000_00, 33_000_00, 78);
        for (k, v) in change.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, body, _) =
            post_idem(&app, "/api/v1/contracts", &admin.token, Some(&key()), b).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert!(
            invalid_fields(&body).contains(&field.to_owned()),
            "{field}: {body}"
        );
    }
    let b = contract_body(&p, customer.id, 165_000_00, 33_000_00, 78);
    for who in [&agent, &customer] {
        let (status, body, _) = post_idem(
            &app,
            "/api/v1/contracts",
            &who.token,
            Some(&key()),
            b.clone(),
        )
        .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    // A retired product takes no new contracts.
    app.post(
        &format!("/api/v1/products/{}/retire", p["id"].as_str().unwrap()),
        Some(&admin.token),
        json!({}),
    )
    .await;
    let (status, body, _) =
        post_idem(&app, "/api/v1/contracts", &admin.token, Some(&key()), b).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["product_id"]);
    let (_, list) = app.get("/api/v1/contracts", Some(&admin.token)).await;
    assert_eq!(list["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn customers_agents_and_admins_see_what_is_theirs() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let other_agent = app.agent().await;
    let mine = app.customer_of(&agent).await;
    let theirs = app.customer().await;
    wait_for_customer(&app, mine.id).await;
    let p = create_product(&app, &admin, boda_product()).await;
    let a = create_contract(
        &app,
        &admin,
        contract_body(&p, mine.id, 165_000_00, 33_000_00, 52),
    )
    .await;
    let b = create_contract(
        &app,
        &admin,
        contract_body(&p, theirs.id, 165_000_00, 40_000_00, 52),
    )
    .await;
    let a_id = a["id"].as_str().unwrap();
    let b_id = b["id"].as_str().unwrap();

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, l) = app.get("/api/v1/contracts", Some(&mine.token)).await;
    assert_eq!(ids(&l), vec![a_id.to_owned()]);
    let (_, l) = app.get("/api/v1/contracts", Some(&agent.token)).await;
    assert_eq!(ids(&l), vec![a_id.to_owned()]);
    let (_, l) = app.get("/api/v1/contracts", Some(&other_agent.token)).await;
    assert!(ids(&l).is_empty());
    let (_, l) = app.get("/api/v1/contracts", Some(&admin.token)).await;
    assert_eq!(ids(&l).len(), 2);
    let (_, l) = app
        .get(
            &format!("/api/v1/contracts?customer_id={}", theirs.id),
            Some(&admin.token),
        )
        .await;
    assert_eq!(ids(&l), vec![b_id.to_owned()]);
    let (_, l) = app
        .get("/api/v1/contracts?status=active", Some(&admin.token))
        .await;
    assert!(ids(&l).is_empty());
    let (_, l) = app
        .get(
            "/api/v1/contracts?bucket=current&limit=1",
            Some(&admin.token),
        )
        .await;
    assert_eq!(ids(&l).len(), 1);
    assert!(l["next_cursor"].is_string());
    let (status, body) = app
        .get(
            "/api/v1/contracts?status=happy&bucket=2-3",
            Some(&admin.token),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut f = invalid_fields(&body);
    f.sort();
    assert_eq!(f, vec!["bucket", "status"]);
    let (status, body) = app
        .get(
            &format!("/api/v1/contracts?customer_id={}", theirs.id),
            Some(&mine.token),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // One contract: its customer, their agent and admins; anyone else gets 404.
    for who in [&mine, &agent, &admin] {
        let (status, _) = app
            .get(&format!("/api/v1/contracts/{a_id}"), Some(&who.token))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    for who in [&theirs, &other_agent] {
        let (status, body) = app
            .get(&format!("/api/v1/contracts/{a_id}"), Some(&who.token))
            .await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
        let (status, _) = app
            .get(
                &format!("/api/v1/contracts/{a_id}/statement"),
                Some(&who.token),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = app.get("/api/v1/contracts", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn lifecycle_routes_are_for_admins_and_refuse_illegal_moves() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 52),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    // Not yet active: it cannot be paused or defaulted.
    let (status, body) = app
        .post(
            &format!("/api/v1/contracts/{id}/pause"),
            Some(&admin.token),
            json!({"days": 14, "reason": "hospital"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    for (path, payload) in [
        ("pause", json!({"days": 14, "reason": "hospital"})),
        ("resume", json!({})),
        ("default", json!({"reason": "gone"})),
        ("write-off", json!({"reason": "gone"})),
        ("cancel", json!({"reason": "changed mind"})),
    ] {
        let (status, body) = app
            .post(
                &format!("/api/v1/contracts/{id}/{path}"),
                Some(&agent.token),
                payload,
            )
            .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/contracts/{id}/pause"),
            Some(&admin.token),
            json!({"days": 0, "reason": " "}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut f = invalid_fields(&body);
    f.sort();
    assert_eq!(f, vec!["days", "reason"]);
    // Cancelling an unpaid contract undoes it; then it takes no payments.
    let (status, cancelled) = app
        .post(
            &format!("/api/v1/contracts/{id}/cancel"),
            Some(&admin.token),
            json!({"reason": "customer withdrew"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["balances"]["outstanding_total_minor"], 0);
    let (status, body) = pay(&app, &admin.token, id, 1000).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .post(
            &format!("/api/v1/contracts/{}/pause", uuid::Uuid::now_v7()),
            Some(&admin.token),
            json!({"days": 3, "reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    app.stop().await;
}
