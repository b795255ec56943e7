//! Real servers on loopback for the trust tests, each a Debian program
//! started with a configuration written into the sandbox: a test CA and its
//! server certificates (rcgen), an HTTPS Git server (nginx + fcgiwrap +
//! `git http-backend`, with basic auth), and an SSH Git server (OpenSSH's
//! `sshd` on its own port, its own host key and authorized keys). Each runs
//! as one process (nginx without its master, fcgiwrap without children), so
//! killing it at the end of the test leaves nothing behind.

use super::process::Proc;
use super::{wait_until, Sandbox};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts connections on `addr`, or `proc` exits.
fn wait_listening(proc: &mut Proc, addr: SocketAddr, what: &str) {
    wait_until(what, Duration::from_secs(15), || {
        if let Some(status) = proc.exited() {
            panic!("{what}: it exited ({status})\n{}", proc.output());
        }
        TcpStream::connect(addr).ok().map(|_| ())
    });
}

/// A CA made for one test, and a server certificate it signed for
/// `localhost` and 127.0.0.1, as PEM files in a directory.
pub struct TestCa {
    /// The CA certificate (what a client is told to trust).
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate in `dir`.
    pub fn new(dir: &Path) -> TestCa {
        TestCa::for_addresses(dir, &[[127, 0, 0, 1].into()])
    }

    /// Makes the CA and a server certificate for `localhost` and `addresses`.
    pub fn for_addresses(dir: &Path, addresses: &[std::net::IpAddr]) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        std::fs::create_dir_all(dir).expect("create the CA directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "vt test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        server
            .subject_alt_names
            .extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        let cert = server.signed_by(&key, &issuer).expect("sign the server");
        let files = TestCa {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&files.ca, ca_cert.pem()).expect("write the CA");
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

impl TestCa {
    /// A rustls server configuration with the server certificate.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .expect("read the certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("parse the certificate");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("read the key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server configuration");
        std::sync::Arc::new(config)
    }
}

/// nginx serving the bare repositories under a directory over HTTPS with
/// `git http-backend` behind basic auth (one user).
pub struct HttpsGit {
    /// Its address.
    pub addr: SocketAddr,
    _nginx: Proc,
    _fcgiwrap: Proc,
}

impl HttpsGit {
    /// Serves the repositories of `root` at `https://127.0.0.1:PORT/NAME.git`
    /// with `tls`'s certificate, to `user` with `password` only.
    pub fn start(sb: &Sandbox, root: &Path, tls: &TestCa, user: &str, password: &str) -> HttpsGit {
        let dir = sb.path().join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).expect("create the nginx directory");
        let socket = dir.join("fcgiwrap.sock");
        let mut fcgiwrap = sb.env().spawn("fcgiwrap", {
            let mut cmd = Command::new("fcgiwrap");
            cmd.args(["-c", "1", "-s"])
                .arg(format!("unix:{}", socket.display()));
            cmd
        });
        wait_until("fcgiwrap listens", Duration::from_secs(10), || {
            if let Some(status) = fcgiwrap.exited() {
                panic!("fcgiwrap exited ({status})\n{}", fcgiwrap.output());
            }
            socket.exists().then_some(())
        });
        std::fs::write(
            dir.join("htpasswd"),
            format!("{user}:{{PLAIN}}{password}\n"),
        )
        .expect("write htpasswd");
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            r#"user root root;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      auth_basic "git";
      auth_basic_user_file {d}/htpasswd;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_pass unix:{socket};
    }}
  }}
}}
"#,
            cert = tls.cert.display(),
            key = tls.key.display(),
            root = root.display(),
            socket = socket.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut nginx = sb.env().spawn("nginx", {
            let mut cmd = Command::new("nginx");
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .args(["-g", "daemon off;"]);
            cmd
        });
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_listening(&mut nginx, addr, "nginx listens");
        HttpsGit {
            addr,
            _nginx: nginx,
            _fcgiwrap: fcgiwrap,
        }
    }

    /// The URL of the repository `name` (`NAME.git` under the root).
    pub fn url(&self, name: &str) -> String {
        format!("https://{}/{name}", self.addr)
    }
}

/// OpenSSH's sshd on a loopback port, accepting root with the keys in its
/// `authorized_keys` only.
pub struct SshGit {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    _sshd: Proc,
}

impl SshGit {
    /// Starts it with a new host key.
    pub fn start(sb: &Sandbox) -> SshGit {
        let dir = sb.path().join("sshd");
        std::fs::create_dir_all(&dir).expect("create the sshd directory");
        // sshd's privilege separation directory (a system path it insists on).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("host_key"))
            .status()
            .expect("run ssh-keygen");
        assert!(status.success(), "ssh-keygen failed");
        std::fs::write(dir.join("authorized_keys"), "").expect("write authorized_keys");
        let port = free_port();
        let d = dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        );
        std::fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
        let mut sshd = sb.env().spawn("sshd", {
            let mut cmd = Command::new("/usr/sbin/sshd");
            cmd.args(["-D", "-e", "-f"]).arg(dir.join("sshd_config"));
            cmd
        });
        wait_listening(&mut sshd, ([127, 0, 0, 1], port).into(), "sshd listens");
        SshGit {
            port,
            dir,
            _sshd: sshd,
        }
    }

    /// Lets a client with the public key `public` in.
    pub fn authorize(&self, public: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(file, "{public}").expect("append to authorized_keys");
    }

    /// A known_hosts file naming its host key, in the sandbox.
    pub fn known_hosts(&self) -> PathBuf {
        let public = std::fs::read_to_string(self.dir.join("host_key.pub")).expect("host key");
        let path = self.dir.join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {public}", self.port))
            .expect("write known_hosts");
        path
    }

    /// The `ssh://` URL of a repository at the absolute path `repo`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, repo.display())
    }
}
