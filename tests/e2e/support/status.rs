//! Reading `/v1/status` (and `vt status -o json`, the same JSON): one
//! workload, its instances by phase, and whether it has settled.

use serde_json::Value;

/// Phases that run or are about to: what max_surge bounds.
const LIVE: [&str; 4] = ["pending", "starting", "healthy", "unhealthy"];

/// The workload named `name` (`acme/shop/web/prod`) in a status answer.
pub fn workload<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)
}

/// A number field.
pub fn num(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a number in {value}"))
}

/// A string field.
pub fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {value}"))
}

/// The instances of a workload.
pub fn instances(w: &Value) -> Vec<&Value> {
    w["instances"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The instances of a workload that are live (pending, starting, healthy or unhealthy).
pub fn live(w: &Value) -> Vec<&Value> {
    instances(w)
        .into_iter()
        .filter(|i| LIVE.contains(&text(i, "phase")))
        .collect()
}

/// The healthy instances of a workload, of any release.
pub fn healthy(w: &Value) -> Vec<&Value> {
    instances(w)
        .into_iter()
        .filter(|i| i["phase"] == "healthy")
        .collect()
}

/// Whether release `release` is the desired one and fully rolled out:
/// exactly `wanted` instances are live, all healthy and of that release, and
/// no other instance is left but stopped or failed ones.
pub fn settled(w: &Value, release: u64) -> bool {
    let live = live(w);
    num(w, "desired_release") == release
        && num(w, "ready") == num(w, "wanted")
        && live.len() as u64 == num(w, "wanted")
        && live
            .iter()
            .all(|i| i["phase"] == "healthy" && num(i, "release") == release)
        && instances(w)
            .iter()
            .all(|i| i["phase"] == "failed" || LIVE.contains(&text(i, "phase")))
}

/// A one-line summary of a workload's instances, for failure messages.
pub fn summary(w: &Value) -> String {
    instances(w)
        .iter()
        .map(|i| {
            format!(
                "{}:r{}:{}:{}",
                text(i, "id"),
                num(i, "release"),
                text(i, "host"),
                text(i, "phase")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
