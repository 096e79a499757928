//! Observation: what a client and each mock upstream saw, recorded in full, and the
//! normalisation rules that make two routers' observations comparable.
//!
//! - [`body`]: bodies kept up to a cap, hashed in full;
//! - [`client`]: the harness's own HTTP/1.1 client, recording responses byte-exact;
//! - [`upstream`]: what each mock upstream received, per request;
//! - [`normalise`]: every normalisation rule, named, with the reason it is safe.
#![allow(dead_code)]

pub mod body;
pub mod client;
pub mod normalise;
pub mod upstream;
