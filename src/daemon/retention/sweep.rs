//! One sweep: delete what `[retention]` says must go, oldest first, from the index alone (no rescan).
//! Ages first (per date folder, whole folders once entirely past their limit), then `max_bytes`, then
//! the free space of the filesystem. Files in use are kept and put back.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::index::{Entry, Index, Removal, nanos};

/// Why a file was deleted: the bound that needed the room (the metrics' `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    MaxAge,
    MaxBytes,
    MinFree,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::MaxAge, Reason::MaxBytes, Reason::MinFree];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAge => "max_age",
            Reason::MaxBytes => "max_bytes",
            Reason::MinFree => "min_free",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The size and free space of the filesystem holding the output folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged process may still write.
    pub available: u64,
    pub total: u64,
}

/// What `statvfs` says about the filesystem holding `dir`.
pub fn space(dir: &std::path::Path) -> io::Result<Space> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(Space {
        available: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files and bytes deleted, by [`Reason`].
    pub deleted: [(u64, u64); 3],
    /// Files a bound wanted gone that were kept because they are in use.
    pub kept_in_use: u64,
    /// Bytes still missing for the free-space bound when nothing was left to delete.
    pub short_of_free: Option<u64>,
    /// Why the sweep stopped early: a file could not be deleted.
    pub error: Option<String>,
}

impl Swept {
    pub fn files(&self) -> u64 {
        self.deleted.iter().map(|(f, _)| f).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.deleted.iter().map(|(_, b)| b).sum()
    }

    pub fn of(&self, reason: Reason) -> (u64, u64) {
        self.deleted[reason.index()]
    }
}

/// Blocks a deleted file frees, for the free-space estimate.
const BLOCK: u64 = 4096;

/// One sweep at `now`. `space` is asked once: a deletion's blocks are not freed at once on every
/// filesystem (btrfs and ZFS free them later), so asking after each one could delete everything.
pub fn sweep(index: &Index, now: SystemTime, space: &dyn Fn() -> io::Result<Space>) -> Swept {
    let mut run = Run {
        index,
        swept: Swept::default(),
        kept: Vec::new(),
        kept_bytes: 0,
        freed: 0,
    };
    run.ages(now);
    let retention = &index.policy().0;
    if let Some(max) = retention.max_bytes
        && run.swept.error.is_none()
    {
        run.oldest_until(Reason::MaxBytes, |run, bytes| bytes + run.kept_bytes <= max);
    }
    let wants_free = retention.min_free_bytes.is_some() || retention.min_free_percent > 0;
    if wants_free && run.swept.error.is_none() {
        match space() {
            Ok(space) => run.free(space),
            Err(e) => run.swept.error = Some(format!("cannot read the free space: {e}")),
        }
    }
    let Run { swept, kept, .. } = run;
    index.restore(kept);
    swept
}

/// A sweep in progress.
struct Run<'a> {
    index: &'a Index,
    swept: Swept,
    /// Files taken out of the index but not deleted (in use, or failing): put back at the end.
    kept: Vec<(PathBuf, Entry)>,
    kept_bytes: u64,
    /// Estimated bytes of disk space freed: sizes rounded up to whole blocks.
    freed: u64,
}

impl Run<'_> {
    /// Whether to go on after `removed`.
    fn account(&mut self, reason: Reason, rel: PathBuf, removed: (Entry, Removal)) -> bool {
        let (entry, removal) = removed;
        match removal {
            Removal::Deleted => {
                let slot = &mut self.swept.deleted[reason.index()];
                slot.0 += 1;
                slot.1 += entry.size;
                self.freed += entry.size.div_ceil(BLOCK) * BLOCK;
                self.index.count_deleted(reason.as_str(), entry.size);
                true
            }
            Removal::InUse => {
                self.swept.kept_in_use += 1;
                self.kept_bytes += entry.size;
                self.kept.push((rel, entry));
                true
            }
            Removal::Failed(e) => {
                let path = self.index.dir().join(&rel).join(entry.name.to_string());
                self.swept.error = Some(format!("cannot delete {}: {e}", path.display()));
                self.kept_bytes += entry.size;
                self.kept.push((rel, entry));
                false
            }
        }
    }

    /// Files past their folder's age limit; whole folders once their whole day is past it.
    fn ages(&mut self, now: SystemTime) {
        for (rel, days, max_age) in self.index.aged_folders() {
            let cutoff = nanos(now.checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH));
            let day_end = u64::try_from(days + 1)
                .ok()
                .and_then(|d| d.checked_mul(86_400))
                .map_or(0, |secs| {
                    nanos(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                });
            let whole = day_end <= cutoff;
            while let Some(removed) = self
                .index
                .remove_front(&rel, |front| whole || front.at < cutoff)
            {
                if !self.account(Reason::MaxAge, rel.clone(), removed) {
                    return;
                }
            }
        }
    }

    /// The oldest files, until `enough(self, bytes known)`.
    fn oldest_until(&mut self, reason: Reason, enough: impl Fn(&Self, u64) -> bool) {
        loop {
            let Some((rel, entry, removal)) =
                self.index.remove_oldest(|bytes| !enough(self, bytes))
            else {
                return;
            };
            if !self.account(reason, rel, (entry, removal)) {
                return;
            }
        }
    }

    /// Enough files for the filesystem to have `min_free_bytes` / `min_free_percent` free again.
    fn free(&mut self, space: Space) {
        let retention = &self.index.policy().0;
        let need = retention.min_free_bytes.unwrap_or(0).max(
            u64::try_from(u128::from(space.total) * u128::from(retention.min_free_percent) / 100)
                .unwrap_or(u64::MAX),
        );
        let Some(missing) = need.checked_sub(space.available).filter(|m| *m > 0) else {
            return;
        };
        let before = self.freed;
        self.oldest_until(Reason::MinFree, |run, _| run.freed - before >= missing);
        let freed = self.freed - before;
        if freed < missing && self.swept.error.is_none() {
            self.swept.short_of_free = Some(missing - freed);
        }
    }
}
