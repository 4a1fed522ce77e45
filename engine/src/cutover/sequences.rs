//! Copying sequence positions to the target: logical replication does not carry them.
//!
//! The sequences are those the migrated tables depend on: owned by one of their columns
//! (`serial`, identity: `pg_depend` type `a` or `i`) or named in a column default
//! (`nextval('s')`: the default's `pg_attrdef` depends on the sequence). They are found and
//! checked on the target before the fence goes up; their values are read after it, when no
//! fenced session can call `nextval` any more.
//!
//! A target sequence is only moved forward: when its next value is already at or past the
//! source's (a re-run, or rows inserted on the target), it is left alone. "Forward" follows
//! the sequence's increment, so descending sequences work too.

use serde::Serialize;
use tokio_postgres::Client;

use crate::citus::names::quote_qualified;

use super::error::CutoverError;

/// One sequence to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRef {
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
}

impl SequenceRef {
    /// `"schema"."name"`.
    pub fn quoted(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
}

/// What happened to one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceCopy {
    /// `schema.name`.
    pub sequence: String,
    /// The source's next value.
    pub source_next: i64,
    /// The target's next value before the copy.
    pub target_next_before: i64,
    /// Whether the target was moved.
    pub moved: bool,
}

/// The sequences `tables` (names resolved on the source) depend on.
pub async fn of_tables(
    source: &Client,
    tables: &[String],
) -> Result<Vec<SequenceRef>, CutoverError> {
    const WHAT: &str = "could not list the sequences of the tables";
    let rows = source
        .query(
            "WITH t AS (SELECT pg_catalog.to_regclass(n)::oid AS oid FROM unnest($1::text[]) n), \
             seqs AS ( \
               SELECT d.objid AS seq FROM pg_catalog.pg_depend d JOIN t ON d.refobjid = t.oid \
                WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                  AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') \
               UNION \
               SELECT d.refobjid FROM pg_catalog.pg_attrdef ad JOIN t ON ad.adrelid = t.oid \
                 JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass \
                  AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass) \
             SELECT n.nspname::text, c.relname::text FROM seqs \
               JOIN pg_catalog.pg_class c ON c.oid = seqs.seq AND c.relkind = 'S' \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              ORDER BY 1, 2",
            &[&tables],
        )
        .await
        .map_err(CutoverError::query(WHAT, "source"))?;
    rows.iter()
        .map(|r| {
            Ok(SequenceRef {
                schema: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(CutoverError::query(WHAT, "source"))
}

/// Checks that every sequence exists on the target.
pub async fn check_target(target: &Client, seqs: &[SequenceRef]) -> Result<(), CutoverError> {
    let names: Vec<String> = seqs.iter().map(SequenceRef::quoted).collect();
    let rows = target
        .query(
            "SELECT n FROM unnest($1::text[]) n WHERE pg_catalog.to_regclass(n) IS NULL",
            &[&names],
        )
        .await
        .map_err(CutoverError::query(
            "could not look for the sequences",
            "target",
        ))?;
    let missing: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CutoverError::Precondition(format!(
            "sequence(s) {} used by the migrated tables do not exist on the target: copy the \
             schema first (pgwarp schema)",
            missing.join(", ")
        )))
    }
}

/// `(next value, increment)` of a sequence.
async fn position(
    client: &Client,
    seq: &SequenceRef,
    side: &str,
) -> Result<(i64, i64), CutoverError> {
    let what = format!("could not read sequence {}", seq.quoted());
    let row = client
        .query_one(
            &format!(
                "SELECT s.last_value, s.is_called, p.seqincrement FROM {} s, \
                        pg_catalog.pg_sequence p WHERE p.seqrelid = $1::text::regclass",
                seq.quoted()
            ),
            &[&seq.quoted()],
        )
        .await
        .map_err(CutoverError::query(what.clone(), side))?;
    let read = || -> Result<(i64, bool, i64), tokio_postgres::Error> {
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    };
    let (last, called, inc) = read().map_err(CutoverError::query(what, side))?;
    Ok((next_value(last, called, inc), inc))
}

/// The value `nextval` would return.
pub fn next_value(last: i64, is_called: bool, increment: i64) -> i64 {
    if is_called {
        last.saturating_add(increment)
    } else {
        last
    }
}

/// Copies each sequence's position from the source to the target, forward only.
pub async fn copy(
    source: &Client,
    target: &Client,
    seqs: &[SequenceRef],
) -> Result<Vec<SequenceCopy>, CutoverError> {
    let mut out = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let (source_next, inc) = position(source, seq, "source").await?;
        let (target_next, _) = position(target, seq, "target").await?;
        let behind = if inc >= 0 {
            target_next < source_next
        } else {
            target_next > source_next
        };
        if behind {
            target
                .query_one(
                    "SELECT pg_catalog.setval($1::text::regclass, $2, false)",
                    &[&seq.quoted(), &source_next],
                )
                .await
                .map_err(CutoverError::query(
                    format!("could not set sequence {}", seq.quoted()),
                    "target",
                ))?;
        }
        out.push(SequenceCopy {
            sequence: format!("{}.{}", seq.schema, seq.name),
            source_next,
            target_next_before: target_next,
            moved: behind,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_value_follows_is_called_and_the_increment() {
        assert_eq!(next_value(1, false, 1), 1);
        assert_eq!(next_value(41, true, 1), 42);
        assert_eq!(next_value(-10, true, -5), -15);
        assert_eq!(next_value(i64::MAX, true, 1), i64::MAX);
    }
}
