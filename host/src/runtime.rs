//! The seam between the agent and what actually runs instances. The qemu
//! microVM runtime and the simulated one implement it; the agent does not
//! know which it drives.

use vt_plan::Millis;
use vt_wire::messages::{
    Assignment, ExecCommand, ExecEvent, InstanceReport, LogLine, VolumeReport,
};

/// Runs instances. Level-triggered: `apply` gets the whole assignment list.
pub trait Runtime: Send {
    /// A short name for logs and `describe` (`sim`, `microvm`).
    fn name(&self) -> &'static str;
    /// Brings the instances in line with `assignments`: starts the missing
    /// `Run` ones, stops `Stop` ones and any instance not listed.
    fn apply(&mut self, assignments: &[Assignment], now: Millis);
    /// Advances lifecycles; returns whether any phase changed.
    fn poll(&mut self, now: Millis) -> bool;
    /// Every instance, for the next report. Instances reported as stopped
    /// are forgotten afterwards.
    fn report(&mut self) -> Vec<InstanceReport>;
    /// Runs a command in an instance; its output and exit come on the
    /// receiver. An interactive command's input comes on `input`.
    fn exec(
        &mut self,
        command: ExecCommand,
        input: Option<tokio::sync::mpsc::Receiver<vt_wire::messages::ExecInput>>,
    ) -> Result<tokio::sync::mpsc::Receiver<ExecEvent>, String> {
        drop(input);
        Err(format!(
            "the {} runtime cannot run commands in instances (instance {})",
            self.name(),
            command.instance
        ))
    }

    /// Every volume on the host.
    fn volumes(&mut self) -> Vec<VolumeReport> {
        Vec::new()
    }

    /// Deletes an unattached volume.
    fn destroy_volume(&mut self, id: &str) -> Result<(), String> {
        Err(format!("the {} runtime has no volume {id}", self.name()))
    }

    /// Starts stopping every instance (the agent is shutting down); `report`
    /// tells when they are stopped.
    fn shutdown(&mut self) {}

    /// Log lines written since the last call, oldest first.
    fn drain_logs(&mut self) -> Vec<LogLine> {
        Vec::new()
    }
}

/// Helpers for the host's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use vt_plan::WorkloadKey;
    use vt_wire::messages::{Assignment, Desire};

    /// An assignment of a small workload.
    pub(crate) fn assignment(id: &str, desire: Desire) -> Assignment {
        let spec = serde_json::from_value(serde_json::json!({
            "image": "web:1", "command": [], "args": [], "env": {}, "cpu": "250m", "memory": "256Mi",
            "instances": 1, "regions": ["local"], "ports": [], "endpoints": [], "volumes": [], "secrets": [],
            "health": null,
            "rollout": {"strategy": "rolling", "max_surge": 1, "max_unavailable": 0, "progress_deadline": "5m"}
        }))
        .expect("spec");
        Assignment {
            id: id.into(),
            key: WorkloadKey {
                app_id: "a".into(),
                env_id: "e".into(),
            },
            name: "x".into(),
            release: vt_plan::ReleaseNo::FIRST,
            spec,
            slot: None,
            desire,
            secrets: Vec::new(),
        }
    }
}
