//! [`ExportedSnapshot`]: a new slot's snapshot, kept importable by keeping its connection idle.
//!
//! `CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')` returns a snapshot name that other
//! sessions can adopt with `SET TRANSACTION SNAPSHOT` until the exporting connection runs its
//! next command or closes (PostgreSQL docs, "Streaming Replication Protocol"). Owning the
//! connection inside this value makes that rule structural: while it exists nothing else can
//! be sent on the connection, and giving the connection back ends the export.

use pgwarp_decoder::Lsn;

use super::client::{CreatedSlot, ReplicationClient};

/// A slot just created with an exported snapshot, and the idle connection that keeps the
/// snapshot alive.
///
/// Other connections import it with `BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION
/// SNAPSHOT '<snapshot_name>'`. Once every reader has imported it, call
/// [`ExportedSnapshot::release`] to get the connection back (e.g. to start streaming from
/// [`ExportedSnapshot::consistent_point`]). Dropping this value closes the connection: the
/// snapshot can no longer be imported, and a temporary slot is dropped.
#[derive(Debug)]
pub struct ExportedSnapshot {
    client: ReplicationClient,
    slot: CreatedSlot,
}

impl ExportedSnapshot {
    pub(super) fn new(client: ReplicationClient, slot: CreatedSlot) -> Self {
        ExportedSnapshot { client, slot }
    }

    /// The snapshot name for `SET TRANSACTION SNAPSHOT`.
    pub fn snapshot_name(&self) -> &str {
        self.slot.snapshot_name.as_deref().unwrap_or_default()
    }

    /// Where streaming must start so it returns exactly what the snapshot does not contain.
    pub fn consistent_point(&self) -> Lsn {
        self.slot.consistent_point
    }

    /// The slot as created.
    pub fn slot(&self) -> &CreatedSlot {
        &self.slot
    }

    /// Gives the connection back; the snapshot stops being importable at its next command.
    pub fn release(self) -> (ReplicationClient, CreatedSlot) {
        (self.client, self.slot)
    }
}
