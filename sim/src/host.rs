//! A simulated host: the host agent's contract (register, report every
//! instance, run what it is assigned, stop everything else) over instances
//! that boot, fail and stop after delays drawn from the simulator's PRNG.

use crate::rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use vt_plan::{InstanceId, Millis, Phase, ReleaseNo, WorkloadKey};
use vt_wire::messages::{Assignment, Desire, HostRegistration, InstanceReport};

/// How simulated instances behave.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// An instance becomes healthy (or fails) this long after it starts,
    /// drawn uniformly from the inclusive range.
    pub boot_ms: (Millis, Millis),
    /// An instance has stopped this long after it is told to stop.
    pub stop_ms: (Millis, Millis),
    /// Chance that an instance fails to boot.
    pub fail_probability: f64,
    /// Images whose instances always fail to boot (a bad release).
    pub failing_images: BTreeSet<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            boot_ms: (500, 3_000),
            stop_ms: (100, 1_000),
            fail_probability: 0.0,
            failing_images: BTreeSet::new(),
        }
    }
}

/// An instance as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInstance {
    /// Instance ID.
    pub id: InstanceId,
    /// Workload; `None` for an instance the host runs on its own (injected).
    pub key: Option<WorkloadKey>,
    /// Release it runs.
    pub release: ReleaseNo,
    /// Image it runs.
    pub image: String,
    /// Cpu it holds, in millicores.
    pub cpu: u32,
    /// Memory it holds, in bytes.
    pub memory: u64,
    /// Where it is now.
    pub phase: Phase,
    /// Why, for failed and unhealthy instances.
    pub detail: Option<String>,
    /// The phase it enters next, and when.
    pub next: Option<(Millis, Phase)>,
    /// Fails its health check from now on.
    pub sick: bool,
}

impl SimInstance {
    /// Whether it runs (booting, serving or failing its check), not stopping.
    pub fn is_running(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Healthy | Phase::Unhealthy
        )
    }

    /// Whether it holds cpu and memory on the host.
    pub fn holds_resources(&self) -> bool {
        self.is_running() || self.phase == Phase::Stopping
    }
}

/// An instance a host started, as its assignment described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Host that started it.
    pub host: String,
    /// Workload.
    pub key: WorkloadKey,
    /// Release.
    pub release: ReleaseNo,
    /// Volume slot.
    pub slot: Option<u32>,
    /// When.
    pub time: Millis,
}

impl Start {
    /// Whether `other` starts the same instance again (same host, workload,
    /// release and slot), as opposed to another instance under the same ID.
    pub fn same_instance(&self, other: &Start) -> bool {
        (&self.host, &self.key, self.release, self.slot)
            == (&other.host, &other.key, other.release, other.slot)
    }
}

/// What a host did with its assignments.
#[derive(Debug, Default)]
pub struct Applied {
    /// The instances it started, by ID.
    pub started: Vec<(InstanceId, Start)>,
    /// What it did, for the timeline.
    pub log: Vec<String>,
}

/// A simulated host.
#[derive(Debug, Clone)]
pub struct SimHost {
    /// Name (and ID).
    pub name: String,
    /// Region.
    pub region: String,
    /// Cpu it offers, in millicores.
    pub cpu: u32,
    /// Memory it offers, in bytes.
    pub memory: u64,
    /// Powered on (false after a crash until it restarts).
    pub up: bool,
    /// Cut off from the controller: runs its instances but cannot report.
    pub partitioned: bool,
    /// Registered in its current session with the current controller.
    pub registered: bool,
    /// Every instance it starts fails to boot.
    pub fail_all: bool,
    /// Every instance fails its health check.
    pub unhealthy: bool,
    instances: BTreeMap<InstanceId, SimInstance>,
}

const UNHEALTHY: &str = "health check failing (simulated)";

impl SimHost {
    /// A powered-on host with no instances, not yet registered.
    pub fn new(name: &str, region: &str, cpu: u32, memory: u64) -> SimHost {
        SimHost {
            name: name.into(),
            region: region.into(),
            cpu,
            memory,
            up: true,
            partitioned: false,
            registered: false,
            fail_all: false,
            unhealthy: false,
            instances: BTreeMap::new(),
        }
    }

    /// What it tells the controller when it (re)connects.
    pub fn registration(&self) -> HostRegistration {
        HostRegistration {
            name: self.name.clone(),
            region: self.region.clone(),
            cpu: self.cpu,
            memory: self.memory,
            tunnel: None,
        }
    }

    /// Whether it can talk to the controller.
    pub fn connected(&self) -> bool {
        self.up && !self.partitioned
    }

    /// Its instances, by ID.
    pub fn instances(&self) -> impl Iterator<Item = &SimInstance> {
        self.instances.values()
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Option<&SimInstance> {
        self.instances.get(id)
    }

    /// Cpu and memory held by its instances.
    pub fn used(&self) -> (u64, u64) {
        self.instances
            .values()
            .filter(|i| i.holds_resources())
            .fold((0, 0), |(c, m), i| (c + u64::from(i.cpu), m + i.memory))
    }

    /// Loses power: every instance is gone and the session with it.
    pub fn crash(&mut self) {
        self.up = false;
        self.registered = false;
        self.instances.clear();
    }

    /// Runs an instance the controller never assigned (left over from
    /// before the controller lost its state, say).
    pub fn inject(&mut self, id: &str) {
        let instance = SimInstance {
            id: id.into(),
            key: None,
            release: ReleaseNo::default(),
            image: "stray".into(),
            cpu: 0,
            memory: 0,
            phase: Phase::Healthy,
            detail: None,
            next: None,
            sick: false,
        };
        self.instances.insert(id.into(), instance);
    }

    /// Makes one instance fail its health check; false if it has no such instance.
    pub fn make_sick(&mut self, id: &str) -> bool {
        self.instances.get_mut(id).map(|i| i.sick = true).is_some()
    }

    /// Moves instances whose delay has passed into their next phase, and
    /// healthy ones that fail their check into `Unhealthy`.
    pub fn advance(&mut self, now: Millis) -> Vec<String> {
        let mut log = Vec::new();
        for i in self.instances.values_mut() {
            if let Some((_, phase)) = i.next.filter(|(at, _)| *at <= now) {
                i.next = None;
                i.phase = phase;
                i.detail = None;
                if phase == Phase::Failed {
                    i.detail = Some("the guest exited during boot (simulated failure)".into());
                }
                log.push(format!("{} is {phase:?}", i.id).to_lowercase());
            }
            if i.phase == Phase::Healthy && (i.sick || self.unhealthy) {
                i.phase = Phase::Unhealthy;
                i.detail = Some(UNHEALTHY.into());
                log.push(format!("{} is unhealthy", i.id));
            }
        }
        log
    }

    /// The report of every instance. Stopped and failed instances are
    /// reported once, then forgotten.
    pub fn report(&mut self) -> Vec<InstanceReport> {
        let reports = self
            .instances
            .values()
            .map(|i| InstanceReport {
                id: i.id.clone(),
                phase: i.phase,
                detail: i.detail.clone(),
                restarts: 0,
                address: None,
                image: None,
            })
            .collect();
        self.instances
            .retain(|_, i| !matches!(i.phase, Phase::Stopped | Phase::Failed));
        reports
    }

    /// Acts on the controller's whole list of assignments: starts what it
    /// should run and does not have, stops what it should stop or was not
    /// assigned at all.
    pub fn apply(
        &mut self,
        assignments: &[Assignment],
        now: Millis,
        rng: &mut Rng,
        behaviour: &Behaviour,
    ) -> Applied {
        let mut applied = Applied::default();
        let assigned: BTreeSet<&str> = assignments.iter().map(|a| a.id.as_str()).collect();
        for a in assignments {
            match (a.desire, self.instances.get_mut(&a.id)) {
                (Desire::Run, None) => {
                    let instance = self.start(a, now, rng, behaviour);
                    applied.log.push(format!(
                        "start {} ({} release {}): {:?} at +{}ms",
                        a.id,
                        a.name,
                        a.release,
                        instance.next.map_or(Phase::Starting, |(_, p)| p),
                        instance.next.map_or(0, |(t, _)| t - now)
                    ));
                    let start = Start {
                        host: self.name.clone(),
                        key: a.key.clone(),
                        release: a.release,
                        slot: a.slot,
                        time: now,
                    };
                    applied.started.push((a.id.clone(), start));
                    self.instances.insert(a.id.clone(), instance);
                }
                (Desire::Stop, Some(i)) => {
                    if let Some(line) = stop(i, now, rng, behaviour, "told to stop") {
                        applied.log.push(line);
                    }
                }
                // A running instance moved to a newer release (a scale-only
                // change) keeps running: only its label changes.
                (Desire::Run, Some(i)) => i.release = a.release,
                (Desire::Stop, None) => {}
            }
        }
        for i in self.instances.values_mut() {
            if !assigned.contains(i.id.as_str()) {
                if let Some(line) = stop(i, now, rng, behaviour, "not assigned") {
                    applied.log.push(line);
                }
            }
        }
        applied
    }

    fn start(&self, a: &Assignment, now: Millis, rng: &mut Rng, b: &Behaviour) -> SimInstance {
        let boot = rng.between(b.boot_ms.0, b.boot_ms.1);
        let unlucky = rng.chance(b.fail_probability);
        let fails = unlucky || self.fail_all || b.failing_images.contains(&a.spec.image);
        let outcome = if fails { Phase::Failed } else { Phase::Healthy };
        SimInstance {
            id: a.id.clone(),
            key: Some(a.key.clone()),
            release: a.release,
            image: a.spec.image.clone(),
            cpu: a.spec.cpu.0,
            memory: a.spec.memory.0,
            phase: Phase::Starting,
            detail: None,
            next: Some((now + boot, outcome)),
            sick: false,
        }
    }
}

/// Begins stopping a running instance; the line for the timeline, if it did.
fn stop(
    i: &mut SimInstance,
    now: Millis,
    rng: &mut Rng,
    b: &Behaviour,
    why: &str,
) -> Option<String> {
    if !i.is_running() {
        return None;
    }
    let delay = rng.between(b.stop_ms.0, b.stop_ms.1);
    i.phase = Phase::Stopping;
    i.next = Some((now + delay, Phase::Stopped));
    Some(format!("stop {} ({why}): stopped at +{delay}ms", i.id))
}
