//! What the controller does with what hosts say: registrations, reports of
//! every instance they run (the truth about what runs; unknown instances are
//! told to stop) and their volumes.

use super::{crash_reason, phase_name, Controller, HostRecord, Retry};
use std::collections::BTreeSet;
use vt_plan::events::{kind, Event};
use vt_plan::{Host, HostStatus, InstanceId, Millis, Phase};
use vt_wire::messages::{HostRegistration, InstanceReport};

impl Controller {
    /// A host (re)registers.
    pub fn register_host(&mut self, reg: &HostRegistration, now: Millis) {
        let returning = self.hosts.get(&reg.name);
        let registered = returning.map_or(now, |h| h.registered);
        let was = returning.map(|h| h.host.status);
        let record = HostRecord {
            host: Host {
                id: reg.name.as_str().into(),
                name: reg.name.clone(),
                region: reg.region.clone(),
                cpu: reg.cpu,
                memory: reg.memory,
                status: HostStatus::Ready,
            },
            registered,
            last_seen: now,
            tunnel: reg.tunnel,
        };
        self.journal.put(format!("host/{}", reg.name), &record);
        self.hosts.insert(reg.name.as_str().into(), record);
        let how = match was {
            None => "registered",
            Some(HostStatus::Lost) => "came back",
            Some(HostStatus::Ready) => "reconnected",
        };
        self.journal.emit(
            Event::new(
                kind::HOST_REGISTERED,
                now,
                format!(
                    "host {} {how} in region {} with {} cpu, {} memory",
                    reg.name,
                    reg.region,
                    vt_repo::Cpu(reg.cpu),
                    vt_repo::ByteSize(reg.memory)
                ),
            )
            .host(&reg.name),
        );
    }

    /// A host's report: the phase of every instance it has. Returns the IDs of
    /// instances the host should not have (it is told to stop them by the
    /// next assignment, which does not list them).
    pub fn report(
        &mut self,
        host: &str,
        reports: &[InstanceReport],
        now: Millis,
    ) -> Vec<InstanceId> {
        let Some(record) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        record.last_seen = now;
        if record.host.status == HostStatus::Lost {
            record.host.status = HostStatus::Ready;
        }
        let record = record.clone();
        self.journal.put(format!("host/{host}"), &record);
        let mut unknown = Vec::new();
        let mut reported = BTreeSet::new();
        for r in reports {
            reported.insert(r.id.as_str());
            match self.instances.get_mut(&r.id) {
                Some(rec) if rec.instance.host == host => self.take_report(host, r, now),
                _ if matches!(r.phase, Phase::Stopped | Phase::Failed) => {}
                _ if self.unknown_seen.contains(&r.id) => unknown.push(r.id.clone()),
                _ => {
                    unknown.push(r.id.clone());
                    self.unknown_seen.insert(r.id.clone());
                    self.journal.emit(
                        Event::new(
                            kind::INSTANCE_UNKNOWN,
                            now,
                            format!(
                                "host {host} runs unknown instance {}: told to stop it",
                                r.id
                            ),
                        )
                        .instance(&r.id)
                        .host(host),
                    );
                }
            }
        }
        // Instances the host no longer has: a stopping one is done, a running one is gone.
        let missing: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|i| i.instance.host == host && !reported.contains(i.instance.id.as_str()))
            .filter(|i| {
                matches!(
                    i.instance.phase,
                    Phase::Stopping | Phase::Starting | Phase::Healthy | Phase::Unhealthy
                )
            })
            .map(|i| i.instance.id.clone())
            .collect();
        for id in missing {
            if let Some(rec) = self.instances.get_mut(&id) {
                let phase = if rec.instance.phase == Phase::Stopping {
                    Phase::Stopped
                } else {
                    Phase::Failed
                };
                rec.instance.phase = phase;
                rec.instance.since = now;
                if phase == Phase::Failed {
                    rec.detail = Some("the host no longer reports it".into());
                }
                let rec = rec.clone();
                self.journal.put(format!("inst/{id}"), &rec);
                self.journal.emit(
                    Event::new(
                        kind::INSTANCE_PHASE,
                        now,
                        format!("instance {id} on {host}: {}", phase_name(phase)),
                    )
                    .for_workload(&rec.name)
                    .release(rec.instance.release)
                    .instance(&id)
                    .host(host),
                );
            }
        }
        unknown
    }

    /// Takes in one report of an instance the controller placed on `host`:
    /// crashes (restarts), its address and image, and phase changes, each
    /// written once; then counts a failure before healthy towards its place's
    /// backoff, or clears the backoff when it is healthy.
    fn take_report(&mut self, host: &str, r: &InstanceReport, now: Millis) {
        let Some(rec) = self.instances.get_mut(&r.id) else {
            return;
        };
        let (name, release) = (rec.name.clone(), rec.instance.release);
        let mut changed = false;
        let mut failures = Vec::new();
        if r.restarts > rec.restarts {
            rec.restarts = r.restarts;
            changed = true;
            let why = r.detail.clone().unwrap_or_default();
            self.journal.emit(
                Event::new(
                    kind::INSTANCE_CRASHED,
                    now,
                    format!(
                        "instance {} on {host} crashed (restart {}): {why}",
                        r.id, r.restarts
                    ),
                )
                .reason(crash_reason(&why))
                .for_workload(&name)
                .release(release)
                .instance(&r.id)
                .host(host),
            );
            if !rec.healthy_once {
                failures.push((crash_reason(&why), Retry::InPlace));
            }
        }
        if (r.address.is_some() && rec.address != r.address)
            || (r.image.is_some() && rec.image != r.image)
        {
            rec.address = r.address.clone().or(rec.address.take());
            rec.image = r.image.clone().or(rec.image.take());
            changed = true;
        }
        let stopping = rec.instance.phase == Phase::Stopping && r.phase.is_live();
        let mut healthy = false;
        if rec.instance.phase != r.phase && !stopping {
            let from = rec.instance.phase;
            let failed_early =
                r.phase == Phase::Failed && !rec.healthy_once && from != Phase::Stopping;
            let in_loop = rec.retry || failed_early;
            rec.healthy_once |= r.phase == Phase::Healthy;
            rec.instance.phase = r.phase;
            rec.instance.since = now;
            rec.detail = r.detail.clone();
            changed = true;
            let detail = r
                .detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let (from, to) = (phase_name(from), phase_name(r.phase));
            self.journal.emit(
                Event::new(
                    kind::INSTANCE_PHASE,
                    now,
                    format!("instance {} on {host}: {from} → {to}{detail}", r.id),
                )
                .for_workload(&name)
                .release(release)
                .instance(&r.id)
                .host(host)
                .across_instances(in_loop),
            );
            healthy = r.phase == Phase::Healthy;
            if failed_early {
                let why = r.detail.clone().unwrap_or_else(|| "failed".into());
                failures.push((why, Retry::NewInstance));
            }
        } else if rec.instance.phase == r.phase && rec.detail != r.detail {
            // Progress within a phase (pulling, booting, ...): shown by
            // `status`, not worth an event each.
            rec.detail = r.detail.clone();
            changed = true;
        }
        if changed {
            self.journal.put(format!("inst/{}", r.id), &*rec);
        }
        if healthy {
            self.note_healthy(&r.id);
        }
        for (why, retry) in failures {
            self.note_failure(&r.id, &why, retry, now);
        }
    }

    /// Records the volumes a host reports (kept across restarts).
    pub fn host_volumes(&mut self, host: &str, volumes: Vec<vt_wire::messages::VolumeReport>) {
        if self.host_volumes.get(host) != Some(&volumes) {
            self.journal.put(
                format!("hostvol/{host}"),
                &(host.to_string(), volumes.clone()),
            );
            self.host_volumes.insert(host.to_string(), volumes);
        }
    }
}
