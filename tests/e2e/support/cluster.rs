//! The usual world of a test: a local desired-state repository, a
//! controller tracking it, a few sim hosts, and `acme/shop/web/prod`
//! committed once every host is in (so placement sees all of them) and
//! rolled out.

use super::fleet::{Controller, FleetDir};
use super::process::Proc;
use super::repo::{Repo, WEB_PROD};
use super::status::{self, settled, summary, workload};
use super::{poll, wait_until, Sandbox};
use serde_json::Value;
use std::time::Duration;

/// How the cluster is made.
pub struct Setup<'a> {
    /// Host names.
    pub hosts: &'a [&'a str],
    /// Instances of web/prod.
    pub instances: u32,
    /// YAML appended to the app file (a `rollout:` block), or "".
    pub rollout: &'a str,
    /// `--sim-boot` of the hosts.
    pub sim_boot: &'a str,
    /// `fleet.json` settings to change before the controller starts.
    pub settings: Vec<(&'a str, Value)>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            hosts: &["h1", "h2"],
            instances: 3,
            rollout: "",
            sim_boot: "300ms",
            settings: Vec::new(),
        }
    }
}

/// A running fleet with web/prod at release 1.
pub struct Cluster {
    /// The hosts, in the order of [`Setup::hosts`].
    pub hosts: Vec<Proc>,
    /// The controller.
    pub ctl: Controller,
    /// Its state directory.
    pub fleet: FleetDir,
    /// The desired-state repository it tracks.
    pub repo: Repo,
    /// The commit of release 1.
    pub first: String,
}

impl Cluster {
    /// Builds it and waits until release 1 is rolled out.
    pub fn start(sb: &Sandbox, setup: Setup<'_>) -> Cluster {
        let repo = Repo::init(sb, "repo");
        let fleet = FleetDir::init(sb, "fleet", &repo.path().display().to_string());
        for (key, value) in setup.settings {
            fleet.set(key, value);
        }
        let ctl = fleet.start();
        let hosts: Vec<Proc> = setup
            .hosts
            .iter()
            .map(|name| ctl.start_host(sb, &fleet, name, setup.sim_boot))
            .collect();
        let api = ctl.api();
        wait_until("every host registers", Duration::from_secs(15), || {
            let hosts = api.get("/v1/hosts");
            let ready = hosts
                .as_array()?
                .iter()
                .filter(|h| h["status"] == "ready")
                .count();
            (ready == setup.hosts.len()).then_some(())
        });
        repo.add_web(setup.instances, setup.rollout);
        let first = repo.commit("web");
        let cluster = Cluster {
            hosts,
            ctl,
            fleet,
            repo,
            first,
        };
        cluster.wait_settled(1, Duration::from_secs(15));
        cluster
    }

    /// web/prod in `/v1/status`, if the controller has it.
    pub fn web(&self) -> Option<Value> {
        let status = self.ctl.api().get("/v1/status");
        workload(&status, WEB_PROD).cloned()
    }

    /// Waits until web/prod has settled at `release`; returns its status.
    pub fn wait_settled(&self, release: u64, timeout: Duration) -> Value {
        let mut last = None;
        let found = poll(timeout, || {
            let w = self.web()?;
            let done = settled(&w, release);
            last = Some(w.clone());
            done.then_some(w)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{WEB_PROD} did not settle at release {release} within {timeout:?}; last seen: {}",
                last.as_ref().map_or("nothing".into(), summary)
            )
        })
    }

    /// Names of the hosts holding live instances of web/prod.
    pub fn hosts_of(w: &Value) -> std::collections::BTreeSet<String> {
        status::live(w)
            .iter()
            .map(|i| status::text(i, "host").to_string())
            .collect()
    }
}
