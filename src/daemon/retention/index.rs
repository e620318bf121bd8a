//! The janitor's accounting: every frame file under the output folder, per date folder and oldest
//! first, with totals, kept in memory so that a sweep never rescans the tree; and the files in use
//! (being written, or whose record is not yet published), which nothing deletes.
//!
//! Why deleting never races a write: a worker marks a path in use ([`Index::in_use`]) *before* it looks
//! at or writes the file, and the mark lasts until the frame's record is published (the guard travels
//! with the frame to the delivery task). The janitor unlinks a file, or removes a folder, only while
//! holding the same lock and after checking that no mark covers it. So an unlink happens either before
//! the mark (the write that follows creates the file anew, folders included) or after the record was
//! published; never in between.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::Retention;
use crate::daemon::sink::{self, FrameName};
use crate::ops::metrics::Metrics;

/// One frame file: 40 bytes, so a million of them take ~40 MB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Modification time, nanoseconds since 1970: the order files are deleted in.
    pub at: u64,
    pub name: FrameName,
    pub size: u64,
}

/// Nanoseconds since 1970 (0 before it).
pub fn nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A date folder's files, oldest first.
#[derive(Debug)]
struct Folder {
    /// Its date, as days since 1970.
    days: i64,
    /// How old its frames may get: the topic's override or `retention.max_age`.
    max_age: Option<Duration>,
    entries: VecDeque<Entry>,
    bytes: u64,
}

/// What the janitor deletes from, by `[retention]`: the age limit of each topic.
#[derive(Clone, Debug)]
pub struct Policy(pub Retention);

impl Policy {
    /// The date and the age limit of a date folder, from its path below the output folder.
    fn folder(&self, rel: &Path) -> (i64, Option<Duration>) {
        let names: Vec<&str> = rel.iter().filter_map(|n| n.to_str()).collect();
        let days = names.last().and_then(|d| sink::date_folder_days(d));
        let topic = names
            .split_last()
            .and_then(|(_, levels)| sink::folder_topic(levels));
        (
            days.unwrap_or(0),
            match topic {
                Some(topic) => self.0.max_age_for(&topic),
                None => self.0.max_age,
            },
        )
    }
}

/// Every frame file known, by date folder (relative to the output folder), with the global order.
#[derive(Debug, Default)]
pub struct Files {
    folders: HashMap<PathBuf, Folder>,
    /// Each non-empty folder by its oldest file: the first is where the oldest file overall is.
    order: BTreeSet<(u64, PathBuf)>,
    count: u64,
    bytes: u64,
}

impl Files {
    /// Files as a scan found them, per date folder (in any order).
    pub fn from_folders(folders: Vec<(PathBuf, Vec<Entry>)>, policy: &Policy) -> Self {
        let mut files = Files::default();
        for (rel, mut entries) in folders {
            if entries.is_empty() {
                continue;
            }
            entries.sort_unstable();
            let (days, max_age) = policy.folder(&rel);
            let bytes = entries.iter().map(|e| e.size).sum();
            files.count += entries.len() as u64;
            files.bytes += bytes;
            files.order.insert((entries[0].at, rel.clone()));
            files.folders.insert(
                rel,
                Folder {
                    days,
                    max_age,
                    entries: entries.into(),
                    bytes,
                },
            );
        }
        files
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn folders(&self) -> usize {
        self.folders.len()
    }

    fn insert(&mut self, rel: &Path, entry: Entry, policy: &Policy) {
        let folder = self.folders.entry(rel.to_owned()).or_insert_with(|| {
            let (days, max_age) = policy.folder(rel);
            Folder {
                days,
                max_age,
                entries: VecDeque::new(),
                bytes: 0,
            }
        });
        let old_front = folder.entries.front().map(|e| e.at);
        // Frames arrive nearly in order: almost always an append.
        if folder.entries.back().is_none_or(|last| *last <= entry) {
            folder.entries.push_back(entry);
        } else {
            let at = folder.entries.partition_point(|e| *e < entry);
            folder.entries.insert(at, entry);
        }
        folder.bytes += entry.size;
        self.count += 1;
        self.bytes += entry.size;
        let new_front = folder.entries.front().map(|e| e.at);
        if old_front != new_front {
            if let Some(old) = old_front {
                self.order.remove(&(old, rel.to_owned()));
            }
            if let Some(new) = new_front {
                self.order.insert((new, rel.to_owned()));
            }
        }
    }

    fn contains(&self, rel: &Path, entry: &Entry) -> bool {
        self.folders
            .get(rel)
            .is_some_and(|f| f.entries.binary_search(entry).is_ok())
    }

    /// The folder holding the oldest file.
    fn oldest(&self) -> Option<PathBuf> {
        self.order.first().map(|(_, rel)| rel.clone())
    }

    /// Takes the oldest file of `rel` out; a folder left empty is forgotten.
    fn pop_front(&mut self, rel: &Path) -> Option<Entry> {
        let folder = self.folders.get_mut(rel)?;
        let entry = folder.entries.pop_front()?;
        folder.bytes -= entry.size;
        self.count -= 1;
        self.bytes -= entry.size;
        self.order.remove(&(entry.at, rel.to_owned()));
        match folder.entries.front() {
            Some(next) => {
                self.order.insert((next.at, rel.to_owned()));
            }
            None => {
                self.folders.remove(rel);
            }
        }
        Some(entry)
    }
}

/// The shared state: what is stored, what is in use.
#[derive(Debug)]
struct State {
    files: Files,
    /// Paths marked in use, with how many marks each (two frames may share a file).
    in_use: HashMap<PathBuf, usize>,
    /// Frames written while the startup scan runs (`Some` until it ends): merged into `files` then,
    /// each unless the scan found it already.
    recent: Option<Vec<(PathBuf, Entry)>>,
}

/// The janitor's accounting, shared with the workers that write frames.
pub struct Index {
    /// The output folder, absolute.
    dir: PathBuf,
    policy: Policy,
    /// One lock for files and marks: an unlink and a mark never interleave (see the module doc).
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    /// Wakes the janitor before its interval: a write found the disk full.
    wake: crossbeam_channel::Sender<()>,
    woken: crossbeam_channel::Receiver<()>,
    /// Set at shutdown: a sweep in progress stops at its next file.
    stopping: AtomicBool,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index").field("dir", &self.dir).finish()
    }
}

/// What happened to a file the janitor took out of the index.
pub(super) enum Removal {
    /// Deleted (or already gone): it freed its bytes.
    Deleted,
    /// In use: it stays.
    InUse,
    /// It could not be deleted: it stays, and the sweep stops.
    Failed(io::Error),
}

impl Index {
    /// An empty index for frames under `dir` (absolute), waiting for the startup scan
    /// ([`Index::scanned`]) while it records what workers write.
    pub fn new(dir: PathBuf, retention: Retention, metrics: Arc<Metrics>) -> Arc<Self> {
        let (wake, woken) = crossbeam_channel::bounded(1);
        Arc::new(Self {
            dir,
            policy: Policy(retention),
            state: Mutex::new(State {
                files: Files::default(),
                in_use: HashMap::new(),
                recent: Some(Vec::new()),
            }),
            metrics,
            wake,
            woken,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the index as consistent as between two steps.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `paths` in use until the guard is dropped: the janitor deletes none of them, nor the
    /// folders holding them.
    pub fn in_use(self: &Arc<Self>, paths: &[&Path]) -> InUse {
        let mut state = self.lock();
        for path in paths {
            *state.in_use.entry(path.to_path_buf()).or_default() += 1;
        }
        InUse {
            index: Arc::clone(self),
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    /// A worker wrote a new frame file at `path` (one that did not exist before).
    pub fn written(&self, path: &Path, modified: SystemTime, size: u64) {
        let Some((rel, name)) = path
            .strip_prefix(&self.dir)
            .ok()
            .and_then(|rel| Some((rel.parent()?, rel.file_name()?.to_str()?)))
        else {
            return;
        };
        let Some(name) = FrameName::parse(name) else {
            return;
        };
        let entry = Entry {
            at: nanos(modified),
            name,
            size,
        };
        let mut state = self.lock();
        match &mut state.recent {
            Some(recent) => recent.push((rel.to_owned(), entry)),
            None => state.files.insert(rel, entry, &self.policy),
        }
        self.publish(&state.files);
    }

    /// The startup scan is done: `files` is what it found; frames written meanwhile are added.
    pub fn scanned(&self, files: Files) {
        let mut state = self.lock();
        let recent = state.recent.take().unwrap_or_default();
        state.files = files;
        for (rel, entry) in recent {
            if !state.files.contains(&rel, &entry) {
                state.files.insert(&rel, entry, &self.policy);
            }
        }
        self.publish(&state.files);
    }

    /// Asks the janitor to sweep now rather than at its next interval.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    pub(super) fn woken(&self) -> &crossbeam_channel::Receiver<()> {
        &self.woken
    }

    /// Stops sweeps: each one in progress ends at its next file.
    pub(super) fn stop_sweeping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Files and bytes known.
    pub fn totals(&self) -> (u64, u64) {
        let state = self.lock();
        (state.files.count, state.files.bytes)
    }

    fn publish(&self, files: &Files) {
        self.metrics
            .stored_files
            .set(i64::try_from(files.count).unwrap_or(i64::MAX));
        self.metrics
            .stored_bytes
            .set(i64::try_from(files.bytes).unwrap_or(i64::MAX));
    }

    /// The date folders with an age limit: (folder, its date as days since 1970, the limit).
    pub(super) fn aged_folders(&self) -> Vec<(PathBuf, i64, Duration)> {
        let state = self.lock();
        state
            .files
            .folders
            .iter()
            .filter_map(|(rel, f)| Some((rel.clone(), f.days, f.max_age?)))
            .collect()
    }

    /// Takes the oldest file of `rel`, if `take` agrees, and deletes it unless it is in use.
    pub(super) fn remove_front(
        &self,
        rel: &Path,
        take: impl FnOnce(&Entry) -> bool,
    ) -> Option<(Entry, Removal)> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let mut state = self.lock();
        let front = state.files.folders.get(rel)?.entries.front()?;
        if !take(front) {
            return None;
        }
        let entry = state.files.pop_front(rel)?;
        Some((entry, self.remove(&mut state, rel, entry)))
    }

    /// Takes the oldest file overall, if `take` agrees given the bytes still known, and deletes it
    /// unless it is in use.
    pub(super) fn remove_oldest(
        &self,
        take: impl FnOnce(u64) -> bool,
    ) -> Option<(PathBuf, Entry, Removal)> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let mut state = self.lock();
        if !take(state.files.bytes) {
            return None;
        }
        let rel = state.files.oldest()?;
        let entry = state.files.pop_front(&rel)?;
        let removal = self.remove(&mut state, &rel, entry);
        Some((rel, entry, removal))
    }

    pub(super) fn count_deleted(&self, reason: &'static str, bytes: u64) {
        self.metrics.count_deleted(reason, bytes);
    }

    /// Puts back files a sweep took out but did not delete.
    pub(super) fn restore(&self, kept: Vec<(PathBuf, Entry)>) {
        if kept.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (rel, entry) in kept {
            state.files.insert(&rel, entry, &self.policy);
        }
        self.publish(&state.files);
    }

    /// Deletes `entry`'s file, with the lock held, unless it is in use; removes the folders this
    /// empties (up to, not including, the output folder).
    fn remove(&self, state: &mut State, rel: &Path, entry: Entry) -> Removal {
        let folder = self.dir.join(rel);
        let path = folder.join(entry.name.to_string());
        if state.in_use.contains_key(&path) {
            return Removal::InUse;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Removal::Failed(e),
        }
        self.publish(&state.files);
        if !state.files.folders.contains_key(rel) {
            let mut empty = Some(folder.as_path());
            while let Some(folder) = empty.filter(|f| *f != self.dir && f.starts_with(&self.dir)) {
                // A worker may be about to write below it: it marked its path before creating folders.
                if state.in_use.keys().any(|p| p.starts_with(folder))
                    || fs::remove_dir(folder).is_err()
                {
                    break;
                }
                empty = folder.parent();
            }
        }
        Removal::Deleted
    }
}

/// Paths marked in use (see [`Index::in_use`]); the marks go when this is dropped.
pub struct InUse {
    index: Arc<Index>,
    paths: Vec<PathBuf>,
}

impl InUse {
    /// Drops the marks of every path but `path`.
    pub fn keep_only(&mut self, path: &Path) {
        let (keep, release): (Vec<_>, Vec<_>) =
            self.paths.drain(..).partition(|p| p.as_path() == path);
        self.paths = keep;
        self.index.release(&release);
    }
}

impl fmt::Debug for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InUse").field(&self.paths).finish()
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.index.release(&self.paths);
    }
}

impl Index {
    fn release(&self, paths: &[PathBuf]) {
        if paths.is_empty() {
            return;
        }
        let mut state = self.lock();
        for path in paths {
            if let Some(n) = state.in_use.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    state.in_use.remove(path);
                }
            }
        }
    }
}
