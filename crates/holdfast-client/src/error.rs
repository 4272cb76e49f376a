//! The client's error enum, and how a failed call maps to it: was a write applied?
//!
//! A service writing a citizen's record must know whether a failed write
//! might have happened. Every error therefore answers `outcome()`:
//! `NotApplied` only when the server (or the absence of any connection)
//! proves nothing was proposed; `Unknown` otherwise. Retrying an `Unknown`
//! write with the same request id is safe because the server deduplicates.

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, ConnectError, Status};

/// Metadata key: the leader's `host:port` on a write refused by a follower.
pub const LEADER_METADATA: &str = "holdfast-leader";
/// Metadata key: `true` when the server guarantees the request was not proposed.
pub const NOT_PROPOSED_METADATA: &str = "holdfast-not-proposed";
/// Metadata key: the record's current revision on a compare-and-swap conflict.
pub const CURRENT_REVISION_METADATA: &str = "holdfast-current-revision";

/// Whether a failed write may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The write was definitely not applied; it is safe to change and resend it.
    NotApplied,
    /// The write may or may not have been applied; retry it with the same request id.
    Unknown,
}

/// Every way a client call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request was malformed or over a limit (`INVALID_ARGUMENT`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such record or revision (`NOT_FOUND`).
    #[error("not found: {0}")]
    NotFound(String),
    /// `if_revision` did not match (`ABORTED`).
    #[error("revision conflict (current revision {}): {message}", revision_text(*.current_revision))]
    CasConflict {
        /// The record's revision when the write was refused, if the server said.
        current_revision: Option<u64>,
        message: String,
    },
    /// The node is not the leader and did not propose the request.
    #[error("not leader (leader: {}): {message}", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader's `host:port`, when the node knows it.
        leader: Option<String>,
        message: String,
    },
    /// The cluster refused the operation in its current state, e.g. a
    /// membership change that breaks the placement rule (`FAILED_PRECONDITION`).
    #[error("refused: {0}")]
    FailedPrecondition(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Stored bytes failed verification (`DATA_LOSS`); needs an operator, never retried.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// The server answered `UNAVAILABLE` without saying the request was not proposed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No connection could be made, so nothing was sent.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// The connection failed after the request may have been sent.
    #[error("connection to {endpoint} failed: {message}")]
    Transport { endpoint: String, message: String },
    /// No answer within the client's per-request timeout.
    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// The server gave up waiting (`DEADLINE_EXCEEDED`).
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    #[error("internal server error: {0}")]
    Internal(String),
    /// Any other gRPC status.
    #[error("{code}: {message}")]
    Status { code: Code, message: String },
    /// The server answered with a message the client cannot use.
    #[error("malformed response: {0}")]
    InvalidResponse(String),
    /// The client stopped retrying: retries ran out, or stopping without this
    /// wrapper would hide an earlier attempt's unknown outcome. `last` is the
    /// final attempt's error.
    #[error("{last} (after {attempts} attempts{})", if *.maybe_applied { ", an earlier one may have been applied" } else { "" })]
    RetriesExhausted {
        attempts: u32,
        /// True when an attempt before `last` ended with an unknown outcome.
        maybe_applied: bool,
        last: Box<ClientError>,
    },
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("no endpoints configured")]
    NoEndpoints,
    /// The TLS files or settings cannot be used; nothing was sent.
    #[error("tls: {0}")]
    Tls(String),
}

fn revision_text(revision: Option<u64>) -> String {
    revision.map_or_else(|| "unknown".to_owned(), |r| r.to_string())
}

impl ClientError {
    /// Whether a write that failed with this error may have been applied.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::InvalidArgument(_)
            | Self::NotFound(_)
            | Self::CasConflict { .. }
            | Self::NotLeader { .. }
            | Self::FailedPrecondition(_)
            | Self::PermissionDenied(_)
            | Self::Unauthenticated(_)
            | Self::Connect { .. }
            | Self::InvalidEndpoint { .. }
            | Self::NoEndpoints
            | Self::Tls(_) => Outcome::NotApplied,
            Self::RetriesExhausted { maybe_applied: true, .. } => Outcome::Unknown,
            Self::RetriesExhausted { last, .. } => last.outcome(),
            // A malformed success may still be a success.
            Self::InvalidResponse(_)
            | Self::DataLoss(_)
            | Self::Unavailable(_)
            | Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::DeadlineExceeded(_)
            | Self::Internal(_)
            | Self::Status { .. } => Outcome::Unknown,
        }
    }

    /// Whether sending the same request again (with the same request id) can
    /// succeed. Unknown outcomes are retryable because the server
    /// deduplicates by request id; data loss is not, because it needs an
    /// operator and a quiet retry would hide it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotLeader { .. }
            | Self::Unavailable(_)
            | Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::DeadlineExceeded(_)
            | Self::Internal(_) => true,
            Self::Status { code, .. } => matches!(code, Code::Cancelled | Code::ResourceExhausted | Code::Unknown),
            Self::RetriesExhausted { last, .. } => last.is_retryable(),
            _ => false,
        }
    }

    /// True for a definite answer from the server about the request itself.
    /// Such an answer to a retry is authoritative even if an earlier attempt
    /// timed out: had that attempt been applied, the server would have
    /// answered the retry from its request-id table instead.
    pub(crate) fn is_server_verdict(&self) -> bool {
        matches!(
            self,
            Self::InvalidArgument(_)
                | Self::NotFound(_)
                | Self::CasConflict { .. }
                | Self::FailedPrecondition(_)
                | Self::PermissionDenied(_)
                | Self::Unauthenticated(_)
                | Self::DataLoss(_)
                | Self::InvalidResponse(_)
        )
    }

    /// The error as a client without TLS settings reports it: a node that
    /// requires mutual TLS closes a plaintext connection at once, which the
    /// client sees only as a broken connection, so a failed connection says
    /// what may be missing.
    pub(crate) fn with_plaintext_hint(self) -> Self {
        match self {
            Self::Transport { endpoint, message } => Self::Transport {
                endpoint,
                message: format!(
                    "{message} (this client speaks plaintext; a node that requires mutual TLS closes such \
                     connections: give the client its certificate, e.g. holdfastctl --cacert, --cert and --key)"
                ),
            },
            other => other,
        }
    }

    /// Classifies a gRPC status returned by a call to `endpoint`.
    pub fn from_status(status: &Status, endpoint: &str) -> Self {
        let message = status.message().to_owned();
        let leader = metadata_str(status, LEADER_METADATA).map(str::to_owned);
        let not_proposed =
            metadata_str(status, NOT_PROPOSED_METADATA).is_some_and(|value| value.eq_ignore_ascii_case("true"));
        match status.code() {
            // The design allows NOT_LEADER as FAILED_PRECONDITION too; the
            // metadata, not the code, is what proves nothing was proposed.
            Code::Unavailable | Code::FailedPrecondition if leader.is_some() || not_proposed => {
                Self::NotLeader { leader, message }
            }
            // tonic reports a failed connect as UNAVAILABLE with the
            // connect error as its source: the request never left.
            _ if has_source::<ConnectError>(status) => {
                Self::Connect { endpoint: endpoint.to_owned(), message: chain_text(status) }
            }
            // A status the server sent has no source; one with a source was
            // made by the client's own HTTP/2 stack, possibly after the
            // request went out, whatever code it maps the failure to.
            _ if status.source().is_some() => {
                Self::Transport { endpoint: endpoint.to_owned(), message: chain_text(status) }
            }
            Code::Unavailable => Self::Unavailable(message),
            Code::InvalidArgument => Self::InvalidArgument(message),
            Code::NotFound => Self::NotFound(message),
            Code::Aborted => Self::CasConflict {
                current_revision: metadata_str(status, CURRENT_REVISION_METADATA).and_then(|value| value.parse().ok()),
                message,
            },
            Code::FailedPrecondition => Self::FailedPrecondition(message),
            Code::PermissionDenied => Self::PermissionDenied(message),
            Code::Unauthenticated => Self::Unauthenticated(message),
            Code::DataLoss => Self::DataLoss(message),
            Code::DeadlineExceeded => Self::DeadlineExceeded(message),
            Code::Internal => Self::Internal(message),
            code => Self::Status { code, message },
        }
    }
}

/// A metadata value as trimmed, non-empty text; anything else counts as absent.
fn metadata_str<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
    let value = status.metadata().get(key)?.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

fn has_source<E: std::error::Error + 'static>(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<E>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The status message followed by the innermost cause, which is where
/// "connection refused" and similar details live.
fn chain_text(status: &Status) -> String {
    let mut innermost = None;
    let mut source = status.source();
    while let Some(err) = source {
        innermost = Some(err);
        source = err.source();
    }
    match innermost {
        Some(cause) if !status.message().contains(&cause.to_string()) => {
            format!("{}: {cause}", status.message())
        }
        _ => status.message().to_owned(),
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
