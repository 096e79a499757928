//! The oracle's self-test: the parity verdict must report a difference when one router of
//! a pair shows exactly one injected difference. [`inject`] is the proxy that injects it.
#![allow(dead_code)]

pub mod inject;
