//! The parts of tests/server_differential.rs: the reference Redis process, the command
//! strategies, the RESP reply framer, and the normalisation of replies that may differ between
//! two correct servers.

pub mod commands;
pub mod frame;
pub mod normalise;
pub mod redis_server;
