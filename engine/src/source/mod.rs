//! The source side: replication connection, slots, publications, snapshots.
