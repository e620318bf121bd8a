//! Test harness: a private Mosquitto broker per test, MQTT test clients, timeouts and fixtures.

// Each test module uses a different subset of these helpers (and their re-exports), so which ones are
// unused changes as tests come and go; `expect` would break on every such change.
#![allow(dead_code, unused_imports)]

mod broker;
mod client;
pub mod daemon;
pub mod http;
mod system;

use std::future::Future;
use std::time::Duration;

pub use broker::{Broker, BrokerOptions, free_port, password_file};
pub use client::{
    MAX_PACKET_BYTES, Message, Subscriber, SubscriberOptions, publish_all, publish_once,
};
pub use system::{Tmpfs, is_root, vm_hwm_bytes, wait_until};

/// Awaits `fut`, panicking with `what` if it takes longer than `secs` seconds, so a hung test fails.
pub async fn with_timeout<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// The bytes of `fixtures/<path>`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading fixture {full}: {e}"))
}

/// The path of `fixtures/<path>`.
pub fn fixture_path(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

/// `n` distinct valid JPEGs (~106 KB): the 640x480 photo with a numbered comment segment, so each is
/// stored in its own file.
pub fn distinct_frames(n: usize) -> Vec<Vec<u8>> {
    let photo = fixture("frames/photo-640x480.jpg");
    (0..n)
        .map(|i| {
            let comment = format!("mqimg test frame {i}");
            let len = u16::try_from(comment.len() + 2).expect("a short comment");
            let mut jpeg = photo[..2].to_vec();
            jpeg.extend_from_slice(&[0xFF, 0xFE]);
            jpeg.extend_from_slice(&len.to_be_bytes());
            jpeg.extend_from_slice(comment.as_bytes());
            jpeg.extend_from_slice(&photo[2..]);
            jpeg
        })
        .collect()
}
