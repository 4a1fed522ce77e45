//! `--sample N`: the keys of differing rows in one mismatching shard placement.
//!
//! Both sides stream `(key, md5 of the row)` for the rows of that one shard, sorted bytewise
//! (`COLLATE "C"`, which is also Rust's `str` order), and a merge walks the two streams in step:
//! a key only on the source is missing on the target, a key only on the target is extra there
//! (a row planted in the wrong shard shows up here), and the same key with different digests is
//! a changed row. Memory stays constant whatever the shard's size; the merge stops after `N`
//! differences (one more is read to know whether the list is complete).

use std::cmp::Ordering;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::types::ToSql;

use super::error::VerifyError;
use super::report::Sample;
use super::session::Pool;
use super::sql::{source_sample, target_sample};
use super::tables::TableCheck;

/// One merge step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The source row's key is not on the target: advance the source.
    Missing,
    /// The target row's key is not on the source: advance the target.
    Extra,
    /// Same key, different contents: advance both.
    Different,
    /// Same key and contents: advance both.
    Same,
}

/// Compares the heads of the two sorted streams (`None` = stream ended); `None` when both ended.
pub fn step(source: Option<&(String, String)>, target: Option<&(String, String)>) -> Option<Step> {
    match (source, target) {
        (None, None) => None,
        (Some(_), None) => Some(Step::Missing),
        (None, Some(_)) => Some(Step::Extra),
        (Some((ks, ms)), Some((kt, mt))) => Some(match ks.as_bytes().cmp(kt.as_bytes()) {
            Ordering::Less => Step::Missing,
            Ordering::Greater => Step::Extra,
            Ordering::Equal if ms == mt => Step::Same,
            Ordering::Equal => Step::Different,
        }),
    }
}

fn params<'a>(p: &'a [&'a (dyn ToSql + Sync)]) -> impl ExactSizeIterator<Item = &'a dyn ToSql> {
    p.iter().map(|x| *x as &dyn ToSql)
}

/// Up to `limit` differing keys between the source's bucket `bucket` (0-based shard index) and
/// the shard table `shard_table` on `node`.
pub async fn sample(
    check: &TableCheck,
    bucket: usize,
    shard_table: &str,
    source: &Pool,
    node: &Pool,
    limit: usize,
) -> Result<Sample, VerifyError> {
    let src_sql = source_sample(
        &check.source_table,
        &check.columns,
        &check.key,
        check.hash.as_ref(),
    );
    let tgt_sql = target_sample(shard_table, &check.columns, &check.key);
    let bucket_param = i32::try_from(bucket + 1).unwrap_or(i32::MAX);
    let src_params: Vec<&(dyn ToSql + Sync)> = if check.hash.is_some() {
        vec![&check.minimums, &bucket_param]
    } else {
        Vec::new()
    };
    let src_session = source.get().await?;
    let tgt_session = node.get().await?;
    let what = format!("could not read the rows of {} for a sample", check.display);
    let src_rows = src_session
        .client
        .query_raw(&src_sql, params(&src_params))
        .await
        .map_err(VerifyError::query(what.clone(), &source.label))?;
    let tgt_rows = tgt_session
        .client
        .query_raw(&tgt_sql, params(&[]))
        .await
        .map_err(VerifyError::query(what.clone(), &node.label))?;
    pin_mut!(src_rows);
    pin_mut!(tgt_rows);

    let mut out = Sample {
        key_columns: check.key.clone(),
        ..Sample::default()
    };
    let mut found = 0usize;
    let mut a = pair(src_rows.next().await, &what, &source.label)?;
    let mut b = pair(tgt_rows.next().await, &what, &node.label)?;
    let mut complete = true;
    while let Some(s) = step(a.as_ref(), b.as_ref()) {
        if s != Step::Same {
            if found == limit {
                out.truncated = true;
                complete = false;
                break;
            }
            found += 1;
        }
        match s {
            Step::Missing => {
                if let Some((k, _)) = a.take() {
                    out.missing_on_target.push(k);
                }
                a = pair(src_rows.next().await, &what, &source.label)?;
            }
            Step::Extra => {
                if let Some((k, _)) = b.take() {
                    out.extra_on_target.push(k);
                }
                b = pair(tgt_rows.next().await, &what, &node.label)?;
            }
            Step::Different | Step::Same => {
                if s == Step::Different
                    && let Some((k, _)) = a.take()
                {
                    out.different.push(k);
                }
                a = pair(src_rows.next().await, &what, &source.label)?;
                b = pair(tgt_rows.next().await, &what, &node.label)?;
            }
        }
    }
    if complete {
        // streams fully read: the sessions are clean and can be reused
        source.put(src_session);
        node.put(tgt_session);
    }
    Ok(out)
}

fn pair(
    row: Option<Result<tokio_postgres::Row, tokio_postgres::Error>>,
    what: &str,
    side: &str,
) -> Result<Option<(String, String)>, VerifyError> {
    let Some(row) = row else { return Ok(None) };
    let read = |r: tokio_postgres::Row| -> Result<(String, String), tokio_postgres::Error> {
        Ok((r.try_get(0)?, r.try_get(1)?))
    };
    row.and_then(read)
        .map(Some)
        .map_err(VerifyError::query(what, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(k: &str, m: &str) -> (String, String) {
        (k.to_string(), m.to_string())
    }

    /// Runs the merge over two sorted vectors.
    fn merge(a: &[(String, String)], b: &[(String, String)]) -> Vec<(Step, String)> {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while let Some(s) = step(a.get(i), b.get(j)) {
            match s {
                Step::Missing => {
                    out.push((s, a[i].0.clone()));
                    i += 1;
                }
                Step::Extra => {
                    out.push((s, b[j].0.clone()));
                    j += 1;
                }
                Step::Different | Step::Same => {
                    if s == Step::Different {
                        out.push((s, a[i].0.clone()));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        out
    }

    #[test]
    fn merge_finds_missing_extra_and_changed_keys() {
        let src = [r("(1)", "a"), r("(2)", "b"), r("(3)", "c"), r("(5)", "e")];
        let tgt = [r("(1)", "a"), r("(3)", "X"), r("(4)", "d"), r("(5)", "e")];
        assert_eq!(
            merge(&src, &tgt),
            vec![
                (Step::Missing, "(2)".to_string()),
                (Step::Different, "(3)".to_string()),
                (Step::Extra, "(4)".to_string()),
            ]
        );
    }

    #[test]
    fn merge_of_equal_and_empty_streams() {
        let rows = [r("(1)", "a"), r("(2)", "b")];
        assert!(merge(&rows, &rows).is_empty());
        assert!(merge(&[], &[]).is_empty());
        assert_eq!(merge(&rows, &[]).len(), 2);
        assert_eq!(merge(&[], &rows)[1], (Step::Extra, "(2)".to_string()));
    }

    #[test]
    fn byte_order_matches_collate_c() {
        // "(10)" < "(9)" bytewise, as the servers sort with COLLATE "C"
        assert_eq!(
            step(Some(&r("(10)", "a")), Some(&r("(9)", "b"))),
            Some(Step::Missing)
        );
        // duplicates without a key: identical digests pair up one to one
        let src = [r("d1", "d1"), r("d1", "d1")];
        let tgt = [r("d1", "d1")];
        assert_eq!(merge(&src, &tgt), vec![(Step::Missing, "d1".to_string())]);
    }
}
