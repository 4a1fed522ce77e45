//! Comparing a table's rows on two sides (source and target), as the sync, fault and verify
//! tests do after a run: rows as text (`None` for NULL), row for row, with a failure message
//! that shows what is missing and what is extra rather than two huge lists.

use std::collections::HashSet;

/// Asserts that `source` and `target` (the rows of `table`, each sorted) are equal; otherwise
/// panics with the row counts and the first five rows missing on the target and extra on it.
pub fn assert_rows_equal(
    table: &str,
    source: &[Vec<Option<String>>],
    target: &[Vec<Option<String>>],
) {
    if source == target {
        return;
    }
    // sets, not `contains` on slices: a quadratic diff of tens of thousands of rows takes
    // minutes in a debug build
    let source_set: HashSet<_> = source.iter().collect();
    let target_set: HashSet<_> = target.iter().collect();
    let missing: Vec<_> = source
        .iter()
        .filter(|r| !target_set.contains(r))
        .take(5)
        .collect();
    let extra: Vec<_> = target
        .iter()
        .filter(|r| !source_set.contains(r))
        .take(5)
        .collect();
    panic!(
        "table {table} differs: source {} rows, target {} rows\nmissing on target (first 5): \
         {missing:?}\nextra on target (first 5): {extra:?}",
        source.len(),
        target.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|c| c.map(str::to_owned)).collect()
    }

    #[test]
    fn equal_rows_pass() {
        let rows = vec![row(&[Some("1"), None]), row(&[Some("2"), Some("b")])];
        assert_rows_equal("t", &rows, &rows.clone());
    }

    #[test]
    fn a_difference_names_missing_and_extra_rows() {
        let source = vec![row(&[Some("1")]), row(&[Some("2")])];
        let target = vec![row(&[Some("1")]), row(&[None])];
        let panic = std::panic::catch_unwind(|| assert_rows_equal("t", &source, &target))
            .expect_err("the rows differ");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            message,
            "table t differs: source 2 rows, target 2 rows\nmissing on target (first 5): \
             [[Some(\"2\")]]\nextra on target (first 5): [[None]]"
        );
    }
}
