//! pgwarp-sink: per-node writers.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
