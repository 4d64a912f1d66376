//! The tracker listeners: Teltonika and GT06 over TCP, OsmAnd over HTTP.
//! Each is a background job on a socket bound when the service starts, so a
//! port that is taken fails the start instead of failing silently later.

pub mod gt06;
pub mod osmand;
pub mod teltonika;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Counts a connection as open for as long as it lives.
pub(crate) struct OpenConnection {
    state: AppState,
    _permit: OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until shut down, refusing those past the shared limit.
pub(crate) async fn accept_loop<F, Fut>(
    state: AppState,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    protocol: &'static str,
    serve: F,
) where
    F: Fn(AppState, TcpStream, OpenConnection, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(protocol, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(protocol, %peer, "connection refused: too many open tracker connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.stats.open_connections.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection {
            state: state.clone(),
            _permit: permit,
        };
        tasks.spawn(serve(state.clone(), stream, open, shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
}
