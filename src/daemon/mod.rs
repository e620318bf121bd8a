//! The daemon: connect, receive frames, hand them to workers, store them, publish records, ack.

pub mod app;
pub mod chunks;
pub mod delivery;
pub mod mqtt;
pub mod retention;
pub mod sink;
pub mod workers;
