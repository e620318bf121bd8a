//! The machine around the daemon: a small tmpfs the test mounts (to fill or make read-only), a
//! process's peak memory, and waiting for a condition with a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether this process may mount filesystems (CI runs as root).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tmpfs mounted for one test; unmounted on drop.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax, e.g. `3m`) on a new folder inside `parent`.
    pub fn mount(parent: &Path, size: &str) -> Tmpfs {
        let dir = parent.join("tmpfs");
        std::fs::create_dir_all(&dir).expect("creating the mount point");
        run_mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &dir,
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Changes the mount's options, e.g. `size=64m`, `ro` or `rw`.
    pub fn remount(&self, options: &str) {
        run_mount(&["-o", &format!("remount,{options}")], &self.dir);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn run_mount(args: &[&str], dir: &Path) {
    let status = Command::new("mount")
        .args(args)
        .arg(dir)
        .status()
        .expect("running mount");
    assert!(status.success(), "mount {args:?} {} failed", dir.display());
}

/// Peak resident memory of process `pid` so far (`VmHWM`).
pub fn vm_hwm_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmHWM in /proc/PID/status")
}

/// Polls `condition` until it holds; panics with `what` after `secs`.
pub async fn wait_until(secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
