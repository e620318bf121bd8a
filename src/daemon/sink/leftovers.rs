//! What crashes leave behind: the hidden temp files a write goes through, removed at startup when no
//! other mqimg runs on the same output folder (a shared lock on it says so).

use std::fs::{self, File};
use std::path::Path;

use super::OutputError;

/// The temp file a write of `name` goes through: `.{name}.mqimg-{pid}-{counter}.tmp`. Hidden, and
/// marked so that [`is_temp_name`] matches mqimg's own and nothing else.
pub(super) fn temp_name(name: &str, pid: u32, counter: u64) -> String {
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

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
}
