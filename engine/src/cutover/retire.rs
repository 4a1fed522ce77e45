//! Removing the sync's replication slot and publication from the source.
//!
//! A slot being streamed cannot be dropped (SQLSTATE 55006). At cutover, pgwarp ends the WAL
//! sender that streams it (the running `pgwarp sync` then finds its slot gone and stops), and
//! drops the slot before the sync can reconnect; the attempt is repeated for a few seconds
//! because a reconnecting sync may take the slot again in between. `cleanup` does the same only
//! with `--force`; without it an active slot is an error that names the consumer.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::source::SourceError;
use crate::source::admin::{drop_publication, drop_slot_if_exists, slot_info};

use super::error::CutoverError;

/// How long to keep trying to drop an active slot.
const DROP_WAIT: Duration = Duration::from_secs(15);

/// Drops `slot` if it exists, ending its consumer first when `end_consumer`; returns whether
/// it existed.
pub async fn drop_slot(
    source: &Client,
    slot: &str,
    end_consumer: bool,
) -> Result<bool, CutoverError> {
    let started = Instant::now();
    let mut existed = false;
    loop {
        let Some(info) = slot_info(source, slot).await? else {
            return Ok(existed);
        };
        existed = true;
        if info.active {
            if !end_consumer {
                return Err(SourceError::SlotActive {
                    slot: slot.to_owned(),
                    pid: info.active_pid,
                }
                .into());
            }
            if let Some(pid) = info.active_pid {
                source
                    .query_one("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
                    .await
                    .map_err(CutoverError::query(
                        format!("could not end the process streaming slot \"{slot}\""),
                        "source",
                    ))?;
            }
        }
        match drop_slot_if_exists(source, slot).await {
            Ok(_) => return Ok(true),
            Err(SourceError::SlotActive { .. }) if started.elapsed() < DROP_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Drops the publication if it exists; returns whether it existed.
pub async fn drop_pub(source: &Client, publication: &str) -> Result<bool, CutoverError> {
    Ok(drop_publication(source, publication).await?)
}
