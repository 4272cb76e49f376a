//! The call loop: route each attempt, classify its failure, follow leader hints, back off, retry.
//!
//! Every RPC goes through [`Client::call`]. The caller builds its request
//! once, before the loop, so a write's request id is the same on every
//! attempt and the server can answer a retry with the first result.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Status;

use crate::client::Client;
use crate::endpoint::display_endpoint;
use crate::error::{ClientError, Outcome};
use crate::pool::Target;

/// First pause after a failure that a retry elsewhere cannot fix at once.
const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Longest pause: long enough not to flood a cluster that is electing a
/// leader, short enough to notice the new leader within a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where a call may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only the leader can serve it: writes, linearizable reads, membership.
    Leader,
    /// Any node can serve it: stale reads, status.
    Any,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub route: Route,
    /// Retry failures with an unknown outcome: safe for reads and for writes
    /// that carry a request id, not for membership changes, which have none.
    pub retry_unknown: bool,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl Client {
    /// Reads and request-id writes: retry everything retryable.
    pub(crate) fn idempotent_policy(&self, route: Route) -> Policy {
        Policy { route, retry_unknown: true, timeout: self.config.timeout, max_retries: self.config.max_retries }
    }

    /// Membership changes: follow the leader, but never resend one that may
    /// have been applied.
    pub(crate) fn membership_policy(&self) -> Policy {
        Policy {
            route: Route::Leader,
            retry_unknown: false,
            timeout: self.config.membership_timeout,
            max_retries: self.config.max_retries,
        }
    }

    /// Runs `attempt` against the endpoint chosen by `policy.route` until it
    /// succeeds or a failure must be reported.
    pub(crate) async fn call<T, F, Fut>(&self, policy: Policy, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let follow = self.config.follow_leader && policy.route == Route::Leader;
        let mut backoff = Backoff::default();
        // Whether an attempt before the current one may have been applied.
        let mut earlier_unknown = false;
        let mut attempts: u32 = 0;
        // Endpoints that could not be reached during this call: a leader hint
        // naming one of them is stale (the cluster has not elected anew yet),
        // so following it waits for the backoff instead of spinning.
        let mut unreachable: Vec<usize> = Vec::new();
        loop {
            let target = self.pool.pick(follow);
            attempts = attempts.saturating_add(1);
            let answer = tokio::time::timeout(policy.timeout, attempt(target.channel.clone())).await;
            // Errors name endpoints as people write them, without the scheme.
            let endpoint = display_endpoint(&target.url);
            let error = match answer {
                Ok(Ok(value)) => {
                    if follow {
                        self.pool.mark_leader(target.index);
                    }
                    return Ok(value);
                }
                Ok(Err(status)) => {
                    let error = ClientError::from_status(&status, endpoint);
                    if self.pool.uses_tls() {
                        error
                    } else {
                        error.with_plaintext_hint()
                    }
                }
                Err(_elapsed) => ClientError::Timeout { endpoint: endpoint.to_owned(), timeout: policy.timeout },
            };
            if matches!(
                error,
                ClientError::Connect { .. } | ClientError::Transport { .. } | ClientError::Timeout { .. }
            ) {
                unreachable.push(target.index);
            }
            let pause = self.reroute(&error, &target, follow, &unreachable);
            if !should_retry(&error, &policy, self.config.follow_leader, attempts) {
                let exhausted = attempts > policy.max_retries;
                return Err(conclude(error, attempts, earlier_unknown, exhausted));
            }
            earlier_unknown |= error.outcome() == Outcome::Unknown;
            tracing::debug!(endpoint = %target.url, attempt = attempts, %error, "retrying holdfast call");
            if pause {
                backoff.sleep().await;
            }
        }
    }

    /// Updates the endpoint set after a failure on `target`; returns whether
    /// the next attempt should wait first.
    fn reroute(&self, error: &ClientError, target: &Target, follow: bool, unreachable: &[usize]) -> bool {
        match error {
            ClientError::NotLeader { leader: Some(hint), .. } if follow => match self.pool.follow_hint(hint) {
                // A fresh hint: go straight to the leader.
                Some(index) if index != target.index && !unreachable.contains(&index) => false,
                // A hint naming a node this call could not reach (a dead
                // leader not yet replaced, or an address only the cluster's
                // own network resolves): forget it and try the endpoint after
                // the one that gave it, so every configured endpoint gets a turn.
                Some(index) if index != target.index => {
                    self.pool.skip(index);
                    self.pool.skip(target.index);
                    true
                }
                // A node naming itself while refusing, or an unusable hint:
                // its view is stale, so try elsewhere after a pause.
                _ => {
                    self.pool.skip(target.index);
                    true
                }
            },
            ClientError::NotLeader { .. }
            | ClientError::Connect { .. }
            | ClientError::Transport { .. }
            | ClientError::Timeout { .. }
            | ClientError::DeadlineExceeded(_)
            | ClientError::Unavailable(_) => {
                self.pool.skip(target.index);
                true
            }
            // The node answered but failed: give it a moment.
            _ => true,
        }
    }
}

/// `movable` is false for a client pinned to one endpoint.
fn should_retry(error: &ClientError, policy: &Policy, movable: bool, attempts: u32) -> bool {
    if attempts > policy.max_retries || !error.is_retryable() {
        return false;
    }
    if !policy.retry_unknown && error.outcome() == Outcome::Unknown {
        return false;
    }
    // A client pinned to one node cannot reach the leader by retrying.
    !matches!(error, ClientError::NotLeader { .. }) || movable
}

/// The error to report after the last attempt. A definite answer from the
/// server stands alone (had an earlier attempt been applied, the server would
/// have answered from its request-id table instead). Otherwise the error is
/// wrapped when retries ran out, and whenever an earlier attempt's unknown
/// outcome would be hidden behind, say, a final connect error.
fn conclude(error: ClientError, attempts: u32, earlier_unknown: bool, exhausted: bool) -> ClientError {
    if attempts <= 1 || error.is_server_verdict() || !(earlier_unknown || exhausted) {
        return error;
    }
    ClientError::RetriesExhausted { attempts, maybe_applied: earlier_unknown, last: Box::new(error) }
}

/// Exponential backoff with jitter, so clients that failed together do not
/// all return together.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_INITIAL }
    }
}

impl Backoff {
    async fn sleep(&mut self) {
        let pause = jitter(self.next);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::time::sleep(pause).await;
    }
}

/// A duration drawn from `[base / 2, base]`. `RandomState` is seeded
/// randomly per process, which is all the randomness jitter needs.
fn jitter(base: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    let half = base / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
    half + Duration::from_micros(random % spread.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let pause = jitter(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50) && pause <= Duration::from_millis(100));
        }
    }

    #[test]
    fn verdict_after_retries_stands_alone() {
        let verdict = ClientError::CasConflict { current_revision: Some(3), message: String::new() };
        assert!(matches!(conclude(verdict, 3, true, true), ClientError::CasConflict { .. }));
    }

    #[test]
    fn not_proposed_after_unknown_stays_unknown() {
        let refused = ClientError::Connect { endpoint: "e".to_owned(), message: "refused".to_owned() };
        let error = conclude(refused, 2, true, false);
        assert_eq!(error.outcome(), Outcome::Unknown);
        assert!(matches!(error, ClientError::RetriesExhausted { maybe_applied: true, .. }));
    }

    #[test]
    fn single_failure_after_a_redirect_is_reported_plainly() {
        let error = conclude(ClientError::DeadlineExceeded("slow".to_owned()), 2, false, false);
        assert!(matches!(error, ClientError::DeadlineExceeded(_)));
        let exhausted = conclude(ClientError::DeadlineExceeded("slow".to_owned()), 3, false, true);
        assert!(matches!(exhausted, ClientError::RetriesExhausted { attempts: 3, maybe_applied: false, .. }));
    }

    #[test]
    fn membership_calls_do_not_retry_unknown_outcomes() {
        let policy =
            Policy { route: Route::Leader, retry_unknown: false, timeout: Duration::from_secs(1), max_retries: 5 };
        let timeout = ClientError::Timeout { endpoint: "e".to_owned(), timeout: Duration::from_secs(1) };
        assert!(!should_retry(&timeout, &policy, true, 1));
        let not_leader = ClientError::NotLeader { leader: None, message: String::new() };
        assert!(should_retry(&not_leader, &policy, true, 1));
        assert!(!should_retry(&not_leader, &policy, false, 1));
        assert!(!should_retry(&not_leader, &policy, true, 6));
    }
}
