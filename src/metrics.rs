//! Counters of what happened to frames, shared by the pipeline's tasks, and the periodic summary line.
//!
//! Plain atomics: each is written by one place and read by the summary and by tests.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::record::Stage;

/// Every counter mqimg keeps. Names match the summary log fields.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames received from the broker (every one ends counted in `ok` or `failed_*`, or as unfinished).
    pub received: AtomicU64,
    /// Payload bytes received.
    pub received_bytes: AtomicU64,
    /// Frames decoded and stored.
    pub ok: AtomicU64,
    pub failed_payload: AtomicU64,
    pub failed_limits: AtomicU64,
    pub failed_decode: AtomicU64,
    pub failed_store: AtomicU64,
    /// QoS 0 frames dropped because the decode queue was full.
    pub dropped_queue: AtomicU64,
    /// Records the broker acknowledged (or handed over, for QoS 0 records).
    pub records_published: AtomicU64,
    /// Records that could not be published (too large even without `meta`, or the client refused them).
    pub records_failed: AtomicU64,
    /// PUBACKs sent for frames.
    pub acked: AtomicU64,
    /// Frames waiting for a decode worker.
    pub queue_depth: AtomicI64,
    /// Frames received but not yet finished (record durable).
    pub in_flight: AtomicI64,
    pub connected: AtomicBool,
    /// Successful connections (the first one included).
    pub connections: AtomicU64,
    /// SUBACKs received that granted every subscription: a test or probe waits on it for readiness.
    pub subscribed: tokio::sync::watch::Sender<u64>,
}

impl Metrics {
    pub fn count_failure(&self, stage: Stage) {
        let counter = match stage {
            Stage::Payload => &self.failed_payload,
            Stage::Limits => &self.failed_limits,
            Stage::Decode => &self.failed_decode,
            Stage::Store => &self.failed_store,
            Stage::Queue => &self.dropped_queue,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames that ended as a failure record, whatever the stage.
    pub fn failed(&self) -> u64 {
        [
            &self.failed_payload,
            &self.failed_limits,
            &self.failed_decode,
            &self.failed_store,
            &self.dropped_queue,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Logs one summary line every `every` until the task is dropped.
    pub async fn log_summaries(&self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        let (mut last_ok, mut last_failed) = (0, 0);
        loop {
            ticker.tick().await;
            let ok = Self::get(&self.ok);
            let failed = self.failed();
            let secs = every.as_secs_f64();
            tracing::info!(
                ok,
                failed,
                ok_per_sec = format!("{:.1}", (ok - last_ok) as f64 / secs),
                failed_per_sec = format!("{:.1}", (failed - last_failed) as f64 / secs),
                queue_depth = self.queue_depth.load(Ordering::Relaxed),
                in_flight = self.in_flight.load(Ordering::Relaxed),
                acked = Self::get(&self.acked),
                connected = self.connected.load(Ordering::Relaxed),
                "summary"
            );
            (last_ok, last_failed) = (ok, failed);
        }
    }
}
