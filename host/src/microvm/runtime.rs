//! [`MicrovmRuntime`]: the [`Runtime`] that runs each instance as a microVM,
//! one [`supervisor`] task per instance.

use crate::microvm::instance::{Context, ExecJob};
use crate::microvm::supervisor::{self, Handle};
use crate::Runtime;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use vt_plan::WorkloadKey;
use vt_plan::{InstanceId, Millis, Phase};
use vt_wire::messages::{
    volume_id, Assignment, Desire, ExecCommand, ExecEvent, InstanceReport, LogLine, VolumeReport,
};

/// Instances as qemu microVMs.
#[derive(Debug)]
pub struct MicrovmRuntime {
    ctx: Arc<Context>,
    instances: BTreeMap<InstanceId, Handle>,
    reported: BTreeMap<InstanceId, InstanceReport>,
}

impl MicrovmRuntime {
    /// A runtime with the host's shared context. Must be used inside a tokio runtime.
    /// VMs a previous agent left running are killed: the controller assigns
    /// their instances again and they start afresh.
    pub fn new(ctx: Context) -> Self {
        kill_leftovers(&ctx.dir.join("instances"));
        crate::microvm::logfile::prune(
            &ctx.dir.join("instances"),
            &[],
            crate::microvm::logfile::MAX_AGE,
        );
        MicrovmRuntime {
            ctx: Arc::new(ctx),
            instances: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    /// What each instance would report now.
    fn snapshot(&self) -> BTreeMap<InstanceId, InstanceReport> {
        self.instances
            .iter()
            .map(|(id, h)| {
                let s = h.status.lock().unwrap_or_else(|p| p.into_inner());
                let report = InstanceReport {
                    id: id.clone(),
                    phase: s.phase,
                    detail: s.detail.clone(),
                    restarts: s.restarts,
                    address: s.address.map(|a| a.to_string()),
                    image: s.image.clone(),
                };
                (id.clone(), report)
            })
            .collect()
    }
}

/// Kills the qemu processes named by `instances/*/qemu.pid`.
fn kill_leftovers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pidfile = entry.path().join("qemu.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let is_qemu = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("qemu-system"));
        if is_qemu {
            tracing::warn!(pid, instance = %entry.file_name().to_string_lossy(), "killing a VM a previous agent left running");
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        }
        let _ = std::fs::remove_file(&pidfile);
    }
}

impl Runtime for MicrovmRuntime {
    fn name(&self) -> &'static str {
        "microvm"
    }

    fn apply(&mut self, assignments: &[Assignment], _now: Millis) {
        for a in assignments {
            match a.desire {
                Desire::Run if !self.instances.contains_key(&a.id) => {
                    self.instances
                        .insert(a.id.clone(), supervisor::spawn(self.ctx.clone(), a.clone()));
                }
                Desire::Stop => {
                    if let Some(h) = self.instances.get(&a.id) {
                        h.stop();
                    }
                }
                Desire::Run => {
                    if let Some(h) = self.instances.get(&a.id) {
                        h.update_secrets(&a.secrets);
                    }
                }
            }
        }
        for (id, h) in &self.instances {
            if !assignments.iter().any(|a| &a.id == id) {
                h.stop();
            }
        }
    }

    fn volumes(&mut self) -> Vec<VolumeReport> {
        let attached: BTreeMap<std::path::PathBuf, InstanceId> = self
            .instances
            .iter()
            .flat_map(|(id, h)| {
                let s = h.status.lock().unwrap_or_else(|p| p.into_inner());
                let live = s.phase != Phase::Stopped;
                s.volumes
                    .iter()
                    .filter(|_| live)
                    .map(|v| (v.clone(), id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let root = self.ctx.dir.join("volumes");
        let mut out = Vec::new();
        for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let dir_name = dir.file_name().to_string_lossy().to_string();
            let Some((app_id, env_id)) = dir_name.split_once('-') else {
                continue;
            };
            let key = WorkloadKey {
                app_id: app_id.into(),
                env_id: env_id.into(),
            };
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = file.path();
                let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ext4"))
                else {
                    continue;
                };
                let (name, slot) = match stem
                    .rsplit_once('-')
                    .and_then(|(n, s)| s.parse().ok().map(|s| (n, s)))
                {
                    Some((name, slot)) => (name.to_string(), Some(slot)),
                    None => (stem.to_string(), None),
                };
                let Ok(meta) = file.metadata() else { continue };
                out.push(VolumeReport {
                    id: volume_id(&key, &name, slot),
                    key: key.clone(),
                    name,
                    slot,
                    size: meta.len(),
                    used: meta.blocks() * 512,
                    attached: attached.get(&path).cloned(),
                    path: path.display().to_string(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn destroy_volume(&mut self, id: &str) -> Result<(), String> {
        let volume = self
            .volumes()
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| format!("no volume {id} on this host"))?;
        if let Some(instance) = volume.attached {
            return Err(format!("volume {id} is attached to {instance}"));
        }
        std::fs::remove_file(&volume.path)
            .map_err(|e| format!("cannot delete {}: {e}", volume.path))
    }

    fn shutdown(&mut self) {
        for h in self.instances.values() {
            h.stop();
        }
    }

    fn poll(&mut self, _now: Millis) -> bool {
        self.snapshot() != self.reported
            || self.instances.values().any(|h| {
                !h.status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .logs
                    .is_empty()
            })
    }

    fn report(&mut self) -> Vec<InstanceReport> {
        let snapshot = self.snapshot();
        let stopped = |id: &InstanceId| snapshot.get(id).is_some_and(|r| r.phase == Phase::Stopped);
        self.instances.retain(|id, _| !stopped(id));
        let out: Vec<InstanceReport> = snapshot.values().cloned().collect();
        self.reported = snapshot
            .into_iter()
            .filter(|(_, r)| r.phase != Phase::Stopped)
            .collect();
        out
    }

    fn exec(
        &mut self,
        command: ExecCommand,
        input: Option<tokio::sync::mpsc::Receiver<vt_wire::messages::ExecInput>>,
    ) -> Result<tokio::sync::mpsc::Receiver<ExecEvent>, String> {
        let handle = self
            .instances
            .get(&command.instance)
            .ok_or_else(|| format!("instance {} does not run on this host", command.instance))?;
        let (events, rx) = tokio::sync::mpsc::channel(64);
        handle.exec(ExecJob {
            command,
            events,
            input,
        })?;
        Ok(rx)
    }

    fn drain_logs(&mut self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .instances
            .values()
            .flat_map(|h| {
                let mut status = h.status.lock().unwrap_or_else(|p| p.into_inner());
                if status.logs_dropped > 0 {
                    tracing::warn!(
                        dropped = status.logs_dropped,
                        "log lines dropped while they could not be shipped (the host's log file has them)"
                    );
                    status.logs_dropped = 0;
                }
                std::mem::take(&mut status.logs)
            })
            .collect();
        lines.sort_by_key(|l| l.time);
        lines
    }
}
