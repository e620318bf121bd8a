//! The one integration-test binary: module lines only; the broker harness lives in `support`.

mod cli;
mod daemon;
mod memory;
mod publish;
mod restart;
mod support;
