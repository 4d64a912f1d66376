//! The JSON WebSocket: ingest with a device token, and the live feed with owner rules.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(app: &TestApp, path: &str, header: (&'static str, String)) -> Result<Socket, u16> {
    let url = format!("{}{path}", app.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

async fn device_socket(app: &TestApp, token: &str) -> Socket {
    open(
        app,
        "/api/v1/telematics/ingest",
        ("x-device-token", token.to_owned()),
    )
    .await
    .expect("device socket")
}

async fn live(app: &TestApp, account: &Account) -> Socket {
    open(
        app,
        "/api/v1/telematics/live",
        ("authorization", format!("Bearer {}", account.token)),
    )
    .await
    .expect("live socket")
}

/// The next JSON text message, if one comes within `wait`.
async fn next_json(ws: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).ok();
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

fn fix(at: chrono::DateTime<chrono::Utc>, lat: f64) -> Value {
    json!({"time": iso(at), "lat": lat, "lon": 36.82, "speed_kmh": 25.0, "ignition": true})
}

#[tokio::test]
async fn websocket_ingest_takes_single_and_batched_positions_with_a_device_token() {
    let app = spawn().await;
    let admin = app.admin().await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "websocket", vehicle).await;
    let token = d.token.clone().unwrap();
    use miliki_platform::clock::Clock;
    let t0 = app.clock.now() - chrono::Duration::minutes(1);

    assert_eq!(
        open(
            &app,
            "/api/v1/telematics/ingest",
            ("x-device-token", "mdt_wrong".into())
        )
        .await
        .err(),
        Some(401)
    );
    let mut ws = device_socket(&app, &token).await;
    send(&mut ws, fix(t0, -1.28)).await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap(),
        json!({"type": "ack", "accepted": 1})
    );
    send(&mut ws, json!({"positions": [fix(t0 + chrono::Duration::seconds(5), -1.281), fix(t0 + chrono::Duration::seconds(10), -1.282)]})).await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["accepted"],
        2
    );
    send(
        &mut ws,
        json!([fix(t0 + chrono::Duration::seconds(15), -1.283)]),
    )
    .await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["accepted"],
        1
    );
    let latest = wait_latest(
        &app,
        &admin.token,
        vehicle,
        t0 + chrono::Duration::seconds(15),
    )
    .await;
    assert_eq!(latest["position"]["speed_kmh"], 25.0);

    // A bad message is answered with what is wrong, and stores nothing.
    send(&mut ws, json!({"time": iso(t0), "lat": 123.0, "lon": 36.8})).await;
    let err = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(err["type"], "error");
    assert!(err["message"].as_str().unwrap().contains("lat"), "{err}");
    let (status, list) = app
        .get(
            &format!(
                "/api/v1/telematics/vehicles/{vehicle}/positions?from={}",
                iso(t0 - chrono::Duration::minutes(1))
            ),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
    // Garbage, repeatedly, ends the session.
    for _ in 0..3 {
        ws.send(Message::text("{not json")).await.ok();
    }
    let mut closed = false;
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                closed = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Err(_) => break,
        }
    }
    assert!(closed, "the socket stayed open");
}

#[tokio::test]
async fn the_live_feed_pushes_to_whoever_may_see_the_vehicle() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let stranger = app.customer().await;
    let mine = Uuid::now_v7();
    let theirs = Uuid::now_v7();
    let d_mine = register(&app, &admin, "websocket", mine).await;
    let d_theirs = register(&app, &admin, "websocket", theirs).await;
    hold(&app, mine, &customer).await;
    hold(&app, theirs, &stranger).await;

    assert_eq!(
        open(
            &app,
            "/api/v1/telematics/live",
            ("authorization", "Bearer nope".into())
        )
        .await
        .err(),
        Some(401)
    );
    let mut admin_feed = live(&app, &admin).await;
    let mut customer_feed = live(&app, &customer).await;
    let mut agent_feed = live(&app, &agent).await;
    let mut stranger_feed = live(&app, &stranger).await;
    use miliki_platform::clock::Clock;
    let t0 = app.clock.now();
    let mut dev = device_socket(&app, d_mine.token.as_deref().unwrap()).await;
    send(&mut dev, fix(t0, -1.29)).await;
    next_json(&mut dev, Duration::from_secs(5)).await.unwrap();

    for feed in [&mut admin_feed, &mut customer_feed, &mut agent_feed] {
        let m = next_json(feed, Duration::from_secs(5))
            .await
            .expect("pushed");
        assert_eq!(m["type"], "position");
        assert_eq!(m["vehicle_id"], mine.to_string());
    }
    assert!(next_json(&mut stranger_feed, Duration::from_millis(300))
        .await
        .is_none());

    let mut other = device_socket(&app, d_theirs.token.as_deref().unwrap()).await;
    send(&mut other, fix(t0, -1.30)).await;
    next_json(&mut other, Duration::from_secs(5)).await.unwrap();
    let m = next_json(&mut stranger_feed, Duration::from_secs(5))
        .await
        .expect("pushed");
    assert_eq!(m["vehicle_id"], theirs.to_string());
    assert!(next_json(&mut customer_feed, Duration::from_millis(300))
        .await
        .is_none());
    assert_eq!(
        next_json(&mut admin_feed, Duration::from_secs(5))
            .await
            .unwrap()["vehicle_id"],
        theirs.to_string()
    );
}
