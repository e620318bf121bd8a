//! The one HTTP listener (`http.listen`): `/metrics` (Prometheus text), `/healthz` (the process
//! answers), `/readyz` (connected, subscribed, storage working: 200, else 503) and the live view
//! (`live.rs`: pages, latest frames, MJPEG streams, records as server-sent events).
//!
//! With `http.token` set every route but `/healthz` wants it, as `Authorization: Bearer TOKEN` or
//! `?token=TOKEN` (an `<img>` or `EventSource` cannot send headers).

mod live;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::ops::health::Health;
use crate::ops::live::{Hub, url};
use crate::ops::metrics::Metrics;

/// How long open streams get to end once the daemon stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    hub: Arc<Hub>,
    /// Ends streams and event feeds when the daemon stops (they never end by themselves).
    stop: CancellationToken,
}

/// What the listener serves.
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub hub: Arc<Hub>,
    /// `http.token`.
    pub token: Option<Secret>,
}

/// Binds `addr` now (before the runtime runs), so a taken port fails at startup rather than later.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves until `stop` is cancelled, then gives open streams [`SHUTDOWN_TIMEOUT`] to end.
pub async fn serve(listener: std::net::TcpListener, endpoint: Endpoint, stop: CancellationToken) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot serve HTTP");
            return;
        }
    };
    let shared = Shared {
        metrics: endpoint.metrics,
        health: endpoint.health,
        hub: endpoint.hub,
        stop: stop.clone(),
    };
    let app = router(shared, endpoint.token.map(Arc::new));
    let stopped = stop.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stopped.cancelled().await;
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        () = stop.cancelled() => {}
        ended = &mut server => {
            if let Ok(Err(error)) = ended {
                tracing::error!(%error, "the HTTP listener stopped");
            }
            return;
        }
    }
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open at shutdown: closing the listener");
        server.abort();
    }
}

fn router(shared: Shared, token: Option<Arc<Secret>>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(render))
        .route("/readyz", get(ready))
        .merge(live::routes())
        .route_layer(middleware::from_fn_with_state(token, authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // Browsers ask for it on every page; without an answer each page logs an error.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(guarded)
        .with_state(shared)
}

/// Lets a request through when no token is configured or it carries the token.
async fn authorize(
    State(token): State<Option<Arc<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim().to_owned());
    let query = url::query_param(request.uri().query(), "token").and_then(Result::ok);
    let matches = |given: &Option<String>| {
        given
            .as_deref()
            .is_some_and(|g| same(g.as_bytes(), token.expose().as_bytes()))
    };
    if matches(&bearer) || matches(&query) {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "a token is required (http.token): send Authorization: Bearer TOKEN or add ?token=TOKEN\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mqimg\""),
    );
    response
}

/// Compares without stopping at the first difference, so timing does not reveal the token bit by bit.
fn same(given: &[u8], token: &[u8]) -> bool {
    let mut differ = u8::from(given.len() != token.len());
    for (i, t) in token.iter().enumerate() {
        differ |= t ^ given.get(i).copied().unwrap_or(!t);
    }
    differ == 0
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

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"s3cretx", b"s3cret"));
        assert!(!same(b"S3cret", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
    }
}
