//! Scenarios: named mixes of faults, and the seeded fault schedule each one
//! produces. The same scenario, duration and seed give the same schedule.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A partition, described by shape; the harness picks the concrete nodes
/// (e.g. the leader's region) when the fault starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partition {
    /// Cut the leader's region off from the rest, both ways.
    IsolateLeaderRegion,
    /// Cut a region that does not hold the leader off from the rest.
    IsolateOtherRegion,
    /// Every node sees only its two ring neighbours: overlapping majorities.
    MajoritiesRing,
    /// Two halves joined by one bridge node that sees both.
    Bridge,
    /// The leader's outgoing links are cut; it still hears everyone.
    OneWayLeader,
    /// A random node is cut off and healed again every second or so.
    Flapping,
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// kill -9 one node (the leader when `leader`), restart at the end.
    Kill {
        leader: bool,
    },
    /// SIGSTOP the leader, SIGCONT at the end.
    PauseLeader,
    Partition {
        shape: Partition,
    },
    /// kill -9 every node of one region at once (not the leader's when
    /// `leader` is false); disks are kept and the nodes restart at the end.
    RegionLoss {
        leader: bool,
    },
    /// kill -9 every node at once, restart them all at the end. The cluster
    /// is expected to be unavailable meanwhile, not unsafe.
    CrashAll,
    /// kill -9 every node of the region holding the most voters and wipe
    /// their disks, then replace them by nodes with new ids through the
    /// cluster service, and check that an old id cannot come back.
    ReplaceWipedRegion,
}

impl Fault {
    /// A short label for the summary and the timeline.
    pub fn label(&self) -> String {
        match self {
            Fault::Kill { leader: true } => "kill leader".into(),
            Fault::Kill { leader: false } => "kill node".into(),
            Fault::PauseLeader => "pause leader".into(),
            Fault::Partition { shape } => {
                serde_json::to_value(shape).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            }
            Fault::RegionLoss { leader: true } => "lose leader region".into(),
            Fault::RegionLoss { leader: false } => "lose region".into(),
            Fault::CrashAll => "crash all".into(),
            Fault::ReplaceWipedRegion => "replace wiped region".into(),
        }
    }
}

/// A fault with its window, relative to the start of the fault phase.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub fault: Fault,
    pub start: Duration,
    pub length: Duration,
}

/// A named scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// The faults it draws from, uniformly.
    pub menu: Vec<Fault>,
    /// Serve linearizable reads locally (the known-bad control).
    pub unsafe_local_reads: bool,
    /// Quiet time between faults, so each fault's effect stays readable.
    pub gap: (Duration, Duration),
    /// How long each fault lasts.
    pub length: (Duration, Duration),
    /// Draw again from the menu once every fault has run; false runs each
    /// menu fault once (a fault that changes membership is not repeatable).
    pub repeat: bool,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn scenario(name: &'static str, about: &'static str, menu: Vec<Fault>) -> Scenario {
    Scenario {
        name,
        about,
        menu,
        unsafe_local_reads: false,
        gap: (secs(2), secs(4)),
        length: (secs(3), secs(6)),
        repeat: true,
    }
}

/// Every scenario `run` accepts.
pub fn all() -> Vec<Scenario> {
    use Fault::{CrashAll, Kill, PauseLeader, RegionLoss};
    use Partition::{Bridge, Flapping, IsolateLeaderRegion, IsolateOtherRegion, MajoritiesRing, OneWayLeader};
    let shapes = [IsolateLeaderRegion, IsolateOtherRegion, MajoritiesRing, Bridge, OneWayLeader, Flapping];
    let partitions: Vec<Fault> = shapes.iter().map(|&shape| Fault::Partition { shape }).collect();
    let mut mixed = vec![Kill { leader: true }, Kill { leader: false }, PauseLeader, RegionLoss { leader: false }];
    mixed.extend(partitions.iter().copied());
    vec![
        scenario(
            "smoke",
            "kill -9 of the leader and of a follower, and a partition of the leader's region (CI)",
            vec![Kill { leader: true }, Kill { leader: false }, Fault::Partition { shape: IsolateLeaderRegion }],
        ),
        scenario(
            "kills",
            "kill -9 and restart, the leader or any node",
            vec![Kill { leader: true }, Kill { leader: false }],
        ),
        scenario("pause", "SIGSTOP/SIGCONT of the leader", vec![PauseLeader]),
        scenario(
            "partitions",
            "every partition shape: leader region, other region, ring, bridge, one-way, flapping",
            partitions,
        ),
        scenario(
            "region-loss",
            "a whole region killed at once (disks kept), the leader's or another",
            vec![RegionLoss { leader: true }, RegionLoss { leader: false }],
        ),
        Scenario {
            gap: (secs(4), secs(6)),
            length: (secs(2), secs(4)),
            ..scenario("crash-all", "coordinated kill -9 of every node, then restart", vec![CrashAll])
        },
        Scenario {
            repeat: false,
            ..scenario(
                "region-loss-wiped",
                "a whole region killed with its disks wiped, replaced by new node ids while the workload runs; \
                 an old id restarted empty must not rejoin",
                vec![Fault::ReplaceWipedRegion],
            )
        },
        scenario("mixed", "all fault kinds except a full crash, drawn at random", mixed),
        Scenario {
            unsafe_local_reads: true,
            ..scenario(
                "control-stale-reads",
                "KNOWN-BAD control: reads served locally without ReadIndex under partitions; must be invalid",
                vec![Fault::Partition { shape: IsolateOtherRegion }, Fault::Partition { shape: IsolateLeaderRegion }],
            )
        },
    ]
}

pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

fn between(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    Duration::from_millis(rng.gen_range(low.as_millis() as u64..=high.as_millis() as u64))
}

impl Scenario {
    /// The fault schedule for a fault phase of `phase` length. The first
    /// fault comes early and in menu order, so even a short run meets every
    /// fault kind of a small menu.
    pub fn schedule(&self, phase: Duration, seed: u64) -> Vec<Planned> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut plan = Vec::new();
        let mut at = between(&mut rng, (secs(1), secs(2)));
        let mut order = self.menu.clone();
        order.shuffle(&mut rng);
        let mut index = 0;
        loop {
            let length = between(&mut rng, self.length);
            if at + length > phase {
                break;
            }
            let fault = match order.get(index) {
                Some(f) => *f,
                None if self.repeat => *self.menu.choose(&mut rng).unwrap_or(&Fault::Kill { leader: false }),
                None => break,
            };
            index += 1;
            plan.push(Planned { fault, start: at, length });
            at += length + between(&mut rng, self.gap);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let s = find("mixed").expect("mixed exists");
        let a = serde_json::to_string(&s.schedule(secs(60), 7)).expect("json");
        let b = serde_json::to_string(&s.schedule(secs(60), 7)).expect("json");
        let c = serde_json::to_string(&s.schedule(secs(60), 8)).expect("json");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn region_loss_wiped_runs_once() {
        let s = find("region-loss-wiped").expect("scenario exists");
        let plan = s.schedule(secs(60), 3);
        assert_eq!(plan.len(), 1, "{plan:?}");
    }

    #[test]
    fn smoke_meets_every_fault_in_a_minute() {
        let s = find("smoke").expect("smoke exists");
        let plan = s.schedule(secs(50), 1);
        for fault in &s.menu {
            assert!(plan.iter().any(|p| p.fault == *fault), "{fault:?} missing from {plan:?}");
        }
        assert!(plan.iter().all(|p| p.start + p.length <= secs(50)));
    }
}
