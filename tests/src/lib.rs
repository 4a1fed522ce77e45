//! pgwarp-tests: the test harness.
