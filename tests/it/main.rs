//! The one integration-test binary: module lines only; the broker harness lives in `support`.

mod publish;
mod support;
