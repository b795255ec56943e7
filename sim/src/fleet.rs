//! The simulated fleet: the controller's core, unchanged, driven by
//! simulated hosts and a simulated clock, with faults injected between steps.

mod faults;
mod inspect;

pub use inspect::no_overcommit;

use crate::clock::{Clock, Entry};
use crate::host::{Behaviour, SimHost, Start};
use crate::rng::Rng;
use std::collections::BTreeMap;
use vt_control::core::{CommitOutcome, Config, Controller};
use vt_control::store::RedbStore;
use vt_plan::events::Event;
use vt_plan::releases::CommitInfo;
use vt_plan::{InstanceId, Millis};
use vt_repo::Snapshot;

/// Settings of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The controller's settings.
    pub controller: Config,
    /// The step [`Sim::run_until`] and [`Sim::run_for`] take.
    pub step_ms: Millis,
    /// How instances behave on the simulated hosts.
    pub behaviour: Behaviour,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            controller: Config::default(),
            step_ms: 500,
            behaviour: Behaviour::default(),
        }
    }
}

/// A check run after every step: `Err` says what is wrong.
pub type Invariant = Box<dyn Fn(&Sim) -> Result<(), String>>;

/// A deterministic simulation of the controller and its hosts.
///
/// A step advances the clock; every host that is up and connected
/// (re)registers if it must, reports all its instances and acts on its
/// assignments, in an order drawn from the seed; then the controller ticks
/// and flushes. The same seed replays the same run, event for event.
///
/// It is a test harness: an unmet [`Sim::run_until`], a violated
/// [`Sim::invariant`], an instance ID started for two different instances
/// (another host, workload, release or slot) or a failure of the
/// controller's store panics with the seed and a [`Sim::summary`].
pub struct Sim {
    seed: u64,
    config: SimConfig,
    clock: Clock,
    rng: Rng,
    controller: Controller,
    hosts: BTreeMap<String, SimHost>,
    commits: u64,
    timeline: Vec<Entry>,
    events: Vec<Event>,
    started: BTreeMap<InstanceId, Vec<Start>>,
    invariants: Vec<(String, Invariant)>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("elapsed", &self.clock.elapsed())
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulation with default settings, an in-memory store and no hosts.
    pub fn new(seed: u64) -> Sim {
        Sim::with_config(seed, SimConfig::default())
    }

    /// A simulation with `config`.
    pub fn with_config(seed: u64, config: SimConfig) -> Sim {
        let controller = match RedbStore::in_memory()
            .and_then(|s| Controller::open(Box::new(s), config.controller))
        {
            Ok(c) => c,
            Err(e) => panic!("seed = {seed}: the controller's in-memory store failed: {e}"),
        };
        Sim {
            seed,
            config,
            clock: Clock::default(),
            rng: Rng::new(seed),
            controller,
            hosts: BTreeMap::new(),
            commits: 0,
            timeline: Vec::new(),
            events: Vec::new(),
            started: BTreeMap::new(),
            invariants: Vec::new(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated Unix time, in milliseconds.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Millis {
        self.clock.elapsed()
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Changes how instances started from now on behave.
    pub fn behaviour_mut(&mut self) -> &mut Behaviour {
        &mut self.config.behaviour
    }

    /// The controller, for queries.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Adds a host; it registers on the next step.
    pub fn add_host(&mut self, name: &str, region: &str, cpu_millis: u32, memory_bytes: u64) {
        self.log(
            "sim",
            format!("add host {name} in {region}: {cpu_millis}m cpu, {memory_bytes} bytes"),
        );
        self.hosts.insert(
            name.into(),
            SimHost::new(name, region, cpu_millis, memory_bytes),
        );
    }

    /// Commits `files` (path, content) as the whole repository and hands the
    /// loaded commit to the controller, which flushes at once.
    pub fn commit<P: AsRef<str>, C: AsRef<str>>(&mut self, files: &[(P, C)]) -> CommitOutcome {
        self.commits += 1;
        let sha = format!("{:012x}{:028x}", self.commits, 0);
        let snapshot = Snapshot {
            origin: format!("sim commit {}", self.commits),
            commit: Some(sha.clone()),
            files: files
                .iter()
                .map(|(p, c)| (p.as_ref().to_string(), c.as_ref().as_bytes().to_vec()))
                .collect(),
        };
        let loaded = vt_repo::load(&snapshot);
        let info = CommitInfo {
            sha,
            author: "sim <sim@vt.invalid>".into(),
            message: format!("commit {}", self.commits),
            time: self.now(),
        };
        self.log(
            "sim",
            format!("commit {} ({} files)", self.commits, files.len()),
        );
        let outcome = self.controller.apply_commit(&info, &loaded, self.now());
        self.flush();
        outcome
    }

    /// Registers a check run after every step from now on.
    pub fn invariant(&mut self, name: &str, check: impl Fn(&Sim) -> Result<(), String> + 'static) {
        self.invariants.push((name.into(), Box::new(check)));
    }

    /// One step of `dt_ms`: hosts talk, the controller ticks and flushes,
    /// invariants are checked.
    pub fn step(&mut self, dt_ms: Millis) {
        self.exchange(dt_ms);
        let now = self.now();
        self.controller.tick(now);
        self.flush();
        self.check();
    }

    /// Steps for `ms` of simulated time.
    pub fn run_for(&mut self, ms: Millis) {
        let end = self.now().saturating_add(ms);
        while self.now() < end {
            self.step(self.config.step_ms.min(end - self.now()));
        }
    }

    /// Steps until `pred` holds, and returns how long that took; panics with
    /// the seed and a summary if it does not within `max_ms`.
    pub fn run_until(&mut self, pred: impl Fn(&Sim) -> bool, max_ms: Millis) -> Millis {
        let start = self.now();
        while !pred(self) {
            if self.now() - start >= max_ms {
                self.fail(&format!("the condition did not hold within {max_ms}ms"));
            }
            self.step(self.config.step_ms);
        }
        self.now() - start
    }

    /// A clean controller restart: it flushes, stops and reopens its store.
    /// Hosts reconnect and register again.
    pub fn restart_controller(&mut self) {
        self.flush();
        self.log("sim", "controller restarts cleanly".into());
        self.reopen();
    }

    /// A controller crash in the middle of a step of `dt_ms`: hosts talk and
    /// the controller ticks, then it dies before flushing, so what changed
    /// in that step is lost; it reopens its store. Hosts reconnect and
    /// register again.
    pub fn crash_controller(&mut self, dt_ms: Millis) {
        self.exchange(dt_ms);
        let now = self.now();
        let actions = self.controller.tick(now);
        self.log(
            "sim",
            format!(
                "controller crashes before flushing ({} action(s) of its last tick lost)",
                actions.len()
            ),
        );
        self.reopen();
        self.check();
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}\n{}", self.summary())
    }

    fn log(&mut self, actor: &str, message: String) {
        tracing::debug!(seed = self.seed, t = self.elapsed(), actor, "{message}");
        self.timeline.push(Entry {
            time: self.now(),
            actor: actor.into(),
            message,
        });
    }

    /// Advances the clock and lets every connected host talk to the controller.
    fn exchange(&mut self, dt_ms: Millis) {
        self.clock.advance(dt_ms);
        let now = self.now();
        let mut names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in &names {
            let log = self
                .hosts
                .get_mut(name)
                .map(|h| h.advance(now))
                .unwrap_or_default();
            for line in log {
                self.log(name, line);
            }
        }
        self.rng.shuffle(&mut names);
        for name in names {
            self.talk(&name, now);
        }
    }

    /// One host's turn: register if needed, report, act on the assignments.
    fn talk(&mut self, name: &str, now: Millis) {
        let Some(host) = self.hosts.get_mut(name) else {
            return;
        };
        if !host.connected() {
            return;
        }
        if !host.registered {
            self.controller.register_host(&host.registration(), now);
            host.registered = true;
        }
        let reports = host.report();
        let unknown = self.controller.report(name, &reports, now);
        let assignments = self.controller.assignments(name);
        let applied = host.apply(&assignments, now, &mut self.rng, &self.config.behaviour);
        if !unknown.is_empty() {
            self.log(
                "controller",
                format!("tells {name} to stop {}", unknown.join(", ")),
            );
        }
        for line in applied.log {
            self.log(name, line);
        }
        for (id, start) in applied.started {
            let starts = self.started.entry(id.clone()).or_default();
            if let Some(first) = starts.first().filter(|first| !first.same_instance(&start)) {
                let why = format!(
                    "instance ID {id} was reused: started as {start:?}, first as {first:?}"
                );
                self.fail(&why);
            }
            let again = !starts.is_empty();
            starts.push(start);
            if again {
                self.log(
                    name,
                    format!("starts {id} again: it lost the instance before reporting it"),
                );
            }
        }
    }

    fn flush(&mut self) {
        match self.controller.flush() {
            Ok(events) => {
                for e in events {
                    self.log("controller", format!("{}: {}", e.kind, e.message));
                    self.events.push(e);
                }
            }
            Err(e) => self.fail(&format!("the controller's flush failed: {e}")),
        }
    }

    fn check(&self) {
        for (name, check) in &self.invariants {
            if let Err(why) = check(self) {
                self.fail(&format!("invariant `{name}` violated: {why}"));
            }
        }
    }

    /// Drops the controller and opens a new one on its store, as a process
    /// restart does; hosts must register again.
    fn reopen(&mut self) {
        let cfg = self.config.controller;
        let fresh = RedbStore::in_memory().and_then(|s| Controller::open(Box::new(s), cfg));
        let placeholder = match fresh {
            Ok(c) => c,
            Err(e) => self.fail(&format!("an in-memory store failed: {e}")),
        };
        let old = std::mem::replace(&mut self.controller, placeholder);
        match Controller::open(old.into_store(), cfg) {
            Ok(c) => self.controller = c,
            Err(e) => self.fail(&format!("the controller could not reopen its store: {e}")),
        }
        for h in self.hosts.values_mut() {
            h.registered = false;
        }
    }
}
