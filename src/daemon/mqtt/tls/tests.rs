//! The TLS setup from files, and handshake failures as an operator reads them.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::io;
use std::path::PathBuf;

use rumqttc::ConnectionError;

use super::*;

fn config_name(key: &'static str) -> String {
    format!("{key} ({})", crate::config::env_name(key))
}

/// `error` as rumqttc reports a failed handshake: tokio-rustls wraps it in an `io::Error`.
fn explained(error: rustls::Error, tls: &Tls) -> String {
    let error = ConnectionError::Io(io::Error::new(io::ErrorKind::InvalidData, error));
    explain(&error, tls, &config_name).unwrap()
}

#[test]
fn handshake_failures_name_the_cause_and_the_key_to_change() {
    let none = Tls::default();
    let with_ca = Tls {
        ca_file: Some("/etc/mqimg/ca.pem".into()),
        ..Tls::default()
    };
    let cert = |e| rustls::Error::InvalidCertificate(e);
    let unknown = explained(cert(CertificateError::UnknownIssuer), &none);
    assert!(
        unknown.contains("not signed by a trusted CA")
            && unknown.contains("set broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE)"),
        "{unknown}"
    );
    let unknown = explained(cert(CertificateError::UnknownIssuer), &with_ca);
    assert!(
        unknown.contains("= /etc/mqimg/ca.pem does not hold the CA"),
        "{unknown}"
    );
    let name = explained(
        cert(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("10.0.0.2").unwrap(),
            presented: vec![
                "DnsName(\"broker.lan\")".into(),
                "IpAddress(10.0.0.9)".into(),
            ],
        }),
        &none,
    );
    assert!(
        name.contains("not valid for 10.0.0.2 (it holds broker.lan, 10.0.0.9)")
            && name.contains("broker.tls.server_name (MQIMG__BROKER__TLS__SERVER_NAME)"),
        "{name}"
    );
    assert!(explained(cert(CertificateError::Expired), &none).contains("expired"));
    assert!(explained(cert(CertificateError::NotValidYet), &none).contains("clock"));

    let alert = |a| rustls::Error::AlertReceived(a);
    let required = explained(alert(AlertDescription::CertificateRequired), &none);
    assert!(
        required.contains("requires a client certificate")
            && required.contains("broker.tls.client_cert_file")
            && required.contains("broker.tls.client_key_file"),
        "{required}"
    );
    let with_client = Tls {
        client_cert_file: Some("/c.pem".into()),
        client_key_file: Some("/c.key".into()),
        ..Tls::default()
    };
    let refused = explained(alert(AlertDescription::UnknownCA), &with_client);
    assert!(
        refused.contains("refused the client certificate"),
        "{refused}"
    );
    let not_tls = explained(
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        &none,
    );
    assert!(not_tls.contains("is the port in broker.url"), "{not_tls}");
}

#[test]
fn errors_that_are_not_tls_are_left_to_the_caller() {
    let refused = ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
    assert_eq!(explain(&refused, &Tls::default(), &config_name), None);
    let closed = ConnectionError::Tls(rumqttc::TlsError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "tls handshake eof",
    )));
    let closed = explain(&closed, &Tls::default(), &config_name).unwrap();
    assert!(closed.contains("during the TLS handshake"), "{closed}");
    let reset = ConnectionError::Tls(rumqttc::TlsError::Io(io::Error::from(
        io::ErrorKind::ConnectionReset,
    )));
    assert!(explain(&reset, &Tls::default(), &config_name).is_some());
    let unreachable = ConnectionError::Tls(rumqttc::TlsError::Io(io::Error::from(
        io::ErrorKind::TimedOut,
    )));
    assert_eq!(explain(&unreachable, &Tls::default(), &config_name), None);
}

/// A CA certificate and a client certificate and key it signed, as PEM files in `dir`.
fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

fn setup_error(tls: &Tls) -> String {
    client_config(tls, "127.0.0.1").unwrap_err().to_string()
}

#[test]
fn the_files_are_read_at_setup_and_a_bad_one_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = files(dir.path());
    let good = Tls {
        ca_file: Some(ca.clone()),
        client_cert_file: Some(cert.clone()),
        client_key_file: Some(key.clone()),
        server_name: Some("broker.test".into()),
    };
    client_config(&good, "127.0.0.1").unwrap();

    let missing = setup_error(&Tls {
        ca_file: Some(dir.path().join("absent.pem")),
        ..Tls::default()
    });
    assert!(
        missing.starts_with("broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE): cannot read ")
            && missing.contains("absent.pem: No such file"),
        "{missing}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let no_cert = setup_error(&Tls {
        ca_file: Some(empty.clone()),
        ..Tls::default()
    });
    assert!(
        no_cert.contains("empty.pem holds no certificate"),
        "{no_cert}"
    );
    let no_key = setup_error(&Tls {
        client_key_file: Some(empty),
        ..good.clone()
    });
    assert!(
        no_key.starts_with("broker.tls.client_key_file (MQIMG__BROKER__TLS__CLIENT_KEY_FILE)")
            && no_key.contains("holds no private key"),
        "{no_key}"
    );
    let (_, _, other_key) = files(&{
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        other
    });
    let mismatch = setup_error(&Tls {
        client_key_file: Some(other_key),
        ..good.clone()
    });
    assert!(
        mismatch.contains("does not fit broker.tls.client_cert_file"),
        "{mismatch}"
    );
    let bad_name = setup_error(&Tls {
        server_name: Some("not a name".into()),
        ..good
    });
    assert!(
        bad_name.starts_with("broker.tls.server_name (MQIMG__BROKER__TLS__SERVER_NAME)"),
        "{bad_name}"
    );
}
