//! The edge data path against HAProxy and direct loopback, side by side.
//!
//! A child process runs the real edge (listener, balancer, QUIC pool, relay)
//! and the real host tunnel server (header, PROXY-less connect, copy), with
//! fleet certificates, both on loopback; the parent is the client and the
//! backend (a sink and an echo server). The same client then goes through
//! HAProxy (`mode tcp`, Debian's package) and straight to the backend.
//!
//! Reported: bulk throughput of one flow, request/response latency (p50,
//! p99), new connections per second, and the child's memory per idle
//! tunnelled connection at 1,000 and 10,000 connections.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BULK: usize = 256 << 20;
const ROUND_TRIPS: usize = 2_000;
const CONNECTS: usize = 1_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(args[2].parse().unwrap(), args[3].parse().unwrap());
    }
    // Each tunnelled connection costs two descriptors in this process
    // (client, backend) and two in the child (accepted, to the backend).
    let limit = raise_fd_limit();
    // The backend here is a thread per connection: this machine stops
    // creating threads a little above 9,000.
    let most = (10_000u64).min(limit.saturating_sub(1_000) / 2).min(8_000) as usize;
    let sink = spawn_backend(Backend::Sink);
    let echo = spawn_backend(Backend::Echo);
    let (mut child, edge_sink, edge_echo) = start_edge(sink, echo);
    let haproxy = Haproxy::start(sink, echo);

    println!("edge data path (edge → QUIC → host → backend, all on loopback), HAProxy 2.6 `mode tcp`, direct TCP");
    println!(
        "{:<28} {:>14} {:>14} {:>14}",
        "", "vt edge", "haproxy tcp", "direct"
    );
    let bulk = [edge_sink, haproxy.sink, sink].map(bulk_mbps);
    println!(
        "{:<28} {:>11.0} MB/s {:>9.0} MB/s {:>9.0} MB/s   (edge = {:.2}× haproxy, {:.2}× direct)",
        "bulk, one flow",
        bulk[0],
        bulk[1],
        bulk[2],
        bulk[0] / bulk[1],
        bulk[0] / bulk[2]
    );
    let lat = [edge_echo, haproxy.echo, echo].map(latency_us);
    println!(
        "{:<28} {:>11.0} µs {:>11.0} µs {:>11.0} µs",
        "request/response p50", lat[0].0, lat[1].0, lat[2].0
    );
    println!(
        "{:<28} {:>11.0} µs {:>11.0} µs {:>11.0} µs",
        "request/response p99", lat[0].1, lat[1].1, lat[2].1
    );
    let cps = [edge_echo, haproxy.echo, echo].map(connects_per_second);
    println!(
        "{:<28} {:>12.0} /s {:>12.0} /s {:>12.0} /s",
        "new connections", cps[0], cps[1], cps[2]
    );
    for n in [1_000usize, most] {
        let before = rss_kib(child.id());
        let held: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut s = TcpStream::connect(edge_echo).unwrap();
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(child.id());
        println!(
            "{:<28} {:>8.1} KiB per connection ({} MiB edge+host RSS at {n})",
            format!("idle connections: {n}"),
            (after.saturating_sub(before)) as f64 / n as f64,
            after / 1024
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(500));
    }
    child.kill().ok();
}

/// Raises the open-file limit to its hard maximum and returns it.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let max = getrlimit(Resource::Nofile).maximum.unwrap_or(1 << 20);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(max),
            maximum: Some(max),
        },
    );
    max
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Backend {
    /// Reads to the end, then writes the byte count and closes.
    Sink,
    /// Echoes everything.
    Echo,
}

fn spawn_backend(kind: Backend) -> SocketAddr {
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if let Backend::Echo = kind {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                if let Backend::Sink = kind {
                    let _ = s.write_all(&total.to_be_bytes());
                }
            });
        }
    });
    addr
}

fn bulk_mbps(target: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(target).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..BULK / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    s.read_exact(&mut count).unwrap();
    assert_eq!(u64::from_be_bytes(count), BULK as u64, "every byte arrived");
    BULK as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn latency_us(target: SocketAddr) -> (f64, f64) {
    let mut s = TcpStream::connect(target).unwrap();
    s.set_nodelay(true).unwrap();
    let msg = [1u8; 64];
    let mut back = [0u8; 64];
    let mut times: Vec<f64> = (0..ROUND_TRIPS)
        .map(|_| {
            let t = Instant::now();
            s.write_all(&msg).unwrap();
            s.read_exact(&mut back).unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn connects_per_second(target: SocketAddr) -> f64 {
    let start = Instant::now();
    for _ in 0..CONNECTS {
        let mut s = TcpStream::connect(target).unwrap();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    CONNECTS as f64 / start.elapsed().as_secs_f64()
}

struct Haproxy {
    child: Child,
    sink: SocketAddr,
    echo: SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("[::1]:0").unwrap().local_addr().unwrap()
}

impl Haproxy {
    fn start(sink: SocketAddr, echo: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let (fs, fe) = (free_port(), free_port());
        let config = format!(
            "global\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             listen sink\n    bind {fs}\n    server s {sink}\n\
             listen echo\n    bind {fe}\n    server e {echo}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy is installed (just setup)");
        for _ in 0..100 {
            if TcpStream::connect(fe).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            sink: fs,
            echo: fe,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.child.kill().ok();
    }
}

fn start_edge(sink: SocketAddr, echo: SocketAddr) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["serve", &sink.to_string(), &echo.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut parts = line.split_whitespace().skip(1);
    let a = parts.next().unwrap().parse().unwrap();
    let b = parts.next().unwrap().parse().unwrap();
    (child, a, b)
}

/// The child: a host tunnel server and an edge, wired to the backends.
fn serve(sink: SocketAddr, echo: SocketAddr) {
    use vt_edge::listeners::Listeners;
    use vt_edge::pool::Pool;
    use vt_edge::relay::Relays;
    use vt_host::tunnel::{self, Targets};
    use vt_plan::{Phase, WorkloadKey};
    use vt_wire::messages::{Backend as RouteBackend, InstanceReport, Route};
    use vt_wire::{client_endpoint, server_endpoint, ClientAuth, FleetCa, Role};

    raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::create(dir.path()).unwrap();
        let year = Duration::from_secs(3600);
        let host_id = ca.issue(Role::Host, "h1", year).unwrap();
        let edge_id = ca.issue(Role::Edge, "e1", year).unwrap();
        let server = server_endpoint(
            "[::1]:0".parse().unwrap(),
            &host_id,
            ca.cert(),
            ClientAuth::Required,
        )
        .unwrap();
        let tunnel_addr = server.local_addr().unwrap();
        let targets = Arc::new(Targets::default());
        let report = |id: &str| InstanceReport {
            id: id.into(),
            phase: Phase::Healthy,
            detail: None,
            restarts: 0,
            address: Some("::1".into()),
            image: None,
        };
        // Each instance takes tunnels to its endpoint's target port only.
        targets.allow([
            ("sink".into(), [sink.port()].into()),
            ("echo".into(), [echo.port()].into()),
        ]);
        targets.update(&[report("sink"), report("echo")], &Default::default());
        tokio::spawn(tunnel::serve(server, targets));
        let client = client_endpoint("[::]:0".parse().unwrap(), Some(&edge_id), ca.cert()).unwrap();
        let relays = Arc::new(Relays::new(Pool::new(client)));
        let (ls, le) = (free_port(), free_port());
        let route = |name: &str, listen: SocketAddr, to: SocketAddr| Route {
            name: "bench/bench/bench/bench".into(),
            key: WorkloadKey::default(),
            endpoint: name.into(),
            port: listen.port(),
            ipv4: false,
            proxy_protocol: false,
            addresses: vec![listen.ip()],
            backends: vec![RouteBackend {
                instance: name.into(),
                host: "h1".into(),
                port: to.port(),
                tunnel: Some(tunnel_addr),
            }],
        };
        {
            let mut table = relays.table.write().unwrap();
            for r in [route("sink", ls, sink), route("echo", le, echo)] {
                table.insert((r.key.clone(), r.endpoint.clone()), Arc::new(r));
            }
        }
        let mut listeners = Listeners::new(None);
        listeners.reconcile(&relays);
        println!("ready {ls} {le}");
        // Until the parent goes away (stdin closes).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
    });
}
