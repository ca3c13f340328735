//! The manifest: a deleted segment is noticed at open, and a compaction that crashed
//! between rewriting the manifest and unlinking is finished, not read twice.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::path::PathBuf;

use pyactors_core::format::MANIFEST_FILE;
use pyactors_core::{CoreError, Log, Options, RecoveryMode};

mod common;
use common::{segments, small};

fn tolerant() -> Options {
    Options { recovery: RecoveryMode::TolerateAnyCorruption, ..small() }
}

/// A store of 200 records in stream "a" over several 4 KiB segments.
fn store() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("manifest").tempdir().expect("tempdir");
    let log = Log::open(d.path(), small()).expect("open");
    for i in 0..200u64 {
        log.append("a", 2, format!("record {i} and some text to fill the segment").as_bytes()).expect("append");
    }
    assert!(segments(d.path()).len() >= 4);
    d
}

#[test]
fn a_deleted_sealed_segment_is_corrupt_at_open_and_tolerant_open_reports_it_once() {
    let d = store();
    let gone = segments(d.path())[1].clone();
    std::fs::remove_file(&gone).unwrap();
    match Log::open(d.path(), small()) {
        Err(CoreError::Corrupt { path, offset, reason }) => {
            assert_eq!(path, gone);
            assert_eq!(offset, 0);
            assert!(reason.contains("sealed segment listed in MANIFEST is missing"), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a deleted sealed segment went unnoticed"),
    }
    let log = Log::open(d.path(), tolerant()).expect("tolerant open");
    let damaged = &log.open_report().damaged;
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].path, gone);
    let left = log.read("a", 0, None).expect("read");
    assert!(left.len() < 200 && !left.is_empty(), "the other segments still read");
    drop(log);
    // The tolerant open recorded the loss: a strict open now succeeds.
    let log = Log::open(d.path(), small()).expect("strict reopen");
    assert!(log.open_report().damaged.is_empty());
}

#[test]
fn a_deleted_active_segment_is_corrupt_and_tolerant_open_continues_in_a_new_one() {
    let d = store();
    let segs = segments(d.path());
    let active = segs.last().unwrap().clone();
    std::fs::remove_file(&active).unwrap();
    match Log::open(d.path(), small()) {
        Err(CoreError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, active);
            assert!(reason.contains("the active segment listed in MANIFEST is missing"), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a deleted active segment went unnoticed"),
    }
    let log = Log::open(d.path(), tolerant()).expect("tolerant open");
    let last = log.last_seq("a").expect("seq");
    assert!(last > 0 && last < 200, "the sealed records remain: {last}");
    assert_eq!(log.append("a", 2, b"after").expect("append").0, last + 1);
    drop(log);
    let log = Log::open(d.path(), small()).expect("strict reopen");
    assert_eq!(log.read("a", last, None).expect("read")[0].payload, b"after");
}

#[test]
fn a_segment_the_manifest_dropped_is_removed_at_open_not_read_twice() {
    let d = tempfile::Builder::new().prefix("manifest").tempdir().expect("tempdir");
    let log = Log::open(d.path(), small()).expect("open");
    for i in 0..200u64 {
        for stream in ["a", "b"] {
            log.append(stream, 2, format!("{stream} {i} and some text to fill the segment").as_bytes())
                .expect("append");
        }
    }
    log.prune("a", 2, 20).expect("prune");
    let before: Vec<PathBuf> = segments(d.path());
    let saved: Vec<(PathBuf, Vec<u8>)> = before.iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect();
    let report = log.compact(0.4).expect("compact");
    assert!(report.segments_removed > 0 && report.records_copied > 0);
    drop(log);
    // A crash after the manifest was rewritten but before the unlink leaves the old
    // segment behind: put it back.
    let (path, bytes) = saved.iter().find(|(p, _)| !p.exists()).expect("a removed segment");
    std::fs::write(path, bytes).unwrap();
    let log = Log::open(d.path(), small()).expect("open");
    assert!(!path.exists(), "open finished the compaction");
    let seqs: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (181..=200).collect::<Vec<_>>(), "each live record once");
    let seqs: Vec<u64> = log.read("b", 0, None).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "each copied-forward record once");
}

#[test]
fn a_damaged_or_missing_manifest_is_rewritten_and_reported() {
    let d = store();
    let m = d.path().join(MANIFEST_FILE);
    let good = std::fs::read(&m).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 1;
    std::fs::write(&m, &bad).unwrap();
    let log = Log::open(d.path(), small()).expect("open");
    assert_eq!(log.open_report().rebuilt_indexes, vec![m.clone()]);
    assert_eq!(log.read("a", 0, None).expect("read").len(), 200);
    drop(log);
    assert_eq!(std::fs::read(&m).unwrap(), good, "rewritten from the segments");
    std::fs::remove_file(&m).unwrap();
    drop(Log::open(d.path(), small()).expect("open without a manifest"));
    assert_eq!(std::fs::read(&m).unwrap(), good);
}
