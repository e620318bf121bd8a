//! Reading settings: the TOML file becomes a table, `MQIMG__…` environment variables are overlaid onto
//! it, unknown keys are refused with the nearest known one, and one typed deserialisation names the key
//! of any value that does not fit. Cross-key checks follow in `validate.rs`.
//!
//! The shape of the defaults (the schema) types the environment: a variable for an integer key becomes
//! an integer, one for a string key stays a string (`MQIMG__BROKER__CLIENT_ID=0042` keeps its zeros).
//! Array elements take an index: `MQIMG__SUBSCRIPTIONS__0__TOPIC` overlays the file's first subscription,
//! or adds one when the file has none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{
    ConfigError, Deprecated, ENV_PREFIX, Secret, Settings, Subscription, TopicRetention, env_name,
};

/// Between the prefix and each key part of an environment variable.
const SEPARATOR: &str = "__";

impl Settings {
    /// Loads `file` (when given) and the process environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests must not touch the
    /// process environment, which tests running in parallel share). `None` reads the process's.
    pub fn load_with_env(
        file: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                from_text(&text, &path.display().to_string(), env)
            }
            None => from_text("", "config", env),
        }
    }

    /// Settings from TOML text and an environment (`None`: the process's), validated.
    pub fn from_toml_str(
        text: &str,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        from_text(text, "config", env)
    }
}

fn from_text(
    text: &str,
    origin: &str,
    env: Option<HashMap<String, String>>,
) -> Result<Settings, ConfigError> {
    let table: Table = toml::from_str(text).map_err(|e| parse_error(text, origin, &e))?;
    let schema = schema();
    check_keys(&table, &schema, "")?;
    let mut root = Value::Table(table);
    let schema = Value::Table(schema);
    // Old names are renamed within each source, so the environment still overrides the file.
    let mut deprecated = rename_old_keys(&mut root)?;
    let env = rename_old_vars(environment(env)?, &mut deprecated)?;
    for (name, value) in env {
        let parts: Vec<String> = name
            .split(SEPARATOR)
            .skip(1)
            .map(str::to_ascii_lowercase)
            .collect();
        let var = EnvVar {
            name: &name,
            value: &value,
        };
        place(&mut root, &schema, &parts, &mut String::new(), &var)?;
    }
    let mut settings: Settings = serde_path_to_error::deserialize(root)
        .map_err(|e| ConfigError::invalid(&e.path().to_string(), e.inner().message().trim()))?;
    settings.deprecated = deprecated;
    settings.validate()?;
    Ok(settings)
}

/// Keys renamed since configs were first written, old name first. Old names are still read (from
/// the file and the environment) and reported at startup.
const RENAMED: [Deprecated; 1] = [Deprecated {
    old: "metrics.listen",
    new: "http.listen",
}];

/// Moves values set under an old key name to the new one. Both set to different values is an error:
/// which one the operator meant cannot be known.
fn rename_old_keys(root: &mut Value) -> Result<Vec<Deprecated>, ConfigError> {
    let mut used = Vec::new();
    for renamed in RENAMED {
        let Some(value) = take(root, renamed.old) else {
            continue;
        };
        let (section, key) = renamed.new.split_once('.').unwrap_or(("", renamed.new));
        let Value::Table(top) = &mut *root else { break };
        let Value::Table(table) = top
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
        else {
            // A non-table section is for the typed deserialisation to report.
            continue;
        };
        match table.get(key) {
            Some(new) if *new != value => {
                return Err(ConfigError::invalid(
                    renamed.old,
                    format!(
                        "is the old name of {} ({}), which is set too, to another value: keep only {}",
                        renamed.new,
                        env_name(renamed.new),
                        renamed.new
                    ),
                ));
            }
            Some(_) => {}
            None => {
                table.insert(key.to_owned(), value);
            }
        }
        used.push(renamed);
    }
    Ok(used)
}

/// Renames variables of old key names (`MQIMG__METRICS__LISTEN`) to the new ones. Both set to
/// different values is an error, as in the file.
fn rename_old_vars(
    mut vars: Vec<(String, String)>,
    deprecated: &mut Vec<Deprecated>,
) -> Result<Vec<(String, String)>, ConfigError> {
    for renamed in RENAMED {
        let (old, new) = (env_name(renamed.old), env_name(renamed.new));
        let Some(at) = vars.iter().position(|(name, _)| *name == old) else {
            continue;
        };
        let (_, value) = vars.remove(at);
        match vars.iter().find(|(name, _)| *name == new) {
            Some((_, other)) if *other != value => {
                return Err(ConfigError::Invalid {
                    key: renamed.old.to_owned(),
                    env: old,
                    problem: format!(
                        "is the old name of {} ({new}), which is set too, to another value: keep only {new}",
                        renamed.new
                    ),
                });
            }
            Some(_) => {}
            None => vars.push((new, value)),
        }
        if !deprecated.contains(&renamed) {
            deprecated.push(renamed);
        }
    }
    Ok(vars)
}

/// Removes `section.key` from `root` and returns its value; drops the section when nothing is left in it.
fn take(root: &mut Value, dotted: &str) -> Option<Value> {
    let (section, key) = dotted.split_once('.')?;
    let Value::Table(root) = root else {
        return None;
    };
    let Some(Value::Table(table)) = root.get_mut(section) else {
        return None;
    };
    let value = table.remove(key)?;
    if table.is_empty() {
        root.remove(section);
    }
    Some(value)
}

/// Every key with a value of its type: the defaults, plus the optional keys they leave out.
fn schema() -> Table {
    let mut every = Settings::default();
    every.broker.username = Some(String::new());
    every.broker.password = Some(Secret::new(""));
    every.output.dir = Some(PathBuf::new());
    let some = || Some(String::new());
    every.subscriptions = vec![Subscription {
        json_field: some(),
        part_field: some(),
        total_field: some(),
        data_field: some(),
        id_field: some(),
        first_part: Some(1),
        ..Subscription::default()
    }];
    every.retention.topics = vec![TopicRetention {
        filter: String::new(),
        max_age: None,
    }];
    every.http.token = Some(Secret::new(""));
    every.http.public_url = Some(String::new());
    // Plain data always serialises; were it not to, every key would be refused and every test fail.
    let mut schema = Table::try_from(&every).unwrap_or_default();
    for renamed in RENAMED {
        let (old_section, old_key) = renamed.old.split_once('.').unwrap_or(("", renamed.old));
        let (new_section, new_key) = renamed.new.split_once('.').unwrap_or(("", renamed.new));
        let value = schema
            .get(new_section)
            .and_then(|s| s.get(new_key))
            .cloned()
            .unwrap_or_else(|| Value::String(String::new()));
        let section = schema
            .entry(old_section)
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(section) = section {
            section.insert(old_key.to_owned(), value);
        }
    }
    schema
}

fn parse_error(text: &str, origin: &str, error: &toml::de::Error) -> ConfigError {
    let location = error.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    });
    ConfigError::Parse {
        origin: origin.to_owned(),
        location,
        message: error.message().trim().replace('\n', "; "),
    }
}

/// `" at line L, column C"`, or nothing when the parser did not say where.
pub(super) fn position(location: Option<(usize, usize)>) -> String {
    location.map_or_else(String::new, |(line, column)| {
        format!(" at line {line}, column {column}")
    })
}

/// The end of an unknown-key message: the likely intended key, else every key allowed there.
pub(super) fn hint(suggestion: Option<&str>, known: &[String]) -> String {
    match suggestion {
        Some(key) => format!("did you mean {key}?"),
        None if known.is_empty() => "nothing can be set there".to_owned(),
        None => format!("expected one of {}", known.join(", ")),
    }
}

/// `key.name`, or `name` at the top level.
fn join(key: &str, name: &str) -> String {
    if key.is_empty() {
        name.to_owned()
    } else {
        format!("{key}.{name}")
    }
}

fn unknown_key(key: String, env: String, name: &str, level: &Table) -> ConfigError {
    let known: Vec<String> = level.keys().cloned().collect();
    ConfigError::UnknownKey {
        key,
        env,
        suggestion: nearest(name, &known),
        known,
    }
}

/// Refuses keys of the file that the schema does not know, naming the nearest known one.
fn check_keys(table: &Table, schema: &Table, key: &str) -> Result<(), ConfigError> {
    for (name, value) in table {
        let here = join(key, name);
        let Some(expected) = schema.get(name) else {
            return Err(unknown_key(here.clone(), env_name(&here), name, schema));
        };
        match (value, expected) {
            (Value::Table(inner), Value::Table(expected)) => check_keys(inner, expected, &here)?,
            (Value::Array(items), Value::Array(expected)) => {
                if let Some(Value::Table(expected)) = expected.first() {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Table(inner) = item {
                            check_keys(inner, expected, &format!("{here}[{i}]"))?;
                        }
                    }
                }
            }
            // Type mismatches are for the typed deserialisation to report.
            _ => {}
        }
    }
    Ok(())
}

/// The environment's `MQIMG__…` variables, ordered so that array indexes come in ascending order
/// (`…__2__…` after `…__10__…` would look like a gap).
fn environment(env: Option<HashMap<String, String>>) -> Result<Vec<(String, String)>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}{SEPARATOR}");
    let mut vars = Vec::new();
    match env {
        Some(env) => vars.extend(
            env.into_iter()
                .filter(|(name, _)| name.starts_with(&prefix)),
        ),
        None => {
            for (name, value) in std::env::vars_os() {
                let Some(name) = name.to_str().filter(|n| n.starts_with(&prefix)) else {
                    continue;
                };
                let value = value.into_string().map_err(|_| ConfigError::Invalid {
                    key: name[prefix.len()..]
                        .to_ascii_lowercase()
                        .replace(SEPARATOR, "."),
                    env: name.to_owned(),
                    problem: "is not valid UTF-8".to_owned(),
                })?;
                vars.push((name.to_owned(), value));
            }
        }
    }
    vars.sort_by_cached_key(|(name, _)| {
        name.split(SEPARATOR)
            .map(|part| (part.parse::<usize>().ok(), part.to_owned()))
            .collect::<Vec<_>>()
    });
    Ok(vars)
}

struct EnvVar<'a> {
    name: &'a str,
    value: &'a str,
}

impl EnvVar<'_> {
    fn invalid(&self, key: &str, problem: String) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            env: self.name.to_owned(),
            problem,
        }
    }
}

/// Sets `var` at the key `parts` below `target`, whose expected shape is `schema`; `key` is the path
/// so far, for messages.
fn place(
    target: &mut Value,
    schema: &Value,
    parts: &[String],
    key: &mut String,
    var: &EnvVar<'_>,
) -> Result<(), ConfigError> {
    let Some((part, rest)) = parts.split_first() else {
        return Err(var.invalid(
            key,
            format!(
                "is not a value: set the keys below it, as in {}",
                example(var.name, schema)
            ),
        ));
    };
    let (schema, slot) = match (schema, target) {
        (Value::Table(fields), Value::Table(table)) => {
            let Some(schema) = fields.get(part) else {
                let here = join(key, part);
                return Err(unknown_key(here, var.name.to_owned(), part, fields));
            };
            *key = join(key, part);
            if rest.is_empty() && !matches!(schema, Value::Table(_) | Value::Array(_)) {
                table.insert(part.clone(), typed(schema, var.value));
                return Ok(());
            }
            let slot = table.entry(part.clone()).or_insert_with(|| match schema {
                Value::Array(_) => Value::Array(Vec::new()),
                _ => Value::Table(Table::new()),
            });
            (schema, slot)
        }
        (Value::Array(elements), Value::Array(array)) => {
            let Some(schema) = elements.first() else {
                return Err(var.invalid(key, "takes no elements".to_owned()));
            };
            let Ok(index) = part.parse::<usize>() else {
                return Err(var.invalid(
                    key,
                    format!(
                        "`{part}` is not an index: elements are numbered from 0, as in {}__0__…",
                        env_name(key)
                    ),
                ));
            };
            let len = array.len();
            if index == len {
                array.push(Value::Table(Table::new()));
            }
            let Some(slot) = array.get_mut(index) else {
                return Err(var.invalid(
                    &format!("{key}[{index}]"),
                    format!(
                        "index {index} leaves a gap: {key} has {len} element(s) from the file and \
                         lower indexes, so the next one is {len}"
                    ),
                ));
            };
            key.push_str(&format!("[{index}]"));
            (schema, slot)
        }
        (Value::Table(_) | Value::Array(_), found) => {
            return Err(var.invalid(
                key,
                format!(
                    "is not a table in the file (it is {}), so nothing can be set below it",
                    found.type_str()
                ),
            ));
        }
        _ => {
            return Err(var.invalid(
                key,
                "is a value, not a table: nothing can be set below it".to_owned(),
            ));
        }
    };
    place(slot, schema, rest, key, var)
}

/// `name` extended to the first value below it in `schema`: `MQIMG__BROKER` → `MQIMG__BROKER__URL`.
fn example(name: &str, mut schema: &Value) -> String {
    let mut example = name.to_owned();
    loop {
        match schema {
            Value::Table(fields) => match fields.iter().next() {
                Some((key, inner)) => {
                    example.push_str(SEPARATOR);
                    example.push_str(&key.to_ascii_uppercase());
                    schema = inner;
                }
                None => return example,
            },
            Value::Array(elements) => match elements.first() {
                Some(inner) => {
                    example.push_str(SEPARATOR);
                    example.push('0');
                    schema = inner;
                }
                None => return example,
            },
            _ => return example,
        }
    }
}

/// An environment value as the type `schema` has. A value that does not convert stays a string: the
/// typed deserialisation then names the key and what it expects, as it does for the same mistake in
/// the file.
fn typed(schema: &Value, raw: &str) -> Value {
    let text = raw.trim();
    let converted = match schema {
        Value::Integer(_) => text.parse().ok().map(Value::Integer),
        Value::Float(_) => text.parse().ok().map(Value::Float),
        Value::Boolean(_) if text.eq_ignore_ascii_case("true") => Some(Value::Boolean(true)),
        Value::Boolean(_) if text.eq_ignore_ascii_case("false") => Some(Value::Boolean(false)),
        _ => None,
    };
    converted.unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// The known key closest to `unknown` when close enough to be a typo, or `unknown` with a unit suffix
/// added (`keep_alive` → `keep_alive_secs`).
fn nearest(unknown: &str, known: &[String]) -> Option<String> {
    let unknown = unknown.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (distance(&unknown, k), k))
        .filter(|(d, k)| {
            *d <= k.len().max(unknown.len()).div_ceil(3)
                || (unknown.len() >= 3 && k.starts_with(&unknown))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance: edits (insert, delete, replace one character) that turn `a` into `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = std::mem::replace(&mut row[0], i + 1);
        for (j, cb) in b.iter().enumerate() {
            let replaced = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = replaced.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_single_character_edits() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("url", "url"), 0);
        assert_eq!(distance("urll", "url"), 1);
        assert_eq!(distance("clientid", "client_id"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "qos"), 3);
        assert_eq!(distance("tpoic", "topic"), 2);
    }

    #[test]
    fn nearest_suggests_typos_and_missing_unit_suffixes_only() {
        let known: Vec<String> = ["url", "client_id", "keep_alive_secs", "qos"]
            .map(String::from)
            .into();
        let near = |k: &str| nearest(k, &known);
        assert_eq!(near("clientid").as_deref(), Some("client_id"));
        assert_eq!(near("URL").as_deref(), Some("url"));
        assert_eq!(near("urll").as_deref(), Some("url"));
        assert_eq!(near("keep_alive").as_deref(), Some("keep_alive_secs"));
        assert_eq!(near("foo"), None);
        assert_eq!(near("password"), None);
    }
}
