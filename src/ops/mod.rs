//! Operations: what an operator watches (metrics, health, the HTTP listener and its live view, logs).

pub mod health;
pub mod http;
pub mod live;
pub mod metrics;
pub mod telemetry;
