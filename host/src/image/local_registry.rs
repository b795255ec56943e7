//! Debian's `docker-registry` on a loopback address, storing in a
//! directory: `vt dev`'s registry for the images it builds, and the tests'.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`, killed (and reaped) on drop.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl LocalRegistry {
    /// Starts `docker-registry` serving on `addr`, with its storage, config
    /// and log in `dir`, and waits (up to 20 s) for `/v2/` to answer.
    pub fn start(dir: &Path, addr: SocketAddr) -> io::Result<Self> {
        let program = super::rootfs::find_program("docker-registry").ok_or_else(|| {
            io::Error::other(
                "docker-registry (package docker-registry) is not installed: run `just setup`",
            )
        })?;
        let storage = dir.join("storage");
        fs::create_dir_all(&storage)?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n",
            storage.display()
        );
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config)?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Command::new(program)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut registry = Self {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = fs::read_to_string(self.log()).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "docker-registry exited ({status}): {}",
                    log.trim()
                )));
            }
            if let Ok(mut stream) =
                TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
            {
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok()
                    && head.starts_with(b"HTTP/1.")
                    && &head[9..12] == b"200"
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "docker-registry did not answer /v2/ within 20 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// Its storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
