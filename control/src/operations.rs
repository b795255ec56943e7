//! What the API asks the controller to do, as one closed enum, and the
//! controller's decisions about it (firecracker's `VmmAction`).
//!
//! An HTTP handler only parses its request into an [`Operation`] and hands it
//! to [`Controller::decide`]; the decision (which instance and host, whether
//! a volume may go, which message its host gets, what event to record) is
//! made here, without sockets or a clock, so the simulator can drive it as
//! the daemon does. The daemon then does the IO the [`Decision`] asks for
//! (sending the host its command, waiting, running the exec) and comes back
//! with what happened ([`Controller::volume_destroyed`]).

use crate::core::Controller;
use crate::filter::matches;
use crate::views::{self, VolumeView};
use vt_plan::events::{kind, Event};
use vt_plan::{Millis, Phase};
use vt_wire::codes::ErrorCode;
use vt_wire::messages::ControllerMessage;

/// A request to the controller that is more than reading a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Delete an unattached volume and its data on its host
    /// (`POST /v1/volumes/destroy`).
    DestroyVolume {
        /// The volume's ID (`vol_...`).
        id: String,
    },
    /// Find where a command runs (`POST /v1/exec`, `GET /v1/exec/attach`).
    RouteExec(ExecTarget),
    /// Refuse a host's or an edge's sessions from now on
    /// (`POST /v1/{hosts,edges}/NAME/revoke`).
    RevokeNode(NodeRef),
    /// Forget a host's or an edge's enrolment, so the name may join again
    /// (`DELETE /v1/{hosts,edges}/NAME`).
    RemoveNode(NodeRef),
}

/// A host or an edge, by role and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// Host or edge.
    pub role: vt_wire::Role,
    /// Its name.
    pub name: String,
}

/// Which instance an exec names: `instance`, else a running one of the
/// app/env.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecTarget {
    /// App name or suffix of its qualified name.
    pub app: String,
    /// Env name.
    pub env: Option<String>,
    /// A specific instance.
    pub instance: Option<String>,
}

/// What the controller decided; the daemon does the IO it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send [`VolumeDestroy::message`] to [`VolumeDestroy::host`], wait until
    /// the host no longer reports the volume, then call
    /// [`Controller::volume_destroyed`].
    DestroyVolume(VolumeDestroy),
    /// Run the exec in this instance on this host.
    RouteExec(ExecRoute),
    /// End the node's open session, then call [`Controller::revoke_node`]
    /// or [`Controller::remove_node`] (`remove`).
    EndSessions {
        /// The node.
        node: NodeRef,
        /// Whether its enrolment is forgotten (else it is revoked).
        remove: bool,
    },
}

/// A volume deletion the controller agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDestroy {
    /// The volume, as it was before the deletion.
    pub volume: VolumeView,
    /// The host that holds it.
    pub host: String,
    /// What to send that host.
    pub message: ControllerMessage,
}

/// Where an exec runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRoute {
    /// The instance.
    pub instance: String,
    /// Its host.
    pub host: String,
    /// Its qualified env name (`org/project/app/env`).
    pub name: String,
}

/// Why the controller refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    /// No volume has this ID.
    #[error("no volume {0}")]
    NoVolume(String),
    /// The volume is in use.
    #[error("volume {id} is attached to instance {instance}")]
    Attached {
        /// The volume's ID.
        id: String,
        /// The instance it is attached to.
        instance: String,
    },
    /// Nothing runs where the exec points (`what`: the instance ID, or the
    /// app and env).
    #[error("no running instance of {what}")]
    NoInstance {
        /// What the request named.
        what: String,
    },
    /// No host or edge of that name is enrolled.
    #[error(transparent)]
    NoNode(#[from] crate::core::NoSuchNode),
}

impl OperationError {
    /// The stable code the API answers.
    pub fn code(&self) -> ErrorCode {
        match self {
            OperationError::NoVolume(_)
            | OperationError::NoInstance { .. }
            | OperationError::NoNode(_) => ErrorCode::NotFound,
            OperationError::Attached { .. } => ErrorCode::Attached,
        }
    }

    /// How to fix it, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            OperationError::Attached { .. } => {
                Some("stop the instance first (remove the volume or the env from the repository)")
            }
            OperationError::NoVolume(_) | OperationError::NoInstance { .. } => None,
            OperationError::NoNode(_) => {
                Some("`vt hosts` lists the hosts, `vt events --kind node.` their enrolments")
            }
        }
    }
}

impl Controller {
    /// Decides an operation; nothing changes until the daemon reports back.
    pub fn decide(&self, operation: &Operation) -> Result<Decision, OperationError> {
        match operation {
            Operation::DestroyVolume { id } => self.destroy_volume(id).map(Decision::DestroyVolume),
            Operation::RouteExec(target) => self.route_exec(target).map(Decision::RouteExec),
            Operation::RevokeNode(node) | Operation::RemoveNode(node) => {
                self.node_record(node.role, &node.name)?;
                Ok(Decision::EndSessions {
                    node: node.clone(),
                    remove: matches!(operation, Operation::RemoveNode(_)),
                })
            }
        }
    }

    /// Whether volume `id` may be destroyed (it exists and is attached to no
    /// instance), and what its host is told.
    pub fn destroy_volume(&self, id: &str) -> Result<VolumeDestroy, OperationError> {
        let volume = self
            .volume(id)
            .ok_or_else(|| OperationError::NoVolume(id.to_string()))?;
        if let Some(instance) = &volume.attached {
            return Err(OperationError::Attached {
                id: volume.id.clone(),
                instance: instance.clone(),
            });
        }
        Ok(VolumeDestroy {
            host: volume.host.clone(),
            message: ControllerMessage::DestroyVolume {
                id: volume.id.as_str().into(),
            },
            volume,
        })
    }

    /// Volume `id` as a host last reported it.
    pub fn volume(&self, id: &str) -> Option<VolumeView> {
        views::volumes(self, None, None)
            .into_iter()
            .find(|v| v.id == id)
    }

    /// The host deleted the volume: records `volume.destroyed`.
    pub fn volume_destroyed(&mut self, done: &VolumeDestroy, now: Millis) {
        let v = &done.volume;
        self.record(
            Event::new(
                kind::VOLUME_DESTROYED,
                now,
                format!(
                    "volume {} ({} of {}) destroyed on {}",
                    v.id, v.name, v.workload, v.host
                ),
            )
            .for_workload(&v.workload)
            .host(&v.host),
        );
    }

    /// Where an exec runs: the named instance, else a healthy one of the
    /// app/env (an unhealthy or starting one when none is healthy), the
    /// lowest ID first; only instances that run.
    pub fn route_exec(&self, target: &ExecTarget) -> Result<ExecRoute, OperationError> {
        let ExecTarget { app, env, instance } = target;
        let mut candidates: Vec<_> = self
            .instances()
            .into_iter()
            .filter(|i| matches(&i.name, app, env.as_deref()))
            .filter(|i| instance.as_ref().is_none_or(|id| &i.instance.id == id))
            .filter(|i| {
                matches!(
                    i.instance.phase,
                    Phase::Healthy | Phase::Unhealthy | Phase::Starting
                )
            })
            .collect();
        candidates.sort_by_key(|i| (i.instance.phase != Phase::Healthy, i.instance.id.clone()));
        candidates
            .into_iter()
            .next()
            .map(|i| ExecRoute {
                instance: i.instance.id.to_string(),
                host: i.instance.host.to_string(),
                name: i.name.clone(),
            })
            .ok_or_else(|| target.not_found())
    }
}

impl ExecTarget {
    /// That nothing runs where it points.
    pub fn not_found(&self) -> OperationError {
        let what = self
            .instance
            .clone()
            .unwrap_or_else(|| format!("{} {}", self.app, self.env.as_deref().unwrap_or_default()));
        OperationError::NoInstance {
            what: what.trim().to_string(),
        }
    }
}

impl Operation {
    /// The error of an operation on something that does not exist, for one
    /// the caller may not see (an org token naming another org's resource).
    pub fn not_found(&self) -> OperationError {
        match self {
            Operation::DestroyVolume { id } => OperationError::NoVolume(id.clone()),
            Operation::RouteExec(target) => target.not_found(),
            Operation::RevokeNode(node) | Operation::RemoveNode(node) => {
                OperationError::NoNode(crate::core::NoSuchNode {
                    role: node.role,
                    name: node.name.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::{CommitOutcome, Config};
    use crate::store::RedbStore;
    use serde_json::json;
    use vt_plan::test_support::{commit, load_files};
    use vt_wire::messages::{HostRegistration, InstanceReport, VolumeReport};

    /// A controller with host h1 running two instances of acme/shop/web/prod
    /// (the higher ID healthy, the other starting) and one of acme/shop/api/prod
    /// (starting).
    fn controller(dir: &std::path::Path) -> Controller {
        let mut c = Controller::open(
            Box::new(RedbStore::open(&dir.join("state.redb")).unwrap()),
            Config::default(),
        )
        .unwrap();
        let reg: HostRegistration = serde_json::from_value(
            json!({"name": "h1", "region": "local", "cpu": 4000, "memory": 8u64 << 30}),
        )
        .unwrap();
        c.register_host(&reg, 1);
        let files = [
            ("vt.yaml", "version: 1\nregions: [{name: local}]\n".to_string()),
            ("orgs/acme/org.yaml", "id: org_01jdq0000000000000000000aa\n".into()),
            ("orgs/acme/shop/project.yaml", "id: prj_01jdq0000000000000000000aa\n".into()),
            (
                "orgs/acme/shop/web/app.yaml",
                "id: app_01jdq0000000000000000000aa\nimage: web:1\ninstances: 2\nresources: {cpu: 100m, memory: 64Mi}\n".into(),
            ),
            ("orgs/acme/shop/web/envs/prod.yaml", "id: env_01jdq0000000000000000000aa\n".into()),
            (
                "orgs/acme/shop/api/app.yaml",
                "id: app_01jdq0000000000000000000bb\nimage: api:1\nresources: {cpu: 100m, memory: 64Mi}\n".into(),
            ),
            ("orgs/acme/shop/api/envs/prod.yaml", "id: env_01jdq0000000000000000000bb\n".into()),
        ];
        let outcome = c.apply_commit(&commit("c1"), &load_files(&files), 1);
        assert!(matches!(outcome, CommitOutcome::Accepted(_)));
        c.tick(2);
        let mut web = c
            .instances()
            .into_iter()
            .filter(|i| i.name == "acme/shop/web/prod")
            .map(|i| i.instance.id)
            .collect::<Vec<_>>();
        web.sort();
        assert_eq!(web.len(), 2, "{:?}", c.instances());
        let api = c
            .instances()
            .into_iter()
            .find(|i| i.name == "acme/shop/api/prod")
            .map(|i| i.instance.id)
            .unwrap();
        // The higher ID is healthy, so "healthy first" is not "lowest ID first".
        let reports: Vec<InstanceReport> = [
            (&web[0], Phase::Starting),
            (&web[1], Phase::Healthy),
            (&api, Phase::Starting),
        ]
        .into_iter()
        .map(|(id, phase)| serde_json::from_value(json!({"id": id, "phase": phase})).unwrap())
        .collect();
        c.report("h1", &reports, 3);
        c
    }

    fn running(c: &Controller, app: &str, phase: Phase) -> String {
        c.instances()
            .into_iter()
            .find(|i| i.name.contains(app) && i.instance.phase == phase)
            .map(|i| i.instance.id.to_string())
            .unwrap()
    }

    fn target(app: &str, env: Option<&str>, instance: Option<&str>) -> Operation {
        Operation::RouteExec(ExecTarget {
            app: app.into(),
            env: env.map(Into::into),
            instance: instance.map(Into::into),
        })
    }

    #[test]
    fn an_exec_goes_to_a_healthy_instance_or_the_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let healthy = running(&c, "/web/", Phase::Healthy);
        let starting = running(&c, "/web/", Phase::Starting);
        let route = |op: Operation| match c.decide(&op) {
            Ok(Decision::RouteExec(r)) => Ok(r),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        for op in [
            target("web", None, None),
            target("shop/web", Some("prod"), None),
        ] {
            assert_eq!(
                route(op),
                Ok(ExecRoute {
                    instance: healthy.clone(),
                    host: "h1".into(),
                    name: "acme/shop/web/prod".into(),
                })
            );
        }
        assert_eq!(
            route(target("web", None, Some(&starting))).map(|r| r.instance),
            Ok(starting)
        );
        // With no healthy instance, a starting one.
        let api = running(&c, "/api/", Phase::Starting);
        assert_eq!(
            route(target("api", None, None)).map(|r| r.instance),
            Ok(api)
        );
    }

    #[test]
    fn an_exec_where_nothing_runs_is_refused_with_what_it_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let refused = |op: Operation| c.decide(&op).unwrap_err();
        let e = refused(target("web", Some("dev"), None));
        assert_eq!(e.to_string(), "no running instance of web dev");
        assert_eq!((e.code(), e.hint()), (ErrorCode::NotFound, None));
        assert_eq!(
            refused(target("db", None, None)).to_string(),
            "no running instance of db"
        );
        assert_eq!(
            refused(target("web", None, Some("inst_nope"))).to_string(),
            "no running instance of inst_nope"
        );
    }

    #[test]
    fn only_an_unattached_volume_is_destroyed_and_its_host_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        let web = running(&c, "/web/", Phase::Healthy);
        let key = c
            .instances()
            .into_iter()
            .find(|i| i.instance.id == web)
            .unwrap()
            .instance
            .key;
        let volume = |id: &str, attached: Option<&str>| VolumeReport {
            id: id.into(),
            key: key.clone(),
            name: "data".into(),
            slot: Some(0),
            size: 1 << 20,
            used: 4096,
            attached: attached.map(Into::into),
            path: format!("/var/lib/vt/host/volumes/{id}"),
        };
        c.host_volumes(
            "h1",
            vec![volume("vol_a", Some(&web)), volume("vol_b", None)],
        );

        let destroy =
            |c: &Controller, id: &str| c.decide(&Operation::DestroyVolume { id: id.into() });
        let e = destroy(&c, "vol_nope").unwrap_err();
        assert_eq!(
            (e.to_string(), e.code()),
            ("no volume vol_nope".to_string(), ErrorCode::NotFound)
        );
        let e = destroy(&c, "vol_a").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("volume vol_a is attached to instance {web}")
        );
        assert_eq!(e.code(), ErrorCode::Attached);
        assert!(e.hint().is_some_and(|h| h.contains("stop the instance")));

        let Ok(Decision::DestroyVolume(done)) = destroy(&c, "vol_b") else {
            panic!("vol_b is not attached");
        };
        assert_eq!(done.host, "h1");
        assert_eq!(
            done.message,
            ControllerMessage::DestroyVolume { id: "vol_b".into() }
        );
        assert_eq!(done.volume.workload, "acme/shop/web/prod");
        // Deciding changes nothing: the volume is there until its host says so.
        assert!(c.volume("vol_b").is_some());
        c.flush().unwrap();

        c.host_volumes("h1", vec![volume("vol_a", Some(&web))]);
        assert!(c.volume("vol_b").is_none());
        c.volume_destroyed(&done, 10);
        let events = c.flush().unwrap();
        let event = events
            .iter()
            .find(|e| e.kind == kind::VOLUME_DESTROYED)
            .unwrap();
        assert_eq!(
            (event.time, event.message.as_str()),
            (
                10,
                "volume vol_b (data of acme/shop/web/prod) destroyed on h1"
            )
        );
    }
}
