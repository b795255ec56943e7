//! Health checks run by the host against the guest: a TCP connect, or an HTTP
//! GET expecting a status. Thresholds turn single results into a verdict.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vt_repo::effective::HealthCheck;
use vt_repo::schema::HealthKind;

/// Runs one check against `address`; `Err` says why it failed.
pub async fn check_once(check: &HealthCheck, address: Ipv6Addr, port: u16) -> Result<(), String> {
    let timeout = check.timeout.as_std();
    let attempt = async {
        let addr = SocketAddr::from((address, port));
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        if check.kind == HealthKind::Tcp {
            return Ok(());
        }
        let path = check.path.as_deref().unwrap_or("/");
        let request = format!("GET {path} HTTP/1.1\r\nHost: [{address}]:{port}\r\nUser-Agent: vt-health\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send request: {e}"))?;
        let mut head = vec![0u8; 512];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| format!("read response: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: `{line}`"))?;
        let want = check.status.unwrap_or(200);
        if status == want {
            Ok(())
        } else {
            Err(format!("GET {path} returned {status}, expected {want}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}", check.timeout)))
}

/// Turns check results into healthy/unhealthy with the thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    passes: u32,
    failures: u32,
    /// Current verdict: `None` until the first threshold is reached.
    pub healthy: Option<bool>,
}

impl Verdict {
    /// Records one result; returns whether the verdict changed.
    pub fn record(&mut self, check: &HealthCheck, ok: bool) -> bool {
        let before = self.healthy;
        if ok {
            self.passes += 1;
            self.failures = 0;
            if self.passes >= check.healthy_threshold.max(1) {
                self.healthy = Some(true);
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            if self.failures >= check.unhealthy_threshold.max(1) {
                self.healthy = Some(false);
            }
        }
        before != self.healthy
    }
}

/// Time between checks.
pub fn interval(check: &HealthCheck) -> Duration {
    check.interval.as_std().max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_repo::Duration as D;

    fn check(kind: HealthKind) -> HealthCheck {
        HealthCheck {
            kind,
            port: "main".into(),
            path: Some("/healthz".into()),
            status: Some(204),
            interval: D(1000),
            timeout: D(500),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: D(0),
        }
    }

    #[test]
    fn thresholds() {
        let c = check(HealthKind::Tcp);
        let mut v = Verdict::default();
        assert!(!v.record(&c, true));
        assert!(v.record(&c, true));
        assert_eq!(v.healthy, Some(true));
        assert!(!v.record(&c, false));
        assert!(v.record(&c, false));
        assert_eq!(v.healthy, Some(false));
    }

    #[tokio::test]
    async fn tcp_and_http_checks_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("[::1]:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            }
        });
        assert_eq!(
            check_once(&check(HealthKind::Tcp), Ipv6Addr::LOCALHOST, port).await,
            Ok(())
        );
        assert_eq!(
            check_once(&check(HealthKind::Http), Ipv6Addr::LOCALHOST, port).await,
            Ok(())
        );
        let mut wrong = check(HealthKind::Http);
        wrong.status = Some(200);
        assert!(check_once(&wrong, Ipv6Addr::LOCALHOST, port).await.is_err());
        assert!(check_once(&check(HealthKind::Tcp), Ipv6Addr::LOCALHOST, 1)
            .await
            .is_err());
    }
}
