//! Storing one frame: the path (today's date folder, or the previous day's when a redelivered frame
//! is already there), the write as durable as `output.sync` asks, the index the janitor deletes from,
//! and the topic's `latest.{ext}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{OutputError, frame_path, latest_path, replace_latest, write_frame};
use crate::config::SyncMode;
use crate::daemon::retention::{InUse, Index};

/// How far back a redelivered frame's earlier file is looked for: a frame first received before
/// midnight and redelivered after it belongs in yesterday's folder, where it already is.
const REDELIVERY_LOOKBACK: Duration = Duration::from_secs(86_400);

/// Where frames are stored, and how.
#[derive(Debug)]
pub struct Frames {
    /// The output folder, absolute (resolved once at startup): records carry paths below it.
    dir: PathBuf,
    sync: SyncMode,
    /// Per topic folder, the arrival number of the frame its `latest` file holds; `None` when
    /// `output.latest` is off. Locked while a `latest` file is replaced, so an older frame finishing
    /// late never replaces a newer one.
    latest: Option<Mutex<HashMap<PathBuf, u64>>>,
    /// The janitor's accounting, when retention is on.
    index: Option<Arc<Index>>,
}

/// A frame file written.
#[derive(Debug)]
pub struct Stored {
    pub path: PathBuf,
    /// Keeps the janitor off the file until the frame's record is published (drop it then).
    pub in_use: Option<InUse>,
    /// It is on disk already (`output.sync = "file"`).
    pub flushed: bool,
}

impl Frames {
    pub fn new(dir: PathBuf, sync: SyncMode, latest: bool, index: Option<Arc<Index>>) -> Self {
        Self {
            dir,
            sync,
            latest: latest.then(Mutex::default),
            index,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sync(&self) -> SyncMode {
        self.sync
    }

    /// A write found the filesystem full: retention, when on, sweeps now rather than at its interval.
    pub fn full(&self) {
        if let Some(index) = &self.index {
            index.wake();
        }
    }

    /// Stores `bytes`, the frame number `seq` received on `topic` at `received_at`, named by its
    /// `sha256_hex` with extension `ext`.
    pub fn store(
        &self,
        (topic, seq, received_at): (&str, u64, SystemTime),
        sha256_hex: &str,
        ext: &str,
        bytes: &[u8],
    ) -> Result<Stored, OutputError> {
        let today = frame_path(&self.dir, topic, received_at, sha256_hex, ext);
        let yesterday = received_at
            .checked_sub(REDELIVERY_LOOKBACK)
            .map(|at| frame_path(&self.dir, topic, at, sha256_hex, ext));
        let candidates: Vec<&Path> = std::iter::once(today.as_path())
            .chain(yesterday.as_deref())
            .collect();
        // Marked before they are looked at: the janitor cannot delete the file found, nor the folder
        // about to be created (see `retention::index`).
        let mut in_use = self.index.as_ref().map(|index| index.in_use(&candidates));
        let existing = candidates
            .iter()
            .find(|p| p.symlink_metadata().is_ok())
            .map(|p| p.to_path_buf());
        let path = existing.clone().unwrap_or(today);
        if let Some(in_use) = &mut in_use {
            in_use.keep_only(&path);
        }
        // A file already there is rewritten all the same: it may not have reached the disk before the
        // crash that caused the redelivery.
        let written = write_frame(&path, bytes, self.sync)?;
        if let (Some(index), None) = (&self.index, &existing) {
            index.written(&path, written.modified, bytes.len() as u64);
        }
        if let Some(latest) = &self.latest {
            self.replace_latest(latest, (topic, seq), &path, ext, bytes);
        }
        Ok(Stored {
            path,
            in_use,
            flushed: self.sync == SyncMode::File,
        })
    }

    /// Points the topic's `latest.{ext}` at this frame unless a newer one is there already. A failure
    /// is logged, not the frame's: the frame itself is stored.
    fn replace_latest(
        &self,
        newest: &Mutex<HashMap<PathBuf, u64>>,
        (topic, seq): (&str, u64),
        frame: &Path,
        ext: &str,
        bytes: &[u8],
    ) {
        let latest = latest_path(&self.dir, topic, ext);
        let mut newest = newest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(folder) = latest.parent() else {
            return;
        };
        if newest.get(folder).is_some_and(|shown| *shown > seq) {
            return;
        }
        match replace_latest(&latest, frame, bytes) {
            Ok(()) => {
                newest.insert(folder.to_owned(), seq);
            }
            Err(error) => tracing::warn!(topic, %error, "cannot update the latest frame file"),
        }
    }
}
