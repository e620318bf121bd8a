//! TLS and credentials against a private Mosquitto with a TLS listener and certificates made by the
//! test (issue 10, points 1, 2 and 8): a frame round-trips over TLS (daemon and `mqimg publish`);
//! mutual TLS; a wrong CA, a wrong name and an expired certificate each give one line naming the
//! cause and the key; a password file logs in and is never logged.

use std::path::Path;
use std::time::Duration;

use mqimg::frame::payload::Detected;
use rumqttc::QoS;

use crate::support::daemon::{Daemon, DaemonProcess, json, publish_args, settings, write_config};
use crate::support::{
    Broker, BrokerOptions, CertFiles, Pki, Subscriber, TlsListener, password_file, with_timeout,
};

const PHOTO: &str = "frames/photo-640x480.jpg";
const RECORD_WAIT: Duration = Duration::from_secs(30);
const LOG_WAIT_SECS: u64 = 15;

/// A broker with a plain listener and a TLS one presenting `server`, signed by `pki`'s CA.
fn tls_broker(pki: &Pki, server: CertFiles, require_certificate: bool) -> Broker {
    Broker::with_options(BrokerOptions {
        tls: Some(TlsListener {
            cafile: pki.ca_file("ca"),
            certfile: server.cert,
            keyfile: server.key,
            require_certificate,
        }),
        ..BrokerOptions::default()
    })
}

/// Publishes the photo once with `mqimg publish` over TLS; its error, if any.
async fn publish_over_tls(
    url: &str,
    ca: &Path,
    client: Option<&CertFiles>,
    server_name: Option<&str>,
) -> Result<(), String> {
    let mut args = publish_args(url, "cams/door", Detected::Raw, 1, 1, PHOTO);
    args.broker.ca_file = Some(ca.to_owned());
    args.broker.client_cert = client.map(|c| c.cert.clone());
    args.broker.client_key = client.map(|c| c.key.clone());
    args.broker.server_name = server_name.map(str::to_owned);
    with_timeout(
        30,
        "mqimg publish over TLS",
        mqimg::cli::publish::run(&args),
    )
    .await
    .map_err(|e| format!("{e:#}"))
}

/// Waits for the record of the photo and checks its file was stored.
async fn expect_photo_record(records: &mut Subscriber) {
    let record = json(&records.recv(RECORD_WAIT).await);
    assert_eq!(record["topic"], "cams/door", "{record}");
    assert_eq!(record["width"], 640, "{record}");
    let path = record["path"].as_str().expect("a stored file");
    assert!(Path::new(path).is_file(), "{path} was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_round_trips_over_tls_to_a_broker_signed_by_a_private_ca() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "ca");
    let broker = tls_broker(
        &pki,
        pki.server("broker", &["127.0.0.1", "localhost"]),
        false,
    );
    // Records are read on the plain listener of the same broker.
    let mut records = Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;
    let mut config = settings(&broker.tls_url(), &["cams/#"], &dir.path().join("frames"));
    config.broker.tls.ca_file = Some(pki.ca_file("ca"));
    let daemon = Daemon::start(config).await;

    publish_over_tls(&broker.tls_url(), &pki.ca_file("ca"), None, None)
        .await
        .expect("publishing over TLS");

    expect_photo_record(&mut records).await;
    // At-least-once over TLS as over TCP: the frame is acked once its file and record are durable.
    crate::support::wait_until(10, "the frame's ack", || daemon.metrics.acked.get() == 1).await;
    let summary = daemon.stop().await;
    assert_eq!(summary.unfinished, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_and_says_so_when_it_is_missing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "ca");
    let broker = tls_broker(&pki, pki.server("broker", &["127.0.0.1"]), true);
    let client = pki.client("camera-gateway");

    // Without a certificate: the real binary says what to set, with its environment name.
    let mut without = settings(&broker.tls_url(), &["cams/#"], &dir.path().join("frames"));
    without.broker.tls.ca_file = Some(pki.ca_file("ca"));
    let mut daemon = DaemonProcess::spawn(&write_config(&without, dir.path()));
    daemon
        .wait_for_log("TLS with the broker failed", LOG_WAIT_SECS)
        .await;
    let line = daemon.log.last().cloned().unwrap_or_default();
    assert!(
        line.contains("client certificate")
            && line.contains("broker.tls.client_cert_file (MQIMG__BROKER__TLS__CLIENT_CERT_FILE)"),
        "{line}"
    );
    daemon.signal("TERM");
    daemon.wait(30).await;

    // With one: the daemon subscribes, and `mqimg publish --client-cert/--client-key` gets through.
    let mut records = Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;
    let mut with = without.clone();
    with.broker.tls.client_cert_file = Some(client.cert.clone());
    with.broker.tls.client_key_file = Some(client.key.clone());
    let daemon = Daemon::start(with).await;
    let refused = publish_over_tls(&broker.tls_url(), &pki.ca_file("ca"), None, None).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("--client-cert (broker.tls.client_cert_file)")),
        "{refused:?}"
    );
    publish_over_tls(&broker.tls_url(), &pki.ca_file("ca"), Some(&client), None)
        .await
        .expect("publishing with a client certificate");
    expect_photo_record(&mut records).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_one_line_naming_ca_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other-ca");
    let broker = tls_broker(&pki, pki.server("broker", &["127.0.0.1"]), false);
    let mut config = settings(&broker.tls_url(), &["cams/#"], &dir.path().join("frames"));
    config.broker.tls.ca_file = Some(other.ca_file("other-ca"));

    let mut daemon = DaemonProcess::spawn(&write_config(&config, dir.path()));

    daemon
        .wait_for_log("TLS with the broker failed", LOG_WAIT_SECS)
        .await;
    let line = daemon.log.last().cloned().unwrap_or_default();
    assert!(
        line.contains("not signed by a trusted CA")
            && line.contains("broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE)")
            && line.contains("other-ca.pem")
            && line.contains("retry_in_ms="),
        "{line}"
    );
    // Retried with backoff, and said again only on every tenth attempt, not on each.
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
    for line in daemon
        .log
        .iter()
        .filter(|l| l.contains("TLS with the broker failed"))
    {
        let attempts: u64 = line
            .split("attempts=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no attempts= in {line}"));
        assert!(attempts == 1 || attempts % 10 == 0, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_checked_against_server_name_and_a_mismatch_or_expiry_is_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "ca");
    // A certificate for a name only, as a broker reached by IP address often has.
    let broker = tls_broker(&pki, pki.server("broker", &["mqtt.test"]), false);
    let url = broker.tls_url();
    let ca = pki.ca_file("ca");

    let mismatch = publish_over_tls(&url, &ca, None, None)
        .await
        .expect_err("the certificate does not hold 127.0.0.1");
    assert!(
        mismatch.contains("not valid for 127.0.0.1 (it holds")
            && mismatch.contains("mqtt.test")
            && mismatch.contains("--server-name (broker.tls.server_name)"),
        "{mismatch}"
    );
    let wrong = publish_over_tls(&url, &ca, None, Some("other.test"))
        .await
        .expect_err("the certificate does not hold other.test");
    assert!(wrong.contains("not valid for other.test"), "{wrong}");
    publish_over_tls(&url, &ca, None, Some("mqtt.test"))
        .await
        .expect("the certificate holds the server name");

    let mut records = Subscriber::connect(&broker.url(), "mqimg/results/#", QoS::AtLeastOnce).await;
    let mut config = settings(&url, &["cams/#"], &dir.path().join("frames"));
    config.broker.tls.ca_file = Some(ca.clone());
    config.broker.tls.server_name = Some("mqtt.test".into());
    let daemon = Daemon::start(config).await;
    publish_over_tls(&url, &ca, None, Some("mqtt.test"))
        .await
        .expect("publishing");
    expect_photo_record(&mut records).await;
    daemon.stop().await;

    let expired = tls_broker(&pki, pki.expired_server("expired"), false);
    let error = publish_over_tls(&expired.tls_url(), &ca, None, None)
        .await
        .expect_err("the certificate expired");
    assert!(
        error.contains("certificate expired at 2001-01-01T00:00:00Z"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_logs_in_and_its_content_is_never_logged() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let passwords = dir.path().join("passwords");
    let secret = "correct-horse-battery";
    password_file(&passwords, "cam", secret);
    let broker = Broker::with_options(BrokerOptions {
        extra_config: vec![
            format!("password_file {}", passwords.display()),
            "allow_anonymous false".into(),
        ],
        ..BrokerOptions::default()
    });
    // As Docker and Kubernetes write secrets: the value and a line break.
    let secret_file = dir.path().join("mqtt-password");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("writing the secret");
    let mut config = settings(&broker.url(), &["cams/#"], &dir.path().join("frames"));
    config.broker.username = Some("cam".into());
    config.broker.password_file = Some(secret_file.clone());

    let mut daemon = DaemonProcess::start(&write_config(&config, dir.path())).await;

    let mut args = publish_args(&broker.url(), "cams/door", Detected::Raw, 1, 1, PHOTO);
    args.broker.username = Some("cam".into());
    args.broker.password_file = Some(secret_file);
    with_timeout(
        30,
        "mqimg publish with a password file",
        mqimg::cli::publish::run(&args),
    )
    .await
    .expect("publishing with the password file");
    daemon.wait_for_log("frame stored", LOG_WAIT_SECS).await;
    daemon.signal("TERM");
    assert!(daemon.wait(30).await.success(), "{}", daemon.log.join("\n"));
    assert!(
        !daemon.log.iter().any(|line| line.contains(secret)),
        "{}",
        daemon.log.join("\n")
    );
}

#[test]
fn check_config_reads_the_tls_files_and_names_a_missing_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("mqimg.toml");
    std::fs::write(
        &config,
        "[broker]\nurl = \"mqtts://broker.example\"\n[broker.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
    )
    .expect("a config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqimg"))
        .args(["check-config", "-c"])
        .arg(&config)
        .output()
        .expect("running mqimg check-config");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE): cannot read /nonexistent/ca.pem: No such file"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_port_is_told_apart_from_a_certificate_problem() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "ca");
    let broker = Broker::new();
    let plain_port = broker.url().replace("mqtt://", "mqtts://");
    let error = publish_over_tls(&plain_port, &pki.ca_file("ca"), None, None)
        .await
        .expect_err("no TLS there");
    assert!(
        error.contains("is the port in --broker (broker.url) a TLS listener"),
        "{error}"
    );
}
