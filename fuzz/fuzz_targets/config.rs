//! Config parsing: a TOML file plus `MQIMG__…` environment overrides → `Settings` → `validate`, through
//! `Settings::from_toml_str` (what `Settings::load_with_env` runs), with the file's text taken from the input
//! (`config::File::from_str` and `config::File::from(path)` share the TOML source).
//!
//! Input: UTF-8 text (anything else is skipped). The text up to a line `%%env` is the TOML file; each
//! line after it is one `NAME=VALUE` environment variable (lines without `=` are ignored).
//!
//! Checks, beyond "no panic, no hang, no huge allocation": valid settings
//! answer their accessors (broker address, limits, options); and what `check-config` prints for valid
//! settings (`Settings::to_toml`) loads back, validates and prints the same again.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mqimg::config::{ConfigError, Settings};
use mqimg::frame::payload::Encoding;

const ENV_SEPARATOR: &str = "\n%%env\n";

fn load(toml: &str, env: HashMap<String, String>) -> Result<Settings, ConfigError> {
    Settings::from_toml_str(toml, Some(env))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let (toml, env_text) = match text.strip_prefix(&ENV_SEPARATOR[1..]) {
        Some(env_text) => ("", env_text),
        None => text.split_once(ENV_SEPARATOR).unwrap_or((text, "")),
    };
    let env: HashMap<String, String> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    match load(toml, env) {
        Ok(settings) => {
            assert!(settings.broker.url.port() > 0, "a validated broker URL has a port");
            let _ = settings.decode.limits();
            let _ = settings.decode.options(Encoding::Auto, None);
            let printed = settings.to_toml();
            assert!(
                !printed.starts_with("# cannot render settings"),
                "check-config cannot print valid settings: {printed}"
            );
            let reloaded = load(&printed, HashMap::new()).unwrap_or_else(|e| {
                panic!("what check-config prints does not load back: {e}\n{printed}")
            });
            assert_eq!(
                reloaded.to_toml(),
                printed,
                "printed settings change when reloaded"
            );
        }
        // TOML syntax errors quote the offending line under a caret: several lines by design.
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
