//! The daemon's wiring: build everything that can fail first ([`App::build`]), then run until the
//! shutdown future resolves ([`App::run`]). The tasks it starts and the channels between them are
//! drawn in ARCHITECTURE.md.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, EventLoop};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::daemon::delivery::{Driver, Summary};
use crate::daemon::mqtt::{self, Poller};
use crate::daemon::sink;
use crate::daemon::workers::{self, Context};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// Events between the poll task and the delivery task. Small: a frame in here holds its payload.
const EVENTS_QUEUE: usize = 4;
/// How long the poll task gets to send the final DISCONNECT after delivery ends.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct App {
    settings: Settings,
    /// The metrics endpoint's socket, bound at build time.
    metrics_listener: Option<std::net::TcpListener>,
    client: AsyncClient,
    eventloop: EventLoop,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Tells another mqimg starting on `output.dir` that this one's temp files are not leftovers.
    output_lock: Option<sink::OutputLock>,
}

impl App {
    /// Validates what can be checked before connecting: the output folder, the broker address, the
    /// password and TLS files.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        if let Some(dir) = &settings.output.dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output.dir {}", dir.display()))?;
            let probe = dir.join(".mqimg-write-test");
            std::fs::write(&probe, b"")
                .with_context(|| format!("output.dir {} is not writable", dir.display()))?;
            let _ = std::fs::remove_file(probe);
        }
        let output_lock = settings.output.dir.as_deref().map(sink::claim_output);
        let output_lock = output_lock.transpose().context("cannot take output.dir")?;
        if settings.subscriptions.is_empty() {
            tracing::warn!("no [[subscriptions]] configured: mqimg will receive nothing");
        }
        let metrics_listener = settings
            .metrics
            .listen
            .map(|addr| {
                crate::ops::http::bind(addr).with_context(|| {
                    format!("cannot listen on metrics.listen {addr} (MQIMG__METRICS__LISTEN)")
                })
            })
            .transpose()?;
        let (client, eventloop) = mqtt::connect(&settings)?;
        Ok(Self {
            settings,
            metrics_listener,
            client,
            eventloop,
            metrics: Arc::new(Metrics::default()),
            health: Arc::new(Health::default()),
            output_lock,
        })
    }

    /// One line an operator reads first: what this daemon is and what it will do.
    pub fn log_startup(&self, config_file: Option<&std::path::Path>) {
        let s = &self.settings;
        let subscriptions = s
            .subscriptions
            .iter()
            .map(|sub| format!("{} (qos {})", sub.topic, u8::from(sub.qos)))
            .collect::<Vec<_>>()
            .join(", ");
        let http = self
            .metrics_addr()
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = config_file.map_or_else(|| "(none: defaults and environment)".into(), |p| p.display().to_string()),
            broker = %s.broker.url,
            client_id = %s.broker.client_id,
            subscriptions,
            output_dir = s.output.dir.as_ref().map_or_else(|| "(frames not stored)".into(), |d| d.display().to_string()),
            workers = s.decode.worker_count(),
            http,
            "mqimg starting"
        );
    }

    /// Where the metrics endpoint listens, when on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// The counters, for tests and the summary.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Readiness: connected, subscriptions granted.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Runs until `shutdown` resolves, then drains in-flight frames (within
    /// `pipeline.shutdown_grace_secs`) and disconnects.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Summary> {
        let App {
            settings,
            metrics_listener,
            client,
            eventloop,
            metrics,
            health,
            output_lock: _held_until_run_ends,
        } = self;
        let workers = settings.decode.worker_count();
        let context = Arc::new(Context::new(&settings, Arc::clone(&metrics)));
        let (jobs, done, workers) = workers::spawn(
            workers,
            settings.pipeline.queue_frames,
            Arc::clone(&context),
        )
        .context("cannot start decode workers")?;
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(EVENTS_QUEUE);
        let stop = CancellationToken::new();
        let poller = Poller {
            eventloop,
            events: events_tx,
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            filters: settings
                .subscriptions
                .iter()
                .map(|s| s.topic.clone())
                .collect(),
            url: settings.broker.url.to_string(),
            tls: settings.broker.tls.clone(),
            client_id: settings.broker.client_id.clone(),
            reconnect: mqtt::Reconnect::new(
                settings.broker.reconnect_min,
                settings.broker.reconnect_max,
            ),
            shutdown: stop.clone(),
        };
        let mut poll_task = tokio::spawn(poller.run());
        let http_task = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
            }
            tokio::spawn(crate::ops::http::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&health),
            ))
        });
        let summary_task = settings.log.summary_interval.map(|every| {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move { metrics.log_summaries(every).await })
        });
        let delivery = Driver::new(
            &settings,
            client,
            jobs,
            context,
            (Arc::clone(&metrics), Arc::clone(&health)),
        );
        let grace = settings.pipeline.shutdown_grace;
        let stop_on_signal = stop.clone();
        let signal_task = tokio::spawn(async move {
            shutdown.await;
            stop_on_signal.cancel();
        });
        let summary = delivery.run(events_rx, done, stop.clone(), grace).await;
        stop.cancel();
        if tokio::time::timeout(DISCONNECT_TIMEOUT, &mut poll_task)
            .await
            .is_err()
        {
            tracing::warn!("the broker did not take the DISCONNECT in time");
            poll_task.abort();
        }
        signal_task.abort();
        for task in [summary_task, http_task].into_iter().flatten() {
            task.abort();
        }
        // Workers exit once their queue is empty; the delivery task already dropped its sender.
        tokio::task::spawn_blocking(move || workers.join())
            .await
            .ok();
        tracing::info!(
            received = metrics.received.get(),
            ok = metrics.ok.get(),
            failed = metrics.failed_total(),
            "stopped"
        );
        Ok(summary)
    }
}
