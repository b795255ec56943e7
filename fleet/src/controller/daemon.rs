//! `vt fleet run`: the controller's core driven by real IO. Four tasks share
//! one [`Controller`] behind a mutex: the git watcher (notify + poll, or fetch
//! on an interval, and at once on a webhook), the reconcile ticker, the QUIC
//! server for hosts and edges ([`super::sessions`]) and the HTTP API
//! ([`super::api`]).

use crate::controller::git_source::{self, GitSource, GitSourceError, Location};
use crate::controller::setup::{self, Keys, SetupError, STATE_FILE};
use crate::controller::shared::Shared;
use crate::controller::{api, sessions};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};
use vt_control::core::{Config, Controller};
use vt_control::store::{RedbStore, StoreError};
use vt_control::views::{SourceFailure, SourceView};
use vt_plan::events::{kind, Event};
use vt_wire::backoff::Backoff;
use vt_wire::clock::now;

/// Daemon failures that stop it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory is not usable.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The state database cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The repository cannot be opened.
    #[error(transparent)]
    Git(#[from] GitSourceError),
    /// A listener cannot be set up.
    #[error(transparent)]
    Wire(#[from] vt_wire::WireError),
    /// The HTTP listener failed.
    #[error("the HTTP API failed on {addr}")]
    Http {
        /// Its address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Options of `vt fleet run` that override `fleet.json`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// QUIC address.
    pub quic: Option<std::net::SocketAddr>,
    /// HTTP address.
    pub http: Option<std::net::SocketAddr>,
    /// Repository.
    pub repo: Option<String>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    state_dir: &Path,
    overrides: Overrides,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut settings = setup::load_settings(state_dir)?;
    settings.quic = overrides.quic.unwrap_or(settings.quic);
    settings.http = overrides.http.unwrap_or(settings.http);
    settings.repo = overrides.repo.unwrap_or(settings.repo);
    let Keys {
        ca,
        secret,
        identity,
    } = setup::load_keys(state_dir)?;
    let store = Box::new(RedbStore::open(&state_dir.join(STATE_FILE))?);
    let config = Config {
        lost_after: settings.lost_after_ms,
        pools: settings.pools()?,
        ..Config::default()
    };
    let controller = Controller::open(store, config)?;
    let keyring = crate::controller::delivery::load_keyring(state_dir).map_err(SetupError::from)?;
    let source = GitSource::open(Location::parse(&settings.repo), &settings.branch, state_dir)?
        .with_credential_helper(settings.git_credential_helper.clone());

    let endpoint = vt_wire::server_endpoint(
        settings.quic,
        &identity,
        ca.cert(),
        vt_wire::ClientAuth::Optional,
    )?;
    let listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .map_err(|source| DaemonError::Http {
            addr: settings.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| DaemonError::Http {
        addr: settings.http,
        source,
    })?;
    let quic_addr = endpoint.local_addr().map_err(|source| DaemonError::Http {
        addr: settings.quic,
        source,
    })?;
    let tls = crate::controller::api_tls::server_config(&settings.api_tls, &ca, http_addr)?;
    let scheme = settings.api_tls.scheme();
    info!(quic = %quic_addr, http = %http_addr, %scheme, repo = %settings.repo, branch = %settings.branch, "controller listening");
    println!(
        "vt controller: quic {quic_addr}, http {scheme}://{http_addr}, repo {} ({})",
        settings.repo, settings.branch
    );

    let shared = Arc::new(Shared::new(
        controller,
        settings.clone(),
        state_dir.to_path_buf(),
        keyring,
        source_view(&source),
    ));
    let enroller = Arc::new(vt_wire::Enroller::new(
        ca,
        secret,
        Duration::from_millis(settings.node_cert_validity_ms),
    ));

    let git = tokio::spawn(git_task(shared.clone(), source).instrument(info_span!("git")));
    let ticker = tokio::spawn(tick_task(shared.clone()).instrument(info_span!("reconcile")));
    let quic = tokio::spawn(
        sessions::serve(shared.clone(), endpoint.clone(), enroller).instrument(info_span!("quic")),
    );
    let http =
        tokio::spawn(api::serve(shared.clone(), listener, tls).instrument(info_span!("api")));

    shutdown.await;
    info!("controller stopping");
    endpoint.close(0u32.into(), b"controller stopping");
    for task in [git, ticker, quic, http] {
        task.abort();
    }
    let mut controller = shared.lock();
    shared.commit(&mut controller);
    Ok(())
}

/// Reconciles every 500 ms, and at once when kicked.
async fn tick_task(shared: Arc<Shared>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(500), shared.tick_kick.notified()).await;
        let mut controller = shared.lock();
        controller.tick(now());
        shared.commit(&mut controller);
    }
}

/// What `vt status` shows of a source.
fn source_view(source: &GitSource) -> SourceView {
    let state = source.state();
    SourceView {
        location: git_source::redacted(&source.location().to_string()),
        branch: source.branch().to_string(),
        head: state.head.clone(),
        missing_since: state.missing_since,
        failing: None,
    }
}

/// Watches the repository and applies each new head commit; records what
/// the branch did besides moving forward (rewound, missing, restored).
async fn git_task(shared: Arc<Shared>, source: GitSource) {
    let source = Arc::new(Mutex::new(source));
    let _watcher = watch_local(&shared, &source);
    let interval = {
        let guard = source.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_remote() {
            shared.settings.fetch_interval_ms
        } else {
            shared.settings.poll_interval_ms
        }
    };
    // After a failure: 1 s, doubling up to 16 s, until a read succeeds.
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(16));
    let mut last_error = String::new();
    loop {
        let src = source.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut src = src.lock().unwrap_or_else(|p| p.into_inner());
            let refreshed = src.refresh(now())?;
            let snapshot = match &refreshed.head {
                Some(head) => Some(src.snapshot(&head.sha)?),
                None => None,
            };
            Ok::<_, GitSourceError>((refreshed, snapshot, source_view(&src)))
        })
        .await;
        let wait = match result {
            Ok(Ok((refreshed, snapshot, view))) => {
                backoff.reset();
                last_error.clear();
                *shared.source.lock().unwrap_or_else(|p| p.into_inner()) = view;
                {
                    let mut controller = shared.lock();
                    let mut changed = !refreshed.changes.is_empty();
                    for change in &refreshed.changes {
                        controller.record(change.event(&shared.settings.branch, now()));
                    }
                    if let (Some(head), Some(snapshot)) = (refreshed.head, snapshot) {
                        if controller.meta().last_seen.as_deref() != Some(head.sha.as_str()) {
                            let mut loaded = vt_repo::load(&snapshot);
                            shared.check_secrets(&mut loaded);
                            let outcome = controller.apply_commit(&head, &loaded, now());
                            info!(commit = %head.sha, ?outcome, "applied commit");
                            controller.tick(now());
                            changed = true;
                        }
                    }
                    if changed {
                        shared.commit(&mut controller);
                    }
                }
                // After the events are stored: a crash in between repeats
                // them rather than losing them.
                let src = source.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    src.lock().unwrap_or_else(|p| p.into_inner()).save_state()
                })
                .await;
                if let Ok(Err(e)) = saved {
                    warn!(error = %vt_wire::error_chain(&e), "cannot keep the branch state");
                }
                Duration::from_millis(interval)
            }
            Ok(Err(e)) => {
                let message = vt_wire::error_chain(&e);
                {
                    let mut view = shared.source.lock().unwrap_or_else(|p| p.into_inner());
                    let since = view.failing.as_ref().map_or_else(now, |f| f.since);
                    view.failing = Some(SourceFailure {
                        code: e.code(),
                        message: message.clone(),
                        since,
                    });
                }
                if message != last_error {
                    warn!(error = %message, "cannot read the repository");
                    let mut controller = shared.lock();
                    controller.record(Event::new(
                        kind::SOURCE_FAILED,
                        now(),
                        format!(
                            "cannot read the repository, keeping the last good state: [{}] {message}",
                            e.code()
                        ),
                    ));
                    shared.commit(&mut controller);
                    last_error = message;
                }
                backoff.next_delay()
            }
            Err(e) => {
                warn!(error = %e, "git task failed");
                Duration::from_secs(1)
            }
        };
        let _ = tokio::time::timeout(wait, shared.git_kick.notified()).await;
    }
}

/// Kicks the git task whenever a ref of a local repository, or a file of a
/// working tree, changes (after the source's settle delay).
fn watch_local(
    shared: &Arc<Shared>,
    source: &Arc<Mutex<GitSource>>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (paths, settle) = {
        let source = source.lock().unwrap_or_else(|p| p.into_inner());
        (source.watch_paths(), source.settle_delay())
    };
    if paths.is_empty() {
        return None;
    }
    let handle = tokio::runtime::Handle::current();
    let kick = shared.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading is no change (and the git task's own reads would kick it again).
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let kick = kick.clone();
            handle.spawn(async move {
                tokio::time::sleep(settle).await;
                kick.git_kick.notify_one();
            });
        }
    })
    .map_err(|e| warn!(error = %e, "cannot watch the repository; polling only"))
    .ok()?;
    for (i, path) in paths.iter().enumerate() {
        let mode = if i == 0 {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        if path.exists() {
            if let Err(e) = watcher.watch(path, mode) {
                warn!(path = %path.display(), error = %e, "cannot watch");
            }
        }
    }
    Some(watcher)
}
