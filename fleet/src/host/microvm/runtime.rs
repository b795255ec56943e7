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
    reported: BTreeMap<String, (Phase, Option<String>)>,
}

impl MicrovmRuntime {
    /// A runtime with the host's shared context. Must be used inside a tokio runtime.
    pub fn new(ctx: Context) -> Self {
        MicrovmRuntime {
            ctx: Arc::new(ctx),
            instances: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    fn snapshot(&self) -> BTreeMap<String, (Phase, Option<String>)> {
        self.instances
            .iter()
            .map(|(id, h)| {
                let s = h.status.lock().unwrap_or_else(|p| p.into_inner());
                (id.clone(), (s.phase, s.detail.clone()))
            })
            .collect()
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
            .map(|(id, (phase, detail))| InstanceReport {
                id: id.clone(),
                phase: *phase,
                detail: detail.clone(),
            })
            .collect();
        self.instances
            .retain(|id, _| !matches!(snapshot.get(id), Some((Phase::Stopped, _))));
        self.reported = snapshot
            .into_iter()
            .filter(|(_, (phase, _))| *phase != Phase::Stopped)
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
