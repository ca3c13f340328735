//! Integration tests of the segment log through its public API, on real files.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyactors_core::format::{segment_name, MAC_LEN, SEGMENT_HEADER_LEN};
use pyactors_core::{CoreError, Durability, Log, NewRecord, Options, RecoveryMode, TryAppend};

mod common;
use common::{payload, segments, small, tmp};

fn fill(log: &Log, stream: &str, n: u64) {
    for i in 0..n {
        log.append(stream, 2, &payload(i)).expect("append");
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").metadata().expect("meta").len()).sum()
}

#[test]
fn segments_roll_and_everything_reads_back_after_reopen() {
    let d = tmp("roll");
    {
        let log = Log::open(d.path(), small()).expect("open");
        fill(&log, "a", 300);
        fill(&log, "b", 50);
    }
    assert!(segments(d.path()).len() > 3, "small segments roll");
    let log = Log::open(d.path(), small()).expect("reopen");
    let a = log.read("a", 0, None).expect("read");
    assert_eq!(a.len(), 300);
    for (i, r) in a.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.payload, payload(i as u64));
    }
    assert_eq!(log.read("a", 290, None).expect("read").len(), 10);
    assert_eq!(log.last_seq("b").expect("seq"), 50);
    assert_eq!(log.append("a", 2, b"next").expect("append").0, 301);
    assert!(log.verify().expect("verify").damaged.is_empty());
}

#[test]
fn latest_follows_the_newest_record_of_each_kind_across_segments() {
    let d = tmp("latest");
    let log = Log::open(d.path(), small()).expect("open");
    for i in 0..100u64 {
        log.append("s", 2, &payload(i)).expect("msg");
        if i % 10 == 0 {
            log.append("s", 1, format!("snap {i}").as_bytes()).expect("snap");
        }
    }
    drop(log);
    let log = Log::open(d.path(), small()).expect("reopen");
    let snap = log.latest("s", 1).expect("latest").expect("some");
    assert_eq!(snap.payload, b"snap 90");
    assert_eq!(log.latest("s", 3).expect("latest"), None);
    assert_eq!(log.latest("nope", 1).expect("latest"), None);
}

#[test]
fn a_damaged_sealed_record_is_not_read_at_open_but_found_by_verify_and_read() {
    let d = tmp("sealeddamage");
    {
        let log = Log::open(d.path(), small()).expect("open");
        fill(&log, "a", 200);
    }
    let first = &segments(d.path())[0];
    let mut bytes = std::fs::read(first).expect("read");
    let at = SEGMENT_HEADER_LEN + 60;
    bytes[at] ^= 0xff;
    std::fs::write(first, &bytes).expect("write");
    let log = Log::open(d.path(), small()).expect("open does not scan sealed data");
    let report = log.verify().expect("verify");
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(&report.damaged[0].path, first);
    assert_eq!(report.damaged[0].offset, SEGMENT_HEADER_LEN as u64);
    match log.read("a", 0, None) {
        Err(CoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(&path, first);
            assert_eq!(offset, SEGMENT_HEADER_LEN as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn torn_tail_is_truncated_and_reported_at_every_cut() {
    let d = tmp("torn");
    let seg = d.path().join(segment_name(0));
    let last_start = {
        let log = Log::open(d.path(), Options::default()).expect("open");
        fill(&log, "a", 4);
        let before_last = std::fs::metadata(&seg).expect("meta").len() as usize;
        log.append("a", 2, &payload(4)).expect("append");
        before_last
    };
    let full = std::fs::read(&seg).expect("read");
    for cut in (last_start + 1..full.len()).step_by(7) {
        std::fs::write(&seg, &full[..cut]).expect("write");
        let log = Log::open(d.path(), Options::default()).expect("reopen");
        let r = log.open_report();
        assert_eq!(r.truncated_bytes, (cut - last_start) as u64);
        assert_eq!(r.dropped_records, 1);
        assert_eq!(log.read("a", 0, None).expect("read").len(), 4);
        assert_eq!(log.append("a", 2, b"again").expect("append").0, 5);
        drop(log);
        let log = Log::open(d.path(), Options::default()).expect("reopen again");
        assert_eq!(log.open_report().truncated_bytes, 0);
        assert_eq!(log.read("a", 0, None).expect("read").len(), 5);
        drop(log);
    }
}

#[test]
fn damage_before_valid_records_in_the_active_segment_is_an_error_unless_tolerant() {
    let d = tmp("activedamage");
    {
        let log = Log::open(d.path(), Options::default()).expect("open");
        fill(&log, "a", 5);
    }
    let seg = d.path().join(segment_name(0));
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[SEGMENT_HEADER_LEN + 50] ^= 0x01;
    std::fs::write(&seg, &bytes).expect("write");
    match Log::open(d.path(), Options::default()) {
        Err(CoreError::Corrupt { offset, .. }) => assert_eq!(offset, SEGMENT_HEADER_LEN as u64),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, the store opened"),
    }
    let tolerant = Options { recovery: RecoveryMode::TolerateAnyCorruption, ..Options::default() };
    let log = Log::open(d.path(), tolerant).expect("tolerant open");
    assert_eq!(log.open_report().damaged.len(), 1);
    let seqs: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5]);
}

#[test]
fn a_future_format_version_is_refused() {
    let d = tmp("version");
    drop(Log::open(d.path(), Options::default()).expect("open"));
    let seg = d.path().join(segment_name(0));
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[8] = 2;
    std::fs::write(&seg, &bytes).expect("write");
    assert!(matches!(
        Log::open(d.path(), Options::default()),
        Err(CoreError::FormatVersion { found: 2, supported: 1, .. })
    ));
}

#[test]
fn a_second_writer_is_refused_until_the_first_closes() {
    let d = tmp("lock");
    let log = Log::open(d.path(), Options::default()).expect("open");
    // The refusal names the holder, as it wrote its id into LOCK.
    let holder = Some(std::process::id());
    assert!(matches!(Log::open(d.path(), Options::default()), Err(CoreError::Locked { holder: h, .. }) if h == holder));
    log.close().expect("close");
    assert!(matches!(log.append("a", 2, b"x"), Err(CoreError::Closed)));
    Log::open(d.path(), Options::default()).expect("reopen after close");
}

#[test]
fn missing_and_damaged_index_files_are_rebuilt() {
    let d = tmp("idx");
    {
        let log = Log::open(d.path(), small()).expect("open");
        fill(&log, "a", 300);
    }
    let idx: Vec<PathBuf> = segments(d.path()).iter().map(|s| s.with_extension("idx")).filter(|p| p.exists()).collect();
    assert!(idx.len() >= 2);
    std::fs::remove_file(&idx[0]).expect("rm");
    let mut bytes = std::fs::read(&idx[1]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&idx[1], &bytes).expect("write");
    let log = Log::open(d.path(), small()).expect("open");
    assert!(log.open_report().rebuilt_indexes.contains(&idx[0]));
    assert_eq!(log.read("a", 0, None).expect("read").len(), 300, "entries block damage is rebuilt on read");
    drop(log);
    let log = Log::open(d.path(), small()).expect("open");
    assert!(log.verify().expect("verify").damaged.is_empty());
}

#[test]
fn prune_and_delete_write_tombstones_that_survive_reopen() {
    let d = tmp("tomb");
    let log = Log::open(d.path(), small()).expect("open");
    for i in 0..10u64 {
        log.append("s", 1, format!("snap {i}").as_bytes()).expect("snap");
        log.append("s", 2, &payload(i)).expect("msg");
    }
    fill(&log, "other", 5);
    assert_eq!(log.prune("s", 1, 3).expect("prune"), 7);
    assert_eq!(log.prune("s", 1, 3).expect("prune again"), 0);
    let kinds = log.verify().expect("verify").kinds;
    let snaps = kinds.iter().find(|k| k.stream == "s" && k.kind == 1).expect("snapshot stats");
    assert_eq!((snaps.live, snaps.dead), (3, 7));
    assert_eq!(snaps.raw_bytes, 3 * 6, "raw bytes of the live ones: 'snap 7', 'snap 8', 'snap 9'");
    drop(log);
    let log = Log::open(d.path(), small()).expect("reopen");
    let snaps = log.read("s", 0, Some(&[1])).expect("read");
    assert_eq!(
        snaps.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        vec![b"snap 7".to_vec(), b"snap 8".to_vec(), b"snap 9".to_vec()]
    );
    assert_eq!(log.read("s", 0, Some(&[2])).expect("read").len(), 10);
    assert_eq!(log.delete_stream("s").expect("delete"), 13);
    assert_eq!(log.delete_stream("s").expect("delete again"), 0);
    assert_eq!(log.streams().expect("streams"), vec!["other".to_string()]);
    drop(log);
    let log = Log::open(d.path(), small()).expect("reopen");
    assert!(log.read("s", 0, None).expect("read").is_empty());
    assert_eq!(log.latest("s", 1).expect("latest"), None);
    assert_eq!(log.append("s", 2, b"after").expect("append").0, 21, "seqs are not reused");
}

#[test]
fn compaction_reclaims_space_and_keeps_live_data_across_reopen() {
    let d = tmp("compact");
    let log = Log::open(d.path(), small()).expect("open");
    fill(&log, "dead", 400);
    fill(&log, "live", 40);
    log.append("live", 1, b"the snapshot").expect("snap");
    assert_eq!(log.delete_stream("dead").expect("delete"), 400);
    let before = disk_bytes(d.path());
    let report = log.compact(0.5).expect("compact");
    assert!(report.segments_removed > 0);
    assert!(report.bytes_after < report.bytes_before);
    let after = disk_bytes(d.path());
    assert!(after < before / 2, "bytes on disk went down: {before} -> {after}");
    let check = |log: &Log| {
        let live = log.read("live", 0, Some(&[2])).expect("read");
        assert_eq!(live.len(), 40);
        assert_eq!(live.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
        assert_eq!(live[0].payload, payload(0));
        assert_eq!(log.latest("live", 1).expect("latest").expect("some").payload, b"the snapshot");
        assert!(log.read("dead", 0, None).expect("read").is_empty());
        assert_eq!(log.last_seq("dead").expect("seq"), 400);
    };
    check(&log);
    drop(log);
    let log = Log::open(d.path(), small()).expect("reopen");
    check(&log);
    assert!(log.verify().expect("verify").damaged.is_empty());
}

#[test]
fn batched_append_is_one_write_with_consecutive_seqs() {
    let d = tmp("batch");
    let log = Log::open(d.path(), Options::default()).expect("open");
    let p = payload(1);
    let batch: Vec<NewRecord<'_>> = (0..10)
        .map(|i| NewRecord { stream: if i % 2 == 0 { "x" } else { "y" }, kind: 2, payload: &p, compress: true })
        .collect();
    let out = log.append_many(&batch).expect("append");
    let seqs: Vec<u64> = out.iter().map(|o| o.0).collect();
    assert_eq!(seqs, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    let bad = [
        NewRecord { stream: "x", kind: 2, payload: b"ok", compress: true },
        NewRecord { stream: "", kind: 2, payload: b"bad", compress: true },
    ];
    assert!(matches!(log.append_many(&bad), Err(CoreError::InvalidArgument(_))));
    assert_eq!(log.last_seq("x").expect("seq"), 5, "all or nothing");
}

#[test]
fn sync_appends_from_many_threads_share_fdatasyncs_and_stay_gap_free() {
    let d = tmp("sync");
    let log =
        Arc::new(Log::open(d.path(), Options { durability: Durability::Sync, ..Options::default() }).expect("open"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    log.append("shared", 2, &payload(i)).expect("append");
                    log.append(&format!("own-{t}"), 2, &payload(i)).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let seqs: Vec<u64> = log.read("shared", 0, None).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    let stats = log.stats().expect("stats");
    assert!(stats.syncs >= 1 && stats.syncs <= 800, "syncs: {}", stats.syncs);
}

#[test]
fn invalid_arguments_write_nothing() {
    let d = tmp("args");
    let log = Log::open(d.path(), Options::default()).expect("open");
    assert!(matches!(log.append("", 2, b"x"), Err(CoreError::InvalidArgument(_))));
    assert!(matches!(log.append(&"s".repeat(256), 2, b"x"), Err(CoreError::InvalidArgument(_))));
    assert!(matches!(log.append("s", 0, b"x"), Err(CoreError::InvalidArgument(_))));
    assert!(matches!(log.append("s", 4, b"x"), Err(CoreError::InvalidArgument(_))));
    for reserved in [7, 64, 127] {
        assert!(matches!(log.append("s", reserved, b"x"), Err(CoreError::InvalidArgument(_))));
    }
    assert!(log.append("s", 128, b"user").is_ok());
    assert!(log.append("s", 6, b"told").is_ok());
    log.delete_stream("s").expect("delete");
    assert!(log.streams().expect("streams").is_empty());
    assert!(matches!(
        Log::open(d.path().join("x"), Options { segment_bytes: 10, ..Options::default() }),
        Err(CoreError::InvalidArgument(_))
    ));
}

#[test]
fn reads_running_during_compactions_always_see_every_live_record() {
    let d = tmp("compactrace");
    let log = Arc::new(Log::open(d.path(), small()).expect("open"));
    for i in 0..100 {
        // Spread "keep" over many segments, between records that will die.
        log.append("keep", 2, &payload(i)).expect("append");
        fill(&log, "junk", 8);
    }
    log.delete_stream("junk").expect("delete");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) || rounds < 10 {
                let seqs: Vec<u64> = log.read("keep", 0, None).expect("read").iter().map(|r| r.seq).collect();
                assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
                rounds += 1;
            }
        })
    };
    for round in 0..300 {
        fill(&log, &format!("junk-{round}"), 30);
        log.delete_stream(&format!("junk-{round}")).expect("delete");
        log.compact(0.3).expect("compact");
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader saw every record every time");
}

fn rec<'a>(stream: &'a str, payload: &'a [u8]) -> NewRecord<'a> {
    NewRecord { stream, kind: 2, payload, compress: true }
}

/// The records written by a `try_append_many`, or None when it handed them back.
fn at_once(t: TryAppend) -> Option<Vec<(u64, i64)>> {
    match t {
        TryAppend::Done(done) => Some(done),
        TryAppend::Wait(_) => None,
    }
}

#[test]
fn an_append_that_need_not_wait_is_done_at_once_and_reads_back_like_any_other() {
    let d = tmp("try-append");
    for durability in [Durability::Process, Durability::Group] {
        let dir = d.path().join(format!("{durability:?}"));
        {
            let log = Log::open(&dir, Options { durability, ..Options::default() }).expect("open");
            let one = payload(1);
            let two = payload(2);
            let done = at_once(log.try_append_many(&[rec("a", &one), rec("a", &two)]).expect("try"));
            assert_eq!(done.expect("done at once").iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
            log.append("a", 2, &payload(3)).expect("append");
        }
        let log = Log::open(&dir, Options { durability, ..Options::default() }).expect("reopen");
        let got: Vec<Vec<u8>> = log.read("a", 0, None).expect("read").into_iter().map(|r| r.payload).collect();
        assert_eq!(got, vec![payload(1), payload(2), payload(3)]);
    }
}

#[test]
fn an_append_that_would_wait_for_an_fdatasync_a_roll_or_the_writer_is_declined_and_writes_nothing() {
    let d = tmp("try-decline");
    let p = payload(0);
    {
        let log = Log::open(d.path().join("sync"), Options { durability: Durability::Sync, ..Options::default() })
            .expect("open");
        let TryAppend::Wait(batch) = log.try_append_many(&[rec("a", &p)]).expect("try") else {
            panic!("sync waits for an fdatasync")
        };
        assert_eq!(log.last_seq("a").expect("seq"), 0);
        let done = log.append_prepared(batch).expect("append the batch handed back");
        assert_eq!(done[0].0, 1);
        assert_eq!(log.read("a", 0, None).expect("read")[0].payload, p, "written once, as prepared");
    }
    {
        // A roll (an fdatasync, an index file, a new segment) is left to append_many.
        let log = Log::open(d.path().join("roll"), small()).expect("open");
        while at_once(log.try_append_many(&[rec("a", &p)]).expect("try")).is_some() {}
        let before = log.last_seq("a").expect("seq");
        assert_eq!(segments(&d.path().join("roll")).len(), 1, "declined before the segment filled up");
        log.append("a", 2, &p).expect("append");
        assert_eq!(log.last_seq("a").expect("seq"), before + 1);
        assert_eq!(segments(&d.path().join("roll")).len(), 2, "append_many rolled");
        assert!(at_once(log.try_append_many(&[rec("a", &p)]).expect("try")).is_some(), "room again in the new segment");
    }
    {
        // Compaction holds the writer while it calls its progress callback.
        let log = Log::open(d.path().join("busy"), small()).expect("open");
        fill(&log, "a", 200);
        log.prune("a", 2, 0).expect("prune");
        let mut declined = 0;
        log.compact_with(0.0, &mut |_, _| {
            if at_once(log.try_append_many(&[rec("b", &p)]).expect("try")).is_none() {
                declined += 1;
            }
            true
        })
        .expect("compact");
        assert!(declined > 0);
        assert_eq!(log.last_seq("b").expect("seq"), 0, "nothing written while the writer was busy");
    }
}

/// (stored, raw) payload bytes of the live records of `kind` in `stream`, as `verify` counts them.
fn stored_and_raw(log: &Log, stream: &str, kind: u8) -> (u64, u64) {
    let report = log.verify().expect("verify");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    let k = report.kinds.iter().find(|k| k.stream == stream && k.kind == kind).expect("kind counted");
    (k.stored_bytes, k.raw_bytes)
}

/// True when some segment file of `dir` holds `needle` verbatim.
fn on_disk_verbatim(dir: &Path, needle: &[u8]) -> bool {
    segments(dir).iter().any(|p| std::fs::read(p).expect("segment").windows(needle.len()).any(|w| w == needle))
}

/// `n` bytes that zstd shrinks a lot.
fn compressible(n: usize) -> Vec<u8> {
    b"state key value 0123456789 ".iter().copied().cycle().take(n).collect()
}

/// `n` bytes that zstd cannot shrink (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn an_uncompressed_append_is_stored_raw_until_compaction_compresses_it() {
    for key in [None, Some(b"sixteen byte key".as_slice())] {
        let d = tmp("raw-then-compressed");
        let opts =
            || Options { auth_key: key.map(|k| pyactors_core::AuthKey::new(k).expect("key")), ..Options::default() };
        let big = compressible(100_000);
        let log = Log::open(d.path(), opts()).expect("open");
        log.append_many(&[
            NewRecord { stream: "s", kind: 2, payload: &big, compress: false },
            NewRecord { stream: "s", kind: 3, payload: &big, compress: true },
        ])
        .expect("append");
        let tag = if key.is_some() { MAC_LEN as u64 } else { 0 }; // verify counts a record's tag as stored
        assert_eq!(stored_and_raw(&log, "s", 2), (100_000 + tag, 100_000), "stored raw");
        assert!(stored_and_raw(&log, "s", 3).0 < 10_000, "the same payload with compress=true is compressed");
        assert!(on_disk_verbatim(d.path(), &big), "the raw payload is in the segment as it is");
        assert_eq!(log.read("s", 0, Some(&[2])).expect("read")[0].payload, big);

        assert_eq!(log.compact(0.0).expect("compact").records_copied, 2);
        let (stored, raw) = stored_and_raw(&log, "s", 2);
        assert_eq!(raw, 100_000);
        assert!(stored < 10_000, "compaction compressed the raw record: {stored} bytes stored");
        assert!(!on_disk_verbatim(d.path(), &big), "no raw copy is left on disk");
        assert_eq!(log.read("s", 0, Some(&[2])).expect("read")[0].payload, big);
        drop(log);
        // Reopened (and re-authenticated with the key): the recompressed record checks out.
        let log = Log::open(d.path(), opts()).expect("reopen");
        let back = log.read("s", 0, None).expect("read");
        assert_eq!((back[0].seq, back[0].kind, back[0].payload.as_slice()), (1, 2, big.as_slice()));
        assert_eq!(back[1].payload, big);
        assert!(log.verify().expect("verify").damaged.is_empty());
    }
}

#[test]
fn an_incompressible_raw_record_stays_raw_through_compaction() {
    let d = tmp("raw-noise");
    let log = Log::open(d.path(), Options::default()).expect("open");
    let bytes = noise(20_000);
    log.append_many(&[NewRecord { stream: "s", kind: 2, payload: &bytes, compress: false }]).expect("append");
    log.compact(0.0).expect("compact");
    assert_eq!(stored_and_raw(&log, "s", 2), (20_000, 20_000), "zstd did not shrink it: kept raw");
    assert!(on_disk_verbatim(d.path(), &bytes));
    assert_eq!(log.read("s", 0, None).expect("read")[0].payload, bytes);
}

/// Flip one byte of the last record written to the active segment of `dir`.
fn damage_last_record(dir: &Path) {
    let seg = segments(dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let at = bytes.len() - 2;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, bytes).expect("write segment");
}

#[test]
fn latest_serves_from_memory_what_was_asked_for_and_appended_since() {
    let d = tmp("cachehit");
    let log = Log::open(d.path(), Options::default()).expect("open");
    assert_eq!(log.latest("a", 1).expect("latest"), None, "asked for: watched from now on");
    let big: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    log.append("a", 1, &big).expect("snapshot");
    log.append("b", 1, &big).expect("snapshot of a stream nobody asked for");
    // The bytes on disk are damaged after the appends: a read would fail its CRC. The
    // record asked for comes from memory, intact; the other one is read, and fails.
    damage_last_record(d.path());
    let hit = log.latest("a", 1).expect("latest from memory").expect("a record");
    assert_eq!((hit.seq, hit.payload == big), (1, true));
    let in_memory = log.latest_in_memory("a", 1).expect("found without I/O");
    assert_eq!((in_memory.seq, in_memory.payload == big), (1, true));
    assert!(log.latest_in_memory("b", 1).is_none(), "not asked for: only `latest` can answer");
    assert!(matches!(log.latest("b", 1), Err(CoreError::Corrupt { .. })));
}

#[test]
fn without_a_cache_latest_reads_the_disk() {
    let d = tmp("cacheoff");
    let log = Log::open(d.path(), Options { cache_bytes: 0, ..Options::default() }).expect("open");
    assert_eq!(log.latest("a", 1).expect("latest"), None);
    log.append("a", 1, &payload(1)).expect("snapshot");
    damage_last_record(d.path());
    assert!(matches!(log.latest("a", 1), Err(CoreError::Corrupt { .. })));
}

#[test]
fn a_pruned_or_deleted_record_is_never_served_from_memory() {
    let d = tmp("cachestale");
    let log = Log::open(d.path(), Options::default()).expect("open");
    log.append("a", 1, b"first").expect("snapshot");
    assert_eq!(log.latest("a", 1).expect("latest").expect("a record").payload, b"first");
    log.append("a", 1, b"second").expect("snapshot");
    assert_eq!(log.latest("a", 1).expect("latest").expect("a record").payload, b"second");
    assert_eq!(log.prune("a", 1, 0).expect("prune"), 2);
    assert_eq!(log.latest("a", 1).expect("latest after prune"), None);
    log.append("a", 1, b"third").expect("snapshot");
    assert_eq!(log.latest("a", 1).expect("latest").expect("a record").payload, b"third");
    log.delete_stream("a").expect("delete");
    assert_eq!(log.latest("a", 1).expect("latest after delete"), None);
    log.append("a", 1, b"fourth").expect("snapshot");
    let r = log.latest("a", 1).expect("latest").expect("a record");
    assert_eq!((r.seq, r.payload.as_slice()), (4, b"fourth".as_slice()));
    drop(log);
    let log = Log::open(d.path(), Options::default()).expect("reopen");
    assert_eq!(log.latest("a", 1).expect("latest").expect("a record").payload, b"fourth");
}

#[test]
fn latest_under_concurrent_appends_is_never_older_than_what_was_acknowledged() {
    // One writer appends snapshots (payload = its seq) while readers ask for the latest:
    // each answer must be the record its seq names, and never older than a snapshot
    // acknowledged before the call began (the cache must not serve a replaced entry).
    let d = tmp("cacherace");
    let log = Arc::new(Log::open(d.path(), Options { segment_bytes: 64 << 10, ..Options::default() }).expect("open"));
    log.append("s", 1, &0u64.to_le_bytes().repeat(64)).expect("first");
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (log, acked, done) = (Arc::clone(&log), Arc::clone(&acked), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut answers = 0u64;
                while !done.load(Ordering::Acquire) {
                    let floor = acked.load(Ordering::Acquire);
                    let r = log.latest("s", 1).expect("latest").expect("a snapshot");
                    assert!(r.seq >= floor, "latest gave seq {} after seq {floor} was acknowledged", r.seq);
                    assert_eq!(r.payload, (r.seq - 1).to_le_bytes().repeat(64), "payload of another record");
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    for i in 1..2_000u64 {
        let (seq, _) = log.append("s", 1, &i.to_le_bytes().repeat(64)).expect("append");
        acked.store(seq, Ordering::Release);
        if i % 500 == 0 {
            log.prune("s", 1, 1).expect("prune");
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
}

/// A read with a limit locates only the records it returns (per segment, the entries
/// after `after_seq`), and returns exactly what the whole read begins with, across
/// sealed and active segments, pruned records and compaction's copies.
#[test]
fn a_limited_locate_is_the_start_of_the_whole_one() {
    let d = tmp("limit");
    let log = Log::open(d.path(), small()).expect("open");
    for i in 0..600u64 {
        let kind = if i % 7 == 0 { 1 } else { 2 };
        log.append(&format!("s{}", i % 3), kind, &payload(i)).expect("append");
        if i == 300 {
            log.prune("s0", 2, 40).expect("prune");
            log.compact(0.2).expect("compact"); // live records copied into the active segment
        }
    }
    for stream in ["s0", "s1", "s2"] {
        for kinds in [None, Some(&[2u8][..]), Some(&[1u8][..])] {
            let whole: Vec<_> = log.locate(stream, 0, kinds, None).expect("whole").into_iter().map(|l| l.loc).collect();
            for after in [0, 1, 50, 150, 199, 200, 500] {
                let from: Vec<_> = whole.iter().copied().filter(|l| l.entry.seq > after).collect();
                for limit in [1, 2, 10, 1000] {
                    let got: Vec<_> = log
                        .locate(stream, after, kinds, Some(limit))
                        .expect("limited")
                        .into_iter()
                        .map(|l| l.loc)
                        .collect();
                    assert_eq!(
                        got,
                        from.iter().copied().take(limit).collect::<Vec<_>>(),
                        "{stream} {kinds:?} {after} {limit}"
                    );
                }
            }
        }
    }
    assert!(segments(d.path()).len() > 10, "the records span many sealed segments");
}
