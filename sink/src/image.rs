//! The latest known image of a row inside a batch, and key values.
//!
//! Most rows are written as they arrived ([`Image::Row`], no copying). When a later update of the
//! same row carries unchanged TOAST markers (`u`), the writer takes those columns from the
//! earlier image and keeps the merge as owned values ([`Image::Values`], zero-copy `Bytes`
//! slices of the original frames), so the net change is as complete as the batch allows.

use pgwarp_decoder::{ColumnRef, ColumnValue};

use crate::error::SinkError;
use crate::row::{Row, RowColumns};
use crate::target::TargetTable;

/// Values of a table's key columns, in key order.
pub(crate) type KeyVals = Vec<ColumnValue>;

/// A row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Image {
    /// A row as it arrived.
    Row(Row),
    /// A merged image.
    Values(Vec<ColumnValue>),
}

impl Image {
    /// The columns, borrowing their bytes.
    pub(crate) fn columns(&self) -> ImageColumns<'_> {
        match self {
            Image::Row(r) => ImageColumns::Row(r.columns()),
            Image::Values(v) => ImageColumns::Values(v.iter()),
        }
    }

    /// Whether any column is an unchanged TOAST marker.
    pub(crate) fn has_unchanged(&self) -> bool {
        match self {
            Image::Row(r) => r.has_unchanged(),
            Image::Values(v) => v.contains(&ColumnValue::UnchangedToast),
        }
    }

    /// Indexes of the columns that carry a value or NULL (not unchanged).
    pub(crate) fn present(&self) -> Vec<usize> {
        self.columns()
            .enumerate()
            .filter(|(_, c)| !c.is_unchanged_toast())
            .map(|(i, _)| i)
            .collect()
    }

    /// The image after `next` is applied on top of `prev`: `next`'s values, except that its
    /// unchanged columns keep `prev`'s value (which may itself be unchanged).
    pub(crate) fn merge(prev: Option<Image>, next: &Row) -> Image {
        match prev {
            Some(prev) if next.has_unchanged() => Image::Values(
                next.values()
                    .zip(prev.values())
                    .map(|(n, p)| {
                        if n == ColumnValue::UnchangedToast {
                            p
                        } else {
                            n
                        }
                    })
                    .collect(),
            ),
            _ => Image::Row(next.clone()),
        }
    }

    /// The columns as owned values (zero-copy slices).
    pub(crate) fn values(&self) -> Box<dyn Iterator<Item = ColumnValue> + '_> {
        match self {
            Image::Row(r) => Box::new(r.values()),
            Image::Values(v) => Box::new(v.iter().cloned()),
        }
    }

    /// Replaces unchanged key columns by the key's values (a TOASTed key column the source did
    /// not resend), so staged rows always carry their key.
    pub(crate) fn with_key(self, table: &TargetTable, key: &[ColumnValue]) -> Image {
        let unchanged_key = self
            .columns()
            .enumerate()
            .any(|(i, c)| c.is_unchanged_toast() && table.is_key(i));
        if !unchanged_key {
            return self;
        }
        let mut values: Vec<ColumnValue> = match self {
            Image::Values(v) => v,
            Image::Row(r) => r.values().collect(),
        };
        for (j, &k) in table.key().iter().enumerate() {
            if let (Some(slot), Some(v)) = (values.get_mut(k), key.get(j))
                && *slot == ColumnValue::UnchangedToast
            {
                *slot = v.clone();
            }
        }
        Image::Values(values)
    }
}

/// Iterator over an [`Image`]'s columns.
pub(crate) enum ImageColumns<'a> {
    Row(RowColumns<'a>),
    Values(std::slice::Iter<'a, ColumnValue>),
}

impl<'a> Iterator for ImageColumns<'a> {
    type Item = ColumnRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ColumnRef<'a>> {
        match self {
            ImageColumns::Row(r) => r.next(),
            ImageColumns::Values(v) => v.next().map(ColumnValue::as_ref),
        }
    }
}

/// Checks that a row has one value per table column.
pub(crate) fn check_width(row: &Row, table: &TargetTable) -> Result<(), SinkError> {
    if row.len() == table.columns().len() {
        return Ok(());
    }
    Err(SinkError::InvalidRow {
        table: table.name().to_owned(),
        reason: format!("{} columns, table has {}", row.len(), table.columns().len()),
    })
}

/// The key values of `row`; an unchanged key column is an error.
pub(crate) fn key_of(row: &Row, table: &TargetTable) -> Result<KeyVals, SinkError> {
    let mut key = vec![ColumnValue::Null; table.key().len()];
    let mut seen = 0;
    for (i, c) in row.columns().enumerate() {
        let Some(j) = table.key().iter().position(|&k| k == i) else {
            continue;
        };
        if c.is_unchanged_toast() {
            return Err(SinkError::InvalidRow {
                table: table.name().to_owned(),
                reason: format!(
                    "key column \"{}\" is an unchanged toast value and no old key was sent",
                    table.columns().get(i).map_or("?", String::as_str)
                ),
            });
        }
        key[j] = row.own(c);
        seen += 1;
        if seen == key.len() {
            break;
        }
    }
    if seen < key.len() {
        return Err(SinkError::InvalidRow {
            table: table.name().to_owned(),
            reason: "row is missing key columns".into(),
        });
    }
    Ok(key)
}

/// Appends a hashable encoding of `key` (NULL distinct from empty) to `out`.
pub(crate) fn key_bytes(out: &mut Vec<u8>, key: &[ColumnValue]) {
    for v in key {
        match v {
            ColumnValue::Null | ColumnValue::UnchangedToast => out.push(0),
            ColumnValue::Text(b) | ColumnValue::Binary(b) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarp_decoder::TupleData;

    fn tuple(cols: &[ColumnRef<'_>]) -> Row {
        Row::Tuple(TupleData::from_values(cols.iter().copied()).unwrap())
    }

    fn table() -> TargetTable {
        TargetTable::new(
            "public.t",
            vec!["a".into(), "id".into(), "c".into()],
            vec![1],
            true,
        )
        .unwrap()
    }

    #[test]
    fn merge_takes_unchanged_columns_from_the_earlier_image() {
        let first = tuple(&[
            ColumnRef::Text(b"a1"),
            ColumnRef::Text(b"1"),
            ColumnRef::Text(b"big"),
        ]);
        let second = tuple(&[
            ColumnRef::Text(b"a2"),
            ColumnRef::Text(b"1"),
            ColumnRef::UnchangedToast,
        ]);
        let merged = Image::merge(Some(Image::Row(first)), &second);
        assert_eq!(
            merged.columns().collect::<Vec<_>>(),
            vec![
                ColumnRef::Text(b"a2"),
                ColumnRef::Text(b"1"),
                ColumnRef::Text(b"big")
            ]
        );
        assert!(!merged.has_unchanged());
        let third = tuple(&[
            ColumnRef::UnchangedToast,
            ColumnRef::Text(b"1"),
            ColumnRef::Null,
        ]);
        let merged = Image::merge(Some(merged), &third);
        assert_eq!(
            merged.columns().collect::<Vec<_>>(),
            vec![
                ColumnRef::Text(b"a2"),
                ColumnRef::Text(b"1"),
                ColumnRef::Null
            ]
        );
        // No earlier image: the markers stay.
        let alone = Image::merge(None, &second);
        assert!(alone.has_unchanged());
        assert_eq!(alone.present(), vec![0, 1]);
    }

    #[test]
    fn keys_are_extracted_in_key_order() {
        let t = TargetTable::new(
            "t",
            vec!["a".into(), "b".into(), "c".into()],
            vec![2, 0],
            true,
        )
        .unwrap();
        let row = tuple(&[
            ColumnRef::Text(b"x"),
            ColumnRef::Null,
            ColumnRef::Text(b"z"),
        ]);
        assert_eq!(
            key_of(&row, &t).unwrap(),
            vec![
                ColumnValue::Text(bytes::Bytes::from_static(b"z")),
                ColumnValue::Text(bytes::Bytes::from_static(b"x"))
            ]
        );
        let bad = tuple(&[
            ColumnRef::UnchangedToast,
            ColumnRef::Null,
            ColumnRef::Text(b"z"),
        ]);
        assert!(key_of(&bad, &t).is_err());
        let mut a = Vec::new();
        let mut b = Vec::new();
        key_bytes(&mut a, &[ColumnValue::Null]);
        key_bytes(&mut b, &[ColumnValue::Text(bytes::Bytes::new())]);
        assert_ne!(a, b);
    }

    #[test]
    fn with_key_fills_an_unchanged_key_column() {
        let t = table();
        let img = Image::Row(tuple(&[
            ColumnRef::Text(b"a"),
            ColumnRef::UnchangedToast,
            ColumnRef::Null,
        ]));
        let key = vec![ColumnValue::Text(bytes::Bytes::from_static(b"7"))];
        let img = img.with_key(&t, &key);
        assert_eq!(img.columns().nth(1), Some(ColumnRef::Text(b"7")));
        assert!(check_width(&tuple(&[ColumnRef::Null]), &t).is_err());
    }
}
