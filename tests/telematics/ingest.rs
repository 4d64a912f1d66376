//! Positions arriving over each protocol, on real sockets, and reading them back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use miliki_telematics::domain::position::Position;
use miliki_telematics::protocol::gt06;
use miliki_telematics::protocol::teltonika::{self, IoValue};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

fn now(app: &TestApp) -> DateTime<Utc> {
    use miliki_platform::clock::Clock;
    app.clock.now()
}

#[tokio::test]
async fn teltonika_handshake_then_codec8_and_codec8e_are_acknowledged_and_stored() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;

    // An IMEI nobody registered is refused and counted.
    let (_t, answer) = Tracker::connect(l.teltonika, &imei()).await;
    assert_eq!(answer, 0);

    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = now(&app) - chrono::Duration::seconds(30);
    let r8 = record(
        t0,
        -1.2864,
        36.8172,
        42,
        true,
        &[(16, 1_234_567), (67, 4_100), (240, 1)],
    );
    t.send(&teltonika::encode_avl(teltonika::CODEC_8, &[r8]))
        .await;
    assert_eq!(t.ack(Duration::from_secs(5)).await, Some(1));
    let latest = wait_latest(&app, &admin.token, vehicle, t0).await;
    let p = &latest["position"];
    assert!(
        (p["lat"].as_f64().unwrap() + 1.2864).abs() < 1e-6,
        "{latest}"
    );
    assert!((p["lon"].as_f64().unwrap() - 36.8172).abs() < 1e-6);
    assert_eq!(p["speed_kmh"], 42.0);
    assert_eq!(p["ignition"], true);
    assert_eq!(p["movement"], true);
    assert_eq!(p["odometer_m"], 1_234_567);
    assert_eq!(p["ext_voltage_mv"], 12_800);
    assert_eq!(p["battery_mv"], 4_100);
    assert_eq!(p["io"]["239"], 1);

    // Codec 8 Extended: two-byte ids and a variable-length element.
    let mut a = record(
        t0 + chrono::Duration::seconds(10),
        -1.2870,
        36.8180,
        30,
        true,
        &[],
    );
    a.io.push((10_500, IoValue::Bytes(b"KDA 123X".to_vec())));
    let b = record(
        t0 + chrono::Duration::seconds(20),
        -1.2880,
        36.8190,
        0,
        false,
        &[],
    );
    assert_eq!(t.report(&[a, b]).await, 2);
    let latest = wait_latest(
        &app,
        &admin.token,
        vehicle,
        t0 + chrono::Duration::seconds(20),
    )
    .await;
    assert_eq!(latest["position"]["ignition"], false);
    let (status, list) = app
        .get(
            &format!(
                "/api/v1/telematics/vehicles/{vehicle}/positions?from={}",
                iso(t0 - chrono::Duration::minutes(1))
            ),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["io"]["10500"], "4b44412031323358");
    let (_, info) = app
        .get("/api/v1/telematics/listeners", Some(&admin.token))
        .await;
    assert!(
        info["unknown_device_reports"].as_u64().unwrap() >= 1,
        "{info}"
    );
}

#[tokio::test]
async fn a_bad_crc_gets_no_acknowledgement_and_garbage_closes_the_connection() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let at = now(&app);
    let mut bad = teltonika::encode_avl(
        teltonika::CODEC_8E,
        &[record(at, -1.28, 36.82, 10, true, &[])],
    );
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    t.send(&bad).await;
    assert_eq!(t.ack(Duration::from_millis(400)).await, None);
    // The connection survives one bad packet; the resend is taken.
    let good = record(at, -1.28, 36.82, 10, true, &[]);
    assert_eq!(t.report(&[good]).await, 1);
    let (status, list) = app
        .get(
            &format!("/api/v1/telematics/vehicles/{vehicle}/positions"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Bytes that are not the protocol end the session.
    t.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), t.stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
}

#[tokio::test]
async fn resent_and_out_of_order_records_are_stored_once_and_latest_never_goes_back() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = now(&app) - chrono::Duration::minutes(5);
    let late = record(
        t0 + chrono::Duration::seconds(60),
        -1.30,
        36.80,
        20,
        true,
        &[],
    );
    let early = record(t0, -1.31, 36.81, 20, true, &[]);
    assert_eq!(t.report(std::slice::from_ref(&late)).await, 1);
    // A reconnecting tracker resends what it had, older records included.
    drop(t);
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    assert_eq!(t.report(&[early.clone(), late.clone(), early]).await, 3);
    let latest = wait_latest(&app, &admin.token, vehicle, late.at).await;
    assert!((latest["position"]["lat"].as_f64().unwrap() + 1.30).abs() < 1e-6);
    let (_, list) = app
        .get(
            &format!(
                "/api/v1/telematics/vehicles/{vehicle}/positions?from={}",
                iso(t0 - chrono::Duration::minutes(1))
            ),
            Some(&admin.token),
        )
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    if postgres_url().is_some() {
        // On PostgreSQL the rows sit in the day's partition.
        let day = t0.format("%Y%m%d");
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM positions_p{day}"))
            .fetch_one(telematics(&app).db.reader())
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
    assert!(items[0]["at"].as_str() < items[1]["at"].as_str());
}

#[tokio::test]
async fn gt06_login_location_and_status_are_acknowledged_and_stored() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "gt06", vehicle).await;
    let mut s = tokio::net::TcpStream::connect(l.gt06).await.unwrap();
    s.write_all(&gt06::encode_login(&d.imei, 1)).await.unwrap();
    let mut ack = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&ack[..6], &[0x78, 0x78, 0x05, 0x01, 0x00, 0x01]);
    let crc = miliki_telematics::protocol::crc::crc_itu(&ack[2..6]);
    assert_eq!(&ack[6..], &[(crc >> 8) as u8, crc as u8, 0x0D, 0x0A]);

    let at = now(&app) - chrono::Duration::seconds(5);
    let fix = Position {
        at: at - chrono::Duration::nanoseconds(at.timestamp_subsec_nanos() as i64),
        lat: -1.2921,
        lon: 36.8219,
        speed_kmh: 33.0,
        heading: Some(180.0),
        satellites: Some(9),
        ..Default::default()
    };
    s.write_all(&gt06::encode_location(&fix, 2)).await.unwrap();
    let latest = wait_latest(&app, &admin.token, vehicle, fix.at).await;
    let p = &latest["position"];
    assert!(
        (p["lat"].as_f64().unwrap() + 1.2921).abs() < 1e-5,
        "{latest}"
    );
    assert_eq!(p["speed_kmh"], 33.0);
    assert_eq!(p["heading"], 180.0);

    // A heartbeat (status) is acknowledged with its serial.
    s.write_all(&gt06::encode(0x13, &[0x46, 0x05, 0x04, 0x00, 0x02], 3))
        .await
        .unwrap();
    let mut ack = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&ack[..6], &[0x78, 0x78, 0x05, 0x13, 0x00, 0x03]);

    // Without a login first, or with an unknown IMEI, the connection is closed.
    let mut s = tokio::net::TcpStream::connect(l.gt06).await.unwrap();
    s.write_all(&gt06::encode_login(&imei(), 1)).await.unwrap();
    let mut buf = [0u8; 10];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}

#[tokio::test]
async fn osmand_query_and_json_forms_with_speed_in_knots() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "osmand", vehicle).await;
    let token = d.token.clone().unwrap();
    let base = format!("http://{}/", l.osmand);
    let ts = now(&app).timestamp() - 60;
    let resp = app
        .client
        .post(&base)
        .query(&[
            ("id", token.as_str()),
            ("lat", "-1.2641"),
            ("lon", "36.8025"),
            ("timestamp", &ts.to_string()),
            ("speed", "10"),
            ("bearing", "45"),
            ("batt", "76"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let at = DateTime::from_timestamp(ts, 0).unwrap();
    let latest = wait_latest(&app, &admin.token, vehicle, at).await;
    assert!(
        (latest["position"]["speed_kmh"].as_f64().unwrap() - 18.52).abs() < 1e-9,
        "{latest}"
    );
    assert_eq!(latest["position"]["battery_pct"], 76.0);

    // The JSON form of Traccar Client: IMEI-free, speed in m/s.
    let at2 = at + chrono::Duration::seconds(30);
    let resp = app
        .client
        .post(&base)
        .json(
            &json!({"device_id": token, "location": {"timestamp": at2.to_rfc3339(),
            "coords": {"latitude": -1.2650, "longitude": 36.8030, "speed": 5.0, "heading": 90.0},
            "is_moving": true, "battery": {"level": 0.5}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let latest = wait_latest(&app, &admin.token, vehicle, at2).await;
    assert_eq!(latest["position"]["speed_kmh"], 18.0);

    // The IMEI with the token works too; bad input names the parameter.
    let resp = app
        .client
        .get(&base)
        .query(&[
            ("id", d.imei.as_str()),
            ("token", token.as_str()),
            ("lat", "-1.27"),
            ("lon", "36.81"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .client
        .get(&base)
        .query(&[("id", token.as_str()), ("lat", "-95"), ("lon", "36.8")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().starts_with("lat:"));
    let resp = app
        .client
        .get(&base)
        .query(&[("id", "mdt_not-a-token"), ("lat", "-1"), ("lon", "36")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(&base)
        .query(&[("id", d.imei.as_str()), ("lat", "-1"), ("lon", "36")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reading_positions_geojson_thinned_and_only_for_those_who_may() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let stranger = app.customer().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    hold(&app, vehicle, &customer).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = now(&app) - chrono::Duration::minutes(10);
    let recs: Vec<_> = (0..6)
        .map(|i| {
            record(
                t0 + chrono::Duration::seconds(i * 10),
                -1.28 - i as f64 * 0.001,
                36.82,
                30,
                true,
                &[],
            )
        })
        .collect();
    assert_eq!(t.report(&recs).await, 6);
    wait_latest(&app, &customer.token, vehicle, recs[5].at).await;
    let from = iso(t0 - chrono::Duration::minutes(1));
    let path = format!("/api/v1/telematics/vehicles/{vehicle}/positions");
    let resp = app
        .client
        .get(app.url(&path))
        .query(&[("from", from.as_str()), ("format", "geojson")])
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let geo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(geo["type"], "FeatureCollection");
    assert_eq!(geo["features"].as_array().unwrap().len(), 7);
    let resp = app
        .client
        .get(app.url(&path))
        .query(&[("from", from.as_str()), ("every_secs", "30")])
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    let thin: serde_json::Value = resp.json().await.unwrap();
    assert!(thin["items"].as_array().unwrap().len() <= 3, "{thin}");

    let (status, body) = app
        .get(
            &format!("{path}?from=yesterday&format=kml&every_secs=0"),
            Some(&admin.token),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 3, "{body}");
    for p in [
        path.clone(),
        format!("/api/v1/telematics/vehicles/{vehicle}/position"),
        format!("/api/v1/telematics/vehicles/{vehicle}/trips"),
    ] {
        let (status, body) = app.get(&p, Some(&stranger.token)).await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    }
    let (status, body) = app
        .get("/api/v1/telematics/listeners", Some(&customer.token))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // One trip of about 550 m, and the day's distance.
    let (status, trips) = app
        .get(
            &format!("/api/v1/telematics/vehicles/{vehicle}/trips?from={}", from),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{trips}");
    assert_eq!(trips["items"].as_array().unwrap().len(), 1);
    let m = trips["items"][0]["distance_m"].as_f64().unwrap();
    assert!((500.0..600.0).contains(&m), "{trips}");
    let (status, days) = app
        .get(
            &format!(
                "/api/v1/telematics/vehicles/{vehicle}/daily-distance?from={}",
                from
            ),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{days}");
    assert_eq!(days["items"].as_array().unwrap().len(), 1);
}
