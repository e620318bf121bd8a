//! Operations: what an operator watches (metrics, health, the HTTP endpoint, logs).

pub mod health;
pub mod http;
pub mod metrics;
pub mod telemetry;
