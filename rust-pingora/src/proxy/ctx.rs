//! Per-request context of the proxy (`ProxyHttp::CTX`).

use super::deadline::{DeadlineTimer, HeaderDeadline};
use crate::breaker::Permit;
use crate::errcode::Code;
use crate::limit::Slot;
use crate::metrics::FailKind;
use crate::routing::{EndpointRt, PlacementRt, Snapshot};
use crate::store::ActiveGuard;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the next `upstream_peer` call does (Pingora calls it again after a retryable
/// failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextPeer {
    /// Connect to `Ctx::placement` as chosen (first attempt, or after a walk).
    Chosen,
    /// The last attempt failed to connect (bodiless request): the same placement's next
    /// available endpoint not tried yet, else walk the chain on from the failed
    /// placement's `fallback` (spec §3 step 6).
    Retry,
    /// A pooled connection turned out stale: try the same placement again on a fresh
    /// connection, without a breaker outcome.
    SameAgain,
}

/// The `request_ms` header deadline of the current connection attempt.
pub enum HeaderTimer {
    /// No attempt connected yet, or the attempt's timer was never armed.
    Idle,
    /// Connected; the timer starts once the request has been written (a dup of the
    /// upstream socket, kept until then).
    Connected(OwnedFd),
    /// Armed (or disarmed / fired; kept so that [`HeaderTimer::fired`] can be asked).
    Armed(HeaderDeadline),
}

impl HeaderTimer {
    /// Arm the deadline if the attempt is connected and not yet armed.
    pub fn arm(&mut self, timer: &DeadlineTimer, after: Duration) {
        if let HeaderTimer::Connected(_) = self {
            let HeaderTimer::Connected(fd) = std::mem::replace(self, HeaderTimer::Idle) else { unreachable!() };
            *self = HeaderTimer::Armed(timer.arm(fd, after));
        }
    }

    /// Stop the deadline (headers arrived, or the attempt ended) and close the dup.
    pub fn disarm(&mut self) {
        match self {
            HeaderTimer::Armed(d) => d.disarm(),
            HeaderTimer::Connected(_) => *self = HeaderTimer::Idle,
            HeaderTimer::Idle => {}
        }
    }

    /// Whether the current attempt's deadline fired.
    pub fn fired(&self) -> bool {
        matches!(self, HeaderTimer::Armed(d) if d.fired())
    }
}

/// Per-request state.
pub struct Ctx {
    /// Arrival time (for `router_request_duration_seconds` and the access log).
    pub start: Instant,
    /// Counts the request as active in the store until the context drops.
    _active: ActiveGuard,
    /// The snapshot read once at arrival; every later hook uses it.
    pub snap: Option<Arc<Snapshot>>,
    /// The routing key (kept only for the access log).
    pub key: Option<String>,
    /// The placement being tried (or last tried).
    pub placement: Option<Arc<PlacementRt>>,
    /// Index of the endpoint being tried (or last tried) in `placement.endpoints`.
    pub endpoint: Option<usize>,
    /// Endpoints of `placement` tried by this request (each at most once).
    pub tried: Vec<usize>,
    /// The endpoint's breaker permit, until an outcome is recorded or it is given back.
    pub permit: Option<Permit>,
    /// Its concurrency slot; the request is in flight while this is held.
    pub slot: Option<Slot>,
    /// `Transfer-Encoding`, or `Content-Length` above 0.
    pub has_body: bool,
    /// What the next `upstream_peer` does.
    pub next: NextPeer,
    /// The router error already decided while choosing a peer (answered by `fail_to_proxy`).
    pub error: Option<Code>,
    /// The router-made response sent, if any.
    pub made: Option<Code>,
    /// Status of the upstream's (final or 101) response header.
    pub upstream_status: Option<u16>,
    /// The upstream response header went to the client.
    pub committed: bool,
    /// The current attempt's upstream sent a 1xx (not 101): the attempt is past the point
    /// where a failure may be retried, and a 1xx forwarded to the client does not commit
    /// the response (a router-made answer may still follow it).
    pub interim: bool,
    /// The upstream failure kind, once classified.
    pub fail: Option<FailKind>,
    /// The request body was fully sent upstream.
    pub body_done: bool,
    /// The current attempt's header deadline.
    pub timer: HeaderTimer,
    /// End the client connection with a lingering close once `logging` has recorded the
    /// outcome ([`super::respond::close_after_abort`]): set for a committed response that failed
    /// (spec §3 step 8, *The connection's end*).
    pub linger: bool,
}

impl Ctx {
    /// A new request, counted active by `active`.
    pub fn new(active: ActiveGuard) -> Self {
        Ctx {
            start: Instant::now(),
            _active: active,
            snap: None,
            key: None,
            placement: None,
            endpoint: None,
            tried: Vec::new(),
            permit: None,
            slot: None,
            has_body: false,
            next: NextPeer::Chosen,
            error: None,
            made: None,
            upstream_status: None,
            committed: false,
            interim: false,
            fail: None,
            body_done: false,
            timer: HeaderTimer::Idle,
            linger: false,
        }
    }

    /// The id of the placement tried, if one was chosen.
    pub fn placement_id(&self) -> Option<&str> {
        self.placement.as_ref().map(|p| p.cfg.id.as_str())
    }

    /// The endpoint being tried (or last tried), if one was chosen.
    pub fn endpoint_rt(&self) -> Option<&EndpointRt> {
        Some(&self.placement.as_ref()?.endpoints[self.endpoint?])
    }
}
