//! The Pingora build of the parity router (docs/spec.md is the contract;
//! docs/design-pingora.md maps each contract item to the Pingora API used).

pub mod admin;
pub mod breaker;
pub mod config;
pub mod control_plane;
pub mod health;
pub mod limit;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod upstream;
