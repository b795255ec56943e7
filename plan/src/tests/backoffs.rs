//! Places whose instances keep failing before they become healthy: their
//! starts wait for the backoff, other places and releases do not, and a
//! halted rollout names the last failure.

use super::*;

fn failing(app: &str, release: u64, slot: Option<u32>, rounds: u32, at: Millis) -> Backoff {
    Backoff {
        key: key(app),
        release: ReleaseNo::new(release),
        region: "eu".into(),
        slot,
        failures: rounds,
        rounds,
        last_failure: at,
        reason: "pulling registry.local/web:typo: manifest unknown".into(),
    }
}

fn failed(id: &str, app: &str, release: u64, since: Millis) -> Instance {
    Instance {
        since,
        ..instance(id, app, release, "h1", "eu", Phase::Failed)
    }
}

fn held(actions: &[Action]) -> Vec<(Option<u32>, u32, u32, Millis)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::BackingOff {
                slot,
                count,
                failures,
                retry_at,
                ..
            } => Some((*slot, *count, *failures, *retry_at)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failing_region_waits_for_its_retry_time_then_starts_again() {
    let d = Desired {
        workloads: vec![workload("web", 1, spec(2, &["eu"]))],
    };
    let b = failing("web", 1, None, 3, 10_000);
    let retry = backoff::retry_at(&b);
    let o = Observed {
        hosts: vec![host("h1", "eu", 4000, 8 * GI)],
        instances: vec![
            failed("i1", "web", 1, 10_000),
            failed("i2", "web", 1, 9_000),
        ],
        backoffs: vec![b],
        ..Observed::default()
    };
    let before = plan(&d, &o, retry - 1);
    assert!(starts(&before).is_empty(), "{before:?}");
    assert_eq!(held(&before), [(None, 2, 3, retry)]);
    let after = plan(&d, &o, retry);
    assert_eq!(starts(&after).len(), 2, "{after:?}");
    assert!(held(&after).is_empty());
}

#[test]
fn a_record_of_another_release_or_slot_holds_nothing() {
    let d = Desired {
        workloads: vec![workload("db", 2, with_volume(spec(2, &["eu"])))],
    };
    let o = Observed {
        hosts: vec![host("h1", "eu", 4000, 8 * GI)],
        backoffs: vec![
            failing("db", 1, Some(0), 5, 10_000),
            failing("db", 2, Some(1), 5, 10_000),
        ],
        ..Observed::default()
    };
    let actions = plan(&d, &o, 10_001);
    // Slot 0's record is of release 1: slot 0 starts; slot 1 waits.
    assert_eq!(starts(&actions), [("h1", Some(0))]);
    assert_eq!(held(&actions).len(), 1);
    assert_eq!(held(&actions)[0].0, Some(1));
}

#[test]
fn a_halted_rollout_names_the_last_failure() {
    let mut s = spec(1, &["eu"]);
    s.rollout.progress_deadline = Duration(60_000);
    let d = Desired {
        workloads: vec![workload("web", 2, s)],
    };
    let o = Observed {
        hosts: vec![host("h1", "eu", 4000, 8 * GI)],
        instances: vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            failed("i2", "web", 2, 59_000),
        ],
        rollouts: vec![rollout_record("web", 2, RolloutStatus::Progressing)],
        backoffs: vec![failing("web", 2, None, 6, 59_000)],
        ..Observed::default()
    };
    let actions = plan(&d, &o, 61_000);
    let halted = actions.iter().find_map(|a| match a {
        Action::RolloutHalted { reason, .. } => Some(reason.as_str()),
        _ => None,
    });
    let reason = halted.unwrap_or_else(|| panic!("no halt in {actions:?}"));
    assert!(
        reason.ends_with(
            "0 of 1 healthy; last failure (6 in a row): pulling registry.local/web:typo: manifest unknown"
        ),
        "{reason}"
    );
    // The previous release keeps serving: nothing of it stops.
    assert!(stops(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_halted_first_deploy_retries_on_its_backoff_not_after_five_minutes() {
    let mut s = spec(1, &["eu"]);
    s.rollout.progress_deadline = Duration(20_000);
    let d = Desired {
        workloads: vec![workload("web", 1, s)],
    };
    let b = failing("web", 1, None, 4, 30_000);
    let retry = backoff::retry_at(&b);
    let o = Observed {
        hosts: vec![host("h1", "eu", 4000, 8 * GI)],
        instances: vec![failed("i1", "web", 1, 30_000)],
        rollouts: vec![rollout_record(
            "web",
            1,
            RolloutStatus::Halted {
                reason: "deadline".into(),
            },
        )],
        backoffs: vec![b],
        ..Observed::default()
    };
    assert!(starts(&plan(&d, &o, retry - 1)).is_empty());
    assert_eq!(starts(&plan(&d, &o, retry)), [("h1", None)]);
}

#[test]
fn extreme_quantities_never_overflow_the_ledger() {
    let mut s = spec(4, &["eu"]);
    s.memory = ByteSize(1 << 62);
    let d = Desired {
        workloads: vec![workload("web", 1, s)],
    };
    let big = |id: &str| Instance {
        memory: 1 << 62,
        cpu: u32::MAX,
        ..instance(id, "other", 1, "h1", "eu", Phase::Healthy)
    };
    let o = Observed {
        hosts: vec![host("h1", "eu", u32::MAX, u64::MAX)],
        instances: (0..8).map(|n| big(&format!("i{n}"))).collect(),
        ..Observed::default()
    };
    let actions = plan(&d, &o, 0);
    assert!(starts(&actions).is_empty(), "{actions:?}");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Waiting { reason, .. } if reason.starts_with("4 instances: no host in region eu has 4194304Ti memory"))),
        "{actions:?}"
    );
}

proptest::proptest! {
    /// Capacities and sizes at the edges of their types: the planner never
    /// panics (debug builds check overflow) and never places more than a
    /// host holds, counted without wrapping.
    #[test]
    fn extreme_quantities_never_panic_or_overcommit(
        host_cpu in proptest::sample::select(vec![0u32, 1, 4_000, u32::MAX]),
        host_mem in proptest::sample::select(vec![0u64, 1, GI, 1 << 62, u64::MAX]),
        cpu in proptest::sample::select(vec![0u32, 1, 250, u32::MAX]),
        mem in proptest::sample::select(vec![1u64, MI, 1 << 62, u64::MAX]),
        running in 0..6usize,
        want in 0..8u32,
    ) {
        let mut s = spec(want, &["eu"]);
        s.cpu = Cpu(cpu);
        s.memory = ByteSize(mem);
        let d = Desired { workloads: vec![workload("web", 1, s)] };
        let o = Observed {
            hosts: vec![host("h1", "eu", host_cpu, host_mem), host("h2", "eu", host_cpu, host_mem)],
            instances: (0..running)
                .map(|n| Instance {
                    cpu,
                    memory: mem,
                    ..instance(&format!("i{n}"), "db", 1, "h1", "eu", Phase::Healthy)
                })
                .collect(),
            ..Observed::default()
        };
        let actions = plan(&d, &o, 0);
        for h in ["h1", "h2"] {
            let held = o.instances.iter().filter(|i| i.host == h).map(|i| (u128::from(i.cpu), u128::from(i.memory)));
            let placed = actions.iter().filter_map(|a| match a {
                Action::Start { host, cpu, memory, .. } if host == h => Some((u128::from(*cpu), u128::from(*memory))),
                _ => None,
            });
            let added: Vec<(u128, u128)> = placed.collect();
            if added.is_empty() {
                continue;
            }
            let (c, m) = held.chain(added).fold((0, 0), |(c, m), (ci, mi)| (c + ci, m + mi));
            proptest::prop_assert!(c <= u128::from(host_cpu) && m <= u128::from(host_mem), "{h}: {c} cpu, {m} memory");
        }
    }
}
