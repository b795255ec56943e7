//! Fixtures for the wire tests: a fleet CA in a temporary directory and loopback
//! endpoints.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use quinn::Endpoint;

use super::{client_endpoint, server_endpoint, ClientAuth, FleetCa, Identity, Role};

/// 127.0.0.1.
pub(crate) const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// ::1.
pub(crate) const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A fleet CA living in a temporary directory.
pub(crate) struct Fleet {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: FleetCa,
}

impl Fleet {
    pub(crate) fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::create(&dir.path().join("controller")).unwrap();
        Fleet { dir, ca }
    }

    /// An identity valid for an hour.
    pub(crate) fn identity(&self, role: Role, name: &str) -> Identity {
        self.ca
            .issue(role, name, Duration::from_secs(3600))
            .unwrap()
    }

    /// A server on `ip` presenting `identity`, and its address.
    pub(crate) fn server_as(
        &self,
        ip: IpAddr,
        identity: &Identity,
        auth: ClientAuth,
    ) -> (Endpoint, SocketAddr) {
        let endpoint =
            server_endpoint(SocketAddr::new(ip, 0), identity, self.ca.cert(), auth).unwrap();
        let addr = endpoint.local_addr().unwrap();
        (endpoint, addr)
    }

    /// A controller server (named `ctl`) on `ip`, and its address.
    pub(crate) fn controller(&self, ip: IpAddr, auth: ClientAuth) -> (Endpoint, SocketAddr) {
        self.server_as(ip, &self.identity(Role::Controller, "ctl"), auth)
    }

    /// A client on `ip` trusting this fleet's CA.
    pub(crate) fn client(&self, ip: IpAddr, identity: Option<&Identity>) -> Endpoint {
        client_endpoint(SocketAddr::new(ip, 0), identity, self.ca.cert()).unwrap()
    }
}

/// Runs `f`, failing the test if it takes more than 20 seconds.
pub(crate) async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap()
}

/// A controller and a host connected over mutual TLS on 127.0.0.1.
pub(crate) struct Pair {
    _fleet: Fleet,
    _endpoints: (Endpoint, Endpoint),
    /// The controller's side.
    pub(crate) server: quinn::Connection,
    /// The host's side.
    pub(crate) client: quinn::Connection,
}

impl Pair {
    pub(crate) async fn new() -> Pair {
        let fleet = Fleet::new();
        let (server_ep, addr) = fleet.controller(V4, ClientAuth::Required);
        let host = fleet.identity(Role::Host, "node-1");
        let client_ep = fleet.client(V4, Some(&host));
        let (server, client) = tokio::join!(
            async { server_ep.accept().await.unwrap().await.unwrap() },
            super::connect(&client_ep, addr, super::CONTROLLER_SERVER_NAME),
        );
        Pair {
            _fleet: fleet,
            _endpoints: (server_ep, client_ep),
            server,
            client: client.unwrap(),
        }
    }
}
