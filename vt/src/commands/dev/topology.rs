//! The simulated fleet `vt dev` runs: hosts `dev-1..N`, spread over the
//! first M regions of the repository's `vt.yaml`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One host of the stack, as `dev.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevHost {
    /// `dev-1`, `dev-2`, ...
    pub name: String,
    /// Its region.
    pub region: String,
    /// `vt host run --cpu`.
    pub cpu: String,
    /// `vt host run --memory`.
    pub memory: String,
    /// Where edges reach it (`vt host run --tunnel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<SocketAddr>,
}

/// `count` hosts named `dev-1..count`; host i goes to region i mod `regions`
/// of the first `regions` of `available` (vt.yaml's order). Tunnels are
/// chosen later.
pub fn hosts(
    count: u32,
    regions: u32,
    available: &[String],
    cpu: &str,
    memory: &str,
) -> Result<Vec<DevHost>, String> {
    if count == 0 || regions == 0 {
        return Err("--hosts and --regions must be at least 1".into());
    }
    if regions > count {
        return Err(format!(
            "{regions} regions need at least {regions} hosts (--hosts {count})"
        ));
    }
    let wanted = usize::try_from(regions).unwrap_or(usize::MAX);
    if available.len() < wanted {
        return Err(format!(
            "--regions {regions}: vt.yaml has {} region{} ({})",
            available.len(),
            if available.len() == 1 { "" } else { "s" },
            available.join(", ")
        ));
    }
    Ok((0..count)
        .map(|i| DevHost {
            name: format!("dev-{}", i + 1),
            region: available[(i % regions) as usize].clone(),
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            tunnel: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn hosts_take_turns_over_the_first_regions() {
        let all = regions(&["local", "local-2", "far"]);
        let placed: Vec<(String, String)> = hosts(3, 2, &all, "2", "2Gi")
            .expect("hosts")
            .into_iter()
            .map(|h| (h.name, h.region))
            .collect();
        assert_eq!(
            placed,
            [("dev-1", "local"), ("dev-2", "local-2"), ("dev-3", "local")]
                .map(|(h, r)| (h.to_string(), r.to_string()))
        );
        let one = hosts(1, 1, &all, "1", "512Mi").expect("one");
        assert_eq!(
            (one[0].cpu.as_str(), one[0].memory.as_str()),
            ("1", "512Mi")
        );
    }

    #[test]
    fn impossible_topologies_say_why() {
        let two = regions(&["local", "local-2"]);
        let err = hosts(4, 3, &two, "2", "2Gi").expect_err("too few regions");
        assert!(
            err.contains("vt.yaml has 2 regions (local, local-2)"),
            "{err}"
        );
        assert!(hosts(1, 2, &two, "2", "2Gi")
            .expect_err("too few hosts")
            .contains("at least 2 hosts"));
        assert!(hosts(0, 1, &two, "2", "2Gi").is_err());
    }
}
