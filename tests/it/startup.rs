//! The real binary starting up (issue 8): temp files a killed writer left in `output.dir` are removed
//! (finding 6), and a refused password is reported as one (finding 8).

use std::path::{Path, PathBuf};

use crate::support::daemon::{DaemonProcess, settings, write_config};
use crate::support::{Broker, BrokerOptions, password_file};

/// How long the daemon may take to log what a test waits for.
const LOG_WAIT_SECS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_files_left_by_interrupted_writes_are_removed_at_startup_and_nothing_else() {
    let broker = Broker::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("frames");
    let day = out.join("cams/door/2026-11-26");
    std::fs::create_dir_all(&day).expect("the frame folders");
    let write = |path: PathBuf, bytes: usize| {
        std::fs::write(&path, vec![0xFF; bytes]).expect("planting a file");
        path
    };
    // What a writer killed between creating its temp file and renaming it leaves.
    let leftovers = [
        write(
            day.join(".0123456789abcdef0123456789abcdef.jpg.mqimg-4242-7.tmp"),
            1000,
        ),
        write(out.join(".x.png.mqimg-1-0.tmp"), 24),
    ];
    let look_alikes = [
        write(day.join("0123456789abcdef0123456789abcdef.jpg"), 10),
        write(
            day.join(".0123456789abcdef0123456789abcdef.jpg.4242.7.tmp"),
            10,
        ),
        write(day.join(".x.jpg.mqimg-4242-.tmp"), 10),
        write(day.join("x.jpg.mqimg-4242-7.tmp"), 10),
        write(out.join("notes.tmp"), 10),
        write(dir.path().join(".beside.jpg.mqimg-1-0.tmp"), 10),
    ];
    let config = write_config(&settings(&broker.url(), &["cams/#"], &out), dir.path());

    let mut daemon = DaemonProcess::start(&config).await;

    let line = daemon
        .log
        .iter()
        .find(|line| line.contains("removed temp files left by interrupted writes"))
        .unwrap_or_else(|| panic!("no removal logged:\n{}", daemon.log.join("\n")));
    assert!(
        line.contains("files=2") && line.contains("bytes=1024"),
        "{line}"
    );
    for path in &leftovers {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    for path in &look_alikes {
        assert!(path.exists(), "{} was removed", path.display());
    }
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
}

/// A broker that takes only `cam` with password `right`, and the daemon's config for it with
/// `password`.
fn password_protected(dir: &Path, password: &str) -> (Broker, PathBuf) {
    let passwords = dir.join("passwords");
    password_file(&passwords, "cam", "right");
    let broker = Broker::with_options(BrokerOptions {
        extra_config: vec![
            format!("password_file {}", passwords.display()),
            "allow_anonymous false".into(),
        ],
        ..BrokerOptions::default()
    });
    let mut settings = settings(&broker.url(), &["cams/#"], &dir.join("frames"));
    settings.broker.username = Some("cam".into());
    settings.broker.password = Some(mqimg::config::Secret::new(password));
    // The TOML form masks the password.
    let config = write_config(&settings, dir);
    let text = std::fs::read_to_string(&config).expect("the config");
    assert!(text.contains("password = \"***\""), "{text}");
    let text = text.replace("password = \"***\"", &format!("password = {password:?}"));
    std::fs::write(&config, text).expect("rewriting the config");
    (broker, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_as_one_before_the_acl() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_broker, config) = password_protected(dir.path(), "wrong");

    let mut daemon = DaemonProcess::spawn(&config);

    // Mosquitto answers a wrong password with "not authorised" (CONNACK 5), not "bad user name or
    // password" (4): the line must still send the operator to the credentials first.
    daemon
        .wait_for_log("broker refused the connection", LOG_WAIT_SECS)
        .await;
    let line = daemon.log.last().cloned().unwrap_or_default();
    let credentials = line.find("broker.username and broker.password");
    let acl = line.find("ACL");
    assert!(
        credentials.is_some() && acl.is_some() && credentials < acl,
        "{line}"
    );
    daemon.signal("TERM");
    daemon.wait(30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_connects_to_a_password_protected_broker() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_broker, config) = password_protected(dir.path(), "right");

    let mut daemon = DaemonProcess::start(&config).await;

    assert!(
        !daemon.log.iter().any(|line| line.contains("refused")),
        "{}",
        daemon.log.join("\n")
    );
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
}
