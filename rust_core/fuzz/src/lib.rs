//! The properties the cargo fuzz targets of pyactors-core check. Each function takes
//! arbitrary bytes and panics when a property fails; libFuzzer reports a panic, a hang
//! or an allocation over its limit as a crash. `rust_core/tests/fuzz_regressions.rs`
//! includes this file, so every crash input committed under `tests/data/fuzz/` is
//! replayed by plain `cargo test`.
//!
//! - `decode`: arbitrary bytes as a record, a segment, a segment header and an index.
//! - `roundtrip`: arbitrary record fields encoded, then decoded and scanned back.
//! - `open_dir`: arbitrary files in a store directory, opened strict and tolerant.

use std::collections::HashMap;
use std::path::Path;

use pyactors_core::codec;
use pyactors_core::format::{
    decode_index_header, decode_segment_header, decode_summary, decode_tombstone, encode_index, encode_segment_header,
    encode_tombstone, index_name, segment_name, FLAG_ZSTD, INDEX_HEADER_LEN, KIND_TOMBSTONE, MAX_STREAM_LEN,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use pyactors_core::record::{self, DecodeError, Header};
use pyactors_core::scan::{scan, Scan};
use pyactors_core::{CoreError, Log, NewRecord, Options, RecoveryMode};

/// Little-endian reads that run out gracefully (missing bytes read as zero).
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        let s = self.take(8);
        a[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(a)
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------
// decode

/// Arbitrary bytes as a record frame, a segment file, a segment header and an index
/// file: every decoder returns a value or an error, and what it accepts is exact.
pub fn decode(data: &[u8]) {
    decode_record(data);
    decode_segment_bytes(data);
    decode_index_bytes(data);
}

/// A frame `decode` accepts has a correct CRC, and encoding what it decoded gives back
/// the same bytes; a `Truncated` error means the bytes really are too few.
fn decode_record(data: &[u8]) {
    let _ = record::announced_len(data);
    let _ = record::offset_field(data);
    match record::decode(data, None) {
        Ok(f) => {
            let frame = &data[..f.len];
            assert_eq!(le_u32(frame, 0), Some(crc32c::crc32c(&frame[4..])), "accepted a frame with a bad CRC");
            let mut again = Vec::new();
            assert_eq!(record::encode(&mut again, &f.header, f.stream, f.payload, None), f.len);
            assert_eq!(again, frame, "decode then encode is not the identity");
            if let Ok(raw) = codec::decompress(f.payload, f.header.flags, f.header.raw_len as usize) {
                assert_eq!(raw.len(), f.header.raw_len as usize, "payload length differs from raw_len");
            }
        }
        Err(DecodeError::Truncated { needed }) => {
            assert!(
                data.len() < RECORD_HEADER_LEN || needed.is_some_and(|n| n > data.len()),
                "Truncated {needed:?} with {} bytes",
                data.len()
            );
        }
        Err(DecodeError::Invalid(_) | DecodeError::Unauthenticated(_)) => {}
    }
}

/// The segment header decoder accepts exactly what the encoder writes; a scan of the
/// bytes tiles them exactly with records, damaged ranges and a tail, in order.
fn decode_segment_bytes(data: &[u8]) {
    if let Ok((base, key_id)) = decode_segment_header(data) {
        let created = le_u64(data, 24).unwrap_or(0) as i64;
        let h = encode_segment_header(base, created, key_id);
        assert_eq!(&h[..], &data[..SEGMENT_HEADER_LEN]);
    }
    let base = le_u64(data, 16).unwrap_or(0);
    check_scan(data, base, &scan(data, Path::new("fuzz.seg"), base, None));
}

/// Records, damaged ranges and the tail cover `[SEGMENT_HEADER_LEN, len)` exactly, in
/// file order; each record decodes at its position to what the scan says, with offsets
/// rising from `base`.
fn check_scan(data: &[u8], base: u64, s: &Scan) {
    let mut spans: Vec<(u64, u64)> = s.records.iter().map(|r| (r.pos, r.pos + u64::from(r.len))).collect();
    spans.extend(s.damaged.iter().map(|d| (d.offset, d.offset + d.length)));
    spans.extend(s.tail.iter().map(|t| (t.offset, t.offset + t.bytes)));
    spans.sort_unstable();
    let mut pos = SEGMENT_HEADER_LEN as u64;
    for (start, end) in spans {
        assert_eq!(start, pos, "scan left a gap or an overlap at {pos}");
        assert!(end > start, "empty span at {start}");
        pos = end;
    }
    assert_eq!(pos, (data.len() as u64).max(SEGMENT_HEADER_LEN as u64), "scan does not reach the end");
    if let Some(t) = &s.tail {
        assert!(t.records >= 1);
        assert!(s.records.iter().all(|r| r.pos < t.offset) && s.damaged.iter().all(|d| d.offset < t.offset));
    }
    let mut next = base;
    for r in &s.records {
        let f = match record::decode(&data[r.pos as usize..], None) {
            Ok(f) => f,
            Err(e) => panic!("scan returned a record at {} that does not decode: {e:?}", r.pos),
        };
        assert_eq!((f.len, f.stream, &f.header), (r.len as usize, r.stream.as_str(), &r.header));
        assert!(r.header.offset >= next, "record offsets go back at {}", r.pos);
        next = r.header.offset.saturating_add(1);
        if r.header.kind == KIND_TOMBSTONE {
            assert!(r.tombstone.is_some() && r.tombstone == decode_tombstone(f.payload));
        } else {
            assert!(r.tombstone.is_none());
        }
    }
}

/// The index header and summary decoders never panic, and a summary they accept
/// encodes back to itself.
fn decode_index_bytes(data: &[u8]) {
    let _ = decode_summary(0, 0, 0, data);
    let Ok((base, seg_len, records, sum_len, _)) = decode_index_header(data) else { return };
    let Some(sum) =
        usize::try_from(sum_len).ok().and_then(|l| data.get(INDEX_HEADER_LEN..INDEX_HEADER_LEN.checked_add(l)?))
    else {
        return;
    };
    let Some(summary) = decode_summary(base, seg_len, records, sum) else { return };
    let mut again = summary.clone();
    let bytes = encode_index(&mut again, &vec![Vec::new(); summary.streams.len()]);
    let (b2, l2, r2, sum_len2, sum_crc2) = match decode_index_header(&bytes) {
        Ok(h) => h,
        Err(e) => panic!("an encoded index header does not decode: {e:?}"),
    };
    assert_eq!((b2, l2, r2), (base, seg_len, records));
    let sum2 = &bytes[INDEX_HEADER_LEN..INDEX_HEADER_LEN + sum_len2 as usize];
    assert_eq!(crc32c::crc32c(sum2), sum_crc2);
    assert_eq!(decode_summary(base, seg_len, records, sum2).as_ref(), Some(&again), "summary round trip");
    for (a, b) in summary.streams.iter().zip(&again.streams) {
        assert_eq!(
            (&a.stream, a.last_seq, a.max_entry_seq, &a.latest, &a.tombstones),
            (&b.stream, b.last_seq, b.max_entry_seq, &b.latest, &b.tombstones)
        );
    }
}

// ---------------------------------------------------------------------------------
// roundtrip

/// Record fields taken from the bytes: encoding then decoding is the identity, for the
/// raw and the zstd form of the payload, every cut of the frame is `Truncated`, and a
/// segment of such frames scans back with no damage.
pub fn roundtrip(data: &[u8]) {
    let mut b = Bytes(data);
    let offset = b.u64();
    let seq = b.u64();
    let timestamp_us = b.u64() as i64;
    let kind = b.u8().max(1);
    let level = 1 + i32::from(b.u8() % 3);
    let stream_len = 1 + usize::from(b.u8());
    let stream = valid_stream(b.take(stream_len));
    let payload = b.0;

    let raw = Header { offset, seq, timestamp_us, kind, flags: 0, raw_len: payload.len() as u32 };
    let frame = encoded(&raw, &stream, payload);
    expect_frame(&frame, &raw, &stream, payload);
    for cut in (0..frame.len()).filter(|c| *c < 64 || frame.len() - c < 64) {
        match record::decode(&frame[..cut], None) {
            Err(DecodeError::Truncated { .. }) => {}
            other => panic!("a frame cut at {cut} of {} gave {other:?}", frame.len()),
        }
    }

    let packed = codec::compress(payload, level, 0);
    if packed.flags == FLAG_ZSTD {
        let z = Header { flags: FLAG_ZSTD, ..raw.clone() };
        let zframe = encoded(&z, &stream, &packed.bytes);
        expect_frame(&zframe, &z, &stream, &packed.bytes);
        assert_eq!(codec::decompress(&packed.bytes, FLAG_ZSTD, payload.len()).as_deref(), Ok(payload));
        assert!(codec::decompress(&packed.bytes, FLAG_ZSTD, payload.len() + 1).is_err());
    } else {
        assert_eq!(packed.bytes, payload);
    }

    assert_eq!(decode_tombstone(&encode_tombstone(kind, seq)), Some((kind, seq)));
    assert_eq!(decode_segment_header(&encode_segment_header(offset, timestamp_us, 0)), Ok((offset, 0)));

    // A segment of up to 8 records, the payload cut in pieces, starting at `offset`.
    let pieces: Vec<&[u8]> = payload.chunks(payload.len().div_ceil(8).max(1)).collect();
    let mut seg = encode_segment_header(offset, timestamp_us, 0).to_vec();
    let mut want = Vec::new();
    // A tombstone's payload is checked by the scan: use another kind for random pieces.
    let kind = if kind == KIND_TOMBSTONE { kind + 1 } else { kind };
    for (i, piece) in pieces.iter().enumerate() {
        let Some(at) = offset.checked_add(i as u64) else { break };
        let h =
            Header { offset: at, seq: seq.wrapping_add(i as u64), kind, raw_len: piece.len() as u32, ..raw.clone() };
        want.push((seg.len() as u64, h.clone()));
        record::encode(&mut seg, &h, &stream, piece, None);
    }
    seg.truncate(
        want.last().map_or(SEGMENT_HEADER_LEN, |(pos, h)| {
            *pos as usize + RECORD_HEADER_LEN + stream.len() + h.raw_len as usize
        }),
    );
    let s = scan(&seg, Path::new("fuzz.seg"), offset, None);
    assert!(
        s.damaged.is_empty() && s.tail.is_none(),
        "a clean segment scanned as damaged: {:?} {:?}",
        s.damaged,
        s.tail
    );
    let got: Vec<(u64, Header)> = s.records.iter().map(|r| (r.pos, r.header.clone())).collect();
    assert_eq!(got, want, "scan of a clean segment");
}

/// A valid stream id (1 to 255 UTF-8 bytes) from arbitrary bytes.
fn valid_stream(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(b).into_owned();
    while s.len() > MAX_STREAM_LEN {
        s.pop();
    }
    if s.is_empty() {
        s.push('s');
    }
    s
}

fn encoded(h: &Header, stream: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(record::encode(&mut out, h, stream, payload, None), out.len());
    out
}

fn expect_frame(frame: &[u8], h: &Header, stream: &str, payload: &[u8]) {
    match record::decode(frame, None) {
        Ok(f) => {
            assert_eq!((f.len, &f.header, f.stream, f.payload), (frame.len(), h, stream, payload), "round trip");
        }
        Err(e) => panic!("an encoded frame does not decode: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------
// open_dir

/// The files of a store directory packed into fuzzer bytes.
///
/// Format: `{ flags u8 | file * }`, file = `{ type u8 | base u64 | len u16 | bytes [len] }`
/// (little endian; the last file takes what is left when `len` runs past the end; at
/// most 8 files, a later file of the same name replaces an earlier one). `type` bit 0:
/// 0 = the segment file `{base:020}.seg`, 1 = its index file `{base:020}.idx`.
/// `flags` bit 0: fix every checksum first (record CRCs, the index header, summary and
/// entries CRCs), so the fuzzer reaches the logic behind them. The atheris target
/// (`tests/fuzz/fuzz_store.py`) reads the same format.
pub fn unpack(data: &[u8]) -> (bool, Vec<(String, Vec<u8>)>) {
    let mut b = Bytes(data);
    let fix = b.u8() & 1 == 1;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while !b.0.is_empty() && files.len() < 8 {
        let index = b.u8() & 1 == 1;
        let base = b.u64();
        let len = usize::from(u16::from_le_bytes([b.u8(), b.u8()]));
        let name = if index { index_name(base) } else { segment_name(base) };
        let mut bytes = b.take(len).to_vec();
        if fix {
            if index {
                fix_index(&mut bytes);
            } else {
                fix_segment(&mut bytes);
            }
        }
        files.retain(|(n, _)| *n != name);
        files.push((name, bytes));
    }
    (fix, files)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recompute the CRC of every frame whose announced length fits.
fn fix_segment(b: &mut [u8]) {
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(len) = b.get(pos..).and_then(record::announced_len) {
        if pos + len > b.len() {
            break;
        }
        let crc = crc32c::crc32c(&b[pos + 4..pos + len]);
        put_u32(b, pos, crc);
        pos += len;
    }
}

/// Recompute the entries CRCs in the summary, then the summary and header CRCs.
fn fix_index(b: &mut [u8]) {
    let Some(sum_len) = le_u64(b, 40).and_then(|l| usize::try_from(l).ok()) else { return };
    let Some(end) = INDEX_HEADER_LEN.checked_add(sum_len).filter(|&e| e <= b.len()) else { return };
    let mut at = INDEX_HEADER_LEN + 4;
    for _ in 0..le_u32(b, INDEX_HEADER_LEN).unwrap_or(0) {
        let Some(slen) = b.get(at..at + 2).map(|s| usize::from(u16::from_le_bytes([s[0], s[1]]))) else { break };
        at += 2 + slen + 16;
        let (Some(entries_at), Some(entries)) = (le_u64(b, at), le_u32(b, at + 8)) else { break };
        if at + 16 > end {
            break;
        }
        let block = usize::try_from(entries_at)
            .ok()
            .and_then(|s| Some((s, s.checked_add(entries as usize * pyactors_core::format::INDEX_ENTRY_LEN)?)))
            .and_then(|(s, e)| b.get(s..e));
        if let Some(block) = block {
            let crc = crc32c::crc32c(block);
            put_u32(b, at + 12, crc);
        }
        at += 16;
        let Some(&nl) = b.get(at) else { break };
        at += 1 + usize::from(nl) * 21;
        let Some(&nt) = b.get(at) else { break };
        at += 1 + usize::from(nt) * 9;
    }
    let crc = crc32c::crc32c(&b[INDEX_HEADER_LEN..end]);
    put_u32(b, 48, crc);
    let crc = crc32c::crc32c(&b[..52]);
    put_u32(b, 52, crc);
}

/// What can legitimately be read back: every frame with a valid CRC found at any
/// position of the segment files, by (stream, seq, kind), with its payload.
fn genuine(files: &[(String, Vec<u8>)]) -> HashMap<(String, u64, u8), Vec<Vec<u8>>> {
    let mut out: HashMap<(String, u64, u8), Vec<Vec<u8>>> = HashMap::new();
    for (_, b) in files.iter().filter(|(n, _)| n.ends_with(".seg")) {
        for pos in 0..b.len() {
            if let Ok(f) = record::decode(&b[pos..], None) {
                if let Ok(p) = codec::decompress(f.payload, f.header.flags, f.header.raw_len as usize) {
                    out.entry((f.stream.to_owned(), f.header.seq, f.header.kind)).or_default().push(p);
                }
            }
        }
    }
    out
}

const PROBE: &str = "fuzz/probe";

fn is_damage(e: &CoreError) -> bool {
    matches!(e, CoreError::Corrupt { .. } | CoreError::FormatVersion { .. } | CoreError::Authentication { .. })
}

/// Arbitrary store files (see `unpack`), opened strict and then (a fresh copy) tolerant:
/// - open returns the log or a `Corrupt`/`FormatVersion`/`Authentication` error, and a directory that
///   opens strict also opens tolerant;
/// - every record read back (by `read` and `latest`) was really in a segment file, with
///   a valid CRC, and a stream's records come in rising seq order;
/// - reads fail only with `Corrupt`; `verify` succeeds;
/// - appends after the open get the next seqs, read back, and survive a close and a
///   reopen in the same mode.
pub fn open_dir(data: &[u8]) {
    let (_, files) = unpack(data);
    let genuine = genuine(&files);
    let mut strict_opened = false;
    for mode in [RecoveryMode::TolerateTailCorruption, RecoveryMode::TolerateAnyCorruption] {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("no temp dir: {e}"),
        };
        for (name, bytes) in &files {
            if let Err(e) = std::fs::write(dir.path().join(name), bytes) {
                panic!("cannot write {name}: {e}");
            }
        }
        let opts = Options { recovery: mode, segment_bytes: 4096, ..Options::default() };
        let log = match Log::open(dir.path(), opts.clone()) {
            Ok(log) => log,
            Err(e) => {
                assert!(is_damage(&e), "{mode:?} open failed with {e:?}");
                assert!(!strict_opened, "opens strict but not tolerant: {e}");
                continue;
            }
        };
        strict_opened |= mode == RecoveryMode::TolerateTailCorruption;
        check_reads(&log, &genuine);
        let before = log.last_seq(PROBE).unwrap_or_else(|e| panic!("last_seq: {e}"));
        let big = vec![b'p'; 600];
        let probes = [
            NewRecord { stream: PROBE, kind: 2, payload: b"probe", compress: true },
            NewRecord { stream: PROBE, kind: 2, payload: &big, compress: true },
        ];
        let seqs = match log.append_many(&probes) {
            Ok(s) => s.into_iter().map(|(seq, _)| seq).collect::<Vec<u64>>(),
            // Segment names at the 2^63 offset limit: refused, and nothing was written.
            Err(CoreError::Corrupt { reason, .. }) if reason.contains("would pass 2^63") => continue,
            Err(e) => panic!("{mode:?}: append after a successful open failed: {e}"),
        };
        assert_eq!(seqs, vec![before + 1, before + 2], "probe seqs");
        let want = vec![b"probe".to_vec(), big.clone()];
        let read_probes = |log: &Log| -> Vec<Vec<u8>> {
            match log.read(PROBE, before, None) {
                Ok(r) => r.into_iter().map(|r| r.payload).collect(),
                Err(e) => panic!("{mode:?}: the probe records do not read back: {e}"),
            }
        };
        assert_eq!(read_probes(&log), want, "{mode:?}: probe records");
        if let Err(e) = log.close() {
            panic!("{mode:?}: close failed: {e}");
        }
        drop(log);
        let log = match Log::open(dir.path(), opts) {
            Ok(log) => log,
            Err(e) => panic!("{mode:?}: a store that opened and took appends does not reopen: {e}"),
        };
        assert_eq!(read_probes(&log), want, "{mode:?}: probe records after a reopen");
        assert_eq!(log.last_seq(PROBE).ok(), Some(before + 2));
    }
}

/// Every read returns genuine records or a `Corrupt` error; `verify` works.
fn check_reads(log: &Log, genuine: &HashMap<(String, u64, u8), Vec<Vec<u8>>>) {
    let is_genuine = |r: &pyactors_core::Record| {
        genuine.get(&(r.stream.clone(), r.seq, r.kind)).is_some_and(|ps| ps.contains(&r.payload))
    };
    let streams = log.streams().unwrap_or_else(|e| panic!("streams: {e}"));
    for s in &streams {
        let mut kinds: Vec<u8> = vec![1, 2, 3, 5];
        match log.read(s, 0, None) {
            Ok(records) => {
                for r in &records {
                    assert!(is_genuine(r), "read returned a record never written: {r:?}");
                    kinds.push(r.kind);
                }
                assert!(records.windows(2).all(|w| w[0].seq < w[1].seq), "seqs not rising in {s:?}");
            }
            Err(e) => assert!(is_damage(&e), "read {s:?}: {e:?}"),
        }
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            match log.latest(s, kind) {
                Ok(Some(r)) => assert!(is_genuine(&r), "latest returned a record never written: {r:?}"),
                Ok(None) => {}
                Err(e) => assert!(is_damage(&e), "latest {s:?} {kind}: {e:?}"),
            }
        }
    }
    if let Err(e) = log.verify() {
        panic!("verify failed: {e}");
    }
}
