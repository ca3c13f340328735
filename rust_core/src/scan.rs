//! Scanning a segment's bytes: every valid record, every damaged range, and the torn tail.
//! Used by open (the active segment), by index rebuilds and by `verify`.

use std::path::{Path, PathBuf};

use crate::auth::AuthKey;
use crate::format::{decode_tombstone, FLAG_BATCH_MORE, KIND_TOMBSTONE, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::record::{announced_len, decode, offset_field, DecodeError, Header};

/// A damaged byte range in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// First damaged byte.
    pub offset: u64,
    /// Bytes skipped or cut.
    pub length: u64,
    /// What is wrong.
    pub reason: String,
    /// True when the bytes are intact but fail authentication (tampering or the
    /// wrong key), as opposed to accidental damage.
    pub tampered: bool,
}

impl Damage {
    /// Accidental damage (a bad checksum, a torn write, a bad field).
    pub fn new(path: impl Into<PathBuf>, offset: u64, length: u64, reason: impl Into<String>) -> Self {
        Self { path: path.into(), offset, length, reason: reason.into(), tampered: false }
    }
}

/// A valid record found by a scan.
#[derive(Debug, Clone)]
pub struct Found {
    /// Position of the frame in the file.
    pub pos: u64,
    /// Frame length.
    pub len: u32,
    /// The stream id.
    pub stream: String,
    /// Header fields.
    pub header: Header,
    /// For tombstones, `(target kind, upto seq)`.
    pub tombstone: Option<(u8, u64)>,
}

/// The torn end of a segment: from `offset` to the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Where the valid data ends.
    pub offset: u64,
    /// Bytes after it.
    pub bytes: u64,
    /// Records (whole or partial) those bytes held, at least 1.
    pub records: u64,
    /// Why the first of them is invalid.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records, in file order.
    pub records: Vec<Found>,
    /// Damaged ranges followed by valid records (damage, not a torn tail).
    pub damaged: Vec<Damage>,
    /// A torn or corrupt tail with no valid record after it.
    pub tail: Option<Tail>,
}

const MIN_FRAME: u64 = RECORD_HEADER_LEN as u64 + 1;

fn reason(e: &DecodeError) -> String {
    match e {
        DecodeError::Truncated { .. } => "record cut short (torn write)".into(),
        DecodeError::Invalid(r) | DecodeError::Unauthenticated(r) => r.clone(),
    }
}

/// Scan the records of a segment whose header says `base`. `bytes` is the whole file.
/// With a `key`, every record must carry a valid MAC.
///
/// A frame whose CRC matches but whose MAC does not is never part of a torn tail: it
/// is reported as damage with `tampered` set, exactly its own length, and the scan
/// goes on after it (the next record may take its global offset or a later one).
pub fn scan(bytes: &[u8], path: &Path, base: u64, key: Option<&AuthKey>) -> Scan {
    let mut out = Scan::default();
    let end = bytes.len() as u64;
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut expected = base;
    let mut tampered_run = 0u64;
    while pos < end {
        let here = &bytes[pos as usize..];
        let decoded = decode(here, key);
        if let Err(DecodeError::Unauthenticated(why)) = &decoded {
            let len = announced_len(here).map_or(end - pos, |l| l as u64);
            out.damaged.push(Damage { tampered: true, ..Damage::new(path, pos, len, why.clone()) });
            pos += len;
            tampered_run += 1;
            continue;
        }
        let fits = |offset: u64| (expected..=expected + tampered_run).contains(&offset);
        let why = match decoded {
            Ok(f) if fits(f.header.offset) => {
                expected = f.header.offset;
                tampered_run = 0;
                let tombstone = if f.header.kind == KIND_TOMBSTONE { decode_tombstone(f.payload) } else { None };
                if f.header.kind != KIND_TOMBSTONE || tombstone.is_some() {
                    out.records.push(Found {
                        pos,
                        len: f.len as u32,
                        stream: f.stream.to_owned(),
                        header: f.header,
                        tombstone,
                    });
                    pos += f.len as u64;
                    // A crafted base near u64::MAX must not overflow (no real store gets there).
                    expected = expected.saturating_add(1);
                    continue;
                }
                "malformed tombstone".to_string()
            }
            Ok(f) => format!("record offset {} where {expected} was expected", f.header.offset),
            Err(e) => reason(&e),
        };
        match resync(bytes, pos, expected, key) {
            Some((next, offset)) => {
                out.damaged.push(Damage::new(path, pos, next - pos, why));
                pos = next;
                expected = offset;
            }
            None => {
                out.tail = Some(Tail { offset: pos, bytes: end - pos, records: count_frames(bytes, pos), reason: why });
                break;
            }
        }
    }
    drop_cut_batch(&mut out, end);
    out
}

/// A write cut short by a crash ends with whole records that say more of their batch
/// follow: the batch was never completed, so it goes whole, with the torn tail.
fn drop_cut_batch(out: &mut Scan, end: u64) {
    let more = |r: &Found| r.header.flags & FLAG_BATCH_MORE != 0;
    let mut dropped = 0;
    while out.records.last().is_some_and(more) {
        out.records.pop();
        dropped += 1;
    }
    if dropped == 0 {
        return;
    }
    let offset = out.records.last().map_or(SEGMENT_HEADER_LEN as u64, |r| r.pos + u64::from(r.len));
    let torn = out.tail.take().map_or(0, |t| t.records);
    out.damaged.retain(|d| d.offset < offset);
    out.tail = Some(Tail {
        offset,
        bytes: end - offset,
        records: dropped + torn,
        reason: format!("a batch cut short (torn write): its {dropped} whole records are dropped with it"),
    });
}

/// The position and global offset of the next valid record after damage at `from`. A candidate
/// must carry a plausible global offset before its CRC is computed, which keeps the
/// byte-by-byte search cheap.
fn resync(bytes: &[u8], from: u64, expected: u64, key: Option<&AuthKey>) -> Option<(u64, u64)> {
    let end = bytes.len() as u64;
    let mut q = from + 1;
    while q + MIN_FRAME <= end {
        let cand = &bytes[q as usize..];
        let max_offset = expected.saturating_add((q - from) / MIN_FRAME + 1);
        let offset = offset_field(cand).unwrap_or(0);
        let plausible =
            (expected..=max_offset).contains(&offset) && announced_len(cand).is_some_and(|l| q + l as u64 <= end);
        if plausible && decode(cand, key).is_ok() {
            return Some((q, offset));
        }
        q += 1;
    }
    None
}

/// How many frames the bytes from `pos` seem to hold, following their length fields.
fn count_frames(bytes: &[u8], mut pos: u64) -> u64 {
    let end = bytes.len() as u64;
    let mut n = 0;
    while pos < end {
        n += 1;
        match announced_len(&bytes[pos as usize..]) {
            Some(l) => pos += l as u64,
            None => break,
        }
    }
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_segment_header;
    use crate::record::encode;

    fn segment(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut b = encode_segment_header(100, 0, 0).to_vec();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(b.len() as u64);
            let payload = vec![i as u8; 50];
            let h = Header { offset: 100 + i, seq: i + 1, timestamp_us: 1, kind: 2, flags: 0, raw_len: 50 };
            encode(&mut b, &h, "s", &payload, None);
        }
        (b, starts)
    }

    #[test]
    fn clean_segment_has_no_damage() {
        let (b, _) = segment(5);
        let s = scan(&b, Path::new("x"), 100, None);
        assert_eq!(s.records.len(), 5);
        assert!(s.damaged.is_empty() && s.tail.is_none());
    }

    #[test]
    fn cut_at_every_offset_of_the_last_record_is_a_tail() {
        let (b, starts) = segment(3);
        let last = starts[2] as usize;
        for cut in last + 1..b.len() {
            let s = scan(&b[..cut], Path::new("x"), 100, None);
            assert_eq!(s.records.len(), 2, "cut {cut}");
            let tail = s.tail.expect("tail");
            assert_eq!((tail.offset, tail.bytes, tail.records), (last as u64, (cut - last) as u64, 1));
            assert!(s.damaged.is_empty());
        }
    }

    #[test]
    fn a_flipped_byte_before_valid_records_is_damage_not_tail() {
        let (mut b, starts) = segment(4);
        b[starts[1] as usize + 45] ^= 0xff;
        let s = scan(&b, Path::new("x"), 100, None);
        assert_eq!(s.records.len(), 3);
        assert!(s.tail.is_none());
        assert_eq!(s.damaged.len(), 1);
        assert_eq!(s.damaged[0].offset, starts[1]);
        assert_eq!(s.damaged[0].length, starts[2] - starts[1]);
    }

    #[test]
    fn a_flipped_length_field_still_resyncs() {
        let (mut b, starts) = segment(4);
        b[starts[1] as usize + 5] ^= 0x7f;
        let s = scan(&b, Path::new("x"), 100, None);
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.damaged.len(), 1);
        assert_eq!(s.damaged[0].offset, starts[1]);
    }

    #[test]
    fn a_record_with_the_wrong_offset_is_damage() {
        let (b, _) = segment(2);
        let s = scan(&b, Path::new("x"), 99, None);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.damaged.len(), 1);
        assert_eq!(s.damaged[0].offset, SEGMENT_HEADER_LEN as u64);
    }

    fn keyed_segment(n: u64, key: &AuthKey) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut b = encode_segment_header(100, 0, key.id()).to_vec();
        let mut originals = Vec::new();
        for i in 0..n {
            let payload = vec![i as u8; 20 + i as usize];
            let h = Header {
                offset: 100 + i,
                seq: i + 1,
                timestamp_us: 1,
                kind: 2,
                flags: 0,
                raw_len: payload.len() as u32,
            };
            let start = b.len();
            encode(&mut b, &h, "s", &payload, Some(key));
            originals.push(b[start..].to_vec());
        }
        (b, originals)
    }

    #[test]
    fn a_tampered_record_is_damage_of_its_own_length_and_the_next_records_still_count() {
        let key = AuthKey::new(b"scan test key, sixteen+").expect("key");
        let (mut b, originals) = keyed_segment(4, &key);
        let at = SEGMENT_HEADER_LEN + originals[0].len();
        let len = originals[1].len();
        b[at + 45] ^= 1;
        let crc = crc32c::crc32c(&b[at + 4..at + len]);
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        let s = scan(&b, Path::new("x"), 100, Some(&key));
        assert_eq!(s.records.iter().map(|r| r.header.seq).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(s.tail.is_none());
        assert_eq!(s.damaged.len(), 1);
        assert!(s.damaged[0].tampered);
        assert_eq!((s.damaged[0].offset, s.damaged[0].length), (at as u64, len as u64));
    }

    proptest::proptest! {
        /// Whatever is done to a keyed segment's bytes (a CRC set again or not), a keyed
        /// scan never panics and accepts only frames byte-identical to ones written.
        #[test]
        fn a_keyed_scan_accepts_only_frames_that_were_written(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..=255), 1..6),
            fix_crc_of in proptest::option::of(0usize..6),
        ) {
            let key = AuthKey::new(b"scan test key, sixteen+").expect("key");
            let (mut b, originals) = keyed_segment(6, &key);
            let mut starts = vec![SEGMENT_HEADER_LEN];
            for o in &originals {
                starts.push(starts[starts.len() - 1] + o.len());
            }
            for (at, mask) in &edits {
                let i = SEGMENT_HEADER_LEN + at.index(b.len() - SEGMENT_HEADER_LEN);
                b[i] ^= mask;
            }
            if let Some(f) = fix_crc_of {
                let (from, to) = (starts[f], starts[f + 1]);
                let crc = crc32c::crc32c(&b[from + 4..to]);
                b[from..from + 4].copy_from_slice(&crc.to_le_bytes());
            }
            let s = scan(&b, Path::new("x"), 100, Some(&key));
            for r in &s.records {
                let frame = &b[r.pos as usize..(r.pos + u64::from(r.len)) as usize];
                proptest::prop_assert!(originals.iter().any(|o| o.as_slice() == frame), "accepted a frame never written");
            }
        }
    }
}
