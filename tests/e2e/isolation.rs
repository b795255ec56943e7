//! Orgs are kept apart on a host: instances of one org reach each other, no
//! other org's. Instances are stood in for by network namespaces wired the
//! way the microVM runtime wires TAPs (a `vt*` interface on the host side,
//! the gateway address on it, a /128 route to the instance), so the real
//! firewall rules and forwarding are tested without booting VMs.

use std::process::Command;
use vt_host::microvm::network::{addressing, isolate, org_prefix, Addressing};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (run `just setup`)"))
}

fn ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with one interface, like an instance with its TAP.
struct Instance {
    ns: String,
    link: String,
    addr: Addressing,
}

impl Instance {
    fn new(tag: &str, org: &str, number: u64) -> Instance {
        let pid = std::process::id() % 100_000;
        let ns = format!("vtiso-{tag}-{pid}");
        let link = format!("vti{tag}{pid}");
        let addr = addressing(org, number);
        let _ = run(&["ip", "netns", "del", &ns]);
        ok(&["ip", "netns", "add", &ns]);
        ok(&[
            "ip", "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ok(&["ip", "link", "set", &link, "up"]);
        ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/128", addr.gateway),
            "dev",
            &link,
            "nodad",
        ]);
        ok(&[
            "ip",
            "-6",
            "route",
            "replace",
            &format!("{}/128", addr.guest),
            "dev",
            &link,
        ]);
        let exec = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", ns.as_str()];
            all.extend_from_slice(args);
            ok(&all);
        };
        exec(&["ip", "link", "set", "lo", "up"]);
        exec(&["ip", "link", "set", "eth0", "up"]);
        exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", addr.guest),
            "dev",
            "eth0",
            "nodad",
        ]);
        exec(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            &addr.gateway.to_string(),
            "dev",
            "eth0",
        ]);
        Instance { ns, link, addr }
    }

    fn serve(&self) -> std::process::Child {
        let dir = std::env::temp_dir().join(&self.ns);
        std::fs::create_dir_all(&dir).expect("www");
        std::fs::write(dir.join("index.html"), &self.ns).expect("index");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "[::]:9000",
                "-h",
            ])
            .arg(&dir)
            .spawn()
            .expect("busybox httpd")
    }

    fn fetch(&self, to: &Instance) -> bool {
        let url = format!("http://[{}]:9000/", to.addr.guest);
        // curl: busybox-static's wget crashes on IPv6 URLs here.
        run(&[
            "ip", "netns", "exec", &self.ns, "curl", "-s", "-m", "3", &url,
        ])
        .status
        .success()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.link]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

#[test]
fn instances_reach_their_own_org_only() {
    let a1 = Instance::new("a1", "acme", 901);
    let a2 = Instance::new("a2", "acme", 902);
    let b1 = Instance::new("b1", "umbrella", 903);
    isolate(&[org_prefix("acme"), org_prefix("umbrella")]).expect("install the isolation rules");
    let mut servers = vec![a2.serve(), b1.serve()];
    std::thread::sleep(std::time::Duration::from_millis(300));
    let same_org = a1.fetch(&a2);
    let other_org = a1.fetch(&b1);
    let back = b1.fetch(&a2);
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(same_org, "acme reaches acme");
    assert!(!other_org, "acme does not reach umbrella");
    assert!(!back, "umbrella does not reach acme");
}
