//! Citus topology and the shard router.
