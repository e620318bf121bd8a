//! Response bodies that never end by themselves: the MJPEG stream and the server-sent events.
//!
//! Both are pulled by the connection: nothing is made until the client has taken what came before, so
//! a slow client holds at most the frame (or record) being written. A stream watches its topic's latest
//! frame and skips whatever arrived while it was writing; the event feed reads a bounded broadcast and
//! skips ahead (telling the client how many it missed) when it falls behind. Neither can hold back the
//! pipeline, which never waits for them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::ops::live::{Frame, Record};

/// Separates the parts of the MJPEG stream, each followed by the headers of the part after it.
const NEXT_PART: &[u8] = b"\r\n--mqimg-frame\r\nContent-Type: image/jpeg\r\n\r\n";
pub(super) const MJPEG_CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=mqimg-frame";
/// A comment on an idle event feed, so proxies keep it open and a gone client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One viewer's MJPEG stream.
pub(super) struct Mjpeg {
    /// The topic's latest frame; the stream ends when the topic is dropped.
    pub frames: watch::Receiver<Option<Arc<Frame>>>,
    pub width: Option<u32>,
    pub renders: Arc<Semaphore>,
    pub stop: CancellationToken,
    /// The stream's place under `http.max_streams`, given back when the client goes.
    pub _permit: OwnedSemaphorePermit,
}

/// Chunks ready to go out, then the next frame.
struct MjpegState {
    source: Mjpeg,
    chunks: VecDeque<Bytes>,
    started: bool,
}

/// The multipart body: per frame its bytes, then at once the boundary and the next part's headers.
/// Chromium shows a part only once the next part's headers have arrived (a boundary alone is not
/// enough, measured with Chromium 156): sent ahead like this, the picture is current instead of one
/// frame behind, and the first frame shows before a second one exists. The parts therefore carry no
/// `Content-Length` (their bytes are not known yet when their headers go out); MJPEG readers find the
/// boundary instead, as browsers, FFmpeg and OpenCV do.
pub(super) fn mjpeg(source: Mjpeg) -> Body {
    let state = MjpegState {
        source,
        chunks: VecDeque::new(),
        started: false,
    };
    Body::from_stream(stream::unfold(state, |mut state| async move {
        loop {
            if let Some(chunk) = state.chunks.pop_front() {
                return Some((Ok::<_, std::io::Error>(chunk), state));
            }
            let frame = if state.started {
                let s = &mut state.source;
                tokio::select! {
                    changed = s.frames.changed() => {
                        changed.ok()?;
                        s.frames.borrow_and_update().clone()
                    }
                    () = s.stop.cancelled() => return None,
                }
            } else {
                state.started = true;
                // The stream opens with the first part's headers, without the line break before them.
                state.chunks.push_back(Bytes::from_static(&NEXT_PART[2..]));
                state.source.frames.borrow_and_update().clone()
            };
            let Some(frame) = frame else { continue };
            let s = &state.source;
            let jpeg = tokio::select! {
                jpeg = frame.jpeg(s.width, &s.renders) => jpeg,
                () = s.stop.cancelled() => return None,
            };
            match jpeg {
                Ok(jpeg) => {
                    state.chunks.push_back(jpeg.bytes);
                    state.chunks.push_back(Bytes::from_static(NEXT_PART));
                }
                // Skipped; the next frame may do.
                Err(error) => tracing::debug!(%error, "stream frame skipped"),
            }
        }
    }))
}

/// Server-sent events: one `data:` line per record (of `only` that topic, when given).
pub(super) fn events(
    records: broadcast::Receiver<Record>,
    place: OwnedSemaphorePermit,
    only: Option<String>,
    stop: CancellationToken,
) -> Body {
    // Cloned into each poll: an `Arc` so that costs no allocation.
    let only: Option<Arc<str>> = only.map(Arc::from);
    let first = Bytes::from_static(b"retry: 2000\n: mqimg records\n\n");
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    // The place rides along with the receiver: both go when the client does.
    let state = ((records, place), Some(first), keep_alive);
    Body::from_stream(stream::unfold(
        state,
        move |((mut records, place), mut first, mut keep_alive)| {
            let (only, stop) = (only.clone(), stop.clone());
            async move {
                if let Some(first) = first.take() {
                    return Some((
                        Ok::<_, std::io::Error>(first),
                        ((records, place), None, keep_alive),
                    ));
                }
                loop {
                    let chunk = tokio::select! {
                        record = records.recv() => match record {
                            Ok(record) if only.as_deref().is_none_or(|t| *t == *record.topic) => {
                                Bytes::from(format!("data: {}\n\n", record.json))
                            }
                            Ok(_) => continue,
                            Err(RecvError::Lagged(missed)) => {
                                Bytes::from(format!("event: lagged\ndata: {missed}\n\n"))
                            }
                            Err(RecvError::Closed) => return None,
                        },
                        _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                        () = stop.cancelled() => return None,
                    };
                    keep_alive.reset();
                    return Some((Ok(chunk), ((records, place), None, keep_alive)));
                }
            }
        },
    ))
}
