//! Every metric mqimg keeps, in one place: what happened to frames, records and the connection. Exposed
//! in Prometheus text format on `/metrics` (see [`crate::ops::http`]) and summarised in a periodic log line.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::frame::record::Stage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why retention deletes frame files: the `[retention]` bound that needed the room.
pub const DELETE_REASONS: [&str; 3] = ["max_age", "max_bytes", "min_free"];

/// The counters and gauges. Cloning a metric shares it, so the registry and the pipeline see the same.
#[derive(Debug)]
pub struct Metrics {
    /// Frames received from the broker; each ends in `ok`, `failed` or unfinished at shutdown.
    pub received: Counter,
    pub received_bytes: Counter,
    /// Frames decoded and stored.
    pub ok: Counter,
    /// Frames that ended as a failure record, by stage (`queue` = QoS 0 frames dropped when full).
    pub failed: Family<StageLabel, Counter>,
    /// Records the broker acknowledged (or that were handed over, for QoS 0 records).
    pub records_published: Counter,
    /// Records that could never be published (invalid record topic).
    pub records_failed: Counter,
    /// Failure records of dropped QoS 0 frames not published: records were at the byte bound.
    pub records_dropped: Counter,
    /// PUBACKs sent for frames.
    pub acked: Counter,
    /// Frames in the decode workers' queue.
    pub queue_depth: Gauge<i64, AtomicI64>,
    /// Frames waiting for room in the decode queue (QoS 1/2 only; intake pauses when it is full).
    pub backlog: Gauge<i64, AtomicI64>,
    /// The most frames ever waiting for a worker at once (decode queue + backlog): the memory high-water.
    pub waiting_peak: Gauge<i64, AtomicI64>,
    /// Frames received but not yet finished and acked.
    pub in_flight: Gauge<i64, AtomicI64>,
    /// 1 while frames cannot be stored (disk full, read-only, I/O errors): they wait unacked.
    pub storage_blocked: Gauge<i64, AtomicI64>,
    /// Frames whose storage failed for a reason outside them and that were put back to wait.
    pub store_retries: Counter,
    /// Frames made durable (flushed to disk) before being acked, per `output.sync`.
    pub frames_flushed: Counter,
    /// Frame files under `output.dir` that retention knows of (0 while `[retention]` is off).
    pub stored_files: Gauge<i64, AtomicI64>,
    /// Their bytes.
    pub stored_bytes: Gauge<i64, AtomicI64>,
    /// Frame files retention deleted, by reason.
    pub deleted_files: Family<ReasonLabel, Counter>,
    /// Their bytes, by reason.
    pub deleted_bytes: Family<ReasonLabel, Counter>,
    /// Bytes held for frames in flight (payloads, topics, records), against `pipeline.max_inflight_bytes`.
    pub held_bytes: Gauge<i64, AtomicI64>,
    /// 1 while connected to the broker.
    pub connected: Gauge<i64, AtomicI64>,
    /// Successful connections (the first one included).
    pub connections: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            received: Counter::default(),
            received_bytes: Counter::default(),
            ok: Counter::default(),
            failed: Family::default(),
            records_published: Counter::default(),
            records_failed: Counter::default(),
            records_dropped: Counter::default(),
            acked: Counter::default(),
            queue_depth: Gauge::default(),
            backlog: Gauge::default(),
            waiting_peak: Gauge::default(),
            in_flight: Gauge::default(),
            storage_blocked: Gauge::default(),
            store_retries: Counter::default(),
            frames_flushed: Counter::default(),
            stored_files: Gauge::default(),
            stored_bytes: Gauge::default(),
            deleted_files: Family::default(),
            deleted_bytes: Family::default(),
            held_bytes: Gauge::default(),
            connected: Gauge::default(),
            connections: Counter::default(),
            registry: Registry::with_prefix("mqimg"),
        };
        let r = &mut m.registry;
        r.register(
            "frames_received",
            "Frames received from the broker",
            m.received.clone(),
        );
        r.register(
            "payload_bytes_received",
            "Payload bytes received",
            m.received_bytes.clone(),
        );
        r.register("frames_ok", "Frames decoded and stored", m.ok.clone());
        r.register(
            "frames_failed",
            "Frames that ended as a failure record, by stage",
            m.failed.clone(),
        );
        r.register(
            "records_published",
            "Records acknowledged by the broker",
            m.records_published.clone(),
        );
        r.register(
            "records_failed",
            "Records that could not be published",
            m.records_failed.clone(),
        );
        r.register(
            "records_dropped",
            "Failure records of dropped QoS 0 frames not published (records at pipeline.max_inflight_bytes)",
            m.records_dropped.clone(),
        );
        r.register("frames_acked", "PUBACKs sent for frames", m.acked.clone());
        r.register(
            "frames_waiting_peak",
            "Most frames ever waiting for a decode worker at once",
            m.waiting_peak.clone(),
        );
        r.register(
            "queue_depth",
            "Frames in the decode workers' queue",
            m.queue_depth.clone(),
        );
        r.register(
            "backlog_frames",
            "Frames waiting for room in the decode queue",
            m.backlog.clone(),
        );
        r.register(
            "frames_in_flight",
            "Frames received and not yet finished",
            m.in_flight.clone(),
        );
        r.register(
            "storage_blocked",
            "1 while frames cannot be stored (they wait unacked)",
            m.storage_blocked.clone(),
        );
        r.register(
            "store_retries",
            "Frames put back to wait because storage failed for a reason outside them",
            m.store_retries.clone(),
        );
        r.register(
            "frames_flushed",
            "Frames flushed to disk before being acked (output.sync = file or batch)",
            m.frames_flushed.clone(),
        );
        r.register(
            "stored_files",
            "Frame files under output.dir known to retention",
            m.stored_files.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes of frame files under output.dir known to retention",
            m.stored_bytes.clone(),
        );
        r.register(
            "deleted_files",
            "Frame files deleted by retention, by reason",
            m.deleted_files.clone(),
        );
        r.register(
            "deleted_bytes",
            "Bytes of frame files deleted by retention, by reason",
            m.deleted_bytes.clone(),
        );
        r.register(
            "inflight_bytes",
            "Bytes held for frames in flight (payloads, topics, records)",
            m.held_bytes.clone(),
        );
        r.register(
            "connected",
            "1 while connected to the broker",
            m.connected.clone(),
        );
        r.register(
            "connections",
            "Successful broker connections",
            m.connections.clone(),
        );
        // Every stage from the start, at 0: a rate() or an alert on a series that does not exist yet
        // sees nothing until the first failure.
        for stage in Stage::ALL {
            drop(m.failed.get_or_create(&StageLabel {
                stage: stage.as_str(),
            }));
        }
        for reason in DELETE_REASONS {
            drop(m.deleted_files.get_or_create(&ReasonLabel { reason }));
            drop(m.deleted_bytes.get_or_create(&ReasonLabel { reason }));
        }
        m
    }
}

impl Metrics {
    pub fn count_failure(&self, stage: Stage) {
        self.failed
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
            })
            .inc();
    }

    /// A frame file of `bytes` deleted by retention for `reason` (one of [`DELETE_REASONS`]).
    pub fn count_deleted(&self, reason: &'static str, bytes: u64) {
        self.deleted_files
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.deleted_bytes
            .get_or_create(&ReasonLabel { reason })
            .inc_by(bytes);
    }

    /// Failures at `stage` so far.
    pub fn failures(&self, stage: Stage) -> u64 {
        self.failed
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
            })
            .get()
    }

    /// Frames that ended as a failure record, whatever the stage.
    pub fn failed_total(&self) -> u64 {
        Stage::ALL
            .into_iter()
            .map(|stage| self.failures(stage))
            .sum()
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Logs one summary line every `every` until the task is dropped.
    pub async fn log_summaries(&self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        let (mut last_ok, mut last_failed) = (0, 0);
        loop {
            ticker.tick().await;
            let ok = self.ok.get();
            let failed = self.failed_total();
            let secs = every.as_secs_f64();
            tracing::info!(
                ok,
                failed,
                ok_per_sec = format!("{:.1}", (ok - last_ok) as f64 / secs),
                failed_per_sec = format!("{:.1}", (failed - last_failed) as f64 / secs),
                queue_depth = self.queue_depth.get(),
                in_flight = self.in_flight.get(),
                acked = self.acked.get(),
                connected = self.connected.get() == 1,
                "summary"
            );
            (last_ok, last_failed) = (ok, failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_exported_by_stage_with_the_mqimg_prefix() {
        let m = Metrics::default();
        m.received.inc();
        m.count_failure(Stage::Limits);
        m.count_failure(Stage::Limits);
        let text = m.render();
        assert!(
            text.contains(r#"mqimg_frames_failed_total{stage="decode"} 0"#),
            "stages without failures are exported at 0: {text}"
        );
        assert!(text.contains("mqimg_frames_received_total 1"), "{text}");
        assert!(
            text.contains(r#"mqimg_frames_failed_total{stage="limits"} 2"#),
            "{text}"
        );
        assert_eq!(m.failed_total(), 2);
    }

    #[test]
    fn deletions_are_exported_by_reason_from_the_start() {
        let m = Metrics::default();
        m.count_deleted("max_bytes", 1000);
        let text = m.render();
        assert!(
            text.contains(r#"mqimg_deleted_files_total{reason="max_age"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mqimg_deleted_bytes_total{reason="max_bytes"} 1000"#),
            "{text}"
        );
    }
}
