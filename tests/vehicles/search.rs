//! Search: filters, sorts, cursors, facets, text, distance, and who sees what.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// A small, varied inventory: (make, model, type, year, price in KES, branch, lat, lon).
async fn stock(app: &TestApp, admin: &Account) -> Vec<Value> {
    let rows = [
        (
            "Toyota",
            "Fielder",
            "car",
            2018,
            1_450_000,
            "Nairobi CBD",
            -1.2841,
            36.8233,
            "hybrid ride-hailing favourite",
        ),
        (
            "Toyota",
            "Vitz",
            "car",
            2015,
            950_000,
            "Nairobi Westlands",
            -1.2676,
            36.8108,
            "small and thrifty",
        ),
        (
            "Nissan",
            "Note",
            "car",
            2016,
            1_050_000,
            "Mombasa",
            -4.0435,
            39.6682,
            "coastal runabout",
        ),
        (
            "Toyota",
            "HiAce",
            "van",
            2014,
            3_200_000,
            "Nakuru",
            -0.3031,
            36.0800,
            "school transport",
        ),
        (
            "Isuzu",
            "NQR",
            "truck",
            2019,
            5_500_000,
            "Eldoret",
            0.5143,
            35.2698,
            "haulage of produce",
        ),
        (
            "Bajaj",
            "Boxer BM150",
            "motorcycle",
            2025,
            165_000,
            "Nairobi CBD",
            -1.2900,
            36.8200,
            "boda boda workhorse",
        ),
        (
            "TVS",
            "HLX 125",
            "motorcycle",
            2024,
            140_000,
            "Kisumu",
            -0.0917,
            34.7680,
            "boda boda on a budget",
        ),
    ];
    let mut out = Vec::new();
    for (make, model, kind, year, kes, branch, lat, lon, desc) in rows {
        let base = match kind {
            "car" => car(),
            "motorcycle" => motorcycle(),
            "van" => with(
                car(),
                json!({"type": "van", "seats": 3, "transmission": null, "cargo_volume_litres": 6000}),
            ),
            _ => with(
                car(),
                json!({"type": "truck", "seats": null, "transmission": null, "payload_kg": 5000, "axles": 2, "fuel": "diesel"}),
            ),
        };
        let body = with(
            base,
            json!({
                "make": make, "model": model, "year": year, "price_minor": kes * 100,
                "branch": branch, "latitude": lat, "longitude": lon, "description": desc,
            }),
        );
        out.push(list_vehicle(app, admin, body).await);
    }
    out
}

fn makes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["model"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_sorts_cursors_and_facets() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    stock(&app, &admin).await;
    let t = Some(customer.token.as_str());

    let (status, page) = app.get("/api/v1/vehicles?type=car&sort=price_asc", t).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(makes(&page), vec!["Vitz", "Note", "Fielder"]);
    assert_eq!(page["facets"]["total"], 3);
    assert_eq!(page["facets"]["make"], json!({"Nissan": 1, "Toyota": 2}));
    assert_eq!(page["facets"]["type"], json!({"car": 3}));
    assert!(page["items"][0].get("cost_price_minor").is_none());

    let (_, page) = app
        .get("/api/v1/vehicles?make=TOYOTA&sort=price_desc", t)
        .await;
    assert_eq!(makes(&page), vec!["HiAce", "Fielder", "Vitz"]);
    let (_, page) = app
        .get(
            "/api/v1/vehicles?year_min=2016&year_max=2019&sort=year_desc",
            t,
        )
        .await;
    assert_eq!(makes(&page), vec!["NQR", "Fielder", "Note"]);
    let (_, page) = app
        .get(
            "/api/v1/vehicles?price_min=100000000&price_max=200000000",
            t,
        )
        .await;
    assert_eq!(page["facets"]["total"], 2);
    let (_, page) = app.get("/api/v1/vehicles?branch=Nairobi%20CBD", t).await;
    assert_eq!(page["facets"]["branch"], json!({"Nairobi CBD": 2}));
    let (_, page) = app.get("/api/v1/vehicles?model=hiace", t).await;
    assert_eq!(makes(&page), vec!["HiAce"]);

    // Free text matches words by prefix across make, model and description.
    let (_, page) = app.get("/api/v1/vehicles?q=boda", t).await;
    assert_eq!(page["facets"]["total"], 2);
    let (_, page) = app.get("/api/v1/vehicles?q=toyo%20hyb", t).await;
    assert_eq!(makes(&page), vec!["Fielder"]);
    let (_, page) = app.get("/api/v1/vehicles?q=HAUL", t).await;
    assert_eq!(makes(&page), vec!["NQR"]);
    let (_, page) = app.get("/api/v1/vehicles?q=zzzz", t).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    // Near me: only within the radius, nearest first, with distances.
    let (_, page) = app
        .get("/api/v1/vehicles?near=-1.2864,36.8172&radius_km=10", t)
        .await;
    assert_eq!(makes(&page), vec!["Boxer BM150", "Fielder", "Vitz"]);
    let d: Vec<f64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["distance_km"].as_f64().unwrap())
        .collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]) && d[2] < 10.0, "{d:?}");
    assert_eq!(page["facets"]["total"], 3);
    let (_, page) = app
        .get(
            "/api/v1/vehicles?near=-1.2864,36.8172&radius_km=10&sort=price_asc&type=car",
            t,
        )
        .await;
    assert_eq!(makes(&page), vec!["Vitz", "Fielder"]);

    // Cursors walk every sort without repeats or gaps.
    for sort in ["newest", "price_asc", "price_desc", "year_desc", "year_asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/vehicles?limit=2&sort={sort}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = app.get(&path, t).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            if cursor.is_some() {
                assert!(
                    page["facets"].is_null(),
                    "facets come with the first page only"
                );
            }
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 7, "{sort}");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7, "{sort}");
    }
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/vehicles?limit=1&near=-1.2864,36.8172&radius_km=50".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (_, page) = app.get(&path, t).await;
        all.extend(makes(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(all, vec!["Boxer BM150", "Fielder", "Vitz"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_search_parameters_are_named() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    let t = Some(customer.token.as_str());
    let other_sort = {
        let admin = app.admin().await;
        stock(&app, &admin).await;
        let (_, page) = app.get("/api/v1/vehicles?limit=1&sort=price_asc", t).await;
        page["next_cursor"].as_str().unwrap().to_owned()
    };
    let cases = [
        ("type=plane", "type"),
        ("year_min=abc", "year_min"),
        ("year_min=2020&year_max=2010", "year_max"),
        ("price_min=-5", "price_min"),
        ("near=95,10", "near"),
        ("near=-1.2,200", "near"),
        ("near=nairobi", "near"),
        ("radius_km=5", "radius_km"),
        ("near=-1.2,36.8&radius_km=0", "radius_km"),
        ("cursor=garbage", "cursor"),
        ("sort=distance", "sort"),
        ("sort=cheapest", "sort"),
        ("limit=500", "limit"),
        ("status=retired", "status"),
        ("status=sold", "status"),
    ];
    for (query, field) in cases {
        let (status, body) = app.get(&format!("/api/v1/vehicles?{query}"), t).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert!(
            invalid_fields(&body).contains(&field.to_owned()),
            "{query}: {body}"
        );
    }
    let (status, body) = app
        .get(
            &format!("/api/v1/vehicles?sort=newest&cursor={other_sort}"),
            t,
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, _) = app.get("/api/v1/vehicles", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn customers_see_available_vehicles_and_their_own() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let holder = eligible_customer(&app, &admin).await;
    let other = app.customer().await;
    let vehicles = stock(&app, &admin).await;
    let reserved = vehicles[0]["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/vehicles/{reserved}/reservations"),
            Some(&holder.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, page) = app
        .get("/api/v1/vehicles?limit=100", Some(&other.token))
        .await;
    assert_eq!(ids(&page).len(), 6);
    assert!(!ids(&page).contains(&reserved.to_owned()));
    let (_, page) = app
        .get("/api/v1/vehicles?limit=100", Some(&holder.token))
        .await;
    assert_eq!(ids(&page).len(), 7);
    let mine = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == reserved)
        .unwrap();
    assert_eq!(mine["held_by_you"], true);
    let (_, page) = app
        .get("/api/v1/vehicles?status=reserved", Some(&other.token))
        .await;
    assert_eq!(ids(&page).len(), 0);
    let (_, page) = app
        .get("/api/v1/vehicles?status=reserved", Some(&admin.token))
        .await;
    assert_eq!(ids(&page), vec![reserved.to_owned()]);
    assert_eq!(page["items"][0]["held_by"], holder.id.to_string());

    // Another customer reading the reserved vehicle gets its public facts only.
    let (status, seen) = app
        .get(&format!("/api/v1/vehicles/{reserved}"), Some(&other.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["status"], "reserved");
    assert_eq!(seen["held_by_you"], false);
    for internal in ["held_by", "cost_price_minor", "notes"] {
        assert!(seen.get(internal).is_none(), "{internal} leaked: {seen}");
    }
    app.stop().await;
}
