//! Desired-state repositories written from a few lines of Rust: apps with
//! envs, instances, regions, rollout policy, health checks, volumes and
//! endpoints, rendered to the YAML files of the repo layout. IDs are derived
//! from names, so the same app keeps its ID from one commit to the next.

use std::collections::BTreeMap;
use vt_plan::WorkloadKey;

/// The org every app lives in.
pub const ORG: &str = "acme";
/// The project every app lives in.
pub const PROJECT: &str = "shop";

/// A repository: regions and apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    regions: Vec<String>,
    apps: BTreeMap<String, App>,
}

/// An app: `app.yaml` (the spec shared by its envs) and its envs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    image: String,
    cpu: String,
    memory: String,
    instances: u32,
    regions: Option<Vec<String>>,
    rollout: Vec<(&'static str, String)>,
    health: bool,
    volumes: Vec<(String, String)>,
    endpoint: Option<u16>,
    envs: BTreeMap<String, Env>,
}

/// An env's overrides of its app's spec (`envs/<env>.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    instances: Option<u32>,
    image: Option<String>,
    regions: Option<Vec<String>>,
}

impl Repo {
    /// A repository declaring `regions` (the first is the default) and no apps.
    pub fn new(regions: &[&str]) -> Repo {
        Repo {
            regions: regions.iter().map(|r| (*r).to_string()).collect(),
            apps: BTreeMap::new(),
        }
    }

    /// The app called `name`, created with one env `prod`, image
    /// `registry.local/<name>:1`, 1 instance, 250m cpu and 256Mi memory.
    pub fn app(&mut self, name: &str) -> &mut App {
        self.apps.entry(name.to_string()).or_insert_with(|| App {
            image: format!("registry.local/{name}:1"),
            cpu: "250m".into(),
            memory: "256Mi".into(),
            instances: 1,
            regions: None,
            rollout: Vec::new(),
            health: false,
            volumes: Vec::new(),
            endpoint: None,
            envs: BTreeMap::from([("prod".to_string(), Env::default())]),
        })
    }

    /// The workload key of an app's env.
    pub fn key(&self, app: &str, env: &str) -> WorkloadKey {
        WorkloadKey {
            app_id: stable_id("app", &format!("{ORG}/{PROJECT}/{app}")),
            env_id: stable_id("env", &qualified(app, env)),
        }
    }

    /// Path of an app's `app.yaml`.
    pub fn app_path(app: &str) -> String {
        format!("orgs/{ORG}/{PROJECT}/{app}/app.yaml")
    }

    /// The files of the repository, path and content.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut vt = String::from("version: 1\nregions:\n");
        for r in &self.regions {
            vt += &format!("  - name: {r}\n");
        }
        let mut files = vec![
            ("vt.yaml".to_string(), vt),
            (
                format!("orgs/{ORG}/org.yaml"),
                format!("id: {}\n", stable_id("org", ORG)),
            ),
            (
                format!("orgs/{ORG}/{PROJECT}/project.yaml"),
                format!("id: {}\n", stable_id("prj", &format!("{ORG}/{PROJECT}"))),
            ),
        ];
        for (name, app) in &self.apps {
            let id = stable_id("app", &format!("{ORG}/{PROJECT}/{name}"));
            files.push((Repo::app_path(name), app.yaml(&id)));
            for (env_name, env) in &app.envs {
                let path = format!("orgs/{ORG}/{PROJECT}/{name}/envs/{env_name}.yaml");
                files.push((
                    path,
                    env.yaml(&stable_id("env", &qualified(name, env_name))),
                ));
            }
        }
        files
    }
}

impl App {
    /// Sets the image.
    pub fn image(&mut self, image: &str) -> &mut Self {
        self.image = image.into();
        self
    }

    /// Sets the cpu (`500m`) and memory (`256Mi`) of each instance.
    pub fn resources(&mut self, cpu: &str, memory: &str) -> &mut Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self
    }

    /// Sets the instances per region.
    pub fn instances(&mut self, n: u32) -> &mut Self {
        self.instances = n;
        self
    }

    /// Sets the regions to run in.
    pub fn regions(&mut self, regions: &[&str]) -> &mut Self {
        self.regions = Some(regions.iter().map(|r| (*r).to_string()).collect());
        self
    }

    /// A rolling update with this surge and unavailability.
    pub fn rolling(&mut self, max_surge: u32, max_unavailable: u32) -> &mut Self {
        self.set_rollout("strategy", "rolling".into());
        self.set_rollout("max_surge", max_surge.to_string());
        self.set_rollout("max_unavailable", max_unavailable.to_string())
    }

    /// An immediate rollout: every old instance stops as the new ones start.
    pub fn immediate(&mut self) -> &mut Self {
        self.set_rollout("strategy", "immediate".into())
    }

    /// Sets the progress deadline (`30s`).
    pub fn progress_deadline(&mut self, deadline: &str) -> &mut Self {
        self.set_rollout("progress_deadline", deadline.into())
    }

    fn set_rollout(&mut self, field: &'static str, value: String) -> &mut Self {
        self.rollout.retain(|(f, _)| *f != field);
        self.rollout.push((field, value));
        self
    }

    /// Adds a TCP health check on the app's port.
    pub fn health(&mut self) -> &mut Self {
        self.health = true;
        self
    }

    /// Adds a volume of `size` (`1Gi`), mounted at `/<name>`.
    pub fn volume(&mut self, name: &str, size: &str) -> &mut Self {
        self.volumes.push((name.into(), size.into()));
        self
    }

    /// Adds a public endpoint `web` on `port`, forwarding to the app's port.
    pub fn endpoint(&mut self, port: u16) -> &mut Self {
        self.endpoint = Some(port);
        self
    }

    /// The env called `name`, created without overrides.
    pub fn env(&mut self, name: &str) -> &mut Env {
        self.envs.entry(name.to_string()).or_default()
    }

    fn yaml(&self, id: &str) -> String {
        let mut y = format!(
            "id: {id}\nimage: {}\nresources:\n  cpu: {}\n  memory: {}\ninstances: {}\n",
            self.image, self.cpu, self.memory, self.instances
        );
        if let Some(regions) = &self.regions {
            y += &format!("regions: [{}]\n", regions.join(", "));
        }
        y += "ports:\n  - name: http\n    port: 8080\n";
        if self.health {
            y += "health:\n  type: tcp\n  port: http\n";
        }
        if let Some(port) = self.endpoint {
            y += &format!("endpoints:\n  - name: web\n    port: {port}\n");
        }
        if !self.volumes.is_empty() {
            y += "volumes:\n";
            for (name, size) in &self.volumes {
                y += &format!("  - name: {name}\n    size: {size}\n    mount: /{name}\n");
            }
        }
        if !self.rollout.is_empty() {
            y += "rollout:\n";
            for (field, value) in &self.rollout {
                y += &format!("  {field}: {value}\n");
            }
        }
        y
    }
}

impl Env {
    /// Overrides the instances per region.
    pub fn instances(&mut self, n: u32) -> &mut Self {
        self.instances = Some(n);
        self
    }

    /// Overrides the image.
    pub fn image(&mut self, image: &str) -> &mut Self {
        self.image = Some(image.into());
        self
    }

    /// Overrides the regions.
    pub fn regions(&mut self, regions: &[&str]) -> &mut Self {
        self.regions = Some(regions.iter().map(|r| (*r).to_string()).collect());
        self
    }

    fn yaml(&self, id: &str) -> String {
        let mut y = format!("id: {id}\n");
        if let Some(n) = self.instances {
            y += &format!("instances: {n}\n");
        }
        if let Some(image) = &self.image {
            y += &format!("image: {image}\n");
        }
        if let Some(regions) = &self.regions {
            y += &format!("regions: [{}]\n", regions.join(", "));
        }
        y
    }
}

/// The qualified name of an env, as the controller names workloads.
pub fn qualified(app: &str, env: &str) -> String {
    format!("{ORG}/{PROJECT}/{app}/{env}")
}

/// A valid ID (`<prefix>_` and a 26-character ULID) derived from `name`:
/// FNV-1a of the name in Crockford base32, zero-padded.
fn stable_id(prefix: &str, name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{prefix}:{name}").bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let digits: String = (0..13)
        .rev()
        .map(|i| char::from(ALPHABET[usize::try_from((hash >> (i * 5)) & 31).unwrap_or(0)]))
        .collect();
    format!("{prefix}_01{}{digits}", "0".repeat(11))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repo_loads_without_diagnostics() {
        let mut repo = Repo::new(&["local", "eu"]);
        repo.app("web")
            .instances(2)
            .rolling(1, 0)
            .progress_deadline("30s")
            .health()
            .endpoint(80)
            .env("staging")
            .instances(1)
            .regions(&["eu"]);
        repo.app("db").volume("data", "1Gi").immediate();
        let snapshot = vt_repo::Snapshot {
            files: repo
                .files()
                .into_iter()
                .map(|(p, c)| (p, c.into_bytes()))
                .collect(),
            ..vt_repo::Snapshot::default()
        };
        let loaded = vt_repo::load(&snapshot);
        assert_eq!(loaded.diagnostics, []);
        assert_eq!(loaded.state.envs.len(), 3);
        assert_ne!(repo.key("web", "prod"), repo.key("web", "staging"));
        assert_eq!(repo.key("web", "prod"), repo.clone().key("web", "prod"));
    }
}
