//! pgwarp: the engine.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod check;
pub mod citus;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod conn;
pub mod cutover;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod schema;
pub mod source;
pub mod status;
pub mod verify;
