//! Retention on generated trees: every bound holds after a sweep, oldest files go first, nothing that
//! is not a frame file is touched, and files in use survive any sweep, also while frames are written.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{Retention, SyncMode, TopicRetention};
use crate::daemon::sink::{self, Frames};
use crate::ops::metrics::Metrics;

const DAY: Duration = Duration::from_secs(86_400);

/// 2026-11-26T12:00:00Z: "now" in these tests.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_694_400)
}

/// A SHA-256 in hex whose first 32 digits (the file name) differ for each `i`.
fn sha(i: usize) -> String {
    format!("{:032x}{}", i + 1, "0".repeat(32))
}

/// A frame file as the daemon would have written it `age` before [`now`], of `size` bytes.
fn frame(dir: &Path, topic: &str, age: Duration, i: usize, size: usize) -> PathBuf {
    let at = now() - age;
    let path = sink::frame_path(dir, topic, at, &sha(i), "jpg");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, vec![b'x'; size]).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(at)
        .unwrap();
    path
}

/// Every file and folder under `dir`.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            all.insert(path);
        }
    }
    all
}

/// Files that are not frames, and folders that are not mqimg's, placed all over a tree.
fn foreign_files(dir: &Path) -> Vec<PathBuf> {
    let date = crate::frame::record::utc_date(now() - 30 * DAY);
    let hex = "0123456789abcdef0123456789abcdef.jpg";
    let paths = [
        dir.join("notes.txt"),
        dir.join(format!("cams/door/{date}/notes.txt")),
        dir.join(format!("cams/door/{date}/.{hex}.mqimg-1-2.tmp")),
        dir.join(format!("cams/door/{date}/{hex}.bak")),
        dir.join(format!("my photos/{date}/{hex}")),
        dir.join(format!(".hidden/{date}/{hex}")),
        dir.join(format!("{date}/{hex}")),
        dir.join(format!("cams/door/not-a-date/{hex}")),
        dir.join("cams/door/latest.jpg"),
    ];
    for path in &paths {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"not a frame of mqimg's").unwrap();
        let old = fs::File::options().write(true).open(path).unwrap();
        old.set_modified(now() - 400 * DAY).unwrap();
    }
    paths.to_vec()
}

fn index_of(dir: &Path, retention: Retention) -> Arc<Index> {
    let index = Index::new(dir.to_owned(), retention, Arc::new(Metrics::default()));
    let scanned = scan(dir, index.policy(), &|| false);
    index.scanned(scanned.files);
    index
}

fn no_space() -> std::io::Result<Space> {
    Ok(Space {
        available: u64::MAX,
        total: u64::MAX,
    })
}

fn frames_in(dir: &Path) -> BTreeSet<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(sink::FrameName::parse)
                    .is_some()
                && p.parent()
                    .and_then(|d| d.file_name()?.to_str())
                    .and_then(sink::date_folder_days)
                    .is_some()
                && !p.starts_with(dir.join("my photos"))
                && !p.starts_with(dir.join(".hidden"))
                && p.parent().and_then(Path::parent) != Some(dir)
        })
        .collect()
}

#[test]
fn age_limits_delete_old_frames_and_whole_old_folders_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut young = BTreeSet::new();
    let mut old = BTreeSet::new();
    for (t, topic) in ["cams/door", "cams/yard", "cams/door/debug", "a//b"]
        .iter()
        .enumerate()
    {
        for day in 0..12_u32 {
            for k in 0..3 {
                let i = t * 1000 + day as usize * 10 + k;
                let path = frame(dir, topic, day * DAY + Duration::from_secs(60), i, 100);
                if day < 7 {
                    young.insert(path)
                } else {
                    old.insert(path)
                };
            }
        }
    }
    // Rewritten today by a redelivery, in a folder 10 days old: goes with its folder.
    let rewritten = frame(dir, "cams/yard", 10 * DAY, 99_999, 100);
    fs::File::options()
        .write(true)
        .open(&rewritten)
        .unwrap()
        .set_modified(now())
        .unwrap();
    old.insert(rewritten.clone());
    let foreign = foreign_files(dir);
    let before = tree(dir);
    let retention = Retention {
        max_age: Some(7 * DAY),
        ..Retention::default()
    };
    let index = index_of(dir, retention);

    let swept = sweep(&index, now(), &no_space);

    assert_eq!(
        swept.of(Reason::MaxAge),
        (old.len() as u64, old.len() as u64 * 100)
    );
    let after = tree(dir);
    for path in &old {
        assert!(!after.contains(path), "{path:?} is past max_age");
    }
    for path in young.iter().chain(&foreign) {
        assert!(after.contains(path), "{path:?} was deleted");
    }
    // Emptied date folders went; those holding someone else's files stayed.
    let old_folder = rewritten.parent().unwrap();
    assert!(!old_folder.exists());
    let date = crate::frame::record::utc_date(now() - 30 * DAY);
    assert!(dir.join(format!("cams/door/{date}")).is_dir());
    let removed: BTreeSet<_> = before.difference(&after).collect();
    assert!(removed.iter().all(|p| old.contains(*p) || !p.is_file()));
    assert_eq!(
        index.totals(),
        (young.len() as u64, young.len() as u64 * 100)
    );
    // The next sweep finds nothing more to do.
    assert_eq!(sweep(&index, now(), &no_space).files(), 0);
}

#[test]
fn topic_overrides_keep_some_cameras_longer_and_others_shorter() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let door = frame(dir, "cams/door", 20 * DAY, 1, 10);
    let yard = frame(dir, "cams/yard", 20 * DAY, 2, 10);
    let debug = frame(dir, "cams/yard/debug", 2 * DAY, 3, 10);
    let forever = frame(dir, "keep/this", 300 * DAY, 4, 10);
    let retention = Retention {
        max_age: Some(7 * DAY),
        topics: vec![
            TopicRetention {
                filter: "cams/door/#".into(),
                max_age: Some(30 * DAY),
            },
            TopicRetention {
                filter: "cams/+/debug".into(),
                max_age: Some(DAY),
            },
            TopicRetention {
                filter: "keep/#".into(),
                max_age: None,
            },
        ],
        ..Retention::default()
    };
    let index = index_of(dir, retention);
    sweep(&index, now(), &no_space);
    assert!(door.exists() && forever.exists());
    assert!(!yard.exists() && !debug.exists());
}

#[test]
fn max_bytes_deletes_the_oldest_files_of_any_topic_until_the_total_fits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut all = Vec::new();
    for i in 0..200 {
        let topic = format!("cams/{}", i % 7);
        let age = Duration::from_secs(600 * (200 - i as u64));
        all.push((now() - age, frame(dir, &topic, age, i, 1000 + i)));
    }
    let foreign = foreign_files(dir);
    let max = 60_000;
    let index = index_of(
        dir,
        Retention {
            max_bytes: Some(max),
            ..Retention::default()
        },
    );
    let swept = sweep(&index, now(), &no_space);
    let left: Vec<&(SystemTime, PathBuf)> = all.iter().filter(|(_, p)| p.exists()).collect();
    let left_bytes: u64 = left
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    assert!(left_bytes <= max, "{left_bytes} bytes left");
    assert_eq!(index.totals().1, left_bytes);
    let oldest_left = left.iter().map(|(at, _)| *at).min().unwrap();
    let gone: Vec<_> = all.iter().filter(|(_, p)| !p.exists()).collect();
    assert_eq!(swept.of(Reason::MaxBytes).0, gone.len() as u64);
    assert!(
        gone.iter().all(|(at, _)| *at < oldest_left),
        "not oldest first"
    );
    // Deleting one file fewer would not have been enough.
    let newest_gone = gone.iter().max_by_key(|(at, _)| *at).unwrap();
    let its_size = 1000 + all.iter().position(|f| f.1 == newest_gone.1).unwrap() as u64;
    assert!(left_bytes + its_size > max);
    assert!(foreign.iter().all(|p| p.exists()));
}

#[test]
fn min_free_deletes_the_oldest_until_the_filesystem_has_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_owned();
    for i in 0..100 {
        let age = Duration::from_secs(3600 * (100 - i as u64));
        frame(&dir, &format!("cams/{}", i % 3), age, i, 5000);
    }
    // A 2 MB filesystem holding these frames (in 4 KiB blocks) and 300 KB of other data.
    let capacity: u64 = 2_000_000;
    let used_by_frames = |dir: &Path| -> u64 {
        frames_in(dir)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len().div_ceil(4096) * 4096)
            .sum()
    };
    let fake_dir = dir.clone();
    let space = move || {
        Ok(Space {
            available: capacity - 300_000 - used_by_frames(&fake_dir),
            total: capacity,
        })
    };
    let index = index_of(
        &dir,
        Retention {
            min_free_bytes: Some(200_000),
            min_free_percent: 50,
            ..Retention::default()
        },
    );
    assert!(space().unwrap().available < 1_000_000);
    let swept = sweep(&index, now(), &space);
    assert!(space().unwrap().available >= 1_000_000, "{swept:?}");
    assert!(
        space().unwrap().available < 1_000_000 + 8192,
        "only what was needed"
    );
    assert!(swept.of(Reason::MinFree).0 > 0);
    assert_eq!(swept.short_of_free, None);

    // Other data filling the disk: everything goes, and the shortfall is reported.
    let full = || {
        Ok(Space {
            available: 0,
            total: capacity,
        })
    };
    let swept = sweep(&index, now(), &full);
    assert!(frames_in(&dir).is_empty());
    assert!(swept.short_of_free.is_some());
}

#[test]
fn files_in_use_and_their_folders_survive_every_bound_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let held = frame(dir, "cams/door", 40 * DAY, 1, 100);
    let other = frame(dir, "cams/door", 40 * DAY, 2, 100);
    let last = frame(dir, "cams/yard", 40 * DAY, 3, 100);
    // A worker about to write into the folder the sweep empties (a redelivery found it).
    let about_to_write = last.with_file_name(format!("{}.jpg", &sha(4)[..32]));
    let index = index_of(
        dir,
        Retention {
            max_age: Some(DAY),
            max_bytes: Some(1),
            ..Retention::default()
        },
    );
    let in_use = index.in_use(&[&held, &about_to_write]);
    let swept = sweep(&index, now(), &no_space);
    assert!(held.exists() && !other.exists() && !last.exists());
    assert_eq!(swept.kept_in_use, 1, "{swept:?}");
    assert_eq!(index.totals(), (1, 100), "a kept file stays counted");
    assert!(
        about_to_write.parent().unwrap().is_dir(),
        "a folder about to be written in stays"
    );
    fs::write(&about_to_write, b"written after the sweep").unwrap();
    drop(in_use);
    sweep(&index, now(), &no_space);
    assert!(!held.exists());
    assert!(
        !held.parent().unwrap().exists(),
        "its emptied folder is removed"
    );
    assert!(
        about_to_write.exists(),
        "a file written behind the index's back is not known"
    );
    assert!(dir.exists(), "never the output folder itself");
}

#[test]
fn frames_written_during_the_startup_scan_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for i in 0..20 {
        frame(dir, "cams/door", DAY, i, 10);
    }
    let index = Index::new(
        dir.to_owned(),
        Retention {
            max_bytes: Some(1 << 30),
            ..Retention::default()
        },
        Arc::new(Metrics::default()),
    );
    let with_index = Frames::new(
        dir.to_owned(),
        SyncMode::None,
        false,
        Some(Arc::clone(&index)),
    );
    // Written before the scan reaches them, and after.
    with_index
        .store(("cams/door", 1, now()), &sha(100), "jpg", b"early")
        .unwrap();
    let scanned = scan(dir, index.policy(), &|| false);
    with_index
        .store(("cams/yard", 2, now()), &sha(101), "jpg", b"late")
        .unwrap();
    index.scanned(scanned.files);
    assert_eq!(index.totals(), (22, 20 * 10 + 5 + 4));
}

#[test]
fn a_frame_redelivered_after_midnight_is_stored_once_in_its_first_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let index = index_of(
        dir,
        Retention {
            max_bytes: Some(1 << 30),
            ..Retention::default()
        },
    );
    let frames = Frames::new(
        dir.to_owned(),
        SyncMode::File,
        false,
        Some(Arc::clone(&index)),
    );
    let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_737_600);
    let first = frames
        .store(
            ("cams/door", 1, midnight - Duration::from_secs(2)),
            &sha(7),
            "jpg",
            b"frame",
        )
        .unwrap();
    let again = frames
        .store(
            ("cams/door", 1, midnight + Duration::from_secs(5)),
            &sha(7),
            "jpg",
            b"frame",
        )
        .unwrap();
    assert_eq!(again.path, first.path);
    assert!(first.path.to_str().unwrap().contains("/2026-11-26/"));
    assert_eq!(frames_in(dir).len(), 1);
    assert_eq!(index.totals(), (1, 5));
    // A new frame after midnight goes to the new day.
    let new = frames
        .store(
            ("cams/door", 2, midnight + Duration::from_secs(6)),
            &sha(8),
            "jpg",
            b"new",
        )
        .unwrap();
    assert!(new.path.to_str().unwrap().contains("/2026-11-27/"));
}

#[test]
fn frames_stored_while_sweeps_run_are_whole_until_released_and_the_bound_holds_after() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_owned();
    for i in 0..300 {
        frame(
            &dir,
            &format!("cams/{}", i % 5),
            DAY + Duration::from_secs(i as u64),
            i,
            2000,
        );
    }
    // Everything not in use goes: a file deleted too early cannot hide behind newer ones.
    let max = 1;
    let index = index_of(
        &dir,
        Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(max),
            ..Retention::default()
        },
    );
    let frames = Arc::new(Frames::new(
        dir.clone(),
        SyncMode::None,
        true,
        Some(Arc::clone(&index)),
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let janitor = {
        let (index, stop) = (Arc::clone(&index), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sweeps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || sweeps == 0 {
                sweep(&index, SystemTime::now(), &no_space);
                sweeps += 1;
            }
            sweeps
        })
    };
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let frames = Arc::clone(&frames);
            std::thread::spawn(move || {
                for k in 0..150 {
                    let bytes = vec![u8::try_from(k % 251).unwrap(); 3000];
                    let i = 10_000 * (w + 1) + k;
                    let stored = frames
                        .store(
                            (&format!("cams/{}", k % 5), i as u64, SystemTime::now()),
                            &sha(i),
                            "jpg",
                            &bytes,
                        )
                        .unwrap();
                    // Until its record is published, the file must stay whole where the record says.
                    for _ in 0..3 {
                        assert_eq!(fs::read(&stored.path).unwrap(), bytes);
                        std::thread::yield_now();
                    }
                    drop(stored);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(janitor.join().unwrap() > 0);
    sweep(&index, SystemTime::now(), &no_space);
    let on_disk: u64 = frames_in(&dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= max, "{on_disk}");
    assert_eq!(index.totals(), (frames_in(&dir).len() as u64, on_disk));
    for k in 0..5 {
        let latest = sink::latest_path(&dir, &format!("cams/{k}"), "jpg");
        assert_eq!(
            fs::read(latest).unwrap().len(),
            3000,
            "latest survives its frame"
        );
    }
}
