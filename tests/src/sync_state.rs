//! Reading what a sync recorded on its target, from outside, as an operator would: tests wait
//! on it (a kill or a fault injected in a given phase) and assert on it.

use crate::cluster::CitusFixture;
use crate::options::quote_literal;

/// The phase `pgwarp.sync_state` records for `slot` on the fixture's coordinator (`setup`,
/// `snapshot`, `streaming`); `None` before the sync got that far or when the state cannot be
/// read (not created yet).
pub fn sync_phase(fixture: &CitusFixture, slot: &str) -> Option<String> {
    fixture
        .coordinator()
        .query_rows(&format!(
            "SELECT phase FROM pgwarp.sync_state WHERE slot = {}",
            quote_literal(slot)
        ))
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| row.into_iter().next().flatten())
}
