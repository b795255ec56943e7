//! A private registry as people run one: Debian's `docker-registry` behind
//! TLS with a CA made here and htpasswd (bcrypt) basic auth, on an address of
//! a network namespace of the test's own. A host that is not given the CA
//! refuses the certificate (`E_IMAGE_TLS` in the instance's failure); given
//! the CA (`--registry-ca`) and the credentials (`DOCKER_CONFIG`), it pulls
//! the image, verifies it and boots it.

use crate::support::fleet::FleetDir;
use crate::support::microvm::{busybox_layer, publish, require_microvms, start_host_with};
use crate::support::process::Proc;
use crate::support::repo::Repo;
use crate::support::servers::TestCa;
use crate::support::{wait_until, Sandbox};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vt_host::image::testing::Registry;

/// How long a microVM may take to boot under TCG, pull included.
const BOOT: Duration = Duration::from_secs(240);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace holding the registry's address, wired to the root namespace
/// by a veth pair; deleted with the test.
struct RegistryNet {
    ns: String,
    address: Ipv4Addr,
}

impl RegistryNet {
    fn new() -> RegistryNet {
        let n = std::process::id() % 200 + 20;
        let ns = format!("vreg{n}");
        let (outside, inside) = (format!("rg{n}o"), format!("rg{n}i"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &outside]).output();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns]);
        let (host, registry) = (format!("10.{n}.9.1/24"), format!("10.{n}.9.2/24"));
        ip(&["addr", "add", &host, "dev", &outside]);
        ip(&["link", "set", &outside, "up"]);
        ip(&["-n", &ns, "addr", "add", &registry, "dev", &inside]);
        ip(&["-n", &ns, "link", "set", &inside, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        RegistryNet {
            ns,
            address: Ipv4Addr::new(10, n as u8, 9, 2),
        }
    }
}

impl Drop for RegistryNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// `docker-registry` in `net`'s namespace on port 5000, over TLS with
/// `tls`, for `user`/`password` only, serving the repositories of `storage`.
fn tls_registry(sb: &Sandbox, net: &RegistryNet, tls: &TestCa, storage: &Path) -> Proc {
    let dir = sb.path().join("tls-registry");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .expect("htpasswd (apache2-utils; just setup)");
    assert!(htpasswd.status.success());
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
    let config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {}:5000\n  tls:\n    certificate: {}\n    key: {}\n\
         auth:\n  htpasswd:\n    realm: vt\n    path: {}\n",
        storage.display(),
        net.address,
        tls.cert.display(),
        tls.key.display(),
        dir.join("htpasswd").display()
    );
    std::fs::write(dir.join("config.yml"), config).expect("write config.yml");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.ns, "docker-registry", "serve"])
        .arg(dir.join("config.yml"));
    let mut registry = sb.env().spawn("tls-registry", cmd);
    wait_until("the TLS registry listens", Duration::from_secs(20), || {
        if let Some(status) = registry.exited() {
            panic!("docker-registry exited ({status})\n{}", registry.output());
        }
        std::net::TcpStream::connect((net.address, 5000))
            .ok()
            .map(|_| ())
    });
    registry
}

/// A healthy instance of the one workload, if there is one.
fn healthy_instance(controller: &crate::support::fleet::Controller) -> Option<Value> {
    let status = controller.json(&["status"]);
    status["workloads"][0]["instances"]
        .as_array()?
        .iter()
        .find(|i| i["phase"] == "healthy")
        .cloned()
}

#[test]
fn a_tls_registry_with_basic_auth_is_pulled_from_only_with_its_ca_and_credentials() {
    let _turn = require_microvms(&[("htpasswd", "apache2-utils")]);
    let sb = Sandbox::new();

    // The image, pushed to a plain loopback registry whose storage the TLS
    // registry serves.
    let plain = Registry::start().expect("start docker-registry");
    let root = busybox_layer(sb.path(), "hello over TLS\n");
    let local = publish(&sb, &plain, &[&root], "exec httpd -f -p 8080 -h /www", &[]);
    let net = RegistryNet::new();
    let tls = TestCa::for_addresses(&sb.path().join("tls"), &[net.address.into()]);
    let _registry = tls_registry(&sb, &net, &tls, &plain.storage());
    let name = local.split_once('/').expect("host/name").1;
    let reference = format!("{}:5000/{name}", net.address);

    let repo = Repo::init(&sb, "repo");
    repo.add_web_app("acme", &reference);
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "1"]);
    repo.commit("web from a private registry");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let controller = fleet.start();

    // Credentials but no CA: the certificate is refused, with a code and a hint.
    let docker = sb.path().join("docker");
    std::fs::create_dir_all(&docker).expect("mkdir");
    let auth = base64_basic("alice", "s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}:5000": {{"auth": "{auth}"}}}}}}"#,
            net.address
        ),
    )
    .expect("write config.json");
    let docker = docker.display().to_string();
    let mut h1 = start_host_with(&sb, &fleet, &controller, &[], &[("DOCKER_CONFIG", &docker)]);
    let failure = wait_until("the pull fails on the certificate", BOOT, || {
        let text = controller.json(&["status"]).to_string();
        text.contains("E_IMAGE_TLS").then_some(text)
    });
    assert!(failure.contains("--registry-ca"), "{failure}");
    h1.terminate(Duration::from_secs(40));

    // With the CA: pulled, verified, booted, serving.
    let ca = tls.ca.display().to_string();
    let mut h1 = start_host_with(
        &sb,
        &fleet,
        &controller,
        &["--registry-ca", &ca],
        &[("DOCKER_CONFIG", &docker)],
    );
    let healthy = wait_until("an instance is healthy", BOOT, || {
        healthy_instance(&controller)
    });
    assert!(
        healthy["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sha256:"),
        "{healthy}"
    );
    // Stopped, not killed: its VMs stop with it.
    h1.terminate(Duration::from_secs(40));
}

/// `user:password` in base64, as docker's config.json keeps it.
fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
