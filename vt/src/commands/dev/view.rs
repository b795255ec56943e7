//! What `vt dev` prints: its own lines, the fleet's events and the apps'
//! logs, each with a tag; what runs where, each time it changes; and the
//! cold-start split once the first endpoint serves.

use crate::commands::observe::{event_line, log_line};
use crate::output::Style;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use vt_control::endpoint_views::EndpointView;
use vt_control::views::StatusView;
use vt_plan::events::Event;
use vt_plan::Phase;
use vt_wire::messages::LogLine;

fn tagged(tag: &str, text: &str) {
    let s = Style::stdout();
    let mut out = String::new();
    for line in text.trim_end_matches('\n').lines() {
        let _ = writeln!(out, "{} {line}", s.dim(&format!("{tag:<5} |")));
    }
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Prints a line of `vt dev`'s own.
pub fn say(text: &str) {
    tagged("dev", text);
}

/// Prints a fleet event.
pub fn event(e: &Event) {
    tagged("event", &event_line(e, Style::stdout()));
}

/// Prints an app's log line.
pub fn log(l: &LogLine) {
    tagged("log", &log_line(l, Style::stdout()));
}

/// The controller's view of the apps, as the poller last saw it.
#[derive(Debug, Clone)]
pub struct View {
    /// `/v1/status`.
    pub status: StatusView,
    /// `/v1/endpoints`.
    pub endpoints: Vec<EndpointView>,
}

/// The URL of an endpoint on this machine, once it has an address.
pub fn url(e: &EndpointView) -> Option<String> {
    e.ipv6.map(|ip| format!("http://[{ip}]:{}", e.port))
}

/// What runs where: each app/env with its release, instances (host,
/// region, phase, address) and endpoints (local URL, target port).
pub fn render(view: &View) -> Vec<String> {
    let mut out = Vec::new();
    let workloads: Vec<_> = view.status.workloads.iter().filter(|w| w.active).collect();
    if workloads.is_empty() {
        out.push("no apps yet: add one under orgs/ (`vt app create`, `vt env create`)".into());
    }
    for w in workloads {
        let rollout = match w.rollout.as_ref().map(|r| &r.status) {
            Some(vt_plan::RolloutStatus::Progressing) => ", rolling out",
            Some(vt_plan::RolloutStatus::Halted { .. }) => ", rollout halted",
            _ => "",
        };
        out.push(format!(
            "{}  release {}, {}/{} ready{rollout}",
            w.name, w.desired_release, w.ready, w.wanted
        ));
        for i in w.instances.iter().filter(|i| i.phase != Phase::Stopped) {
            let phase = format!("{:?}", i.phase).to_lowercase();
            out.push(format!(
                "  {}  release {} on {} ({})  {phase}{}{}",
                i.id,
                i.release,
                i.host,
                i.region,
                i.detail
                    .as_deref()
                    .map_or(String::new(), |d| format!(" ({d})")),
                i.address
                    .as_deref()
                    .map_or(String::new(), |a| format!("  guest {a}")),
            ));
        }
        for p in &w.pending {
            out.push(format!("  pending in {}: {}", p.region, p.reason));
        }
        for e in view.endpoints.iter().filter(|e| e.workload == w.name) {
            let routed = e.instances.iter().filter(|i| i.routed).count();
            out.push(format!(
                "  endpoint {}  {}  → port {}, {routed} instance(s) routed",
                e.endpoint,
                url(e).unwrap_or_else(|| "(no address yet)".into()),
                e.target_port
            ));
        }
    }
    out
}

/// Whether every app/env (one at least) has all its wanted instances of
/// its desired release healthy since `since` (Unix ms): a state left by the
/// previous run does not count.
pub fn healthy_since(view: &View, since: u64) -> bool {
    let workloads: Vec<_> = view.status.workloads.iter().filter(|w| w.active).collect();
    !workloads.is_empty()
        && workloads.iter().all(|w| {
            let fresh = w
                .instances
                .iter()
                .filter(|i| {
                    i.phase == Phase::Healthy && i.release == w.desired_release && i.since >= since
                })
                .count();
            w.wanted > 0 && fresh >= w.wanted as usize
        })
}

/// When the first start reached each step, from `vt dev`'s start.
#[derive(Debug)]
pub struct Timing {
    start: Instant,
    /// State, ports and runtime chosen (a first KVM probe included).
    prepared: Option<Instant>,
    /// Images built and pushed (the registry started).
    built: Option<Instant>,
    /// Controller, hosts and edge up.
    started: Option<Instant>,
    /// The first app log line of this run: a guest booted and its app runs.
    booted: Option<Instant>,
    /// The first endpoint answered HTTP (or, without endpoints or with
    /// simulated hosts, every instance was healthy).
    ready: Option<Instant>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Timing {
    /// Starts the clock.
    pub fn new() -> Timing {
        Timing {
            start: Instant::now(),
            prepared: None,
            built: None,
            started: None,
            booted: None,
            ready: None,
        }
    }

    /// The state, ports and runtime are ready.
    pub fn prepared(&mut self) {
        self.prepared.get_or_insert_with(Instant::now);
    }

    /// Images are built.
    pub fn built(&mut self) {
        self.built.get_or_insert_with(Instant::now);
    }

    /// The processes are up.
    pub fn started(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// An app logged its first line.
    pub fn booted(&mut self) {
        self.booted.get_or_insert_with(Instant::now);
    }

    /// Whether the stack was ready already.
    pub fn is_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// The app is ready: returns the split to print, the first time only.
    pub fn ready(&mut self, what: &str) -> Option<String> {
        if self.ready.is_some() {
            return None;
        }
        let now = Instant::now();
        self.ready = Some(now);
        let prepared = self.prepared.unwrap_or(self.start);
        let built = self.built.unwrap_or(prepared);
        let started = self.started.unwrap_or(built);
        let mut split = format!(
            "ready in {}: prepare {} (state, ports, runtime), build {} (registry and images), start {} (controller, hosts, edge)",
            secs(now - self.start),
            secs(prepared - self.start),
            secs(built.saturating_duration_since(prepared)),
            secs(started.saturating_duration_since(built)),
        );
        match self.booted {
            Some(booted) => {
                let _ = write!(
                    split,
                    ", boot {} (to the app's first log line), health {} ({what})",
                    secs(booted.saturating_duration_since(started)),
                    secs(now.saturating_duration_since(booted)),
                );
            }
            None => {
                let _ = write!(
                    split,
                    ", boot and health {} ({what})",
                    secs(now.saturating_duration_since(started))
                );
            }
        }
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_shows_instances_by_host_and_endpoints_by_url() {
        let status = serde_json::json!({
            "commit": null, "last_seen": null,
            "workloads": [{
                "name": "hello/site/web/dev",
                "key": {"app_id": "app_1", "env_id": "env_1"},
                "active": true, "desired_release": 2, "current_release": 2,
                "wanted": 1, "ready": 1,
                "instances": [{
                    "id": "ins_000003", "release": 2, "host": "dev-1", "region": "local",
                    "phase": "healthy", "since": 0, "placement": "",
                    "detail": "tcg", "address": "fd12::2"
                }]
            }]
        });
        let endpoint = serde_json::json!({
            "workload": "hello/site/web/dev", "endpoint": "web", "port": 80,
            "target_port": 8080, "ipv6": "fd76:7400:de:1::1", "ipv4_requested": false,
            "ipv4": null, "proxy_protocol": false, "edges": [], "instances": [],
            "open": 0, "total": 0, "bytes_in": 0, "bytes_out": 0, "errors": 0, "refused": 0
        });
        let view = View {
            status: serde_json::from_value(status).expect("a status"),
            endpoints: vec![serde_json::from_value(endpoint).expect("an endpoint")],
        };
        assert_eq!(
            render(&view),
            [
                "hello/site/web/dev  release 2, 1/1 ready",
                "  ins_000003  release 2 on dev-1 (local)  healthy (tcg)  guest fd12::2",
                "  endpoint web  http://[fd76:7400:de:1::1]:80  → port 8080, 0 instance(s) routed",
            ]
        );
        let empty = View {
            status: serde_json::from_value(
                serde_json::json!({"commit": null, "last_seen": null, "workloads": []}),
            )
            .expect("empty"),
            endpoints: Vec::new(),
        };
        assert!(render(&empty)[0].starts_with("no apps yet"));
        assert!(healthy_since(&view, 0));
        assert!(!healthy_since(&view, 1), "healthy before this run");
        assert!(!healthy_since(&empty, 0));
    }

    #[test]
    fn the_split_adds_up_and_is_told_once() {
        let mut t = Timing::new();
        t.prepared();
        t.built();
        t.started();
        t.booted();
        let split = t.ready("serving").expect("the first time");
        assert!(
            split.starts_with("ready in ") && split.contains("boot ") && split.contains("health "),
            "{split}"
        );
        assert!(t.is_ready() && t.ready("again").is_none());
    }
}
