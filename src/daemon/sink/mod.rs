//! Frame files: where a frame goes (`paths`: a path derived from the topic that can never leave the
//! output folder), writing it atomically and as durably as `output.sync` asks, the per-topic
//! `latest.{ext}` file, finding a redelivered frame's earlier file (`store`), and removing the temp
//! files a crash leaves behind (`leftovers`). What bytes a file holds is [`crate::frame::encode`]'s job;
//! deleting old files is [`crate::daemon::retention`]'s.

mod leftovers;
mod paths;
mod store;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::config::SyncMode;
use crate::frame::encode::EncodeError;

pub use leftovers::{OutputLock, claim_output};
pub use paths::{FrameName, date_folder_days, folder_topic, frame_path, latest_path};
pub use store::{Frames, Stored};

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

    /// The filesystem is full (or the quota used up): what retention can fix.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the whole new one, never a part, and
/// the new one survives a power cut once this returns: temp file, fdatasync, rename, fsync of the
/// folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_frame(path, bytes, SyncMode::File).map(drop)
}

/// [`write_atomic`] with the content streamed by `write` (a frame encoded straight into the file,
/// without a second copy of it in memory).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), OutputError> {
    write_frame_with(path, write, SyncMode::File).map(drop)
}

/// A file [`write_frame`] wrote.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// Its modification time: how the janitor, and a scan after a restart, date it.
    pub modified: SystemTime,
}

/// Writes `bytes` to `path` atomically (temp file, rename): a reader sees the old file or the whole new
/// one. With [`SyncMode::File`] it is on disk when this returns (the file's data, its name, and the
/// names of folders this created); otherwise only in the page cache, durable after a later
/// [`sync_filesystem`] ([`SyncMode::Batch`]) or whenever the kernel writes it back ([`SyncMode::None`]).
pub fn write_frame(path: &Path, bytes: &[u8], mode: SyncMode) -> Result<Written, OutputError> {
    write_frame_with(path, |file| file.write_all(bytes), mode)
}

/// [`write_frame`] with the content streamed by `write`.
fn write_frame_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    mode: SyncMode,
) -> Result<Written, OutputError> {
    let io_err = |source| OutputError::Io {
        path: path.to_owned(),
        source,
    };
    let sync = mode == SyncMode::File;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        create_folders(dir, sync).map_err(io_err)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        if sync {
            file.sync_data()?;
        }
        let modified = file.metadata()?.modified()?;
        fs::rename(&tmp, path)?;
        if let (Some(dir), true) = (dir, sync) {
            File::open(dir)?.sync_all()?;
        }
        Ok(Written { modified })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// Creates `dir` and its missing parents; with `sync`, also makes their names durable (fsync of the
/// folder holding each new one), or a power cut could lose a whole new date folder with its frames.
fn create_folders(dir: &Path, sync: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.is_dir())
        .collect();
    fs::create_dir_all(dir)?;
    if sync {
        for created in missing {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
    }
    Ok(())
}

/// A fresh temp file next to `path` (see `leftovers`: its name marks it as mqimg's).
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("frame");
    path.with_file_name(leftovers::temp_name(
        name,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
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

/// Makes `latest` hold the frame stored at `frame` (whose bytes are `bytes`): a hard link to it
/// renamed over `latest`, or a copy written and renamed the same way where the filesystem has no hard
/// links. Readers see the previous frame or the new one, never a part. Not flushed: it is a
/// convenience copy, not a frame that is acked.
pub fn replace_latest(latest: &Path, frame: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let io_err = |source| OutputError::Io {
        path: latest.to_owned(),
        source,
    };
    let tmp = temp_path(latest);
    let result = fs::hard_link(frame, &tmp)
        .or_else(|_| File::create(&tmp)?.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, latest));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

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

    #[test]
    fn every_mode_writes_the_whole_file_and_reports_its_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [SyncMode::Batch, SyncMode::File, SyncMode::None] {
            let path = dir.path().join(format!("{mode:?}/new/folders/f.jpg"));
            let written = write_frame(&path, b"frame bytes", mode).unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"frame bytes");
            let on_disk = fs::metadata(&path).unwrap().modified().unwrap();
            assert_eq!(written.modified, on_disk, "{mode:?}");
        }
    }

    #[test]
    fn latest_is_a_link_to_the_frame_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("d/1.jpg"), dir.path().join("d/2.jpg"));
        write_atomic(&one, b"one").unwrap();
        write_atomic(&two, b"two!").unwrap();
        let latest = dir.path().join("latest.jpg");
        replace_latest(&latest, &one, b"one").unwrap();
        assert_eq!(fs::read(&latest).unwrap(), b"one");
        replace_latest(&latest, &two, b"two!").unwrap();
        assert_eq!(fs::read(&latest).unwrap(), b"two!");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(&latest).unwrap().ino(),
            fs::metadata(&two).unwrap().ino()
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "temp files left behind: {names:?}");
    }

    #[test]
    fn latest_is_a_copy_when_the_frame_cannot_be_linked() {
        let dir = tempfile::tempdir().unwrap();
        let latest = dir.path().join("latest.png");
        replace_latest(&latest, &dir.path().join("gone.png"), b"copy").unwrap();
        assert_eq!(fs::read(&latest).unwrap(), b"copy");
    }
}
