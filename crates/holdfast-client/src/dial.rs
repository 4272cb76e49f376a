//! Connections the client dials itself — TCP without Nagle, then mutual TLS
//! when configured — so that its writes go through
//! [`holdfast_proto::coalesce`]: many callers' requests on one connection
//! leave as one TLS record and one system call instead of one each.
//!
//! tonic dials `http://` endpoints through this connector; for a TLS
//! client the endpoint it is given is the `https://` one rewritten to
//! `http://` (tonic refuses `https://` unless it does the TLS itself), and
//! the TLS happens here, verified under the endpoint's host as before. So
//! requests carry `:scheme: http` over TLS; nodes do not read it.
//!
//! A host name is resolved and its addresses tried in turn, each until it
//! connects or fails; the endpoint's connect timeout bounds the whole dial
//! (TCP and TLS).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use holdfast_proto::coalesce::Coalesced;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials one node: TCP, then TLS with `tls` if set. tonic bounds the whole
/// of it by the endpoint's connect timeout.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    tls: Option<Arc<ClientConfig>>,
}

impl Dialer {
    pub(crate) fn new(tls: Option<Arc<ClientConfig>>) -> Self {
        Self { tls }
    }

    async fn dial(self, uri: Uri) -> Result<TokioIo<Coalesced<Conn>>, BoxError> {
        let host = uri.host().ok_or_else(|| format!("endpoint {uri} has no host"))?;
        // An IPv6 literal comes bracketed out of a URI.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().ok_or_else(|| format!("endpoint {uri} has no port"))?;
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        // Requests are small and latency-bound; Nagle only adds delay.
        tcp.set_nodelay(true)?;
        let conn = match self.tls {
            None => Either::Left(tcp),
            Some(config) => {
                let name = ServerName::try_from(host.clone())?;
                let tls = TlsConnector::from(config).connect(name, tcp).await?;
                // As tonic does: a server that does not agree to HTTP/2 is
                // refused here, before any request is sent to it.
                if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                    return Err(format!("{host}:{port} did not agree to HTTP/2 in the TLS handshake").into());
                }
                Either::Right(Box::new(tls))
            }
        };
        Ok(TokioIo::new(Coalesced::new(conn)))
    }
}

impl Service<Uri> for Dialer {
    type Response = TokioIo<Coalesced<Conn>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().dial(uri))
    }
}

/// A dialled connection, plaintext or TLS.
pub(crate) type Conn = Either<TcpStream, Box<TlsStream<TcpStream>>>;
