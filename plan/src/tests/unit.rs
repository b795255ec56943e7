//! One behaviour per test: placement, spreading, explanations, lost hosts,
//! volumes, scaling, and both rollout strategies step by step.

use super::*;

fn desired(workloads: Vec<Workload>) -> Desired {
    Desired { workloads }
}

fn observed(hosts: Vec<Host>, instances: Vec<Instance>) -> Observed {
    Observed {
        hosts,
        instances,
        ..Observed::default()
    }
}

fn reasons(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { reason, .. }
            | Action::Stop { reason, .. }
            | Action::Unplaceable { reason, .. }
            | Action::Waiting { reason, .. }
            | Action::RolloutHalted { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn spreads_replicas_and_explains_each_start() {
    let d = desired(vec![workload("web", 1, spec(3, &["eu"]))]);
    let hosts = ["h1", "h2", "h3"]
        .map(|h| host(h, "eu", 4000, 8 * GI))
        .to_vec();
    let actions = plan(&d, &observed(hosts, Vec::new()), 0);
    assert_eq!(starts(&actions), [("h1", None), ("h2", None), ("h3", None)]);
    assert_eq!(
        reasons(&actions)[0],
        "host h1: 8Gi memory and 4 cpu free; fewest replicas of acme/shop/web/prod release 1 (0)"
    );
    assert_eq!(
        actions[0],
        Action::RolloutStarted {
            key: key("web"),
            release: ReleaseNo::new(1)
        }
    );
}

#[test]
fn prefers_the_host_with_most_free_memory_then_the_smallest_id() {
    let d = desired(vec![workload("web", 1, spec(2, &["eu"]))]);
    let hosts = vec![
        host("h1", "eu", 4000, 8 * GI),
        host("h2", "eu", 4000, 8 * GI),
        host("h3", "eu", 4000, 8 * GI),
    ];
    let busy = instance("i1", "db", 1, "h1", "eu", Phase::Healthy);
    let actions = plan(&d, &observed(hosts, vec![busy]), 0);
    // h1 holds another workload; h2 and h3 tie on memory: smallest id first.
    assert_eq!(starts(&actions), [("h2", None), ("h3", None)]);
}

#[test]
fn never_overcommits_within_one_plan_and_says_why() {
    let d = desired(vec![workload("web", 1, {
        let mut s = spec(3, &["eu"]);
        s.memory = ByteSize(512 * MI);
        s
    })]);
    let actions = plan(
        &d,
        &observed(vec![host("h1", "eu", 1000, GI)], Vec::new()),
        0,
    );
    assert_eq!(starts(&actions), [("h1", None), ("h1", None)]);
    let unplaceable: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Unplaceable { count, reason, .. } => Some((*count, reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        unplaceable,
        [(
            1,
            "no host in region eu with 512Mi memory and 250m cpu free (best: host h1 has 0 memory and 500m cpu free)"
        )]
    );
}

#[test]
fn explains_regions_without_usable_hosts() {
    let d = desired(vec![workload("web", 1, spec(2, &["eu", "us"]))]);
    let mut lost = host("h1", "eu", 4000, 8 * GI);
    lost.status = HostStatus::Lost;
    let actions = plan(&d, &observed(vec![lost], Vec::new()), 0);
    assert!(starts(&actions).is_empty());
    assert_eq!(
        reasons(&actions),
        [
            "no Ready host in region eu (lost: h1)",
            "no host in region us"
        ]
    );
    assert!(actions
        .iter()
        .all(|a| !matches!(a, Action::Unplaceable { count, .. } if *count != 2)));
}

#[test]
fn replaces_stateless_instances_of_a_lost_host() {
    let d = desired(vec![workload("web", 1, spec(1, &["eu"]))]);
    let mut h1 = host("h1", "eu", 4000, 8 * GI);
    h1.status = HostStatus::Lost;
    let mut o = observed(
        vec![h1, host("h2", "eu", 4000, 8 * GI)],
        vec![instance("i1", "web", 1, "h1", "eu", Phase::Healthy)],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, 0);
    assert_eq!(stops(&actions), ["i1"]);
    assert_eq!(starts(&actions), [("h2", None)]);
    assert_eq!(reasons(&actions)[0], "on lost host h1; replaced elsewhere");
}

#[test]
fn an_instance_with_volumes_waits_for_its_lost_host() {
    let d = desired(vec![workload("db", 1, with_volume(spec(1, &["eu"])))]);
    let mut h1 = host("h1", "eu", 4000, 8 * GI);
    h1.status = HostStatus::Lost;
    let mut i1 = instance("i1", "db", 1, "h1", "eu", Phase::Healthy);
    i1.slot = Some(0);
    let mut o = observed(vec![h1, host("h2", "eu", 4000, 8 * GI)], vec![i1]);
    o.rollouts.push(completed("db", 1));
    let actions = plan(&d, &o, 0);
    assert_eq!(
        actions,
        [Action::Waiting {
            key: key("db"),
            region: "eu".into(),
            slot: Some(0),
            reason: "the volumes of slot 0 live on lost host h1: waiting for it to come back"
                .into(),
        }]
    );
}

#[test]
fn volumes_pin_a_slot_to_their_host() {
    let d = desired(vec![workload("db", 1, with_volume(spec(2, &["eu"])))]);
    let mut o = observed(
        vec![host("h1", "eu", 8000, 16 * GI), host("h2", "eu", 1000, GI)],
        Vec::new(),
    );
    o.volumes.push(VolumePlacement {
        key: key("db"),
        region: "eu".into(),
        slot: 1,
        host: "h2".into(),
    });
    let actions = plan(&d, &o, 0);
    // Slot 0 has no volumes yet and goes to the roomiest host; slot 1 must go to h2.
    assert_eq!(starts(&actions), [("h1", Some(0)), ("h2", Some(1))]);
    assert_eq!(
        reasons(&actions),
        [
            "host h1: 16Gi memory and 8 cpu free; fewest replicas of acme/shop/db/prod release 1 (0); the volumes of slot 0 are created there",
            "host h2 holds the volumes of slot 1; 1Gi memory and 1 cpu free",
        ]
    );
}

#[test]
fn a_full_volume_host_makes_its_slot_unplaceable() {
    let d = desired(vec![workload("db", 1, with_volume(spec(1, &["eu"])))]);
    let mut o = observed(
        vec![
            host("h1", "eu", 8000, 16 * GI),
            host("h2", "eu", 1000, 128 * MI),
        ],
        Vec::new(),
    );
    o.volumes.push(VolumePlacement {
        key: key("db"),
        region: "eu".into(),
        slot: 0,
        host: "h2".into(),
    });
    let actions = plan(&d, &o, 0);
    assert!(starts(&actions).is_empty());
    assert_eq!(
        reasons(&actions),
        ["host h2 holds the volumes of slot 0 but has only 128Mi memory and 1 cpu free; 256Mi memory and 250m cpu needed"]
    );
}

#[test]
fn scale_down_stops_the_least_available_first() {
    let d = desired(vec![workload("web", 1, spec(1, &["eu"]))]);
    let mut o = observed(
        vec![host("h1", "eu", 4000, 8 * GI)],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Starting),
            instance("i2", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i3", "web", 1, "h1", "eu", Phase::Healthy),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, 0);
    assert_eq!(stops(&actions), ["i1", "i3"]);
    assert_eq!(
        reasons(&actions)[0],
        "scale down: acme/shop/web/prod wants 1 instance(s) in region eu"
    );
    assert!(starts(&actions).is_empty());
}

#[test]
fn stops_instances_of_removed_workloads_and_regions() {
    let d = desired(vec![workload("web", 1, spec(1, &["eu"]))]);
    let mut o = observed(
        vec![
            host("h1", "eu", 4000, 8 * GI),
            host("h2", "us", 4000, 8 * GI),
        ],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h2", "us", Phase::Healthy),
            instance("i3", "gone", 4, "h1", "eu", Phase::Unhealthy),
            instance("i4", "gone", 4, "h1", "eu", Phase::Stopping),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, 0);
    assert_eq!(stops(&actions), ["i3", "i2"]);
    assert_eq!(
        reasons(&actions),
        [
            "workload app_gone/env_prod is no longer desired",
            "acme/shop/web/prod no longer runs in region us",
        ]
    );
}

#[test]
fn replaces_failed_instances() {
    let d = desired(vec![workload("web", 1, spec(2, &["eu"]))]);
    let mut o = observed(
        vec![
            host("h1", "eu", 4000, 8 * GI),
            host("h2", "eu", 4000, 8 * GI),
        ],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h2", "eu", Phase::Failed),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, 0);
    assert!(stops(&actions).is_empty());
    assert_eq!(starts(&actions), [("h2", None)]);
}

#[test]
fn immediate_rollout_replaces_everything_at_once() {
    let mut s = spec(2, &["eu"]);
    s.rollout.strategy = Strategy::Immediate;
    let d = desired(vec![workload("web", 2, s)]);
    let mut o = observed(
        vec![
            host("h1", "eu", 4000, 8 * GI),
            host("h2", "eu", 4000, 8 * GI),
        ],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h2", "eu", Phase::Healthy),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, 0);
    assert!(matches!(
        actions[0],
        Action::RolloutStarted { release, .. } if release == ReleaseNo::new(2)
    ));
    assert_eq!(stops(&actions), ["i1", "i2"]);
    assert_eq!(starts(&actions), [("h1", None), ("h2", None)]);
    assert_eq!(
        reasons(&actions)[0],
        "immediate rollout: release 2 replaces release 1"
    );
}

#[test]
fn immediate_rollout_waits_for_stopping_instances_to_free_room() {
    let mut s = spec(2, &["eu"]);
    s.rollout.strategy = Strategy::Immediate;
    s.memory = ByteSize(512 * MI);
    let d = desired(vec![workload("web", 2, s)]);
    let mut old = [
        instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
        instance("i2", "web", 1, "h1", "eu", Phase::Healthy),
    ];
    for i in &mut old {
        i.memory = 512 * MI;
    }
    let mut sim = Sim::new(observed(vec![host("h1", "eu", 1000, GI)], old.to_vec()), 0);
    let actions = sim.plan(&d);
    assert_eq!(stops(&actions), ["i1", "i2"]);
    assert!(starts(&actions).is_empty());
    assert_eq!(
        reasons(&actions)[2],
        "2 instances: no host in region eu has 512Mi memory and 250m cpu free until stopping instances stop (host h1 will)"
    );
    sim.apply(&actions);
    assert!(!sim.plan(&d).iter().any(Action::changes_instances));
    sim.settle();
    assert_eq!(starts(&sim.plan(&d)), [("h1", None), ("h1", None)]);
}

/// Runs a rollout to completion, returning per step the stopped and started
/// counts, and checking that healthy instances never drop below `floor`.
fn run(d: &Desired, sim: &mut Sim, floor: usize) -> Vec<(usize, usize)> {
    let w = &d.workloads[0];
    let mut steps = Vec::new();
    for _ in 0..20 {
        let actions = sim.plan(d);
        if actions.is_empty() {
            return steps;
        }
        steps.push((stops(&actions).len(), starts(&actions).len()));
        sim.apply(&actions);
        assert!(
            sim.healthy(&w.key, "eu") >= floor,
            "below {floor} healthy after {actions:#?}"
        );
        sim.settle();
        sim.now += 1000;
    }
    panic!("no convergence: {steps:?}");
}

#[test]
fn rolling_update_starts_before_it_stops() {
    let d = desired(vec![workload("web", 2, spec(3, &["eu"]))]);
    let old = (1..=3)
        .map(|n| {
            instance(
                &format!("i{n}"),
                "web",
                1,
                &format!("h{n}"),
                "eu",
                Phase::Healthy,
            )
        })
        .collect();
    let hosts = ["h1", "h2", "h3"]
        .map(|h| host(h, "eu", 4000, 8 * GI))
        .to_vec();
    let mut sim = Sim::new(observed(hosts, old), 0);
    // Surge 1, none unavailable: one new, then one old out per new healthy.
    assert_eq!(
        run(&d, &mut sim, 3),
        [(0, 1), (1, 1), (1, 1), (1, 0), (0, 0)]
    );
    assert_eq!(sim.healthy(&key("web"), "eu"), 3);
    assert!(sim
        .observed
        .rollouts
        .iter()
        .any(|r| r.release == ReleaseNo::new(2) && r.status == RolloutStatus::Completed));
}

#[test]
fn rolling_update_with_unavailability_and_no_surge_stops_first() {
    let mut s = spec(2, &["eu"]);
    s.rollout.max_surge = 0;
    s.rollout.max_unavailable = 1;
    let d = desired(vec![workload("web", 2, s)]);
    let old = vec![
        instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
        instance("i2", "web", 1, "h2", "eu", Phase::Healthy),
    ];
    let hosts = vec![
        host("h1", "eu", 4000, 8 * GI),
        host("h2", "eu", 4000, 8 * GI),
    ];
    let mut sim = Sim::new(observed(hosts, old), 0);
    assert_eq!(run(&d, &mut sim, 1), [(1, 1), (1, 1), (0, 0)]);
}

#[test]
fn rolling_update_with_volumes_goes_slot_by_slot() {
    let d = desired(vec![workload("db", 2, with_volume(spec(2, &["eu"])))]);
    let mut old = vec![
        instance("i1", "db", 1, "h1", "eu", Phase::Healthy),
        instance("i2", "db", 1, "h2", "eu", Phase::Healthy),
    ];
    old[0].slot = Some(0);
    old[1].slot = Some(1);
    let hosts = vec![
        host("h1", "eu", 4000, 8 * GI),
        host("h2", "eu", 4000, 8 * GI),
    ];
    let mut sim = Sim::new(observed(hosts, old), 0);
    let first = sim.plan(&d);
    assert_eq!(stops(&first), ["i1"]);
    assert_eq!(
        reasons(&first)[1],
        "the volumes of slot 0 are still attached to stopping instance i1"
    );
    // Stop slot 0, start it again on h1, then the same for slot 1.
    assert_eq!(
        run(&d, &mut sim, 1),
        [(1, 0), (0, 1), (1, 0), (0, 1), (0, 0)]
    );
    let placed: Vec<_> = sim
        .observed
        .instances
        .iter()
        .filter(|i| i.phase == Phase::Healthy)
        .map(|i| (i.host.as_str(), i.slot, i.release))
        .collect();
    assert_eq!(
        placed,
        [
            ("h1", Some(0), ReleaseNo::new(2)),
            ("h2", Some(1), ReleaseNo::new(2))
        ]
    );
}

#[test]
fn progress_deadline_halts_and_freezes_until_a_newer_release() {
    let mut stuck = instance("n1", "web", 2, "h1", "eu", Phase::Unhealthy);
    stuck.since = 1000;
    let mut o = observed(
        vec![host("h1", "eu", 4000, 8 * GI)],
        vec![instance("i1", "web", 1, "h1", "eu", Phase::Healthy), stuck],
    );
    o.rollouts.push(RolloutState {
        key: key("web"),
        release: ReleaseNo::new(2),
        started: 0,
        last_progress: 0,
        healthy: 0,
        status: RolloutStatus::Progressing,
    });
    let d = desired(vec![workload("web", 2, spec(1, &["eu"]))]);
    let mut sim = Sim::new(o, 300_000);
    assert!(sim.plan(&d).is_empty(), "not yet past the deadline");
    sim.now = 301_000;
    let actions = sim.plan(&d);
    assert_eq!(
        reasons(&actions),
        ["no further instance of release 2 became healthy for 301s (progress deadline 5m); 0 of 1 healthy"]
    );
    assert_eq!(actions.len(), 1);
    sim.apply(&actions);
    assert!(sim.plan(&d).is_empty(), "a halted rollout changes nothing");

    let d = desired(vec![workload("web", 3, spec(1, &["eu"]))]);
    let actions = sim.plan(&d);
    assert!(matches!(
        actions[0],
        Action::RolloutStarted { release, .. } if release == ReleaseNo::new(3)
    ));
    assert_eq!(stops(&actions), ["n1"]);
    assert_eq!(starts(&actions), [("h1", None)]);
}

#[test]
fn rollout_reports_progress_and_completion_once() {
    let d = desired(vec![workload("web", 1, spec(2, &["eu"]))]);
    let mut sim = Sim::new(
        observed(vec![host("h1", "eu", 4000, 8 * GI)], Vec::new()),
        0,
    );
    let actions = sim.plan(&d);
    sim.apply(&actions);
    sim.settle();
    let mut progressed = sim.plan(&d);
    assert_eq!(
        progressed,
        [Action::RolloutCompleted {
            key: key("web"),
            release: ReleaseNo::new(1)
        }]
    );
    sim.apply(&progressed);
    assert!(sim.plan(&d).is_empty());

    // One of two healthy: progress is recorded, then not repeated.
    sim.observed.instances[1].phase = Phase::Starting;
    sim.observed.rollouts[0].status = RolloutStatus::Progressing;
    sim.observed.rollouts[0].healthy = 0;
    progressed = sim.plan(&d);
    assert_eq!(
        progressed,
        [Action::RolloutProgressed {
            key: key("web"),
            release: ReleaseNo::new(1),
            healthy: 1
        }]
    );
    sim.apply(&progressed);
    assert!(sim.plan(&d).is_empty());
}

#[test]
fn the_plan_does_not_depend_on_input_order() {
    let mut s = spec(2, &["eu", "us"]);
    s.rollout.max_unavailable = 1;
    let d = desired(vec![
        workload("web", 2, s),
        workload("db", 1, with_volume(spec(2, &["eu"]))),
    ]);
    let mut o = observed(
        vec![
            host("h1", "eu", 2000, 2 * GI),
            host("h2", "eu", 1000, GI),
            host("h3", "us", 1000, GI),
        ],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h2", "eu", Phase::Healthy),
            instance("i3", "web", 2, "h3", "us", Phase::Starting),
            instance("i4", "old", 1, "h3", "us", Phase::Healthy),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let forward = plan(&d, &o, 5);
    let mut r = d.clone();
    r.workloads.reverse();
    o.hosts.reverse();
    o.instances.reverse();
    o.rollouts.reverse();
    assert_eq!(plan(&r, &o, 5), forward);
    assert!(!forward.is_empty());
}

/// A rollout of `release` halted long ago, with `healthy` recorded.
fn halted(app: &str, release: u64, healthy: u32) -> RolloutState {
    RolloutState {
        key: key(app),
        release: ReleaseNo::new(release),
        started: 0,
        last_progress: 0,
        healthy,
        status: RolloutStatus::Halted {
            reason: "stuck".into(),
        },
    }
}

fn start_releases(actions: &[Action]) -> Vec<(&str, u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                host,
                release,
                memory,
                ..
            } => Some((host.as_str(), release.get(), *memory)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_halted_rollout_replaces_lost_and_failed_instances_with_their_release() {
    const NOW: Millis = 1_000_000;
    let d = desired(vec![workload("web", 2, spec(4, &["eu"]))]);
    let mut h1 = host("h1", "eu", 4000, 8 * GI);
    h1.status = HostStatus::Lost;
    let old = |id: &str, host: &str, phase| {
        let mut i = instance(id, "web", 1, host, "eu", phase);
        i.memory = 128 * MI;
        i.since = NOW - 1000;
        i
    };
    let mut bad = instance("n1", "web", 2, "h2", "eu", Phase::Failed);
    bad.since = NOW - 1000;
    let mut o = observed(
        vec![
            h1,
            host("h2", "eu", 4000, 8 * GI),
            host("h3", "eu", 4000, 8 * GI),
        ],
        vec![
            old("i1", "h1", Phase::Healthy),
            old("i2", "h2", Phase::Healthy),
            old("i3", "h3", Phase::Healthy),
            old("i4", "h3", Phase::Failed),
            bad,
            instance("n2", "web", 2, "h1", "eu", Phase::Starting),
        ],
    );
    o.rollouts.push(halted("web", 2, 0));
    let mut sim = Sim::new(o, NOW);
    let actions = sim.plan(&d);
    // Only the lost instances stop; the new one on h1 is replaced by the new
    // release, i1 (lost) and i4 (failed) by release 1 at its size (spread: h2
    // and h3 both failed recently, h3 has more room); the failed new
    // instance n1 is not retried.
    assert_eq!(stops(&actions), ["i1", "n2"]);
    assert_eq!(
        start_releases(&actions),
        [
            ("h2", 2, 256 * MI),
            ("h3", 1, 128 * MI),
            ("h2", 1, 128 * MI)
        ]
    );
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::RolloutHalted { .. })));
    sim.apply(&actions);
    assert!(!sim.plan(&d).iter().any(Action::changes_instances));
}

#[test]
fn a_halted_rollout_keeps_the_availability_floor_within_the_surge() {
    // Surge 0, one unavailable: 3 old instances and a stuck new one is where
    // the rollout stopped; losing none, it starts nothing.
    let mut s = spec(4, &["eu"]);
    s.rollout.max_surge = 0;
    s.rollout.max_unavailable = 1;
    let d = desired(vec![workload("web", 2, s)]);
    let hosts = vec![host("h1", "eu", 4000, 8 * GI)];
    let mut o = observed(
        hosts,
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i3", "web", 1, "h1", "eu", Phase::Healthy),
            instance("n1", "web", 2, "h1", "eu", Phase::Starting),
        ],
    );
    o.rollouts.push(halted("web", 2, 0));
    assert!(plan(&d, &o, 1_000_000).is_empty());
    // One old instance fails: it is started again.
    o.instances[0].phase = Phase::Failed;
    assert_eq!(
        start_releases(&plan(&d, &o, 1_000_000)),
        [("h1", 1, 256 * MI)]
    );
}

#[test]
fn a_halted_rollout_resumes_when_it_progresses_and_completes_when_done() {
    let d = desired(vec![workload("web", 2, spec(2, &["eu"]))]);
    let mut o = observed(
        vec![host("h1", "eu", 4000, 8 * GI)],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h1", "eu", Phase::Healthy),
            instance("n1", "web", 2, "h1", "eu", Phase::Healthy),
        ],
    );
    o.rollouts.push(halted("web", 2, 0));
    let mut sim = Sim::new(o, 1_000_000);
    let actions = sim.plan(&d);
    assert_eq!(
        actions.last(),
        Some(&Action::RolloutProgressed {
            key: key("web"),
            release: ReleaseNo::new(2),
            healthy: 1
        })
    );
    // It rolls on at once: one old out, the next new one in.
    assert_eq!(stops(&actions), ["i1"]);
    assert_eq!(starts(&actions), [("h1", None)]);
    sim.apply(&actions);
    for _ in 0..3 {
        sim.settle();
        sim.now += 1000;
        let actions = sim.plan(&d);
        sim.apply(&actions);
    }
    assert_eq!(
        sim.observed.rollouts[0].status,
        RolloutStatus::Completed,
        "{:#?}",
        sim.observed
    );
    assert_eq!(sim.healthy(&key("web"), "eu"), 2);
}

#[test]
fn a_halted_first_deploy_fills_its_places_and_waits_after_a_failure() {
    const NOW: Millis = 1_000_000;
    let d = desired(vec![workload("web", 1, spec(2, &["eu"]))]);
    let mut failed = instance("n1", "web", 1, "h1", "eu", Phase::Failed);
    failed.since = NOW - 60_000;
    let mut o = observed(vec![host("h1", "eu", 4000, 8 * GI)], vec![failed]);
    o.rollouts.push(halted("web", 1, 0));
    // One place was never filled; the failed one waits 5 minutes.
    assert_eq!(starts(&plan(&d, &o, NOW)), [("h1", None)]);
    assert_eq!(
        starts(&plan(&d, &o, NOW + 240_001)),
        [("h1", None), ("h1", None)]
    );
}

#[test]
fn a_halted_rollout_with_volumes_restarts_a_failed_slot_with_its_release() {
    let d = desired(vec![workload("db", 2, with_volume(spec(2, &["eu"])))]);
    let mut i1 = instance("i1", "db", 1, "h1", "eu", Phase::Failed);
    i1.slot = Some(0);
    let mut n2 = instance("n2", "db", 2, "h2", "eu", Phase::Failed);
    n2.slot = Some(1);
    let mut o = observed(
        vec![
            host("h1", "eu", 4000, 8 * GI),
            host("h2", "eu", 4000, 8 * GI),
        ],
        vec![i1, n2],
    );
    o.rollouts.push(halted("db", 2, 0));
    let actions = plan(&d, &o, 1_000_000);
    // Slot 0 ran release 1: started again on its volumes' host; slot 1's new
    // instance failed and release 1 still serves (slot 0): not retried.
    assert_eq!(start_releases(&actions), [("h1", 1, 256 * MI)]);
    assert_eq!(starts(&actions), [("h1", Some(0))]);
}

#[test]
fn the_halt_reason_counts_instances_still_starting() {
    let d = desired(vec![workload("web", 2, spec(2, &["eu"]))]);
    let mut o = observed(
        vec![host("h1", "eu", 4000, 8 * GI)],
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            instance("i2", "web", 1, "h1", "eu", Phase::Healthy),
            instance("n1", "web", 2, "h1", "eu", Phase::Starting),
        ],
    );
    o.rollouts.push(RolloutState {
        status: RolloutStatus::Progressing,
        ..halted("web", 2, 0)
    });
    let actions = plan(&d, &o, 301_000);
    assert_eq!(
        reasons(&actions),
        ["no further instance of release 2 became healthy for 301s (progress deadline 5m); 0 of 2 healthy, 1 still starting"]
    );
}

#[test]
fn avoids_hosts_with_recent_failures_of_the_workload_after_spreading() {
    const NOW: Millis = 1_000_000;
    let d = desired(vec![workload("web", 1, spec(2, &["eu"]))]);
    let hosts = ["h1", "h2", "h3"]
        .map(|h| host(h, "eu", 4000, 8 * GI))
        .to_vec();
    let failed = |id: &str, host: &str, ago: Millis| {
        let mut i = instance(id, "web", 1, host, "eu", Phase::Failed);
        i.since = NOW - ago;
        i
    };
    let mut o = observed(
        hosts,
        vec![
            instance("i1", "web", 1, "h1", "eu", Phase::Healthy),
            failed("i2", "h2", 1_000),
            failed("i3", "h2", 2_000),
            failed("i4", "h3", 400_000),
        ],
    );
    o.rollouts.push(completed("web", 1));
    let actions = plan(&d, &o, NOW);
    // h2 and h3 tie on replicas; h2 failed recently, h3 long ago.
    assert_eq!(starts(&actions), [("h3", None)]);
    assert_eq!(
        reasons(&actions),
        ["host h3: 8Gi memory and 4 cpu free; fewest replicas of acme/shop/web/prod release 1 (0); avoiding h2: 2 recent failures"]
    );
    // Fewest replicas still comes first: h2 beats h1 and h3, which have one.
    let d = desired(vec![workload("web", 1, spec(3, &["eu"]))]);
    o.instances
        .push(instance("i5", "web", 1, "h3", "eu", Phase::Healthy));
    let actions = plan(&d, &o, NOW);
    assert_eq!(starts(&actions), [("h2", None)]);
    assert!(!reasons(&actions)[0].contains("avoiding"));
}
