//! A tower layer on the gRPC server that counts every request by method and
//! status code and times it. One place for all services, so handlers carry
//! no instrumentation and new methods are counted without code changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use holdfast_storage::LatencyHistogram;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Context, Poll, Service};

use crate::error::NOT_PROPOSED_METADATA;

/// A bound on distinct `(method, code)` series. Method names come from the
/// request path, which any client controls; without a cap, random paths would
/// grow the map (and every scrape) forever. Real services have a few dozen.
pub const REQUEST_SERIES_MAX: usize = 256;

/// The method label used once `REQUEST_SERIES_MAX` is reached.
const OVERFLOW_METHOD: &str = "other";

/// Writes that become Raft proposals; their outcome feeds the proposal
/// counters.
const PROPOSAL_METHODS: [&str; 2] = ["/holdfast.v1.Registry/Put", "/holdfast.v1.Registry/Delete"];

/// Per `(method, code)`: how many requests and how long they took.
#[derive(Debug, Default)]
pub struct RequestStats {
    series: Mutex<BTreeMap<(String, i32), Arc<LatencyHistogram>>>,
    proposals_committed: AtomicU64,
    proposals_failed: AtomicU64,
}

impl RequestStats {
    fn record(&self, method: &str, code: i32, started: Instant) {
        let elapsed = started.elapsed();
        // A poisoned lock only means another request panicked mid-insert; the
        // map is still consistent, so keep counting.
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let key = (method.to_owned(), code);
        let histogram = match series.get(&key) {
            Some(h) => h.clone(),
            None if series.len() < REQUEST_SERIES_MAX => series.entry(key).or_default().clone(),
            None => series.entry((OVERFLOW_METHOD.into(), code)).or_default().clone(),
        };
        drop(series);
        histogram.observe(elapsed);
    }

    /// Every series, sorted by method then code.
    pub fn snapshot(&self) -> Vec<(String, i32, Arc<LatencyHistogram>)> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.iter().map(|((m, c), h)| (m.clone(), *c, h.clone())).collect()
    }

    /// `(committed, failed)` proposals since the node started.
    pub fn proposals(&self) -> (u64, u64) {
        (self.proposals_committed.load(Ordering::Relaxed), self.proposals_failed.load(Ordering::Relaxed))
    }

    /// Classifies a write's answer: OK or an application result (conflict,
    /// not found) means the proposal committed; a timeout or lost leader
    /// means it did not (or its fate is unknown). Invalid requests and
    /// redirects to the leader never became proposals and count as neither.
    fn record_proposal(&self, method: &str, code: i32, not_proposed: bool) {
        if not_proposed || !PROPOSAL_METHODS.contains(&method) {
            return;
        }
        let counter = match tonic::Code::from(code) {
            tonic::Code::Ok | tonic::Code::Aborted | tonic::Code::NotFound => &self.proposals_committed,
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::OutOfRange => return,
            _ => &self.proposals_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The layer to put on `tonic::transport::Server::builder()`.
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    stats: Arc<RequestStats>,
}

impl RequestMetricsLayer {
    pub fn new(stats: Arc<RequestStats>) -> Self {
        Self { stats }
    }
}

impl<S> tower_layer::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner, stats: self.stats.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    stats: Arc<RequestStats>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let stats = self.stats.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            // Errors from a handler go out "trailers-only": grpc-status is in
            // the response headers. A unary handler that succeeded sends it
            // in the trailers after the body, so no header means OK. Latency
            // is measured to the response head, which for unary calls is the
            // whole of the work.
            let (code, not_proposed) = match &result {
                Ok(response) => {
                    let headers = response.headers();
                    let code = headers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                    (code, headers.contains_key(NOT_PROPOSED_METADATA))
                }
                Err(_) => (tonic::Code::Unknown as i32, false),
            };
            stats.record(&method, code, started);
            stats.record_proposal(&method, code, not_proposed);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_capped_and_proposals_classified() {
        let stats = RequestStats::default();
        let now = Instant::now();
        stats.record_proposal(PROPOSAL_METHODS[0], 0, false);
        stats.record_proposal(PROPOSAL_METHODS[1], tonic::Code::Unavailable as i32, false);
        stats.record_proposal(PROPOSAL_METHODS[1], tonic::Code::Unavailable as i32, true);
        stats.record_proposal(PROPOSAL_METHODS[1], tonic::Code::InvalidArgument as i32, false);
        stats.record_proposal("/holdfast.v1.Registry/Get", 0, false);
        assert_eq!(stats.proposals(), (1, 1));
        for i in 0..REQUEST_SERIES_MAX * 2 {
            stats.record(&format!("/junk/{i}"), 0, now);
        }
        let series = stats.snapshot();
        assert!(series.len() <= REQUEST_SERIES_MAX + 1);
        assert!(series.iter().any(|(m, _, _)| m == OVERFLOW_METHOD));
    }
}
