//! The harness: the sandbox router on 127.0.0.1:0, a receiver that records
//! every callback, and the real clients pointed at both.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{TimeZone, Utc};
use miliki_mobile_money::daraja::{C2bAnswer, Daraja, DarajaConfig};
use miliki_mobile_money::momo::{Momo, MomoConfig};
use miliki_mobile_money::sandbox::{self, SandboxOptions};
use miliki_platform::clock::{ManualClock, SharedClock};
use serde_json::Value;

/// The simulated customer's answer delay: short, but long enough that a
/// query right after a push still sees it pending.
pub const ANSWER_AFTER: Duration = Duration::from_millis(150);

#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Call>>>);

impl Recorded {
    pub fn at(&self, path: &str) -> Vec<Call> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }
}

pub struct Env {
    pub origin: String,
    pub receiver: String,
    pub clock: Arc<ManualClock>,
    pub recorded: Recorded,
    pub http: reqwest::Client,
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Records the call; a C2B validation is refused for account "NOSUCH".
async fn receive(
    State(recorded): State<Recorded>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let answer = if path == "/validation" && body["BillRefNumber"] == "NOSUCH" {
        C2bAnswer::unknown_account()
    } else {
        C2bAnswer::accept()
    };
    recorded.0.lock().unwrap().push(Call { method, path, body });
    Json(answer).into_response()
}

impl Env {
    pub async fn new() -> Env {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 12, 3, 8, 0, 0).unwrap(),
        ));
        let shared: SharedClock = clock.clone();
        let sandbox_addr = serve(sandbox::router(SandboxOptions {
            clock: shared,
            answer_after: ANSWER_AFTER,
        }))
        .await;
        let recorded = Recorded::default();
        let receiver_addr =
            serve(Router::new().fallback(receive).with_state(recorded.clone())).await;
        Env {
            origin: format!("http://{sandbox_addr}"),
            receiver: format!("http://{receiver_addr}"),
            clock,
            recorded,
            http: reqwest::Client::new(),
        }
    }

    pub fn daraja_config(&self) -> DarajaConfig {
        let r = &self.receiver;
        DarajaConfig {
            stk_callback_url: format!("{r}/stk"),
            c2b_validation_url: format!("{r}/validation"),
            c2b_confirmation_url: format!("{r}/confirmation"),
            status_result_url: format!("{r}/status-result"),
            status_timeout_url: format!("{r}/status-timeout"),
            timeout: Duration::from_secs(3),
            ..DarajaConfig::sandbox(format!("{}/sandbox/mpesa", self.origin))
        }
    }

    pub fn daraja(&self) -> Daraja {
        Daraja::new(self.daraja_config(), self.clock.clone())
    }

    pub fn momo(&self) -> Momo {
        Momo::new(
            MomoConfig {
                callback_url: format!("{}/momo", self.receiver),
                timeout: Duration::from_secs(3),
                ..MomoConfig::sandbox(format!("{}/sandbox/momo", self.origin))
            },
            self.clock.clone(),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.origin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.origin))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits (polling) until `n` calls reached `path` and returns them.
    pub async fn calls(&self, path: &str, n: usize) -> Vec<Call> {
        for _ in 0..300 {
            let calls = self.recorded.at(path);
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} calls at {path}, got {}",
            self.recorded.at(path).len()
        );
    }
}

/// A port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A server that accepts connections and never answers.
pub async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}
