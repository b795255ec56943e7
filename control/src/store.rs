//! The controller's memory in redb: one table of JSON records under
//! `kind/...` keys, and one of events by sequence number. Git is the source of
//! truth; everything here can be rebuilt from git history plus host reports.

use redb::ReadableTable;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use vt_plan::events::{Event, EventFilter};
use vt_wire::messages::LogLine;

const RECORDS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("records");
const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const LOGS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("logs");

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
    Db(#[source] Box<redb::Error>),
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

/// The redb database.
pub struct Store {
    db: redb::Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the database at `path`. Refuses a database another
    /// process has open, and never resets a corrupted one.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen(path.into()),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock =>
            {
                StoreError::AlreadyOpen(path.into())
            }
            other => StoreError::Corrupted {
                path: path.into(),
                detail: other.to_string(),
            },
        })?;
        Self::init(db)
    }

    /// A database in memory, for the simulator and tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::init(db)
    }

    fn init(db: redb::Database) -> Result<Store, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(RECORDS).map_err(db_err)?;
        txn.open_table(EVENTS).map_err(db_err)?;
        txn.open_table(LOGS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Store { db })
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            let record =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Record {
                    key: key.into(),
                    source,
                })?;
            out.push((key.to_string(), record));
        }
        Ok(out)
    }

    /// One record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let Some(value) = table.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|source| StoreError::Record {
                key: key.into(),
                source,
            })
    }

    /// Writes a batch in one transaction: all of it or nothing.
    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(db_err)?;
            for key in &batch.deletes {
                records.remove(key.as_str()).map_err(db_err)?;
            }
            for (key, value) in &batch.puts {
                records
                    .insert(key.as_str(), value.as_slice())
                    .map_err(db_err)?;
            }
            let mut events = txn.open_table(EVENTS).map_err(db_err)?;
            for event in &batch.events {
                let bytes = serde_json::to_vec(event)
                    .unwrap_or_else(|e| unreachable!("events serialize: {e}"));
                events.insert(event.seq, bytes.as_slice()).map_err(db_err)?;
            }
            for seq in &batch.expired {
                events.remove(*seq).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Events passing `filter`, oldest first, at most `limit` (the newest ones).
    pub fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(EVENTS).map_err(db_err)?;
        let start = filter.after.map_or(0, |a| a + 1);
        let mut out = Vec::new();
        for item in table.range(start..).map_err(db_err)?.rev() {
            let (seq, value) = item.map_err(db_err)?;
            let event: Event =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Record {
                    key: format!("event {}", seq.value()),
                    source,
                })?;
            if filter.matches(&event) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Appends log lines, keeping at most `keep` lines in all (the oldest go).
    pub fn append_logs(&self, lines: &[LogLine], keep: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(db_err)?;
            let mut next = table
                .last()
                .map_err(db_err)?
                .map_or(1, |(seq, _)| seq.value() + 1);
            for line in lines {
                let bytes = serde_json::to_vec(line)
                    .unwrap_or_else(|e| unreachable!("log lines serialize: {e}"));
                table.insert(next, bytes.as_slice()).map_err(db_err)?;
                next += 1;
            }
            let first = table
                .first()
                .map_err(db_err)?
                .map_or(next, |(seq, _)| seq.value());
            if next.saturating_sub(first) > keep {
                let cut = next - keep;
                table.retain_in(..cut, |_, _| false).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Deletes the log lines `expired` says are too old.
    pub fn prune_logs(&self, expired: impl Fn(&LogLine) -> bool) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(db_err)?;
            table
                .retain(|_, value| {
                    serde_json::from_slice::<LogLine>(value).map_or(true, |line| !expired(&line))
                })
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Log lines passing `keep`, oldest first, at most `limit` (the newest
    /// ones), with their sequence numbers.
    pub fn logs(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&LogLine) -> bool,
    ) -> Result<Vec<(u64, LogLine)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(LOGS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.range(after + 1..).map_err(db_err)?.rev() {
            let (seq, value) = item.map_err(db_err)?;
            let line: LogLine =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Record {
                    key: format!("log {}", seq.value()),
                    source,
                })?;
            if keep(&line) {
                out.push((seq.value(), line));
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The sequence number of the newest event, 0 when there is none.
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(EVENTS).map_err(db_err)?;
        let last = table.last().map_err(db_err)?;
        Ok(last.map_or(0, |(seq, _)| seq.value()))
    }
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_plan::events::kind;

    #[test]
    fn records_and_events_round_trip() {
        let store = Store::in_memory().expect("store");
        let mut batch = Batch::default();
        batch.put("host/h1", &"one");
        batch.put("host/h2", &"two");
        batch.put("inst/i1", &"x");
        for seq in 1..=3 {
            batch.event(Event {
                seq,
                ..Event::new(kind::HOST_LOST, seq, "lost")
            });
        }
        store.write(batch).expect("write");
        let hosts: Vec<(String, String)> = store.scan("host/").expect("scan");
        assert_eq!(
            hosts.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(store.last_event_seq().expect("seq"), 3);
        let filter = EventFilter {
            after: Some(1),
            ..EventFilter::default()
        };
        assert_eq!(store.events(&filter, 10).expect("events").len(), 2);
        assert_eq!(
            store.events(&EventFilter::default(), 1).expect("events")[0].seq,
            3
        );
    }

    #[test]
    fn log_lines_are_capped_and_pruned_by_age() {
        let store = Store::in_memory().expect("store");
        let line = |time: u64| LogLine {
            instance: "ins_1".into(),
            name: "acme/shop/web/prod".into(),
            stream: "stdout".into(),
            time,
            line: format!("at {time}"),
        };
        store
            .append_logs(&(0..10).map(line).collect::<Vec<_>>(), 8)
            .expect("append");
        let kept: Vec<u64> = store
            .logs(0, 100, |_| true)
            .expect("logs")
            .into_iter()
            .map(|(_, l)| l.time)
            .collect();
        assert_eq!(
            kept,
            (2..10).collect::<Vec<_>>(),
            "at most 8 lines, the oldest go"
        );
        store.prune_logs(|l| l.time < 5).expect("prune");
        let kept: Vec<u64> = store
            .logs(0, 100, |_| true)
            .expect("logs")
            .into_iter()
            .map(|(_, l)| l.time)
            .collect();
        assert_eq!(kept, (5..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_second_opener_is_refused_and_corruption_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let _first = Store::open(&path).expect("open");
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::AlreadyOpen(_))
        ));

        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, vec![7u8; 8192]).expect("write");
        let err = Store::open(&bad).expect_err("corrupted");
        assert!(err.to_string().contains("bad.redb"), "{err}");
        assert_eq!(
            std::fs::read(&bad).expect("read"),
            vec![7u8; 8192],
            "left untouched"
        );
    }
}
