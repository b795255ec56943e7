//! The controller's journal: the store writes made since the last flush
//! (written in one transaction) and the events recorded with them, repeats
//! folded into one event with a count. A field of its own, apart from the
//! records, so that recording an event borrows only the journal while a
//! record is being changed.

use crate::store::Batch;
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::info;
use vt_plan::events::{self, AggregationKey, Event};
use vt_plan::{Millis, ReleaseNo};

/// The last occurrence of a recent event.
#[derive(Debug, Clone, Copy)]
struct Repeat {
    seq: u64,
    first: Millis,
    count: u32,
    last: Millis,
}

/// Writes and events since the last flush.
#[derive(Debug, Default)]
pub(super) struct Journal {
    batch: Batch,
    events: Vec<Event>,
    next_event: u64,
    repeats: BTreeMap<AggregationKey, Repeat>,
}

impl Journal {
    /// A journal whose next event gets sequence number `next_event`.
    pub(super) fn new(next_event: u64) -> Journal {
        Journal {
            next_event,
            ..Journal::default()
        }
    }

    /// Stores `value` under `key` at the next flush.
    pub(super) fn put<T: Serialize>(&mut self, key: impl Into<String>, value: &T) {
        self.batch.put(key, value);
    }

    /// Deletes `key` at the next flush.
    pub(super) fn delete(&mut self, key: impl Into<String>) {
        self.batch.delete(key);
    }

    /// Deletes events by sequence number at the next flush.
    pub(super) fn expire(&mut self, seqs: Vec<u64>) {
        self.batch.expire(seqs);
    }

    /// Records an event. A repeat of a recent one (same
    /// [`Event::aggregation_key`], within [`events::AGGREGATE_WINDOW`] of its
    /// last occurrence) replaces it: the new event carries the count and the
    /// first time, under a new sequence number, so followers see it again.
    pub(super) fn emit(&mut self, mut event: Event) {
        event.seq = self.next_event;
        event.id = format!("evt_{}", self.next_event);
        self.next_event += 1;
        let key = event.aggregation_key();
        if let Some(r) = self.repeats.get(&key).copied() {
            if event.time.saturating_sub(r.last) <= events::AGGREGATE_WINDOW {
                event.count = r.count.saturating_add(1);
                event.first_time = Some(r.first);
                if self.batch.unsend_event(r.seq) {
                    self.events.retain(|e| e.seq != r.seq);
                } else {
                    self.batch.expire(vec![r.seq]);
                }
            }
        }
        let repeat = Repeat {
            seq: event.seq,
            first: event.first_time.unwrap_or(event.time),
            count: event.count,
            last: event.time,
        };
        self.repeats.insert(key, repeat);
        info!(kind = %event.kind, app = event.app.as_deref(), env = event.env.as_deref(), release = event.release.map(ReleaseNo::get), instance = event.instance.as_deref(), host = event.host.as_deref(), count = event.count, "{}", event.message);
        self.batch.event(event.clone());
        self.events.push(event);
    }

    /// Forgets occurrences too old to be repeated at `now`.
    pub(super) fn forget_repeats(&mut self, now: Millis) {
        self.repeats
            .retain(|_, r| now.saturating_sub(r.last) <= events::AGGREGATE_WINDOW);
    }

    /// What to write, and the events recorded, since the last flush.
    pub(super) fn take(&mut self) -> (Batch, Vec<Event>) {
        (
            std::mem::take(&mut self.batch),
            std::mem::take(&mut self.events),
        )
    }
}
