//! `vt dev`: the whole stack on this machine, fed by the working tree.
//!
//! A controller whose source is the working tree itself (uncommitted
//! changes included, watched: `worktree:` in [`vt_fleet::controller::git_source`]),
//! hosts `dev-1..N` over the first regions of `vt.yaml` (microVMs where the
//! machine can run them, else simulated), an edge adding the endpoint
//! addresses to `lo`, and a registry with the images built from `images/`
//! (rebuilt on change). Every daemon is this same binary (`vt fleet run`,
//! `vt host run`, `vt edge run`), so dev runs the production code. State
//! lives in `.vt/dev/` ([`state`]) and is reused by the next run; `--clean`
//! deletes it. Ctrl-C stops the edge, the hosts (VMs stop, volumes stay),
//! then the controller.

mod images;
mod ports;
mod runtime;
mod stack;
mod state;
mod topology;
mod view;
mod watch;

use crate::cli::{DevArgs, Global};
use crate::client::Client;
use crate::commands::fleet::{mint_token, setup_error};
use crate::error::{CliError, ErrorCode, Exit};
use images::Builder;
use ports::{keep_or_pick, Proto};
use runtime::Runtime;
use stack::{Role, Stack};
use state::{DevDir, DevFile};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use topology::DevHost;
use view::{say, Timing};
use vt_control::views::HostView;
use vt_fleet::controller::git_fetch::GitSetup;
use vt_fleet::controller::git_source::WORKTREE_PREFIX;
use vt_fleet::controller::setup::{self, Settings, SetupError};
use vt_host::image::local_registry::LocalRegistry;
use vt_wire::Role as JoinRole;
use watch::Msg;

/// The edge's name.
const EDGE: &str = "edge";
/// How long join tokens of a run are valid.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

fn io_error(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
    move |e| CliError::new(Exit::Failure, ErrorCode::Io, format!("{what}: {e}"))
}

/// `path` relative to the repository, for messages.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Runs `vt dev` until Ctrl-C or SIGTERM.
pub fn run(g: &Global, args: &DevArgs) -> Result<(), CliError> {
    let mut timing = Timing::new();
    let since = vt_wire::clock::now();
    // Ctrl-C is handled from the start: what has started then stops in order.
    let (tx, rx) = mpsc::channel();
    watch::signals(tx.clone()).map_err(io_error("cannot handle signals"))?;
    let root = crate::commands::find_root(g)?;
    let root = root
        .canonicalize()
        .map_err(io_error(format!("cannot open {}", root.display())))?;
    let _span = tracing::info_span!("dev", repo = %root.display()).entered();
    let dev = DevDir::new(&root);
    let regions = check_tree(&root)?;
    let mut hosts = topology::hosts(args.hosts, args.regions, &regions, &args.cpu, &args.memory)
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, e))?;
    let previous = take_over(&dev)?;
    if args.clean && dev.clean().map_err(io_error("cannot delete .vt/dev"))? {
        say("--clean: deleted .vt/dev, the previous runs' state (volumes included)");
    }
    let previous = previous.filter(|_| !args.clean);
    let (runtime, note) = runtime::choose(args.runtime, args.accel)?;
    if let Some(note) = note {
        say(&note);
    }
    dev.prepare()
        .map_err(io_error(format!("cannot create {}", dev.path().display())))?;
    let settings = fleet_settings(&dev, &root)?;
    for host in &mut hosts {
        let before = previous
            .as_ref()
            .and_then(|p| p.hosts.iter().find(|h| h.name == host.name))
            .and_then(|h| h.tunnel);
        host.tunnel = Some(port(
            before,
            Proto::Udp,
            &format!("{}'s tunnel", host.name),
        )?);
    }

    timing.prepared();
    interrupted(&rx)?;
    let (registry, builder) = images(&root, &dev, runtime, args.registry)?;
    timing.built();
    interrupted(&rx)?;

    let mut stack = Stack::new()?;
    let controller = format!("http://{}", settings.http);
    let client = Client::new(Some(&controller), Some(&settings.api_token), None)?;
    start(&mut stack, &rx, &dev, &settings, &hosts, runtime, &client)?;
    let file = DevFile {
        controller: controller.clone(),
        token: settings.api_token.clone(),
        runtime: runtime.name().to_string(),
        hosts: hosts.clone(),
        pid: std::process::id(),
        children: registry
            .as_ref()
            .map(|r| state::ChildProcess {
                name: "registry".into(),
                pid: r.pid(),
                log: r.log(),
            })
            .into_iter()
            .chain(stack.processes())
            .collect(),
    };
    dev.write(&file)
        .map_err(io_error("cannot write .vt/dev/dev.json"))?;
    tell_layout(&root, &dev, &settings, &hosts, runtime, registry.as_ref());
    wait_for_hosts(&client, &mut stack, &rx, &hosts)?;
    timing.started();

    watch::streams(&client, since, &tx);
    watch::poll(client.clone(), tx.clone());
    let _watcher = match builder {
        Some(b) => {
            let tx = tx.clone();
            Some(
                b.watch(move |built| tx.send(Msg::Image(built)).is_ok())
                    .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Io, e))?,
            )
        }
        None => None,
    };
    let outcome = follow(&rx, &mut stack, &settings, runtime, &mut timing, since);
    stack.stop(&|m| say(m));
    drop(registry);
    if outcome.is_ok() {
        say("stopped; the state (volumes included) stays in .vt/dev: `vt dev` continues from it, `vt dev --clean` starts over");
    }
    outcome
}

/// Loads the working tree: its regions, and a word on what does not validate.
fn check_tree(root: &Path) -> Result<Vec<String>, CliError> {
    let loaded = vt_repo::load(&vt_repo::Snapshot::from_dir(root)?);
    if !loaded.is_valid() {
        say(&format!(
            "the working tree has {} error(s) (see `vt validate`): the controller rejects it until they are fixed",
            loaded.diagnostics.len()
        ));
    }
    let regions: Vec<String> = loaded
        .state
        .config
        .regions
        .iter()
        .map(|r| r.name.clone())
        .collect();
    if regions.is_empty() {
        return Err(CliError::new(
            Exit::Invalid,
            ErrorCode::NoConfig,
            format!("{} declares no regions", root.join("vt.yaml").display()),
        )
        .hint("`vt init DIR` or `vt init --template hello DIR` makes a repository to start from"));
    }
    Ok(regions)
}

/// Refuses to run beside a live `vt dev` of the same repository, stops
/// what a killed one left running, and returns its `dev.json`.
fn take_over(dev: &DevDir) -> Result<Option<DevFile>, CliError> {
    let Some(previous) = dev.read() else {
        return Ok(None);
    };
    if previous.pid != std::process::id() && state::runs(previous.pid, "dev") {
        return Err(CliError::new(
            Exit::Conflict,
            ErrorCode::DevRunning,
            format!(
                "vt dev is already running in this repository (pid {})",
                previous.pid
            ),
        )
        .hint("use that one, or stop it (Ctrl-C in its terminal) first"));
    }
    for child in state::leftovers(&previous, dev) {
        say(&format!(
            "stopping {} (pid {}), left running by a vt dev that did not stop",
            child.name, child.pid
        ));
        state::terminate(child.pid, Duration::from_secs(60));
    }
    Ok(Some(previous))
}

/// `previous` if still free, else a free port (saying so).
fn port(previous: Option<SocketAddr>, proto: Proto, what: &str) -> Result<SocketAddr, CliError> {
    let picked =
        keep_or_pick(previous, proto).map_err(io_error(format!("no free port for {what}")))?;
    if let Some(old) = picked.moved_from {
        say(&format!(
            "{old} ({what}) is taken by another process: using {} instead",
            picked.addr
        ));
    }
    Ok(picked.addr)
}

/// The endpoint prefix of this repository's dev fleet: a /64 of
/// `fd76:7400:de::/48` from a hash of its path, so two repositories' stacks
/// on one machine do not share addresses.
fn dev_prefix(root: &Path) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(root.display().to_string().as_bytes());
    format!(
        "fd76:7400:de:{:x}::/64",
        u16::from_be_bytes([hash[0], hash[1]])
    )
}

/// A join token's binding to the node `name`.
fn bound_to(name: &str) -> vt_wire::Binding {
    vt_wire::Binding {
        name: Some(name.to_string()),
        controller: None,
    }
}

/// The controller's settings: created the first time (like `vt fleet
/// init`, with the working tree as the source), else reused with new ports
/// for the taken ones. The repository's files are left alone: the fleet's
/// age recipient is not written to vt.yaml (secrets of the repository do not
/// open in dev).
fn fleet_settings(dev: &DevDir, root: &Path) -> Result<Settings, CliError> {
    let dir = dev.fleet();
    let repo = format!("{WORKTREE_PREFIX}{}", root.display());
    let (mut settings, fresh) = match setup::load_settings(&dir) {
        Ok(settings) => (settings, false),
        Err(SetupError::NoFleet(_)) => {
            let any = |proto| ports::any_free(proto).map_err(io_error("no free port"));
            let addresses = (any(Proto::Udp)?, any(Proto::Tcp)?);
            let mut settings = setup::init(&dir, &repo, "main", addresses, &GitSetup::default())
                .map_err(setup_error)?
                .settings;
            settings.endpoint_prefix = dev_prefix(root);
            settings.poll_interval_ms = 2_000;
            (settings, true)
        }
        Err(e) => return Err(setup_error(e)),
    };
    let before = settings.clone();
    settings.repo = repo;
    // The dev stack is this machine's alone: its API is plain HTTP on loopback.
    settings.api_tls.plain_http = true;
    settings.quic = port(Some(settings.quic), Proto::Udp, "the controller's QUIC")?;
    settings.http = port(Some(settings.http), Proto::Tcp, "the controller's API")?;
    if fresh || settings != before {
        setup::save_settings(&dir, &settings).map_err(setup_error)?;
    }
    Ok(settings)
}

/// Starts the registry and builds every image of `images/` (microVM
/// runtime only: simulated hosts pull nothing).
fn images(
    root: &Path,
    dev: &DevDir,
    runtime: Runtime,
    addr: SocketAddr,
) -> Result<(Option<LocalRegistry>, Option<Builder>), CliError> {
    let names = Builder::names(root);
    if names.is_empty() {
        return Ok((None, None));
    }
    if runtime == Runtime::Sim {
        say(&format!(
            "images/ ({}) not built: simulated hosts pull nothing",
            names.join(", ")
        ));
        return Ok((None, None));
    }
    if !ports::is_free(addr, Proto::Tcp) {
        return Err(CliError::new(
            Exit::Failure,
            ErrorCode::PortTaken,
            format!(
                "{addr} is taken by another process, and vt dev's registry (for images/: {}) must listen there: the manifests' image: lines name it",
                names.join(", ")
            ),
        )
        .hint(format!(
            "stop what listens there (`ss -ltnp 'sport = :{}'`), or pass --registry 127.0.0.1:PORT and change the image: lines to that port",
            addr.port()
        )));
    }
    let started = Instant::now();
    let registry = LocalRegistry::start(&dev.registry(), addr).map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Registry,
            format!("cannot start docker-registry on {addr}: {e}"),
        )
    })?;
    let mut builder = Builder::new(root, dev, addr);
    let snapshot = vt_repo::Snapshot::from_dir(root)?;
    for name in names {
        let built = builder
            .build(&name)
            .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Image, e))?;
        say(&format!(
            "image {} built from images/{name} and pushed as {}@{}",
            built.name, built.reference, built.digest
        ));
        let named = snapshot
            .files
            .values()
            .any(|f| String::from_utf8_lossy(f).contains(&built.reference));
        if !named {
            say(&format!(
                "  no manifest names {}: point an app's image: at it to run this build",
                built.reference
            ));
        }
    }
    say(&format!(
        "registry {addr} up and images built in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok((Some(registry), Some(builder)))
}

/// Starts the controller, waits for its API, then the hosts and the edge.
fn start(
    stack: &mut Stack,
    stop: &mpsc::Receiver<Msg>,
    dev: &DevDir,
    settings: &Settings,
    hosts: &[DevHost],
    runtime: Runtime,
    client: &Client,
) -> Result<(), CliError> {
    let path = |p: &Path| p.display().to_string();
    let fleet = dev.fleet();
    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    stack.spawn(
        "controller",
        Role::Controller,
        &args(&["fleet", "run", "--state-dir", &path(&fleet)]),
        &dev.log("controller"),
    )?;
    wait(
        stack,
        stop,
        Duration::from_secs(30),
        "the controller's API",
        || {
            client
                .get::<Vec<HostView>>("/v1/hosts", &[])
                .ok()
                .map(|_| ())
        },
    )?;
    let quic = settings.quic.to_string();
    for h in hosts {
        // Join tokens are single-use: one per host, bound to its name.
        let host_token = mint_token(&fleet, JoinRole::Host, TOKEN_TTL, &bound_to(&h.name))?;
        let state = dev.host(&h.name);
        std::fs::create_dir_all(&state)
            .map_err(io_error(format!("cannot create {}", state.display())))?;
        let tunnel = h.tunnel.map(|t| t.to_string()).unwrap_or_default();
        let mut list = args(&[
            "host",
            "run",
            "--controller",
            &quic,
            "--token",
            &host_token,
            "--name",
            &h.name,
            "--region",
            &h.region,
            "--cpu",
            &h.cpu,
            "--memory",
            &h.memory,
            "--state-dir",
            &path(&state),
            "--tunnel",
            &tunnel,
            "--runtime",
            runtime.name(),
        ]);
        if let Runtime::Microvm(accel) = runtime {
            list.extend(args(&["--accel", &accel.to_string()]));
        }
        stack.spawn(&h.name, Role::Host, &list, &dev.log(&h.name))?;
    }
    let edge_token = mint_token(&fleet, JoinRole::Edge, TOKEN_TTL, &bound_to(EDGE))?;
    let mut list = args(&[
        "edge",
        "run",
        "--controller",
        &quic,
        "--token",
        &edge_token,
        "--name",
        EDGE,
        "--state-dir",
        &path(&dev.edge()),
    ]);
    if rustix::process::geteuid().is_root() {
        list.extend(args(&["--assign-to", "lo"]));
    } else {
        say("not root: the edge cannot add endpoint addresses to lo, so endpoints do not answer here");
    }
    stack.spawn(EDGE, Role::Edge, &list, &dev.log(EDGE))
}

/// Calls `ready` every 100 ms until it answers, for at most `limit`; fails
/// early, with its log, if a process of the stack exits meanwhile.
fn wait(
    stack: &mut Stack,
    stop: &mpsc::Receiver<Msg>,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> Option<()>,
) -> Result<(), CliError> {
    let deadline = Instant::now() + limit;
    loop {
        interrupted(stop)?;
        if let Some(exited) = stack.exited() {
            return Err(died(&exited));
        }
        if ready().is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Failure,
                ErrorCode::Dev,
                format!("{what} did not come up within {limit:?}"),
            )
            .hint("see the logs in .vt/dev/logs/"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails when Ctrl-C or SIGTERM came while the stack was starting (what
/// started so far stops as the stack is dropped).
fn interrupted(stop: &mpsc::Receiver<Msg>) -> Result<(), CliError> {
    match stop.try_recv() {
        Ok(Msg::Stop(signal)) => Err(CliError::new(
            Exit::Failure,
            ErrorCode::Interrupted,
            format!("{signal} while starting: stopped what had started"),
        )),
        _ => Ok(()),
    }
}

/// Waits until every host of the stack is registered and ready.
fn wait_for_hosts(
    client: &Client,
    stack: &mut Stack,
    stop: &mpsc::Receiver<Msg>,
    hosts: &[DevHost],
) -> Result<(), CliError> {
    wait(stack, stop, Duration::from_secs(60), "the hosts", || {
        let seen = client.get::<Vec<HostView>>("/v1/hosts", &[]).ok()?;
        hosts
            .iter()
            .all(|h| {
                seen.iter().any(|s| {
                    s.name == h.name && format!("{:?}", s.status).eq_ignore_ascii_case("ready")
                })
            })
            .then_some(())
    })
}

/// The error for a process that ended on its own.
fn died(exited: &stack::Exited) -> CliError {
    CliError::new(
        Exit::Failure,
        ErrorCode::Dev,
        format!(
            "{} exited unexpectedly ({}); its log, {}, ends with:\n{}",
            exited.name,
            exited.status,
            exited.log.display(),
            stack::tail(&exited.log, 15)
        ),
    )
    .hint("the rest of the stack was stopped; fix the cause and run `vt dev` again")
}

/// Prints what runs where: the processes with their addresses and logs.
fn tell_layout(
    root: &Path,
    dev: &DevDir,
    settings: &Settings,
    hosts: &[DevHost],
    runtime: Runtime,
    registry: Option<&LocalRegistry>,
) {
    let log = |name: &str| shown(root, &dev.log(name));
    say(&format!(
        "repository {} (working tree, uncommitted changes included); state in {}",
        root.display(),
        shown(root, dev.path())
    ));
    say(&format!(
        "controller  http://{} (QUIC {}), log {}",
        settings.http,
        settings.quic,
        log("controller")
    ));
    let kind = match runtime {
        Runtime::Microvm(accel) => format!("microVMs ({accel})"),
        Runtime::Sim => "simulated instances".into(),
    };
    for h in hosts {
        say(&format!(
            "host {}  region {}, {kind}, cpu {}, memory {}, tunnel {}, log {}",
            h.name,
            h.region,
            h.cpu,
            h.memory,
            h.tunnel.map_or("-".into(), |t| t.to_string()),
            log(&h.name)
        ));
    }
    say(&format!(
        "edge  endpoint addresses from {} on lo, log {}",
        settings.endpoint_prefix,
        log(EDGE)
    ));
    if let Some(r) = registry {
        say(&format!(
            "registry  {}, log {}",
            r.addr(),
            shown(root, &r.log())
        ));
    }
    say(&format!(
        "the CLI: export VT_CONTROLLER=http://{} VT_TOKEN={}",
        settings.http, settings.api_token
    ));
}

/// Prints events, logs and what runs where until a signal (`Ok`) or a
/// process of the stack exits on its own (`Err`).
fn follow(
    rx: &mpsc::Receiver<Msg>,
    stack: &mut Stack,
    settings: &Settings,
    runtime: Runtime,
    timing: &mut Timing,
    since: u64,
) -> Result<(), CliError> {
    let mut shown_view: Vec<String> = Vec::new();
    loop {
        if let Some(exited) = stack.exited() {
            return Err(died(&exited));
        }
        let msg = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(msg) => msg,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        match msg {
            Msg::Stop(signal) => {
                say(&format!("{signal}: stopping"));
                return Ok(());
            }
            Msg::Event(e) => view::event(&e),
            Msg::Log(line) => {
                timing.booted();
                view::log(&line);
            }
            Msg::View(v) => {
                let lines = view::render(&v);
                if lines != shown_view {
                    for line in &lines {
                        say(line);
                    }
                    shown_view = lines;
                }
                let healthy = view::healthy_since(&v, since);
                let serves = runtime != Runtime::Sim && !v.endpoints.is_empty();
                if healthy && !serves && !timing.is_ready() {
                    let what = match runtime {
                        Runtime::Sim => "every instance healthy; simulated, so nothing serves",
                        Runtime::Microvm(_) => "every instance healthy",
                    };
                    if let Some(split) = timing.ready(what) {
                        say(&split);
                    }
                }
            }
            Msg::Serving(url) => {
                say(&format!("{url} answers"));
                if let Some(split) = timing.ready(&format!("to {url} answering")) {
                    say(&split);
                }
            }
            Msg::Image(Ok(built)) if built.changed => {
                say(&format!(
                    "image {} rebuilt in {:.1} s: {}@{}, a new release",
                    built.name,
                    built.took.as_secs_f64(),
                    built.reference,
                    built.digest
                ));
                if let Err(e) = kick(settings) {
                    say(&format!("cannot tell the controller about the new image ({e}): it sees it within {} ms", settings.poll_interval_ms));
                }
            }
            Msg::Image(Ok(built)) => say(&format!("image {} unchanged", built.name)),
            Msg::Image(Err(e)) => say(&format!("image build failed: {e}")),
        }
    }
}

/// Asks the controller to read the working tree now (its signed webhook),
/// after the image pins changed.
fn kick(settings: &Settings) -> Result<(), String> {
    use hmac::Mac;
    let body = br#"{"ref":"worktree"}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(settings.webhook_secret.as_bytes())
        .map_err(|e| e.to_string())?;
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    ureq::post(&format!("http://{}/v1/hooks/git", settings.http))
        .set("content-type", "application/json")
        .set("x-hub-signature-256", &format!("sha256={signature}"))
        .timeout(Duration::from_secs(5))
        .send_bytes(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repository_gets_its_own_endpoint_prefix() {
        let a = dev_prefix(Path::new("/work/a"));
        let net = a.strip_suffix("/64").expect("a /64");
        let ip: std::net::Ipv6Addr = net.parse().expect("an IPv6 network");
        assert_eq!(ip.segments()[..3], [0xfd76, 0x7400, 0xde]);
        assert_eq!(a, dev_prefix(Path::new("/work/a")));
        assert_ne!(a, dev_prefix(Path::new("/work/b")));
    }
}
