//! The chunk spool: parts of frames still being assembled, kept on disk so a QoS 1/2 part can be acked
//! before its frame is whole (brokers cap the unacked messages in flight to a client: holding every
//! part of a 50-part frame unacked would stall the stream) without being lost by a crash.
//!
//! One file per part, `{id:020}.part`: the topic's length (u16, big-endian), the topic, the payload.
//! Ids grow across restarts (the next one follows the largest found), so replaying the files in id
//! order replays the parts in arrival order.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::daemon::sink;

/// A part's place in the spool: its arrival order.
pub type PartId = u64;

/// A part read back from the spool at startup.
#[derive(Debug, PartialEq, Eq)]
pub struct SpooledPart {
    pub id: PartId,
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next_id: PartId,
}

impl Spool {
    /// Opens (creating) the spool in `dir` and reads back what a previous run left, in arrival order.
    /// Files that are not whole parts (a crash mid-write) are removed: their parts were never acked.
    pub fn open(dir: &Path) -> io::Result<(Spool, Vec<SpooledPart>)> {
        fs::create_dir_all(dir)?;
        let mut parts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".part"))
                .and_then(|n| n.parse::<PartId>().ok())
            else {
                if name.to_str().is_some_and(|n| n.ends_with(".part.tmp")) {
                    fs::remove_file(entry.path())?;
                }
                continue;
            };
            match decode(&fs::read(entry.path())?) {
                Some((topic, payload)) => parts.push(SpooledPart { id, topic, payload }),
                None => fs::remove_file(entry.path())?,
            }
        }
        parts.sort_by_key(|p| p.id);
        let next_id = parts.last().map_or(1, |p| p.id + 1);
        Ok((
            Spool {
                dir: dir.to_owned(),
                next_id,
            },
            parts,
        ))
    }

    /// The id the next part gets (parts kept in memory only take ids too, so events name them).
    pub fn next_id(&mut self) -> PartId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Writes part `id` without waiting for the disk: durable after [`Spool::flush`].
    pub fn write(&self, id: PartId, topic: &str, payload: &[u8]) -> io::Result<()> {
        let len = u16::try_from(topic.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "topic over 65535 bytes"))?;
        let path = self.path(id);
        let tmp = path.with_extension("part.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&len.to_be_bytes())?;
        file.write_all(topic.as_bytes())?;
        file.write_all(payload)?;
        drop(file);
        fs::rename(&tmp, &path)
    }

    /// Makes every part written so far durable (one filesystem flush for a batch).
    pub fn flush(&self) -> Result<(), sink::OutputError> {
        sink::sync_filesystem(&self.dir)
    }

    /// Forgets parts whose frame's outcome is durable (or that need no keeping). Missing files are
    /// fine: parts kept in memory only were never written.
    pub fn remove(&self, ids: &[PartId]) {
        for &id in ids {
            match fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(part = id, %error, "cannot remove a spooled part"),
            }
        }
    }

    fn path(&self, id: PartId) -> PathBuf {
        self.dir.join(format!("{id:020}.part"))
    }
}

fn decode(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let topic = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?.to_owned();
    Some((topic, bytes[2 + len..].to_vec()))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn parts_come_back_in_arrival_order_after_a_restart_and_ids_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, left) = Spool::open(dir.path()).unwrap();
        assert!(left.is_empty());
        let ids: Vec<PartId> = (0..12).map(|_| spool.next_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            spool
                .write(*id, "cams/esp", format!("part {i}").as_bytes())
                .unwrap();
        }
        spool.flush().unwrap();
        spool.remove(&ids[..2]);
        // A crash mid-write leaves a temp file and, at worst, a truncated one.
        fs::write(dir.path().join("00000000000000000099.part.tmp"), b"x").unwrap();
        fs::write(dir.path().join("00000000000000000098.part"), [0, 40, b'a']).unwrap();
        fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let (mut again, left) = Spool::open(dir.path()).unwrap();
        let payloads: Vec<String> = left
            .iter()
            .map(|p| String::from_utf8(p.payload.clone()).unwrap())
            .collect();
        assert_eq!(
            payloads,
            (2..12).map(|i| format!("part {i}")).collect::<Vec<_>>()
        );
        assert!(left.iter().all(|p| p.topic == "cams/esp"));
        assert!(again.next_id() > ids[11]);
        assert!(dir.path().join("notes.txt").exists());
        assert!(!dir.path().join("00000000000000000098.part").exists());
    }
}
