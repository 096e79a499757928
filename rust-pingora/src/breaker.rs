//! Circuit breaker state machine (docs/spec.md section 5), with an injected clock.
//!
//! Every transition starts a new *generation*; an outcome carries the generation of its
//! admission and is ignored when the breaker has moved on. Half-open admission is a
//! counted permit (at most `half_open_max_requests` outstanding), taken and returned under
//! the breaker's lock, so concurrent requests can never exceed it.
//! `open` becomes `half_open` exactly `open_ms` after opening; the transition is applied
//! lazily by whichever caller (request, admin API, metrics) looks first.

use crate::config::BreakerCfg;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Breaker state as reported by the admin API and `router_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// Admin API spelling: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    /// Metric value: 0 closed, 1 open, 2 half_open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Result of a proxied request as seen by the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Debug)]
struct Inner {
    state: State,
    generation: u64,
    consecutive_failures: u32,
    consecutive_successes: u32,
    opened_at: Instant,
    half_open_in_use: u32,
}

/// One placement's breaker. Without a config it always admits and ignores outcomes.
#[derive(Debug)]
pub struct Breaker {
    cfg: Option<BreakerCfg>,
    inner: Mutex<Inner>,
}

/// An admission ticket. Record its outcome with [`Breaker::record`]; dropping it without
/// an outcome returns a half-open permit (spec: "the request ends without one").
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    generation: u64,
    half_open: bool,
    done: bool,
}

impl Permit {
    /// The generation this permit was admitted in.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Record the request's outcome at time `now` (consumes the permit).
    pub fn record(mut self, outcome: Outcome, now: Instant) {
        self.done = true;
        self.breaker.record_inner(self.generation, self.half_open, Some(outcome), now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record_inner(self.generation, self.half_open, None, Instant::now());
        }
    }
}

impl Breaker {
    /// A fresh, closed breaker (generation 0). `now` is the clock reading at creation.
    pub fn new(cfg: Option<BreakerCfg>, now: Instant) -> Arc<Self> {
        Arc::new(Breaker {
            cfg,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                consecutive_failures: 0,
                consecutive_successes: 0,
                opened_at: now,
                half_open_in_use: 0,
            }),
        })
    }

    /// The breaker's config block (`None`: always admits).
    pub fn config(&self) -> Option<&BreakerCfg> {
        self.cfg.as_ref()
    }

    fn advance(cfg: &BreakerCfg, g: &mut Inner, now: Instant) {
        if g.state == State::Open
            && now.saturating_duration_since(g.opened_at) >= Duration::from_millis(cfg.open_ms)
        {
            g.state = State::HalfOpen;
            g.generation += 1;
            g.half_open_in_use = 0;
            g.consecutive_successes = 0;
        }
    }

    /// Current state at `now` (applies the open -> half_open timer).
    pub fn state(&self, now: Instant) -> State {
        let Some(cfg) = &self.cfg else { return State::Closed };
        let mut g = self.inner.lock().unwrap();
        Self::advance(cfg, &mut g, now);
        g.state
    }

    /// Current generation at `now`.
    pub fn generation(&self, now: Instant) -> u64 {
        let Some(cfg) = &self.cfg else { return 0 };
        let mut g = self.inner.lock().unwrap();
        Self::advance(cfg, &mut g, now);
        g.generation
    }

    /// Ask for admission at `now`. `None`: the breaker is open, or half-open with all
    /// permits taken.
    pub fn try_admit(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let Some(cfg) = &self.cfg else {
            return Some(Permit { breaker: self.clone(), generation: 0, half_open: false, done: true });
        };
        let mut g = self.inner.lock().unwrap();
        Self::advance(cfg, &mut g, now);
        match g.state {
            State::Closed => Some(Permit {
                breaker: self.clone(),
                generation: g.generation,
                half_open: false,
                done: false,
            }),
            State::Open => None,
            State::HalfOpen => {
                if g.half_open_in_use < cfg.half_open_max_requests {
                    g.half_open_in_use += 1;
                    Some(Permit {
                        breaker: self.clone(),
                        generation: g.generation,
                        half_open: true,
                        done: false,
                    })
                } else {
                    None
                }
            }
        }
    }

    fn record_inner(&self, generation: u64, half_open: bool, outcome: Option<Outcome>, now: Instant) {
        let Some(cfg) = &self.cfg else { return };
        let mut g = self.inner.lock().unwrap();
        Self::advance(cfg, &mut g, now);
        if g.generation != generation {
            return; // admitted in an earlier generation: ignored
        }
        if half_open && g.half_open_in_use > 0 {
            g.half_open_in_use -= 1;
        }
        let Some(outcome) = outcome else { return };
        match (g.state, outcome) {
            (State::Closed, Outcome::Success) => g.consecutive_failures = 0,
            (State::Closed, Outcome::Failure) => {
                g.consecutive_failures += 1;
                if g.consecutive_failures >= cfg.failure_threshold {
                    Self::open(&mut g, now);
                }
            }
            (State::HalfOpen, Outcome::Success) => {
                g.consecutive_successes += 1;
                if g.consecutive_successes >= cfg.success_threshold {
                    g.state = State::Closed;
                    g.generation += 1;
                    g.consecutive_failures = 0;
                    g.consecutive_successes = 0;
                    g.half_open_in_use = 0;
                }
            }
            (State::HalfOpen, Outcome::Failure) => Self::open(&mut g, now),
            (State::Open, _) => {}
        }
    }

    fn open(g: &mut Inner, now: Instant) {
        g.state = State::Open;
        g.generation += 1;
        g.opened_at = now;
        g.consecutive_failures = 0;
        g.consecutive_successes = 0;
        g.half_open_in_use = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ft: u32, open_ms: u64, hmax: u32, st: u32) -> Option<BreakerCfg> {
        Some(BreakerCfg { failure_threshold: ft, open_ms, half_open_max_requests: hmax, success_threshold: st })
    }

    #[test]
    fn no_config_always_admits() {
        let t0 = Instant::now();
        let b = Breaker::new(None, t0);
        for _ in 0..10 {
            b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        }
        assert_eq!(b.state(t0), State::Closed);
    }

    #[test]
    fn full_cycle() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(3, 1000, 1, 2), t0);
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        b.try_admit(t0).unwrap().record(Outcome::Success, t0); // resets count
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        assert_eq!(b.state(t0), State::Closed);
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        assert_eq!(b.state(t0), State::Open);
        assert!(b.try_admit(t0 + Duration::from_millis(999)).is_none());
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(b.state(t1), State::HalfOpen, "half_open reported before any request");
        let p = b.try_admit(t1).unwrap();
        assert!(b.try_admit(t1).is_none(), "one permit only");
        p.record(Outcome::Success, t1);
        let p = b.try_admit(t1).unwrap();
        p.record(Outcome::Success, t1);
        assert_eq!(b.state(t1), State::Closed);
        // half-open failure reopens with a fresh open_ms
        for _ in 0..3 {
            b.try_admit(t1).unwrap().record(Outcome::Failure, t1);
        }
        let t2 = t1 + Duration::from_millis(1000);
        b.try_admit(t2).unwrap().record(Outcome::Failure, t2);
        assert_eq!(b.state(t2 + Duration::from_millis(999)), State::Open);
        assert_eq!(b.state(t2 + Duration::from_millis(1000)), State::HalfOpen);
    }

    #[test]
    fn stale_generation_ignored_and_drop_returns_permit() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(1, 10, 1, 1), t0);
        let old = b.try_admit(t0).unwrap();
        b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
        assert_eq!(b.state(t0), State::Open);
        let t1 = t0 + Duration::from_millis(10);
        old.record(Outcome::Failure, t1); // earlier generation: ignored
        assert_eq!(b.state(t1), State::HalfOpen);
        let p = b.try_admit(t1).unwrap();
        assert!(b.try_admit(t1).is_none());
        drop(p); // ends without an outcome
        assert!(b.try_admit(t1).is_some());
        assert_eq!(b.state(t1), State::HalfOpen);
    }
}
