//! Serving HTTP so that no single client can take the process down: headers
//! must arrive within a deadline (which also closes idle keep-alive
//! connections), connections are capped overall and per client address, and
//! shutdown waits for in-flight requests only as long as it is allowed to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Settings;

/// How much one listener lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections in all; past it new ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
    /// A request's headers must be complete this long after the connection
    /// (or the previous response) became ready for them.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for open requests and streams.
    pub shutdown_grace: Duration,
}

impl ServeLimits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_connections: settings.max_connections.max(1),
            max_per_client: settings.max_connections_per_client.max(1),
            header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms.max(1)),
            shutdown_grace: Duration::from_secs(settings.shutdown_grace_secs),
        }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self::from_settings(&Settings::default())
    }
}

/// Raises this process's open-file limit to its hard limit, where the OS
/// allows, and returns the limit in force. Every connection is a descriptor.
pub fn raise_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Counts open connections per client address.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
struct ClientSlot {
    table: PerClient,
    ip: IpAddr,
}

impl PerClient {
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let open = table.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = table.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` is cancelled,
/// then stops accepting and lets open connections finish, for at most the
/// grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ServeLimits,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = PerClient::default();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: the limits above should prevent them, but
                    // never spin on them, and never stop serving because of them.
                    metrics::counter!("http_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slots) = admit(&total, &per_client, peer.ip(), limits) else {
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slots);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

fn admit(
    total: &Arc<Semaphore>,
    per_client: &PerClient,
    ip: IpAddr,
    limits: ServeLimits,
) -> Option<(OwnedSemaphorePermit, ClientSlot)> {
    let permit = total.clone().try_acquire_owned().ok()?;
    let slot = per_client.acquire(ip, limits.max_per_client)?;
    Some((permit, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_counted_and_returned() {
        let table = PerClient::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let a = table.acquire(ip, 2).expect("first");
        let _b = table.acquire(ip, 2).expect("second");
        assert!(table.acquire(ip, 2).is_none());
        assert!(table.acquire(IpAddr::from([10, 0, 0, 2]), 2).is_some());
        drop(a);
        assert!(table.acquire(ip, 2).is_some());
    }
}
