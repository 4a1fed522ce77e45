//! pgwarp-decoder: the pure decoding layer of pgwarp.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
