//! The `pgwarp` binary.
fn main() {}
