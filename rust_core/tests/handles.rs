//! Open segment files are bounded: the active segment and at most
//! `OPEN_SEALED_SEGMENTS` sealed ones, however many segments a log has, and a record
//! located before its file was evicted is still read from that file.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyactors_core::fs::{FileHandle, FileSystem, Handle, LockGuard, StdFs};
use pyactors_core::log::OPEN_SEALED_SEGMENTS;
use pyactors_core::Log;

mod common;
use common::{payload, segments, small, tmp};

/// The real file system, counting the segment files open right now.
#[derive(Default)]
struct Counting {
    open: Arc<AtomicUsize>,
}

/// A segment file, counted while it lives.
struct Counted {
    file: Handle,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FileHandle for Counted {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
}

impl Counting {
    fn count(&self, path: &Path, file: Handle) -> Handle {
        // A segment is created as `<name>.seg.tmp` and renamed: count both names.
        if path.to_string_lossy().contains(".seg") {
            self.open.fetch_add(1, Ordering::SeqCst);
            return Arc::new(Counted { file, open: Arc::clone(&self.open) });
        }
        file
    }

    fn open_now(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl FileSystem for Counting {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Handle> {
        Ok(self.count(path, StdFs.create(path)?))
    }
    fn open(&self, path: &Path, write: bool) -> io::Result<Handle> {
        Ok(self.count(path, StdFs.open(path, write)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        StdFs.lock(path)
    }
}

/// Stream `s{i / 30}`: each stream spans a few segments.
fn stream(i: u64) -> String {
    format!("s{}", i / 30)
}

#[test]
fn a_log_of_hundreds_of_segments_keeps_at_most_the_bound_open_and_reads_evicted_ones() {
    let d = tmp("handles");
    let fs = Arc::new(Counting::default());
    let log = Log::open_with(d.path(), small(), fs.clone()).expect("open");
    let bound = OPEN_SEALED_SEGMENTS + 1; // and the active segment
    for i in 0..6000 {
        log.append(&stream(i), 2, &payload(i)).expect("append");
        assert!(fs.open_now() <= bound, "{} segment files open after {i} appends", fs.open_now());
    }
    let segs = segments(d.path()).len();
    assert!(segs > 4 * OPEN_SEALED_SEGMENTS, "only {segs} segments");

    // Located before its segments are evicted: read from the files it holds.
    let held = log.locate("s0", 0, None, None).expect("locate");
    assert_eq!(held.len(), 30);
    let held_segs = {
        let mut s: Vec<u64> = held.iter().map(|at| at.loc.seg).collect();
        s.dedup();
        s.len()
    };
    for round in 0..2 {
        for i in (0..6000).step_by(30) {
            let records = log.read(&stream(i), 0, None).expect("read");
            let want: Vec<Vec<u8>> = (i..i + 30).map(payload).collect();
            assert_eq!(records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), want, "round {round}");
            assert!(fs.open_now() <= bound + held_segs, "{} segment files open", fs.open_now());
        }
    }
    let (records, error) = log.read_many("s0", &held);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(records.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), (0..30).map(payload).collect::<Vec<_>>());
    drop(held);
    assert!(fs.open_now() <= bound);

    log.close().expect("close");
    assert_eq!(fs.open_now(), 0, "close releases every segment file");
}
