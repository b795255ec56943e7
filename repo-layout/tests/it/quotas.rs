//! Property: quota totals are exact or an overflow diagnostic, never a
//! wrapped sum or a panic, whatever the sizes and counts.

use crate::{snapshot, valid_files, ORG_ID};
use proptest::prelude::*;
use vt_repo::{load, ByteSize, Code, Diagnostic};

/// One env's declared sizes.
#[derive(Debug, Clone)]
struct EnvSizes {
    instances: u32,
    two_regions: bool,
    memory: u64,
    cpu: u32,
    volumes: Vec<u64>,
}

/// Extreme values first, then anything.
fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(64 << 20),
        Just(1 << 62),
        Just(u64::MAX / 2),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(4), Just(u32::MAX), any::<u32>()]
}

fn env_sizes() -> impl Strategy<Value = EnvSizes> {
    (
        extreme_u32(),
        any::<bool>(),
        extreme_u64(),
        extreme_u32(),
        prop::collection::vec(extreme_u64(), 0..3),
    )
        .prop_map(|(instances, two_regions, memory, cpu, volumes)| EnvSizes {
            instances,
            two_regions,
            memory,
            cpu,
            volumes,
        })
}

/// The org's quotas: each may be absent.
#[derive(Debug, Clone)]
struct Limits {
    instances: Option<u32>,
    cpu: Option<u32>,
    memory: Option<u64>,
    volume: Option<u64>,
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::option::of(extreme_u32()),
        prop::option::of(extreme_u32()),
        prop::option::of(extreme_u64()),
        prop::option::of(extreme_u64()),
    )
        .prop_map(|(instances, cpu, memory, volume)| Limits {
            instances,
            cpu,
            memory,
            volume,
        })
}

fn env_file(i: usize, env: &EnvSizes) -> String {
    let regions = if env.two_regions {
        "[local, eu-west]"
    } else {
        "[local]"
    };
    let mut text = format!(
        "id: env_01jdq00000000000000000{i:04}\ninstances: {}\nregions: {regions}\nresources:\n  memory: {}\n  cpu: {}m\n",
        env.instances, env.memory, env.cpu
    );
    if !env.volumes.is_empty() {
        text.push_str("volumes:\n");
        for (v, size) in env.volumes.iter().enumerate() {
            text.push_str(&format!("  - {{name: v{v}, mount: /v{v}, size: {size}}}\n"));
        }
    }
    text
}

/// Checks one quota's outcome: an exact total within 64 bits is compared
/// with the limit, a larger one must be one overflow diagnostic.
fn check_total(
    diagnostics: &[Diagnostic],
    field: &str,
    quota: &str,
    total: u128,
    limit: Option<u64>,
    show: impl Fn(u64) -> String,
) -> Result<(), TestCaseError> {
    let overflows = diagnostics
        .iter()
        .filter(|d| d.code == Code::QuantityOverflow && d.path == field)
        .count();
    let exceeded: Vec<_> = diagnostics
        .iter()
        .filter(|d| d.code == Code::QuotaExceeded && d.path == quota)
        .collect();
    match u64::try_from(total) {
        Err(_) => {
            prop_assert_eq!(overflows, 1, "{} total {} must overflow once", field, total);
            prop_assert!(exceeded.is_empty());
        }
        Ok(total) => {
            prop_assert_eq!(overflows, 0, "{} total {} fits", field, total);
            match limit.filter(|limit| total > *limit) {
                Some(limit) => {
                    prop_assert_eq!(exceeded.len(), 1);
                    let used = format!(
                        "would use {} against a quota of {}",
                        show(total),
                        show(limit)
                    );
                    prop_assert!(
                        exceeded[0].message.contains(&used),
                        "{} vs {}",
                        exceeded[0].message,
                        used
                    );
                }
                None => prop_assert!(exceeded.is_empty(), "{:?}", exceeded),
            }
        }
    }
    Ok(())
}

/// The repository: the valid fixture with `limits` as the org's quotas and
/// one env file per entry of `envs`.
fn files(envs: &[EnvSizes], limits: &Limits) -> Vec<(String, String)> {
    let mut files = valid_files();
    files.retain(|(p, _)| !p.contains("/envs/") && p != "orgs/acme/org.yaml");
    let mut org = format!("id: {ORG_ID}\nquotas:\n");
    let quota_lines = [
        ("max_instances", limits.instances.map(|n| n.to_string())),
        ("max_cpu", limits.cpu.map(|m| format!("{m}m"))),
        ("max_memory", limits.memory.map(|b| b.to_string())),
        ("max_volume_size", limits.volume.map(|b| b.to_string())),
    ];
    for (field, value) in quota_lines {
        if let Some(value) = value {
            org.push_str(&format!("  {field}: {value}\n"));
        }
    }
    files.push(("orgs/acme/org.yaml".into(), org));
    for (i, env) in envs.iter().enumerate() {
        files.push((
            format!("orgs/acme/shop/web/envs/e{i:04}.yaml"),
            env_file(i, env),
        ));
    }
    files
}

/// The org's exact totals: instances, cpu, memory, volume size.
fn totals(envs: &[EnvSizes]) -> [u128; 4] {
    let mut totals = [0u128; 4];
    let mut volume_overflows = false;
    for env in envs {
        let n = u128::from(env.instances) * if env.two_regions { 2 } else { 1 };
        let each_volume = env.volumes.iter().map(|v| u128::from(*v)).sum::<u128>();
        // An instance whose volumes alone pass 64 bits is an overflow, even
        // with 0 instances.
        volume_overflows |= each_volume > u128::from(u64::MAX);
        totals[0] += n;
        totals[1] += n * u128::from(env.cpu);
        totals[2] += n * u128::from(env.memory);
        totals[3] += n * each_volume;
    }
    if volume_overflows {
        totals[3] = u128::from(u64::MAX) + 1;
    }
    totals
}

fn bytes(b: u64) -> String {
    ByteSize(b).to_string()
}

fn millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn quota_totals_are_exact_or_an_overflow(
        envs in prop::collection::vec(env_sizes(), 1..12),
        limits in limits(),
    ) {
        let loaded = load(&snapshot(&files(&envs, &limits)));
        let d = &loaded.diagnostics;
        let [instances, cpu, memory, volume] = totals(&envs);
        let plain = |n: u64| n.to_string();
        let max_instances = limits.instances.map(u64::from);
        check_total(d, "instances", "quotas.max_instances", instances, max_instances, plain)?;
        let max_cpu = limits.cpu.map(u64::from);
        check_total(d, "resources.cpu", "quotas.max_cpu", cpu, max_cpu, millicores)?;
        check_total(d, "resources.memory", "quotas.max_memory", memory, limits.memory, bytes)?;
        check_total(d, "volumes", "quotas.max_volume_size", volume, limits.volume, bytes)?;
        // Besides, only the checks of single values (memory below the minimum, ...).
        for diagnostic in d {
            let expected = [Code::QuantityOverflow, Code::QuotaExceeded, Code::Quantity];
            prop_assert!(expected.contains(&diagnostic.code), "{}", diagnostic);
        }
    }
}
