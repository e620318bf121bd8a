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
use crate::daemon::retention::{Index, Janitor};
use crate::daemon::sink;
use crate::daemon::workers::{self, Context};
use crate::ops::health::Health;
use crate::ops::live::Hub;
use crate::ops::metrics::Metrics;

/// Events between the poll task and the delivery task. Small: a frame in here holds its payload.
const EVENTS_QUEUE: usize = 4;
/// How long the poll task gets to send the final DISCONNECT after delivery ends.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct App {
    settings: Settings,
    /// The HTTP listener's socket (`http.listen`), bound at build time.
    http_listener: Option<std::net::TcpListener>,
    /// The live view's state, while the HTTP listener is on.
    hub: Option<Arc<Hub>>,
    client: AsyncClient,
    eventloop: EventLoop,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Tells another mqimg starting on `output.dir` that this one's temp files are not leftovers.
    output_lock: Option<sink::OutputLock>,
}

impl App {
    /// Validates what can be checked before connecting: the output folder, the broker address, the
    /// password and TLS files. `output.dir` is resolved to an absolute path here, once: records carry
    /// paths other programs on this machine can open.
    pub fn build(mut settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        if let Some(dir) = &mut settings.output.dir {
            std::fs::create_dir_all(&*dir)
                .with_context(|| format!("cannot create output.dir {}", dir.display()))?;
            let probe = dir.join(".mqimg-write-test");
            std::fs::write(&probe, b"")
                .with_context(|| format!("output.dir {} is not writable", dir.display()))?;
            let _ = std::fs::remove_file(probe);
            *dir = std::fs::canonicalize(&*dir)
                .with_context(|| format!("cannot resolve output.dir {}", dir.display()))?;
        } else if settings.retention.is_on() {
            tracing::warn!("[retention] is set but output.dir is not: no frame files to delete");
        }
        let output_lock = settings.output.dir.as_deref().map(sink::claim_output);
        let output_lock = output_lock.transpose().context("cannot take output.dir")?;
        if settings.subscriptions.is_empty() {
            tracing::warn!("no [[subscriptions]] configured: mqimg will receive nothing");
        }
        let http_listener = settings
            .http
            .listen
            .map(|addr| {
                crate::ops::http::bind(addr).with_context(|| {
                    format!("cannot listen on http.listen {addr} (MQIMG__HTTP__LISTEN)")
                })
            })
            .transpose()?;
        let hub = http_listener
            .as_ref()
            .map(|_| Arc::new(Hub::new(&settings.http)));
        let (client, eventloop) = mqtt::connect(&settings)?;
        Ok(Self {
            settings,
            http_listener,
            hub,
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
            .http_addr()
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = config_file.map_or_else(|| "(none: defaults and environment)".into(), |p| p.display().to_string()),
            broker = %s.broker.url,
            client_id = %s.broker.client_id,
            subscriptions,
            output_dir = s.output.dir.as_ref().map_or_else(|| "(frames not stored)".into(), |d| d.display().to_string()),
            sync = s.output.sync.as_str(),
            retention = if s.retention.is_on() && s.output.dir.is_some() { "on" } else { "off" },
            workers = s.decode.worker_count(),
            jpeg_decoder = s.decode.backend.name(),
            http,
            "mqimg starting"
        );
        for key in &s.deprecated {
            tracing::warn!(
                old = key.old,
                new = key.new,
                "the config uses {}, the old name of {}: it still works, rename it",
                key.old,
                key.new
            );
        }
        if let Some(addr) = self.http_addr()
            && !addr.ip().is_loopback()
            && s.http.token.is_none()
        {
            tracing::warn!(
                %addr,
                "the HTTP listener is reachable from other machines without a token: anyone who can \
                 reach it sees every camera (set http.token)"
            );
        }
    }

    /// Where the HTTP listener (metrics, health, live view) listens, when on.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_listener.as_ref()?.local_addr().ok()
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
            http_listener,
            hub,
            client,
            eventloop,
            metrics,
            health,
            output_lock: _held_until_run_ends,
        } = self;
        let index = settings
            .output
            .dir
            .clone()
            .filter(|_| settings.retention.is_on())
            .map(|dir| Index::new(dir, settings.retention.clone(), Arc::clone(&metrics)));
        let janitor = index
            .clone()
            .map(|index| Janitor::start(index, settings.retention.interval))
            .transpose()
            .context("cannot start the retention thread")?;
        let workers = settings.decode.worker_count();
        let context = Arc::new(Context::new(&settings, Arc::clone(&metrics), index));
        let (jobs, (done_tx, done), workers) = workers::spawn(
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
        let http_stop = CancellationToken::new();
        let http_task = http_listener.zip(hub.clone()).map(|(listener, hub)| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(
                    %addr,
                    "serving the live view on http://{addr}/, /metrics, /healthz, /readyz"
                );
            }
            let endpoint = crate::ops::http::Endpoint {
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
                hub,
                token: settings.http.token.clone(),
            };
            tokio::spawn(crate::ops::http::serve(
                listener,
                endpoint,
                http_stop.clone(),
            ))
        });
        let summary_task = settings.log.summary_interval.map(|every| {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move { metrics.log_summaries(every).await })
        });
        let mut delivery = Driver::new(
            &settings,
            client,
            jobs,
            context,
            (Arc::clone(&metrics), Arc::clone(&health)),
        )
        .with_live(hub);
        if let Some(setup) = chunk_setup(&settings) {
            if setup.spool_dir.is_none() {
                tracing::warn!(
                    "chunked subscriptions without output.dir or chunks.spool_dir: parts are kept in memory only and acked there, so a crash loses partial frames"
                );
            }
            let assembling = crate::daemon::chunks::spawn(setup.clone(), done_tx)
                .context("cannot start the chunk assembly thread (chunks.spool_dir)")?;
            delivery = delivery.with_chunks(setup, assembling);
        } else {
            drop(done_tx);
        }
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
        if let Some(summary_task) = summary_task {
            summary_task.abort();
        }
        // Streams and event feeds end on this; the listener gives them a moment, then closes.
        http_stop.cancel();
        if let Some(http_task) = http_task {
            let _ = http_task.await;
        }
        // Workers exit once their queue is empty; the delivery task already dropped its sender.
        tokio::task::spawn_blocking(move || {
            workers.join();
            if let Some(janitor) = janitor {
                janitor.stop();
            }
        })
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

/// How chunked subscriptions' parts are assembled; `None` when no subscription is chunked.
fn chunk_setup(settings: &Settings) -> Option<crate::daemon::chunks::Setup> {
    let sources: Vec<_> = settings
        .subscriptions
        .iter()
        .filter(|s| s.chunks != crate::frame::chunks::Mode::None)
        .map(|s| (s.topic.clone(), s.source()))
        .collect();
    (!sources.is_empty()).then(|| crate::daemon::chunks::Setup {
        sources,
        limits: settings.chunk_limits(),
        spool_dir: settings.spool_dir(),
    })
}
