//! Read-only opens: no lock, no writes (not even repairs), beside a live writer.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::collections::BTreeMap;
use std::path::Path;

use pyactors_core::{CoreError, Log, Options};

mod common;
use common::small;

fn read_only() -> Options {
    Options { read_only: true, ..small() }
}

/// Every file of `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().into_string().expect("name"), std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

#[test]
fn a_read_only_open_works_beside_the_writer_and_sees_the_store_as_of_open() {
    let d = tempfile::tempdir().expect("tempdir");
    let writer = Log::open(d.path(), small()).expect("open");
    for i in 0..100u64 {
        writer
            .append("a", 2, format!("record {i} with text to roll segments now and then").as_bytes())
            .expect("append");
    }
    let reader = Log::open(d.path(), read_only()).expect("read-only open beside the writer");
    writer.append("a", 2, b"after the reader opened").expect("append");
    let seen = reader.read("a", 0, None).expect("read");
    assert_eq!(seen.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
    assert_eq!(reader.latest("a", 2).expect("latest").expect("some").seq, 100);
    assert!(reader.verify().expect("verify").damaged.is_empty());
    for refused in [
        reader.append("a", 2, b"x").map(|_| ()),
        reader.prune("a", 2, 1).map(|_| ()),
        reader.delete_stream("a").map(|_| ()),
        reader.compact(0.0).map(|_| ()),
    ] {
        match refused {
            Err(CoreError::InvalidArgument(m)) => assert!(m.contains("is open read-only"), "{m}"),
            other => panic!("a write on a read-only log: {other:?}"),
        }
    }
    reader.flush().expect("flush has nothing to do");
    reader.close().expect("close");
    assert_eq!(writer.read("a", 0, None).expect("read").len(), 101, "the writer never noticed the reader");
}

#[test]
fn a_read_only_open_repairs_nothing_on_disk_but_reports_what_it_would() {
    let d = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(d.path(), small()).expect("open");
        for i in 0..100u64 {
            log.append("a", 2, format!("record {i} with text to roll segments now and then").as_bytes()).expect("a");
        }
    }
    // A torn tail, a lost index and a leftover temporary file.
    let mut segs: Vec<_> = files(d.path()).into_keys().filter(|n| n.ends_with(".seg")).collect();
    segs.sort();
    let active = d.path().join(segs.last().unwrap());
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.extend_from_slice(&[7u8; 30]);
    std::fs::write(&active, &bytes).unwrap();
    std::fs::remove_file(d.path().join(segs[0].replace(".seg", ".idx"))).unwrap();
    std::fs::write(d.path().join("MANIFEST.tmp"), b"half written").unwrap();
    let before = files(d.path());

    let reader = Log::open(d.path(), read_only()).expect("read-only open");
    let report = reader.open_report();
    assert_eq!(report.truncated_bytes, 30);
    assert_eq!(report.rebuilt_indexes.len(), 1);
    assert_eq!(reader.read("a", 0, None).expect("read").len(), 100);
    drop(reader);
    assert_eq!(files(d.path()), before, "a read-only open writes nothing");

    let missing = d.path().join("no-such-store");
    assert!(matches!(Log::open(&missing, read_only()), Err(CoreError::Io { .. })));
    assert!(!missing.exists(), "nor creates the directory");
}
