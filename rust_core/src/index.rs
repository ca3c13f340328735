//! The in-memory index: per stream, the last sequence number, the newest record of
//! each kind, the deletion watermarks written by tombstones, which sealed segments
//! hold its records, and its entries in the active segment.

use std::collections::HashMap;

use crate::format::{Entry, IndexSummary, StreamSummary, KIND_TOMBSTONE, TOMBSTONE_ALL_KINDS};

/// Where a record is: its segment (by base offset) and its entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Base offset of the segment.
    pub seg: u64,
    /// The entry (seq, position, length, kind).
    pub entry: Entry,
}

/// Everything the index knows about one stream.
#[derive(Debug, Default)]
pub struct StreamIdx {
    /// Last sequence number assigned (tombstones repeat it, never advance it).
    pub last_seq: u64,
    /// The newest record of each kind (it may be dead: check `is_dead`).
    pub latest: Vec<Loc>,
    /// Every record with `seq <= del_all` is deleted.
    pub del_all: u64,
    /// Per kind: every record of that kind with `seq <= upto` is deleted.
    pub del_kind: Vec<(u8, u64)>,
    /// Sealed segments holding entries of this stream, ascending.
    pub sealed: Vec<u64>,
    /// Entries in the active segment, in file order.
    pub active: Vec<Entry>,
    /// Highest seq of this stream's records in the active segment (0: none).
    pub active_last_seq: u64,
    /// Tombstones written to the active segment (consolidated per target kind).
    pub active_tombstones: Vec<(u8, u64)>,
}

fn raise(list: &mut Vec<(u8, u64)>, kind: u8, upto: u64) {
    match list.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, u)) => *u = (*u).max(upto),
        None => list.push((kind, upto)),
    }
}

impl StreamIdx {
    /// True when a record of `kind` with `seq` has been deleted by a tombstone.
    pub fn is_dead(&self, kind: u8, seq: u64) -> bool {
        seq <= self.del_all || self.del_kind.iter().any(|&(k, u)| k == kind && seq <= u)
    }

    /// True when every record ever written to the stream is deleted.
    pub fn is_deleted(&self) -> bool {
        self.last_seq <= self.del_all
    }

    /// Apply a tombstone.
    pub fn apply_tombstone(&mut self, target: u8, upto: u64) {
        if target == TOMBSTONE_ALL_KINDS {
            self.del_all = self.del_all.max(upto);
        } else {
            raise(&mut self.del_kind, target, upto);
        }
    }

    /// The current deletion watermarks, as tombstones `(target, upto)`.
    pub fn tombstones(&self) -> Vec<(u8, u64)> {
        let mut t: Vec<(u8, u64)> = self.del_kind.iter().copied().filter(|&(_, u)| u > self.del_all).collect();
        if self.del_all > 0 {
            t.push((TOMBSTONE_ALL_KINDS, self.del_all));
        }
        t
    }

    /// Make `loc` the newest of its kind if it is at least as new (later copies win ties).
    fn offer_latest(&mut self, loc: Loc) {
        match self.latest.iter_mut().find(|l| l.entry.kind == loc.entry.kind) {
            Some(l) if l.entry.seq <= loc.entry.seq => *l = loc,
            Some(_) => {}
            None => self.latest.push(loc),
        }
    }

    /// The newest live record of `kind`.
    pub fn latest_of(&self, kind: u8) -> Option<Loc> {
        self.latest.iter().find(|l| l.entry.kind == kind).copied().filter(|l| !self.is_dead(kind, l.entry.seq))
    }

    /// Record a frame written to the active segment `seg`.
    pub fn add_active(&mut self, seg: u64, entry: Entry, tombstone: Option<(u8, u64)>) {
        self.last_seq = self.last_seq.max(entry.seq);
        self.active_last_seq = self.active_last_seq.max(entry.seq);
        if entry.kind == KIND_TOMBSTONE {
            if let Some((target, upto)) = tombstone {
                self.apply_tombstone(target, upto);
                raise(&mut self.active_tombstones, target, upto);
            }
        } else {
            self.active.push(entry);
            self.offer_latest(Loc { seg, entry });
        }
    }

    /// Take in the summary of a sealed segment (segments are applied in file order).
    pub fn add_sealed(&mut self, seg: u64, s: &StreamSummary) {
        self.last_seq = self.last_seq.max(s.last_seq);
        if s.entries > 0 && !self.sealed.contains(&seg) {
            self.sealed.push(seg);
            self.sealed.sort_unstable();
        }
        for &entry in &s.latest {
            self.offer_latest(Loc { seg, entry });
        }
        for &(target, upto) in &s.tombstones {
            self.apply_tombstone(target, upto);
        }
    }

    /// Forget a sealed segment that compaction removed (its live records were copied).
    pub fn drop_sealed(&mut self, seg: u64) {
        self.sealed.retain(|&s| s != seg);
        self.latest.retain(|l| l.seg != seg);
    }

    /// This stream's part of the active segment as a sealed summary and its entries
    /// (sorted by seq); `None` if the stream has nothing there. Changes nothing:
    /// `reset_active` follows once the index file is safely written.
    pub fn summarize(&self, stream: &str) -> Option<(StreamSummary, Vec<Entry>)> {
        if self.active_last_seq == 0 {
            return None;
        }
        let mut entries = self.active.clone();
        entries.sort_by_key(|e| (e.seq, e.pos));
        let mut latest: Vec<Entry> = Vec::new();
        for e in &entries {
            match latest.iter_mut().find(|l| l.kind == e.kind) {
                Some(l) => *l = *e,
                None => latest.push(*e),
            }
        }
        let summary = StreamSummary {
            stream: stream.to_owned(),
            last_seq: self.active_last_seq,
            max_entry_seq: entries.last().map_or(0, |e| e.seq),
            latest,
            tombstones: self.active_tombstones.clone(),
            ..StreamSummary::default()
        };
        Some((summary, entries))
    }

    /// The active segment `seg` is now sealed: its entries are found through its index.
    pub fn reset_active(&mut self, seg: u64) {
        if !self.active.is_empty() && !self.sealed.contains(&seg) {
            self.sealed.push(seg);
            self.sealed.sort_unstable();
        }
        self.active.clear();
        self.active_tombstones.clear();
        self.active_last_seq = 0;
    }
}

/// The whole in-memory index.
#[derive(Debug, Default)]
pub struct Index {
    /// Per stream.
    pub streams: HashMap<String, StreamIdx>,
    /// Summaries of the sealed segments, by base offset.
    pub sealed: std::collections::BTreeMap<u64, SealedSeg>,
    /// Base offset of the active segment.
    pub active_base: u64,
}

/// A sealed segment as the index knows it.
#[derive(Debug)]
pub struct SealedSeg {
    /// Length of the segment file.
    pub len: u64,
    /// Records in it.
    pub records: u64,
    /// Per-stream summaries, to find each stream's entries in the index file.
    pub streams: HashMap<String, StreamSummary>,
}

impl Index {
    /// Take in a sealed segment's index summary.
    pub fn add_sealed(&mut self, summary: IndexSummary) {
        let mut streams = HashMap::with_capacity(summary.streams.len());
        for s in summary.streams {
            self.streams.entry(s.stream.clone()).or_default().add_sealed(summary.base, &s);
            streams.insert(s.stream.clone(), s);
        }
        self.sealed.insert(summary.base, SealedSeg { len: summary.segment_len, records: summary.records, streams });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, kind: u8) -> Entry {
        Entry { seq, pos: seq * 10, len: 10, kind }
    }

    #[test]
    fn tombstones_delete_prefixes_per_kind_and_whole_streams() {
        let mut s = StreamIdx::default();
        for seq in 1..=6 {
            s.add_active(0, e(seq, if seq % 2 == 0 { 1 } else { 2 }), None);
        }
        s.add_active(0, Entry { kind: KIND_TOMBSTONE, ..e(6, 0) }, Some((1, 4)));
        assert!(s.is_dead(1, 2) && s.is_dead(1, 4) && !s.is_dead(1, 6) && !s.is_dead(2, 3));
        assert_eq!(s.latest_of(1).map(|l| l.entry.seq), Some(6));
        assert_eq!(s.last_seq, 6);
        s.apply_tombstone(TOMBSTONE_ALL_KINDS, 6);
        assert!(s.is_deleted());
        assert_eq!(s.latest_of(1), None);
        assert_eq!(s.tombstones(), vec![(0, 6)]);
    }

    #[test]
    fn sealing_summarizes_then_resets_the_active_part() {
        let mut s = StreamIdx::default();
        s.add_active(5, e(2, 2), None);
        s.add_active(5, e(1, 2), None);
        s.add_active(5, e(3, 1), None);
        let (sum, entries) = s.summarize("a").expect("has records");
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(sum.last_seq, 3);
        assert_eq!(sum.latest.len(), 2);
        assert_eq!(s.active.len(), 3, "summarize changes nothing");
        s.reset_active(5);
        assert!(s.active.is_empty() && s.sealed == vec![5]);
        assert!(s.summarize("a").is_none());
    }
}
