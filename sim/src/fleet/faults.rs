//! Fault injection: what can go wrong with hosts and instances, applied
//! between steps.

use super::Sim;
use crate::host::SimHost;

impl Sim {
    /// Cuts a host's power: its instances are gone.
    pub fn crash(&mut self, host: &str) {
        self.with_host(host, "crashes", SimHost::crash);
    }

    /// Powers a crashed host back on, with no instances.
    pub fn restart(&mut self, host: &str) {
        self.with_host(host, "restarts", |h| h.up = true);
    }

    /// Cuts a host off from the controller; it keeps running its instances.
    pub fn partition(&mut self, host: &str) {
        self.with_host(host, "is partitioned", |h| {
            h.partitioned = true;
            h.registered = false;
        });
    }

    /// Reconnects a partitioned host.
    pub fn heal(&mut self, host: &str) {
        self.with_host(host, "is healed", |h| h.partitioned = false);
    }

    /// Makes every instance a host starts fail to boot (or no longer).
    pub fn fail_host(&mut self, host: &str, fail: bool) {
        self.with_host(
            host,
            if fail {
                "fails every start"
            } else {
                "starts normally"
            },
            |h| h.fail_all = fail,
        );
    }

    /// Makes instances of `image` fail to boot from now on.
    pub fn fail_image(&mut self, image: &str) {
        self.log("sim", format!("image {image} fails to boot"));
        self.config.behaviour.failing_images.insert(image.into());
    }

    /// Makes a host's instances (`target` names a host) or one instance
    /// (`target` is an instance ID) fail their health check.
    pub fn set_unhealthy(&mut self, target: &str) {
        if let Some(h) = self.hosts.get_mut(target) {
            h.unhealthy = true;
        } else if !self.hosts.values_mut().any(|h| h.make_sick(target)) {
            self.fail(&format!("set_unhealthy: no host or instance `{target}`"));
        }
        self.log("sim", format!("{target} fails its health checks"));
    }

    /// Makes a host run an instance the controller never assigned.
    pub fn inject_instance(&mut self, host: &str, id: &str) {
        let what = format!("runs stray instance {id}");
        self.with_host(host, &what, |h| h.inject(id));
    }

    fn with_host(&mut self, host: &str, what: &str, change: impl FnOnce(&mut SimHost)) {
        let Some(h) = self.hosts.get_mut(host) else {
            self.fail(&format!("no host `{host}`"));
        };
        change(h);
        self.log("sim", format!("host {host} {what}"));
    }
}
