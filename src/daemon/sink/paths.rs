//! Where frames go: `{dir}/{topic levels}/{UTC date}/{32 hex}.{ext}` and `{dir}/{topic levels}/latest.{ext}`,
//! with every topic level escaped to a plain name that can never leave the output folder; and the
//! inverse, which tells the janitor whether a file is one mqimg names this way (and for which topics),
//! so that it never touches anything else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::frame::record::utc_date;

/// Longest folder name made from one topic level; longer ones are cut and given a hash suffix.
const MAX_LEVEL_BYTES: usize = 96;
/// Topic levels that become folders; deeper ones are folded into one hashed folder.
const MAX_LEVELS: usize = 16;
/// What frame files end with: `encode::extension` gives one of these.
const FRAME_EXTENSIONS: [&str; 3] = ["jpg", "png", "ppm"];
/// Stands for a topic level whose folder name is a hash: no filter names it (NUL is not allowed in
/// topics), only wildcards match it.
const HASHED_LEVEL: &str = "\0";

/// Where a frame from `topic` is stored: `{dir}/{topic levels}/{date}/{sha256 prefix}.{ext}`.
///
/// Named by content, so a redelivered frame rewrites the same file. Each topic level is escaped so it
/// is a plain, non-special name: no topic can reach outside `dir`.
pub fn frame_path(
    dir: &Path,
    topic: &str,
    received_at: SystemTime,
    sha256_hex: &str,
    ext: &str,
) -> PathBuf {
    let mut path = topic_folder(dir, topic);
    path.push(utc_date(received_at));
    path.push(format!("{}.{ext}", &sha256_hex[..sha256_hex.len().min(32)]));
    path
}

/// The file holding the newest frame of `topic` (`output.latest`): `{dir}/{topic levels}/latest.{ext}`.
/// No topic level is ever named like it (see [`safe_level`]), so it cannot collide with a folder.
pub fn latest_path(dir: &Path, topic: &str, ext: &str) -> PathBuf {
    topic_folder(dir, topic).join(format!("latest.{ext}"))
}

/// `{dir}/{topic levels}`.
fn topic_folder(dir: &Path, topic: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    let levels: Vec<&str> = topic.split('/').collect();
    let (kept, rest) = levels.split_at(levels.len().min(MAX_LEVELS));
    for level in kept {
        path.push(safe_level(level));
    }
    if !rest.is_empty() {
        path.push(hashed(
            &format!("rest-{}-levels", rest.len()),
            &rest.join("/"),
        ));
    }
    path
}

/// One topic level as a folder name: `[A-Za-z0-9_-]` and inner dots are kept, every other byte is
/// `%XX`-escaped (so `..`, `.`, `/`, `\`, NUL and control characters cannot survive), and an empty level
/// becomes `%`. A level named like a `latest.{ext}` file has its first byte escaped.
pub(super) fn safe_level(level: &str) -> String {
    if level.is_empty() {
        return "%".into();
    }
    let reserved = level
        .strip_prefix("latest.")
        .is_some_and(|ext| FRAME_EXTENSIONS.contains(&ext));
    let mut out = String::with_capacity(level.len());
    let last = level.len() - 1;
    for (i, b) in level.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || b == b'_'
            || b == b'-'
            || (b == b'.' && i != 0 && i != last);
        if keep && !(reserved && i == 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_LEVEL_BYTES {
        // `out` is ASCII (everything else was escaped), so any byte index is a char boundary.
        return hashed(&out[..64], level);
    }
    out
}

/// `prefix~` and 16 hex digits of the SHA-256 of `whole`: short, stable, and distinct per input.
fn hashed(prefix: &str, whole: &str) -> String {
    format!(
        "{prefix}~{}",
        &crate::frame::sha256_hex(whole.as_bytes())[..16]
    )
}

/// A frame file's name, `{32 hex}.{ext}`, in 17 bytes instead of a string: the janitor keeps a
/// million of them in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameName {
    hash: [u8; 16],
    /// Index into [`FRAME_EXTENSIONS`].
    ext: u8,
}

impl FrameName {
    /// The name if `file_name` is one mqimg gives frame files, else `None`.
    pub fn parse(file_name: &str) -> Option<Self> {
        let (hex, ext) = file_name.split_once('.')?;
        let ext = FRAME_EXTENSIONS.iter().position(|e| *e == ext)?;
        if hex.len() != 32 {
            return None;
        }
        let mut hash = [0; 16];
        for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = (lower_hex(pair[0])? << 4) | lower_hex(pair[1])?;
        }
        Some(Self {
            hash,
            ext: u8::try_from(ext).ok()?,
        })
    }
}

impl fmt::Display for FrameName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.hash {
            write!(f, "{b:02x}")?;
        }
        let ext = FRAME_EXTENSIONS
            .get(usize::from(self.ext))
            .copied()
            .unwrap_or("jpg");
        write!(f, ".{ext}")
    }
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Days since 1970-01-01 of a date folder's name (`YYYY-MM-DD`, as [`utc_date`] writes it), or `None`
/// for any other name.
pub fn date_folder_days(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (
        number(&name[..4])?,
        number(&name[5..7])?,
        number(&name[8..])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days-from-civil, the inverse of `utc_date`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 2026-02-31 would count as a day of March: only names `utc_date` writes are dates.
    let secs = u64::try_from(days).ok()?.checked_mul(86_400)?;
    let at = SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))?;
    (utc_date(at) == name).then_some(days)
}

/// The topic a chain of folder names stands for, as [`topic_folder`] makes them, for matching
/// against topic filters: levels folded into a hash become levels only wildcards match. `None` when
/// some name is not one mqimg makes (then nothing below it is mqimg's).
pub fn folder_topic(names: &[&str]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let mut levels: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some((prefix, hash)) = name.rsplit_once('~') {
            if hash.len() != 16 || !hash.bytes().all(|c| lower_hex(c).is_some()) {
                return None;
            }
            let folded = prefix
                .strip_prefix("rest-")
                .and_then(|n| n.strip_suffix("-levels"))
                .and_then(|n| n.parse::<usize>().ok());
            match folded {
                Some(n) if i == MAX_LEVELS && i + 1 == names.len() && n > 0 => {
                    levels.extend(std::iter::repeat_n(HASHED_LEVEL.to_owned(), n));
                }
                _ if prefix.len() == 64 && i < MAX_LEVELS && is_safe_text(prefix) => {
                    levels.push(HASHED_LEVEL.to_owned());
                }
                _ => return None,
            }
        } else if i < MAX_LEVELS {
            let level = unescape(name).filter(|l| !l.contains('/'))?;
            if safe_level(&level) != *name {
                return None;
            }
            levels.push(level);
        } else {
            return None;
        }
    }
    Some(levels.join("/"))
}

/// Only the bytes [`safe_level`] writes outside its escapes, and `%`.
fn is_safe_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'%'))
}

/// A folder name with its `%XX` escapes decoded; `%` alone is the empty level.
fn unescape(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let [hi, lo, ..] = *tail else { return None };
            let digit = |c: u8| {
                char::from(c)
                    .to_digit(16)
                    .filter(|_| !c.is_ascii_lowercase())
            };
            let value = digit(hi)? * 16 + digit(lo)?;
            bytes.push(u8::try_from(value).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::path::Component;

    /// 2026-11-26T12:00:00Z.
    fn day() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_694_400)
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn stays_inside(dir: &Path, path: &Path) {
        let rel = path.strip_prefix(dir).unwrap();
        for c in rel.components() {
            assert!(matches!(c, Component::Normal(_)), "{path:?} has {c:?}");
            let name = c.as_os_str().to_str().unwrap();
            assert!(name.len() <= 255, "{name} is too long for a file name");
            assert!(!name.starts_with('.'), "{name} is hidden or special");
        }
    }

    #[test]
    fn hostile_topics_stay_inside_the_output_folder() {
        let dir = Path::new("/srv/frames");
        let long = "x".repeat(5000);
        let deep = vec!["a"; 200].join("/");
        for topic in [
            "a/../../etc",
            "..",
            ".",
            "/abs/path",
            "a//b",
            "back\\slash",
            "nul\0byte",
            "кадр/摄像头/📷",
            long.as_str(),
            deep.as_str(),
            "$SYS/broker",
            "...",
        ] {
            let path = frame_path(dir, topic, day(), SHA, "jpg");
            stays_inside(dir, &path);
            assert!(path.ends_with("2026-11-26/0123456789abcdef0123456789abcdef.jpg"));
        }
    }

    #[test]
    fn plain_topics_read_as_folders() {
        let path = frame_path(Path::new("out"), "cameras/door-1/jpeg", day(), SHA, "png");
        assert_eq!(
            path,
            Path::new("out/cameras/door-1/jpeg/2026-11-26/0123456789abcdef0123456789abcdef.png")
        );
    }

    #[test]
    fn escaping_keeps_distinct_topics_distinct() {
        let names: Vec<String> = ["a b", "a%20b", "a_b", "", "%", ".x", "x.", "x.y"]
            .iter()
            .map(|l| safe_level(l))
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(safe_level("x.y"), "x.y");
        assert_eq!(safe_level(".."), "%2E%2E");
    }

    #[test]
    fn frame_names_round_trip_and_nothing_else_parses() {
        let name = FrameName::parse("0123456789abcdef0123456789abcdef.png").unwrap();
        assert_eq!(name.to_string(), "0123456789abcdef0123456789abcdef.png");
        let path = frame_path(Path::new("/o"), "a", day(), SHA, "ppm");
        let file = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(FrameName::parse(file).unwrap().to_string(), file);
        for other in [
            "0123456789ABCDEF0123456789abcdef.jpg",
            "0123456789abcdef0123456789abcde.jpg",
            "0123456789abcdef0123456789abcdef0.jpg",
            "0123456789abcdef0123456789abcdef.jpeg",
            "0123456789abcdef0123456789abcdef.jpg.tmp",
            ".0123456789abcdef0123456789abcdef.jpg",
            "0123456789abcdef0123456789abcdeg.jpg",
            "latest.jpg",
            "notes.txt",
        ] {
            assert_eq!(FrameName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn date_folders_read_back_as_the_day_they_were_named_for() {
        for days in [0_i64, 59, 60, 365, 10_956, 20_513, 20_819, 47_482] {
            let at = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(days).unwrap() * 86_400 + 86_399);
            assert_eq!(date_folder_days(&utc_date(at)), Some(days), "{days}");
        }
        for other in [
            "2026-02-31",
            "2026-13-01",
            "2026-1-01",
            "2026-01-1x",
            "20260101",
            "2026-01-01x",
            "+026-01-01",
            "latest",
        ] {
            assert_eq!(date_folder_days(other), None, "{other}");
        }
    }

    /// The folder names of `topic`, as stored under `dir`.
    fn folder_names(topic: &str) -> Vec<String> {
        let dir = Path::new("/o");
        let path = frame_path(dir, topic, day(), SHA, "jpg");
        let rel = path.strip_prefix(dir).unwrap();
        let names: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_str().unwrap().to_owned())
            .collect();
        names[..names.len() - 2].to_vec()
    }

    #[test]
    fn folders_read_back_as_topics_the_same_filters_match() {
        let long = "x".repeat(300);
        let deep = vec!["d"; 40].join("/");
        let filters = [
            "#",
            "+",
            "cams/#",
            "cams/+",
            "cams/door",
            "cams/+/jpeg",
            "a//b",
            "/x",
            "$SYS/#",
            "+/+/+",
            "d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/#",
            "d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d",
            "кадр/+",
            "d/#",
        ];
        let topics = [
            "cams/door",
            "cams/door/jpeg",
            "cams",
            "a//b",
            "/x",
            "",
            "$SYS/broker",
            "кадр/摄像头",
            "cams/latest.jpg",
            "a b/%41/..",
            long.as_str(),
            deep.as_str(),
        ];
        for topic in topics {
            let names = folder_names(topic);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let back = folder_topic(&refs).unwrap_or_else(|| panic!("{topic:?}: {names:?}"));
            if !back.contains(HASHED_LEVEL) {
                assert_eq!(back, topic);
            }
            let prefix_filter = format!("{}/#", topic.split('/').next().unwrap_or_default());
            if !topic.starts_with('$') && topic.contains('/') {
                assert!(
                    crate::frame::topic::matches(&prefix_filter, &back),
                    "{topic:?}"
                );
            }
            for filter in filters {
                let (read_back, original) = (
                    crate::frame::topic::matches(filter, &back),
                    crate::frame::topic::matches(filter, topic),
                );
                // A level folded into a hash is matched by wildcards only: never more than the topic.
                if back.contains(HASHED_LEVEL) {
                    assert!(!read_back || original, "{filter} on {topic:?}: {back:?}");
                } else {
                    assert_eq!(read_back, original, "{filter} on {topic:?}");
                }
            }
        }
    }

    #[test]
    fn folders_mqimg_does_not_make_are_not_topics() {
        for names in [
            vec![],
            vec!["my photos"],
            vec!["a%2f"],
            vec![".hidden"],
            vec!["x~0123"],
            vec!["rest-3-levels~0123456789abcdef"],
            vec!["latest.jpg"],
            vec!["a%"],
        ] {
            assert_eq!(folder_topic(&names), None, "{names:?}");
        }
        assert_eq!(folder_topic(&["a%2F"]), None, "a slash is never a level");
        assert_eq!(folder_topic(&["a%25b"]).as_deref(), Some("a%b"));
    }

    #[test]
    fn no_topic_level_is_named_like_a_latest_file() {
        for ext in FRAME_EXTENSIONS {
            let name = format!("latest.{ext}");
            assert_ne!(safe_level(&name), name);
            let latest = latest_path(Path::new("/o"), "cams", ext);
            assert!(
                !frame_path(Path::new("/o"), &format!("cams/{name}"), day(), SHA, ext)
                    .starts_with(&latest)
            );
        }
        assert_eq!(
            latest_path(Path::new("/o"), "cams/door", "jpg"),
            Path::new("/o/cams/door/latest.jpg")
        );
    }
}
