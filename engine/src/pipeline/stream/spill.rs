//! Storage for streamed transactions until they commit or abort.
//!
//! With `streaming 'on'` (protocol 2+) the server sends a large transaction in segments while
//! it is still running; it may still abort, wholly or a subtransaction at a time. Nothing of it
//! may reach the target before its Stream Commit, so its change messages are kept here, as the
//! raw pgoutput frames, in arrival order: in memory while the total across open transactions
//! stays within the budget, then appended to one file per transaction in the spill directory.
//!
//! A subtransaction abort (Stream Abort with `subxid != xid`) discards everything from the
//! subtransaction's first change on, exactly as PostgreSQL's own apply worker truncates its
//! spool file: while a subtransaction is open its parent makes no changes, and its children's
//! changes come after its first one, so the tail from that point belongs to it.
//!
//! Records are `u32` length + frame. Reading back yields the frames in order, memory-bounded
//! (one record at a time from the file, then the in-memory tail).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::super::error::PipelineError;

/// One open streamed transaction.
#[derive(Debug)]
struct SpillTxn {
    memory: Vec<u8>,
    file: Option<(PathBuf, u64)>,
    /// Subtransactions in order of their first change, with that change's offset.
    subxacts: Vec<(u32, u64)>,
}

impl SpillTxn {
    fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, |(_, l)| *l) + self.memory.len() as u64
    }
}

/// Every open streamed transaction.
#[derive(Debug)]
pub struct SpillStore {
    dir: PathBuf,
    budget: u64,
    in_memory: u64,
    spilled_bytes: u64,
    txns: HashMap<u32, SpillTxn>,
}

/// Creates the spill directory (and its parents) readable by this user only: spill files
/// hold row data. An existing directory keeps the mode the operator gave it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Spill {
        path: path.display().to_string(),
        source,
    }
}

impl SpillStore {
    /// A store spilling to `dir` beyond `budget` bytes in memory. Leftover spill files of an
    /// earlier run (useless: its transactions are streamed again) are removed.
    pub fn new(dir: PathBuf, budget: u64) -> SpillStore {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "spill") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        SpillStore {
            dir,
            budget,
            in_memory: 0,
            spilled_bytes: 0,
            txns: HashMap::new(),
        }
    }

    /// Bytes held in memory now.
    #[cfg(test)]
    pub fn in_memory(&self) -> u64 {
        self.in_memory
    }

    /// Bytes written to spill files so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    /// Appends a change frame of transaction `xid`, made by (sub)transaction `change_xid`.
    pub fn append(&mut self, xid: u32, change_xid: u32, frame: &[u8]) -> Result<(), PipelineError> {
        let txn = self.txns.entry(xid).or_insert_with(|| SpillTxn {
            memory: Vec::new(),
            file: None,
            subxacts: Vec::new(),
        });
        if change_xid != xid && !txn.subxacts.iter().any(|(s, _)| *s == change_xid) {
            let at = txn.len();
            txn.subxacts.push((change_xid, at));
        }
        let len = u32::try_from(frame.len()).map_err(|_| {
            PipelineError::Unsupported("a replication message larger than 4 GiB".into())
        })?;
        txn.memory.extend_from_slice(&len.to_be_bytes());
        txn.memory.extend_from_slice(frame);
        self.in_memory += 4 + frame.len() as u64;
        if self.in_memory > self.budget {
            self.spill_largest()?;
        }
        Ok(())
    }

    /// Writes in-memory parts to files, largest first, until half the budget is free.
    fn spill_largest(&mut self) -> Result<(), PipelineError> {
        let mut order: Vec<(u32, usize)> = self
            .txns
            .iter()
            .map(|(x, t)| (*x, t.memory.len()))
            .collect();
        order.sort_by_key(|o| std::cmp::Reverse(o.1));
        for (xid, _) in order {
            if self.in_memory <= self.budget / 2 {
                break;
            }
            let dir = self.dir.clone();
            let Some(txn) = self.txns.get_mut(&xid) else {
                continue;
            };
            if txn.memory.is_empty() {
                continue;
            }
            let (path, len) = match &txn.file {
                Some((p, l)) => (p.clone(), *l),
                None => {
                    private_dir(&dir).map_err(io_err(&dir))?;
                    let p = dir.join(format!("xid-{xid}-{}.spill", std::process::id()));
                    (p, 0)
                }
            };
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(&path).map_err(io_err(&path))?;
            let mut w = BufWriter::new(file);
            w.write_all(&txn.memory).map_err(io_err(&path))?;
            w.flush().map_err(io_err(&path))?;
            let written = txn.memory.len() as u64;
            self.in_memory -= written;
            self.spilled_bytes += written;
            txn.file = Some((path, len + written));
            txn.memory = Vec::new();
        }
        Ok(())
    }

    /// Discards a whole transaction (Stream Abort of the top-level xid).
    pub fn abort(&mut self, xid: u32) {
        if let Some(txn) = self.txns.remove(&xid) {
            self.in_memory -= txn.memory.len() as u64;
            if let Some((path, _)) = txn.file {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Discards subtransaction `subxid` of `xid` and everything after its first change.
    pub fn abort_subxact(&mut self, xid: u32, subxid: u32) -> Result<(), PipelineError> {
        let Some(txn) = self.txns.get_mut(&xid) else {
            return Ok(());
        };
        let Some(pos) = txn.subxacts.iter().position(|(s, _)| *s == subxid) else {
            return Ok(()); // it made no changes
        };
        let offset = txn.subxacts[pos].1;
        txn.subxacts.truncate(pos);
        let file_len = txn.file.as_ref().map_or(0, |(_, l)| *l);
        if offset >= file_len {
            let keep = (offset - file_len) as usize;
            let dropped = txn.memory.len().saturating_sub(keep);
            txn.memory.truncate(keep);
            self.in_memory -= dropped as u64;
        } else {
            self.in_memory -= txn.memory.len() as u64;
            txn.memory = Vec::new();
            if let Some((path, len)) = &mut txn.file {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&*path)
                    .map_err(io_err(path))?;
                f.set_len(offset).map_err(io_err(path))?;
                *len = offset;
            }
        }
        Ok(())
    }

    /// Takes a committed transaction out of the store, for reading back.
    pub fn take(&mut self, xid: u32) -> Result<SpillReader, PipelineError> {
        let Some(txn) = self.txns.remove(&xid) else {
            return Ok(SpillReader::empty());
        };
        self.in_memory -= txn.memory.len() as u64;
        let file = match txn.file {
            Some((path, len)) => {
                let mut f = File::open(&path).map_err(io_err(&path))?;
                f.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
                Some((BufReader::with_capacity(256 * 1024, f), path, len))
            }
            None => None,
        };
        Ok(SpillReader {
            file,
            read: 0,
            memory: Bytes::from(txn.memory),
            pos: 0,
        })
    }

    /// Whether `xid` has stored changes.
    #[cfg(test)]
    pub fn contains(&self, xid: u32) -> bool {
        self.txns.contains_key(&xid)
    }
}

impl Drop for SpillStore {
    fn drop(&mut self) {
        for (_, txn) in self.txns.drain() {
            if let Some((path, _)) = txn.file {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The frames of a committed transaction, in order; removes its file when dropped.
#[derive(Debug)]
pub struct SpillReader {
    file: Option<(BufReader<File>, PathBuf, u64)>,
    read: u64,
    memory: Bytes,
    pos: usize,
}

impl SpillReader {
    fn empty() -> SpillReader {
        SpillReader {
            file: None,
            read: 0,
            memory: Bytes::new(),
            pos: 0,
        }
    }

    /// The next frame, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, PipelineError> {
        if let Some((reader, path, len)) = &mut self.file
            && self.read < *len
        {
            let mut head = [0u8; 4];
            reader.read_exact(&mut head).map_err(io_err(path))?;
            let n = u32::from_be_bytes(head) as usize;
            let mut frame = vec![0u8; n];
            reader.read_exact(&mut frame).map_err(io_err(path))?;
            self.read += 4 + n as u64;
            return Ok(Some(Bytes::from(frame)));
        }
        let rest = self.memory.len() - self.pos;
        if rest == 0 {
            return Ok(None);
        }
        let bad = || PipelineError::Internal("truncated in-memory spill record".into());
        let head = self.memory.get(self.pos..self.pos + 4).ok_or_else(bad)?;
        let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let start = self.pos + 4;
        if self.memory.len() - start < n {
            return Err(bad());
        }
        self.pos = start + n;
        Ok(Some(self.memory.slice(start..start + n)))
    }
}

impl Drop for SpillReader {
    fn drop(&mut self) {
        if let Some((_, path, _)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut SpillReader) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = reader.next_frame().unwrap() {
            out.push(f.to_vec());
        }
        out
    }

    #[test]
    fn keeps_frames_in_order_across_memory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SpillStore::new(dir.path().to_path_buf(), 64);
        for i in 0..50u8 {
            store.append(7, 7, &[i; 10]).unwrap();
        }
        assert!(store.in_memory() <= 64);
        assert!(store.spilled_bytes() > 0);
        let mut r = store.take(7).unwrap();
        let got = frames(&mut r);
        assert_eq!(got.len(), 50);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f, &vec![i as u8; 10]);
        }
        drop(r);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn subtransaction_abort_discards_its_tail_in_memory_and_on_disk() {
        for budget in [1_000_000u64, 16, 4] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = SpillStore::new(dir.path().to_path_buf(), budget);
            store.append(1, 1, b"a").unwrap();
            store.append(1, 2, b"b").unwrap(); // subxact 2 starts
            store.append(1, 3, b"c").unwrap(); // nested subxact 3
            store.abort_subxact(1, 3).unwrap(); // ROLLBACK TO the savepoint of 3: c goes
            store.append(1, 2, b"d").unwrap(); // 2 goes on
            store.append(1, 1, b"e").unwrap(); // 2 released; the parent goes on
            store.abort_subxact(1, 9).unwrap(); // no changes: nothing happens
            let mut r = store.take(1).unwrap();
            assert_eq!(
                frames(&mut r),
                vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec(), b"e".to_vec()],
                "budget {budget}"
            );
        }
    }

    #[test]
    fn abort_discards_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SpillStore::new(dir.path().to_path_buf(), 8);
        for _ in 0..10 {
            store.append(5, 5, b"xxxxxxxx").unwrap();
        }
        store.abort(5);
        assert_eq!(store.in_memory(), 0);
        assert!(!store.contains(5));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut r = store.take(5).unwrap();
        assert!(r.next_frame().unwrap().is_none());
    }
}
