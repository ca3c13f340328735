//! Read-only opens: no lock, no writes (not even repairs), beside a live writer.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::collections::BTreeMap;
use std::path::Path;

use pyactors_core::{CoreError, Log, Options};

mod common;
use common::{payload, small, tmp};

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

/// Issue 14, item 5: a writer that prunes and compacts all the time, and read-only views
/// opened, verified and read beside it. A view sees one consistent set of files: its
/// open retries when a compaction removed a file it listed, it holds the sealed segments
/// (and their index files) it opened, and its verify skips a segment compacted away
/// since. No view may fail, report damage, or miss a record its own index lists.
#[test]
fn views_beside_a_compacting_writer_see_one_consistent_store_and_no_false_damage() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    let d = tmp("views-compacting");
    let dir = d.path().to_owned();
    let writer = Log::open(&dir, small()).expect("open");
    writer.append("s0", 2, b"first").expect("append");
    let stop = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicU32::new(0));
    let background = {
        let (stop, compactions) = (Arc::clone(&stop), Arc::clone(&compactions));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writer.append(&format!("s{}", i % 5), 2, &payload(i)).expect("append");
                i += 1;
                if i.is_multiple_of(200) {
                    for s in 0..5 {
                        writer.prune(&format!("s{s}"), 2, 10).expect("prune");
                    }
                    writer.compact(0.1).expect("compact");
                    compactions.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut views = 0;
    while views < 300 || compactions.load(Ordering::Relaxed) < 100 {
        let view = Log::open(&dir, read_only()).expect("a view opens beside a compacting writer");
        let report = view.verify().expect("a view verifies beside a compacting writer");
        assert!(report.damaged.is_empty(), "false damage: {:?}", report.damaged);
        for stream in view.streams().expect("streams") {
            let records = view.read(&stream, 0, None).expect("a view reads what its index lists");
            assert!(records.windows(2).all(|w| w[0].seq < w[1].seq), "seqs of {stream} not rising");
        }
        views += 1;
    }
    stop.store(true, Ordering::Relaxed);
    background.join().expect("writer thread");
}
