//! Retention: the janitor thread that keeps `output.dir` within `[retention]`'s bounds (age, bytes,
//! free space), deleting frame files oldest first and nothing that is not one.
//!
//! - `index`: what is stored (in memory, kept current by the workers as they write) and what is in use
//!   (being written, or whose record is not yet published: never deleted).
//! - `scan`: the one walk of the tree, at startup, that fills the index.
//! - `sweep`: what one sweep deletes, from the index alone.
//!
//! Runs on its own OS thread: deleting thousands of files must not stall the reactor or the workers.
//! They only take the index's lock (workers to mark and record a file, the delivery task to drop a
//! mark), which the janitor holds for one unlink at a time.

mod index;
mod scan;
mod sweep;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use index::{Entry, Files, InUse, Index, Policy};
pub use scan::{Scanned, scan};
pub use sweep::{Reason, Space, Swept, space, sweep};

/// The running janitor.
pub struct Janitor {
    /// Dropped to stop it: it wakes and exits.
    stop: Option<crossbeam_channel::Sender<()>>,
    /// Told to stop a sweep in progress.
    index: Arc<Index>,
    thread: JoinHandle<()>,
}

impl Janitor {
    /// Starts the janitor: a scan of `index`'s folder, a sweep, then a sweep every `interval` (or
    /// sooner when [`Index::wake`] asks).
    pub fn start(index: Arc<Index>, interval: Duration) -> std::io::Result<Janitor> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = {
            let index = Arc::clone(&index);
            std::thread::Builder::new()
                .name("mqimg-retention".into())
                .spawn(move || run(&index, interval, &stopped))?
        };
        Ok(Janitor {
            stop: Some(stop),
            index,
            thread,
        })
    }

    /// Stops the janitor (a scan or sweep in progress ends at its next step) and waits for it.
    pub fn stop(mut self) {
        self.index.stop_sweeping();
        drop(self.stop.take());
        if self.thread.join().is_err() {
            tracing::error!("the retention thread panicked");
        }
    }
}

fn run(index: &Index, interval: Duration, stopped: &crossbeam_channel::Receiver<()>) {
    let stopping = || {
        matches!(
            stopped.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    };
    let scanned = scan(index.dir(), index.policy(), &stopping);
    if scanned.stopped {
        return;
    }
    let (files, bytes, folders) = (
        scanned.files.count(),
        scanned.files.bytes(),
        scanned.files.folders(),
    );
    index.scanned(scanned.files);
    tracing::info!(
        dir = %index.dir().display(),
        files,
        bytes,
        date_folders = folders,
        took_ms = scanned.took.as_millis() as u64,
        "retention: frame files counted"
    );
    let mut short_of_free = false;
    loop {
        let swept = sweep(index, SystemTime::now(), &|| space(index.dir()));
        report(index, &swept, &mut short_of_free);
        crossbeam_channel::select! {
            recv(stopped) -> _ => return,
            recv(index.woken()) -> _ => {}
            default(interval) => {}
        }
    }
}

/// One line per sweep that deleted something; one when the free-space bound cannot be met, and one
/// when it can again.
fn report(index: &Index, swept: &Swept, short_of_free: &mut bool) {
    if swept.files() > 0 {
        let (stored_files, stored_bytes) = index.totals();
        let [age, bytes, free] = Reason::ALL.map(|r| swept.of(r).0);
        tracing::info!(
            files = swept.files(),
            bytes = swept.bytes(),
            max_age = age,
            max_bytes = bytes,
            min_free = free,
            kept_in_use = swept.kept_in_use,
            stored_files,
            stored_bytes,
            "retention deleted old frames"
        );
    }
    if let Some(error) = &swept.error {
        tracing::warn!(error, "retention stopped early");
    }
    match (swept.short_of_free, *short_of_free) {
        (Some(missing), false) => {
            *short_of_free = true;
            tracing::warn!(
                missing_bytes = missing,
                "retention cannot free enough space: no frame files left to delete (other files fill the disk)"
            );
        }
        (None, true) => {
            *short_of_free = false;
            tracing::info!("retention: free space is within bounds again");
        }
        _ => {}
    }
}
