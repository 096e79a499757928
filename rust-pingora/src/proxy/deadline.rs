//! The response-header deadline (`request_ms`, docs/spec.md section 3 step 7).
//!
//! Implemented as a timer that shuts the upstream socket down when it fires. Pingora's
//! `PeerOptions.read_timeout` applies to every read, body included, so it cannot express
//! "no response headers within request_ms" without also limiting the body; this timer runs
//! only until `upstream_response_filter` sees the headers. The socket is a `dup` of
//! Pingora's descriptor held under a mutex, so the timer can never act on a descriptor
//! number that was closed and reused.
//!
//! All deadlines of one proxy share one timer thread ([`DeadlineTimer`], owned by the
//! proxy): arming is a heap push under a mutex and disarming closes the dup, where a task
//! per request (spawn, a tokio timer, and a second poll to abort it) cost several
//! microseconds of CPU per request under load.

use std::collections::BinaryHeap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One armed (or disarmed, or fired) deadline, as the request holds it.
pub struct HeaderDeadline {
    shared: Arc<DeadlineShared>,
}

/// What the timer thread and the request share (one allocation per armed deadline).
struct DeadlineShared {
    fired: AtomicBool,
    /// `Some` while armed; taken (and closed) by the request when it disarms or by the
    /// timer when it fires.
    fd: Mutex<Option<OwnedFd>>,
    armed: AtomicBool,
}

impl DeadlineShared {
    fn fire(&self) {
        let mut g = self.fd.lock().unwrap();
        if let Some(f) = g.take() {
            self.fired.store(true, Ordering::Release);
            self.armed.store(false, Ordering::Release);
            let s = std::net::TcpStream::from(f);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One armed deadline in the timer's heap (earliest first).
struct Pending {
    at: Instant,
    entry: Arc<DeadlineShared>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at) // reversed: BinaryHeap is a max-heap
    }
}

/// The heap and the stop flag, under one mutex.
struct Queue {
    pending: BinaryHeap<Pending>,
    stopped: bool,
}

/// What the owner and the timer thread share.
struct TimerInner {
    queue: Mutex<Queue>,
    cv: Condvar,
}

/// The header-deadline timer: a min-heap of armed deadlines served by one thread
/// (`header-deadline`, started by [`DeadlineTimer::new`]) that sleeps on a condvar until
/// the earliest one. Disarmed entries stay in the heap until they are pruned (at most
/// every [`DeadlineTimer::PRUNE`] while the heap is not empty) or reach their time.
/// Dropping the timer stops its thread; deadlines still armed then never fire.
pub struct DeadlineTimer {
    inner: Arc<TimerInner>,
}

impl DeadlineTimer {
    /// How often disarmed entries are dropped from the heap.
    pub const PRUNE: Duration = Duration::from_millis(100);

    /// A timer with its thread running.
    pub fn new() -> Self {
        let inner = Arc::new(TimerInner {
            queue: Mutex::new(Queue { pending: BinaryHeap::new(), stopped: false }),
            cv: Condvar::new(),
        });
        let thread_inner = inner.clone();
        std::thread::Builder::new()
            .name("header-deadline".into())
            .spawn(move || thread_inner.run())
            .expect("header-deadline thread");
        DeadlineTimer { inner }
    }

    /// Arm a deadline `after` from now on `fd` (an owned dup of the upstream socket):
    /// when it fires, [`HeaderDeadline::fired`] is set and then the socket is shut down.
    pub fn arm(&self, fd: OwnedFd, after: Duration) -> HeaderDeadline {
        let shared = Arc::new(DeadlineShared {
            fired: AtomicBool::new(false),
            fd: Mutex::new(Some(fd)),
            armed: AtomicBool::new(true),
        });
        let at = Instant::now() + after;
        let mut q = self.inner.queue.lock().unwrap();
        let wake = q.pending.peek().is_none_or(|p| at < p.at);
        q.pending.push(Pending { at, entry: shared.clone() });
        drop(q);
        if wake {
            self.inner.cv.notify_one();
        }
        HeaderDeadline { shared }
    }
}

impl Default for DeadlineTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DeadlineTimer {
    fn drop(&mut self) {
        self.inner.queue.lock().unwrap().stopped = true;
        self.inner.cv.notify_one();
    }
}

impl TimerInner {
    fn run(&self) {
        let mut q = self.queue.lock().unwrap();
        let mut last_prune = Instant::now();
        loop {
            if q.stopped {
                return;
            }
            let now = Instant::now();
            while q.pending.peek().is_some_and(|p| p.at <= now) {
                let p = q.pending.pop().expect("peeked");
                p.entry.fire();
            }
            if now.duration_since(last_prune) >= DeadlineTimer::PRUNE {
                q.pending.retain(|p| p.entry.armed.load(Ordering::Acquire));
                last_prune = now;
            }
            q = match q.pending.peek() {
                None => self.cv.wait(q).unwrap(),
                Some(p) => {
                    let wait = p.at.saturating_duration_since(now).min(DeadlineTimer::PRUNE);
                    self.cv.wait_timeout(q, wait).unwrap().0
                }
            };
        }
    }
}

impl HeaderDeadline {
    /// Stop the timer and close the duplicate (idempotent); [`HeaderDeadline::fired`]
    /// keeps its value.
    pub fn disarm(&mut self) {
        if self.shared.armed.load(Ordering::Acquire) {
            // whoever takes the fd first (this or the timer's `fire`) decides
            self.shared.fd.lock().unwrap().take();
            self.shared.armed.store(false, Ordering::Release);
        }
    }

    /// Whether the deadline fired (the socket was shut down by the timer).
    pub fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }
}

impl Drop for HeaderDeadline {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn dup(s: &TcpStream) -> OwnedFd {
        use std::os::fd::AsFd;
        s.as_fd().try_clone_to_owned().unwrap()
    }

    #[test]
    fn deadline_fires_and_shuts_the_socket() {
        let timer = DeadlineTimer::new();
        let (a, mut b) = pair();
        let d = timer.arm(dup(&a), Duration::from_millis(30));
        let t0 = Instant::now();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(b.read(&mut buf).unwrap(), 0, "peer sees the shutdown as EOF");
        assert!(t0.elapsed() >= Duration::from_millis(25), "not before the deadline");
        assert!(d.fired());
    }

    #[test]
    fn disarmed_deadline_never_fires() {
        let timer = DeadlineTimer::new();
        let (a, mut b) = pair();
        let mut d = timer.arm(dup(&a), Duration::from_millis(20));
        // a later deadline on another socket proves the timer ran past the first one
        let (c, mut e) = pair();
        let d2 = timer.arm(dup(&c), Duration::from_millis(60));
        d.disarm();
        e.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(e.read(&mut buf).unwrap(), 0);
        assert!(d2.fired());
        assert!(!d.fired());
        b.set_nonblocking(true).unwrap();
        let r = b.read(&mut buf);
        assert!(matches!(r, Err(ref err) if err.kind() == std::io::ErrorKind::WouldBlock), "socket still open: {r:?}");
    }

    #[test]
    fn a_dropped_timer_stops_and_fires_nothing() {
        let timer = DeadlineTimer::new();
        let (a, mut b) = pair();
        let d = timer.arm(dup(&a), Duration::from_millis(20));
        drop(timer);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!d.fired());
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let r = b.read(&mut buf);
        assert!(matches!(r, Err(ref err) if err.kind() == std::io::ErrorKind::WouldBlock), "socket still open: {r:?}");
    }
}
