//! `append_many` is all or none across a crash too: a write cut anywhere leaves the
//! whole batch or none of it.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::path::{Path, PathBuf};

use pyactors_core::{Log, NewRecord, Options};

fn active_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn batch(stream: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (stream.to_owned(), format!("{stream} batch record {i}").into_bytes())).collect()
}

fn append_batch(log: &Log, items: &[(String, Vec<u8>)]) {
    let records: Vec<NewRecord<'_>> = items
        .iter()
        .map(|(s, p)| NewRecord { stream: s.as_str(), kind: 2, payload: p.as_slice(), compress: true })
        .collect();
    log.append_many(&records).expect("append_many");
}

#[test]
fn a_batch_cut_at_any_byte_is_dropped_whole_and_a_finished_one_kept_whole() {
    let d = tempfile::tempdir().expect("tempdir");
    let (before, after) = {
        let log = Log::open(d.path(), Options::default()).expect("open");
        for i in 0..5u64 {
            log.append("a", 2, format!("single {i}").as_bytes()).expect("append");
        }
        let before = std::fs::metadata(active_segment(d.path())).unwrap().len();
        append_batch(&log, &batch("a", 12));
        (before, std::fs::metadata(active_segment(d.path())).unwrap().len())
    };
    let seg = active_segment(d.path());
    let full = std::fs::read(&seg).unwrap();
    for cut in before..=after {
        std::fs::write(&seg, &full[..cut as usize]).unwrap();
        let log = Log::open(d.path(), Options::default()).expect("open after the cut");
        let seqs: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
        if cut == after {
            assert_eq!(seqs, (1..=17).collect::<Vec<_>>(), "the finished batch is whole");
            assert_eq!(log.open_report().dropped_records, 0);
        } else {
            assert_eq!(seqs, (1..=5).collect::<Vec<_>>(), "cut at {cut}: none of the batch");
            if cut > before {
                assert!(log.open_report().dropped_records >= 1, "cut at {cut} is reported");
            }
            assert_eq!(log.append("a", 2, b"next").expect("append").0, 6, "seqs continue after the dropped batch");
        }
    }
}

#[test]
fn a_cut_in_a_single_append_after_a_batch_keeps_the_batch() {
    let d = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(d.path(), Options::default()).expect("open");
        append_batch(&log, &batch("a", 8));
        log.append("a", 2, b"a single record after the batch").expect("append");
    }
    let seg = active_segment(d.path());
    let full = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &full[..full.len() - 3]).unwrap();
    let log = Log::open(d.path(), Options::default()).expect("open");
    assert_eq!(log.last_seq("a").expect("seq"), 8);
    assert_eq!(log.open_report().dropped_records, 1);
}

#[test]
fn batches_copied_forward_by_compaction_survive_reopen_and_verify_clean() {
    let d = tempfile::tempdir().expect("tempdir");
    let opts = Options { segment_bytes: 4096, ..Options::default() };
    {
        let log = Log::open(d.path(), opts.clone()).expect("open");
        for _ in 0..20 {
            // The live records are never last in their batch: each carries the mark.
            let mut items = batch("live", 3);
            items.extend(batch("dead", 3));
            append_batch(&log, &items);
        }
        // Roll, so the tombstone lands in a segment compaction leaves alone and the
        // copies are the last records of the store.
        let rolled = |log: &Log| log.stats().expect("stats").segments;
        let segments = rolled(&log);
        while rolled(&log) == segments {
            append_batch(&log, &batch("other", 2));
        }
        log.delete_stream("dead").expect("delete");
        assert!(log.compact(0.3).expect("compact").records_copied > 0);
    }
    let log = Log::open(d.path(), opts).expect("reopen");
    assert_eq!(log.read("live", 0, None).expect("read").len(), 60, "every copied record survives reopen");
    assert!(log.verify().expect("verify").damaged.is_empty());
}
