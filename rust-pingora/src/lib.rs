//! The Pingora build of the parity router. docs/spec.md is the contract;
//! docs/design-pingora.md maps each contract item to the Pingora API used.
//!
//! # Layout
//!
//! One module per concern, named as the Go router's packages (`go-baseline/internal/`):
//!
//! - [`config`]: the config document, its validation in the spec's order, the stale rule
//!   (spec §2).
//! - [`errcode`]: the router's error codes with their status and message (spec §3).
//! - [`routing`]: one snapshot's routing decision: routing key, route, chain walk (health,
//!   then breaker), concurrency limit (spec §3 steps 2-4 and 6).
//! - [`breaker`]: the circuit breaker state machine (spec §5).
//! - [`health`]: endpoint health on Pingora's load balancer and health check; the probe
//!   loops' runtime ([`health::Checkers`]) (spec §4).
//! - [`balance`]: endpoint selection within a placement on Pingora's `LoadBalancer`
//!   (round robin, random, Ketama) with the router's availability as `select_with`'s
//!   accept closure (spec §3).
//! - [`limit`]: the per-placement concurrency limiter.
//! - [`upstream`]: the Pingora `HttpPeer` of a placement (address, timeouts, TLS).
//! - [`store`]: the router state owned by one value, [`store::Store`]: snapshot, install
//!   with the identity rules (starts and stops the health checkers), metrics, active
//!   requests, control-plane flag (spec §4, §6).
//! - [`metrics`]: the Prometheus registry and families, the scrape (spec §7).
//! - [`admin`]: the admin HTTP API, a Pingora `ServeHttp` app (spec §7).
//! - [`controlplane`]: frame handling; `client` (the WebSocket client service), `lkg`
//!   (last-known-good file), `backoff` (spec §6).
//! - [`proxy`]: the data plane, `impl ProxyHttp` (hooks only); `ctx` (per-request
//!   context), `headers` (hop-by-hop, `X-Forwarded-*`), `deadline` (the `request_ms`
//!   header deadline), `respond` (router-made answers), `accesslog` (spec §3, §8).
//! - [`tls`]: the TLS data listener: certificate reload, client certificates, session
//!   tickets, handshake metrics (spec §1, §3, §7).
//! - [`server`]: flags, start-up order, `run(flags, shutdown) -> exit code` (spec §1, §8).
//!
//! Binaries: `src/main.rs` (`pingora-router`: parse flags, `server::run`, exit once) and
//! `src/bin/pingora-bare.rs` (the bare Pingora proxy the benchmarks compare against).

pub mod admin;
pub mod balance;
pub mod breaker;
pub mod config;
pub mod controlplane;
pub mod errcode;
pub mod health;
pub mod limit;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod store;
pub mod tls;
pub mod upstream;
