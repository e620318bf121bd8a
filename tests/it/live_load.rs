//! Viewers that never read (issue 12): stuck MJPEG and event clients neither hold the pipeline back nor
//! make the daemon (the real binary, its peak RSS from /proc) keep the frames they were too slow for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::QoS;

use crate::support::daemon::{DaemonProcess, settings, write_config};
use crate::support::http::{get, open_stuck};
use crate::support::{Broker, Subscriber, fixture, publish_all, vm_hwm_bytes};

/// Frames per phase: a stuck viewer that kept them would hold `FRAMES` × 300 KB (~30 MB) each.
const FRAMES: usize = 100;
/// Stuck viewers: every stream place (`http.max_streams`), plus event feeds.
const STUCK: usize = 4;
/// What the daemon's peak may grow by while they are stuck: far below the frames they were sent.
const GROWTH_BOUND: u64 = 24 << 20;

/// The listener's address, from the daemon's startup line `… addr=127.0.0.1:PORT …`.
fn listen_addr(daemon: &DaemonProcess) -> SocketAddr {
    daemon
        .log
        .iter()
        .filter(|line| line.contains("serving the live view"))
        .find_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("addr="))
                .and_then(|addr| addr.trim_matches('"').parse().ok())
        })
        .unwrap_or_else(|| panic!("no listen address logged:\n{}", daemon.log.join("\n")))
}

/// Publishes `FRAMES` 720p frames and waits for their records: (seconds taken, daemon's peak RSS).
async fn phase(broker: &Broker, records: &mut Subscriber, pid: u32) -> (f64, u64) {
    let frame = fixture("frames/photo-1280x720.jpg");
    let started = Instant::now();
    let messages = (0..FRAMES)
        .map(|_| ("cams/live".to_owned(), frame.clone()))
        .collect();
    let url = broker.url();
    let publishing = publish_all(&url, messages, QoS::AtLeastOnce, 120);
    let receiving = records.recv_n(FRAMES, Duration::from_secs(120));
    let (_, received) = tokio::join!(publishing, receiving);
    assert!(
        received
            .iter()
            .all(|m| m.topic.starts_with("mqimg/results/"))
    );
    (started.elapsed().as_secs_f64(), vm_hwm_bytes(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_that_never_read_neither_slow_the_daemon_nor_grow_its_memory() {
    let broker = Broker::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut s = settings(&broker.url(), &["cams/#"], &dir.path().join("frames"));
    s.http.max_streams = STUCK;
    let mut daemon = DaemonProcess::start(&write_config(&s, dir.path())).await;
    let addr = listen_addr(&daemon);
    let mut records = Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;

    let (before_secs, before_peak) = phase(&broker, &mut records, daemon.pid()).await;

    // Tiny receive windows, never read: the kernel buffers fill within a frame or two.
    let mut stuck = Vec::new();
    for route in ["/stream/cams/live", "/events"] {
        for _ in 0..STUCK {
            let (status, connection) = open_stuck(addr, route, 4096).await;
            assert_eq!(status, 200, "{route}");
            stuck.push(connection);
        }
    }
    // They hold every stream's place.
    assert_eq!(get(addr, "/stream/cams/live").await.status, 503);

    let (during_secs, during_peak) = phase(&broker, &mut records, daemon.pid()).await;

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "{FRAMES} frames of 720p: {before_secs:.2} s and peak RSS {:.1} MiB without viewers, \
         {during_secs:.2} s and {:.1} MiB with {STUCK} stuck streams and {STUCK} stuck event feeds",
        mib(before_peak),
        mib(during_peak)
    );
    assert!(
        during_peak <= before_peak + GROWTH_BOUND,
        "peak RSS grew from {:.1} to {:.1} MiB with stuck viewers",
        mib(before_peak),
        mib(during_peak)
    );
    // Generous: the machine is shared, but a pipeline waiting for viewers would not finish at all.
    assert!(
        during_secs <= before_secs * 3.0 + 5.0,
        "frames took {during_secs:.2} s with stuck viewers, {before_secs:.2} s without"
    );
    assert!(daemon.log.iter().all(|l| !l.contains("panicked")));
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
    drop(stuck);
}
