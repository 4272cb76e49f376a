//! A node as the cluster knows it: its address and its placement labels.

use serde::{Deserialize, Serialize};

/// Whether a node runs under the country's own jurisdiction or abroad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Jurisdiction {
    #[default]
    Domestic,
    Foreign,
}

impl std::fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Jurisdiction::Domestic => "domestic",
            Jurisdiction::Foreign => "foreign",
        })
    }
}

impl std::str::FromStr for Jurisdiction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "domestic" => Ok(Jurisdiction::Domestic),
            "foreign" => Ok(Jurisdiction::Foreign),
            other => Err(format!("jurisdiction must be 'domestic' or 'foreign', not {other:?}")),
        }
    }
}

/// Where a node runs. Placement decides which failures the cluster survives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Placement {
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub jurisdiction: Jurisdiction,
}

/// The openraft node type: how to reach a node, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeInfo {
    /// `host:port` of the node's gRPC listener (clients and peers).
    pub addr: String,
    pub placement: Placement,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.addr, self.placement.region)
    }
}
