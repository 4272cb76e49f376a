//! The endpoint set: one cached channel per endpoint, and which endpoint is believed to lead.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::dial::Dialer;
use crate::endpoint::normalize_endpoint_for;
use crate::error::ClientError;
use crate::tls::ClientTls;

/// Leader hints can add endpoints; a server that hints nonsense must not
/// grow the set without bound.
pub(crate) const ENDPOINTS_MAX: usize = 64;

/// The endpoint a call goes to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub index: usize,
    pub url: String,
    pub channel: Channel,
}

#[derive(Debug)]
struct Slot {
    url: String,
    endpoint: Endpoint,
    /// Made on first use: `connect_with_connector_lazy` spawns onto the tokio runtime, which
    /// a caller building the client outside a runtime does not have.
    channel: Option<Channel>,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    leader: Option<usize>,
    /// Where calls without a known leader start: rotated on failures so
    /// retries spread over the endpoints instead of hammering one.
    cursor: usize,
}

/// Shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Pool {
    state: Mutex<State>,
    settings: Settings,
}

/// How every endpoint of a pool is dialled, leader hints included.
#[derive(Debug, Clone)]
struct Settings {
    connect_timeout: Duration,
    tls: Option<ClientTls>,
    dialer: Dialer,
}

impl Settings {
    fn normalize(&self, raw: &str) -> Result<String, ClientError> {
        normalize_endpoint_for(raw, self.tls.is_some())
    }
}

impl Pool {
    pub(crate) fn new(
        endpoints: &[String],
        connect_timeout: Duration,
        tls: Option<ClientTls>,
    ) -> Result<Self, ClientError> {
        let rustls = tls.as_ref().map(ClientTls::rustls_config).transpose()?;
        let settings = Settings { connect_timeout, tls, dialer: Dialer::new(rustls) };
        let mut state = State { slots: Vec::new(), leader: None, cursor: 0 };
        for raw in endpoints {
            let url = settings.normalize(raw)?;
            if state.slots.iter().any(|slot| slot.url == url) {
                continue;
            }
            if state.slots.len() >= ENDPOINTS_MAX {
                return Err(ClientError::InvalidEndpoint {
                    endpoint: raw.clone(),
                    reason: format!("more than {ENDPOINTS_MAX} endpoints"),
                });
            }
            state.slots.push(new_slot(url, &settings)?);
        }
        if state.slots.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Self { state: Mutex::new(state), settings })
    }

    /// A pool of one endpoint that reuses `self`'s channel to it if it has one.
    pub(crate) fn pinned(&self, raw: &str) -> Result<Self, ClientError> {
        let url = self.settings.normalize(raw)?;
        let existing = self.lock().slots.iter().find(|slot| slot.url == url).map(|slot| Slot {
            url: slot.url.clone(),
            endpoint: slot.endpoint.clone(),
            channel: slot.channel.clone(),
        });
        let slot = match existing {
            Some(slot) => slot,
            None => new_slot(url, &self.settings)?,
        };
        Ok(Self {
            state: Mutex::new(State { slots: vec![slot], leader: None, cursor: 0 }),
            settings: self.settings.clone(),
        })
    }

    /// Whether endpoints are dialled over TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        self.settings.tls.is_some()
    }

    /// The remembered leader when `prefer_leader` and one is known, else the cursor.
    pub(crate) fn pick(&self, prefer_leader: bool) -> Target {
        let mut state = self.lock();
        let index = match state.leader {
            Some(leader) if prefer_leader => leader,
            _ => state.cursor % state.slots.len(),
        };
        target(&mut state, index, &self.settings.dialer)
    }

    /// Remembers the endpoint that just served a leader-only call.
    pub(crate) fn mark_leader(&self, index: usize) {
        self.lock().leader = Some(index);
    }

    /// Follows a `host:port` leader hint. Returns the hinted endpoint's index, now remembered as leader, or
    /// `None` when the hint is unusable.
    pub(crate) fn follow_hint(&self, hint: &str) -> Option<usize> {
        let url = self.settings.normalize(hint).ok()?;
        let mut state = self.lock();
        let index = index_or_insert(&mut state, url, &self.settings).ok()?;
        state.leader = Some(index);
        Some(index)
    }

    /// Gives up on `index` after a failure: forget it as leader, and start
    /// the next call at the endpoint after it.
    pub(crate) fn skip(&self, index: usize) {
        let mut state = self.lock();
        if state.leader == Some(index) {
            state.leader = None;
        }
        state.cursor = (index + 1) % state.slots.len();
    }

    /// Every endpoint URL, in the order they were added.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.lock().slots.iter().map(|slot| slot.url.clone()).collect()
    }

    pub(crate) fn leader_url(&self) -> Option<String> {
        let state = self.lock();
        state.leader.map(|index| state.slots[index].url.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few assignments that cannot leave the
        // state half-updated, so a panic elsewhere is no reason to stop.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn new_slot(url: String, settings: &Settings) -> Result<Slot, ClientError> {
    let invalid = |err: tonic::transport::Error| ClientError::InvalidEndpoint {
        endpoint: url.clone(),
        reason: std::error::Error::source(&err).map_or_else(|| err.to_string(), |s| s.to_string()),
    };
    // The dialer does the TLS (tonic would refuse an `https://` endpoint
    // it does not secure itself); the server name it checks is the
    // endpoint's host, so a leader hint is verified like any endpoint the
    // user gave.
    let dialled = match url.strip_prefix("https://") {
        Some(authority) => format!("http://{authority}"),
        None => url.clone(),
    };
    let endpoint = Endpoint::from_shared(dialled).map_err(invalid)?.connect_timeout(settings.connect_timeout);
    Ok(Slot { url, endpoint, channel: None })
}

fn index_or_insert(state: &mut State, url: String, settings: &Settings) -> Result<usize, ClientError> {
    if let Some(index) = state.slots.iter().position(|slot| slot.url == url) {
        return Ok(index);
    }
    if state.slots.len() >= ENDPOINTS_MAX {
        return Err(ClientError::InvalidEndpoint {
            endpoint: url,
            reason: format!("more than {ENDPOINTS_MAX} endpoints"),
        });
    }
    state.slots.push(new_slot(url, settings)?);
    Ok(state.slots.len() - 1)
}

fn target(state: &mut State, index: usize, dialer: &Dialer) -> Target {
    let slot = &mut state.slots[index];
    let channel = slot.channel.get_or_insert_with(|| slot.endpoint.connect_with_connector_lazy(dialer.clone())).clone();
    Target { index, url: slot.url.clone(), channel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(endpoints: &[&str]) -> Pool {
        let endpoints: Vec<String> = endpoints.iter().map(|e| (*e).to_owned()).collect();
        Pool::new(&endpoints, Duration::from_secs(1), None).expect("valid endpoints")
    }

    #[test]
    fn duplicate_endpoints_collapse() {
        let pool = pool(&["127.0.0.1:7001", "http://127.0.0.1:7001/", "127.0.0.1:7002"]);
        assert_eq!(pool.urls(), ["http://127.0.0.1:7001", "http://127.0.0.1:7002"]);
    }

    #[test]
    fn empty_endpoint_list_is_refused() {
        assert!(matches!(Pool::new(&[], Duration::from_secs(1), None), Err(ClientError::NoEndpoints)));
    }

    #[tokio::test]
    async fn hint_adds_endpoint_and_becomes_leader() {
        let pool = pool(&["127.0.0.1:7001"]);
        assert_eq!(pool.follow_hint("127.0.0.1:7003"), Some(1));
        assert_eq!(pool.leader_url().as_deref(), Some("http://127.0.0.1:7003"));
        assert_eq!(pool.pick(true).index, 1);
        assert_eq!(pool.pick(false).index, 0);
        // A known endpoint is not added twice.
        assert_eq!(pool.follow_hint("http://127.0.0.1:7001"), Some(0));
        assert_eq!(pool.urls().len(), 2);
        assert_eq!(pool.follow_hint("not an address"), None);
    }

    #[tokio::test]
    async fn skip_forgets_leader_and_rotates() {
        let pool = pool(&["127.0.0.1:7001", "127.0.0.1:7002"]);
        pool.mark_leader(0);
        pool.skip(0);
        assert_eq!(pool.leader_url(), None);
        assert_eq!(pool.pick(true).index, 1);
        pool.skip(1);
        assert_eq!(pool.pick(true).index, 0);
    }

    #[tokio::test]
    async fn pinned_pool_has_one_endpoint() {
        let pool = pool(&["127.0.0.1:7001", "127.0.0.1:7002"]);
        let _ = pool.pick(false);
        let pinned = pool.pinned("127.0.0.1:7002").expect("valid endpoint");
        assert_eq!(pinned.urls(), ["http://127.0.0.1:7002"]);
    }
}
