//! Invalid configuration files are rejected, and the message names the offending key.
//!
//! Each case is a whole `pgwarp.toml` read with `config::load_file` and checked with
//! `RawConfig::validate`, the two stages every command goes through. No server is needed:
//! every problem here must be found before pgwarp connects anywhere.

use std::path::PathBuf;

use pgwarp::config::{ConfigError, RawConfig, load_file};

/// A valid file to start from: every case changes one thing.
const VALID: &str = r#"
source = "host=127.0.0.1 port=5432 user=migrator dbname=shop"
target = "host=127.0.0.1 port=5433 user=migrator dbname=shop"
tables = ["public.users"]
"#;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("pgwarp.toml");
    std::fs::write(&path, text).expect("write the config file");
    (dir, path)
}

/// The error of loading and validating `text`; panics if it is accepted.
fn rejected(text: &str) -> String {
    let (_dir, path) = write(text);
    match load_file(&path).and_then(RawConfig::validate) {
        Ok(settings) => panic!("accepted:\n{text}\nas {settings:?}"),
        Err(err) => err.to_string(),
    }
}

fn assert_names(text: &str, needles: &[&str]) {
    let err = rejected(text);
    for needle in needles {
        assert!(
            err.contains(needle),
            "the error for\n{text}\ndoes not name {needle:?}: {err}"
        );
    }
}

#[test]
fn the_valid_base_file_is_accepted() {
    let (_dir, path) = write(VALID);
    let settings = load_file(&path)
        .and_then(RawConfig::validate)
        .expect("the base file is valid");
    assert_eq!(settings.source.dbname, "shop");
    assert_eq!(settings.target.hosts[0].port, 5433);
}

#[test]
fn unknown_top_level_key_is_named() {
    assert_names(
        &format!("{VALID}sorce = \"host=a\"\n"),
        &["unknown field `sorce`"],
    );
    assert_names(
        &format!("{VALID}paralel = 4\n"),
        &["unknown field `paralel`"],
    );
}

#[test]
fn unknown_key_in_limits_is_named() {
    assert_names(
        &format!("{VALID}[limits]\nqueue = \"16MiB\"\n"),
        &["unknown field `queue`"],
    );
}

#[test]
fn unknown_section_is_named() {
    assert_names(
        &format!("{VALID}[limit]\nqueue_bytes = \"16MiB\"\n"),
        &["unknown field `limit`"],
    );
}

#[test]
fn unknown_key_in_a_node_override_is_named() {
    assert_names(
        &format!("{VALID}[nodes.\"10.0.0.7:5432\"]\nconn_info = \"host=10.0.0.7\"\n"),
        &["unknown field `conn_info`"],
    );
}

#[test]
fn file_errors_name_the_file() {
    let (dir, path) = write(&format!("{VALID}sorce = 1\n"));
    let err = load_file(&path).expect_err("unknown key").to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    let missing = dir.path().join("missing.toml");
    let err = load_file(&missing).expect_err("no such file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn not_toml_at_all_is_rejected_with_the_line() {
    assert_names("source = host=a\n", &["line 1"]);
}

#[test]
fn bad_source_connection_string_names_source_and_the_keyword() {
    assert_names(
        "source = \"host=127.0.0.1 prot=5432\"\ntarget = \"host=127.0.0.1\"\n",
        &["source", "prot"],
    );
}

#[test]
fn bad_target_port_names_target_and_the_value() {
    assert_names(
        "source = \"host=127.0.0.1\"\ntarget = \"host=127.0.0.1 port=fivefourthreetwo\"\n",
        &["target", "fivefourthreetwo"],
    );
}

#[test]
fn bad_sslmode_names_the_setting() {
    assert_names(
        "source = \"host=127.0.0.1 sslmode=sometimes\"\ntarget = \"host=127.0.0.1\"\n",
        &["source", "sslmode", "sometimes"],
    );
}

#[test]
fn malformed_uri_names_which_connection_string() {
    assert_names(
        "source = \"host=127.0.0.1\"\ntarget = \"postgres://[::1/shop\"\n",
        &["target"],
    );
}

#[test]
fn unterminated_quote_in_conninfo_names_which_connection_string() {
    assert_names(
        "source = \"host=127.0.0.1 password='abc\"\ntarget = \"host=127.0.0.1\"\n",
        &["source"],
    );
}

#[test]
fn bad_node_override_conninfo_names_the_node() {
    assert_names(
        &format!("{VALID}[nodes.\"10.0.0.7:5432\"]\nconninfo = \"host=10.0.0.7 port=x\"\n"),
        &["10.0.0.7:5432", "port"],
    );
}

#[test]
fn node_override_key_must_be_host_and_port() {
    assert_names(
        &format!("{VALID}[nodes.\"10.0.0.7\"]\nconninfo = \"host=10.0.0.7\"\n"),
        &["10.0.0.7", "host:port"],
    );
}

#[test]
fn missing_source_and_target_are_named() {
    assert_names("tables = [\"t\"]\n", &["source"]);
    assert_names("source = \"host=127.0.0.1\"\n", &["target"]);
}

#[test]
fn zero_sizes_are_rejected_with_the_key() {
    for key in [
        "queue_bytes",
        "batch_bytes",
        "transaction_memory",
        "snapshot_batch_bytes",
        "chunk_bytes",
    ] {
        assert_names(
            &format!("{VALID}[limits]\n{key} = 0\n"),
            &[&format!("limits.{key}")],
        );
        assert_names(
            &format!("{VALID}[limits]\n{key} = \"0MB\"\n"),
            &[&format!("limits.{key}")],
        );
    }
}

#[test]
fn negative_sizes_are_rejected_with_the_key() {
    for key in ["queue_bytes", "transaction_memory", "chunk_bytes"] {
        let text = format!("{VALID}[limits]\n{key} = -1\n");
        assert_names(&text, &[key, "size"]);
        // the message is for the operator, not a serde internal
        let err = rejected(&text);
        assert!(!err.contains("untagged enum"), "{err}");
        assert_names(&format!("{VALID}[limits]\n{key} = \"-64MiB\"\n"), &[key]);
    }
}

#[test]
fn sizes_with_unknown_units_are_rejected_with_the_key() {
    assert_names(
        &format!("{VALID}[limits]\nbatch_bytes = \"8 parsecs\"\n"),
        &["limits.batch_bytes", "8 parsecs"],
    );
    assert_names(
        &format!("{VALID}[limits]\nqueue_bytes = \"MiB\"\n"),
        &["limits.queue_bytes"],
    );
}

#[test]
fn oversized_sizes_are_rejected_with_the_key() {
    assert_names(
        &format!("{VALID}[limits]\nqueue_bytes = \"99999999999999GB\"\n"),
        &["limits.queue_bytes"],
    );
}

#[test]
fn a_batch_larger_than_its_queue_is_rejected_naming_both() {
    assert_names(
        &format!("{VALID}[limits]\nbatch_bytes = \"32MiB\"\nqueue_bytes = \"16MiB\"\n"),
        &["limits.batch_bytes", "limits.queue_bytes"],
    );
}

#[test]
fn zero_and_negative_parallel_are_rejected_with_the_key() {
    assert_names(&format!("{VALID}parallel = 0\n"), &["parallel"]);
    assert_names(&format!("{VALID}parallel = -4\n"), &["parallel"]);
    assert_names(&format!("{VALID}parallel = 100000\n"), &["parallel"]);
}

#[test]
fn wrong_types_are_rejected_with_the_key() {
    for (line, key) in [
        ("parallel = \"four\"", "parallel"),
        ("slot = 7", "slot"),
        ("spill_dir = false", "spill_dir"),
        ("progress = true", "progress"),
        ("metrics_addr = 9187", "metrics_addr"),
    ] {
        assert_names(&format!("{VALID}{line}\n"), &[key]);
    }
    assert_names(
        "source = 5\ntarget = \"host=127.0.0.1\"\ntables = [\"t\"]\n",
        &["source"],
    );
    assert_names(
        "source = \"host=a\"\ntarget = \"host=b\"\ntables = \"t\"\n",
        &["tables"],
    );
    assert_names(&format!("{VALID}limits = 3\n"), &["limits"]);
    assert_names(
        &format!("{VALID}[limits]\nqueue_bytes = true\n"),
        &["queue_bytes"],
    );
}

#[test]
fn tables_and_schemas_together_are_rejected_naming_both() {
    assert_names(
        &format!("{VALID}schemas = [\"public\"]\n"),
        &["tables", "schemas"],
    );
}

#[test]
fn empty_table_list_is_rejected() {
    assert_names(
        "source = \"host=a\"\ntarget = \"host=b\"\ntables = []\n",
        &["table"],
    );
    assert_names(
        "source = \"host=a\"\ntarget = \"host=b\"\nschemas = [\" , \"]\n",
        &["schema"],
    );
}

#[test]
fn invalid_slot_and_publication_names_are_rejected_with_the_key() {
    assert_names(
        &format!("{VALID}slot = \"Bad-Slot\"\n"),
        &["slot", "Bad-Slot"],
    );
    assert_names(&format!("{VALID}slot = \"\"\n"), &["slot"]);
    assert_names(
        &format!("{VALID}slot = \"{}\"\n", "s".repeat(64)),
        &["slot"],
    );
    assert_names(&format!("{VALID}publication = \"\"\n"), &["publication"]);
    assert_names(
        &format!("{VALID}publication = \"{}\"\n", "p".repeat(64)),
        &["publication"],
    );
}

#[test]
fn invalid_enumerations_are_rejected_with_the_key() {
    assert_names(
        &format!("{VALID}metrics_addr = \"localhost\"\n"),
        &["metrics_addr", "localhost"],
    );
    assert_names(
        &format!("{VALID}log_format = \"xml\"\n"),
        &["log_format", "xml"],
    );
    assert_names(
        &format!("{VALID}progress = \"sometimes\"\n"),
        &["progress", "sometimes"],
    );
}
