//! Forming a fresh cluster from the initial members in the config, without a
//! manual step: the lowest-id member initialises Raft with all of them.

use std::sync::Arc;
use std::time::Duration;

use holdfast_proto::v1::cluster_client::ClusterClient;
use holdfast_proto::v1::StatusRequest;
use holdfast_storage::Raft;
use holdfast_types::NodeId;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::network::peer_endpoint;
use crate::tls::{TlsMaterial, TlsState};

/// How often a node that should initialise retries while its peers are not
/// all reachable yet.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Initialises the cluster if this node is the lowest-id initial member and
/// no Raft state exists here or on any reachable peer.
pub(crate) async fn run(
    config: NodeConfig,
    raft: Raft,
    tls: Option<Arc<TlsState>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lowest = config.initial_members.keys().next().copied();
    if lowest != Some(config.id) {
        return;
    }
    loop {
        match raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read raft state; not bootstrapping");
                return;
            }
        }
        match peers_are_fresh(&config, tls.as_deref()).await {
            Some(true) => {
                match raft.initialize(config.initial_members.clone()).await {
                    Ok(()) => tracing::info!(members = config.initial_members.len(), "initialised a new cluster"),
                    Err(e) => tracing::warn!(error = %e, "initialise refused"),
                }
                return;
            }
            Some(false) => {
                // A member already has Raft state: a cluster exists and this
                // node's empty disk means it was wiped. Forming a second
                // cluster, or voting with no memory, would break safety.
                tracing::error!(
                    id = config.id,
                    "this node has no data but its peers already form a cluster; a wiped node must be \
                     replaced under a new id through the cluster service, not restarted under its old one"
                );
                return;
            }
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// `Some(true)` when a majority of the initial members (this one included)
/// answered and none has Raft state; `Some(false)` when one has; `None` when
/// too few answered yet. A majority is enough: any existing cluster built from
/// these members would show up in at least one of them.
async fn peers_are_fresh(config: &NodeConfig, tls: Option<&TlsState>) -> Option<bool> {
    let material = tls.map(|t| t.material().0);
    let mut fresh = 1; // this node
    for (id, node) in &config.initial_members {
        if *id == config.id {
            continue;
        }
        let addr = config.peer_addr_overrides.get(id).unwrap_or(&node.addr);
        match peer_has_state(addr, *id, material.as_deref()).await {
            Some(true) => return Some(false),
            Some(false) => fresh += 1,
            None => {}
        }
    }
    (fresh * 2 > config.initial_members.len()).then_some(true)
}

/// Whether a peer reports Raft state; `None` if it does not answer.
async fn peer_has_state(addr: &str, id: NodeId, tls: Option<&TlsMaterial>) -> Option<bool> {
    let endpoint = match peer_endpoint(addr, id, tls, Duration::from_secs(1)) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::warn!("cannot probe peer {id}: {e}");
            return None;
        }
    };
    let channel = endpoint.connect().await.ok()?;
    let mut client = ClusterClient::new(channel);
    let mut request = tonic::Request::new(StatusRequest { include_digest: false });
    request.set_timeout(Duration::from_secs(2));
    let status = client.status(request).await.ok()?.into_inner();
    Some(status.term > 0 || status.last_log_index > 0)
}
