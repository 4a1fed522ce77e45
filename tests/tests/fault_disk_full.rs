//! The local disk fills up while pgwarp spills a large streamed transaction: its spill
//! directory is a 1 MiB tmpfs. pgwarp must stop with a message naming the spill file and the
//! cause, having acknowledged nothing of that transaction (the slot's confirmed position stays
//! before it and none of its rows reach the target). With room again, the next run applies it
//! and the data converges.
//!
//! Mounting needs root; where `mount` is refused the test says so and passes without running.

mod fault_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fault_support::flow::{load_scenario, start_streaming};
use fault_support::load;
use fault_support::process::{Pgwarp, child_main};

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

/// A tmpfs mounted on a directory, unmounted on drop.
struct TinyDisk {
    dir: PathBuf,
}

impl TinyDisk {
    fn mount(dir: &Path, size: &str) -> Result<TinyDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(TinyDisk {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn disk_full_while_spilling_stops_without_acknowledging() {
    let sc = load_scenario(2000);
    let disk = match TinyDisk::mount(&sc.spill_dir(), "1m") {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "SKIPPED disk_full_while_spilling_stops_without_acknowledging: cannot mount a tmpfs ({e}); run as root"
            );
            return;
        }
    };
    // applied at its commit, so it is kept until then (applied live it would not touch the disk)
    let mut sync = start_streaming(&sc, "streamed_apply = \"at-commit\"");
    // one transaction of several MiB: streamed by the source while in progress, spilled by
    // pgwarp beyond its 256 kB memory budget, into a 1 MiB disk
    sc.src(
        "INSERT INTO ledger SELECT g, g % 10, repeat('s', 200)
           FROM generate_series(5000001, 5030000) g;",
    );
    // the transaction's commit record ends just before this position
    let committed = sc.source_lsn();
    let status = sync.wait_for_exit(Duration::from_secs(600));
    let stderr = sync.stderr();
    assert!(
        !status.success(),
        "pgwarp went on with a full disk:\n{stderr}"
    );
    let error = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("pgwarp: "))
        .unwrap_or_default();
    assert!(
        error.contains("spill file")
            && error.contains(&sc.spill_dir().display().to_string())
            && error.contains("No space left on device"),
        "the error does not name the spill file and the full disk:\n{stderr}"
    );
    // the slot may confirm past the transaction's start (it is resent whole while its commit
    // lies ahead), never past its commit; the rerun below proves the source still has it
    let flush = sc.confirmed_flush().unwrap();
    assert!(
        flush < committed,
        "the slot confirmed {flush}, past the spilled transaction's commit (before {committed})"
    );
    let landed: i64 = sc
        .fixture
        .rows("ledger")
        .unwrap()
        .iter()
        .filter(|r| r[0].as_deref().and_then(|v| v.parse::<i64>().ok()) > Some(5_000_000))
        .count() as i64;
    assert_eq!(
        landed, 0,
        "rows of the unacknowledged transaction reached the target"
    );

    // room again: the transaction is streamed anew and applied
    drop(disk);
    let config = sc.config_file(&load::TABLES, "");
    Pgwarp::new(&["sync", "-c", config.to_str().unwrap(), "--until-caught-up"])
        .run()
        .expect_success();
    for table in load::TABLES {
        sc.assert_synced(table);
    }
}
