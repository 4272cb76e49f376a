//! The placement rule: no single region may hold half or more of the voters,
//! because losing that region would lose quorum. Also reports which failure
//! domains a voter set survives.

use std::collections::BTreeMap;

use crate::node::{Jurisdiction, Placement};
use crate::NodeId;

/// Why a voter set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("no voters")]
    Empty,
    #[error(
        "region {region:?} holds {in_region} of {total} voters; losing it would lose quorum \
         (no region may hold half or more; add voters elsewhere or pass --force)"
    )]
    RegionHoldsQuorum { region: String, in_region: usize, total: usize },
}

/// What a voter set survives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survival {
    pub voters: usize,
    pub quorum: usize,
    /// Regions whose loss alone would lose quorum.
    pub fatal_regions: Vec<String>,
    /// Providers whose loss alone would lose quorum.
    pub fatal_providers: Vec<String>,
    pub survives_any_region: bool,
    pub survives_any_provider: bool,
    /// Whether the foreign voters alone still form a quorum when every
    /// domestic region is lost at once.
    pub survives_all_domestic_lost: bool,
}

fn count_by<'a>(voters: &'a [(NodeId, Placement)], key: impl Fn(&'a Placement) -> &'a str) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for (_, p) in voters {
        *counts.entry(key(p)).or_insert(0) += 1;
    }
    counts
}

/// Computes the failure domains a voter set survives.
pub fn survival(voters: &[(NodeId, Placement)]) -> Survival {
    let n = voters.len();
    let quorum = n / 2 + 1;
    let fatal = |counts: BTreeMap<&str, usize>| -> Vec<String> {
        counts.into_iter().filter(|(_, c)| n - c < quorum).map(|(k, _)| k.to_string()).collect()
    };
    let fatal_regions = fatal(count_by(voters, |p| &p.region));
    let fatal_providers = fatal(count_by(voters, |p| &p.provider));
    let foreign = voters.iter().filter(|(_, p)| p.jurisdiction == Jurisdiction::Foreign).count();
    Survival {
        voters: n,
        quorum,
        survives_any_region: fatal_regions.is_empty() && n > 0,
        survives_any_provider: fatal_providers.is_empty() && n > 0,
        fatal_regions,
        fatal_providers,
        survives_all_domestic_lost: foreign >= quorum,
    }
}

/// Refuses a voter set in which one region holds half or more of the voters.
pub fn check_voters(voters: &[(NodeId, Placement)]) -> Result<Survival, TopologyError> {
    if voters.is_empty() {
        return Err(TopologyError::Empty);
    }
    let total = voters.len();
    for (region, in_region) in count_by(voters, |p| &p.region) {
        if in_region * 2 >= total {
            return Err(TopologyError::RegionHoldsQuorum { region: region.to_string(), in_region, total });
        }
    }
    Ok(survival(voters))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(region: &str, provider: &str, j: Jurisdiction) -> Placement {
        Placement { region: region.into(), zone: String::new(), provider: provider.into(), jurisdiction: j }
    }

    #[test]
    fn reference_topology_survives_any_region() {
        use Jurisdiction::*;
        let voters = vec![
            (1, p("ua-kyiv", "dc-a", Domestic)),
            (2, p("ua-kyiv", "dc-a", Domestic)),
            (3, p("ua-lviv", "dc-b", Domestic)),
            (4, p("eu-frankfurt", "cloud-x", Foreign)),
            (5, p("eu-amsterdam", "cloud-y", Foreign)),
        ];
        let s = check_voters(&voters).unwrap();
        assert!(s.survives_any_region);
        assert_eq!(s.quorum, 3);
        assert!(!s.survives_all_domestic_lost);
    }

    #[test]
    fn refuses_region_with_half_the_voters() {
        let voters = vec![
            (1, p("ua-kyiv", "", Jurisdiction::Domestic)),
            (2, p("ua-kyiv", "", Jurisdiction::Domestic)),
            (3, p("ua-lviv", "", Jurisdiction::Domestic)),
            (4, p("eu-frankfurt", "", Jurisdiction::Foreign)),
        ];
        let err = check_voters(&voters).unwrap_err();
        assert!(err.to_string().contains("ua-kyiv"), "{err}");
        // A single node is its own region and holds all voters.
        assert!(check_voters(&voters[..1]).is_err());
        // Three regions, one each: fine.
        assert!(check_voters(&[voters[0].clone(), voters[2].clone(), voters[3].clone()]).is_ok());
    }
}
