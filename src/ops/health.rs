//! Readiness: is the daemon connected with its subscriptions granted, and can it store frames? State,
//! not a metric: `/readyz` answers from it, and tests wait on it instead of sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Shared by the poll task (which sets it) and the HTTP endpoint (which reads it).
#[derive(Debug)]
pub struct Health {
    connected: AtomicBool,
    /// SUBACKs that granted every subscription, ever.
    subscribed: watch::Sender<u64>,
    /// Why frames cannot be stored right now, while they cannot.
    storage: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            subscribed: watch::Sender::new(0),
            storage: Mutex::new(None),
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

    /// Frames cannot be stored (`Some(why)`), or can again (`None`).
    pub fn set_storage_blocked(&self, why: Option<String>) {
        if let Ok(mut storage) = self.storage.lock() {
            *storage = why;
        }
    }

    /// `Ok` when ready to receive frames, else why not, in the operator's words.
    pub fn readiness(&self) -> Result<(), String> {
        if let Ok(storage) = self.storage.lock()
            && let Some(why) = storage.as_ref()
        {
            return Err(format!("frames cannot be stored: {why}"));
        }
        if !self.connected() {
            Err("not connected to the broker".into())
        } else if *self.subscribed.borrow() == 0 {
            Err("subscriptions not granted yet".into())
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
        let not = |why: &str| Err(why.to_owned());
        assert_eq!(health.readiness(), not("not connected to the broker"));
        assert!(!health.set_connected(true));
        assert_eq!(health.readiness(), not("subscriptions not granted yet"));
        health.subscriptions_granted();
        assert_eq!(health.readiness(), Ok(()));
        health.set_storage_blocked(Some("no space left on device".into()));
        assert_eq!(
            health.readiness(),
            not("frames cannot be stored: no space left on device")
        );
        health.set_storage_blocked(None);
        assert_eq!(health.readiness(), Ok(()));
        assert!(health.set_connected(false));
        assert_eq!(health.readiness(), not("not connected to the broker"));
    }
}
