//! `vt status`, `vt describe`, `vt releases`, `vt events` and `vt hosts`: the
//! controller's view, from its HTTP API.

use crate::cli::{Global, NodeAction, Output};
use crate::client::{format_time, Client};
use crate::error::{CliError, ErrorCode};
use crate::output::{self, Style, Table};
use vt_control::views::{
    DescribeView, HostView, InstanceView, ReleaseView, SourceView, StatusView, WorkloadStatus,
};
use vt_fleet::controller::git_source::WORKTREE_PREFIX;
use vt_plan::backoff::Summary;
use vt_plan::events::Event;
use vt_plan::RolloutStatus;
use vt_wire::messages::LogLine;

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn lower<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}").to_lowercase()
}

fn rollout_text(w: &WorkloadStatus) -> String {
    match &w.rollout {
        None => "-".into(),
        Some(r) => match &r.status {
            RolloutStatus::Progressing => format!("rolling ({}/{} healthy)", r.healthy, w.wanted),
            RolloutStatus::Completed => "complete".into(),
            RolloutStatus::Halted { .. } => "halted".into(),
        },
    }
}

/// Each failing place of a workload, as of the local clock: "region r1:
/// release 2 failed 6 times in a row …; next try in 32s: …".
fn backoff_lines(w: &WorkloadStatus) -> Vec<String> {
    let now = vt_wire::clock::now();
    w.backoffs
        .iter()
        .map(|b| Summary { backoff: b, now }.to_string())
        .collect()
}

fn instances_table(instances: &[InstanceView], s: Style, placement: bool) -> String {
    let mut header = vec![
        "INSTANCE", "RELEASE", "HOST", "REGION", "ADDRESS", "PHASE", "SINCE",
    ];
    if placement {
        header.extend(["IMAGE", "PLACEMENT"]);
    }
    let mut table = Table::new(&header);
    for i in instances {
        let mut row = vec![
            i.id.clone(),
            i.release.to_string(),
            i.host.clone(),
            i.region.clone(),
            i.address.clone().unwrap_or_else(|| "-".into()),
            lower(i.phase),
            format_time(i.since),
        ];
        if let Some(detail) = &i.detail {
            row[5] = format!("{} ({detail})", row[5]);
        }
        if placement {
            let image = i
                .image
                .as_deref()
                .map_or("-".to_string(), |d| d.chars().take(19).collect());
            row.extend([image, i.placement.clone()]);
        }
        table.row(row);
    }
    table.render(s)
}

/// The tracked branch: where, which, at what commit, and a warning while it
/// is missing.
fn source_text(source: &SourceView, s: Style) -> String {
    // A working tree (`vt dev`) has no branch.
    let mut about = Vec::new();
    if !source.location.starts_with(WORKTREE_PREFIX) {
        about.push(format!("branch {}", source.branch));
    }
    if let Some(head) = &source.head {
        about.push(format!("at {}", short(head)));
    }
    let mut out = format!("{} {}", s.bold("source"), source.location);
    if !about.is_empty() {
        out.push_str(&format!(" ({})", about.join(" ")));
    }
    out.push('\n');
    if let Some(failing) = &source.failing {
        out.push_str(&format!(
            "{} cannot read the repository since {} (the last good commit keeps running): error[{}] {}\n",
            s.red("warning:"),
            format_time(failing.since),
            failing.code,
            failing.message
        ));
    }
    if let Some(since) = source.missing_since {
        out.push_str(&format!(
            "{} branch {} is missing since {}: nothing deploys until it returns (the last good \
             commit keeps running)\n",
            s.red("warning:"),
            source.branch,
            format_time(since)
        ));
    }
    out
}

/// `vt status [APP] [--env ENV]`.
pub fn status(
    global: &Global,
    client: &Client,
    app: Option<String>,
    env: Option<String>,
) -> Result<(), CliError> {
    let view: StatusView = client.get("/v1/status", &[("app", app), ("env", env)])?;
    output::print(global.output, &view, |s| {
        let mut out = view
            .source
            .as_ref()
            .map(|source| source_text(source, s))
            .unwrap_or_default();
        out += &match &view.commit {
            Some(c) => format!(
                "{} {} {} ({})\n",
                s.bold("commit"),
                short(&c.sha),
                c.message,
                c.author
            ),
            None => format!("{} none accepted yet\n", s.bold("commit")),
        };
        if let Some(seen) = view
            .last_seen
            .as_deref()
            .filter(|seen| view.commit.as_ref().is_none_or(|c| c.sha != *seen))
        {
            out.push_str(&format!(
                "{} newest commit {} was rejected (see `vt events --kind commit.rejected`)\n",
                s.red("warning:"),
                short(seen)
            ));
        }
        out.push('\n');
        let mut table = Table::new(&["APP/ENV", "DESIRED", "CURRENT", "READY", "ROLLOUT", "NOTES"]);
        for w in &view.workloads {
            let notes = if !w.active {
                "removed from the repository".to_string()
            } else {
                w.pending
                    .iter()
                    .map(|p| p.reason.clone())
                    .chain(backoff_lines(w))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            table.row(vec![
                w.name.clone(),
                w.desired_release.to_string(),
                w.current_release.map_or("-".into(), |r| r.to_string()),
                format!("{}/{}", w.ready, w.wanted),
                rollout_text(w),
                notes,
            ]);
        }
        out.push_str(&table.render(s));
        for w in view.workloads.iter().filter(|w| !w.instances.is_empty()) {
            out.push_str(&format!("\n{}\n", s.bold(&w.name)));
            out.push_str(&instances_table(&w.instances, s, false));
        }
        out
    });
    Ok(())
}

/// `vt describe APP [--env ENV]`.
pub fn describe(
    global: &Global,
    client: &Client,
    app: String,
    env: Option<String>,
) -> Result<(), CliError> {
    let views: Vec<DescribeView> =
        client.get("/v1/describe", &[("app", Some(app)), ("env", env)])?;
    output::print(global.output, &views, |s| {
        let mut out = String::new();
        for v in &views {
            let w = &v.status;
            out.push_str(&format!("{}\n", s.bold(&w.name)));
            out.push_str(&format!(
                "  ids          {} / {}\n",
                w.key.app_id, w.key.env_id
            ));
            out.push_str(&format!(
                "  release      desired {}, current {}\n",
                w.desired_release,
                w.current_release.map_or("-".into(), |r| r.to_string())
            ));
            out.push_str(&format!(
                "  instances    {}/{} ready, rollout {}\n",
                w.ready,
                w.wanted,
                rollout_text(w)
            ));
            if let Some(RolloutStatus::Halted { reason }) = w.rollout.as_ref().map(|r| &r.status) {
                out.push_str(&format!("  {} {reason}\n", s.red("halted:")));
            }
            out.push_str(&format!("  image        {}\n", v.desired.image));
            out.push_str(&format!(
                "  resources    {} cpu, {} memory, {} per region in {}\n",
                v.desired.cpu,
                v.desired.memory,
                v.desired.instances,
                v.desired.regions.join(", ")
            ));
            if v.diff.is_empty() {
                out.push_str("  desired = current\n");
            } else {
                out.push_str(&format!("  {}\n", s.bold("desired vs current:")));
                for d in &v.diff {
                    let show = |x: &Option<serde_json::Value>| {
                        x.as_ref().map_or("(none)".to_string(), |v| v.to_string())
                    };
                    out.push_str(&format!(
                        "    {}: {} → {}\n",
                        d.path,
                        show(&d.old),
                        show(&d.new)
                    ));
                }
            }
            for e in &v.endpoints {
                let routed = e.instances.iter().filter(|i| i.routed).count();
                out.push_str(&format!(
                    "  endpoint     {} {} → {}: {routed}/{} instances routed, {} open, {} edge(s)\n",
                    e.endpoint,
                    crate::commands::endpoints::addresses(e),
                    e.target_port,
                    e.instances.len(),
                    e.open,
                    e.edges.len()
                ));
            }
            for p in &w.pending {
                out.push_str(&format!(
                    "  {} {}: {}\n",
                    s.red("pending"),
                    p.region,
                    p.reason
                ));
            }
            for line in backoff_lines(w) {
                out.push_str(&format!("  {} {line}\n", s.red("backoff")));
            }
            if !w.instances.is_empty() {
                for line in instances_table(&w.instances, s, true).lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        out
    });
    Ok(())
}

/// `vt releases APP [--env ENV]`.
pub fn releases(
    global: &Global,
    client: &Client,
    app: String,
    env: Option<String>,
) -> Result<(), CliError> {
    let releases: Vec<ReleaseView> =
        client.get("/v1/releases", &[("app", Some(app)), ("env", env)])?;
    output::print(global.output, &releases, |s| {
        let mut table = Table::new(&[
            "APP/ENV", "RELEASE", "COMMIT", "AUTHOR", "CREATED", "CHANGED", "STATUS",
        ]);
        for view in &releases {
            let r = &view.release;
            let changed = if r.number == 1 {
                "(first release)".to_string()
            } else {
                r.diff
                    .iter()
                    .map(|d| d.path.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            table.row(vec![
                r.name.clone(),
                r.number.to_string(),
                format!("{} {}", short(&r.commit.sha), r.commit.message),
                r.commit.author.clone(),
                format_time(r.created),
                changed,
                view.status.clone(),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

/// Options of `vt events`.
pub struct EventsArgs {
    /// Keep streaming.
    pub follow: bool,
    /// Only events newer than this duration.
    pub since: Option<String>,
    /// App filter.
    pub app: Option<String>,
    /// Env filter.
    pub env: Option<String>,
    /// Kind filter.
    pub kind: Option<String>,
    /// Most events.
    pub limit: usize,
}

/// One event as a line for people.
pub fn event_line(e: &Event, s: Style) -> String {
    let about = [e.app.as_deref(), e.env.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let repeated = match (e.count, e.first_time) {
        (n, Some(first)) if n > 1 => format!(
            " {}",
            s.dim(&format!("(×{n} since {})", format_time(first)))
        ),
        _ => String::new(),
    };
    format!(
        "{}  {:<20} {}{}{repeated}\n",
        s.dim(&format_time(e.time)),
        e.kind,
        if about.is_empty() {
            String::new()
        } else {
            format!("[{about}] ")
        },
        e.message
    )
}

/// `vt events [-f] [--since D] [--app A] [--env E] [--kind K]`.
pub fn events(global: &Global, client: &Client, args: EventsArgs) -> Result<(), CliError> {
    let since = match &args.since {
        Some(d) => {
            let d = vt_repo::Duration::parse(d).map_err(|e| {
                CliError::new(
                    crate::error::Exit::Usage,
                    ErrorCode::Usage,
                    format!("--since: {e}"),
                )
            })?;
            Some(vt_wire::clock::now().saturating_sub(d.0).to_string())
        }
        None => None,
    };
    let query = [
        ("app", args.app.clone()),
        ("env", args.env.clone()),
        ("kind", args.kind.clone()),
        ("since", since),
        ("limit", Some(args.limit.to_string())),
        ("follow", args.follow.then(|| "true".to_string())),
    ];
    if args.follow {
        let s = Style::stdout();
        return client.follow("/v1/events", &query, |e: Event| {
            let line = match global.output {
                Output::Text => event_line(&e, s),
                Output::Json => format!("{}\n", serde_json::to_string(&e).unwrap_or_default()),
                Output::Yaml => format!("---\n{}", serde_yaml::to_string(&e).unwrap_or_default()),
            };
            print!("{line}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        });
    }
    let events: Vec<Event> = client.get("/v1/events", &query)?;
    output::print(global.output, &events, |s| {
        events.iter().map(|e| event_line(e, s)).collect()
    });
    Ok(())
}

/// `vt hosts`.
pub fn hosts(global: &Global, client: &Client) -> Result<(), CliError> {
    let hosts: Vec<HostView> = client.get("/v1/hosts", &[])?;
    output::print(global.output, &hosts, |s| {
        let mut table = Table::new(&[
            "HOST",
            "REGION",
            "STATUS",
            "CPU",
            "MEMORY",
            "INSTANCES",
            "LAST SEEN",
        ]);
        for h in &hosts {
            table.row(vec![
                h.name.clone(),
                h.region.clone(),
                lower(h.status),
                format!("{}/{}", vt_repo::Cpu(h.cpu_used), vt_repo::Cpu(h.cpu)),
                format!(
                    "{}/{}",
                    vt_repo::ByteSize(h.memory_used),
                    vt_repo::ByteSize(h.memory)
                ),
                h.instances.to_string(),
                format_time(h.last_seen),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

/// `vt hosts|edges revoke|remove NAME` (`kind`: `hosts` or `edges`).
pub fn change_node(
    global: &Global,
    client: &Client,
    kind: &str,
    action: &NodeAction,
) -> Result<(), CliError> {
    let answer: serde_json::Value = match action {
        NodeAction::Revoke { name } => {
            client.post(&format!("/v1/{kind}/{name}/revoke"), &serde_json::json!({}))?
        }
        NodeAction::Remove { name } => client.delete(&format!("/v1/{kind}/{name}"))?,
    };
    output::print(global.output, &answer, |s| {
        let ended = if answer["session_ended"] == true {
            " (its session was ended)"
        } else {
            ""
        };
        format!(
            "{} {} {}{ended}\n",
            answer["role"].as_str().unwrap_or_default(),
            answer["name"].as_str().unwrap_or_default(),
            s.green(answer["done"].as_str().unwrap_or_default()),
        )
    });
    Ok(())
}

/// Options of `vt logs`.
pub struct LogsArgs {
    /// App.
    pub app: String,
    /// Env.
    pub env: Option<String>,
    /// Keep streaming.
    pub follow: bool,
    /// Only lines of the last DURATION.
    pub since: Option<String>,
    /// Only lines older than DURATION ago.
    pub until: Option<String>,
    /// Only lines containing this.
    pub grep: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Most lines.
    pub limit: usize,
}

fn ago(flag: &str, value: &Option<String>) -> Result<Option<String>, CliError> {
    value
        .as_ref()
        .map(|d| {
            vt_repo::Duration::parse(d)
                .map(|d| vt_wire::clock::now().saturating_sub(d.0).to_string())
                .map_err(|e| {
                    CliError::new(
                        crate::error::Exit::Usage,
                        ErrorCode::Usage,
                        format!("--{flag}: {e}"),
                    )
                })
        })
        .transpose()
}

/// One log line for people: time, instance, text (stderr in red).
pub(crate) fn log_line(l: &LogLine, s: Style) -> String {
    let text = if l.stream == vt_wire::messages::Stream::Stderr {
        s.red(&l.line)
    } else {
        l.line.clone()
    };
    format!(
        "{} {} {text}\n",
        s.dim(&format_time(l.time)),
        s.bold(&l.instance)
    )
}

/// `vt logs APP [--env] [-f] [--since] [--until] [--grep] [--instance]`.
pub fn logs(global: &Global, client: &Client, args: LogsArgs) -> Result<(), CliError> {
    let query = [
        ("app", Some(args.app.clone())),
        ("env", args.env.clone()),
        ("instance", args.instance.clone()),
        ("since", ago("since", &args.since)?),
        ("until", ago("until", &args.until)?),
        ("grep", args.grep.clone()),
        ("limit", Some(args.limit.to_string())),
        ("follow", args.follow.then(|| "true".to_string())),
    ];
    let print_one = |l: &LogLine, s: Style| match global.output {
        Output::Text => log_line(l, s),
        Output::Json => format!("{}\n", serde_json::to_string(l).unwrap_or_default()),
        Output::Yaml => format!("---\n{}", serde_yaml::to_string(l).unwrap_or_default()),
    };
    let s = Style::stdout();
    if args.follow {
        return client.follow("/v1/logs", &query, |l: LogLine| {
            print!("{}", print_one(&l, s));
            let _ = std::io::Write::flush(&mut std::io::stdout());
        });
    }
    let lines: Vec<LogLine> = client.get("/v1/logs", &query)?;
    // One JSON object per line, like the follow mode, so both pipe the same way.
    let out: String = lines.iter().map(|l| print_one(l, s)).collect();
    print!("{out}");
    Ok(())
}

/// Options of `vt exec`.
pub struct ExecArgs {
    /// App.
    pub app: String,
    /// Env.
    pub env: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Stream stdin (`-i`).
    pub interactive: bool,
    /// On a terminal (`-t`).
    pub tty: bool,
    /// Command and arguments.
    pub argv: Vec<String>,
}

/// `vt exec APP [--env] [--instance] [-i] [-t] -- CMD...`: runs a command in
/// an instance, prints its output and exits with its exit code. With `-i`
/// or `-t` the session is interactive (see [`super::attach`]).
pub fn exec(client: &Client, args: ExecArgs) -> Result<u8, CliError> {
    use std::io::{IsTerminal, Read, Write};
    if args.interactive || args.tty {
        return super::attach::run(client, args);
    }
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let body = serde_json::json!({"app": args.app, "env": args.env, "instance": args.instance, "argv": args.argv, "stdin": stdin});
    let result: vt_fleet::controller::api::ExecResult = client.post("/v1/exec", &body)?;
    let _ = std::io::stdout().write_all(&result.stdout);
    let _ = std::io::stderr().write_all(&result.stderr);
    Ok(exit_code(result.code, result.signal))
}

/// vt's exit code for a command's end: its code, or 128 + the signal that killed it.
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        _ => 1,
    }
}
