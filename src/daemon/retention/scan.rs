//! The startup scan: one walk of the output folder that finds every frame file mqimg named
//! (`{topic levels}/{YYYY-MM-DD}/{32 hex}.{ext}`, each folder a name mqimg makes) and nothing else.
//! Symbolic links are neither followed nor counted. One `stat` per frame file; folders are told apart
//! by the type `readdir` reports.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::index::{Entry, Files, Policy, nanos};
use crate::daemon::sink::{self, FrameName};

/// What the scan found, and what it cost.
#[derive(Debug)]
pub struct Scanned {
    pub files: Files,
    pub took: Duration,
    /// Folders that could not be read (logged, skipped).
    pub unreadable: u64,
    /// The scan was stopped before the end (shutdown).
    pub stopped: bool,
}

/// Walks `dir`, returning its frame files by date folder. `stop` is asked between folders: a shutdown
/// should not wait for a walk of millions of files.
pub fn scan(dir: &Path, policy: &Policy, stop: &dyn Fn() -> bool) -> Scanned {
    let started = Instant::now();
    let mut found: Vec<(PathBuf, Vec<Entry>)> = Vec::new();
    let mut unreadable = 0;
    // Each folder with its path below `dir`.
    let mut folders: Vec<PathBuf> = vec![PathBuf::new()];
    let mut stopped = false;
    while let Some(rel) = folders.pop() {
        if stop() {
            stopped = true;
            break;
        }
        let entries = match fs::read_dir(dir.join(&rel)) {
            Ok(entries) => entries,
            Err(error) => {
                unreadable += 1;
                tracing::warn!(folder = %dir.join(&rel).display(), %error, "retention cannot read a folder: frames in it are not counted");
                continue;
            }
        };
        let holds_frames = is_date_folder(&rel);
        let mut frames = Vec::new();
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if kind.is_dir() {
                // mqimg never makes a hidden folder: those are someone else's.
                if !name.starts_with('.') {
                    folders.push(rel.join(name));
                }
            } else if kind.is_file() && holds_frames {
                let (Some(frame), Ok(meta)) = (FrameName::parse(name), entry.metadata()) else {
                    continue;
                };
                frames.push(Entry {
                    at: meta.modified().map_or(0, nanos),
                    name: frame,
                    size: meta.len(),
                });
            }
        }
        if !frames.is_empty() {
            frames.shrink_to_fit();
            found.push((rel, frames));
        }
    }
    Scanned {
        files: Files::from_folders(found, policy),
        took: started.elapsed(),
        unreadable,
        stopped,
    }
}

/// Whether `rel` (below the output folder) is a date folder under at least one topic level.
fn is_date_folder(rel: &Path) -> bool {
    let names: Vec<&str> = rel.iter().filter_map(|n| n.to_str()).collect();
    match names.split_last() {
        Some((date, levels)) if names.len() == rel.iter().count() => {
            sink::date_folder_days(date).is_some() && sink::folder_topic(levels).is_some()
        }
        _ => false,
    }
}
