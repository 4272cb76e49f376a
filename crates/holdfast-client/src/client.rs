//! The `Client` handle and its builder: configuration, endpoints, pinning to one endpoint.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;
use crate::pool::Pool;
use crate::tls::ClientTls;

/// How long one attempt of a call may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt. With the backoff doubling from 50 ms to
/// a cap of one second (jittered), twelve retries span roughly 4 to 8
/// seconds: enough to ride out a leader election after a leader is lost.
pub const DEFAULT_MAX_RETRIES: u32 = 12;
/// Membership changes wait for a learner to catch up, which can take much
/// longer than a record write.
pub const DEFAULT_MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// A dead host should cost less than a whole request timeout before the
/// client moves on to the next endpoint.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub timeout: Duration,
    pub membership_timeout: Duration,
    pub max_retries: u32,
    /// False for a client pinned to one endpoint: it never redirects.
    pub follow_leader: bool,
}

/// A holdfast client. Cheap to clone; clones share channels and the
/// remembered leader.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) pool: Arc<Pool>,
    pub(crate) config: Config,
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    timeout: Duration,
    membership_timeout: Duration,
    max_retries: u32,
    tls: Option<ClientTls>,
}

impl Client {
    /// A client with default settings for `endpoints` (`host:port` or
    /// `http://host:port`). Nothing is dialled until the first call, so this
    /// fails only on malformed endpoints.
    pub fn connect(endpoints: Vec<String>) -> Result<Self, ClientError> {
        Self::builder(endpoints).build()
    }

    pub fn builder(endpoints: Vec<String>) -> ClientBuilder {
        ClientBuilder {
            endpoints,
            timeout: DEFAULT_TIMEOUT,
            membership_timeout: DEFAULT_MEMBERSHIP_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            tls: None,
        }
    }

    /// A client that sends every call to `endpoint` only and never follows
    /// leader hints, for stale reads from a chosen replica and for tests. It
    /// shares the channel with `self` when `endpoint` is already known.
    pub fn on_endpoint(&self, endpoint: &str) -> Result<Self, ClientError> {
        Ok(Self {
            pool: Arc::new(self.pool.pinned(endpoint)?),
            config: Config { follow_leader: false, ..self.config.clone() },
        })
    }

    /// Every known endpoint (`http://host:port`, or `https://` with TLS),
    /// including ones learned from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        self.pool.urls()
    }

    /// The endpoint currently believed to be the leader, if any.
    pub fn leader(&self) -> Option<String> {
        self.pool.leader_url()
    }
}

impl ClientBuilder {
    /// How long one attempt may take before it counts as an unknown outcome.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one attempt of a membership change may take.
    pub fn membership_timeout(mut self, timeout: Duration) -> Self {
        self.membership_timeout = timeout;
        self
    }

    /// Retries after the first attempt; 0 disables retrying.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Speak mutual TLS to every endpoint (leader hints included): present
    /// `tls`'s certificate and verify each node's certificate against its
    /// CA bundle under the endpoint's host. Endpoints become `https://`.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let connect_timeout = self.timeout.min(CONNECT_TIMEOUT_MAX);
        Ok(Client {
            pool: Arc::new(Pool::new(&self.endpoints, connect_timeout, self.tls)?),
            config: Config {
                timeout: self.timeout,
                membership_timeout: self.membership_timeout,
                max_retries: self.max_retries,
                follow_leader: true,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_settings_and_validates_endpoints() {
        let client = Client::builder(vec!["127.0.0.1:7001".to_owned()])
            .timeout(Duration::from_millis(250))
            .max_retries(2)
            .build()
            .expect("valid endpoint");
        assert_eq!(client.config.timeout, Duration::from_millis(250));
        assert_eq!(client.config.max_retries, 2);
        assert_eq!(client.endpoints(), ["http://127.0.0.1:7001"]);
        assert!(Client::connect(vec!["bad".to_owned()]).is_err());
    }

    #[test]
    fn pinned_client_does_not_follow_leader() {
        let client = Client::connect(vec!["127.0.0.1:7001".to_owned()]).expect("valid endpoint");
        let pinned = client.on_endpoint("127.0.0.1:7009").expect("valid endpoint");
        assert!(!pinned.config.follow_leader);
        assert_eq!(pinned.endpoints(), ["http://127.0.0.1:7009"]);
    }
}
