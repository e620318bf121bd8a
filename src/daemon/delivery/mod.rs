//! At-least-once delivery: every frame between its arrival and its PUBACK.
//!
//! [`state`] holds the rules (sans-IO: events in, requests out, unit- and property-tested without a
//! broker); [`driver`] is the task that feeds it and carries out what it decides.

pub mod driver;
pub mod state;

#[cfg(test)]
mod tests;

pub use driver::{Driver, Summary};
