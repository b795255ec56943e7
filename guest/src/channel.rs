//! The channel to the host: a virtio-serial port. Preferred is a plain port
//! (`-device virtserialport,chardev=…,name=vt` → `/dev/vportNpM`), whose
//! host side can disconnect and reconnect; a console port
//! (`-device virtconsole` → `/dev/hvcN`, a terminal put in raw mode) works
//! too. Writes never block PID 1: frames queue while the host is away, and
//! log lines are dropped (and counted) once the queue is full.

use crate::sys;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vt_init::protocol::{self, GuestToHost, HostToGuest, LineBuffer, MAX_FRAME};

/// Name of the virtio-serial port preferred when there are several.
pub const PORT_NAME: &str = "vt";

/// Queued bytes beyond which log lines are dropped.
const LOG_CAP: usize = 4 << 20;

/// Queued bytes beyond which exec output is no longer read (backpressure).
pub const EXEC_HIGH_WATER: usize = 1 << 20;

/// How often a disconnected port is checked for the host's return.
const RECHECK: Duration = Duration::from_millis(250);

/// Frames waiting to be written, the first one possibly in part.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<Vec<u8>>,
    /// Bytes of the first frame already written.
    offset: usize,
    bytes: usize,
    dropped_logs: u64,
}

impl OutQueue {
    /// Queues a frame.
    pub fn push(&mut self, frame: Vec<u8>) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues a log frame unless the queue is over [`LOG_CAP`]; a dropped
    /// one is counted, and the count reported (as a log line built by
    /// `notice`) once there is room again.
    pub fn push_log(&mut self, frame: Vec<u8>, notice: impl FnOnce(u64) -> Vec<u8>) {
        if self.bytes + frame.len() > LOG_CAP {
            self.dropped_logs += 1;
            return;
        }
        if self.dropped_logs > 0 {
            let count = std::mem::take(&mut self.dropped_logs);
            self.push(notice(count));
        }
        self.push(frame);
    }

    /// Queued bytes not yet written.
    pub fn backlog(&self) -> usize {
        self.bytes - self.offset
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The bytes to write next.
    pub fn next_bytes(&self) -> &[u8] {
        self.frames
            .front()
            .and_then(|f| f.get(self.offset..))
            .unwrap_or_default()
    }

    /// Marks `n` bytes of [`OutQueue::next_bytes`] as written.
    pub fn consume(&mut self, n: usize) {
        self.offset += n;
        while let Some(front) = self.frames.front() {
            if self.offset < front.len() {
                break;
            }
            self.offset -= front.len();
            self.bytes -= front.len();
            self.frames.pop_front();
        }
    }

    /// After a disconnect: drops the rest of a frame written in part (a new
    /// peer would see half a line), then puts `frames` first.
    pub fn restart_with(&mut self, frames: Vec<Vec<u8>>) {
        if self.offset > 0 {
            if let Some(front) = self.frames.pop_front() {
                self.bytes -= front.len();
            }
            self.offset = 0;
        }
        for frame in frames.into_iter().rev() {
            self.bytes += frame.len();
            self.frames.push_front(frame);
        }
    }
}

/// The open channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    path: PathBuf,
    connected: bool,
    recheck_at: Instant,
    lines: LineBuffer,
    out: OutQueue,
}

/// Orders the candidate channel devices: ports named [`PORT_NAME`] first,
/// then other ports, then console ports (`hvcN`) that are not the kernel's
/// console. `ports` are (device name, port name) pairs.
pub fn rank_devices(
    ports: &[(String, String)],
    hvcs: &[String],
    consoles: &[String],
) -> Vec<String> {
    let mut ports: Vec<&(String, String)> = ports.iter().collect();
    ports.sort_by_key(|(dev, name)| (name != PORT_NAME, dev.clone()));
    let mut hvcs: Vec<&String> = hvcs.iter().filter(|h| !consoles.contains(h)).collect();
    hvcs.sort();
    ports
        .into_iter()
        .map(|(dev, _)| dev.clone())
        .chain(hvcs.into_iter().cloned())
        .collect()
}

fn candidates() -> Vec<String> {
    let mut ports = Vec::new();
    let mut hvcs = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with("vport") {
                let port = std::fs::read_to_string(format!("/sys/class/virtio-ports/{name}/name"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                ports.push((name, port));
            } else if name.starts_with("hvc") {
                hvcs.push(name);
            }
        }
    }
    let consoles: Vec<String> = std::fs::read_to_string("/sys/class/tty/console/active")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    rank_devices(&ports, &hvcs, &consoles)
}

impl Channel {
    /// Finds and opens the channel device, waiting up to `timeout` for it to
    /// appear, and queues `Hello`.
    pub fn open(timeout: Duration) -> Result<Channel, String> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no virtio-serial port found");
        loop {
            for name in candidates() {
                let path = Path::new("/dev").join(&name);
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(file) => return Ok(Channel::new(file.into(), path)),
                    // ENXIO: a console port opened as a plain one; ENODEV: an
                    // hvc index with no device; EBUSY: taken.
                    Err(e) => last_error = format!("{}: {e}", path.display()),
                }
            }
            if Instant::now() >= deadline {
                return Err(last_error);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new(fd: OwnedFd, path: PathBuf) -> Channel {
        // A console port is a terminal: no echo, no line editing, no CR/LF
        // translation. A plain port is not a terminal and refuses this.
        let _ = sys::make_raw(&fd);
        let mut channel = Channel {
            fd,
            path,
            connected: false,
            recheck_at: Instant::now(),
            lines: LineBuffer::new(MAX_FRAME),
            out: OutQueue::default(),
        };
        channel.connected = channel.host_present();
        if channel.connected {
            channel.out.push(encode(&hello()));
        }
        channel
    }

    /// The device path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the host side is connected (as last seen).
    pub fn connected(&self) -> bool {
        self.connected
    }

    fn host_present(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        }];
        match sys::poll(&mut fds, 0) {
            Ok(_) => fds[0].revents & libc::POLLHUP == 0,
            Err(_) => false,
        }
    }

    /// Queues a frame. Log lines are dropped when the queue is full.
    pub fn send(&mut self, frame: &GuestToHost) {
        let bytes = encode(frame);
        if matches!(frame, GuestToHost::Log { .. }) {
            self.out.push_log(bytes, |count| {
                encode(&GuestToHost::Log {
                    stream: protocol::Stream::Stderr,
                    line: format!(
                        "vt-init: dropped {count} log lines while the host was not reading"
                    ),
                    time_ms: sys::now_ms(),
                })
            });
        } else {
            self.out.push(bytes);
        }
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.out.backlog()
    }

    /// The poll registration, when connected.
    pub fn interest(&self) -> Option<libc::pollfd> {
        self.connected.then(|| libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN
                | if self.out.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                },
            revents: 0,
        })
    }

    /// When a disconnected channel should be checked again.
    pub fn recheck_at(&self) -> Option<Instant> {
        (!self.connected).then_some(self.recheck_at)
    }

    /// Handles poll readiness: reads whole frames, writes queued bytes, and
    /// notices the host leaving. Returns the frames (or decode errors).
    pub fn ready(&mut self, revents: i16, now: Instant) -> Vec<Result<HostToGuest, String>> {
        let mut frames = Vec::new();
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match sys::read(&self.fd, &mut buf) {
                    Ok(0) => {
                        self.disconnect(now);
                        break;
                    }
                    Ok(n) => {
                        for line in self.lines.push(buf.get(..n).unwrap_or_default()) {
                            frames.push(line.map_err(|e| e.to_string()).and_then(|l| decode(&l)));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        sys::log(format_args!("reading {}: {e}", self.path.display()));
                        self.disconnect(now);
                        break;
                    }
                }
            }
        }
        if self.connected && revents & libc::POLLOUT != 0 {
            self.flush();
        }
        frames
    }

    /// Writes as much of the queue as the port takes now.
    pub fn flush(&mut self) {
        while !self.out.is_empty() {
            match sys::write(&self.fd, self.out.next_bytes()) {
                Ok(0) => return,
                Ok(n) => self.out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // EAGAIN, or the host left: poll tells
            }
        }
    }

    fn disconnect(&mut self, now: Instant) {
        if self.connected {
            sys::log(format_args!("host left {}", self.path.display()));
        }
        self.connected = false;
        self.recheck_at = now + RECHECK;
        self.lines.reset();
    }

    /// Checks a disconnected channel; on the host's return, puts `state`
    /// (Hello first, then what the host must know) at the head of the queue
    /// and returns true.
    pub fn recheck(&mut self, now: Instant, state: Vec<GuestToHost>) -> bool {
        if self.connected || now < self.recheck_at {
            return false;
        }
        if !self.host_present() {
            self.recheck_at = now + RECHECK;
            return false;
        }
        self.connected = true;
        let mut frames = vec![encode(&hello())];
        frames.extend(state.iter().map(encode));
        self.out.restart_with(frames);
        self.flush();
        true
    }

    /// Before power-off: writes what is queued, for at most `limit`.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.connected && !self.out.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds = [libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            }];
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            if sys::poll(&mut fds, ms.max(1)).is_err() || fds[0].revents & libc::POLLHUP != 0 {
                return;
            }
            if fds[0].revents & libc::POLLOUT != 0 {
                self.flush();
            }
        }
    }
}

fn hello() -> GuestToHost {
    GuestToHost::Hello {
        version: protocol::PROTOCOL_VERSION,
    }
}

fn encode(frame: &GuestToHost) -> Vec<u8> {
    // Encoding these types cannot fail; keep the stream in frames anyway.
    protocol::encode(frame).unwrap_or_else(|_| {
        b"{\"type\":\"error\",\"message\":\"cannot encode a frame\"}\n".to_vec()
    })
}

fn decode(line: &[u8]) -> Result<HostToGuest, String> {
    protocol::decode(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ranks_devices() {
        let ports = vec![
            ("vport1p1".to_string(), String::new()),
            ("vport0p2".to_string(), "vt".to_string()),
            ("vport0p1".to_string(), "other".to_string()),
        ];
        assert_eq!(
            rank_devices(&ports, &s(&["hvc1", "hvc0"]), &s(&["ttyS0"])),
            s(&["vport0p2", "vport0p1", "vport1p1", "hvc0", "hvc1"])
        );
        assert_eq!(
            rank_devices(&[], &s(&["hvc0", "hvc1"]), &s(&["hvc0"])),
            s(&["hvc1"])
        );
    }

    fn drain_all(q: &mut OutQueue) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            // Write in awkward 3-byte pieces.
            let n = q.next_bytes().len().min(3);
            out.extend_from_slice(&q.next_bytes()[..n]);
            q.consume(n);
        }
        out
    }

    #[test]
    fn queue_writes_in_pieces() {
        let mut q = OutQueue::default();
        q.push(b"one\n".to_vec());
        q.push(b"two\n".to_vec());
        assert_eq!(q.backlog(), 8);
        assert_eq!(drain_all(&mut q), b"one\ntwo\n");
        assert_eq!(q.backlog(), 0);
    }

    #[test]
    fn queue_restart_drops_half_written_frame() {
        let mut q = OutQueue::default();
        q.push(b"first\n".to_vec());
        q.push(b"second\n".to_vec());
        q.consume(2);
        q.restart_with(vec![b"hello\n".to_vec(), b"state\n".to_vec()]);
        assert_eq!(drain_all(&mut q), b"hello\nstate\nsecond\n");

        let mut q = OutQueue::default();
        q.push(b"whole\n".to_vec());
        q.restart_with(vec![b"hello\n".to_vec()]);
        assert_eq!(drain_all(&mut q), b"hello\nwhole\n");
    }

    #[test]
    fn queue_drops_logs_when_full_and_says_so() {
        let mut q = OutQueue::default();
        let big = vec![b'x'; LOG_CAP - 10];
        q.push(big);
        q.push_log(b"fits\n".to_vec(), |_| b"never\n".to_vec());
        q.push_log(b"too much\n".to_vec(), |_| b"never\n".to_vec());
        q.push_log(b"again\n".to_vec(), |_| b"never\n".to_vec());
        q.consume(LOG_CAP - 10);
        q.push_log(b"later\n".to_vec(), |n| {
            format!("dropped {n}\n").into_bytes()
        });
        assert_eq!(drain_all(&mut q), b"fits\ndropped 2\nlater\n");
    }
}
