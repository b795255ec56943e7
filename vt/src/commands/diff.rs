//! `vt diff`: what a change will do before it is pushed. The semantic diff
//! of the desired state, then the planner's actions against the running
//! fleet (or a simulated one), warnings, and the simulator's predicted
//! rollout timeline. Exit 0: no changes, 1: changes, 2 and above: errors.

use crate::cli::{Against, DiffArgs, Global};
use crate::client::Client;
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Style};
use serde::{Deserialize, Serialize};
use std::path::Path;
use vt_plan::preview::{self, Baseline, Preview, Step};
use vt_plan::releases::CommitInfo;
use vt_plan::{Host, HostStatus};
use vt_repo::{DesiredState, ResourceDiff, Snapshot};
use vt_sim::{Prediction, TopologyHost};

/// Seed of the predicted timeline: the same inputs give the same timeline.
const SEED: u64 = 1;

/// The whole answer of `vt diff`, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// What the change is compared with (a revision, or the fleet's commit).
    pub base: String,
    /// The change (a revision, or `working tree`).
    pub head: String,
    /// fleet, dev or sim.
    pub against: String,
    /// The semantic diff of the desired state, resource by resource.
    pub changes: Vec<ResourceDiff>,
    /// Releases, planner actions, endpoints, volumes, secrets, warnings; with
    /// the base commit and the hash of the observed state planned against.
    pub plan: Preview,
    /// The simulator's predicted rollout.
    pub timeline: Prediction,
}

/// A simulated fleet's hosts, as in a topology file or `vt dev`'s dev.json.
#[derive(Debug, Clone, Deserialize)]
pub struct Topology {
    /// The hosts.
    pub hosts: Vec<TopologyEntry>,
}

/// One host of a topology file.
#[derive(Debug, Clone, Deserialize)]
pub struct TopologyEntry {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Cpu (`2`, `500m`).
    pub cpu: String,
    /// Memory (`4Gi`).
    pub memory: String,
}

/// Runs `vt diff`: prints the report, exits 1 when there are changes.
pub fn run(g: &Global, args: &DiffArgs) -> Result<(), CliError> {
    let report = report(g, args).map_err(|mut e| {
        if e.exit == Exit::Failure {
            // 1 means "changes" here, like `diff` and `kubectl diff`.
            e.exit = Exit::Usage;
        }
        e
    })?;
    output::print(g.output, &report, |s| render(&report, s));
    if report.plan.has_changes() {
        std::process::exit(1);
    }
    Ok(())
}

/// The report, without printing it (also what `vt deploy` shows).
pub fn report(g: &Global, args: &DiffArgs) -> Result<DiffReport, CliError> {
    let root = super::find_root(g)?;
    let clock = std::time::Instant::now();
    let phase = |what: &str| {
        tracing::debug!(
            phase = what,
            elapsed_ms = clock.elapsed().as_millis() as u64,
            "vt diff"
        )
    };
    let against = match args.against {
        Some(a) => a,
        None if args.topology.is_some() => Against::Sim,
        None if Client::from_api(&args.api).is_ok() => Against::Fleet,
        None => Against::Sim,
    };
    let live = match against {
        Against::Fleet => Some(Client::from_api(&args.api)?),
        // `vt dev` applies the working tree as it is saved: its hosts are
        // the fleet, simulated, and the base is a revision (HEAD).
        Against::Dev | Against::Sim => None,
    };
    let live_baseline = match &live {
        Some(client) => Some(client.get::<Baseline>("/v1/baseline", &[])?),
        None => None,
    };
    let fleet_commit = live_baseline
        .as_ref()
        .and_then(|b| b.commit.as_ref())
        .map(|c| c.sha.clone())
        .filter(|sha| {
            // The fleet's commit as the base, when this clone has it (a `vt dev`
            // controller's working-tree ID, or an unfetched commit: HEAD instead).
            let known = git2::Repository::open(&root).is_ok_and(|r| r.revparse_single(sha).is_ok());
            if !known {
                tracing::warn!(commit = %sha, "the fleet's commit is not in this repository; comparing with HEAD");
            }
            known
        });
    let (base_rev, head_rev) = revisions(args.range.as_deref(), fleet_commit.as_deref())?;
    let now = vt_wire::clock::now();
    let panicked = || {
        CliError::new(
            Exit::Failure,
            ErrorCode::Internal,
            "a thread of vt diff panicked",
        )
    };
    // Two threads: both trees load at once, then the simulated fleet runs
    // the base while the semantic diff is made; loading is most of the time
    // on big repositories.
    let (base_side, head_side) = std::thread::scope(|scope| {
        let base_side = scope.spawn(|| {
            let base = snapshot(&root, base_rev.as_deref())?;
            let state = vt_repo::load(&base).state;
            Ok::<_, CliError>((base, state))
        });
        let head_side = snapshot(&root, head_rev.as_deref()).map(|head| {
            let loaded = vt_repo::load(&head);
            (head, loaded)
        });
        (base_side.join(), head_side)
    });
    let (base, base_state) = base_side.map_err(|_| panicked())??;
    let (head, loaded) = head_side?;
    let commit = commit_info(&root, &head);
    if !loaded.diagnostics.is_empty() {
        return Err(CliError::invalid(loaded.diagnostics));
    }
    phase("loaded");
    let (baseline, changes) = std::thread::scope(|scope| {
        let changes = scope.spawn(|| vt_repo::diff(&base_state, &loaded.state));
        let baseline = match live_baseline {
            Some(b) => Ok(b),
            None => match against {
                Against::Dev => dev_topology(&root),
                _ => topology(args.topology.as_deref(), &base_state),
            }
            .map(|hosts| {
                let base_commit = commit_info(&root, &base);
                preview::simulated_baseline(hosts, &base_state, &base_commit, now)
            }),
        };
        (baseline, changes.join())
    });
    let (baseline, changes) = (baseline?, changes.map_err(|_| panicked())?);
    let plan = preview::preview(&baseline, &loaded.state, &commit, now);
    phase("planned");
    let changed: Vec<String> = plan
        .releases
        .iter()
        .map(|r| r.name.clone())
        .chain(plan.removed.iter().cloned())
        .collect();
    let timeline = vt_sim::predict(
        &sim_hosts(&baseline),
        &files_of(&base, &changed),
        &files_of(&head, &changed),
        SEED,
    );
    phase("predicted");
    Ok(DiffReport {
        base: base.origin.clone(),
        head: match head_rev {
            Some(_) => head.origin.clone(),
            None => "working tree".into(),
        },
        against: format!("{against:?}").to_lowercase(),
        changes,
        plan,
        timeline,
    })
}

/// Base and head revisions; `None` is the working tree.
fn revisions(
    range: Option<&str>,
    fleet_commit: Option<&str>,
) -> Result<(Option<String>, Option<String>), CliError> {
    Ok(match range {
        Some(r) => match r.split_once("..") {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => (Some(a.into()), Some(b.into())),
            Some(_) => {
                return Err(CliError::new(
                    Exit::Usage,
                    ErrorCode::Usage,
                    format!("`{r}` is not a range"),
                )
                .hint("write BASE..HEAD, e.g. HEAD~1..HEAD, or one revision to compare with the working tree"))
            }
            None => (Some(r.into()), None),
        },
        None => (Some(fleet_commit.unwrap_or("HEAD").into()), None),
    })
}

fn snapshot(root: &Path, rev: Option<&str>) -> Result<Snapshot, CliError> {
    Ok(match rev {
        Some(rev) => Snapshot::from_git(root, rev)?,
        None => Snapshot::from_dir(root)?,
    })
}

/// The commit a snapshot stands for (the working tree gets a synthetic one).
fn commit_info(root: &Path, snapshot: &Snapshot) -> CommitInfo {
    let author = git2::Repository::open(root)
        .ok()
        .and_then(|r| r.signature().ok().map(|s| s.to_string()))
        .unwrap_or_else(|| "you".into());
    CommitInfo {
        sha: snapshot
            .commit
            .clone()
            .unwrap_or_else(|| "working-tree".into()),
        author,
        message: snapshot.origin.clone(),
        time: vt_wire::clock::now(),
    }
}

/// Cpu (millicores) and memory of each host of the default simulated fleet.
const SIM_HOST: (u32, u64) = (4_000, 8 << 30);

/// The hosts of a topology file, or else per region of the repository
/// enough 4-cpu, 8Gi hosts for what the base state runs there, plus half, plus two.
fn topology(file: Option<&Path>, state: &DesiredState) -> Result<Vec<Host>, CliError> {
    let Some(file) = file else {
        let mut need: std::collections::BTreeMap<&str, (u64, u64)> = state
            .config
            .regions
            .iter()
            .map(|r| (r.name.as_str(), (0, 0)))
            .collect();
        for spec in state.envs.iter().filter_map(|e| e.effective.as_ref()) {
            for region in &spec.regions {
                if let Some((cpu, memory)) = need.get_mut(region.as_str()) {
                    *cpu += u64::from(spec.instances) * u64::from(spec.cpu.0);
                    *memory += u64::from(spec.instances) * spec.memory.0;
                }
            }
        }
        let mut hosts = Vec::new();
        for (region, (cpu, memory)) in need {
            let fill = (cpu.div_ceil(u64::from(SIM_HOST.0))).max(memory.div_ceil(SIM_HOST.1));
            for n in 1..=fill * 3 / 2 + 2 {
                let name = format!("sim-{region}-{n}");
                hosts.push(Host {
                    id: name.as_str().into(),
                    name,
                    region: region.to_string(),
                    cpu: SIM_HOST.0,
                    memory: SIM_HOST.1,
                    status: HostStatus::Ready,
                });
            }
        }
        return Ok(hosts);
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::new(
            Exit::NotFound,
            ErrorCode::Topology,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let topology: Topology = serde_yaml::from_str(&text).map_err(|e| {
        CliError::new(
            Exit::Invalid,
            ErrorCode::Topology,
            format!("{}: {e}", file.display()),
        )
        .hint("a topology file is `hosts: [{name, region, cpu: \"2\", memory: \"4Gi\"}]`")
    })?;
    hosts_of(&topology, &file.display().to_string())
}

/// Topology entries as planner hosts.
pub fn hosts_of(topology: &Topology, origin: &str) -> Result<Vec<Host>, CliError> {
    topology
        .hosts
        .iter()
        .map(|h| {
            let bad = |e: String| {
                CliError::new(
                    Exit::Invalid,
                    ErrorCode::Topology,
                    format!("{origin}: host {}: {e}", h.name),
                )
            };
            Ok(Host {
                id: h.name.as_str().into(),
                name: h.name.clone(),
                region: h.region.clone(),
                cpu: vt_repo::Cpu::parse(&h.cpu).map_err(bad)?.0,
                memory: vt_repo::ByteSize::parse(&h.memory).map_err(bad)?.0,
                status: HostStatus::Ready,
            })
        })
        .collect()
}

/// `vt dev`'s description of its stack in this repository.
#[derive(Debug, Deserialize)]
struct DevState {
    hosts: Vec<TopologyEntry>,
}

fn dev_state(root: &Path) -> Result<DevState, CliError> {
    let path = root.join(".vt/dev/dev.json");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        CliError::new(
            Exit::NotFound,
            ErrorCode::NoDev,
            format!("no vt dev state in {}", path.display()),
        )
        .hint("run `vt dev` in this repository first, or use --against sim")
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::NoDev,
            format!("{}: {e}", path.display()),
        )
    })
}

fn dev_topology(root: &Path) -> Result<Vec<Host>, CliError> {
    let dev = dev_state(root)?;
    let path = root.join(".vt/dev/dev.json").display().to_string();
    hosts_of(&Topology { hosts: dev.hosts }, &path)
}

/// The simulator's copy of the baseline's ready hosts.
fn sim_hosts(baseline: &Baseline) -> Vec<TopologyHost> {
    baseline
        .observed
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Ready)
        .map(|h| TopologyHost {
            name: h.name.clone(),
            region: h.region.clone(),
            cpu: h.cpu,
            memory: h.memory,
        })
        .collect()
}

/// The files the timeline simulates: everything but the apps the change
/// leaves alone (they would only slow the simulation down).
fn files_of(snapshot: &Snapshot, changed: &[String]) -> Vec<(String, String)> {
    let apps: Vec<String> = changed
        .iter()
        .filter_map(|name| {
            let parts: Vec<&str> = name.split('/').collect();
            (parts.len() == 4).then(|| format!("orgs/{}/{}/{}/", parts[0], parts[1], parts[2]))
        })
        .collect();
    snapshot
        .files
        .iter()
        .filter(|(path, _)| {
            let depth = path.split('/').count();
            !path.starts_with("orgs/") || depth <= 4 || apps.iter().any(|a| path.starts_with(a))
        })
        .map(|(path, bytes)| (path.clone(), String::from_utf8_lossy(bytes).into_owned()))
        .collect()
}

fn value_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "∅".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The report for people.
pub fn render(r: &DiffReport, s: Style) -> String {
    let mut out = format!(
        "{} {} → {}, against {}\n",
        s.bold("diff"),
        r.base,
        r.head,
        r.against
    );
    out += &format!(
        "base commit {}, observed state {}\n",
        r.plan.base_commit.as_deref().unwrap_or("none"),
        r.plan.observed_hash.get(..16).unwrap_or_default()
    );
    if !r.plan.has_changes() {
        out += "no changes: nothing to release\n";
        return out;
    }
    out += &render_plan(&r.plan, s);
    out += &render_timeline(&r.timeline, s);
    out
}

/// Releases, waves, endpoints, volumes, secrets and warnings.
pub fn render_plan(p: &Preview, s: Style) -> String {
    let mut out = String::new();
    for rel in &p.releases {
        let from = rel
            .from
            .map_or("new".to_string(), |n| format!("release {n}"));
        let how = if rel.in_place { " (in place)" } else { "" };
        out += &format!("\n{} {from} → release {}{how}\n", s.bold(&rel.name), rel.to);
        for f in &rel.fields {
            out += &format!(
                "  ~ {}: {} → {}\n",
                f.path,
                value_text(f.old.as_ref()),
                value_text(f.new.as_ref())
            );
        }
    }
    for name in &p.removed {
        out += &format!("\n{} removed: its instances stop\n", s.bold(name));
    }
    out += &format!("\n{}\n", s.bold("plan"));
    for (n, wave) in p.waves.iter().enumerate() {
        for (i, step) in wave.iter().enumerate() {
            let label = if i == 0 {
                format!("wave {}", n + 1)
            } else {
                String::new()
            };
            let line = match step {
                Step::Start {
                    workload,
                    release,
                    host,
                    slot,
                    ..
                } => format!(
                    "start {workload} release {release} on {host}{}",
                    slot.map(|n| format!(" (slot {n})")).unwrap_or_default()
                ),
                Step::Stop {
                    workload,
                    release,
                    host,
                    ..
                } => format!("stop  {workload} release {release} on {host}"),
            };
            out += &format!("  {label:<7} {line}\n");
        }
    }
    for (w, c) in &p.counts {
        out += &format!(
            "  {w}: {} to start, {} to stop, {} replaced\n",
            c.start, c.stop, c.replace
        );
    }
    for e in &p.endpoints {
        let sign = if e.change == "added" { "+" } else { "-" };
        out += &format!(
            "  {sign} endpoint {} :{} of {}\n",
            e.endpoint, e.port, e.workload
        );
    }
    for v in &p.volumes {
        out += &format!(
            "  + volume {} slot {} of {} on {}\n",
            v.volume, v.slot, v.workload, v.host
        );
    }
    for c in &p.secrets {
        out += &format!(
            "  ~ secret {} of {}: v{} → v{}\n",
            c.secret, c.workload, c.from, c.to
        );
    }
    for w in &p.warnings {
        out += &format!("  {} {w}\n", s.red("warning:"));
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// The predicted timeline for people.
fn render_timeline(t: &Prediction, s: Style) -> String {
    let mut out = format!(
        "\n{} (simulated: boots take {}–{}, seed {})\n",
        s.bold("predicted rollout"),
        secs(t.boot_ms.0),
        secs(t.boot_ms.1),
        t.seed
    );
    for m in &t.moments {
        out += &format!("  +{:<7} {}\n", secs(m.at_ms), m.what);
    }
    match t.converged_after_ms {
        Some(ms) => out += &format!("  rolled out after {}\n", secs(ms)),
        None => out += "  does not roll out within 30 minutes\n",
    }
    if let Some(note) = &t.note {
        out += &format!("  {note}\n");
    }
    out
}
