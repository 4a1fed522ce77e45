//! The write fence on the source: make the application's sessions read-only, reversibly.
//!
//! A fence is `default_transaction_read_only = on` set for the named application roles in the
//! source database (`ALTER ROLE r IN DATABASE db SET ...`), or for the whole database
//! (`ALTER DATABASE db SET ...`) when no role is named. New sessions start read-only, so their
//! writes fail with SQLSTATE 25006; sessions that were open before keep their old default, so
//! they are ended (`pg_terminate_backend`), and their open transactions roll back.
//!
//! Which sessions: client backends of the fenced roles (or of anyone, for a database fence)
//! in the source database whose `backend_start` is before the moment the fence committed. A
//! session forked just before that moment may show up in `pg_stat_activity` a little later,
//! so the sweep runs twice, a short pause apart, and waits for the ended sessions to be gone.
//! Never ended: pgwarp's own sessions (this one, and any whose `application_name` starts with
//! `pgwarp`) and WAL senders (the sync's replication connection keeps streaming).
//!
//! It is a fence for well-behaved applications, not a security boundary: a session may still
//! `SET default_transaction_read_only = off` or `BEGIN READ WRITE`. A role-specific setting
//! (`ALTER ROLE r SET ...` in the database) overrides a database fence; name the roles then.
//!
//! Lifting restores exactly the value each setting had before (or `RESET` when it had none),
//! as recorded in `pgwarp.cutover` before the fence went up.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::citus::names::quote_ident;
use crate::source::quote::quote_literal;

use super::error::CutoverError;

/// The setting a fence sets.
pub const SETTING: &str = "default_transaction_read_only";

/// What is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceKind {
    /// The named roles, in the source database.
    Roles,
    /// Every session of the source database.
    Database,
    /// Nothing: the operator stopped the writers.
    None,
}

impl FenceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceKind::Roles => "roles",
            FenceKind::Database => "database",
            FenceKind::None => "none",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<FenceKind> {
        Some(match s {
            "roles" => FenceKind::Roles,
            "database" => FenceKind::Database,
            "none" => FenceKind::None,
            _ => return None,
        })
    }
}

/// A fence and the settings it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// What is fenced.
    pub kind: FenceKind,
    /// The source database.
    pub database: String,
    /// The fenced roles (empty unless `kind` is `Roles`).
    pub roles: Vec<String>,
    /// The value each setting had before: one per role, or one for the database.
    pub previous: Vec<Option<String>>,
}

impl Fence {
    /// What the fence covers, for messages: `roles app, batch` or `database "shop"`.
    pub fn describe(&self) -> String {
        match self.kind {
            FenceKind::Roles => format!("roles {}", self.roles.join(", ")),
            FenceKind::Database => format!("database \"{}\"", self.database),
            FenceKind::None => "nothing (no fence)".to_owned(),
        }
    }

    /// The part of the fence the first `n` statements of [`Fence::apply_sql`] put up; `None`
    /// when that is nothing.
    pub fn first(&self, n: usize) -> Option<Fence> {
        if n == 0 {
            return None;
        }
        let mut part = self.clone();
        if part.kind == FenceKind::Roles {
            part.roles.truncate(n);
            part.previous.truncate(n);
        }
        Some(part)
    }

    /// The statements that put the fence up.
    pub fn apply_sql(&self) -> Vec<String> {
        let db = quote_ident(&self.database);
        match self.kind {
            FenceKind::Roles => self
                .roles
                .iter()
                .map(|r| {
                    format!(
                        "ALTER ROLE {} IN DATABASE {db} SET {SETTING} = on",
                        quote_ident(r)
                    )
                })
                .collect(),
            FenceKind::Database => vec![format!("ALTER DATABASE {db} SET {SETTING} = on")],
            FenceKind::None => Vec::new(),
        }
    }

    /// The statements that take it down, restoring the previous values.
    pub fn lift_sql(&self) -> Vec<String> {
        let db = quote_ident(&self.database);
        let restore =
            |target: String, prev: Option<&Option<String>>| match prev.and_then(|p| p.as_deref()) {
                Some(v) => format!("{target} SET {SETTING} = {}", quote_literal(v)),
                None => format!("{target} RESET {SETTING}"),
            };
        match self.kind {
            FenceKind::Roles => self
                .roles
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    restore(
                        format!("ALTER ROLE {} IN DATABASE {db}", quote_ident(r)),
                        self.previous.get(i),
                    )
                })
                .collect(),
            FenceKind::Database => vec![restore(
                format!("ALTER DATABASE {db}"),
                self.previous.first(),
            )],
            FenceKind::None => Vec::new(),
        }
    }
}

fn src(what: &str) -> impl FnOnce(tokio_postgres::Error) -> CutoverError + '_ {
    move |e| CutoverError::query(what, "source")(e)
}

/// Reads what a fence of `roles` (or of the database, when empty) would replace, checking that
/// every role exists.
pub async fn plan(source: &Client, roles: &[String], fence: bool) -> Result<Fence, CutoverError> {
    const WHAT: &str = "could not read the current settings";
    let database: String = source
        .query_one("SELECT current_database()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(src(WHAT))?;
    if !fence {
        return Ok(Fence {
            kind: FenceKind::None,
            database,
            roles: Vec::new(),
            previous: Vec::new(),
        });
    }
    let value = format!(
        "(SELECT substr(c, {}) FROM unnest(s.setconfig) c WHERE c LIKE '{SETTING}=%')",
        SETTING.len() + 2
    );
    if roles.is_empty() {
        let row = source
            .query_one(
                &format!(
                    "SELECT {value} FROM (SELECT 1) x LEFT JOIN pg_catalog.pg_db_role_setting s \
                       ON s.setrole = 0 AND s.setdatabase = \
                          (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
                ),
                &[],
            )
            .await
            .map_err(src(WHAT))?;
        let previous: Option<String> = row.try_get(0).map_err(src(WHAT))?;
        return Ok(Fence {
            kind: FenceKind::Database,
            database,
            roles: Vec::new(),
            previous: vec![previous],
        });
    }
    let rows = source
        .query(
            &format!(
                "SELECT a.name, r.rolname IS NOT NULL, {value} \
                   FROM unnest($1::text[]) WITH ORDINALITY AS a(name, ord) \
                   LEFT JOIN pg_catalog.pg_roles r ON r.rolname = a.name \
                   LEFT JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid \
                        AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database \
                                              WHERE datname = current_database()) \
                  ORDER BY a.ord"
            ),
            &[&roles],
        )
        .await
        .map_err(src(WHAT))?;
    let mut previous = Vec::with_capacity(rows.len());
    for row in rows {
        let read = || -> Result<(String, bool, Option<String>), tokio_postgres::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        };
        let (name, exists, value) = read().map_err(src(WHAT))?;
        if !exists {
            return Err(CutoverError::Precondition(format!(
                "role \"{name}\" does not exist on the source: --fence-role names the roles \
                 the application connects as"
            )));
        }
        previous.push(value);
    }
    Ok(Fence {
        kind: FenceKind::Roles,
        database,
        roles: roles.to_vec(),
        previous,
    })
}

/// Puts the fence up; returns the server time at which it took effect. On failure, also
/// returns the part of the fence that did go up (to be lifted), if any.
pub async fn apply(
    source: &Client,
    fence: &Fence,
) -> Result<String, (Option<Fence>, CutoverError)> {
    for (i, sql) in fence.apply_sql().into_iter().enumerate() {
        if let Err(e) = source.batch_execute(&sql).await {
            let err = CutoverError::query(format!("could not fence writes ({sql})"), "source")(e);
            return Err((fence.first(i), err));
        }
    }
    source
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| {
            (
                Some(fence.clone()),
                CutoverError::query("could not read the server time", "source")(e),
            )
        })
}

/// Takes the fence down.
pub async fn lift(source: &Client, fence: &Fence) -> Result<(), CutoverError> {
    for sql in fence.lift_sql() {
        source.batch_execute(&sql).await.map_err(|e| {
            CutoverError::query(format!("could not lift the fence ({sql})"), "source")(e)
        })?;
    }
    Ok(())
}

/// How long ended sessions may take to go away.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Pause between the two sweeps.
const SWEEP_PAUSE: Duration = Duration::from_millis(200);

/// Ends the sessions that started before `fenced_at` and would not be read-only; returns how
/// many were ended.
pub async fn end_sessions(
    source: &Client,
    fence: &Fence,
    fenced_at: &str,
) -> Result<usize, CutoverError> {
    if fence.kind == FenceKind::None {
        return Ok(0);
    }
    let roles: Option<Vec<String>> = match fence.kind {
        FenceKind::Roles => Some(fence.roles.clone()),
        _ => None,
    };
    let mut ended = 0;
    for sweep in 0..2 {
        if sweep > 0 {
            tokio::time::sleep(SWEEP_PAUSE).await;
        }
        let rows = source
            .query(
                "SELECT pid, pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
                  WHERE datname = current_database() AND pid <> pg_catalog.pg_backend_pid() \
                    AND backend_type = 'client backend' \
                    AND coalesce(application_name, '') NOT LIKE 'pgwarp%' \
                    AND backend_start < $1::text::timestamptz \
                    AND ($2::text[] IS NULL OR usename::text = ANY($2::text[]))",
                &[&fenced_at, &roles],
            )
            .await
            .map_err(src("could not end the sessions open before the fence"))?;
        let pids: Vec<i32> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(src("could not end the sessions open before the fence"))?;
        ended += pids.len();
        wait_gone(source, &pids).await?;
    }
    Ok(ended)
}

/// Waits until `pids` have left `pg_stat_activity` (their transactions are over).
async fn wait_gone(source: &Client, pids: &[i32]) -> Result<(), CutoverError> {
    if pids.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let left: i64 = source
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(src("could not watch the ended sessions"))?;
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > EXIT_WAIT {
            return Err(CutoverError::Precondition(format!(
                "{left} session(s) ended for the fence did not exit within {} s",
                EXIT_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(kind: FenceKind, roles: &[&str], previous: Vec<Option<&str>>) -> Fence {
        Fence {
            kind,
            database: "shop db".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            previous: previous.into_iter().map(|p| p.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn role_fence_and_its_exact_reversal() {
        let f = fence(FenceKind::Roles, &["app", "Batch"], vec![None, Some("off")]);
        assert_eq!(
            f.apply_sql(),
            [
                "ALTER ROLE \"app\" IN DATABASE \"shop db\" SET default_transaction_read_only = on",
                "ALTER ROLE \"Batch\" IN DATABASE \"shop db\" SET default_transaction_read_only = on",
            ]
        );
        assert_eq!(
            f.lift_sql(),
            [
                "ALTER ROLE \"app\" IN DATABASE \"shop db\" RESET default_transaction_read_only",
                "ALTER ROLE \"Batch\" IN DATABASE \"shop db\" SET default_transaction_read_only = 'off'",
            ]
        );
        assert_eq!(f.describe(), "roles app, Batch");
    }

    #[test]
    fn database_fence_and_no_fence() {
        let f = fence(FenceKind::Database, &[], vec![None]);
        assert_eq!(
            f.apply_sql(),
            ["ALTER DATABASE \"shop db\" SET default_transaction_read_only = on"]
        );
        assert_eq!(
            f.lift_sql(),
            ["ALTER DATABASE \"shop db\" RESET default_transaction_read_only"]
        );
        assert_eq!(f.first(0), None);
        assert_eq!(f.first(1), Some(f.clone()));
        let roles = fence(
            FenceKind::Roles,
            &["a", "b", "c"],
            vec![None, Some("on"), None],
        );
        let part = roles.first(2).unwrap();
        assert_eq!(part.roles, ["a", "b"]);
        assert_eq!(part.previous, [None, Some("on".to_owned())]);
        let none = fence(FenceKind::None, &[], vec![]);
        assert!(none.apply_sql().is_empty() && none.lift_sql().is_empty());
        for k in [FenceKind::Roles, FenceKind::Database, FenceKind::None] {
            assert_eq!(FenceKind::parse(k.as_str()), Some(k));
        }
    }
}
