//! pgwarp-bench: benchmarks.
