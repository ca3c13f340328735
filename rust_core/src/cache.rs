//! The newest record of each `(stream, kind)` that `Log::latest` was asked for, kept
//! decompressed in memory.
//!
//! Who asks for the latest record of a stream asks again: a persistent actor restores
//! its snapshot with `latest` when it starts, and again when a supervisor restarts it in
//! the same process. Once a `(stream, kind)` has been asked for, every append of that
//! kind to that stream replaces its entry, so the next `latest` is a lookup instead of a
//! read, a checksum and a decompression. The index stays the truth: an entry is used
//! only when its sequence number is the one the index names as newest, so a pruned,
//! deleted or compacted stream can never be answered from a stale entry.
//!
//! Bounded by bytes (payload, stream id and a fixed overhead per entry); the least
//! recently used entry goes first. A budget of 0 turns the cache off.

use std::sync::Arc;

use lru::LruCache;

use crate::log::Record;

/// Bytes counted for an entry beyond its payload and stream id (key, node, record).
const ENTRY_OVERHEAD: usize = 96;

type Key = (String, u8);

pub(crate) struct LatestCache {
    budget: usize,
    used: usize,
    /// `None`: asked for while the stream had no record of that kind (yet).
    entries: LruCache<Key, Option<Arc<Record>>>,
    /// Entries per kind: an append of a kind nobody asked for (a journaled message)
    /// is passed over without building a key.
    per_kind: [u32; 256],
}

fn cost(key: &Key, rec: Option<&Arc<Record>>) -> usize {
    ENTRY_OVERHEAD + key.0.len() + rec.map_or(0, |r| r.payload.len())
}

impl LatestCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self { budget, used: 0, entries: LruCache::unbounded(), per_kind: [0; 256] }
    }

    /// The cached record of `(stream, kind)` if it is the one with `seq`.
    pub(crate) fn get(&mut self, stream: &str, kind: u8, seq: u64) -> Option<Arc<Record>> {
        match self.entries.get(&(stream.to_owned(), kind)) {
            Some(Some(r)) if r.seq == seq => Some(Arc::clone(r)),
            _ => None,
        }
    }

    /// Whether appends of `kind` to `stream` should be kept (it was asked for).
    pub(crate) fn wants(&self, stream: &str, kind: u8) -> bool {
        self.per_kind[usize::from(kind)] > 0 && self.entries.contains(&(stream.to_owned(), kind))
    }

    /// Remember what `latest` found for `(stream, kind)`: its newest record, or none.
    /// A record read while an append replaced the entry with a newer one is not kept.
    pub(crate) fn asked(&mut self, stream: &str, kind: u8, found: Option<&Arc<Record>>) {
        let key = (stream.to_owned(), kind);
        if let (Some(Some(have)), Some(new)) = (self.entries.peek(&key), found) {
            if have.seq > new.seq {
                return;
            }
        }
        self.put(key, found.cloned());
    }

    /// An append of `rec`: replaces the entry of its `(stream, kind)` if there is one.
    pub(crate) fn appended(&mut self, rec: Record) {
        let key = (rec.stream.clone(), rec.kind);
        if self.entries.contains(&key) {
            self.put(key, Some(Arc::new(rec)));
        }
    }

    /// Drop every entry of `stream` (deleted), or only of `kind`.
    pub(crate) fn forget(&mut self, stream: &str, kind: Option<u8>) {
        let doomed: Vec<Key> = self
            .entries
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.0 == stream && kind.is_none_or(|x| x == k.1))
            .cloned()
            .collect();
        for key in doomed {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.pop(key) {
            self.used -= cost(key, old.as_ref());
            self.per_kind[usize::from(key.1)] -= 1;
        }
    }

    fn put(&mut self, key: Key, rec: Option<Arc<Record>>) {
        let size = cost(&key, rec.as_ref());
        self.remove(&key);
        if size > self.budget {
            return;
        }
        self.used += size;
        self.per_kind[usize::from(key.1)] += 1;
        self.entries.put(key, rec);
        while self.used > self.budget {
            match self.entries.pop_lru() {
                Some((k, r)) => {
                    self.used -= cost(&k, r.as_ref());
                    self.per_kind[usize::from(k.1)] -= 1;
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: &str, kind: u8, seq: u64, len: usize) -> Record {
        Record { stream: stream.into(), kind, seq, timestamp_us: 7, payload: vec![seq as u8; len] }
    }

    #[test]
    fn an_entry_answers_only_for_the_seq_it_holds() {
        let mut c = LatestCache::new(1 << 20);
        c.asked("a", 1, Some(&Arc::new(rec("a", 1, 3, 10))));
        assert_eq!(c.get("a", 1, 3).map(|r| r.seq), Some(3));
        assert!(c.get("a", 1, 4).is_none());
        assert!(c.get("a", 2, 3).is_none());
    }

    #[test]
    fn a_read_older_than_an_appended_entry_does_not_replace_it() {
        let mut c = LatestCache::new(1 << 20);
        c.asked("a", 1, None);
        c.appended(rec("a", 1, 6, 10));
        c.asked("a", 1, Some(&Arc::new(rec("a", 1, 5, 10)))); // read before that append landed
        assert!(c.get("a", 1, 6).is_some());
        c.asked("a", 1, None); // the index says none any more: pruned
        assert!(c.get("a", 1, 6).is_none());
    }

    #[test]
    fn appends_refresh_only_what_was_asked_for() {
        let mut c = LatestCache::new(1 << 20);
        c.asked("a", 1, None);
        c.appended(rec("a", 1, 1, 10));
        c.appended(rec("b", 1, 1, 10));
        assert!(c.get("a", 1, 1).is_some());
        assert!(!c.wants("b", 1));
        assert!(c.get("b", 1, 1).is_none());
    }

    #[test]
    fn the_least_recently_used_entry_goes_when_over_budget() {
        let mut c = LatestCache::new(3 * (ENTRY_OVERHEAD + 1 + 100));
        for s in ["a", "b", "c"] {
            c.asked(s, 1, Some(&Arc::new(rec(s, 1, 1, 100))));
        }
        assert!(c.get("a", 1, 1).is_some()); // a is now the most recent
        c.asked("d", 1, Some(&Arc::new(rec("d", 1, 1, 100))));
        assert!(c.get("b", 1, 1).is_none());
        assert!(c.get("a", 1, 1).is_some() && c.get("c", 1, 1).is_some() && c.get("d", 1, 1).is_some());
        assert!(c.used <= c.budget);
    }

    #[test]
    fn a_record_over_budget_or_a_zero_budget_keeps_nothing() {
        let mut c = LatestCache::new(ENTRY_OVERHEAD + 10);
        c.asked("a", 1, Some(&Arc::new(rec("a", 1, 1, 100))));
        assert!(c.get("a", 1, 1).is_none());
        assert_eq!(c.used, 0);
        let mut off = LatestCache::new(0);
        off.asked("a", 1, None);
        assert!(!off.wants("a", 1));
    }

    #[test]
    fn forgetting_a_stream_frees_its_entries() {
        let mut c = LatestCache::new(1 << 20);
        c.asked("a", 1, Some(&Arc::new(rec("a", 1, 1, 100))));
        c.asked("a", 2, Some(&Arc::new(rec("a", 2, 2, 100))));
        c.asked("b", 1, Some(&Arc::new(rec("b", 1, 1, 100))));
        c.forget("a", Some(2));
        assert!(c.get("a", 2, 2).is_none() && c.get("a", 1, 1).is_some());
        c.forget("a", None);
        assert!(c.get("a", 1, 1).is_none() && c.get("b", 1, 1).is_some());
        assert_eq!(c.used, cost(&("b".into(), 1), Some(&Arc::new(rec("b", 1, 1, 100)))));
        assert_eq!((c.per_kind[1], c.per_kind[2]), (1, 0));
        assert!(!c.wants("a", 2) && c.wants("b", 1));
    }
}
