//! The nemesis: starts a planned fault on the running cluster (choosing
//! concrete nodes at that moment, e.g. the current leader) and heals it.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Duration;

use crate::cluster::{ChaosCluster, NodeId};
use crate::proxy::LinkMode;
use crate::replace::{self, Outcome};
use crate::scenario::{Fault, Partition};

/// How often a flapping partition switches between cut and healed: fast
/// enough to catch elections midway, slow enough for some to finish.
const FLAP_PERIOD_MS: (u64, u64) = (500, 1500);

/// A fault in progress and what healing it takes.
#[derive(Debug)]
pub enum Active {
    Killed(Vec<NodeId>),
    Paused(NodeId),
    Cut,
    Flapping(tokio::task::JoinHandle<()>),
    /// Killed with wiped disks; healing replaces them under new ids.
    Wiped(Vec<NodeId>),
}

/// Starts `fault`; returns what was done (for the report) and how to undo it.
pub async fn inject(cluster: &mut ChaosCluster, fault: Fault, rng: &mut StdRng) -> anyhow::Result<(String, Active)> {
    let ids = cluster.ids();
    let leader = cluster.leader().await;
    // Without a known leader, "the leader" falls back to a seeded node.
    let leader_or_any = match leader {
        Some(l) => l,
        None => *ids.choose(rng).ok_or_else(|| anyhow::anyhow!("empty cluster"))?,
    };
    match fault {
        Fault::Kill { leader: wants_leader } => {
            let victim = if wants_leader {
                leader_or_any
            } else {
                *ids.iter()
                    .filter(|id| Some(**id) != leader)
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .copied()
                    .unwrap_or(&ids[0])
            };
            cluster.processes.kill(victim)?;
            Ok((format!("kill -9 n{victim}"), Active::Killed(vec![victim])))
        }
        Fault::PauseLeader => {
            cluster.processes.pause(leader_or_any)?;
            Ok((format!("SIGSTOP n{leader_or_any}"), Active::Paused(leader_or_any)))
        }
        Fault::RegionLoss { leader: wants_leader } => {
            let leader_region = cluster.region_of(leader_or_any).to_owned();
            let region = if wants_leader {
                leader_region
            } else {
                let others: Vec<String> = cluster.region_names().into_iter().filter(|r| *r != leader_region).collect();
                others.choose(rng).cloned().unwrap_or(leader_region)
            };
            let victims = cluster.region_nodes(&region);
            for id in &victims {
                cluster.processes.kill(*id)?;
            }
            Ok((format!("kill -9 region {region} {}", names(&victims)), Active::Killed(victims)))
        }
        Fault::CrashAll => {
            for id in &ids {
                cluster.processes.kill(*id)?;
            }
            Ok(("kill -9 every node".into(), Active::Killed(ids)))
        }
        Fault::ReplaceWipedRegion => {
            let region = replace::largest_region(cluster).ok_or_else(|| anyhow::anyhow!("empty cluster"))?;
            let victims = replace::lose_region(cluster, &region)?;
            let lost_leader = if leader.is_some_and(|l| victims.contains(&l)) { " (the leader's)" } else { "" };
            Ok((format!("kill -9 + wipe region {region}{lost_leader} {}", names(&victims)), Active::Wiped(victims)))
        }
        Fault::Partition { shape } => partition(cluster, shape, leader_or_any, rng),
    }
}

fn names(ids: &[NodeId]) -> String {
    ids.iter().map(|id| format!("n{id}")).collect::<Vec<_>>().join(",")
}

fn partition(
    cluster: &ChaosCluster,
    shape: Partition,
    leader: NodeId,
    rng: &mut StdRng,
) -> anyhow::Result<(String, Active)> {
    let ids = cluster.ids();
    let leader_region = cluster.region_of(leader).to_owned();
    match shape {
        Partition::IsolateLeaderRegion => {
            let group = cluster.region_nodes(&leader_region);
            cluster.isolate(&group);
            Ok((format!("isolate {leader_region} {}", names(&group)), Active::Cut))
        }
        Partition::IsolateOtherRegion => {
            let others: Vec<String> = cluster.region_names().into_iter().filter(|r| *r != leader_region).collect();
            let region = others.choose(rng).cloned().unwrap_or(leader_region);
            let group = cluster.region_nodes(&region);
            cluster.isolate(&group);
            Ok((format!("isolate {region} {}", names(&group)), Active::Cut))
        }
        Partition::MajoritiesRing => {
            // Shuffled ring: each node keeps links to its two neighbours only.
            let mut ring = ids.clone();
            ring.shuffle(rng);
            let n = ring.len();
            for (i, from) in ring.iter().enumerate() {
                for (j, to) in ring.iter().enumerate() {
                    let distance = (i + n - j) % n;
                    if i != j && distance != 1 && distance != n - 1 {
                        cluster.set_links(&[*from], &[*to], LinkMode::Blackhole);
                    }
                }
            }
            Ok((format!("majorities ring {}", names(&ring)), Active::Cut))
        }
        Partition::Bridge => {
            // Two halves plus a bridge node that sees both.
            let mut order = ids.clone();
            order.shuffle(rng);
            let half = order.len() / 2;
            let (left, rest) = order.split_at(half);
            let (bridge, right) = rest.split_at(1);
            cluster.set_links(left, right, LinkMode::Blackhole);
            cluster.set_links(right, left, LinkMode::Blackhole);
            Ok((format!("bridge {} | {} | {}", names(left), names(bridge), names(right)), Active::Cut))
        }
        Partition::OneWayLeader => {
            let rest: Vec<NodeId> = ids.iter().copied().filter(|id| *id != leader).collect();
            cluster.set_links(&[leader], &rest, LinkMode::Blackhole);
            Ok((format!("one-way: n{leader} cannot reach others"), Active::Cut))
        }
        Partition::Flapping => {
            let victim = *ids.choose(rng).unwrap_or(&leader);
            let rest: Vec<NodeId> = ids.iter().copied().filter(|id| *id != victim).collect();
            let links: Vec<_> = cluster
                .links
                .iter()
                .filter(|((from, to), _)| *from == victim || *to == victim)
                .map(|(_, link)| link.clone())
                .collect();
            let mut periods: Vec<u64> = (0..64).map(|_| rng.gen_range(FLAP_PERIOD_MS.0..=FLAP_PERIOD_MS.1)).collect();
            let task = tokio::spawn(async move {
                let mut cut = true;
                loop {
                    let mode = if cut { LinkMode::Blackhole } else { LinkMode::Pass };
                    links.iter().for_each(|l| l.set_mode(mode));
                    cut = !cut;
                    periods.rotate_left(1);
                    tokio::time::sleep(Duration::from_millis(periods[0])).await;
                }
            });
            Ok((format!("flapping n{victim} vs {}", names(&rest)), Active::Flapping(task)))
        }
    }
}

/// Undoes a fault: restarts killed nodes, resumes a paused one, heals links,
/// replaces wiped nodes; returns what a replacement did and found.
pub async fn heal(cluster: &mut ChaosCluster, active: Active) -> anyhow::Result<Outcome> {
    match active {
        Active::Wiped(ids) => return replace::replace(cluster, &ids).await,
        Active::Killed(ids) => {
            for id in ids {
                cluster.processes.start(id)?;
            }
        }
        Active::Paused(id) => cluster.processes.resume(id)?,
        Active::Cut => cluster.heal_links(),
        Active::Flapping(task) => {
            task.abort();
            let _ = task.await;
            cluster.heal_links();
        }
    }
    Ok(Outcome::default())
}
