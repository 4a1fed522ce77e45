//! Copying DDL with PostgreSQL's own tools: `pg_dump --schema-only` from the source, piped
//! into `psql` on the target, in one transaction.
//!
//! pg_dump must be at least as new as the source server, so the binaries are looked for in
//! `/usr/lib/postgresql/<source major>/bin` (Debian and Ubuntu packages) first, then in
//! `PATH`, and the version found is checked. psql comes from the same directory: it must
//! understand what that pg_dump writes (recent minor releases emit `\restrict` lines).
//!
//! Connection strings are passed without the password; the password, when pgwarp resolved one
//! (connection string, `PGPASSWORD`, password file), travels in the child's `PGPASSWORD`, so
//! it never shows in a process listing.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::conn::ConnConfig;

use super::SchemaError;

/// pg_dump and psql of one PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `pg_dump`.
    pub pg_dump: PathBuf,
    /// `psql` beside it.
    pub psql: PathBuf,
    /// pg_dump's major version.
    pub major: u32,
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
pub fn parse_major(version_line: &str) -> Option<u32> {
    let v = version_line
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn version_of(pg_dump: &Path) -> Option<u32> {
    let out = Command::new(pg_dump).arg("--version").output().await.ok()?;
    if !out.status.success() {
        return None;
    }
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// Finds pg_dump and psql able to dump a server of major version `source_major`; `explicit`
/// is `--pg-dump`.
pub async fn find_tools(source_major: u32, explicit: Option<&Path>) -> Result<Tools, SchemaError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from(format!("/usr/lib/postgresql/{source_major}/bin/pg_dump")),
            PathBuf::from("pg_dump"),
        ],
    };
    let mut found_older: Option<(PathBuf, u32)> = None;
    for pg_dump in candidates {
        let Some(major) = version_of(&pg_dump).await else {
            continue;
        };
        if major < source_major {
            found_older = Some((pg_dump, major));
            continue;
        }
        let psql = match pg_dump.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("psql"),
            _ => PathBuf::from("psql"),
        };
        return Ok(Tools {
            pg_dump,
            psql,
            major,
        });
    }
    if let Some(p) = explicit
        && found_older.is_none()
    {
        return Err(SchemaError::Tools(format!(
            "{} is not a working pg_dump (could not run it with --version)",
            p.display()
        )));
    }
    Err(match found_older {
        Some((path, major)) => SchemaError::Tools(format!(
            "{} is pg_dump {major}, older than the source server ({source_major}): install the \
             PostgreSQL {source_major} client programs or give --pg-dump",
            path.display()
        )),
        None => SchemaError::Tools(format!(
            "pg_dump not found (looked for /usr/lib/postgresql/{source_major}/bin/pg_dump and in \
             PATH): install the PostgreSQL {source_major} client programs or give --pg-dump"
        )),
    })
}

/// A libpq connection string for `cfg` without its password, and the password.
pub fn conninfo(cfg: &ConnConfig) -> (String, Option<String>) {
    let password = cfg
        .hosts
        .iter()
        .find_map(|h| h.password.as_ref().map(|p| p.expose().to_owned()));
    // Display writes every setting, with the password masked: leave that out
    let text = cfg.to_string().replace(" password=********", "");
    (text, password)
}

/// What pg_dump dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These tables (`"schema"."name"`; pg_dump patterns, quoted so they match exactly).
    Tables(Vec<String>),
    /// These schemas.
    Schemas(Vec<String>),
    /// The whole database.
    All,
}

/// Runs pg_dump and returns its script.
pub async fn dump(
    tools: &Tools,
    source: &ConnConfig,
    what: &Selection,
) -> Result<String, SchemaError> {
    let (info, password) = conninfo(source);
    let mut cmd = Command::new(&tools.pg_dump);
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-publications",
        "--no-subscriptions",
        "--no-tablespaces",
        "--no-security-labels",
    ])
    .arg(format!("--dbname={info}"));
    match what {
        Selection::Tables(t) => {
            for name in t {
                cmd.arg(format!("--table={name}"));
            }
        }
        Selection::Schemas(s) => {
            for name in s {
                cmd.arg(format!(
                    "--schema={}",
                    crate::citus::names::quote_ident(name)
                ));
            }
        }
        Selection::All => {}
    }
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.stdin(Stdio::null()).output().await.map_err(|e| {
        SchemaError::Tools(format!("could not run {}: {e}", tools.pg_dump.display()))
    })?;
    if !out.status.success() {
        return Err(SchemaError::Dump(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| SchemaError::Dump("pg_dump wrote something that is not UTF-8".to_owned()))
}

/// Makes the script safe to run where some schemas already exist.
pub fn tolerate_existing_schemas(script: &str) -> String {
    script
        .lines()
        .map(|l| match l.strip_prefix("CREATE SCHEMA ") {
            Some(rest) if !rest.starts_with("IF NOT EXISTS") => {
                format!("CREATE SCHEMA IF NOT EXISTS {rest}")
            }
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `script` on the target with psql, in one transaction, stopping at the first error.
pub async fn restore(tools: &Tools, target: &ConnConfig, script: &str) -> Result<(), SchemaError> {
    let (info, password) = conninfo(target);
    let mut cmd = Command::new(&tools.psql);
    cmd.args([
        "--no-psqlrc",
        "--quiet",
        "--single-transaction",
        "--set=ON_ERROR_STOP=1",
        "--file=-",
    ])
    .arg(format!("--dbname={info}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SchemaError::Tools(format!("could not run {}: {e}", tools.psql.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| SchemaError::Restore(format!("could not send the schema to psql: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| SchemaError::Tools(format!("psql failed: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SchemaError::Restore(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_parsed() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta2"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("nonsense"), None);
    }

    #[test]
    fn existing_schemas_are_tolerated() {
        let s = "SET x = 1;\nCREATE SCHEMA \"shop\";\nCREATE SCHEMA IF NOT EXISTS b;\n  CREATE SCHEMA c;";
        assert_eq!(
            tolerate_existing_schemas(s),
            "SET x = 1;\nCREATE SCHEMA IF NOT EXISTS \"shop\";\nCREATE SCHEMA IF NOT EXISTS b;\n  CREATE SCHEMA c;"
        );
    }

    #[test]
    fn conninfo_leaves_the_password_out() {
        let cfg = ConnConfig::parse("host=h port=5 user=u dbname=d password=s3cret").unwrap();
        let (info, pw) = conninfo(&cfg);
        assert!(
            !info.contains("s3cret") && !info.contains("password"),
            "{info}"
        );
        assert!(info.contains("host=h port=5 user=u dbname=d"), "{info}");
        assert_eq!(pw.as_deref(), Some("s3cret"));
    }
}
