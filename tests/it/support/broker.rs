//! A private Mosquitto broker per test: its own child process, temp dir, config and free loopback port.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a starting broker may take to accept connections, and a stopping one to exit.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// First start attempts on fresh ports when the port was taken between picking it and Mosquitto binding it.
const PORT_ATTEMPTS: usize = 5;
/// The system broker's port: never used by tests.
const SYSTEM_BROKER_PORT: u16 = 1883;

const NOT_FOUND: &str = "mosquitto not found: install it with `apt-get update && apt-get install -y mosquitto \
                         mosquitto-clients` (or run .ci/run, which does)";

/// Settings written to the broker's `mosquitto.conf`.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// `message_size_limit`: the largest payload the broker accepts, in bytes (0 = MQTT's maximum).
    pub message_size_limit: u64,
    /// `max_queued_messages`: QoS 1/2 messages queued per persistent session beyond those in flight.
    pub max_queued_messages: u64,
    /// `max_inflight_messages`: unacked QoS 1/2 messages the broker sends a client (Mosquitto's default 20).
    pub max_inflight_messages: Option<u64>,
    /// `autosave_interval`: seconds between persistence saves (it also saves on SIGTERM).
    pub autosave_interval_secs: u64,
    /// `set_tcp_nodelay`: off by default as in a stock broker, where Nagle's algorithm can hold a small ack
    /// back for the client's delayed ACK (about 40 ms) while another is unacknowledged.
    pub tcp_nodelay: bool,
    /// Lines appended to `mosquitto.conf`, after the ones above (a later setting overrides an earlier
    /// one: `allow_anonymous false` with a `password_file`, say).
    pub extra_config: Vec<String>,
    /// A second listener, with TLS, on its own free port ([`Broker::tls_url`]).
    pub tls: Option<TlsListener>,
}

/// A TLS listener's files (PEM) and whether clients must present a certificate the CA signed.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// The CA that signs client certificates (Mosquitto requires one even when it asks for none).
    pub cafile: PathBuf,
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub require_certificate: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            message_size_limit: 64 * 1024 * 1024,
            max_queued_messages: 10_000,
            max_inflight_messages: None,
            autosave_interval_secs: 1,
            tcp_nodelay: false,
            extra_config: Vec::new(),
            tls: None,
        }
    }
}

/// A running (or stopped) Mosquitto child process on `127.0.0.1:port()`.
///
/// Started on creation; `stop()` ends it gracefully (persistence is saved) and `start()` brings it back on
/// the same port with the same persistence directory. Dropping it kills and reaps the child.
pub struct Broker {
    /// Holds the config, persistence database and logs; deleted on drop.
    dir: TempDir,
    /// The loopback port of the broker's plain listener, kept across restarts.
    port: u16,
    /// The loopback port of its TLS listener, when it has one.
    tls_port: Option<u16>,
    /// The Mosquitto executable.
    exe: PathBuf,
    /// The running broker, `None` while stopped.
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker with default options.
    pub fn new() -> Broker {
        Broker::with_options(BrokerOptions::default())
    }

    /// Starts a broker with `options`, retrying on a fresh port if the picked one was taken meanwhile.
    pub fn with_options(options: BrokerOptions) -> Broker {
        let exe = mosquitto_exe();
        let dir = tempfile::Builder::new()
            .prefix("mqimg-it-broker-")
            .tempdir()
            .expect("creating the broker's temp dir");
        let mut broker = Broker {
            dir,
            port: 0,
            tls_port: None,
            exe,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            broker.port = free_port();
            broker.tls_port = options.tls.as_ref().map(|_| {
                loop {
                    let port = free_port();
                    if port != broker.port {
                        break port;
                    }
                }
            });
            broker.write_config(&options);
            match broker.spawn_and_wait_ready() {
                Ok(()) => return broker,
                Err(exit) if attempt < PORT_ATTEMPTS => {
                    eprintln!(
                        "mosquitto exited at startup on port {} ({exit}), retrying on another port",
                        broker.port
                    );
                }
                Err(exit) => panic!(
                    "mosquitto exited at startup {PORT_ATTEMPTS} times, last on port {} ({exit}); log:\n{}",
                    broker.port,
                    broker.log()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker URL as `mqimg` takes it: `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The TLS listener's URL, `mqtts://127.0.0.1:PORT`; panics when the broker has none.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("a broker started with a TLS listener");
        format!("mqtts://127.0.0.1:{port}")
    }

    /// The temp dir holding `mosquitto.conf`, `mosquitto.db` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the broker with SIGTERM and waits for it to exit, so its persistence database is written.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("Broker::stop: the broker is not running");
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running `kill -TERM` on the broker");
        assert!(
            status.success(),
            "`kill -TERM {}` failed: {status}",
            child.id()
        );
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Some(exit) = child.try_wait().expect("waiting for the broker to exit") {
                assert!(
                    exit.success(),
                    "mosquitto exited with {exit} on SIGTERM; log:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mosquitto did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM (killed); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// Starts the stopped broker again on the same port with the same config and persistence directory.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "Broker::start: the broker is already running"
        );
        if let Err(exit) = self.spawn_and_wait_ready() {
            panic!(
                "mosquitto exited at restart on port {} ({exit}); log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Mosquitto's log file followed by anything it wrote to stdout/stderr (appended over restarts).
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
        format!(
            "--- mosquitto.log ---\n{}--- stdout/stderr ---\n{}",
            read("mosquitto.log"),
            read("mosquitto.out")
        )
    }

    fn write_config(&self, options: &BrokerOptions) {
        let dir = self.dir().display();
        let mut config = format!(
            "# Written by the mqimg integration tests.\n\
             # As root, Mosquitto would switch to the `mosquitto` user, who cannot write this private temp\n\
             # dir; the option is ignored when the tests do not run as root.\n\
             user root\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval {autosave}\n\
             message_size_limit {size}\n\
             max_queued_messages {queued}\n\
             log_dest file {dir}/mosquitto.log\n",
            port = self.port,
            autosave = options.autosave_interval_secs,
            size = options.message_size_limit,
            queued = options.max_queued_messages,
        );
        if options.tcp_nodelay {
            config.push_str("set_tcp_nodelay true\n");
        }
        if let Some(inflight) = options.max_inflight_messages {
            config.push_str(&format!("max_inflight_messages {inflight}\n"));
        }
        for line in &options.extra_config {
            config.push_str(line);
            config.push('\n');
        }
        if let (Some(tls), Some(port)) = (&options.tls, self.tls_port) {
            // Last: settings after a `listener` line are that listener's.
            config.push_str(&format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                tls.cafile.display(),
                tls.certfile.display(),
                tls.keyfile.display(),
                tls.require_certificate
            ));
        }
        std::fs::write(self.config_path(), config).expect("writing mosquitto.conf");
    }

    fn config_path(&self) -> PathBuf {
        self.dir().join("mosquitto.conf")
    }

    /// Spawns Mosquitto and waits until it accepts TCP connections. `Err` when it exits first (typically
    /// because the port is taken), with its exit status.
    fn spawn_and_wait_ready(&mut self) -> Result<(), String> {
        assert!(
            self.port != SYSTEM_BROKER_PORT && self.tls_port != Some(SYSTEM_BROKER_PORT),
            "tests must never use port 1883"
        );
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir().join("mosquitto.out"))
            .expect("opening mosquitto.out");
        let err = out.try_clone().expect("cloning the mosquitto.out handle");
        let mut child = Command::new(&self.exe)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.exe.display()));

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Some(exit) = child.try_wait().expect("checking on mosquitto") {
                return Err(exit.to_string());
            }
            match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
                // Still alive after the connect: the listener is Mosquitto's, not a squatter's.
                Ok(_) => match child.try_wait().expect("checking on mosquitto") {
                    None => break,
                    Some(exit) => return Err(exit.to_string()),
                },
                Err(e) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "mosquitto did not accept connections on {address} within {STARTUP_TIMEOUT:?} \
                         (last error: {e}); log:\n{}",
                        self.log()
                    );
                }
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
            }
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a Mosquitto password file at `path` holding one user (`mosquitto_passwd -b -c`).
pub fn password_file(path: &Path, user: &str, password: &str) {
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(path)
        .args([user, password])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running mosquitto_passwd (package mosquitto): {e}"));
    assert!(status.success(), "mosquitto_passwd failed: {status}");
}

/// A loopback port nobody listens on right now (the OS picks it; it may be taken again before use).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("the bound address").port();
        if port != SYSTEM_BROKER_PORT {
            return port;
        }
    }
}

/// `mosquitto` on PATH, else the Debian location; panics with install instructions when absent.
fn mosquitto_exe() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}
