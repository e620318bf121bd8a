//! The HTTP endpoint operators scrape: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (connected to the broker with subscriptions granted: 200, else 503).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `addr` now (before the runtime runs), so a taken port fails at startup rather than later.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves until the task is dropped.
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot serve metrics");
            return;
        }
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Shared { metrics, health });
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "the metrics endpoint stopped");
    }
}

async fn render(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn ready(State(shared): State<Shared>) -> impl IntoResponse {
    match shared.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
