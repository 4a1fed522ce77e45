//! Shared by the migration-workflow tests (verify, cutover, cleanup, plan, schema): run a
//! `pgwarp` command in-process as the binary would, and build a source database whose tables
//! mirror a cluster fixture's.
#![allow(dead_code)]

use pgwarp::cli::verify::exit_status;
use pgwarp::cli::{Cli, run};
use pgwarp_tests::cluster::CitusFixture;
use pgwarp_tests::{PgServer, TestDb};

/// What a command run produced: the exit status the binary would return, its stdout, and the
/// message it would print on stderr.
#[derive(Debug)]
pub struct Outcome {
    /// 0 on success.
    pub status: u8,
    /// What the command wrote to stdout.
    pub stdout: String,
    /// The error message (empty on success).
    pub stderr: String,
}

impl Outcome {
    /// Panics with the whole outcome unless the status is `status`.
    #[track_caller]
    pub fn expect_status(&self, status: u8) -> &Self {
        assert_eq!(self.status, status, "unexpected exit status: {self:#?}");
        self
    }

    /// Panics with stdout unless it contains `text`.
    #[track_caller]
    pub fn expect_stdout(&self, text: &str) -> &Self {
        assert!(self.stdout.contains(text), "{}", self.stdout);
        self
    }

    /// Panics with stderr unless it contains `text`.
    #[track_caller]
    pub fn expect_stderr(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "{}", self.stderr);
        self
    }
}

/// Runs `pgwarp plan --source <source> --schemas <schemas> --min-size <min_size>` and `extra`.
pub async fn plan(source: &str, schemas: &str, min_size: &str, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "plan",
        "--source",
        source,
        "--schemas",
        schemas,
        "--min-size",
        min_size,
    ];
    args.extend_from_slice(extra);
    pgwarp(&args).await
}

/// Runs `pgwarp verify --source <source> --target <target> --tables <tables>` and `extra`.
pub async fn verify(source: &str, target: &str, tables: &str, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "verify", "--source", source, "--target", target, "--tables", tables,
    ];
    args.extend_from_slice(extra);
    pgwarp(&args).await
}

/// Runs `pgwarp <args>` in-process. Argument errors give clap's status (2).
pub async fn pgwarp(args: &[&str]) -> Outcome {
    let mut argv = vec!["pgwarp"];
    argv.extend_from_slice(args);
    let cli = match Cli::try_from_args(argv) {
        Ok(cli) => cli,
        Err(e) => {
            return Outcome {
                status: u8::try_from(e.exit_code()).unwrap_or(2),
                stdout: String::new(),
                stderr: e.to_string(),
            };
        }
    };
    let mut out = Vec::new();
    let result = run(cli, &mut out).await;
    let stdout = String::from_utf8(out).expect("utf-8 output");
    match result {
        Ok(()) => Outcome {
            status: 0,
            stdout,
            stderr: String::new(),
        },
        Err(e) => Outcome {
            status: exit_status(&e),
            stdout,
            stderr: format!("{e:#}"),
        },
    }
}

/// A source database on the shared server with `schema` (the fixture's schema name) holding
/// the tables created by `ddl` (unqualified names, run with `schema` on the search path).
pub fn source_db(schema: &str, ddl: &str) -> TestDb {
    let db = PgServer::shared()
        .create_database("src")
        .expect("source db");
    db.create_schema(schema, ddl).expect("source tables");
    db
}

/// Runs `sql` on the source with the fixture's schema on the search path.
pub fn source_exec(db: &TestDb, schema: &str, sql: &str) {
    db.execute_in(schema, sql).expect("source statement");
}

/// `host:port` of the node holding `group`, as verify names nodes.
pub fn node_label(f: &CitusFixture, group: i32) -> String {
    let n = f.node_of_group(group).expect("node of group");
    format!("{}:{}", n.host, n.port)
}

/// The shard (id, shard table, group of the first placement) that `value_sql` routes to.
pub fn shard_of(f: &CitusFixture, table: &str, value_sql: &str) -> (i64, String, i32) {
    let id = f.shard_id_for(table, value_sql).expect("shard id");
    let info = f
        .shards(table)
        .expect("shards")
        .into_iter()
        .find(|s| s.shardid == id)
        .expect("shard info");
    (id, info.shard_table, info.groups[0])
}

/// A shard of `table` other than `not`, on the same node if possible, else any.
pub fn other_shard(f: &CitusFixture, table: &str, not: i64) -> (i64, String, i32) {
    let shards = f.shards(table).expect("shards");
    let group = shards
        .iter()
        .find(|s| s.shardid == not)
        .map(|s| s.groups[0]);
    let pick = shards
        .iter()
        .find(|s| s.shardid != not && Some(s.groups[0]) == group)
        .or_else(|| shards.iter().find(|s| s.shardid != not))
        .expect("another shard");
    (pick.shardid, pick.shard_table.clone(), pick.groups[0])
}
