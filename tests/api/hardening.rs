//! What one client, or one failing dependency, must not be able to do to the
//! platform: hold every connection, race the login throttle, lock an owner
//! out, slip control characters or keypad letters in, or get an answer that
//! is not a problem document.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// A TCP connection to `addr` from the loopback address `from`, so a test
/// can play a second client on one machine.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    socket.connect(addr).await
}

/// A client bound to a loopback address of its own.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(from))
        .build()
        .unwrap()
}

/// Whether the server has closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn half_open_connections_neither_starve_health_and_login_nor_stay_open() {
    let app = TestApp::spawn_with(|s| {
        s.header_read_timeout_ms = 800;
        s.max_connections_per_client = 40;
    })
    .await;
    let customer = app.customer().await;
    let addr = app.runtime().addr;
    // One client (127.0.0.2) opens 300 connections that send half a request.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = connect_from([127, 0, 0, 2], addr).await.unwrap();
        s.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    // Everyone else is still served, promptly.
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _) = app.get("/health/live", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    app.login(&customer.phone, PASSWORD).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Past the per-client cap connections are closed at once; the rest when
    // their headers do not arrive in time.
    let mut refused = 0;
    for s in held.iter_mut().skip(40) {
        refused += usize::from(closed_within(s, Duration::from_millis(300)).await);
    }
    assert!(
        refused >= 250,
        "only {refused} of 260 over the cap were closed"
    );
    for s in held.iter_mut().take(40) {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "a trickling connection stayed open"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_login_limit() {
    let app = TestApp::spawn().await;
    let victim = app.customer().await;
    let attempts = (0..40).map(|i| {
        let password = if i == 20 {
            PASSWORD.to_owned()
        } else {
            format!("wrong-password-{i}")
        };
        let body = json!({"login": victim.phone, "password": password});
        let (client, url) = (app.client.clone(), app.url("/api/v1/auth/login"));
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(attempts).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::OK || **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert_eq!(checked + limited, 40, "{statuses:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_owner_out() {
    let app = TestApp::spawn().await;
    let owner = app.customer().await;
    let attacker = client_from([127, 0, 0, 3]);
    let mut last = StatusCode::OK;
    for i in 0..8 {
        last = attacker
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"login": owner.phone, "password": format!("guess-number-{i}")}))
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // The owner, from their own address, still gets in.
    app.login(&owner.phone, PASSWORD).await;
    app.stop().await;
}

#[tokio::test]
async fn a_dead_redis_leaves_the_platform_up_and_degraded() {
    // Nothing listens on port 1: every connection is refused at once.
    let started = Instant::now();
    let app = TestApp::spawn_with(|s| {
        s.redis_url = Some("redis://127.0.0.1:1".into());
        s.redis_timeout_ms = 100;
    })
    .await;
    // A start that waited on Redis would sit out its connect retries; a
    // bound this loose still catches that, and not the seconds PostgreSQL
    // takes to migrate while a whole test binary runs at once on two cores.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(
        ready["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("degraded"),
        "{ready}"
    );
    // Requests are served, and the login throttle still counts (locally).
    let customer = app.customer().await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": customer.phone, "password": format!("wrong-guess-{i}")}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let started = Instant::now();
    let (status, _) = app.get("/api/v1/users/me", Some(&customer.token)).await;
    assert_eq!(status, StatusCode::OK);
    // Each Redis call gives up after its 100 ms; the request does not wait longer.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn token_errors_do_not_say_which_check_failed() {
    let app = TestApp::spawn().await;
    let customer = app.customer().await;
    // Same key, wrong audience: re-sign the payload with a different `aud`.
    let claims = json!({
        "sub": customer.id, "role": "customer", "iss": "miliki", "aud": "someone-else",
        "iat": app.clock.now().timestamp(), "exp": app.clock.now().timestamp() + 600,
        "jti": uuid::Uuid::now_v7(), "ver": 0
    });
    let secret =
        miliki_platform::config::read_jwt_secret(&app.dir.path().join("secrets.toml")).unwrap();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    for token in [forged.as_str(), "not.a.token"] {
        let (status, body) = app.get("/api/v1/users/me", Some(token)).await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(body["detail"], "invalid token", "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn errors_below_the_handlers_are_problem_documents() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 1024).await;
    // 405: a method the route does not take.
    let resp = app
        .client
        .delete(app.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 405);
    // 413: a body past the limit.
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://miliki.dev/problems/payload-too-large"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_rule_for_bad_list_parameters_on_every_list() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for path in [
        "/api/v1/users?limit=-1",
        "/api/v1/kyc/submissions?limit=-1",
        "/api/v1/reservations?limit=-1",
        "/api/v1/vehicles?limit=-1",
        "/api/v1/users?limit=abc",
    ] {
        let (status, body) = app.get(path, Some(&admin.token)).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&body), vec!["limit"], "{path}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn control_characters_and_keypad_letters_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"name": "Achieng\u{0}", "phone": unique_phone(), "password": PASSWORD}),
            "name",
        ),
        (
            json!({"name": "Achieng", "phone": "+2547ABCDEFGH", "password": PASSWORD}),
            "phone",
        ),
        (
            json!({"name": "Achieng", "phone": unique_phone(), "password": "pass\u{1b}[31mword-long"}),
            "password",
        ),
    ] {
        let (status, problem) = app.post("/api/v1/auth/register", None, body.clone()).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&problem), vec![field], "{problem}");
        // Nothing was created: the phone can still register cleanly.
        if field != "phone" {
            let clean = json!({"name": "Achieng", "phone": body["phone"], "password": PASSWORD});
            let (status, _) = app.post("/api/v1/auth/register", None, clean).await;
            assert_eq!(status, StatusCode::CREATED);
        }
    }
    // Query strings too.
    let admin = app.admin().await;
    let (status, problem) = app.get("/api/v1/users?q=%00abc", Some(&admin.token)).await;
    assert_problem(
        status,
        &problem,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&problem), vec!["q"]);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_what_routes_really_answer() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let me = &doc["paths"]["/api/v1/users/me"]["get"]["responses"];
    assert!(me.get("401").is_some(), "{me}");
    let register = &doc["paths"]["/api/v1/auth/register"]["post"]["responses"];
    for code in ["400", "413", "415", "422", "429"] {
        assert!(
            register.get(code).is_some(),
            "register lacks {code}: {register}"
        );
    }
    assert!(register.get("401").is_none(), "registration needs no token");
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let app = TestApp::spawn_with(|s| s.cors_origins = "https://app.miliki.example".into()).await;
    let ask = |origin: &'static str| {
        app.client
            .get(app.url("/health/live"))
            .header("origin", origin)
            .send()
    };
    let allowed = ask("https://app.miliki.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.miliki.example"
    );
    let other = ask("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    if postgres_url().is_some() {
        return; // no SQLite files in this run
    }
    let app = TestApp::spawn().await;
    app.customer().await;
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name == "secrets.toml" {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        }
    }
    app.stop().await;
}
