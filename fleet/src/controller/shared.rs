//! What the controller daemon's tasks share: the core behind a mutex, the
//! channels that wake sessions and followers, the daemon's settings, and the
//! fleet's identities with the two things done with them (the commit gate's
//! secret check, and delivery just before assignments are sent). Its own
//! module, so that the tasks (git, ticker, sessions, API) depend on it and
//! not on each other.

use crate::controller::delivery;
use crate::controller::setup::Settings;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{broadcast, watch, Notify};
use tracing::{debug, warn};
use vt_control::core::Controller;
use vt_control::views::SourceView;
use vt_plan::events::Event;
use vt_repo::secrets;
use vt_repo::Loaded;
use vt_wire::messages::{Assignment, DeliveredSecret, Desire};

/// What the tasks share.
pub struct Shared {
    controller: Mutex<Controller>,
    /// Bumped after every change that may alter assignments or routes.
    pub changed: watch::Sender<u64>,
    /// Every recorded event, for `vt events -f`.
    pub events: broadcast::Sender<Event>,
    /// Messages waiting to be sent to a host's session (volume deletions).
    pub host_commands:
        Mutex<std::collections::BTreeMap<String, Vec<vt_wire::messages::ControllerMessage>>>,
    /// Connections of the hosts in session, by name (for exec, and to end
    /// a revoked host's session).
    pub host_conns: Mutex<std::collections::BTreeMap<String, quinn::Connection>>,
    /// Connections of the edges in session, by name (to end a revoked
    /// edge's session).
    pub edge_conns: Mutex<std::collections::BTreeMap<String, quinn::Connection>>,
    /// Every log line hosts ship, for `vt logs -f`.
    pub logs: broadcast::Sender<vt_wire::messages::LogLine>,
    /// Asks the git task to look at the repository now.
    pub git_kick: Notify,
    /// Asks the ticker to reconcile now.
    pub tick_kick: Notify,
    /// Settings in force.
    pub settings: Settings,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The fleet's age identities: the commit gate checks secrets with them,
    /// and assignments carry what they decrypt.
    pub keyring: std::sync::RwLock<vt_repo::secrets::Keyring>,
    /// The tracked branch as the git task last found it, for `vt status`.
    pub source: Mutex<SourceView>,
}

impl Shared {
    /// The shared state of a daemon running `controller`.
    pub fn new(
        controller: Controller,
        settings: Settings,
        state_dir: PathBuf,
        keyring: vt_repo::secrets::Keyring,
        source: SourceView,
    ) -> Shared {
        Shared {
            controller: Mutex::new(controller),
            changed: watch::channel(0).0,
            events: broadcast::channel(4096).0,
            logs: broadcast::channel(8192).0,
            host_conns: Mutex::new(std::collections::BTreeMap::new()),
            edge_conns: Mutex::new(std::collections::BTreeMap::new()),
            host_commands: Mutex::new(std::collections::BTreeMap::new()),
            git_kick: Notify::new(),
            tick_kick: Notify::new(),
            settings,
            state_dir,
            keyring: std::sync::RwLock::new(keyring),
            source: Mutex::new(source),
        }
    }

    /// The session connections of `role` (hosts or edges).
    pub fn conns(
        &self,
        role: vt_wire::Role,
    ) -> MutexGuard<'_, std::collections::BTreeMap<String, quinn::Connection>> {
        let conns = match role {
            vt_wire::Role::Edge => &self.edge_conns,
            _ => &self.host_conns,
        };
        conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `conn` as `name`'s session connection, unless a newer one
    /// replaced it.
    pub fn forget_conn(&self, role: vt_wire::Role, name: &str, conn: &quinn::Connection) {
        let mut conns = self.conns(role);
        if conns
            .get(name)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            conns.remove(name);
        }
    }

    /// Locks the controller (a poisoned lock is taken over: the core's state
    /// is consistent between calls).
    pub fn lock(&self) -> MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tracked branch as the git task last found it.
    pub fn source_view(&self) -> SourceView {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Flushes the controller's changes, publishes the events and wakes sessions.
    pub fn commit(&self, controller: &mut Controller) {
        match controller.flush() {
            Ok(events) => {
                if !events.is_empty() {
                    for e in events {
                        let _ = self.events.send(e);
                    }
                }
                self.changed.send_modify(|v| *v += 1);
            }
            Err(e) => {
                warn!(error = %vt_wire::error_chain(&e), "cannot write the state database")
            }
        }
    }

    /// Re-reads the identity file (a `vt fleet rotate-key` may have added one),
    /// then adds a diagnostic to `loaded` for every referenced secret that does
    /// not decrypt or is not valid, so that the commit is rejected.
    pub fn check_secrets(&self, loaded: &mut Loaded) {
        match delivery::load_keyring(&self.state_dir) {
            Ok(keyring) => {
                *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = keyring;
            }
            Err(e) => {
                warn!(error = %vt_wire::error_chain(&e), "cannot read the fleet's identities; keeping the ones loaded")
            }
        }
        let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        let checked = secrets::check_values(loaded, &keyring);
        debug!(checked, "secrets checked");
    }

    /// Fills in the secret files of every `Run` assignment from the sealed values
    /// of its release. A value that does not open is left out and logged (by
    /// name): the commit check makes that rare (a key removed from the state
    /// directory by hand).
    pub fn deliver_secrets(&self, assignments: &mut [Assignment]) {
        let wanted: Vec<usize> = assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.desire == Desire::Run && !a.spec.secrets.is_empty())
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let sealed: Vec<_> = {
            let controller = self.lock();
            wanted
                .iter()
                .map(|&i| controller.sealed_secrets(&assignments[i].key, assignments[i].release))
                .collect()
        };
        let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        for (&i, sealed) in wanted.iter().zip(sealed) {
            let a = &mut assignments[i];
            a.secrets = sealed
                .into_iter()
                .filter_map(|s| match keyring.open(&s.value) {
                    Ok(value) => Some(DeliveredSecret {
                        name: s.name,
                        version: s.version,
                        path: s.path,
                        content: value.into_bytes().into(),
                    }),
                    Err(e) => {
                        warn!(app = %a.name, release = a.release.get(), instance = %a.id, secret = %s.name, version = s.version, error = %e, "cannot decrypt a secret for an assignment");
                        None
                    }
                })
                .collect();
        }
    }
}

impl vt_wire::JoinGate for Shared {
    /// A join is admitted once per token and once per name, and recorded
    /// before the node gets its certificate.
    fn admit(
        &self,
        request: &vt_wire::EnrollRequest,
        issued: &vt_wire::Issued,
    ) -> Result<(), String> {
        let millis = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        let fingerprint = vt_wire::Fingerprint::of(issued.identity.cert_der().as_ref()).to_string();
        let join = vt_control::core::Join {
            role: request.role,
            name: &request.name,
            nonce: &issued.claims.nonce,
            token_expires: issued.claims.expires.saturating_mul(1000),
            fingerprint: &fingerprint,
            cert_expires: millis(issued.expires),
        };
        let mut controller = self.lock();
        let admitted = controller.admit_join(&join, vt_wire::clock::now());
        self.commit(&mut controller);
        admitted.map_err(|refusal| refusal.to_string())
    }
}
