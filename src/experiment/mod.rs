//! Experiment data: the log of every effective-presence change (`msc/README.md` §8), bounded by
//! age and size, exported as JSON Lines or CSV, and streamed live to the console.
//!
//! Appending costs O(1) amortised (expired records are dropped from the front as new ones
//! arrive); there is no scan per tick. The log is served from memory and written behind to
//! the `presence_changes` table in batches, so a restart keeps it (within the same bounds).
use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::presence::observe::{ChangeCause, ChangeObserver, EffectiveChange};
use crate::presence::DeviceKind;
use crate::rooms::now_ms;
use crate::store::{ChangeRow, Store};
use std::sync::Arc;

/// One row of the export (schema in `msc/README.md` §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRecord {
    /// Increasing number of the change within this run.
    pub seq: u64,
    #[serde(flatten)]
    pub change: EffectiveChange,
}

pub const CSV_HEADER: &str = "seq,ts,user_id,old,new,cause,device_kinds,hidden\n";

impl ChangeRecord {
    /// One CSV line; `device_kinds` joined by `;`. User ids may hold a comma or quote, so
    /// that field is quoted as RFC 4180 says.
    pub fn csv_line(&self) -> String {
        let c = &self.change;
        let kinds: Vec<&str> = c.device_kinds.iter().map(|k: &DeviceKind| k.as_str()).collect();
        format!(
            "{},{},\"{}\",{},{},{},{},{}\n",
            self.seq,
            c.ts,
            c.user_id.replace('"', "\"\""),
            c.old,
            c.new,
            c.cause.as_str(),
            kinds.join(";"),
            c.hidden
        )
    }
}

/// The change log and its live feed.
pub struct ChangeLog {
    records: Mutex<(u64, VecDeque<ChangeRecord>)>,
    retention_ms: i64,
    max_records: usize,
    feed: broadcast::Sender<ChangeRecord>,
    metrics: Arc<Metrics>,
    /// Where records are written behind (none: memory only).
    store: Option<Store>,
    unsaved: Mutex<Vec<ChangeRecord>>,
}

impl ChangeLog {
    pub fn new(retention_ms: i64, max_records: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self::empty(retention_ms, max_records, metrics, None))
    }

    fn empty(retention_ms: i64, max_records: usize, metrics: Arc<Metrics>, store: Option<Store>) -> Self {
        let (feed, _) = broadcast::channel(1024);
        Self {
            records: Mutex::new((0, VecDeque::new())),
            retention_ms,
            max_records: max_records.max(1),
            feed,
            metrics,
            store,
            unsaved: Mutex::new(Vec::new()),
        }
    }

    /// The log as stored, within its bounds; new records continue its numbering.
    pub async fn load(
        store: Store,
        retention_ms: i64,
        max_records: usize,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let log = Self::empty(retention_ms, max_records, metrics, Some(store.clone()));
        let since = now_ms().saturating_sub(retention_ms);
        let rows = store.load_changes(since, log.max_records as i64).await?;
        {
            let mut guard = log.records.lock();
            guard.0 = rows.last().map_or(0, |r| r.seq.max(0) as u64);
            guard.1.extend(rows.into_iter().filter_map(from_row));
        }
        Ok(Arc::new(log))
    }

    /// Write the unsaved records every `every` until `shutdown` fires; write on exit.
    pub fn start(self: &Arc<Self>, every: std::time::Duration, workers: &crate::ground::Workers) {
        let log = self.clone();
        let mut shutdown = workers.signal();
        workers.spawn("experiment change log", async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => log.flush().await,
                    _ = shutdown.changed() => { log.flush().await; break; }
                }
            }
        });
    }

    /// Write the records not yet stored, in one transaction, and apply the bounds to the table.
    pub async fn flush(&self) {
        let Some(store) = &self.store else { return };
        let batch = std::mem::take(&mut *self.unsaved.lock());
        if batch.is_empty() {
            return;
        }
        let rows: Vec<ChangeRow> = batch.iter().map(to_row).collect();
        let before = now_ms().saturating_sub(self.retention_ms);
        if let Err(e) = store.save_changes(&rows, before, self.max_records as i64).await {
            tracing::error!(error = %e, "saving the change log failed; will retry");
            let mut unsaved = self.unsaved.lock();
            let newer = std::mem::replace(&mut *unsaved, batch);
            unsaved.extend(newer);
            let excess = unsaved.len().saturating_sub(self.max_records);
            unsaved.drain(..excess);
        }
    }

    /// Records with `from <= ts < to`, of `user` if given, oldest first, at most `limit`.
    pub fn query(&self, from: i64, to: i64, user: Option<&str>, limit: usize) -> Vec<ChangeRecord> {
        let guard = self.records.lock();
        let log = &guard.1;
        // Timestamps are appended in order (wall clock; a backwards step only blurs the edge).
        let start = log.partition_point(|r| r.change.ts < from);
        log.range(start..)
            .take_while(|r| r.change.ts < to)
            .filter(|r| user.is_none_or(|u| r.change.user_id == u))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Live changes from now on (the console's Server-Sent Events).
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeRecord> {
        self.feed.subscribe()
    }

    pub fn len(&self) -> usize {
        self.records.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChangeObserver for ChangeLog {
    fn on_effective_change(&self, change: &EffectiveChange) {
        self.metrics.effective_change(change.cause.as_str());
        let record = {
            let mut guard = self.records.lock();
            let (seq, log) = &mut *guard;
            *seq += 1;
            let record = ChangeRecord { seq: *seq, change: change.clone() };
            log.push_back(record.clone());
            let oldest = change.ts.saturating_sub(self.retention_ms);
            while log.front().is_some_and(|r| r.change.ts < oldest) || log.len() > self.max_records {
                log.pop_front();
            }
            record
        };
        if self.store.is_some() {
            self.unsaved.lock().push(record.clone());
        }
        let _ = self.feed.send(record);
    }
}

fn to_row(r: &ChangeRecord) -> ChangeRow {
    let c = &r.change;
    ChangeRow {
        seq: r.seq as i64,
        ts: c.ts,
        user_id: c.user_id.clone(),
        old_presence: c.old.as_str().into(),
        new_presence: c.new.as_str().into(),
        cause: c.cause.as_str().into(),
        device_kinds: c.device_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(";"),
        hidden: c.hidden,
    }
}

fn from_row(r: ChangeRow) -> Option<ChangeRecord> {
    let device_kinds = r
        .device_kinds
        .split(';')
        .filter(|k| !k.is_empty())
        .map(|k| match k {
            "mobile" => Some(DeviceKind::Mobile),
            "desktop" => Some(DeviceKind::Desktop),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ChangeRecord {
        seq: u64::try_from(r.seq).ok()?,
        change: EffectiveChange {
            ts: r.ts,
            user_id: r.user_id,
            old: r.old_presence.parse().ok()?,
            new: r.new_presence.parse().ok()?,
            cause: ChangeCause::parse(&r.cause)?,
            device_kinds,
            hidden: r.hidden,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Presence;

    fn change(ts: i64, user: &str) -> EffectiveChange {
        EffectiveChange {
            ts,
            user_id: user.into(),
            old: Presence::Offline,
            new: Presence::Online,
            cause: ChangeCause::DeviceReport,
            device_kinds: vec![DeviceKind::Desktop, DeviceKind::Mobile],
            hidden: false,
        }
    }

    #[test]
    fn log_is_bounded_by_age_and_size_and_queried_by_window() {
        let log = ChangeLog::new(100, 3, Arc::new(Metrics::default()));
        for (ts, u) in [(0, "@a:x"), (50, "@b:x"), (120, "@a:x"), (130, "@b:x")] {
            log.on_effective_change(&change(ts, u));
        }
        // ts 0 expired (older than 130 - 100).
        let all = log.query(i64::MIN, i64::MAX, None, 100);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        log.on_effective_change(&change(140, "@a:x"));
        assert_eq!(log.len(), 3, "size bound");
        let a = log.query(100, 141, Some("@a:x"), 100);
        assert_eq!(a.iter().map(|r| r.change.ts).collect::<Vec<_>>(), vec![120, 140]);
        assert_eq!(log.query(120, 140, None, 100).len(), 2, "to is exclusive");
        assert_eq!(log.query(0, 1000, None, 1).len(), 1, "limit");
        assert_eq!(a[0].csv_line(), "3,120,\"@a:x\",offline,online,device_report,desktop;mobile,false\n");
        assert_eq!(from_row(to_row(&a[0])).as_ref(), Some(&a[0]), "stored and read back unchanged");
    }
}
