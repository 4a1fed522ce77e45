//! pgwarp: the engine.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod citus;
pub mod cli;
pub mod conn;
pub mod error;
pub mod source;
