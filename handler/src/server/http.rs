//! The HTTP/1.1 accept loop both listeners run: bounded connections and request heads, a
//! slow-loris timeout, and a graceful end that lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::StartError;

/// Open connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 1024;

/// The largest request head (request line and headers) read into memory; a longer one is refused
/// (hyper answers 431) before it grows further.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves HTTP/1.1 on `listener` until `stop` turns true, then lets every open connection finish
/// its in-flight request (idle keep-alive connections are closed at once). A client that takes
/// longer than `header_read` to send a request's head (`MEDIFLOW_HEADER_READ_TIMEOUT_MS`) loses
/// its connection instead of holding it.
pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    header_read: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read)
        .max_buf_size(MAX_HEAD_BYTES);
    // Beyond this many open connections the loop stops accepting (the kernel's backlog holds the
    // rest) until one closes.
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => slot,
            () = &mut stopped => break,
        };
        let Ok(slot) = slot else { break };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let service = hyper_util::service::TowerToHyperService::new(router.clone());
                    let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that goes away or times out ends its own connection only.
                        let _ = connection.await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut stopped => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}
