//! Losing a region with its disks and replacing its nodes: new node ids join
//! through the cluster service while the workload runs, the dead ids are
//! removed, and a dead id restarted with an empty disk must stay out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use holdfast_client::{Client, Placement};
use holdfast_testkit::process::{status_of, NodeOptions, NodeSpec};

use crate::cluster::{round_trip, ChaosCluster, NodeId};
use crate::proxy::LinkProxy;

/// add_learner returns only once the learner caught up; a debug build on a
/// busy machine replays a few thousand entries slowly.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the restarted old id runs before it is judged: its bootstrap
/// retries every 500 ms, and an election takes about a second.
const REJOIN_WATCH: Duration = Duration::from_secs(6);
/// What a node logs when it refuses to bootstrap next to a live cluster.
const REFUSAL_LOG: &str = "peers already form a cluster";

/// What the replacement did and what it found wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Steps taken, for the fault's description in the report.
    pub notes: Vec<String>,
    /// Safety problems: each one makes the run invalid.
    pub problems: Vec<String>,
}

/// kill -9 every node of `region` and wipe their disks; they stop being
/// nodes the harness runs (they stay in the Raft membership until removed).
pub fn lose_region(cluster: &mut ChaosCluster, region: &str) -> anyhow::Result<Vec<NodeId>> {
    let victims = cluster.region_nodes(region);
    for id in &victims {
        cluster.processes.kill(*id)?;
        cluster.processes.wipe(*id)?;
        cluster.regions.remove(id);
    }
    Ok(victims)
}

/// The region with the most nodes: losing it costs the most voters.
pub fn largest_region(cluster: &ChaosCluster) -> Option<String> {
    let names = cluster.region_names();
    names.into_iter().max_by_key(|r| cluster.region_nodes(r).len())
}

/// Replaces each of `dead` by a node with a new id in the same place, then
/// restarts the first dead id with an empty disk and checks it stays out.
pub async fn replace(cluster: &mut ChaosCluster, dead: &[NodeId]) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let client =
        cluster.client_builder().timeout(Duration::from_secs(10)).membership_timeout(MEMBERSHIP_TIMEOUT).build()?;
    let mut pairs = Vec::new();
    for old in dead {
        let next = cluster.processes.nodes().map(|n| n.spec.id).max().unwrap_or(0) + 1;
        let old_spec =
            cluster.processes.node(*old).map(|n| n.spec.clone()).ok_or_else(|| anyhow::anyhow!("no node {old}"))?;
        let spec = NodeSpec { id: next, placement: old_spec.placement };
        join_as_learner(cluster, &client, &spec).await?;
        outcome.notes.push(format!("n{next} joined as learner"));
        pairs.push((*old, next));
    }
    // Remove before promote: a third voter in the region among six would
    // break the placement rule, and removing first keeps every voter set
    // within it (at worst 4 voters, 3 alive: still a quorum).
    for (old, new) in &pairs {
        client.remove(*old, false).await.map_err(|e| anyhow::anyhow!("removing n{old}: {e}"))?;
        client.promote(*new, false).await.map_err(|e| anyhow::anyhow!("promoting n{new}: {e}"))?;
        outcome.notes.push(format!("n{old} removed, n{new} promoted"));
    }
    let members = client.members().await?;
    let voters: BTreeSet<u64> = members.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let expected: BTreeSet<u64> = cluster.ids().into_iter().collect();
    if voters != expected {
        outcome.problems.push(format!("voters after replacement are {voters:?}, expected {expected:?}"));
    }
    if let Some(old) = dead.first() {
        check_old_id_stays_out(cluster, &client, *old, &mut outcome).await?;
    }
    Ok(outcome)
}

/// Starts a node process for `spec` with proxies on its links, and adds it
/// as a learner; returns once it has caught up.
async fn join_as_learner(cluster: &mut ChaosCluster, client: &Client, spec: &NodeSpec) -> anyhow::Result<()> {
    let region = spec.placement.region.clone();
    let mut overrides = std::collections::BTreeMap::new();
    for to in cluster.ids() {
        let Some(target) = cluster.processes.node(to).map(|n| n.addr.clone()) else { continue };
        // Later joiners are dialled at their membership address: the inbound
        // proxy already in front of them.
        if cluster.inbound.contains_key(&to) {
            continue;
        }
        let (addr, pending) = LinkProxy::bind().await?;
        let delay = round_trip(&region, cluster.region_of(to)) / 2;
        cluster.links.insert((spec.id, to), Arc::new(pending.serve(target, delay)?));
        overrides.insert(to, addr.to_string());
    }
    let options = NodeOptions {
        peer_addr_overrides: overrides,
        unsafe_local_reads: cluster.unsafe_local_reads,
        wal_file_mb: None,
        ..NodeOptions::default()
    };
    let listen = cluster.processes.add_node(spec, &options)?;
    // One proxy for every sender: it gets the farthest sender's delay.
    let delay = cluster.region_names().iter().map(|r| round_trip(&region, r)).max().unwrap_or_default() / 2;
    let (inbound_addr, pending) = LinkProxy::bind().await?;
    cluster.inbound.insert(spec.id, Arc::new(pending.serve(listen, delay)?));
    cluster.processes.start(spec.id)?;
    let placement = Placement {
        region: region.clone(),
        zone: spec.placement.zone.clone(),
        provider: spec.placement.provider.clone(),
        jurisdiction: spec.placement.jurisdiction.to_string(),
    };
    // The node needs a moment to listen; the leader retries replication.
    client
        .add_learner(spec.id, &inbound_addr.to_string(), placement)
        .await
        .map_err(|e| anyhow::anyhow!("adding n{} as learner: {e}", spec.id))?;
    cluster.regions.insert(spec.id, region);
    Ok(())
}

/// Restarts removed `old` with an empty disk and its original config (with
/// `initial_members`): it must neither bootstrap nor get back in.
async fn check_old_id_stays_out(
    cluster: &mut ChaosCluster,
    client: &Client,
    old: NodeId,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    cluster.processes.wipe(old)?;
    cluster.processes.start(old)?;
    tokio::time::sleep(REJOIN_WATCH).await;
    let addr = cluster.processes.node(old).map(|n| n.addr.clone()).unwrap_or_default();
    let status = status_of(&addr, cluster.processes.client_tls()).await;
    let members = client.members().await;
    let leader = cluster.leader().await;
    let log_path = cluster.processes.node(old).map(|n| n.log_path.clone());
    cluster.processes.kill(old)?;
    let status = status.ok_or_else(|| anyhow::anyhow!("restarted n{old} did not answer status"))?;
    if status.leader_id != 0 || status.term != 0 {
        outcome.problems.push(format!(
            "restarted empty n{old} took part in the cluster: leader {} term {} role {}",
            status.leader_id, status.term, status.role
        ));
    }
    if members?.members.iter().any(|m| m.id == old) {
        outcome.problems.push(format!("removed n{old} is back in the membership"));
    }
    if !leader.is_some_and(|l| cluster.regions.contains_key(&l)) {
        outcome.problems.push(format!("no leader among the members while empty n{old} ran (saw {leader:?})"));
    }
    let log = log_path.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let refused = if log.contains(REFUSAL_LOG) { "refused to bootstrap" } else { "stayed idle" };
    outcome.notes.push(format!("empty n{old} restarted: {refused}, not a member"));
    Ok(())
}
