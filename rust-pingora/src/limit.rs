//! Exact per-placement concurrency limit (docs/spec.md section 3, step 4).
//!
//! A counting semaphore on one atomic: [`Limiter::try_acquire`] increments the in-flight
//! count with a compare-and-swap only while it is below the limit, so the count can never
//! exceed `max_concurrency` (unlike `pingora_limits::inflight`, which is an estimator).
//! The limit is passed per call so that a config update can change it without replacing
//! the counter of requests already in flight.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// In-flight counter of one placement id.
#[derive(Debug, Default)]
pub struct Limiter {
    inflight: AtomicU32,
}

/// A held slot; dropping it releases the slot.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    /// A counter at zero.
    pub fn new() -> Arc<Self> {
        Arc::new(Limiter::default())
    }

    /// Take a slot if fewer than `max` are held.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<Slot> {
        let mut cur = self.inflight.load(Ordering::Acquire);
        loop {
            if cur >= max {
                return None;
            }
            match self.inflight.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Slot { limiter: self.clone() }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Requests currently in flight.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_under_contention() {
        let l = Limiter::new();
        let max = 7;
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if let Some(slot) = l.try_acquire(max) {
                            assert!(l.inflight() <= max);
                            held.lock().unwrap().push(slot);
                        }
                        let mut h = held.lock().unwrap();
                        if h.len() > 3 {
                            h.pop();
                        }
                    }
                });
            }
        });
        assert!(held.lock().unwrap().len() <= max as usize);
        held.lock().unwrap().clear();
        assert_eq!(l.inflight(), 0);
    }
}
