//! Hostile files in the store directory: a zeroed active-segment header, a symlink in
//! place of a store file (also under the fault layer, which wraps `StdFs`), a deleted
//! LOCK file under a live writer.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use pyactors_core::format::SEGMENT_HEADER_LEN;
use pyactors_core::fs::{FileSystem, StdFs};
use pyactors_core::{CoreError, Log, Options, RecoveryMode};

mod common;
use common::{payload, segments, tmp};

fn tolerant() -> Options {
    Options { recovery: RecoveryMode::TolerateAnyCorruption, ..Options::default() }
}

#[test]
fn a_zeroed_active_header_with_records_after_it_is_damage_not_a_torn_creation() {
    let d = tmp("zeroheader");
    {
        let log = Log::open(d.path(), Options::default()).expect("open");
        for i in 0..300 {
            log.append("s", 1, &payload(i)).expect("append");
        }
    }
    let active = segments(d.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&active).expect("read");
    bytes[..SEGMENT_HEADER_LEN].fill(0);
    std::fs::write(&active, &bytes).expect("write");

    for opts in [Options::default(), Options { read_only: true, ..Options::default() }] {
        match Log::open(d.path(), opts) {
            Err(CoreError::Corrupt { path, offset: 0, reason }) => {
                assert_eq!(path, active);
                assert!(reason.contains("magic"), "{reason}");
            }
            Err(other) => panic!("expected Corrupt at offset 0, got {other:?}"),
            Ok(_) => panic!("expected Corrupt at offset 0, the store opened"),
        }
        assert_eq!(std::fs::read(&active).expect("read"), bytes, "a refused open changes nothing");
    }

    let view = Log::open(d.path(), Options { read_only: true, ..tolerant() }).expect("tolerant view");
    assert_eq!(view.read("s", 0, None).expect("read").len(), 300);
    let verified = view.verify().expect("verify");
    assert_eq!(verified.records, 300);
    assert_eq!(verified.damaged.iter().map(|d| (&d.path, d.offset)).collect::<Vec<_>>(), [(&active, 0)]);
    drop(view);

    let log = Log::open(d.path(), tolerant()).expect("tolerant open");
    let report = log.open_report();
    assert_eq!((report.dropped_records, report.truncated_bytes), (0, 0));
    assert_eq!(report.damaged.iter().map(|d| (&d.path, d.offset)).collect::<Vec<_>>(), [(&active, 0)]);
    assert_eq!(log.append("s", 1, b"after").expect("append").0, 301);
    drop(log);
    let log = Log::open(d.path(), Options::default()).expect("the header was written anew");
    assert!(log.verify().expect("verify").damaged.is_empty());
    assert_eq!(log.last_seq("s").expect("last_seq"), 301);
}

#[test]
fn store_files_are_opened_without_following_a_symlink_and_must_be_regular_files() {
    let d = tmp("nofollow");
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    for write in [false, true] {
        let err = StdFs.open(&link, write).err().expect("a symlink is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    assert!(StdFs.lock(&link).is_err(), "a symlinked LOCK file is refused");
    let err = StdFs.open(d.path(), false).err().expect("a directory is refused");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
}

#[cfg(feature = "fault-injection")]
#[test]
fn the_fault_layer_refuses_a_symlinked_active_segment_too() {
    use pyactors_core::fault::FaultFs;
    use std::sync::Arc;

    let d = tmp("faultlink");
    let dir = d.path().join("store");
    Log::open(&dir, Options::default()).expect("open").append("s", 1, b"x").expect("append");
    let active = segments(&dir).pop().expect("a segment");
    let victim = d.path().join("victim");
    std::fs::rename(&active, &victim).expect("move");
    std::os::unix::fs::symlink(&victim, &active).expect("symlink");
    let before = std::fs::read(&victim).expect("read");
    match Log::open_with(&dir, Options::default(), Arc::new(FaultFs::new())) {
        Err(CoreError::Io { path, .. }) => assert_eq!(path, active),
        Err(other) => panic!("expected Io, got {other:?}"),
        Ok(_) => panic!("expected Io, the store opened"),
    }
    assert_eq!(std::fs::read(&victim).expect("read"), before);
}

#[test]
fn a_deleted_lock_file_lets_no_second_writer_in() {
    let d = tmp("lockgone");
    let log = Log::open(d.path(), Options::default()).expect("open");
    log.append("s", 1, b"1").expect("append");
    std::fs::remove_file(d.path().join("LOCK")).expect("remove LOCK");
    assert!(matches!(Log::open(d.path(), Options::default()), Err(CoreError::Locked { .. })));
    assert_eq!(log.append("s", 1, b"2").expect("append").0, 2);
    drop(log);
    let log = Log::open(d.path(), Options::default()).expect("reopen");
    assert_eq!(log.last_seq("s").expect("last_seq"), 2);
}
