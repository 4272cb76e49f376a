//! A minimal HTTP/1.1 server for `GET /metrics` (Prometheus text format) on
//! its own listener, so scrapers never share the gRPC port and no HTTP
//! framework is needed for one read-only route.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::metrics::NodeMetrics;

/// A scrape request is one short line plus a few headers; anything larger is
/// not a scraper, and reading it unbounded would let a client fill memory.
pub const METRICS_REQUEST_BYTES_MAX: usize = 8 * 1024;

/// Scrapers are a handful of Prometheus servers; more concurrent connections
/// than this are refused so a flood cannot pile up tasks.
pub const METRICS_CONNECTIONS_MAX: usize = 16;

/// A client that does not send its request head within this time is dropped
/// (slowloris), freeing its connection slot.
const METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<NodeMetrics>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Usually EMFILE; back off instead of spinning on it.
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections, dropping one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(METRICS_REQUEST_TIMEOUT, answer(stream, &metrics)).await {
                tracing::debug!(%peer, error = %e, "metrics request timed out");
            }
            drop(permit);
        });
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(mut stream: TcpStream, metrics: &NodeMetrics) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= METRICS_REQUEST_BYTES_MAX {
            let _ =
                respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request too large\n").await;
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    // Query strings (`/metrics?name[]=...`) are ignored, as Prometheus does.
    let path = path.split(|b| *b == b'?').next().unwrap_or_default();
    let result = match (method, path) {
        (b"GET", b"/metrics") => {
            let body = metrics.render();
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body).await
        }
        (b"GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "only /metrics is served here\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "only GET is served here\n").await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "metrics response not delivered");
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
