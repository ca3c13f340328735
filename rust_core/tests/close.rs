//! `close()` releases the store's files at once, whoever still holds the log.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::path::Path;

use pyactors_core::{CoreError, Log, Options};

/// This process's open descriptors on files under `dir`.
fn open_files_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

#[test]
fn close_releases_every_file_descriptor_and_later_calls_fail_cleanly() {
    let d = tempfile::tempdir().expect("tempdir");
    let log = Log::open(d.path(), Options { segment_bytes: 4096, ..Options::default() }).expect("open");
    for i in 0..200u64 {
        log.append("a", 2, format!("record {i} with text to roll segments now and then").as_bytes()).expect("append");
    }
    assert_eq!(log.read("a", 0, None).expect("read").len(), 200); // opens the sealed segments
    assert!(open_files_under(d.path()) > 2);
    log.close().expect("close");
    assert_eq!(open_files_under(d.path()), 0, "close releases the segments and the lock file");
    assert!(matches!(log.append("a", 2, b"late"), Err(CoreError::Closed)));
    assert!(matches!(log.read("a", 0, None), Err(CoreError::Closed)));
    drop(log);
    let again = Log::open(d.path(), Options::default()).expect("reopen");
    assert_eq!(again.last_seq("a").expect("seq"), 200);
}
