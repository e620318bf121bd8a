//! The broker flags of `mqimg publish`: they fill the same `[broker]` settings the daemon reads
//! (`-c FILE` and `MQIMG__BROKER__…` first, then each flag given), so both reach and log in to a
//! broker through the same code (`daemon::mqtt::client_options`). Errors name the flag.

use std::path::PathBuf;

use crate::config::{Broker, ConfigError, Settings, env_name};
use crate::daemon::mqtt::SetupError;

#[derive(Clone, Debug, Default, clap::Args)]
pub struct BrokerArgs {
    /// Broker URL, `mqtt://host:port` or `mqtts://host:port` [default: the config's broker.url, or
    /// mqtt://127.0.0.1:1883]
    #[arg(long = "broker", value_name = "URL")]
    pub url: Option<String>,
    /// Take `[broker]` from this config file (and `MQIMG__BROKER__…` variables); flags override it.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// User name to log in with.
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the password (one trailing line break is ignored).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the broker's certificate [default: the system's CAs].
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that require one.
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Name the broker's certificate must hold, when not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

impl BrokerArgs {
    /// Just a broker URL, as tests and scripts give it.
    pub fn url(url: &str) -> Self {
        Self {
            url: Some(url.to_owned()),
            ..Self::default()
        }
    }

    /// The broker settings: the config's (or the defaults), then the flags.
    pub fn settings(&self) -> anyhow::Result<Broker> {
        let mut broker = match &self.config {
            Some(path) => Settings::load(Some(path))?.broker,
            None => Broker::default(),
        };
        if let Some(url) = &self.url {
            broker.url = url.parse()?;
        }
        if let Some(user) = &self.username {
            broker.username = Some(user.clone());
        }
        if let Some(path) = &self.password_file {
            broker.password_file = Some(path.clone());
            broker.password = None;
        }
        let tls = &mut broker.tls;
        for (value, slot) in [
            (&self.ca_file, &mut tls.ca_file),
            (&self.client_cert, &mut tls.client_cert_file),
            (&self.client_key, &mut tls.client_key_file),
        ] {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        if self.server_name.is_some() {
            tls.server_name.clone_from(&self.server_name);
        }
        broker.validate().map_err(|e| match e {
            ConfigError::Invalid { key, problem, .. } => {
                anyhow::anyhow!("{}: {problem}", name_of(&key))
            }
            other => other.into(),
        })?;
        Ok(broker)
    }
}

/// A key as the user of `mqimg publish` sets it: the flag, with the key it stands for.
pub fn name_of(key: &str) -> String {
    let flag = match key {
        "broker.url" => "--broker",
        "broker.username" => "--username",
        "broker.password_file" => "--password-file",
        "broker.tls.ca_file" => "--ca-file",
        "broker.tls.client_cert_file" => "--client-cert",
        "broker.tls.client_key_file" => "--client-key",
        "broker.tls.server_name" => "--server-name",
        _ => return format!("{key} ({})", env_name(key)),
    };
    format!("{flag} ({key})")
}

/// A setup error naming the flag.
pub fn setup_error(error: SetupError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", name_of(error.key), error.problem)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn flags_override_the_config_and_errors_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mqimg.toml");
        std::fs::write(
            &config,
            "[broker]\nurl = \"mqtts://broker.example\"\nusername = \"cam\"\npassword = \"x\"\n\
             [broker.tls]\nca_file = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let args = BrokerArgs {
            config: Some(config),
            password_file: Some("/run/secrets/mqtt".into()),
            server_name: Some("mqtt.example".into()),
            ..BrokerArgs::default()
        };
        let broker = args.settings().unwrap();
        assert_eq!(broker.url.to_string(), "mqtts://broker.example:8883");
        assert_eq!(broker.username.as_deref(), Some("cam"));
        assert!(
            broker.password.is_none(),
            "the flag's file replaces the config's password"
        );
        assert_eq!(broker.tls.ca_file.as_deref(), Some("/etc/ca.pem".as_ref()));
        assert_eq!(broker.tls.server_name.as_deref(), Some("mqtt.example"));

        let plain = BrokerArgs {
            ca_file: Some("/etc/ca.pem".into()),
            ..BrokerArgs::default()
        };
        let error = plain.settings().unwrap_err().to_string();
        assert!(
            error.starts_with("--ca-file (broker.tls.ca_file): is set but broker.url mqtt://127.0.0.1:1883 is not TLS"),
            "{error}"
        );
        let anonymous = BrokerArgs {
            password_file: Some("/run/secrets/mqtt".into()),
            ..BrokerArgs::default()
        };
        let error = anonymous.settings().unwrap_err().to_string();
        assert!(
            error
                .contains("--password-file (broker.password_file): is set without broker.username"),
            "{error}"
        );
    }
}
