//! Fleets as an operator runs them: `vt fleet init`, `fleet.json` edited by
//! hand, `vt fleet run`, join tokens and `vt host run`, each a real process.
//! Every listener is on 127.0.0.1 port 0; the controller prints the
//! addresses it got and the harness reads them from its stdout.
//!
//! Hosts use the `sim` runtime (instances "boot" after `--sim-boot` and pass
//! their health check): the microVM runtime is a later issue, and these tests
//! will run it too once it exists.

use super::api::Api;
use super::process::Proc;
use super::{wait_until, Env, Out, Sandbox};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A controller's state directory made by `vt fleet init`.
#[derive(Debug, Clone)]
pub struct FleetDir {
    env: Env,
    dir: PathBuf,
}

impl FleetDir {
    /// `vt fleet init SOURCE --state-dir <sandbox>/NAME` with both listeners on 127.0.0.1:0.
    pub fn init(sb: &Sandbox, name: &str, source: &str) -> FleetDir {
        FleetDir::init_with(sb, name, source, &[]).0
    }

    /// [`FleetDir::init`] with more arguments (`--git-*`), and what it printed.
    pub fn init_with(sb: &Sandbox, name: &str, source: &str, more: &[&str]) -> (FleetDir, Value) {
        let dir = sb.path().join(name);
        let dir_arg = dir.display().to_string();
        let mut args = vec![
            "fleet",
            "init",
            source,
            "--state-dir",
            &dir_arg,
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "-o",
            "json",
        ];
        args.extend(more);
        let out = sb.env().vt(sb.path(), &args).ok();
        let fleet = FleetDir {
            env: sb.env().clone(),
            dir,
        };
        assert_eq!(
            out.json()["token"],
            fleet.settings()["api_token"],
            "`vt fleet init` prints the API token of fleet.json"
        );
        (fleet, out.json())
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `fleet.json`.
    pub fn settings(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.join("fleet.json")).expect("read fleet.json");
        serde_json::from_str(&text).expect("fleet.json is JSON")
    }

    /// Sets one documented setting of `fleet.json` (the operator's text editor).
    pub fn set(&self, key: &str, value: Value) {
        let mut settings = self.settings();
        assert!(
            settings.get(key).is_some(),
            "fleet.json has no setting `{key}`"
        );
        settings[key] = value;
        let text = serde_json::to_string_pretty(&settings).expect("serialize");
        std::fs::write(self.dir.join("fleet.json"), text).expect("write fleet.json");
    }

    /// The API's bearer token.
    pub fn api_token(&self) -> String {
        self.settings()["api_token"]
            .as_str()
            .expect("api_token")
            .to_string()
    }

    /// Runs `vt ARGS --state-dir DIR` (fleet commands that read the state directory).
    pub fn vt(&self, args: &[&str]) -> Out {
        let dir = self.dir.display().to_string();
        let mut all = args.to_vec();
        all.extend(["--state-dir", &dir]);
        self.env.vt(&self.dir, &all)
    }

    /// `vt fleet token create --role ROLE --ttl TTL`.
    pub fn join_token(&self, role: &str, ttl: &str) -> String {
        let out = self
            .vt(&[
                "fleet", "token", "create", "--role", role, "--ttl", ttl, "-o", "json",
            ])
            .ok();
        out.json()["token"]
            .as_str()
            .expect("a token in the answer")
            .to_string()
    }

    /// Starts `vt fleet run` and waits for it to listen.
    pub fn start(&self) -> Controller {
        self.start_at(None, None)
    }

    /// Starts `vt fleet run` on given addresses (a restart keeps the hosts' address).
    pub fn start_at(&self, quic: Option<SocketAddr>, http: Option<SocketAddr>) -> Controller {
        let proc = self.spawn_run(quic, http);
        Controller::listening(proc, &self.env, self.api_token(), self.dir.join("ca.pem"))
    }

    /// Starts `vt fleet run` without waiting for anything.
    pub fn spawn_run(&self, quic: Option<SocketAddr>, http: Option<SocketAddr>) -> Proc {
        let dir = self.dir.display().to_string();
        let mut args = vec!["fleet".to_string(), "run".into(), "--state-dir".into(), dir];
        if let Some(quic) = quic {
            args.extend(["--quic".into(), quic.to_string()]);
        }
        if let Some(http) = http {
            args.extend(["--http".into(), http.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.spawn_vt("controller", &self.dir, &args)
    }
}

/// A running `vt fleet run`.
pub struct Controller {
    /// The process.
    pub proc: Proc,
    /// Where hosts connect.
    pub quic: SocketAddr,
    /// The API's address.
    pub http: SocketAddr,
    /// `https`, or `http` when fleet.json asks for plain HTTP.
    scheme: String,
    /// The fleet CA, which signs the API's certificate.
    ca: PathBuf,
    token: String,
    env: Env,
}

impl Controller {
    fn listening(mut proc: Proc, env: &Env, token: String, ca: PathBuf) -> Controller {
        // "vt controller: quic ADDR, http https://ADDR, repo ..."
        let (quic, (scheme, http)) = wait_until(
            "the controller prints its addresses",
            Duration::from_secs(15),
            || {
                if let Some(status) = proc.exited() {
                    panic!("vt fleet run exited ({status})\n{}", proc.output());
                }
                let stdout = proc.stdout();
                let line = stdout.lines().find(|l| l.starts_with("vt controller: "))?;
                let quic = line.split("quic ").nth(1)?.split(',').next()?;
                let url = line.split(" http ").nth(1)?.split(',').next()?;
                let (scheme, http) = url.split_once("://")?;
                Some((
                    quic.parse().expect("a QUIC address"),
                    (scheme.to_string(), http.parse().expect("an HTTP address")),
                ))
            },
        );
        Controller {
            proc,
            quic,
            http,
            scheme,
            ca,
            token,
            env: env.clone(),
        }
    }

    /// The environment its CLI commands run in.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }

    /// The fleet CA's certificate (what `vt login --ca` and `VT_CA` name).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// An API client with the fleet's token, trusting the fleet CA.
    pub fn api(&self) -> Api {
        Api::new(&self.url(), Some(&self.token), Some(&self.ca))
    }

    /// Runs `vt ARGS -o json` against it (VT_CONTROLLER and VT_TOKEN set).
    pub fn cli(&self, args: &[&str]) -> Out {
        self.cli_with_token(args, Some(&self.token))
    }

    /// Runs `vt ARGS` as given (text output; for `vt exec`, whose arguments
    /// end with the command).
    pub fn cli_plain(&self, args: &[&str]) -> Out {
        let mut cmd = self.env.vt_command(Path::new("/"), args);
        cmd.env("VT_CONTROLLER", self.url()).env("VT_CA", &self.ca);
        cmd.env("VT_TOKEN", &self.token);
        self.env.run("vt-cli", cmd)
    }

    /// Runs `vt ARGS` (text output) in `cwd`, a repository, against it.
    pub fn cli_in(&self, cwd: &Path, args: &[&str]) -> Out {
        self.env.run("vt-cli", self.cli_command(cwd, args))
    }

    /// `vt ARGS` in `cwd` against it, not started yet.
    pub fn cli_command(&self, cwd: &Path, args: &[&str]) -> std::process::Command {
        let mut cmd = self.env.vt_command(cwd, args);
        cmd.env("VT_CONTROLLER", self.url()).env("VT_CA", &self.ca);
        cmd.env("VT_TOKEN", &self.token);
        cmd
    }

    /// Runs `vt ARGS -o json` against it with another token, or none.
    pub fn cli_with_token(&self, args: &[&str], token: Option<&str>) -> Out {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let mut cmd = self.env.vt_command(Path::new("/"), &all);
        cmd.env("VT_CONTROLLER", self.url()).env("VT_CA", &self.ca);
        if let Some(token) = token {
            cmd.env("VT_TOKEN", token);
        }
        self.env.run("vt-cli", cmd)
    }

    /// `vt ARGS -o json`, which must succeed, as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        self.cli(args).ok().json()
    }

    /// Starts `vt host run --runtime sim` named NAME with 2 cpu and 4Gi,
    /// enrolling it with a fresh join token, its state in `<sandbox>/NAME`.
    pub fn start_host(&self, sb: &Sandbox, fleet: &FleetDir, name: &str, sim_boot: &str) -> Proc {
        let token = fleet.join_token("host", "10m");
        let dir = sb.path().join(name);
        host(sb.env(), self.quic, Some(&token), name, &dir, sim_boot)
    }
}

/// Starts `vt host run --runtime sim` against the controller at `quic`.
pub fn host(
    env: &Env,
    quic: SocketAddr,
    token: Option<&str>,
    name: &str,
    state_dir: &Path,
    sim_boot: &str,
) -> Proc {
    let quic = quic.to_string();
    let dir = state_dir.display().to_string();
    let mut args = vec![
        "host",
        "run",
        "--controller",
        &quic,
        "--name",
        name,
        "--state-dir",
        &dir,
        "--cpu",
        "2",
        "--memory",
        "4Gi",
        "--runtime",
        "sim",
        "--sim-boot",
        sim_boot,
    ];
    if let Some(token) = token {
        args.extend(["--token", token]);
    }
    env.spawn_vt(name, Path::new("/"), &args)
}
