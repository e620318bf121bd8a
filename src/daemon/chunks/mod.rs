//! Chunked frames: parts arriving as separate messages, spooled so they can be acked, assembled into
//! frames that then take the normal path. The assembly rules are pure (`frame::chunks`); this module
//! owns the disk and the thread.

pub mod spool;
