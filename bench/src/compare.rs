//! `compare`: one holdfast and one etcd cluster on loopback, the same cases
//! against each in turn, alternating which goes first, medians of the rounds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::load::{self, LoadSpec};
use crate::report::{median_run, Comparison, Measurement, Report};
use crate::servers::{describe_machine, etcd_version, EtcdCluster, HoldfastCluster, ServerProbe};
use crate::target::Kind;
use crate::workload::Workload;

/// What `compare` runs; the binary fills it from flags.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    pub workloads: Vec<Workload>,
    pub clients: Vec<usize>,
    /// `None`: [`LoadSpec::default_connections`] for each client count.
    pub connections: Option<usize>,
    pub value_bytes: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    pub key_space: u64,
    pub preload_keys: u64,
    pub holdfast_bin: PathBuf,
    pub etcd_bin: PathBuf,
    /// Holdfast without sealing, only to measure what encryption costs.
    pub insecure_plaintext: bool,
    /// Both clusters over plaintext gRPC, only to measure what TLS costs.
    pub insecure_transport: bool,
    /// etcd alone over plaintext (its fastest setting), holdfast as set.
    pub etcd_plaintext: bool,
    /// The nodes' `[access] audit` mode (`strict`, as users run it, when
    /// `None`), to measure what the access audit trail costs.
    pub audit: Option<String>,
}

struct Started {
    holdfast: HoldfastCluster,
    etcd: EtcdCluster,
}

impl Started {
    fn endpoints_and_probe(&self, kind: Kind) -> (Vec<String>, ServerProbe) {
        match kind {
            Kind::Holdfast => (self.holdfast.endpoints(), self.holdfast.probe()),
            Kind::Etcd => (self.etcd.endpoints(), self.etcd.probe()),
        }
    }
}

/// Starts both clusters, runs every case `rounds` times on each, and stops
/// the clusters (on drop, so also when a run fails).
pub async fn run(spec: &CompareSpec) -> anyhow::Result<Report> {
    let machine = describe_machine();
    eprintln!("machine: {machine}");
    let started = Started {
        holdfast: HoldfastCluster::start(
            &spec.holdfast_bin,
            spec.insecure_plaintext,
            spec.insecure_transport,
            spec.audit.clone(),
        )
        .await
        .context("starting the holdfast cluster")?,
        etcd: EtcdCluster::start(&spec.etcd_bin, spec.insecure_transport || spec.etcd_plaintext)
            .await
            .context("starting the etcd cluster")?,
    };
    let holdfast_tls = started.holdfast.client_tls();
    let etcd_tls = started.etcd.client_tls();
    let transport = |tls: &Option<_>| if tls.is_some() { "mutual TLS" } else { "plaintext" };
    let setup = format!(
        "holdfast: {}, {}, audit {}; etcd: {}",
        transport(&holdfast_tls),
        if spec.insecure_plaintext { "values in the clear" } else { "values sealed" },
        spec.audit.as_deref().unwrap_or("strict"),
        transport(&etcd_tls),
    );
    eprintln!("{setup}; holdfast at {:?}, etcd leader at {:?}", started.holdfast.endpoints(), started.etcd.endpoints());

    let cases: Vec<(Workload, usize)> =
        spec.workloads.iter().flat_map(|w| spec.clients.iter().map(move |c| (*w, *c))).collect();
    let mut runs: BTreeMap<(usize, Kind), Vec<Measurement>> = BTreeMap::new();
    for round in 0..spec.rounds {
        for (index, (workload, clients)) in cases.iter().enumerate() {
            // Alternate who goes first, so slow drift on a shared machine
            // (compactions, a neighbour's build) does not favour one side.
            let order =
                if (round + index) % 2 == 0 { [Kind::Holdfast, Kind::Etcd] } else { [Kind::Etcd, Kind::Holdfast] };
            for kind in order {
                let load_spec = LoadSpec {
                    workload: *workload,
                    value_bytes: spec.value_bytes,
                    clients: *clients,
                    connections: spec.connections.unwrap_or_else(|| LoadSpec::default_connections(*clients)),
                    duration: spec.duration,
                    warmup: spec.warmup,
                    key_space: spec.key_space,
                    preload_keys: spec.preload_keys,
                    key_prefix: format!("r{round}-c{index}-"),
                    tls: match kind {
                        Kind::Holdfast => holdfast_tls.clone(),
                        Kind::Etcd => etcd_tls.clone(),
                    },
                };
                let (endpoints, servers) = started.endpoints_and_probe(kind);
                let measurement = load::run(kind, &endpoints, &servers, &load_spec)
                    .await
                    .with_context(|| format!("{kind} {workload} with {clients} clients"))?;
                runs.entry((index, kind)).or_default().push(measurement);
            }
        }
    }

    let mut comparisons = Vec::new();
    for index in 0..cases.len() {
        let holdfast = runs.remove(&(index, Kind::Holdfast)).and_then(median_run);
        let etcd = runs.remove(&(index, Kind::Etcd)).and_then(median_run);
        if let (Some(holdfast), Some(etcd)) = (holdfast, etcd) {
            comparisons.push(Comparison::new(holdfast, etcd));
        }
    }
    Ok(Report {
        machine,
        etcd_version: etcd_version(&spec.etcd_bin),
        setup,
        value_bytes: spec.value_bytes,
        duration_secs: spec.duration.as_secs_f64(),
        warmup_secs: spec.warmup.as_secs_f64(),
        rounds: spec.rounds,
        comparisons,
    })
}
