//! The `pgwarp sync` configuration file the process-level tests write: every test's file has
//! the same small budgets (so runs cross them: spilling, partial batches, full queues) and
//! differs only in what it connects to, what it syncs and where it spills.

use std::path::Path;

/// What a test's configuration file names.
#[derive(Debug, Clone, Copy)]
pub struct SyncConfig<'a> {
    /// Source connection string.
    pub source: &'a str,
    /// Target (coordinator) connection string.
    pub target: &'a str,
    /// Tables as SQL names (`schema.table`, quoted where needed).
    pub tables: &'a [String],
    /// Slot name.
    pub slot: &'a str,
    /// Publication name.
    pub publication: &'a str,
    /// Spill directory.
    pub spill_dir: &'a Path,
    /// More top-level lines, written before the `[limits]` table ("" for none).
    pub extra: &'a str,
}

impl SyncConfig<'_> {
    /// The file's text: `parallel = 2`, no progress output, and small `[limits]`.
    pub fn to_toml(&self) -> String {
        let tables: Vec<String> = self.tables.iter().map(|t| toml_string(t)).collect();
        format!(
            "source = {}\ntarget = {}\ntables = [{}]\nslot = {}\npublication = {}\n\
             parallel = 2\nspill_dir = {}\nprogress = \"never\"\n{}\n\
             [limits]\ntransaction_memory = \"256kB\"\nqueue_bytes = \"2MB\"\n\
             batch_bytes = \"1MB\"\nsnapshot_batch_bytes = \"256kB\"\nchunk_bytes = \"256kB\"\n",
            toml_string(self.source),
            toml_string(self.target),
            tables.join(", "),
            toml_string(self.slot),
            toml_string(self.publication),
            toml_string(&self.spill_dir.display().to_string()),
            self.extra,
        )
    }
}

/// `s` as a TOML basic string, quotes included.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(
            toml_string("a \"b\" c\\d\n\u{7}"),
            "\"a \\\"b\\\" c\\\\d\\n\\u0007\""
        );
    }

    #[test]
    fn config_text() {
        let tables = ["s.\"T\"".to_owned(), "s.u".to_owned()];
        let config = SyncConfig {
            source: "host=127.0.0.1 port=1 dbname=a",
            target: "host=127.0.0.1 port=2 dbname=b",
            tables: &tables,
            slot: "slot_1",
            publication: "pub_1",
            spill_dir: Path::new("/tmp/spill"),
            extra: "node_timeout = \"5s\"",
        };
        assert_eq!(
            config.to_toml(),
            "source = \"host=127.0.0.1 port=1 dbname=a\"\n\
             target = \"host=127.0.0.1 port=2 dbname=b\"\n\
             tables = [\"s.\\\"T\\\"\", \"s.u\"]\nslot = \"slot_1\"\npublication = \"pub_1\"\n\
             parallel = 2\nspill_dir = \"/tmp/spill\"\nprogress = \"never\"\n\
             node_timeout = \"5s\"\n\
             [limits]\ntransaction_memory = \"256kB\"\nqueue_bytes = \"2MB\"\n\
             batch_bytes = \"1MB\"\nsnapshot_batch_bytes = \"256kB\"\nchunk_bytes = \"256kB\"\n"
        );
    }
}
