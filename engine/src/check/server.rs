//! Source server checks: logical decoding on, room for a slot and a WAL sender, a role that
//! may replicate, and no foreign slot in the way.

use tokio_postgres::Client;

use crate::config::Settings;
use crate::pipeline::PipelineError;
use crate::pipeline::state::SyncState;
use crate::source::admin::server_info;

use super::{ProblemKind, Report};

/// Adds the server's problems to `report`.
pub async fn check(
    source: &Client,
    settings: &Settings,
    sync_state: &Option<SyncState>,
    slot_exists: bool,
    report: &mut Report,
) -> Result<(), PipelineError> {
    let info = server_info(source).await?;
    if info.wal_level != "logical" {
        report.add(
            ProblemKind::WalLevel,
            format!(
                "wal_level is \"{}\" on the source: set wal_level = logical in postgresql.conf \
                 and restart the server",
                info.wal_level
            ),
        );
    }
    if !info.role_can_replicate && !info.role_is_superuser {
        report.add(
            ProblemKind::NoReplicationPrivilege,
            format!(
                "role \"{}\" may not start replication on the source: grant it with ALTER ROLE \
                 {} REPLICATION",
                info.role,
                crate::citus::names::quote_ident(&info.role)
            ),
        );
    }
    if !slot_exists && info.free_replication_slots() < 1 {
        report.add(
            ProblemKind::NoFreeSlot,
            format!(
                "no free replication slot on the source ({} of {} in use): raise \
                 max_replication_slots or drop an unused slot",
                info.used_replication_slots, info.max_replication_slots
            ),
        );
    }
    if info.free_wal_senders() < 1 {
        report.add(
            ProblemKind::NoFreeWalSender,
            format!(
                "no free WAL sender on the source ({} of {} in use): raise max_wal_senders",
                info.active_wal_senders, info.max_wal_senders
            ),
        );
    }
    // a slot with a state row (any phase, setup included) is this sync's own
    if slot_exists && sync_state.is_none() {
        report.add(
            ProblemKind::SlotInUse,
            format!(
                "replication slot \"{slot}\" already exists on the source but the target has no \
                 pgwarp state for it: choose another --slot, or drop it with SELECT \
                 pg_drop_replication_slot('{slot}') if it is left over",
                slot = settings.slot
            ),
        );
    }
    Ok(())
}
