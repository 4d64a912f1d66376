//! Traces: exported over OTLP/HTTP to a collector (here a real HTTP server in
//! the test that decodes what it receives), and one trace follows a request
//! from the client's `traceparent` through the gateway into the service and,
//! inside the CloudEvents it causes, into their consumers — on the in-process
//! bus, or RabbitMQ when MILIKI_TEST_AMQP_URL is set. Its own binary: the
//! exporter is process-wide.

use std::sync::{Arc, Mutex};

use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::clock::SystemClock;
use miliki_platform::config::LogFormat;
use miliki_platform::telemetry::{self, OtlpConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[path = "common/mod.rs"]
mod common;

use common::*;

#[derive(Debug, Clone)]
struct Exported {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver: POST /v1/traces with a protobuf body.
async fn collector() -> (String, Arc<Mutex<Vec<Exported>>>) {
    let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let sink = spans.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf")
                    );
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let mut sink = sink.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                            .map(|v| match v {
                                AnyValue::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                sink.push(Exported {
                                    service: service.clone(),
                                    trace_id: hex(&span.trace_id),
                                    span_id: hex(&span.span_id),
                                    parent_span_id: hex(&span.parent_span_id),
                                    name: span.name,
                                });
                            }
                        }
                    }
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), spans)
}

/// Sends what is buffered and waits until `want` holds of the received spans.
async fn received(
    telemetry: &Arc<telemetry::Telemetry>,
    spans: &Arc<Mutex<Vec<Exported>>>,
    what: &str,
    want: impl Fn(&[Exported]) -> bool,
) -> Vec<Exported> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let t = telemetry.clone();
        tokio::task::spawn_blocking(move || t.flush())
            .await
            .unwrap();
        let now = spans.lock().unwrap().clone();
        if want(&now) {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; received: {now:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn outbox_envelope(db: &miliki_platform::db::Db, event_type: &str) -> Value {
    let envelope: String =
        sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = $1 ORDER BY id LIMIT 1")
            .bind(event_type)
            .fetch_one(db.reader())
            .await
            .unwrap();
    serde_json::from_str(&envelope).unwrap()
}

fn registration(phone: &str) -> Value {
    json!({"name": "Traced Customer", "phone": phone, "password": PASSWORD})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_request_through_the_gateway_and_the_bus() {
    let (endpoint, spans) = collector().await;
    let telemetry = Arc::new(
        telemetry::init_with_otlp(
            LogFormat::Pretty,
            Some(&OtlpConfig {
                endpoint,
                service_name: "miliki-test".into(),
            }),
        )
        .unwrap(),
    );
    assert!(telemetry.exporting() && telemetry::tracing_enabled());

    // Embedded: the caller's trace continues into the service and its events.
    let app = TestApp::spawn().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .header("tracestate", "miliki=test")
        .json(&registration(&unique_phone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The event carries the trace as the CloudEvents distributed-tracing extension.
    let envelope = outbox_envelope(&app.users().db, "users.user.registered.v1").await;
    let traceparent = envelope["traceparent"].as_str().unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")) && traceparent.ends_with("-01"),
        "{envelope}"
    );
    assert_eq!(envelope["tracestate"], "miliki=test", "{envelope}");
    // Exported: the request's span, child of the caller's, and the consumers'
    // spans for the events it caused, all in the one trace.
    let got = received(&telemetry, &spans, "the request and a consumer span", |s| {
        s.iter()
            .any(|x| x.trace_id == trace_id && x.parent_span_id == client_span)
            && s.iter()
                .any(|x| x.trace_id == trace_id && x.name.contains(" users.user."))
    })
    .await;
    let request = got
        .iter()
        .find(|x| x.trace_id == trace_id && x.parent_span_id == client_span)
        .unwrap();
    assert_eq!(request.name, "POST /api/v1/auth/register");
    assert_eq!(request.service, "miliki-test");
    let consumer = got
        .iter()
        .find(|x| x.trace_id == trace_id && x.name.contains(" users.user."))
        .unwrap();
    assert_ne!(consumer.span_id, request.span_id);
    // A request without a traceparent starts a trace of its own.
    let (status, _) = app
        .post("/api/v1/auth/register", None, registration(&unique_phone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;

    // Distributed: the gateway is a span of the trace and passes its own
    // context on to the service it forwards to.
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path()).await;
    let service = Runtime::start(
        Kernel::new(settings.clone(), Arc::new(SystemClock))
            .await
            .unwrap(),
        Role::Service("users".into()),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let mut gateway_settings = settings;
    gateway_settings.extra.insert(
        "users_url".into(),
        format!("http://{}", service.addr).into(),
    );
    let gateway = Runtime::start(
        Kernel::new(gateway_settings, Arc::new(SystemClock))
            .await
            .unwrap(),
        Role::Gateway,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/auth/register", gateway.addr))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&registration(&unique_phone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let envelope = outbox_envelope(
        &service.deps("users").unwrap().db,
        "users.user.registered.v1",
    )
    .await;
    assert!(
        envelope["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("00-{trace_id}-"))),
        "{envelope}"
    );
    let got = received(
        &telemetry,
        &spans,
        "the gateway's and the service's spans",
        |s| {
            let gateway_span = s
                .iter()
                .find(|x| x.trace_id == trace_id && x.parent_span_id == client_span);
            gateway_span.is_some_and(|g| {
                s.iter()
                    .any(|x| x.trace_id == trace_id && x.parent_span_id == g.span_id)
            })
        },
    )
    .await;
    let gateway_span = got
        .iter()
        .find(|x| x.trace_id == trace_id && x.parent_span_id == client_span)
        .unwrap();
    let service_span = got
        .iter()
        .find(|x| x.trace_id == trace_id && x.parent_span_id == gateway_span.span_id)
        .unwrap();
    assert_eq!(service_span.name, "POST /api/v1/auth/register");
    gateway.stop().await.unwrap();
    service.stop().await.unwrap();
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush())
        .await
        .unwrap();
}
