//! The fault layer (`src/fault.rs`, feature `fault-injection`) and the log under it:
//! the power-loss image is what the model says, and the log keeps its guarantees at
//! every injected failure and every power-loss cut point of a workload.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is the test failing

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pyactors_core::fault::{Fault, FaultFs, Op, EIO, ENOSPC};
use pyactors_core::format::SEGMENT_HEADER_LEN;
use pyactors_core::fs::FileSystem;
use pyactors_core::{CoreError, Durability, Log, Options};

mod common;
use common::{payload, segments, small, tmp};

// -- the fault layer itself -----------------------------------------------------------

#[test]
fn power_loss_keeps_each_file_as_of_its_last_fdatasync_at_every_offset() {
    let d = tmp("image");
    let fs = FaultFs::new();
    let a = d.path().join("a");
    let h = fs.create(&a).expect("create");
    fs.sync_dir(d.path()).expect("dirsync");
    h.write_all_at(b"0123456789", 0).expect("write");
    h.sync_data().expect("sync");
    h.write_all_at(b"XY", 3).expect("overwrite earlier bytes");
    h.write_all_at(b"tail", 10).expect("append");
    h.set_len(12).expect("truncate");
    assert_eq!(std::fs::read(&a).expect("read"), b"012XY56789ta");
    fs.power_loss().expect("power loss");
    assert_eq!(std::fs::read(&a).expect("read"), b"0123456789", "unsynced writes and truncation undone");
    let err = h.write_all_at(b"x", 0).expect_err("dead after power loss");
    assert!(err.to_string().contains("power"), "{err}");
    assert!(h.sync_data().is_err() && fs.create(&d.path().join("b")).is_err());
}

#[test]
fn names_are_durable_only_once_their_directory_is_synced() {
    let d = tmp("names");
    let (old, kept, gone, moved_from, moved_to) =
        (d.path().join("old"), d.path().join("kept"), d.path().join("gone"), d.path().join("m1"), d.path().join("m2"));
    std::fs::write(&old, b"before the layer").expect("write");
    std::fs::write(&moved_from, b"move me").expect("write");
    let fs = FaultFs::new();
    let k = fs.create(&kept).expect("create");
    k.write_all_at(b"kept", 0).expect("write");
    k.sync_data().expect("sync");
    fs.sync_dir(d.path()).expect("dirsync");
    let g = fs.create(&gone).expect("create"); // data synced, name never
    g.write_all_at(b"gone", 0).expect("write");
    g.sync_data().expect("sync");
    fs.remove(&old).expect("remove"); // removal not synced
    fs.rename(&moved_from, &moved_to).expect("rename"); // rename not synced
    let nested = d.path().join("new/deeper");
    fs.create_dir_all(&nested).expect("mkdir");
    assert!(nested.exists() && !old.exists() && moved_to.exists());
    fs.power_loss().expect("power loss");
    assert_eq!(std::fs::read(&kept).expect("kept"), b"kept");
    assert!(!gone.exists(), "a creation whose directory was not synced is undone");
    assert_eq!(std::fs::read(&old).expect("old"), b"before the layer", "an unsynced removal is undone");
    assert_eq!(std::fs::read(&moved_from).expect("m1"), b"move me", "an unsynced rename is undone");
    assert!(!moved_to.exists());
    assert!(!d.path().join("new").exists(), "a directory whose parent was not synced is gone");
    assert!(fs.powered_off());
}

#[test]
fn rules_fire_once_on_the_kth_operation_and_space_runs_out() {
    let d = tmp("rules");
    let fs = FaultFs::new();
    let h = fs.create(&d.path().join("f")).expect("create");
    fs.fail_after(Op::Write, 2, Fault::Error(EIO));
    fs.fail_after(Op::Sync, 1, Fault::Error(ENOSPC));
    h.write_all_at(b"one", 0).expect("first write");
    assert_eq!(h.write_all_at(b"two", 3).expect_err("second").raw_os_error(), Some(EIO));
    h.write_all_at(b"two", 3).expect("fires once");
    assert_eq!(h.sync_data().expect_err("sync").raw_os_error(), Some(ENOSPC));
    fs.fail_after(Op::Any, 1, Fault::Short(ENOSPC));
    assert_eq!(h.write_all_at(b"abcd", 6).expect_err("short").raw_os_error(), Some(ENOSPC));
    assert_eq!(std::fs::read(d.path().join("f")).expect("read"), b"onetwoab", "half the buffer was written");
    fs.set_space(Some(5));
    h.write_all_at(b"123", 0).expect("fits");
    assert_eq!(h.write_all_at(b"4567", 3).expect_err("full").raw_os_error(), Some(ENOSPC));
    assert_eq!(&std::fs::read(d.path().join("f")).expect("read")[..5], b"12345", "what fits is written");
    assert!(h.write_all_at(b"x", 0).is_err(), "still full");
    fs.set_space(None);
    h.write_all_at(b"x", 0).expect("space freed");
    let c = fs.counts();
    assert_eq!((c.write, c.sync, c.injected), (8, 1, 5));
}

// -- the log under the fault layer ----------------------------------------------------

#[test]
fn open_reads_only_sealed_headers_and_the_active_segment() {
    let d = tmp("openscan");
    {
        let log = Log::open(d.path(), small()).expect("open");
        for i in 0..400 {
            log.append("a", 2, &payload(i)).expect("append");
        }
    }
    let segs = segments(d.path());
    let active_len = std::fs::metadata(segs.last().expect("active")).expect("meta").len();
    let fs = FaultFs::new();
    let log = Log::open_with(d.path(), small(), Arc::new(fs.clone())).expect("open");
    let read = fs.counts().segment_bytes_read;
    let sealed_headers = (segs.len() as u64 - 1) * SEGMENT_HEADER_LEN as u64;
    assert_eq!(read, sealed_headers + active_len, "open must not read sealed segment data");
    // A read of the last 3 records reads only those records.
    let recs = log.read("a", 397, None).expect("read");
    assert_eq!(recs.len(), 3);
    let wanted: u64 = recs.iter().map(|r| 40 + 1 + r.payload.len() as u64).sum();
    assert!(fs.counts().segment_bytes_read - read <= wanted, "read only what it returns");
}

#[test]
fn close_seals_a_large_active_segment_so_the_next_open_scans_almost_nothing() {
    let d = tmp("sealclose");
    {
        let log = Log::open(d.path(), Options::default()).expect("open");
        for i in 0..20u64 {
            // Incompressible: a 64 KiB xorshift stream.
            let mut x = i + 1;
            let big: Vec<u8> = (0..64 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            log.append("a", 2, &big).expect("append");
        }
    }
    let fs = FaultFs::new();
    let log = Log::open_with(d.path(), Options::default(), Arc::new(fs.clone())).expect("open");
    assert_eq!(log.open_report().segments, 2);
    assert_eq!(fs.counts().segment_bytes_read, 2 * SEGMENT_HEADER_LEN as u64);
    assert_eq!(log.read("a", 0, None).expect("read").len(), 20);
}

#[test]
fn a_failed_short_write_loses_nothing_and_the_next_append_continues_the_sequence() {
    let d = tmp("enospc");
    let fs = FaultFs::new();
    let log = Log::open_with(d.path(), Options::default(), Arc::new(fs.clone())).expect("open");
    for i in 0..3 {
        log.append("a", 2, &payload(i)).expect("append");
    }
    fs.fail_after(Op::Write, 1, Fault::Short(ENOSPC));
    match log.append("a", 2, &payload(99)) {
        Err(CoreError::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(ENOSPC)),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_eq!(log.read("a", 0, None).expect("still readable").len(), 3);
    assert!(log.verify().expect("verify").damaged.is_empty(), "the partial write was cut back");
    assert_eq!(log.append("a", 2, &payload(3)).expect("append").0, 4);
    drop(log);
    let log = Log::open(d.path(), Options::default()).expect("reopen");
    assert_eq!(log.open_report().truncated_bytes, 0);
    let seqs: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn a_failed_fdatasync_refuses_later_appends_until_reopen_and_loses_nothing_acknowledged() {
    let d = tmp("syncfail");
    let fs = FaultFs::new();
    let opts = Options { durability: Durability::Sync, ..small() };
    let log = Log::open_with(d.path(), opts.clone(), Arc::new(fs.clone())).expect("open");
    for i in 0..5 {
        log.append("a", 2, &payload(i)).expect("append");
    }
    fs.fail_after(Op::Sync, 1, Fault::Error(EIO));
    match log.append("a", 2, &payload(5)) {
        Err(CoreError::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(EIO)),
        other => panic!("expected EIO, got {other:?}"),
    }
    let again = log.append("a", 2, &payload(6)).expect_err("the writer is poisoned");
    assert!(again.to_string().contains("reopen the store"), "{again}");
    assert!(log.read("a", 0, None).expect("still readable").len() >= 5);
    drop(log);
    let log = Log::open(d.path(), opts).expect("reopen");
    let seqs: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
    // The append whose fdatasync failed was written, so it may be there; never a gap.
    assert!(seqs == (1..=5).collect::<Vec<_>>() || seqs == (1..=6).collect::<Vec<_>>(), "{seqs:?}");
    assert!(log.verify().expect("verify").damaged.is_empty());
    log.append("a", 2, b"works again").expect("append after reopen");
}

/// What a workload saw acknowledged: per stream, the seq of the last append that
/// returned, the last one that must survive a power loss, and the last one attempted.
#[derive(Default, Debug)]
struct Acked {
    acked: BTreeMap<&'static str, u64>,
    durable: BTreeMap<&'static str, u64>,
    attempted: BTreeMap<&'static str, u64>,
}

fn body(stream: &str, seq: u64) -> Vec<u8> {
    let mut b = format!("{stream}#{seq}:").into_bytes();
    b.resize(300, b'a' + (seq % 26) as u8);
    b
}

/// Appends to `a` (never deleted) and snapshots to `s` (pruned to the last 2), with
/// a throwaway stream deleted and compacted away every 40 rounds and, under `group`,
/// a `flush` every 15. Stops at the first error, which it returns.
fn workload(dir: &Path, opts: &Options, fs: &FaultFs, seen: &mut Acked) -> Result<(), CoreError> {
    let log = Log::open_with(dir, opts.clone(), Arc::new(fs.clone()))?;
    let sync = opts.durability == Durability::Sync;
    for i in 0..120u64 {
        for (stream, kind) in [("a", 2u8), ("s", 1u8)] {
            if stream == "s" && i % 10 != 0 {
                continue;
            }
            let seq = seen.attempted.get(stream).copied().unwrap_or(0) + 1;
            seen.attempted.insert(stream, seq);
            let (got, _) = log.append(stream, kind, &body(stream, seq))?;
            assert_eq!(got, seq);
            seen.acked.insert(stream, seq);
            if sync {
                seen.durable.insert(stream, seq);
            }
            if stream == "s" {
                log.prune("s", 1, 2)?;
            }
        }
        if i % 40 == 39 {
            for j in 0..20 {
                log.append("junk", 2, &body("junk", j))?;
            }
            log.delete_stream("junk")?;
            log.compact(0.3)?;
        }
        if opts.durability == Durability::Group && i % 15 == 14 {
            log.flush()?;
            seen.durable.clone_from(&seen.acked);
        }
    }
    Ok(())
}

/// Reopen `dir` on the real file system and check what every test below promises.
/// Returns how many acknowledged appends had to be there (and were).
fn check_recovered(dir: &Path, opts: &Options, seen: &Acked, context: &str) -> u64 {
    let log = Log::open(dir, opts.clone()).unwrap_or_else(|e| panic!("{context}: the store must open: {e}"));
    let a: Vec<u64> = log.read("a", 0, None).expect("read").iter().map(|r| r.seq).collect();
    let n = a.len() as u64;
    assert_eq!(a, (1..=n).collect::<Vec<_>>(), "{context}: gap-free from 1");
    let at = |m: &BTreeMap<&str, u64>, s| m.get(s).copied().unwrap_or(0);
    assert!(n >= at(&seen.durable, "a"), "{context}: lost a durable append ({n} < {:?})", seen.durable);
    assert!(n <= at(&seen.attempted, "a"), "{context}: records never written");
    for stream in ["a", "s"] {
        for r in log.read(stream, 0, None).expect("read") {
            assert_eq!(r.payload, body(stream, r.seq), "{context}: {stream} #{} intact", r.seq);
        }
    }
    let last_snap = log.latest("s", 1).expect("latest").map_or(0, |r| r.seq);
    assert!(last_snap >= at(&seen.durable, "s"), "{context}: lost a durable snapshot");
    assert!(log.last_seq("s").expect("seq") <= at(&seen.attempted, "s"), "{context}");
    let v = log.verify().expect("verify");
    assert!(v.damaged.is_empty(), "{context}: verify after recovery: {:?}", v.damaged);
    assert_eq!(log.append("a", 2, &body("a", n + 1)).expect("append after recovery").0, n + 1);
    at(&seen.durable, "a") + at(&seen.durable, "s")
}

fn opts(durability: Durability) -> Options {
    Options { durability, group_commit: Duration::from_millis(2), ..small() }
}

/// Operations a full run of the workload makes.
fn count_ops(durability: Durability) -> u64 {
    let d = tmp("count");
    let fs = FaultFs::new();
    workload(&d.path().join("store"), &opts(durability), &fs, &mut Acked::default()).expect("clean run");
    fs.counts().total()
}

#[test]
fn power_loss_at_every_operation_keeps_what_each_policy_promises() {
    let (mut cuts, mut checked) = (0, 0);
    for durability in [Durability::Sync, Durability::Group, Durability::Process] {
        let total = count_ops(durability);
        assert!(total > 100, "the workload rolls, prunes and compacts: {total} ops");
        for k in 1..=total + 1 {
            let d = tmp("cut");
            let dir = d.path().join("store");
            let fs = FaultFs::new();
            fs.fail_after(Op::Any, k, Fault::PowerLoss);
            let mut seen = Acked::default();
            let result = workload(&dir, &opts(durability), &fs, &mut seen);
            if !fs.powered_off() {
                // The group flusher's timing moves the count a little; past the end, cut now.
                result.expect("no fault before the power loss");
                fs.power_loss().expect("power loss");
            }
            let context = format!("{} cut at op {k}/{total}", durability.name());
            checked += check_recovered(&dir, &opts(durability), &seen, &context);
            cuts += 1;
        }
    }
    eprintln!("power-loss cut points checked: {cuts}, acknowledged appends checked: {checked}");
}

#[test]
fn an_error_at_every_operation_loses_nothing_acknowledged_and_the_store_stays_usable() {
    let (mut points, mut checked) = (0, 0);
    for durability in [Durability::Sync, Durability::Process] {
        let total = count_ops(durability);
        for (k, errno) in (1..=total).flat_map(|k| [(k, EIO), (k, ENOSPC)]) {
            let d = tmp("fail");
            let dir = d.path().join("store");
            let fs = FaultFs::new();
            let fault = if k % 3 == 0 { Fault::Short(errno) } else { Fault::Error(errno) };
            fs.fail_after(Op::Any, k, fault);
            let mut seen = Acked::default();
            let context = format!("{} {fault:?} at op {k}/{total}", durability.name());
            match workload(&dir, &opts(durability), &fs, &mut seen) {
                Err(CoreError::Io { source, .. }) => {
                    assert!(
                        source.raw_os_error() == Some(errno) || source.to_string().contains("reopen the store"),
                        "{context}: {source}"
                    );
                }
                Err(e) => panic!("{context}: {e}"),
                // A failed roll is retried by the next append: no error reaches the caller.
                Ok(()) => {}
            }
            assert_eq!(fs.counts().injected, 1, "{context}");
            // Nothing acknowledged is lost, with the fault layer's writes all on disk.
            seen.durable.clone_from(&seen.acked);
            checked += check_recovered(&dir, &opts(durability), &seen, &context);
            points += 1;
        }
    }
    eprintln!("fault points enumerated: {points}, acknowledged appends checked: {checked}");
}
