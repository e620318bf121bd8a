//! The live view's routes (a contract: keep these paths):
//!
//! | route | answers |
//! |---|---|
//! | `/` | the gallery page: a tile per topic, updated live |
//! | `/topics/{topic}` | one camera's page: the stream, the latest record, the last 50 records |
//! | `/latest/{topic}` | the latest frame's bytes as received; `?width=N` a JPEG at most N wide |
//! | `/stream/{topic}` | MJPEG (`multipart/x-mixed-replace`) of each new frame; `?width=N` |
//! | `/api/topics` | JSON: one object per topic; `/api/topics/{topic}` one topic and its last records |
//! | `/events` | server-sent events: one per record (`?topic=` for one topic's) |
//!
//! `{topic}` is the MQTT topic with each level percent-encoded; `/route?topic=` (the whole topic
//! percent-encoded) is the same, for topics with empty or dot levels (see `ops::live::url`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Shared, stream};
use crate::frame::decode::Format;
use crate::ops::live::{Frame, StreamsFull, page, url};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(gallery))
        .route("/topics", get(topic_page))
        .route("/topics/{*topic}", get(topic_page))
        .route("/latest", get(latest))
        .route("/latest/{*topic}", get(latest))
        .route("/stream", get(mjpeg))
        .route("/stream/{*topic}", get(mjpeg))
        .route("/api/topics", get(api_topics))
        .route("/api/topics/{*topic}", get(api_topics))
        .route("/events", get(events))
}

/// A short plain-text answer; topics in it are quoted with escapes, never markup.
fn text(status: StatusCode, message: String) -> Response {
    let mut response = (status, message + "\n").into_response();
    no_sniff(response.headers_mut());
    response
}

fn no_sniff(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// A request refused with 400 and why.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        text(StatusCode::BAD_REQUEST, self.0)
    }
}

/// The topic a request names: the rest of the path after `/{route}/`, else `?topic=`. `Ok(None)`: none.
fn requested_topic(uri: &Uri, route: &str) -> Result<Option<String>, BadRequest> {
    let bad = |e: url::BadEncoding| BadRequest(format!("topic: {e}"));
    let prefix = format!("/{route}/");
    match uri.path().strip_prefix(prefix.as_str()) {
        Some(levels) => url::decode(levels, false).map(Some).map_err(bad),
        None => url::query_param(uri.query(), "topic")
            .transpose()
            .map_err(bad),
    }
}

/// The topic, or why the request names none.
fn topic_or_answer(uri: &Uri, route: &str) -> Result<String, BadRequest> {
    requested_topic(uri, route)?.ok_or_else(|| {
        BadRequest(format!(
            "name a topic: /{route}/LEVEL/LEVEL or /{route}?topic=TOPIC (percent-encoded)"
        ))
    })
}

/// `?width=N`: whole pixels, at least 1.
fn requested_width(uri: &Uri) -> Result<Option<u32>, BadRequest> {
    match url::query_param(uri.query(), "width") {
        None => Ok(None),
        Some(value) => value
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|w| *w >= 1)
            .map(Some)
            .ok_or_else(|| {
                BadRequest("width must be a whole number of pixels, at least 1".to_owned())
            }),
    }
}

fn html(body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    no_sniff(headers);
    if let Ok(policy) = HeaderValue::from_str(page::content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn gallery() -> Response {
    html(page::GALLERY)
}

/// The page reads its topic from its own URL, so any topic (even one not seen yet) gets the page.
async fn topic_page() -> Response {
    html(page::TOPIC)
}

async fn latest(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let (topic, width) = match (topic_or_answer(&uri, "latest"), requested_width(&uri)) {
        (Ok(topic), Ok(width)) => (topic, width),
        (Err(bad), _) | (_, Err(bad)) => return bad.into_response(),
    };
    let Some(frame) = shared.hub.latest(&topic) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no frame yet on topic {topic:?}"),
        );
    };
    if let Some(Ok(wanted)) = url::query_param(uri.query(), "sha256")
        && wanted != frame.sha256
    {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "frame {wanted} is no longer the latest on topic {topic:?}: a newer one replaced it"
            ),
        );
    }
    let version = Version::of(&frame, width);
    let etag = version.etag(&frame);
    if not_modified(&headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        frame_headers(response.headers_mut(), &etag, None);
        return response;
    }
    let (bytes, content_type) = match version {
        Version::AsReceived => (frame.bytes.clone(), content_type(frame.format)),
        Version::Jpeg(width) => match frame.jpeg(Some(width), shared.hub.renders()).await {
            Ok(jpeg) => (jpeg.bytes, "image/jpeg"),
            Err(error) => {
                tracing::warn!(topic, %error, "cannot make a JPEG for a viewer");
                return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string());
            }
        },
    };
    let mut response = Response::new(Body::from(bytes));
    frame_headers(response.headers_mut(), &etag, Some(content_type));
    response
}

/// Which bytes `/latest` answers with.
enum Version {
    /// The frame as received: no `width`, or a JPEG asked at its own width or wider.
    AsReceived,
    /// A JPEG this wide.
    Jpeg(u32),
}

impl Version {
    fn of(frame: &Frame, width: Option<u32>) -> Self {
        match width.map(|w| w.min(frame.width)) {
            None => Self::AsReceived,
            Some(w) if w == frame.width && frame.format == Format::Jpeg => Self::AsReceived,
            Some(w) => Self::Jpeg(w),
        }
    }

    fn etag(&self, frame: &Frame) -> String {
        match self {
            Self::AsReceived => format!("\"{}\"", frame.sha256),
            Self::Jpeg(width) => format!("\"{}-w{width}\"", frame.sha256),
        }
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::Jpeg => "image/jpeg",
        Format::Png => "image/png",
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn frame_headers(headers: &mut HeaderMap, etag: &str, content_type: Option<&'static str>) {
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    // The URL stays the same while the frame changes: revalidate every time (a 304 is cheap).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    no_sniff(headers);
}

async fn mjpeg(State(shared): State<Shared>, uri: Uri) -> Response {
    let (topic, width) = match (topic_or_answer(&uri, "stream"), requested_width(&uri)) {
        (Ok(topic), Ok(width)) => (topic, width),
        (Err(bad), _) | (_, Err(bad)) => return bad.into_response(),
    };
    let Some(frames) = shared.hub.watch(&topic) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no frame yet on topic {topic:?}"),
        );
    };
    let permit = match shared.hub.admit_stream() {
        Ok(permit) => permit,
        Err(full) => return busy("streams", full),
    };
    let body = stream::mjpeg(stream::Mjpeg {
        frames,
        width,
        renders: Arc::clone(shared.hub.renders()),
        stop: shared.stop.clone(),
        _permit: permit,
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream::MJPEG_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    no_sniff(headers);
    response
}

/// 503 for one stream or event feed too many.
fn busy(what: &str, full: StreamsFull) -> Response {
    let mut answer = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "too many {what}: {} are open (http.max_streams); try again later",
            full.0
        ),
    );
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    answer
}

async fn api_topics(State(shared): State<Shared>, uri: Uri) -> Response {
    let json = match requested_topic(&uri, "api/topics") {
        Err(bad) => return bad.into_response(),
        Ok(None) => serde_json::to_string(&shared.hub.topics()).unwrap_or_default(),
        Ok(Some(topic)) => {
            let Some((summary, records)) = shared.hub.topic(&topic) else {
                return text(StatusCode::NOT_FOUND, format!("no such topic: {topic:?}"));
            };
            let summary = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
            // The records are JSON already: splice them in rather than parse them again.
            let open = summary.strip_suffix('}').unwrap_or("{");
            let comma = if open.ends_with('{') { "" } else { "," };
            let records: Vec<&str> = records.iter().map(|r| &**r).collect();
            format!("{open}{comma}\"records\":[{}]}}", records.join(","))
        }
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json,
    )
        .into_response();
    no_sniff(response.headers_mut());
    response
}

async fn events(State(shared): State<Shared>, uri: Uri) -> Response {
    let only = match requested_topic(&uri, "events") {
        Ok(only) => only,
        Err(bad) => return bad.into_response(),
    };
    let (records, permit) = match shared.hub.records() {
        Ok(feed) => feed,
        Err(full) => return busy("event feeds", full),
    };
    let body = stream::events(records, permit, only, shared.stop.clone());
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies such as nginx buffer responses unless told not to: events would arrive in bursts.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
