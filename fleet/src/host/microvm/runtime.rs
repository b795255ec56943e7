//! [`MicrovmRuntime`]: the [`Runtime`] that runs each instance as a microVM,
//! one [`supervisor`] task per instance.

use crate::host::microvm::supervisor::{self, Context, ExecJob, Handle};
use crate::host::Runtime;
use crate::plan::{Millis, Phase};
use crate::wire::messages::{Assignment, Desire, ExecCommand, ExecEvent, InstanceReport, LogLine};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Instances as qemu microVMs.
#[derive(Debug)]
pub struct MicrovmRuntime {
    ctx: Arc<Context>,
    instances: BTreeMap<String, Handle>,
    reported: BTreeMap<String, (Phase, Option<String>, u32, Option<String>)>,
}

impl MicrovmRuntime {
    /// A runtime with the host's shared context. Must be used inside a tokio runtime.
    /// VMs a previous agent left running are killed: the controller assigns
    /// their instances again and they start afresh.
    pub fn new(ctx: Context) -> Self {
        kill_leftovers(&ctx.dir.join("instances"));
        MicrovmRuntime {
            ctx: Arc::new(ctx),
            instances: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    fn snapshot(&self) -> BTreeMap<String, (Phase, Option<String>, u32, Option<String>)> {
        self.instances
            .iter()
            .map(|(id, h)| {
                let s = h.status.lock().unwrap_or_else(|p| p.into_inner());
                (
                    id.clone(),
                    (
                        s.phase,
                        s.detail.clone(),
                        s.restarts,
                        s.address.map(|a| a.to_string()),
                    ),
                )
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
                Desire::Run => {}
            }
        }
        for (id, h) in &self.instances {
            if !assignments.iter().any(|a| &a.id == id) {
                h.stop();
            }
        }
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
        let out = snapshot
            .iter()
            .map(|(id, (phase, detail, restarts, address))| InstanceReport {
                id: id.clone(),
                phase: *phase,
                detail: detail.clone(),
                restarts: *restarts,
                address: address.clone(),
            })
            .collect();
        self.instances
            .retain(|id, _| !matches!(snapshot.get(id), Some((Phase::Stopped, ..))));
        self.reported = snapshot
            .into_iter()
            .filter(|(_, (phase, ..))| *phase != Phase::Stopped)
            .collect();
        out
    }

    fn exec(
        &mut self,
        command: ExecCommand,
    ) -> Result<tokio::sync::mpsc::Receiver<ExecEvent>, String> {
        let handle = self
            .instances
            .get(&command.instance)
            .ok_or_else(|| format!("instance {} does not run on this host", command.instance))?;
        let (events, rx) = tokio::sync::mpsc::channel(64);
        handle.exec(ExecJob { command, events })?;
        Ok(rx)
    }

    fn drain_logs(&mut self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .instances
            .values()
            .flat_map(|h| {
                std::mem::take(&mut h.status.lock().unwrap_or_else(|p| p.into_inner()).logs)
            })
            .collect();
        lines.sort_by_key(|l| l.time);
        lines
    }
}
