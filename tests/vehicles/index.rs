//! The in-memory search index: exact facets after writes, read-your-writes,
//! a rebuild on restart, and a second replica following the change log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::clock::ManualClock;
use miliki_platform::config::Settings;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// An app on `settings`: several can share one set of databases (a restart, a replica).
async fn start(settings: &Settings) -> TestApp {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
    ));
    let kernel = Kernel::new(settings.clone(), clock.clone())
        .await
        .expect("kernel");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let runtime = Runtime::start(kernel, Role::Embedded, listener)
        .await
        .expect("start");
    TestApp {
        base: format!("http://{}", runtime.addr),
        client: reqwest::Client::new(),
        clock,
        runtime: Some(runtime),
        // The data directory is the caller's, in `settings`.
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

/// A vehicle as the database has it, for counting by hand.
#[derive(Debug, Clone)]
struct Stored {
    id: String,
    vehicle_type: String,
    make: String,
    branch: String,
    status: String,
    held_by: Option<String>,
    price: i64,
    year: i64,
    words: Vec<String>,
}

/// id, type, make, branch, status, held_by, price, year, search text.
type StoredRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
);

async fn stored(app: &TestApp) -> Vec<Stored> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT id, vehicle_type, make, branch, status, held_by, price_minor, year, \
             search_text FROM vehicles",
    )
    .fetch_all(vehicles(app).db.reader())
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| Stored {
            id: r.0,
            vehicle_type: r.1,
            make: r.2,
            branch: r.3,
            status: r.4,
            held_by: r.5,
            price: r.6,
            year: r.7,
            words: r
                .8
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
        })
        .collect()
}

/// The facets a search should report, counted one vehicle at a time.
fn brute_facets(matching: &[&Stored]) -> Value {
    let mut by_type = BTreeMap::<String, i64>::new();
    let mut by_make = BTreeMap::<String, i64>::new();
    let mut by_branch = BTreeMap::<String, i64>::new();
    for v in matching {
        *by_type.entry(v.vehicle_type.clone()).or_default() += 1;
        *by_make.entry(v.make.clone()).or_default() += 1;
        *by_branch.entry(v.branch.clone()).or_default() += 1;
    }
    json!({"total": matching.len(), "type": by_type, "make": by_make, "branch": by_branch})
}

/// Every page of a search: the facets of the first, and all ids in order.
async fn all_pages(app: &TestApp, token: &str, query: &str) -> (Value, Vec<String>) {
    let mut ids = Vec::new();
    let mut facets = Value::Null;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/vehicles?limit=3&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(&path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        if cursor.is_none() {
            facets = page["facets"].clone();
        }
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (facets, ids),
        }
    }
}

#[tokio::test]
async fn facet_counts_and_matches_equal_a_count_by_hand_after_writes() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let holder = eligible_customer(&app, &admin).await;
    let other = app.customer().await;
    let makes = ["Toyota", "Nissan", "Bajaj", "TVS"];
    let branches = ["Nairobi CBD", "Kisumu", "Mombasa"];
    let mut ids = Vec::new();
    for i in 0..14 {
        let base = if i % 3 == 0 { motorcycle() } else { car() };
        let v = list_vehicle(
            &app,
            &admin,
            with(
                base,
                json!({
                    "make": makes[i % makes.len()],
                    "branch": branches[i % branches.len()],
                    "price_minor": 100_000_00i64 + i as i64 * 50_000_00,
                    "year": 2014 + (i as i64 % 8),
                }),
            ),
        )
        .await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Writes of every kind: an edit that moves make, branch and price; two
    // status changes; a reservation.
    let (_, _, tag) =
        get_with_etag(&app, &format!("/api/v1/vehicles/{}", ids[1]), &admin.token).await;
    let (status, body, _) = patch(
        &app,
        &format!("/api/v1/vehicles/{}", ids[1]),
        &admin.token,
        Some(&tag),
        json!({"make": "Mazda", "branch": "Kisumu", "price_minor": 999_000_00i64, "description": "zebra striped"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (id, to) in [(&ids[2], "in_maintenance"), (&ids[4], "retired")] {
        let (status, body) = app
            .post(
                &format!("/api/v1/vehicles/{id}/status"),
                Some(&admin.token),
                json!({"status": to, "reason": "index test"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/vehicles/{}/reservations", ids[5]),
            Some(&holder.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let all = stored(&app).await;
    type Pred = Box<dyn Fn(&Stored) -> bool>;
    let holder_id = holder.id.to_string();
    let cases: Vec<(&str, &Account, Pred)> = vec![
        ("", &admin, Box::new(|_| true)),
        ("type=car", &admin, Box::new(|v| v.vehicle_type == "car")),
        (
            "status=available",
            &admin,
            Box::new(|v| v.status == "available"),
        ),
        ("make=toyota", &admin, Box::new(|v| v.make == "Toyota")),
        ("branch=Kisumu", &admin, Box::new(|v| v.branch == "Kisumu")),
        (
            "price_min=20000000&price_max=60000000&year_min=2016",
            &admin,
            Box::new(|v| (200_000_00..=600_000_00).contains(&v.price) && v.year >= 2016),
        ),
        (
            "q=zeb",
            &admin,
            Box::new(|v| v.words.iter().any(|w| w.starts_with("zeb"))),
        ),
        ("", &other, Box::new(|v| v.status == "available")),
        (
            "",
            &holder,
            Box::new(move |v| v.status == "available" || v.held_by.as_deref() == Some(&holder_id)),
        ),
        (
            "type=motorcycle&sort=price_asc",
            &other,
            Box::new(|v| v.status == "available" && v.vehicle_type == "motorcycle"),
        ),
    ];
    for (query, who, pred) in &cases {
        let matching: Vec<&Stored> = all.iter().filter(|v| pred(v)).collect();
        let (facets, found) = all_pages(&app, &who.token, query).await;
        assert_eq!(facets, brute_facets(&matching), "facets of {query:?}");
        let expected: BTreeSet<&str> = matching.iter().map(|v| v.id.as_str()).collect();
        let got: BTreeSet<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(got, expected, "matches of {query:?}");
        assert_eq!(
            found.len(),
            expected.len(),
            "no repeats across pages of {query:?}"
        );
    }
    // The sort holds across pages.
    let (_, by_price) = all_pages(&app, &admin.token, "sort=price_asc").await;
    let price = |id: &String| all.iter().find(|v| &v.id == id).unwrap().price;
    assert!(by_price.windows(2).all(|w| price(&w[0]) <= price(&w[1])));
    app.stop().await;
}

#[tokio::test]
async fn a_reserved_vehicle_leaves_available_results_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let holder = eligible_customer(&app, &admin).await;
    let other = app.customer().await;
    let a = list_vehicle(&app, &admin, car()).await;
    list_vehicle(&app, &admin, car()).await;
    let a_id = a["id"].as_str().unwrap();
    let search = |token: String| {
        let app = &app;
        async move {
            let (status, page) = app.get("/api/v1/vehicles?type=car", Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let ids: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned())
                .collect();
            (page["facets"]["total"].as_i64().unwrap(), ids)
        }
    };
    assert_eq!(search(other.token.clone()).await.0, 2);

    let (status, r) = app
        .post(
            &format!("/api/v1/vehicles/{a_id}/reservations"),
            Some(&holder.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    // No waiting: the very next search, by anyone, already reflects it.
    let (total, ids) = search(other.token.clone()).await;
    assert_eq!(total, 1);
    assert!(!ids.iter().any(|i| i == a_id));
    let (status, page) = app
        .get("/api/v1/vehicles?status=available", Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["facets"]["total"], 1);
    // The holder still sees it: it is theirs.
    let (total, ids) = search(holder.token.clone()).await;
    assert_eq!(total, 2);
    assert!(ids.iter().any(|i| i == a_id));

    let (status, _) = delete(
        &app,
        &format!("/api/v1/reservations/{}", r["id"].as_str().unwrap()),
        &holder.token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(search(other.token.clone()).await.0, 2);
    app.stop().await;
}

#[tokio::test]
async fn the_index_is_rebuilt_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path()).await;
    let app = start(&settings).await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    for body in [car(), motorcycle(), with(car(), json!({"make": "Nissan"}))] {
        list_vehicle(&app, &admin, body).await;
    }
    let m = list_vehicle(&app, &admin, motorcycle()).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/vehicles/{}/status", m["id"].as_str().unwrap()),
            Some(&admin.token),
            json!({"status": "in_maintenance", "reason": "chain"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let queries = [
        "",
        "type=car&sort=price_desc",
        "q=toy",
        "near=-1.28,36.82&radius_km=10",
    ];
    let mut before = Vec::new();
    for q in queries {
        for token in [&admin.token, &customer.token] {
            before.push(app.get(&format!("/api/v1/vehicles?{q}"), Some(token)).await);
        }
    }
    app.stop().await;

    let again = start(&settings).await;
    let mut after = Vec::new();
    for q in queries {
        for token in [&admin.token, &customer.token] {
            after.push(
                again
                    .get(&format!("/api/v1/vehicles?{q}"), Some(token))
                    .await,
            );
        }
    }
    assert_eq!(after, before);
    assert_eq!(after[0].1["facets"]["total"], 4);
    assert_eq!(after[1].1["facets"]["total"], 3);
    again.stop().await;
}

#[tokio::test]
async fn a_second_replica_sees_a_change() {
    let Some(_) = postgres_url() else {
        eprintln!("SKIPPED: index::a_second_replica_sees_a_change needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL");
        return;
    };
    if amqp_url().is_none() {
        eprintln!("SKIPPED: index::a_second_replica_sees_a_change needs MILIKI_TEST_AMQP_URL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path()).await;
    settings
        .extra
        .insert("vehicles_feed_poll_ms".into(), "50".into());
    // Two replicas of the whole platform on the same databases and broker.
    let one = start(&settings).await;
    let two = start(&settings).await;
    let admin = one.admin().await;
    let holder = eligible_customer(&one, &admin).await;
    let other = one.customer().await;
    let v = list_vehicle(&one, &admin, car()).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let total_on_two = |token: String| {
        let two = &two;
        async move {
            let (status, page) = two.get("/api/v1/vehicles?type=car", Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["facets"]["total"].as_i64()
        }
    };
    two.eventually("the second replica to list the new car", || {
        let t = other.token.clone();
        async { total_on_two(t).await.filter(|n| *n == 1) }
    })
    .await;
    let (status, body) = one
        .post(
            &format!("/api/v1/vehicles/{id}/reservations"),
            Some(&holder.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    two.eventually("the second replica to drop the reserved car", || {
        let t = other.token.clone();
        async { total_on_two(t).await.filter(|n| *n == 0) }
    })
    .await;
    // An edit made on the second replica reaches the first.
    let (_, _, tag) = get_with_etag(&two, &format!("/api/v1/vehicles/{id}"), &admin.token).await;
    let (status, body, _) = patch(
        &two,
        &format!("/api/v1/vehicles/{id}"),
        &admin.token,
        Some(&tag),
        json!({"branch": "Eldoret"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    one.eventually("the first replica to see the new branch", || async {
        let (_, page) = one
            .get("/api/v1/vehicles?branch=Eldoret", Some(&admin.token))
            .await;
        (page["facets"]["total"] == 1).then_some(())
    })
    .await;
    two.stop().await;
    one.stop().await;
}
