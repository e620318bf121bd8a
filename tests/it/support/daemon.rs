//! The daemon under test: in-process ([`Daemon`], driving `App` directly) or as the real binary
//! ([`DaemonProcess`], for SIGKILL and SIGTERM), plus helpers to read its records.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mqimg::config::{Settings, Subscription};
use mqimg::daemon::app::App;
use mqimg::daemon::delivery::Summary;
use mqimg::ops::metrics::Metrics;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Message, with_timeout};

/// How long a daemon may take to connect and subscribe.
const READY_TIMEOUT_SECS: u64 = 15;

/// Settings for a daemon on `url` subscribed to `filters` (QoS 1), records on, frames stored in `dir`.
pub fn settings(url: &str, filters: &[&str], dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.broker.url = url.parse().expect("a broker URL");
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    settings.broker.client_id = format!("mqimg-it-daemon-{}-{n}", std::process::id());
    settings.broker.reconnect_min = Duration::from_millis(50);
    settings.broker.reconnect_max = Duration::from_millis(500);
    settings.subscriptions = filters
        .iter()
        .map(|f| Subscription {
            topic: (*f).to_owned(),
            qos: mqimg::config::Qos::AtLeastOnce,
            ..Subscription::default()
        })
        .collect();
    settings.output.dir = Some(dir.to_owned());
    settings.decode.workers = 2;
    settings.log.summary_interval = None;
    // Port 0: tests run in parallel, each daemon gets its own endpoint.
    settings.http.listen = Some((std::net::Ipv4Addr::LOCALHOST, 0).into());
    settings
}

/// A daemon running in this process.
pub struct Daemon {
    pub metrics: Arc<Metrics>,
    pub health: Arc<mqimg::ops::health::Health>,
    /// The daemon's HTTP listener (`/metrics`, the live view).
    pub http: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<Summary>>,
}

impl Daemon {
    /// Starts the daemon and returns once its subscriptions are granted.
    pub async fn start(settings: Settings) -> Daemon {
        let app = App::build(settings).expect("building the daemon");
        let metrics = app.metrics();
        let health = app.health();
        let http = app.http_addr().expect("the HTTP listener is on");
        let mut subscribed = app.health().subscribed();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        with_timeout(
            READY_TIMEOUT_SECS,
            "the daemon subscribing",
            subscribed.wait_for(|n| *n > 0),
        )
        .await
        .expect("the daemon's metrics");
        Daemon {
            metrics,
            health,
            http,
            stop: Some(stop),
            task,
        }
    }

    /// Requests shutdown and waits for the daemon to drain and disconnect.
    pub async fn stop(mut self) -> Summary {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        with_timeout(30, "the daemon stopping", &mut self.task)
            .await
            .expect("the daemon task")
            .expect("the daemon's run result")
    }
}

/// GETs `path` from an HTTP endpoint: (status code, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to the endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The daemon as a child process of the real binary, with its stderr collected line by line.
pub struct DaemonProcess {
    child: Child,
    /// Log lines from the daemon's stderr.
    lines: mpsc::UnboundedReceiver<String>,
    /// Everything read from stderr so far (for failure messages and assertions).
    pub log: Vec<String>,
}

impl DaemonProcess {
    /// Starts `mqimg run -c config`; returns once the daemon logged that its subscription was granted.
    pub async fn start(config: &Path) -> DaemonProcess {
        let mut daemon = DaemonProcess::spawn(config);
        daemon.wait_for_log("subscribed", READY_TIMEOUT_SECS).await;
        daemon
    }

    /// Starts `mqimg run -c config` without waiting for anything.
    pub fn spawn(config: &Path) -> DaemonProcess {
        DaemonProcess::spawn_in(config, None)
    }

    /// Like [`DaemonProcess::start`], in the working directory `cwd`.
    pub async fn start_in(config: &Path, cwd: &Path) -> DaemonProcess {
        let mut daemon = DaemonProcess::spawn_in(config, Some(cwd));
        daemon.wait_for_log("subscribed", READY_TIMEOUT_SECS).await;
        daemon
    }

    fn spawn_in(config: &Path, cwd: Option<&Path>) -> DaemonProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mqimg"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mqimg run");
        let stderr = child.stderr.take().expect("the daemon's stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        DaemonProcess {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, secs: u64) {
        let found = tokio::time::timeout(Duration::from_secs(secs), async {
            while let Some(line) = self.lines.recv().await {
                let hit = line.contains(needle);
                self.log.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        if found != Ok(true) {
            panic!(
                "the daemon did not log {needle:?} within {secs} s; its log:\n{}",
                self.log.join("\n")
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "KILL", "TERM") to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and collects the rest of its log.
    pub async fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the daemon") {
                while let Ok(line) = self.lines.try_recv() {
                    self.log.push(line);
                }
                return status;
            }
            // Drain the log while waiting: a full pipe would block the daemon.
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.log.push(line),
                Ok(None) => tokio::task::yield_now().await,
                Err(_) => panic!(
                    "the daemon did not exit within {secs} s; its log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mqimg publish` arguments: `count` copies of `fixtures/<file>` on `topic`, as fast as possible.
pub fn publish_args(
    url: &str,
    topic: &str,
    encoding: mqimg::frame::payload::Detected,
    qos: u8,
    count: u64,
    file: &str,
) -> mqimg::cli::PublishArgs {
    mqimg::cli::PublishArgs {
        broker: url.to_owned(),
        topic: topic.to_owned(),
        encoding,
        qos,
        count,
        rate: None,
        client_id: None,
        chunking: mqimg::cli::ChunkArgs::default(),
        files: vec![super::fixture_path(file)],
    }
}

/// Writes `settings` as TOML to `dir/mqimg.toml`.
pub fn write_config(settings: &Settings, dir: &Path) -> PathBuf {
    let path = dir.join("mqimg.toml");
    std::fs::write(&path, settings.to_toml()).expect("writing the config");
    path
}

/// A record as JSON.
pub fn json(message: &Message) -> serde_json::Value {
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!(
            "record on {} is not JSON ({e}): {}",
            message.topic,
            String::from_utf8_lossy(&message.payload)
        )
    })
}

/// Counts records per envelope `meta.seq`, from the messages of a records subscriber.
pub fn count_by_seq(counts: &mut BTreeMap<u64, u32>, message: &Message) {
    let record = json(message);
    let seq = record["meta"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("record without meta.seq: {record}"));
    *counts.entry(seq).or_default() += 1;
}
