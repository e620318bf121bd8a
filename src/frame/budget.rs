//! The decode memory budget: bytes shared by every frame decoding at once, so that peak memory stays
//! within `decode.max_memory_bytes` plus a fixed overhead whatever the number of workers.
//!
//! A frame takes its whole estimate ([`crate::frame::decode::Inspected::memory_bytes`]) in one step
//! before any pixel memory exists and gives it back when its pixels are dropped. Taking everything at
//! once means a holder never waits for more, so workers cannot deadlock. Frames are served in the
//! order they asked: acks go out in arrival order, so a large frame overtaken again and again by small
//! ones would hold back every ack behind it.
//!
//! No I/O: a mutex and a condition variable, shared by handles ([`MemoryBudget`] is cheap to clone).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A pool of bytes shared by its clones. See the module docs.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The pool's size (`decode.max_memory_bytes`).
    total: u64,
    state: Mutex<State>,
    /// Signalled whenever bytes come back or the head of the line changes.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    available: u64,
    /// The next ticket handed out; tickets are served in order.
    next_ticket: u64,
    /// The ticket whose turn it is.
    serving: u64,
}

/// A frame that needs more than the whole budget: it could never be decoded, so it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("needs an estimated {needed} bytes, over the memory budget of {total} bytes")]
pub struct OverBudget {
    pub needed: u64,
    pub total: u64,
}

/// Bytes taken from a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
#[must_use = "the bytes go back to the budget as soon as the permit is dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                total,
                state: Mutex::new(State {
                    available: total,
                    next_ticket: 0,
                    serving: 0,
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// The pool's size.
    pub fn total(&self) -> u64 {
        self.shared.total
    }

    /// Bytes not held by any permit right now.
    pub fn available(&self) -> u64 {
        self.shared.lock().available
    }

    /// Takes `bytes`, waiting (in line, first come first served) until earlier frames have given back
    /// enough. Refuses at once what the whole budget could never hold.
    pub fn acquire(&self, bytes: u64) -> Result<Permit, OverBudget> {
        let shared = &self.shared;
        if bytes > shared.total {
            return Err(OverBudget {
                needed: bytes,
                total: shared.total,
            });
        }
        let mut state = shared.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket || state.available < bytes {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.available -= bytes;
        state.serving += 1;
        drop(state);
        // The next in line may fit in what is left.
        shared.changed.notify_all();
        Ok(Permit {
            shared: Arc::clone(shared),
            bytes,
        })
    }
}

impl Shared {
    /// The state; a panic elsewhere while holding the lock leaves it consistent (every update is one
    /// statement), so poisoning is ignored rather than spreading the panic to every worker.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Permit {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.lock().available += self.bytes;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Long enough for a thread that could go on to do so; only used to show that one does not.
    const STILL_WAITING: Duration = Duration::from_millis(50);

    #[test]
    fn bytes_are_held_until_the_permit_is_dropped() {
        let budget = MemoryBudget::new(100);
        let a = budget.acquire(60).unwrap();
        assert_eq!(budget.available(), 40);
        let b = budget.clone().acquire(40).unwrap();
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.available(), 60);
        drop(b);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn more_than_the_whole_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(100);
        let _held = budget.acquire(100).unwrap();
        let e = budget.acquire(101).unwrap_err();
        assert_eq!(
            e,
            OverBudget {
                needed: 101,
                total: 100
            }
        );
        assert_eq!(
            e.to_string(),
            "needs an estimated 101 bytes, over the memory budget of 100 bytes"
        );
    }

    #[test]
    fn a_frame_waits_until_enough_is_given_back() {
        let budget = MemoryBudget::new(100);
        let held = budget.acquire(70).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let permit = budget.acquire(50).unwrap();
                tx.send(permit.bytes()).unwrap();
            })
        };
        assert!(rx.recv_timeout(STILL_WAITING).is_err(), "did not wait");
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 50);
        waiter.join().unwrap();
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn frames_are_served_in_the_order_they_asked() {
        let budget = MemoryBudget::new(100);
        let held = budget.acquire(90).unwrap();
        let (tx, rx) = mpsc::channel();
        let spawn = |bytes: u64, name: &'static str| {
            let (budget, tx) = (budget.clone(), tx.clone());
            std::thread::spawn(move || {
                let _permit = budget.acquire(bytes).unwrap();
                tx.send(name).unwrap();
            })
        };
        // The large frame asks first; the small one would fit now but must not overtake it.
        let large = spawn(80, "large");
        while budget.shared.lock().next_ticket < 2 {
            std::thread::yield_now();
        }
        let small = spawn(5, "small");
        while budget.shared.lock().next_ticket < 3 {
            std::thread::yield_now();
        }
        assert!(rx.recv_timeout(STILL_WAITING).is_err(), "small overtook");
        drop(held);
        let mut served = [rx.recv_timeout(Duration::from_secs(10)).unwrap(); 2];
        served[1] = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        served.sort_unstable();
        assert_eq!(served, ["large", "small"]);
        large.join().unwrap();
        small.join().unwrap();
    }
}
