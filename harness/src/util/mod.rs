//! Small helpers shared by the scenario suite and the benchmark: the process-group
//! registry ([`procs`]), loopback ports ([`net`]), statistics ([`stats`]), stdout that
//! survives a closed pipe ([`out`]).
pub mod net;
pub mod out;
pub mod procs;
pub mod stats;
