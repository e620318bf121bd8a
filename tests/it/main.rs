//! The one integration-test binary: module lines only; the broker harness lives in `support`.

mod cli;
mod daemon;
mod demo;
mod faults;
mod health;
mod publish;
mod record_topics;
mod restart;
mod startup;
mod support;
mod tls;
