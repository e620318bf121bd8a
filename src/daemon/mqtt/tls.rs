//! TLS to the broker: the rustls client configuration built from `[broker.tls]` (its files read and
//! checked once, at startup), and handshake failures told in an operator's words.
//!
//! rumqttc checks the broker's certificate against the host of `broker.url` and offers no way to
//! name another, so `broker.tls.server_name` is applied by a verifier wrapping the standard one: it
//! runs every check the standard verifier runs, against the configured name instead of the host.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
};

use super::setup::SetupError;
use crate::config::Tls;

/// The client configuration for `tls`, for a broker whose URL names `host`.
pub fn client_config(tls: &Tls, host: &str) -> Result<Arc<ClientConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(match &tls.ca_file {
        Some(path) => ca_file(path)?,
        None => system_roots()?,
    });
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::new("broker.tls", format!("no TLS version available: {e}")))?;
    let standard = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| {
            SetupError::new(
                "broker.tls.ca_file",
                format!("unusable CA certificates: {e}"),
            )
        })?;
    let builder = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|_| {
                SetupError::new(
                    "broker.tls.server_name",
                    format!("{name:?} is not a DNS name or IP address"),
                )
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedVerifier { standard, name }))
        }
        None => {
            ServerName::try_from(host).map_err(|_| {
                SetupError::new(
                    "broker.url",
                    format!("host {host:?} is not a DNS name or IP address a certificate can hold"),
                )
            })?;
            builder.with_webpki_verifier(standard)
        }
    };
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = client_chain(cert)?;
            let key = client_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                SetupError::new(
                    "broker.tls.client_key_file",
                    format!("does not fit broker.tls.client_cert_file: {e}"),
                )
            })?
        }
        // Validation refuses one without the other.
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path)
        .map_err(|e| SetupError::new(key, format!("cannot read {}: {e}", path.display())))
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = CertificateDer::pem_slice_iter(&read(key, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::new(key, format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SetupError::new(
            key,
            format!(
                "{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn ca_file(path: &Path) -> Result<RootCertStore, SetupError> {
    let key = "broker.tls.ca_file";
    let mut roots = RootCertStore::empty();
    for (i, cert) in certificates(key, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            SetupError::new(
                key,
                format!(
                    "certificate {} in {} is not usable as a CA: {e}",
                    i + 1,
                    path.display()
                ),
            )
        })?;
    }
    Ok(roots)
}

/// The operating system's trusted CAs (Debian: /etc/ssl/certs, from the ca-certificates package),
/// so a company CA installed on the host is trusted too.
fn system_roots() -> Result<RootCertStore, SetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none installed".to_owned(), ToString::to_string);
        return Err(SetupError::new(
            "broker.tls.ca_file",
            format!(
                "is unset and this system has no usable CA certificates ({why}): install the \
                 ca-certificates package, or name the CA that signed the broker's certificate"
            ),
        ));
    }
    Ok(roots)
}

fn client_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    certificates("broker.tls.client_cert_file", path)
}

fn client_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    let key = "broker.tls.client_key_file";
    PrivateKeyDer::from_pem_slice(&read(key, path)?).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => {
                "holds no private key (expected PEM: -----BEGIN PRIVATE KEY-----, RSA or EC)"
                    .to_owned()
            }
            other => format!("is not a valid PEM private key: {other}"),
        };
        SetupError::new(key, format!("{} {why}", path.display()))
    })
}

/// The standard verifier, checking the certificate against `name` rather than the URL's host.
#[derive(Debug)]
struct NamedVerifier {
    standard: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.standard
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.standard.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.standard.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.standard.supported_verify_schemes()
    }
}

/// What `error` (anything rumqttc returns) means when a TLS handshake or session failed, in words
/// that name the cause and the key to change; `None` when TLS is not the cause. `name` renders a
/// key as the user sets it (`broker.tls.ca_file (MQIMG__BROKER__TLS__CA_FILE)`, or a flag).
pub fn explain(
    error: &(dyn StdError + 'static),
    tls: &Tls,
    name: &dyn Fn(&'static str) -> String,
) -> Option<String> {
    if let Some(error) = find::<rustls::Error>(error) {
        return Some(explain_rustls(error, tls, name));
    }
    // A peer that does not speak TLS closes the connection on our ClientHello (Mosquitto's plain
    // listener resets it); rumqttc reports I/O errors of the handshake as `TlsError::Io`.
    let Some(rumqttc::TlsError::Io(io)) = find::<rumqttc::TlsError>(error) else {
        return None;
    };
    use std::io::ErrorKind as K;
    matches!(
        io.kind(),
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
    )
    .then(|| {
        format!(
            "the broker closed the connection during the TLS handshake: is the port in {} a TLS \
             listener (plain MQTT usually listens on 1883, TLS on 8883)?",
            name("broker.url")
        )
    })
}

fn explain_rustls(
    error: &rustls::Error,
    tls: &Tls,
    name: &dyn Fn(&'static str) -> String,
) -> String {
    use rustls::Error as E;
    let ca = || match &tls.ca_file {
        Some(path) => format!(
            "{} = {} does not hold the CA that signed it",
            name("broker.tls.ca_file"),
            path.display()
        ),
        None => format!(
            "set {} to the CA certificate that signed it (the system's CAs are used when unset)",
            name("broker.tls.ca_file")
        ),
    };
    let client_cert = || {
        format!(
            "{} and {}",
            name("broker.tls.client_cert_file"),
            name("broker.tls.client_key_file")
        )
    };
    match error {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the broker's certificate is not signed by a trusted CA (unknown issuer): {}",
                ca()
            ),
            CertificateError::BadSignature => format!(
                "the broker's certificate has a bad signature (not signed by the CA trusted): {}",
                ca()
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let (expected, presented) = match cert {
                    CertificateError::NotValidForNameContext {
                        expected,
                        presented,
                    } => (
                        expected.to_str().into_owned(),
                        format!(" (it holds {})", names(presented)),
                    ),
                    _ => (String::from("the name checked"), String::new()),
                };
                format!(
                    "the broker's certificate is not valid for {expected}{presented}: connect by a \
                     name it holds in {}, or set {} to one",
                    name("broker.url"),
                    name("broker.tls.server_name")
                )
            }
            CertificateError::Expired => "the broker's certificate has expired: renew it on the \
                                           broker (or check this machine's clock)"
                .to_owned(),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the broker's certificate expired at {}: renew it on the broker (or check this \
                 machine's clock)",
                date(*not_after)
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet: check this machine's clock".to_owned()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the broker's certificate is not meant for a TLS server (extended key usage)"
                    .to_owned()
            }
            other => format!("the broker's certificate was refused: {other}"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => format!(
                "the broker requires a client certificate: set {}",
                client_cert()
            ),
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure
                if tls.client_cert_file.is_none() =>
            {
                format!(
                    "the broker ended the TLS handshake ({alert:?}): it probably requires a client \
                     certificate: set {}",
                    client_cert()
                )
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => format!(
                "the broker refused the client certificate ({alert:?}): it must be signed by a CA \
                 the broker trusts and valid now; check {}",
                client_cert()
            ),
            AlertDescription::CertificateExpired => format!(
                "the broker refused the client certificate as expired: renew {}",
                client_cert()
            ),
            AlertDescription::CertificateRevoked => format!(
                "the broker refused the client certificate as revoked: replace {}",
                client_cert()
            ),
            AlertDescription::ProtocolVersion => {
                "the broker speaks no TLS version mqimg does (1.2 or 1.3)".to_owned()
            }
            other => format!("the broker ended the TLS handshake ({other:?})"),
        },
        E::PeerIncompatible(why) => {
            format!("the broker and mqimg have no TLS version or cipher suite in common ({why:?})")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
            "the broker's answer is not TLS: is the port in {} a TLS listener (plain MQTT usually \
             listens on 1883, TLS on 8883)?",
            name("broker.url")
        ),
        E::NoCertificatesPresented => "the broker presented no certificate".to_owned(),
        other => format!("TLS failed: {other}"),
    }
}

/// The names a certificate holds as webpki lists them (`DnsName("a")`, `IpAddress(…)`), plainly.
fn names(presented: &[String]) -> String {
    presented
        .iter()
        .map(|name| {
            let inner = name
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or(name);
            inner.trim_matches('"').to_owned()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn date(time: UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The first `T` in `error`'s chain, looking inside `io::Error`s too (whose `source` skips the
/// error they wrap, which is where tokio-rustls puts the handshake's error).
fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(found) = find::<T>(inner) {
                return Some(found);
            }
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests;
