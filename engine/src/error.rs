//! Error classes of the engine: transient (reconnect and retry) or definite (stop and report).
//!
//! The classes and the one SQLSTATE table live in [`pgwarp_sink::class`], the lowest crate that
//! talks to servers, so the sink and the engine classify every server error the same way; this
//! module re-exports them under the engine's name.

pub use pgwarp_sink::class::{Classify, ErrorClass, classify_io, classify_pg, classify_sqlstate};
