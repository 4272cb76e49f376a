//! The TLS accept loop: TCP connections from the node's listener, each
//! handshake in its own task under a timeout, and the finished TLS streams
//! handed to the gRPC server. A slow or failed handshake never holds up
//! another connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use holdfast_proto::coalesce::Coalesced;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsState;

/// A client that has not finished its handshake by then is dropped: it holds
/// a socket and a task, and a real client handshakes in milliseconds.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once. Past this the loop stops accepting until
/// one finishes, so a flood of half-open connections cannot exhaust memory
/// or file descriptors (the kernel backlog holds the rest).
const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Finished connections waiting for the gRPC server to take them.
const READY_QUEUE_MAX: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Counts handshakes that failed or timed out, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HandshakeStats {
    failed: AtomicU64,
}

impl HandshakeStats {
    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Accepts on `listener` until shutdown and yields TLS streams, each writing
/// once per burst. tonic reads the peer certificates of a
/// `TlsStream<TcpStream>` (through the wrapper's `Connected`) into each
/// request, which is what `peer_identity` reads.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<TlsState>,
    stats: Arc<HandshakeStats>,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Coalesced<TlsStream<TcpStream>>, std::io::Error>> {
    let (ready_tx, ready_rx) = mpsc::channel(READY_QUEUE_MAX);
    tokio::spawn(accept_loop(listener, tls, stats, ready_tx, shutdown));
    futures::stream::unfold(
        ready_rx,
        |mut rx| async move { rx.recv().await.map(|stream| (Ok(Coalesced::new(stream)), rx)) },
    )
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsState>,
    stats: Arc<HandshakeStats>,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => return,
            // The gRPC server has stopped taking connections.
            _ = ready.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Requests are small and latency-bound; Nagle only adds delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(tls.server_config());
        let ready = ready.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match handshake(acceptor, tcp, peer).await {
                Ok(stream) => {
                    let _ = ready.send(stream).await;
                }
                Err(reason) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    // Debug, not warn: scanners and misconfigured clients
                    // would otherwise flood the log; the metric shows a trend.
                    tracing::debug!(%peer, %reason, "TLS handshake failed");
                }
            }
        });
    }
}

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Result<TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake from {peer} within {HANDSHAKE_TIMEOUT:?}")),
    }
}
