//! The one integration-test binary: module lines only; the broker harness lives in `support`.

mod browser;
mod chunks;
mod cli;
mod daemon;
mod faults;
mod live;
mod live_load;
mod memory;
mod publish;
mod record_topics;
mod restart;
mod startup;
mod storage;
mod support;
