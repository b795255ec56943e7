//! [`RedbStore`]: the controller's state in a local redb file, one table of
//! records, one of events by sequence number, one of log lines.

use super::{Batch, Store, StoreError};
use redb::ReadableTable;
use std::path::Path;
use vt_plan::events::{Event, EventFilter};
use vt_wire::messages::LogLine;

const RECORDS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("records");
const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const LOGS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("logs");

/// The redb database.
pub struct RedbStore {
    db: redb::Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

impl RedbStore {
    /// Opens (or creates) the database at `path`. Refuses a database another
    /// process has open, and never resets a corrupted one.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
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
    pub fn in_memory() -> Result<RedbStore, StoreError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::init(db)
    }

    fn init(db: redb::Database) -> Result<RedbStore, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(RECORDS).map_err(db_err)?;
        txn.open_table(EVENTS).map_err(db_err)?;
        txn.open_table(LOGS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    /// Every record whose key starts with `prefix`, in key order.
    fn scan_raw(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_string(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// One record.
    fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let value = table.get(key).map_err(db_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Writes a batch in one transaction: all of it or nothing.
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
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
    fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError> {
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
    fn append_logs(&self, lines: &[LogLine], keep: u64) -> Result<(), StoreError> {
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
    fn delete_logs(&self, expired: &dyn Fn(&LogLine) -> bool) -> Result<(), StoreError> {
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
    fn read_logs(
        &self,
        after: u64,
        limit: usize,
        keep: &dyn Fn(&LogLine) -> bool,
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
    fn last_event_seq(&self) -> Result<u64, StoreError> {
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
        let store: Box<dyn Store> = Box::new(RedbStore::in_memory().expect("store"));
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
        let store: Box<dyn Store> = Box::new(RedbStore::in_memory().expect("store"));
        let line = |time: u64| LogLine {
            instance: "ins_1".into(),
            name: "acme/shop/web/prod".into(),
            stream: vt_wire::messages::Stream::Stdout,
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
        let _first = RedbStore::open(&path).expect("open");
        assert!(matches!(
            RedbStore::open(&path),
            Err(StoreError::AlreadyOpen(_))
        ));

        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, vec![7u8; 8192]).expect("write");
        let err = RedbStore::open(&bad).expect_err("corrupted");
        assert!(err.to_string().contains("bad.redb"), "{err}");
        assert_eq!(
            std::fs::read(&bad).expect("read"),
            vec![7u8; 8192],
            "left untouched"
        );
    }
}
