//! The tracing subscriber: logfmt (`ts=… level=info msg="frame stored" topic=cams/1 …`, values with
//! spaces quoted, so `grep`, `awk` and log shippers parse it) or JSON lines on stderr, filtered by
//! `RUST_LOG` or `log.level`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Log, LogFormat};

/// Installs the global subscriber. Later calls (tests) are ignored.
pub fn init(log: &Log) {
    // log.level was validated with the config; RUST_LOG was not, so a bad one is reported, not obeyed.
    let (filter, bad_rust_log) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => {
            let set = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
            let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
            (filter, set.then(|| error.to_string()))
        }
    };
    let _ = match log.format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .with_target(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .finish()
            .try_init(),
    };
    if let Some(error) = bad_rust_log {
        tracing::warn!(%error, "RUST_LOG is not a valid filter: using log.level instead");
    }
}
