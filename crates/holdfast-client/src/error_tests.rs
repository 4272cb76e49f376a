//! Unit tests for error classification: gRPC status and metadata to `ClientError` and `Outcome`.

use std::io;
use std::sync::Arc;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, ConnectError, Status};

use super::*;

const ENDPOINT: &str = "127.0.0.1:7001";

fn status_with(code: Code, pairs: &[(&'static str, &str)]) -> Status {
    let mut metadata = MetadataMap::new();
    for (key, value) in pairs {
        let value: MetadataValue<_> = value.parse().expect("test metadata is ASCII");
        metadata.insert(*key, value);
    }
    Status::with_metadata(code, "from server", metadata)
}

fn classify(status: &Status) -> ClientError {
    ClientError::from_status(status, ENDPOINT)
}

#[test]
fn unavailable_with_leader_hint_is_not_leader_and_not_applied() {
    let err = classify(&status_with(Code::Unavailable, &[(LEADER_METADATA, "127.0.0.1:7002")]));
    match &err {
        ClientError::NotLeader { leader, .. } => {
            assert_eq!(leader.as_deref(), Some("127.0.0.1:7002"));
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert_eq!(err.outcome(), Outcome::NotApplied);
    assert!(err.is_retryable());
}

#[test]
fn unavailable_marked_not_proposed_is_not_leader_without_hint() {
    let err = classify(&status_with(Code::Unavailable, &[(NOT_PROPOSED_METADATA, "true")]));
    assert!(matches!(err, ClientError::NotLeader { leader: None, .. }));
    assert_eq!(err.outcome(), Outcome::NotApplied);
}

#[test]
fn failed_precondition_with_leader_hint_is_not_leader() {
    let err = classify(&status_with(Code::FailedPrecondition, &[(LEADER_METADATA, "10.0.0.1:7001")]));
    assert!(matches!(err, ClientError::NotLeader { leader: Some(_), .. }));
}

#[test]
fn bare_unavailable_is_unknown_but_retryable() {
    for pairs in [&[][..], &[(NOT_PROPOSED_METADATA, "false")][..], &[(LEADER_METADATA, "  ")][..]] {
        let err = classify(&status_with(Code::Unavailable, pairs));
        assert!(matches!(err, ClientError::Unavailable(_)), "{err:?}");
        assert_eq!(err.outcome(), Outcome::Unknown);
        assert!(err.is_retryable());
    }
}

#[test]
fn aborted_is_cas_conflict_with_current_revision() {
    let err = classify(&status_with(Code::Aborted, &[(CURRENT_REVISION_METADATA, "42")]));
    assert!(matches!(err, ClientError::CasConflict { current_revision: Some(42), .. }));
    assert_eq!(err.outcome(), Outcome::NotApplied);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("current revision 42"));

    let garbled = classify(&status_with(Code::Aborted, &[(CURRENT_REVISION_METADATA, "forty-two")]));
    assert!(matches!(garbled, ClientError::CasConflict { current_revision: None, .. }));
}

#[test]
fn definite_refusals_are_not_applied_and_final() {
    for code in
        [Code::InvalidArgument, Code::NotFound, Code::PermissionDenied, Code::Unauthenticated, Code::FailedPrecondition]
    {
        let err = classify(&Status::new(code, "no"));
        assert_eq!(err.outcome(), Outcome::NotApplied, "{code:?}");
        assert!(!err.is_retryable(), "{code:?}");
        assert!(err.is_server_verdict(), "{code:?}");
    }
}

#[test]
fn ambiguous_failures_are_unknown_and_retried() {
    for code in [Code::DeadlineExceeded, Code::Internal, Code::Unknown, Code::Cancelled] {
        let err = classify(&Status::new(code, "maybe"));
        assert_eq!(err.outcome(), Outcome::Unknown, "{code:?}");
        assert!(err.is_retryable(), "{code:?}");
    }
}

#[test]
fn data_loss_has_its_own_variant_and_is_not_retried() {
    let err = classify(&Status::new(Code::DataLoss, "checksum mismatch"));
    assert!(matches!(err, ClientError::DataLoss(_)));
    assert_eq!(err.outcome(), Outcome::Unknown);
    assert!(!err.is_retryable());
}

#[test]
fn connect_failure_is_not_applied() {
    let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
    let status = Status::from_error(Box::new(ConnectError(Box::new(refused))));
    assert_eq!(status.code(), Code::Unavailable);
    let err = classify(&status);
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.outcome(), Outcome::NotApplied);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("connection refused"));
}

#[test]
fn transport_failure_after_sending_is_unknown() {
    // A client-made status with a source other than a connect error, whatever
    // its code, means the connection broke mid-call.
    for code in [Code::Unavailable, Code::Aborted, Code::Internal] {
        let mut status = Status::new(code, "connection reset");
        status.set_source(Arc::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        let err = classify(&status);
        assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
        assert_eq!(err.outcome(), Outcome::Unknown);
        assert!(err.is_retryable());
    }
}

#[test]
fn leader_hint_wins_over_transport_source() {
    let mut status = status_with(Code::Unavailable, &[(LEADER_METADATA, "h:1")]);
    status.set_source(Arc::new(io::Error::from(io::ErrorKind::ConnectionReset)));
    assert!(matches!(classify(&status), ClientError::NotLeader { .. }));
}

#[test]
fn exhausted_retries_keep_an_earlier_unknown_outcome() {
    let connect = || ClientError::Connect { endpoint: ENDPOINT.to_owned(), message: "refused".to_owned() };
    let after_timeout = ClientError::RetriesExhausted { attempts: 3, maybe_applied: true, last: Box::new(connect()) };
    assert_eq!(after_timeout.outcome(), Outcome::Unknown);
    assert!(after_timeout.to_string().contains("may have been applied"));

    let never_sent = ClientError::RetriesExhausted { attempts: 3, maybe_applied: false, last: Box::new(connect()) };
    assert_eq!(never_sent.outcome(), Outcome::NotApplied);
}

#[test]
fn timeout_is_unknown() {
    let err = ClientError::Timeout { endpoint: ENDPOINT.to_owned(), timeout: Duration::from_secs(5) };
    assert_eq!(err.outcome(), Outcome::Unknown);
    assert!(err.is_retryable());
}

#[test]
fn a_plaintext_client_says_what_a_broken_connection_may_mean() {
    let broken = ClientError::Transport { endpoint: ENDPOINT.to_owned(), message: "broken pipe".to_owned() };
    let hinted = broken.with_plaintext_hint();
    assert!(hinted.to_string().contains("broken pipe") && hinted.to_string().contains("speaks plaintext"), "{hinted}");
    assert_eq!(hinted.outcome(), Outcome::Unknown, "the hint changes the words, not the outcome");
    // Nothing listening is not a TLS question.
    let refused = ClientError::Connect { endpoint: ENDPOINT.to_owned(), message: "refused".to_owned() };
    assert!(!refused.with_plaintext_hint().to_string().contains("plaintext"));
}
