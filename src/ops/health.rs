//! Readiness: is the daemon connected with its subscriptions granted? State, not a metric: `/readyz`
//! answers from it, and tests wait on it instead of sleeping.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Shared by the poll task (which sets it) and the HTTP endpoint (which reads it).
#[derive(Debug)]
pub struct Health {
    connected: AtomicBool,
    /// SUBACKs that granted every subscription, ever.
    subscribed: watch::Sender<u64>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            subscribed: watch::Sender::new(0),
        }
    }
}

impl Health {
    /// Records the connection state; returns the previous one.
    pub fn set_connected(&self, connected: bool) -> bool {
        self.connected.swap(connected, Ordering::Relaxed)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The broker granted every subscription.
    pub fn subscriptions_granted(&self) {
        self.subscribed.send_modify(|n| *n += 1);
    }

    /// Watches how many times every subscription was granted (0 until the first SUBACK).
    pub fn subscribed(&self) -> watch::Receiver<u64> {
        self.subscribed.subscribe()
    }

    /// `Ok` when ready to receive frames, else why not, in the operator's words.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.connected() {
            Err("not connected to the broker")
        } else if *self.subscribed.borrow() == 0 {
            Err("subscriptions not granted yet")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_connected_and_subscribed() {
        let health = Health::default();
        assert_eq!(health.readiness(), Err("not connected to the broker"));
        assert!(!health.set_connected(true));
        assert_eq!(health.readiness(), Err("subscriptions not granted yet"));
        health.subscriptions_granted();
        assert_eq!(health.readiness(), Ok(()));
        assert!(health.set_connected(false));
        assert_eq!(health.readiness(), Err("not connected to the broker"));
    }
}
