//! The controller's memory behind one seam, [`Store`]: records (JSON under
//! `kind/...` keys), events by sequence number, and log lines, changed in
//! [`Batch`]es written in one transaction. [`RedbStore`] keeps them in a
//! local redb file (the default, and `vt dev`'s); another engine (etcd, for a
//! highly available control plane) implements the same trait. Git is the
//! source of truth; everything here can be rebuilt from git history plus
//! host reports.

mod redb;

pub use self::redb::RedbStore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use vt_plan::events::{Event, EventFilter};
use vt_wire::messages::LogLine;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (a second controller) has the state open.
    #[error("{0} is in use by another controller; stop it first or use another --state-dir")]
    AlreadyOpen(PathBuf),
    /// The file is not a redb database or is damaged.
    #[error("{path} is corrupted and was left untouched ({detail}); restore it from a backup or move it away to rebuild from git")]
    Corrupted {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// Any other database failure.
    #[error("the state database failed")]
    Db(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A record did not (de)serialize.
    #[error("record `{key}` is not valid")]
    Record {
        /// Its key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// A set of changes written in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    puts: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
    events: Vec<Event>,
    expired: Vec<u64>,
}

impl Batch {
    /// Stores `value` under `key`.
    pub fn put<T: Serialize>(&mut self, key: impl Into<String>, value: &T) {
        let key = key.into();
        let bytes =
            serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("records serialize: {e}"));
        self.deletes.retain(|k| *k != key);
        self.puts.push((key, bytes));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<String>) {
        let key = key.into();
        self.puts.retain(|(k, _)| *k != key);
        self.deletes.push(key);
    }

    /// Appends an event (its `seq` must be set).
    pub fn event(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Takes back an event of this batch, if it is one; `false` when it is
    /// not here (it was written by an earlier batch).
    pub fn unsend_event(&mut self, seq: u64) -> bool {
        let before = self.events.len();
        self.events.retain(|e| e.seq != seq);
        self.events.len() != before
    }

    /// Deletes events by sequence number.
    pub fn expire(&mut self, seqs: Vec<u64>) {
        self.expired.extend(seqs);
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.events.is_empty()
            && self.expired.is_empty()
    }
}

/// Where the controller's state lives. Implementations keep records, events
/// and log lines and apply a [`Batch`] all or nothing; the typed helpers
/// ([`scan`](Store::scan), [`get`](Store::get), [`logs`](Store::logs),
/// [`prune_logs`](Store::prune_logs)) sit on top of the raw methods.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Every record whose key starts with `prefix`, in key order, as stored.
    fn scan_raw(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// One record, as stored.
    fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes a batch in one transaction: all of it or nothing.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;

    /// Events passing `filter`, oldest first, at most `limit` (the newest ones).
    fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// The sequence number of the newest event, 0 when there is none.
    fn last_event_seq(&self) -> Result<u64, StoreError>;

    /// Appends log lines, keeping at most `keep` lines in all (the oldest go).
    fn append_logs(&self, lines: &[LogLine], keep: u64) -> Result<(), StoreError>;

    /// Deletes the log lines `expired` says are too old.
    fn delete_logs(&self, expired: &dyn Fn(&LogLine) -> bool) -> Result<(), StoreError>;

    /// Log lines after `after` passing `keep`, oldest first, at most `limit`
    /// (the newest ones), with their sequence numbers.
    fn read_logs(
        &self,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&LogLine) -> bool,
    ) -> Result<Vec<(u64, LogLine)>, StoreError>;
}

impl dyn Store + '_ {
    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        self.scan_raw(prefix)?
            .into_iter()
            .map(|(key, bytes)| {
                let record = decode(&key, &bytes)?;
                Ok((key, record))
            })
            .collect()
    }

    /// One record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.get_raw(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Deletes the log lines `expired` says are too old.
    pub fn prune_logs(&self, expired: impl Fn(&LogLine) -> bool) -> Result<(), StoreError> {
        self.delete_logs(&expired)
    }

    /// Log lines after `after` passing `keep`, oldest first, at most `limit`
    /// (the newest ones), with their sequence numbers.
    pub fn logs(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&LogLine) -> bool,
    ) -> Result<Vec<(u64, LogLine)>, StoreError> {
        self.read_logs(after, limit, &keep)
    }
}

/// A stored record, decoded.
fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Record {
        key: key.into(),
        source,
    })
}
