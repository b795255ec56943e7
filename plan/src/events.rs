//! Events: what happened in the fleet, for people (`vt events`) and machines.
//! Each has a stable ID, a time, the resources it concerns, a human message
//! and structured fields. Retention is a pure function of the events, the
//! orgs' policies and the time.

use crate::{Millis, ReleaseNo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Kinds of event, as `commit.rejected`-style strings.
pub mod kind {
    /// A commit validated and became the desired state.
    pub const COMMIT_ACCEPTED: &str = "commit.accepted";
    /// A commit did not validate; the previous desired state stays.
    pub const COMMIT_REJECTED: &str = "commit.rejected";
    /// The git source could not be read (unreachable remote, ...).
    pub const SOURCE_FAILED: &str = "source.failed";
    /// The tracked branch moved to a commit that does not contain its
    /// previous head (a force-push or a reset).
    pub const COMMIT_REWOUND: &str = "commit.rewound";
    /// The tracked branch disappeared: nothing deploys until it returns.
    pub const BRANCH_MISSING: &str = "branch.missing";
    /// The tracked branch exists again.
    pub const BRANCH_RESTORED: &str = "branch.restored";
    /// A new release of an (app, env).
    pub const RELEASE_CREATED: &str = "release.created";
    /// An (app, env) was removed from the repository.
    pub const WORKLOAD_REMOVED: &str = "workload.removed";
    /// An instance was placed on a host.
    pub const INSTANCE_PLACED: &str = "instance.placed";
    /// An instance could not be placed.
    pub const INSTANCE_UNPLACEABLE: &str = "instance.unplaceable";
    /// An instance waits (for a lost host holding its volume, ...).
    pub const INSTANCE_WAITING: &str = "instance.waiting";
    /// An instance was told to stop.
    pub const INSTANCE_STOPPING: &str = "instance.stopping";
    /// A host reported a new phase for an instance.
    pub const INSTANCE_PHASE: &str = "instance.phase";
    /// An instance's app ended and its host restarts it (with backoff).
    pub const INSTANCE_CRASHED: &str = "instance.crashed";
    /// A volume was destroyed on request (`vt volumes destroy`).
    pub const VOLUME_DESTROYED: &str = "volume.destroyed";
    /// A host reported an instance the controller does not know.
    pub const INSTANCE_UNKNOWN: &str = "instance.unknown";
    /// A host registered (or came back).
    pub const HOST_REGISTERED: &str = "host.registered";
    /// A host missed its heartbeats.
    pub const HOST_LOST: &str = "host.lost";
    /// A rollout began.
    pub const ROLLOUT_STARTED: &str = "rollout.started";
    /// A rollout made progress.
    pub const ROLLOUT_PROGRESSED: &str = "rollout.progressed";
    /// A rollout finished.
    pub const ROLLOUT_COMPLETED: &str = "rollout.completed";
    /// A rollout halted at its progress deadline.
    pub const ROLLOUT_HALTED: &str = "rollout.halted";
    /// An endpoint got its addresses (or an IPv4 address was added).
    pub const ENDPOINT_ALLOCATED: &str = "endpoint.allocated";
    /// An endpoint's address was freed (it left the repository, or dropped IPv4).
    pub const ENDPOINT_RELEASED: &str = "endpoint.released";
    /// No address could be allocated for an endpoint.
    pub const ENDPOINT_UNALLOCATED: &str = "endpoint.unallocated";
    /// An edge listens on an endpoint's addresses.
    pub const ENDPOINT_LISTENING: &str = "endpoint.listening";
    /// An edge stopped listening on an endpoint (or could not bind it).
    pub const ENDPOINT_CLOSED: &str = "endpoint.closed";
    /// An endpoint has no healthy instance behind it any more, or has one again.
    pub const ENDPOINT_BACKENDS: &str = "endpoint.backends";
    /// An edge connected to the controller.
    pub const EDGE_CONNECTED: &str = "edge.connected";
    /// An edge's session ended.
    pub const EDGE_DISCONNECTED: &str = "edge.disconnected";
    /// A place's instances failed before becoming healthy: it backs off.
    pub const INSTANCE_BACKOFF: &str = "instance.backoff";
    /// A host or an edge enrolled with a join token.
    pub const NODE_ENROLLED: &str = "node.enrolled";
    /// A join was refused (a token used before, a name enrolled already).
    pub const NODE_REFUSED: &str = "node.refused";
    /// A host or an edge renewed its certificate over its session.
    pub const NODE_RENEWED: &str = "node.renewed";
    /// An operator revoked a host or an edge: its sessions are refused.
    pub const NODE_REVOKED: &str = "node.revoked";
    /// An operator removed a host's or an edge's enrolment: the name may join again.
    pub const NODE_REMOVED: &str = "node.removed";
    /// A mutating API call, or an exec, was made (who, what, outcome, how long).
    pub const AUDIT_CALL: &str = "audit.call";
    /// An exec session ended (who, which instance, the command, how long, its exit).
    pub const AUDIT_EXEC: &str = "audit.exec";
    /// An API call was refused: no, a wrong or a revoked token, or too little capability.
    pub const AUDIT_DENIED: &str = "audit.denied";
    /// An API token was created.
    pub const AUDIT_TOKEN_CREATED: &str = "audit.token.created";
    /// An API token was revoked.
    pub const AUDIT_TOKEN_REVOKED: &str = "audit.token.revoked";
}

/// Repeats of an event within this long of its last occurrence are counted
/// on it rather than recorded anew.
pub const AGGREGATE_WINDOW: Millis = 10 * 60 * 1_000;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable ID, `evt_<sequence>`.
    pub id: String,
    /// Position in the controller's event log; grows by one per event.
    pub seq: u64,
    /// When it happened (Unix milliseconds).
    pub time: Millis,
    /// What happened, e.g. `commit.rejected`.
    pub kind: String,
    /// Org name, when it concerns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Qualified app name (`acme/shop/web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Env name (`prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Release number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseNo>,
    /// Instance ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Host ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For people.
    pub message: String,
    /// Why, without the IDs and counters of the message: events of one kind
    /// and object with the same reason are repeats ([`Event::aggregation_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many times it happened (repeats within [`AGGREGATE_WINDOW`] of
    /// each other count here; `time` is the last one).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// When it first happened, for a repeated event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time: Option<Millis>,
    /// Structured details.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub fields: Value,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// What makes two events repeats of each other: see [`Event::aggregation_key`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregationKey {
    kind: String,
    app: Option<String>,
    env: Option<String>,
    release: Option<ReleaseNo>,
    host: Option<String>,
    instance: Option<String>,
    reason: String,
}

impl Event {
    /// A new event; `seq` and `id` are set when it is recorded.
    pub fn new(kind: &str, time: Millis, message: impl Into<String>) -> Self {
        Event {
            id: String::new(),
            seq: 0,
            time,
            kind: kind.into(),
            org: None,
            app: None,
            env: None,
            release: None,
            instance: None,
            host: None,
            message: message.into(),
            reason: None,
            count: 1,
            first_time: None,
            fields: Value::Null,
        }
    }

    /// Sets the reason: what repeats of this event share (see
    /// [`Event::aggregation_key`]).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// For an event about an instance that is part of a failure loop (its
    /// place backs off): its reason is the message without the instance ID,
    /// so the loop's instances, which come and go for the same cause, make
    /// one event with a count.
    pub fn across_instances(mut self, loop_member: bool) -> Self {
        if loop_member && self.reason.is_none() {
            if let Some(id) = &self.instance {
                self.reason = Some(self.message.replace(id.as_str(), "…"));
            }
        }
        self
    }

    /// Kind, workload, release, host, object and reason: events with the
    /// same key are repeats, as Kubernetes aggregates events by object and
    /// reason. The object is the instance, unless the event has an explicit
    /// reason ([`Event::reason`], [`Event::across_instances`]): then it is
    /// the workload, so a failure whose instances differ each time is still
    /// one event.
    pub fn aggregation_key(&self) -> AggregationKey {
        let (instance, reason) = match &self.reason {
            Some(r) => (None, r.clone()),
            None => (self.instance.clone(), self.message.clone()),
        };
        AggregationKey {
            kind: self.kind.clone(),
            app: self.app.clone(),
            env: self.env.clone(),
            release: self.release,
            host: self.host.clone(),
            instance,
            reason,
        }
    }

    /// Sets org, app and env from a qualified env name `org/project/app/env`.
    pub fn for_workload(mut self, qualified_env: &str) -> Self {
        if let Some((app, env)) = qualified_env.rsplit_once('/') {
            self.app = Some(app.to_string());
            self.env = Some(env.to_string());
            self.org = app.split('/').next().map(str::to_string);
        }
        self
    }

    /// Sets the release.
    pub fn release(mut self, release: ReleaseNo) -> Self {
        self.release = Some(release);
        self
    }

    /// Sets the instance.
    pub fn instance(mut self, id: &str) -> Self {
        self.instance = Some(id.to_string());
        self
    }

    /// Sets the host.
    pub fn host(mut self, id: &str) -> Self {
        self.host = Some(id.to_string());
        self
    }

    /// Sets the structured fields.
    pub fn fields(mut self, fields: Value) -> Self {
        self.fields = fields;
        self
    }
}

/// A filter over events (`vt events --app --env --kind --since`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Qualified app name or a suffix of it (`web`, `shop/web`).
    #[serde(default)]
    pub app: Option<String>,
    /// Env name.
    #[serde(default)]
    pub env: Option<String>,
    /// Kind, or a prefix ending in `.` (`rollout.`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Only events with a larger sequence number.
    #[serde(default)]
    pub after: Option<u64>,
    /// Only events at or after this time.
    #[serde(default)]
    pub since: Option<Millis>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        let app_ok = self.app.as_ref().is_none_or(|want| {
            event
                .app
                .as_ref()
                .is_some_and(|app| app == want || app.ends_with(&format!("/{want}")))
        });
        let env_ok = self
            .env
            .as_ref()
            .is_none_or(|want| event.env.as_ref() == Some(want));
        let kind_ok = self.kind.as_ref().is_none_or(|want| {
            &event.kind == want || (want.ends_with('.') && event.kind.starts_with(want.as_str()))
        });
        app_ok
            && env_ok
            && kind_ok
            && self.after.is_none_or(|after| event.seq > after)
            && self.since.is_none_or(|since| event.time >= since)
    }
}

/// An org's event retention, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Drop events older than this.
    pub max_age: Option<Millis>,
    /// Keep at most this many events.
    pub max_count: Option<u64>,
}

/// Retention for events that concern no org (and orgs without a policy).
pub const DEFAULT_RETENTION: Retention = Retention {
    max_age: Some(30 * 24 * 3_600_000),
    max_count: Some(100_000),
};

/// The sequence numbers of events to delete: per org (events without an org
/// use the default), those older than `max_age` and the oldest beyond `max_count`.
pub fn expired(events: &[Event], policies: &BTreeMap<String, Retention>, now: Millis) -> Vec<u64> {
    let mut by_org: BTreeMap<Option<&str>, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_org.entry(e.org.as_deref()).or_default().push(e);
    }
    let mut out = Vec::new();
    for (org, mut list) in by_org {
        let policy = org
            .and_then(|o| policies.get(o))
            .copied()
            .unwrap_or(DEFAULT_RETENTION);
        list.sort_by_key(|e| e.seq);
        let excess = policy.max_count.map_or(0, |max| {
            list.len()
                .saturating_sub(usize::try_from(max).unwrap_or(usize::MAX))
        });
        for (i, e) in list.iter().enumerate() {
            let too_old = policy
                .max_age
                .is_some_and(|age| now.saturating_sub(e.time) > age);
            if i < excess || too_old {
                out.push(e.seq);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, time: Millis, org: Option<&str>) -> Event {
        Event {
            seq,
            org: org.map(str::to_string),
            ..Event::new(kind::HOST_LOST, time, "x")
        }
    }

    #[test]
    fn retention_by_age_and_count_per_org() {
        let events = [
            event(1, 0, Some("a")),
            event(2, 50, Some("a")),
            event(3, 90, Some("a")),
            event(4, 0, None),
        ];
        let policies = BTreeMap::from([(
            "a".to_string(),
            Retention {
                max_age: Some(60),
                max_count: Some(1),
            },
        )]);
        assert_eq!(expired(&events, &policies, 100), [1, 2]);
    }

    #[test]
    fn repeats_share_a_key_per_object_and_a_failure_loop_across_instances() {
        let failed = |id: &str, host: &str, why: &str| {
            Event::new(
                kind::INSTANCE_PHASE,
                0,
                format!("instance {id} on {host}: starting → failed: {why}"),
            )
            .for_workload("acme/shop/web/prod")
            .release(ReleaseNo::new(2))
            .instance(id)
            .host(host)
        };
        let a = failed("ins_000001", "h1", "not found");
        // Two instances are two objects, unless they are one failure loop.
        assert_ne!(
            a.aggregation_key(),
            failed("ins_000002", "h1", "not found").aggregation_key()
        );
        assert_eq!(a.aggregation_key(), a.clone().aggregation_key());
        let looping = |e: Event| e.across_instances(true).aggregation_key();
        assert_eq!(
            looping(a.clone()),
            looping(failed("ins_000002", "h1", "not found"))
        );
        assert_ne!(
            looping(a.clone()),
            looping(failed("ins_000002", "h1", "timeout"))
        );
        assert_ne!(
            looping(a.clone()),
            looping(failed("ins_000001", "h2", "not found"))
        );
        let crashed = |n: u32| {
            Event::new(kind::INSTANCE_CRASHED, 0, format!("crashed (restart {n})")).reason("exit 1")
        };
        assert_eq!(crashed(1).aggregation_key(), crashed(2).aggregation_key());
    }

    #[test]
    fn a_single_event_serializes_without_count_and_a_repeat_with_it() {
        let e = Event::new(kind::HOST_LOST, 5, "x");
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert!(json.get("count").is_none() && json.get("first_time").is_none());
        let back: Event = serde_json::from_value(json).unwrap_or_else(|_| e.clone());
        assert_eq!(back.count, 1);
        let repeated = Event {
            count: 3,
            first_time: Some(1),
            ..e
        };
        let json = serde_json::to_value(&repeated).unwrap_or_default();
        assert_eq!(
            (json["count"].as_u64(), json["first_time"].as_u64()),
            (Some(3), Some(1))
        );
    }

    #[test]
    fn filters() {
        let e = Event::new(kind::ROLLOUT_STARTED, 10, "x").for_workload("acme/shop/web/prod");
        assert_eq!(
            (e.org.as_deref(), e.app.as_deref(), e.env.as_deref()),
            (Some("acme"), Some("acme/shop/web"), Some("prod"))
        );
        let f = |app: &str, kind: &str| EventFilter {
            app: Some(app.into()),
            kind: Some(kind.into()),
            ..EventFilter::default()
        };
        assert!(f("web", "rollout.").matches(&e));
        assert!(f("shop/web", "rollout.started").matches(&e));
        assert!(!f("api", "rollout.").matches(&e));
        assert!(!f("web", "host.").matches(&e));
    }
}
