//! Frame files: where a frame goes (a path derived from the topic that can never leave the output
//! folder), writing it atomically and durably, and removing the temp files a crash leaves behind. What
//! bytes it holds is [`crate::frame::encode`]'s job.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::SystemTime;

use crate::frame::encode::EncodeError;
use crate::frame::record::utc_date;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl OutputError {
    /// The failure lies with the machine, not the frame (disk full, quota, read-only, permissions, I/O
    /// error): the frame should wait and be stored later, not fail.
    pub fn is_environmental(&self) -> bool {
        use io::ErrorKind as K;
        let Self::Io { source, .. } = self else {
            return false;
        };
        matches!(
            source.kind(),
            K::StorageFull
                | K::QuotaExceeded
                | K::ReadOnlyFilesystem
                | K::PermissionDenied
                | K::ResourceBusy
                | K::StaleNetworkFileHandle
                | K::Interrupted
                | K::TimedOut
                | K::OutOfMemory
        ) || source.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error())
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the whole new one, never a part, and
/// the new one survives a power cut once this returns: temp file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_file(path, |file| file.write_all(bytes), Sync::Now)
}

/// [`write_atomic`] with the content streamed by `write` (a frame encoded straight into the file,
/// without a second copy of it in memory).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    write_file(path, write, Sync::Now)
}

/// Like [`write_atomic`] but without waiting for the disk: the file is durable only after a later
/// [`sync_filesystem`]. Lets the daemon commit a batch of frames with one flush (group commit): one
/// fsync per frame costs ~9 ms here, as much as decoding a 1080p frame.
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_file(path, |file| file.write_all(bytes), Sync::Later)
}

/// [`write_unsynced`] with the content streamed by `write`.
pub fn write_unsynced_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    write_file(path, write, Sync::Later)
}

/// Flushes every file written on the filesystem holding `dir` (syncfs: one journal commit for all).
pub fn sync_filesystem(dir: &Path) -> Result<(), OutputError> {
    let io_err = |source| OutputError::Io {
        path: dir.to_owned(),
        source,
    };
    let handle = File::open(dir).map_err(io_err)?;
    rustix::fs::syncfs(&handle).map_err(|e| io_err(e.into()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    Now,
    Later,
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    sync: Sync,
) -> Result<(), OutputError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| OutputError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("frame");
    let tmp = path.with_file_name(temp_name(
        name,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        if sync == Sync::Now {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if let (Some(dir), Sync::Now) = (dir, sync) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// The temp file a write of `name` goes through: `.{name}.mqimg-{pid}-{counter}.tmp`. Hidden, and
/// marked so that [`is_temp_name`] matches mqimg's own and nothing else.
fn temp_name(name: &str, pid: u32, counter: u64) -> String {
    format!(".{name}.mqimg-{pid}-{counter}.tmp")
}

/// Whether `file_name` is a name [`temp_name`] makes.
fn is_temp_name(file_name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    file_name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(|rest| rest.rsplit_once(".mqimg-"))
        .and_then(|(name, tag)| Some((name, tag.split_once('-')?)))
        .is_some_and(|(name, (pid, counter))| !name.is_empty() && digits(pid) && digits(counter))
}

/// Temp files removed by [`remove_leftovers`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Leftovers {
    files: u64,
    bytes: u64,
}

/// In the output folder: held, shared, by every mqimg writing there.
const LOCK_FILE: &str = ".mqimg.lock";

/// A shared lock on the output folder, held while the daemon runs.
#[derive(Debug)]
pub struct OutputLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
}

/// Takes the output folder for this daemon: removes the temp files interrupted writes left in it when
/// no other mqimg runs there (one that does may be writing them right now), then holds a shared lock
/// on it until the returned guard is dropped, so that another mqimg starting there leaves this one's
/// temp files alone. Logs what it removed.
pub fn claim_output(dir: &Path) -> Result<OutputLock, OutputError> {
    use rustix::fs::{FlockOperation, flock};
    let path = dir.join(LOCK_FILE);
    let io_err = |source| OutputError::Io {
        path: path.clone(),
        source,
    };
    // Created writable, then held open read-only (flock needs no write access): a file open for
    // writing would keep the filesystem from being remounted read-only under a running daemon.
    drop(
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?,
    );
    let file = File::open(&path).map_err(io_err)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let removed = remove_leftovers(dir);
            if removed.files > 0 {
                tracing::info!(
                    dir = %dir.display(),
                    files = removed.files,
                    bytes = removed.bytes,
                    "removed temp files left by interrupted writes"
                );
            }
        }
        Err(rustix::io::Errno::WOULDBLOCK) => tracing::info!(
            dir = %dir.display(),
            "another mqimg is using output.dir: temp files left by interrupted writes are not removed"
        ),
        // Some network and FUSE filesystems have no locks: frames can still be stored there.
        Err(error) => tracing::warn!(
            lock = %path.display(),
            %error,
            "cannot lock output.dir: temp files left by interrupted writes are not removed"
        ),
    }
    // Waits, at most, for another mqimg's removal to finish.
    if let Err(error) = flock(&file, FlockOperation::LockShared) {
        tracing::warn!(lock = %path.display(), %error, "cannot lock output.dir");
    }
    Ok(OutputLock { _file: file })
}

/// Removes, below `dir`, the regular files named as [`temp_name`] names them: what a crash or SIGKILL
/// between creating and renaming a temp file leaves. Symbolic links are neither followed nor removed;
/// folders and files that cannot be read or removed are logged and skipped.
fn remove_leftovers(dir: &Path) -> Leftovers {
    let mut removed = Leftovers::default();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(folder = %folder.display(), %error, "cannot look for temp files left behind");
                continue;
            }
        };
        for entry in entries.flatten() {
            // `DirEntry::file_type` and `metadata` describe a link itself, never its target.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_str().is_some_and(is_temp_name) {
                let bytes = entry.metadata().map_or(0, |m| m.len());
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        removed.files += 1;
                        removed.bytes += bytes;
                    }
                    Err(error) => {
                        tracing::warn!(file = %entry.path().display(), %error, "cannot remove a temp file left behind");
                    }
                }
            }
        }
    }
    removed
}

/// Longest folder name made from one topic level; longer ones are cut and given a hash suffix.
const MAX_LEVEL_BYTES: usize = 96;
/// Topic levels that become folders; deeper ones are folded into one hashed folder.
const MAX_LEVELS: usize = 16;

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
    path.push(utc_date(received_at));
    path.push(format!("{}.{ext}", &sha256_hex[..sha256_hex.len().min(32)]));
    path
}

/// One topic level as a folder name: `[A-Za-z0-9_-]` and inner dots are kept, every other byte is
/// `%XX`-escaped (so `..`, `.`, `/`, `\`, NUL and control characters cannot survive), and an empty level
/// becomes `%`.
fn safe_level(level: &str) -> String {
    if level.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(level.len());
    let last = level.len() - 1;
    for (i, b) in level.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || b == b'_'
            || b == b'-'
            || (b == b'.' && i != 0 && i != last);
        if keep {
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use std::path::Component;

    /// 2026-11-26T12:00:00Z.
    fn day() -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_694_400)
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
    fn only_mqimg_temp_files_are_removed_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("frames");
        let deep = out.join("cams/door/2026-11-26");
        fs::create_dir_all(&deep).unwrap();
        let left = [
            out.join(".x.jpg.mqimg-1-0.tmp"),
            deep.join(".0123456789abcdef0123456789abcdef.jpg.mqimg-4242-17.tmp"),
            deep.join(".a.b.mqimg-7-7.tmp.mqimg-1-2.tmp"),
        ];
        for path in &left {
            fs::write(path, b"half a frame").unwrap();
        }
        let kept = [
            deep.join("0123456789abcdef0123456789abcdef.jpg"),
            deep.join(".x.jpg.1234.5.tmp"),
            deep.join(".x.jpg.mqimg-12-.tmp"),
            deep.join(".x.jpg.mqimg--3.tmp"),
            deep.join(".x.jpg.mqimg-1a-3.tmp"),
            deep.join("..mqimg-1-3.tmp"),
            deep.join("x.jpg.mqimg-1-3.tmp"),
            deep.join(".x.jpg.mqimg-1-3.tmp~"),
            deep.join(".x.jpg.mqimg-1-3.TMP"),
            deep.join(".mqimg.lock"),
        ];
        for path in &kept {
            fs::write(path, b"not ours").unwrap();
        }
        // Outside the output folder, reached through a link inside it.
        let outside = dir.path().join("elsewhere");
        fs::create_dir(&outside).unwrap();
        let theirs = outside.join(".y.jpg.mqimg-1-0.tmp");
        fs::write(&theirs, b"theirs").unwrap();
        std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
        std::os::unix::fs::symlink(&theirs, deep.join(".z.jpg.mqimg-1-0.tmp")).unwrap();
        fs::write(dir.path().join(".w.jpg.mqimg-1-0.tmp"), b"beside").unwrap();

        let removed = remove_leftovers(&out);

        assert_eq!(
            removed,
            Leftovers {
                files: 3,
                bytes: 3 * 12
            }
        );
        for path in &left {
            assert!(!path.exists(), "{path:?} was left");
        }
        for path in kept
            .iter()
            .chain([&theirs, &dir.path().join(".w.jpg.mqimg-1-0.tmp")])
        {
            assert!(path.exists(), "{path:?} was removed");
        }
        assert!(deep.join(".z.jpg.mqimg-1-0.tmp").is_symlink());
    }

    #[test]
    fn a_write_names_its_temp_file_so_that_removal_finds_it() {
        let name = temp_name(
            "0123456789abcdef0123456789abcdef.png",
            4_294_967_295,
            u64::MAX,
        );
        assert!(is_temp_name(&name), "{name}");
        assert!(name.starts_with(".0123456789abcdef0123456789abcdef.png.mqimg-"));
    }

    #[test]
    fn a_second_claim_on_the_same_folder_leaves_the_first_ones_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim_output(dir.path()).unwrap();
        let in_progress = dir.path().join(".x.jpg.mqimg-1-0.tmp");
        fs::write(&in_progress, b"being written").unwrap();
        let second = claim_output(dir.path()).unwrap();
        assert!(in_progress.exists());
        drop((first, second));
        let _third = claim_output(dir.path()).unwrap();
        assert!(!in_progress.exists());
    }

    #[test]
    fn atomic_write_leaves_only_the_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/frame.jpg");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "temp files left behind: {entries:?}");
    }
}
