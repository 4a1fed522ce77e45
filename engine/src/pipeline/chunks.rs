//! Splitting a table into ctid page ranges for the parallel snapshot (a pure function).
//!
//! A chunk is `ctid >= '(start,0)' AND ctid < '(end,0)'`, which PostgreSQL 14+ answers with a
//! TID range scan reading only those pages. Chunks cover the table from page 0 with no gaps,
//! and the **last one has no upper bound**: the page count comes from `pg_relation_size` when
//! the plan is made, and a table that grows afterwards (or whose size was read before the
//! snapshot's rows reached new pages) must not lose rows past the planned end.
//!
//! Sizing: about `chunk_pages` pages per chunk, so one chunk's COPY is bounded work that can
//! be recorded as done and skipped on resume; and, for a table big enough to be worth
//! splitting (`MIN_SPLIT_PAGES` per chunk), `CHUNKS_PER_READER` chunks per reader, so a single
//! large table keeps every reader busy and the readers, taking the biggest chunks first, end
//! within a small chunk of each other. Small tables are one chunk. Extra chunks cost little:
//! a reader's batches to the nodes run across chunk boundaries, and a chunk is recorded done
//! without stopping the reader.

/// Pages below which a chunk is not split further for parallelism (1 MiB of 8 KiB pages).
pub const MIN_SPLIT_PAGES: u64 = 128;

/// Chunks per reader a large table is split into at least.
pub const CHUNKS_PER_READER: u64 = 4;

/// One chunk: pages `[start, end)`, or `[start, ∞)` when `end` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    /// First page.
    pub start: u64,
    /// Page after the last, `None` for "to the end of the table".
    pub end: Option<u64>,
}

impl PageRange {
    /// The `WHERE` condition selecting this range's rows.
    pub fn predicate(&self) -> String {
        match self.end {
            Some(end) => format!(
                "ctid >= '({},0)'::tid AND ctid < '({},0)'::tid",
                self.start, end
            ),
            None if self.start == 0 => "true".to_owned(),
            None => format!("ctid >= '({},0)'::tid", self.start),
        }
    }
}

/// Plans the chunks of a table of `pages` pages for `parallel` readers, aiming at
/// `chunk_pages` pages per chunk (at least 1).
pub fn plan_chunks(pages: u64, parallel: usize, chunk_pages: u64) -> Vec<PageRange> {
    let chunk_pages = chunk_pages.max(1);
    let by_size = pages.div_ceil(chunk_pages);
    let by_parallelism = (parallel as u64)
        .saturating_mul(CHUNKS_PER_READER)
        .min(pages / MIN_SPLIT_PAGES);
    let count = by_size.max(by_parallelism).max(1);
    let mut ranges = Vec::with_capacity(count as usize);
    for i in 0..count {
        // even split: chunk i covers [i*pages/count, (i+1)*pages/count)
        let start = i * pages / count;
        let end = (i + 1 < count).then(|| (i + 1) * pages / count);
        ranges.push(PageRange { start, end });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_tables_are_one_open_chunk() {
        assert_eq!(
            plan_chunks(0, 4, 1000),
            vec![PageRange {
                start: 0,
                end: None
            }]
        );
        assert_eq!(plan_chunks(100, 4, 1000).len(), 1);
        assert_eq!(plan_chunks(100, 4, 1000)[0].predicate(), "true");
    }

    #[test]
    fn medium_tables_split_for_parallelism() {
        // 4 readers: 16 chunks wanted, but no chunk below 128 pages: 7 chunks
        let r = plan_chunks(1000, 4, 100_000);
        assert_eq!(r.len(), 7);
        assert_eq!(
            r[0],
            PageRange {
                start: 0,
                end: Some(142)
            }
        );
        assert_eq!(
            r[6],
            PageRange {
                start: 857,
                end: None
            }
        );
        assert_eq!(
            r[1].predicate(),
            "ctid >= '(142,0)'::tid AND ctid < '(285,0)'::tid"
        );
        assert_eq!(r[6].predicate(), "ctid >= '(857,0)'::tid");
    }

    #[test]
    fn large_tables_get_chunks_per_reader() {
        // 3,300 pages (a 26 MB table) with 2 readers and 64 MiB chunks: 8 even chunks
        let r = plan_chunks(3300, 2, 8192);
        let bounds: Vec<(u64, Option<u64>)> = r.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(
            bounds,
            vec![
                (0, Some(412)),
                (412, Some(825)),
                (825, Some(1237)),
                (1237, Some(1650)),
                (1650, Some(2062)),
                (2062, Some(2475)),
                (2475, Some(2887)),
                (2887, None),
            ]
        );
        // one reader: 4 chunks
        let r = plan_chunks(3300, 1, 8192);
        let starts: Vec<u64> = r.iter().map(|c| c.start).collect();
        assert_eq!(starts, vec![0, 825, 1650, 2475]);
        assert_eq!(r[3].end, None);
    }

    #[test]
    fn large_tables_split_by_size() {
        let r = plan_chunks(10_000, 2, 1000);
        assert_eq!(r.len(), 10);
    }

    proptest! {
        #[test]
        fn chunks_cover_every_page_once(pages in 0u64..10_000_000, parallel in 1usize..64, chunk in 1u64..100_000) {
            let r = plan_chunks(pages, parallel, chunk);
            prop_assert!(!r.is_empty());
            prop_assert_eq!(r[0].start, 0);
            prop_assert_eq!(r.last().unwrap().end, None);
            for w in r.windows(2) {
                let end = w[0].end.unwrap();
                prop_assert_eq!(end, w[1].start);
                prop_assert!(w[0].start < end);
            }
            // no chunk (but the open one) is much larger than asked
            for c in &r[..r.len() - 1] {
                prop_assert!(c.end.unwrap() - c.start <= chunk.max(1));
            }
        }
    }
}
