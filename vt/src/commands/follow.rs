//! Following a pushed commit through the controller (`vt deploy`, `vt
//! rollback --merge`): accepted or rejected, then each changed workload's
//! rollout until it completes, halts or `--timeout` passes, printing the
//! events as they come; then the receipt.

use crate::cli::{Global, Output, Wait};
use crate::client::Client;
use crate::commands::observe::event_line;
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Style};
use serde::Serialize;
use std::time::{Duration, Instant};
use vt_control::views::{DescribeView, ReleaseView, StatusView, WorkloadStatus};
use vt_plan::events::Event;
use vt_plan::{Phase, ReleaseNo, RolloutStatus};

/// How often the controller is asked.
const POLL: Duration = Duration::from_millis(250);

/// How a followed change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Pushed; not followed (`--no-wait`).
    Pushed,
    /// Every changed workload rolled out.
    RolledOut,
    /// The controller rejected the commit; the previous state keeps running.
    Rejected,
    /// A rollout halted at its progress deadline.
    Failed,
    /// `--timeout` passed first.
    TimedOut,
}

/// One instance in a receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptInstance {
    /// Instance ID.
    pub id: String,
    /// Release it runs.
    pub release: ReleaseNo,
    /// Host name.
    pub host: String,
    /// Phase.
    pub phase: Phase,
    /// Image digest it runs, as its host reports it.
    pub image: Option<String>,
}

/// One workload in a receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptWorkload {
    /// Qualified env name.
    pub name: String,
    /// The release the change made.
    pub release: ReleaseNo,
    /// The image of the release's spec.
    pub image: String,
    /// Instances now, stopped ones left out.
    pub instances: Vec<ReceiptInstance>,
    /// Endpoints, as `name [address]:port`.
    pub endpoints: Vec<String>,
    /// How to undo it.
    pub rollback: Option<String>,
}

/// Time spent in each stage, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    /// Validate, diff, commit and push.
    pub push_ms: u64,
    /// Push to the controller applying the commit.
    pub accept_ms: Option<u64>,
    /// Applying the commit to every rollout done.
    pub rollout_ms: Option<u64>,
    /// All of it.
    pub total_ms: u64,
}

/// What `vt deploy` and `vt rollback --merge` end with.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// How it ended.
    pub outcome: Outcome,
    /// The commit pushed.
    pub commit: String,
    /// The branch it was pushed to.
    pub branch: String,
    /// The workloads it changed.
    pub workloads: Vec<ReceiptWorkload>,
    /// Time per stage.
    pub durations: Durations,
    /// What failed, and what still serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The controller's latest event sequence number: take it before pushing,
/// so that following misses none of the events the push causes.
pub fn cursor(client: &Client) -> Result<u64, CliError> {
    let last: Vec<Event> = client.get("/v1/events", &[("limit", Some("1".into()))])?;
    Ok(last.last().map_or(0, |e| e.seq))
}

/// When the controller has applied what was pushed.
#[derive(Debug, Clone)]
pub enum Applied {
    /// It applied the pushed commit (or rejected it).
    Commit,
    /// The one workload followed has a release newer than `after` with this
    /// spec hash: a pull request was merged, by whatever kind of merge.
    Release {
        /// The release that was the latest when the change was pushed.
        after: ReleaseNo,
        /// The spec hash the new release must have.
        spec_hash: String,
    },
}

/// A commit just pushed, to follow.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The commit.
    pub commit: String,
    /// What makes it applied.
    pub applied: Applied,
    /// The branch it went to.
    pub branch: String,
    /// The workloads (qualified env names) it changes.
    pub workloads: Vec<String>,
    /// When the command started.
    pub started: Instant,
    /// The [`cursor`] taken before the push.
    pub after: u64,
}

/// Follows a pushed commit until every workload it changes has rolled out
/// (or not), and returns the receipt.
pub fn follow(
    g: &Global,
    client: &Client,
    wait: &Wait,
    pushed: &Pushed,
) -> Result<Receipt, CliError> {
    let (commit, names, started) = (pushed.commit.as_str(), &pushed.workloads, pushed.started);
    let push_ms = millis(started.elapsed());
    let mut receipt = Receipt {
        outcome: Outcome::Pushed,
        commit: commit.into(),
        branch: pushed.branch.clone(),
        workloads: Vec::new(),
        durations: Durations {
            push_ms,
            ..Durations::default()
        },
        failure: None,
    };
    if wait.no_wait {
        receipt.durations.total_ms = push_ms;
        return Ok(receipt);
    }
    let timeout = vt_repo::Duration::parse(&wait.timeout)
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, format!("--timeout: {e}")))?
        .as_std();
    let deadline = Instant::now() + timeout;
    let mut events = Events {
        after: pushed.after,
        print: g.output == Output::Text,
        rejection: None,
    };
    let pushed_at = Instant::now();
    let mut accepted: Option<Instant> = None;
    let _span = tracing::info_span!("follow", commit, workloads = names.len()).entered();
    loop {
        events.print_new(client, names)?;
        let status: StatusView = client.get("/v1/status", &[])?;
        if let (None, Applied::Release { after, spec_hash }) = (accepted, &pushed.applied) {
            if let Some(merged) = released(client, names, *after, spec_hash)? {
                receipt.commit = merged;
                accepted = Some(Instant::now());
                receipt.durations.accept_ms = Some(millis(pushed_at.elapsed()));
            }
        }
        let by_commit = matches!(pushed.applied, Applied::Commit);
        if by_commit && accepted.is_none() && status.last_seen.as_deref() == Some(commit) {
            if status.commit.as_ref().map(|c| c.sha.as_str()) != Some(commit) {
                receipt.outcome = Outcome::Rejected;
                receipt.failure = Some(format!(
                    "the controller rejected commit {}: {}; the previous state keeps running",
                    short(commit),
                    events
                        .rejection
                        .clone()
                        .unwrap_or_else(|| "see `vt events --kind commit.`".into())
                ));
                break;
            }
            accepted = Some(Instant::now());
            receipt.durations.accept_ms = Some(millis(pushed_at.elapsed()));
        }
        if accepted.is_some() {
            let mine: Vec<&WorkloadStatus> = status
                .workloads
                .iter()
                .filter(|w| names.contains(&w.name))
                .collect();
            if let Some(halted) = mine.iter().find_map(|w| halted(w)) {
                receipt.outcome = Outcome::Failed;
                receipt.failure = Some(halted);
                break;
            }
            if mine.iter().all(|w| rolled_out(w)) {
                receipt.outcome = Outcome::RolledOut;
                break;
            }
        }
        if Instant::now() >= deadline {
            receipt.outcome = Outcome::TimedOut;
            receipt.failure = Some(format!(
                "not rolled out after {}: {}",
                wait.timeout,
                match (accepted, &pushed.applied) {
                    (Some(_), _) => "the rollout is still going (`vt status` shows where it is)",
                    (None, Applied::Commit) => "the controller has not applied the commit yet (is it watching this remote and branch?)",
                    (None, Applied::Release { .. }) => "the pull request is not merged yet (the branch stays pushed)",
                }
            ));
            break;
        }
        std::thread::sleep(POLL);
    }
    events.print_new(client, names)?;
    if let Some(at) = accepted {
        if receipt.outcome == Outcome::RolledOut {
            receipt.durations.rollout_ms = Some(millis(at.elapsed()));
        }
    }
    receipt.durations.total_ms = millis(started.elapsed());
    for name in names {
        if let Some(w) = workload(client, name)? {
            receipt.workloads.push(w);
        }
    }
    Ok(receipt)
}

/// The events printed while following: those of the followed workloads and
/// of commits.
struct Events {
    after: u64,
    print: bool,
    rejection: Option<String>,
}

impl Events {
    fn print_new(&mut self, client: &Client, names: &[String]) -> Result<(), CliError> {
        let new: Vec<Event> = client.get(
            "/v1/events",
            &[
                ("after", Some(self.after.to_string())),
                ("limit", Some("1000".into())),
            ],
        )?;
        let s = Style::stderr();
        for e in &new {
            self.after = self.after.max(e.seq);
            if e.kind == "commit.rejected" {
                self.rejection = Some(e.message.clone());
            }
            let qualified = match (&e.app, &e.env) {
                (Some(app), Some(env)) => Some(format!("{app}/{env}")),
                _ => None,
            };
            let relevant =
                e.kind.starts_with("commit.") || qualified.is_some_and(|q| names.contains(&q));
            if self.print && relevant {
                eprint!("{}", event_line(e, s));
            }
        }
        Ok(())
    }
}

/// The commit of the release of the (one) followed workload newer than
/// `after` with `spec_hash`, once there is one.
fn released(
    client: &Client,
    names: &[String],
    after: ReleaseNo,
    spec_hash: &str,
) -> Result<Option<String>, CliError> {
    let Some((app, env)) = names.first().and_then(|n| n.rsplit_once('/')) else {
        return Ok(None);
    };
    let releases: Vec<ReleaseView> = client.get(
        "/v1/releases",
        &[("app", Some(app.into())), ("env", Some(env.into()))],
    )?;
    Ok(releases
        .into_iter()
        .map(|v| v.release)
        .find(|r| r.number > after && r.spec_hash == spec_hash)
        .map(|r| r.commit.sha))
}

fn halted(w: &WorkloadStatus) -> Option<String> {
    let r = w.rollout.as_ref()?;
    let RolloutStatus::Halted { reason } = &r.status else {
        return None;
    };
    (r.release == w.desired_release).then(|| {
        let serving: Vec<String> = w
            .instances
            .iter()
            .filter(|i| i.phase == Phase::Healthy)
            .map(|i| format!("{} (release {}, {})", i.id, i.release, i.host))
            .collect();
        format!(
            "the rollout of {} release {} halted: {reason}; still serving: {}",
            w.name,
            w.desired_release,
            if serving.is_empty() {
                "nothing".to_string()
            } else {
                serving.join(", ")
            }
        )
    })
}

fn rolled_out(w: &WorkloadStatus) -> bool {
    w.rollout
        .as_ref()
        .is_some_and(|r| r.release == w.desired_release && r.status == RolloutStatus::Completed)
        && w.ready >= w.wanted
}

/// The receipt's view of one workload, from `vt describe`'s API.
fn workload(client: &Client, name: &str) -> Result<Option<ReceiptWorkload>, CliError> {
    let Some((app, env)) = name.rsplit_once('/') else {
        return Ok(None);
    };
    let views: Vec<DescribeView> = match client.get(
        "/v1/describe",
        &[("app", Some(app.into())), ("env", Some(env.into()))],
    ) {
        Ok(v) => v,
        Err(e) if e.exit == Exit::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(view) = views.into_iter().find(|v| v.status.name == name) else {
        return Ok(None);
    };
    let release = view.status.desired_release;
    let short_app = app.rsplit('/').next().unwrap_or(app);
    Ok(Some(ReceiptWorkload {
        name: name.into(),
        release,
        image: view.desired.image.clone(),
        instances: view
            .status
            .instances
            .iter()
            .map(|i| ReceiptInstance {
                id: i.id.clone(),
                release: i.release,
                host: i.host.clone(),
                phase: i.phase,
                image: i.image.clone(),
            })
            .collect(),
        endpoints: view
            .endpoints
            .iter()
            .map(|e| {
                let addr = e.ipv6.map_or("-".to_string(), |a| format!("[{a}]"));
                format!("{} {addr}:{}", e.endpoint, e.port)
            })
            .collect(),
        rollback: (release > ReleaseNo::FIRST).then(|| {
            format!(
                "vt rollback {short_app} --env {env} --to {}",
                release.get() - 1
            )
        }),
    }))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn secs(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// Prints the receipt, and fails with the outcome's exit code when it is not a success.
pub fn finish(g: &Global, receipt: &Receipt) -> Result<(), CliError> {
    output::print(g.output, receipt, |s| render(receipt, s));
    result(receipt)
}

/// Ok for a rollout that succeeded (or was not followed), else the error
/// with the outcome's exit code: 6 timed out, 7 rejected or failed.
pub fn result(receipt: &Receipt) -> Result<(), CliError> {
    let (exit, code) = match receipt.outcome {
        Outcome::Pushed | Outcome::RolledOut => return Ok(()),
        Outcome::TimedOut => (Exit::TimedOut, ErrorCode::Timeout),
        Outcome::Rejected | Outcome::Failed => (Exit::RolloutFailed, ErrorCode::RolloutFailed),
    };
    Err(CliError::new(
        exit,
        code,
        receipt.failure.clone().unwrap_or_default(),
    ))
}

/// The receipt for people.
pub fn render(r: &Receipt, s: Style) -> String {
    let outcome = match r.outcome {
        Outcome::Pushed => s.green("pushed (not followed)"),
        Outcome::RolledOut => s.green("rolled out"),
        Outcome::Rejected => s.red("rejected"),
        Outcome::Failed => s.red("failed"),
        Outcome::TimedOut => s.red("timed out"),
    };
    let mut out = format!(
        "\n{} {outcome}\n  commit   {} on {}\n",
        s.bold("receipt"),
        short(&r.commit),
        r.branch
    );
    for w in &r.workloads {
        out += &format!("  {} release {}\n", s.bold(&w.name), w.release);
        out += &format!("    image    {}\n", w.image);
        let digests: std::collections::BTreeSet<&str> = w
            .instances
            .iter()
            .filter(|i| i.release == w.release)
            .filter_map(|i| i.image.as_deref())
            .collect();
        if !digests.is_empty() {
            out += &format!(
                "    digest   {}\n",
                digests.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        for i in &w.instances {
            out += &format!(
                "    instance {} release {} on {} ({})\n",
                i.id,
                i.release,
                i.host,
                format!("{:?}", i.phase).to_lowercase()
            );
        }
        for e in &w.endpoints {
            out += &format!("    endpoint {e}\n");
        }
        if let Some(cmd) = &w.rollback {
            out += &format!("    undo     {cmd}\n");
        }
    }
    let d = &r.durations;
    out += &format!(
        "  took     {} (push {}, accepted after {}, rollout {})\n",
        secs(d.total_ms),
        secs(d.push_ms),
        d.accept_ms.map_or("-".into(), secs),
        d.rollout_ms.map_or("-".into(), secs)
    );
    if let Some(f) = &r.failure {
        out += &format!("  {} {f}\n", s.red("failure:"));
    }
    out
}
