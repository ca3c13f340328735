//! The segment log: open and recovery, append with a durability policy, indexed reads,
//! retention (tombstones), compaction and verification.
//!
//! Locks, always taken in this order: `writer` (one appender at a time; also held by
//! prune, delete and compaction), then `index`, then `handles`. Readers take only
//! `index` (read) and `handles`; `handles` is held only to look up or swap an open
//! file (one is opened before it is taken). Durability waits use `sync` alone, after
//! `writer` is released, so concurrent appenders share one fdatasync (group commit).
//! The `cache` lock is taken last and alone: nothing else is locked while it is held.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use crate::auth::AuthKey;
use crate::cache::LatestCache;
use crate::codec;
use crate::error::{CoreError, IoContext, Result};
use crate::format::{
    decode_entries, decode_index_header, decode_manifest, decode_segment_header, decode_summary, encode_index,
    encode_manifest, encode_segment_header, encode_tombstone, index_name, parse_name, segment_name, Entry, HeaderError,
    IndexSummary, Manifest, FIRST_RESERVED_KIND, FIRST_USER_KIND, FLAG_BATCH_MORE, FLAG_ZSTD, FORMAT_VERSION,
    INDEX_ENTRY_LEN, INDEX_HEADER_LEN, INDEX_SUFFIX, KEY_ID_AT, KIND_TOMBSTONE, LOCK_FILE, MAC_LEN, MANIFEST_FILE,
    MAX_PAYLOAD, MAX_STREAM_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_SUFFIX, TOMBSTONE_ALL_KINDS,
};
use crate::fs::{ClosedFile, FileSystem, Handle, LockGuard, LockHeld, StdFs};
use crate::index::{Index, Loc, StreamIdx};
use crate::record::{self, Header};
use crate::scan::{scan, Damage, Scan};

/// `close()` seals the active segment when it holds at least this many bytes, so that
/// the next open scans a nearly empty one.
const SEAL_AT_CLOSE_BYTES: u64 = 1 << 20;

/// When an append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the kernel when append returns: survives a killed process, not a power loss.
    Process,
    /// As `Process`, plus a background fdatasync at most every `group_commit`.
    Group,
    /// fdatasync before append returns (concurrent appenders share it).
    Sync,
}

impl Durability {
    /// Parse `"process"`, `"group"` or `"sync"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "process" => Ok(Self::Process),
            "group" => Ok(Self::Group),
            "sync" => Ok(Self::Sync),
            other => Err(CoreError::InvalidArgument(format!(
                "durability must be 'process', 'group' or 'sync', not {other:?}"
            ))),
        }
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Group => "group",
            Self::Sync => "sync",
        }
    }
}

/// What open does with damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Truncate a torn tail of the active segment; any other damage is an error.
    TolerateTailCorruption,
    /// Also skip (and report) damage anywhere else.
    TolerateAnyCorruption,
}

/// Options of a log.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability policy.
    pub durability: Durability,
    /// Longest time between a write and its fdatasync under `Group`.
    pub group_commit: Duration,
    /// Roll to a new segment once the active one reaches this many bytes.
    pub segment_bytes: u64,
    /// zstd level.
    pub compression_level: i32,
    /// Payloads shorter than this are stored raw.
    pub compress_min_bytes: usize,
    /// Recovery mode.
    pub recovery: RecoveryMode,
    /// Open without the writer lock and write nothing, not even repairs: a view of
    /// the store as of open, which works beside a live writer. Writing calls fail.
    pub read_only: bool,
    /// With a key, every record written gets an HMAC-SHA256 tag and every record read
    /// must carry a valid one (see `auth`).
    pub auth_key: Option<AuthKey>,
    /// Bytes of memory for the newest record of each `(stream, kind)` that `latest` was
    /// asked for, kept decompressed and refreshed by appends (see `cache`); 0: none.
    pub cache_bytes: usize,
}

/// The values `Options::segment_bytes` takes, as error messages name them.
pub const SEGMENT_BYTES: &str = "an integer from 4096 to 2**64 - 1";
/// The values `Options::compression_level` takes, as error messages name them.
pub const COMPRESSION_LEVELS: &str = "an integer from 1 to 22";

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::Process,
            group_commit: Duration::from_millis(5),
            segment_bytes: 64 << 20,
            compression_level: 3,
            compress_min_bytes: 256,
            recovery: RecoveryMode::TolerateTailCorruption,
            read_only: false,
            auth_key: None,
            cache_bytes: 64 << 20,
        }
    }
}

/// What opening found and repaired.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Segment files.
    pub segments: u64,
    /// Records in the sealed indexes plus the active segment.
    pub records: u64,
    /// Bytes cut from the active segment's torn tail.
    pub truncated_bytes: u64,
    /// Records those bytes held.
    pub dropped_records: u64,
    /// Damage found (the torn tail, and skipped damage in tolerant mode).
    pub damaged: Vec<Damage>,
    /// Index files rebuilt from their segment.
    pub rebuilt_indexes: Vec<PathBuf>,
    /// How long open took.
    pub elapsed: Duration,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Segment files scanned.
    pub segments: u64,
    /// Valid records.
    pub records: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Every damaged range.
    pub damaged: Vec<Damage>,
    /// What the valid records hold, per stream and kind (sorted).
    pub kinds: Vec<KindStats>,
}

/// The records of one kind in one stream, as `verify` counted them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Stream id.
    pub stream: String,
    /// Record kind.
    pub kind: u8,
    /// Records not deleted.
    pub live: u64,
    /// Records deleted by a tombstone, whose space compaction has not reclaimed yet.
    pub dead: u64,
    /// Payload bytes as stored (compressed or raw), live records.
    pub stored_bytes: u64,
    /// Payload bytes once decompressed, live records.
    pub raw_bytes: u64,
}

/// What `compact` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Sealed segments removed.
    pub segments_removed: u64,
    /// Live records copied into the active segment.
    pub records_copied: u64,
    /// Bytes of segment files before.
    pub bytes_before: u64,
    /// Bytes of segment files after.
    pub bytes_after: u64,
}

/// Where a record is, with its segment file held open: reading it works even if
/// compaction unlinks the file meanwhile, or the log closes its own handle on it.
#[derive(Clone)]
pub struct Located {
    /// The record's segment and index entry.
    pub loc: Loc,
    handle: Handle,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Stream id.
    pub stream: String,
    /// Kind.
    pub kind: u8,
    /// Sequence number in the stream.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// Decompressed payload.
    pub payload: Vec<u8>,
}

/// Counters.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Segment files.
    pub segments: u64,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Streams not deleted.
    pub streams: u64,
    /// Records appended since open.
    pub appended: u64,
    /// fdatasyncs of segment data since open.
    pub syncs: u64,
}

/// A record to append.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Stream id (1 to 255 UTF-8 bytes).
    pub stream: &'a str,
    /// Kind (not 0, not the tombstone kind).
    pub kind: u8,
    /// Payload.
    pub payload: &'a [u8],
    /// Compress the payload (when at least `compress_min_bytes` and zstd shrinks it);
    /// `false` stores it raw, as a short payload is. Compaction compresses it later
    /// (see `Log::compact`): a caller that cannot wait for zstd writes raw now.
    pub compress: bool,
}

/// Records checked and compressed, not yet written (see `Log::try_append_many`).
pub struct PreparedBatch(Vec<Prepared>);

/// What `Log::try_append_many` did.
pub enum TryAppend {
    /// Written: `(seq, timestamp_us)` of each record.
    Done(Vec<(u64, i64)>),
    /// Not written, as it would have waited: pass the batch to `Log::append_prepared`.
    Wait(PreparedBatch),
}

/// A record ready to be framed. `seq`/`timestamp_us` are set for copies (compaction)
/// and assigned by the writer for new records.
struct Prepared {
    stream: String,
    kind: u8,
    seq: Option<u64>,
    timestamp_us: Option<i64>,
    flags: u8,
    raw_len: u32,
    stored: Vec<u8>,
    tombstone: Option<(u8, u64)>,
    /// The payload, kept for the latest-record cache (its `(stream, kind)` is watched).
    cached: Option<Vec<u8>>,
}

struct Writer {
    file: Handle,
    base: u64,
    /// End of the valid data in the active file.
    pos: u64,
    next_offset: u64,
    /// Bytes written since open (monotonic across segments): the unit of `sync`.
    lsn: u64,
    appended: u64,
    buf: Vec<u8>,
    /// Set when an fdatasync failed: the kernel may have dropped the dirty pages, so
    /// nothing after it can be acknowledged as durable.
    failed: Option<String>,
}

#[derive(Default)]
struct SyncState {
    synced: u64,
    syncing: bool,
    syncs: u64,
    /// How long the last fdatasync took (bounds the commit delay).
    last_sync: Duration,
    /// Threads waiting for an fdatasync to finish.
    waiting: usize,
    /// Appenders in flight when the last fdatasync finished: the group to gather.
    peak: usize,
}

/// Highest global offset a store may reach: no store writes 2^63 records, so open
/// takes a larger one for damage, and appends past it are refused (offsets never overflow).
const MAX_OFFSET: u64 = 1 << 63;

/// Longest run of adjacent records read with one `pread`.
const MAX_READ_RUN: u64 = 4 << 20;

/// Longest commit delay (see `Inner::sync_to`).
const MAX_COMMIT_DELAY: Duration = Duration::from_micros(500);

/// Sealed segment files kept open for reads, at most (see `Handles`). Reopening one
/// costs an `open(2)`, less than the read it serves; 32 keeps a store's share small
/// even under a descriptor limit of 64.
pub const OPEN_SEALED_SEGMENTS: usize = 32;

/// Sealed segments a read-only view opens at its open and holds while it lives (the
/// newest ones; 8 GiB of segments at the default size; with their index files, at most
/// twice as many descriptors): a compaction by the writer that removes one of them later
/// does not take it from the view.
pub const VIEW_HELD_SEGMENTS: usize = 128;

/// The open segment files: the active segment's, never closed before the log is, and
/// the sealed segments read most recently, the least recently used closed first. A
/// `Located` holds its own `Arc`, so a read in flight keeps its file open however long
/// it takes, after eviction or compaction.
struct Handles {
    active: (u64, Handle),
    sealed: LruCache<u64, Handle>,
    /// The index files a read-only view holds, by segment (empty for a writer).
    indexes: HashMap<u64, Handle>,
}

/// A sealed segment a read-only view holds open: its base, its file, its index file
/// (None: it has none, or it was damaged at open).
type Held = (u64, Handle, Option<Handle>);

impl Handles {
    /// The active segment's file and, for a read-only view, the sealed ones it holds.
    fn new(base: u64, file: Handle, held: Vec<Held>) -> Self {
        let bound = NonZeroUsize::new(OPEN_SEALED_SEGMENTS.max(held.len())).unwrap_or(NonZeroUsize::MIN);
        let mut sealed = LruCache::new(bound);
        let mut indexes = HashMap::new();
        for (base, file, index) in held {
            sealed.put(base, file);
            indexes.extend(index.map(|i| (base, i)));
        }
        Self { active: (base, file), sealed, indexes }
    }

    /// The index file of sealed segment `base`, if this view holds it.
    fn index(&self, base: u64) -> Option<Handle> {
        self.indexes.get(&base).cloned()
    }

    fn get(&mut self, base: u64) -> Option<Handle> {
        if self.active.0 == base {
            return Some(Arc::clone(&self.active.1));
        }
        self.sealed.get(&base).cloned()
    }

    /// Keep `file`, just opened for the sealed segment `base`, unless another reader
    /// kept one meanwhile; returns the one kept.
    fn keep(&mut self, base: u64, file: Handle) -> Handle {
        Arc::clone(self.sealed.get_or_insert(base, || file))
    }

    /// Close the least recently used sealed segment's file (or an index file a view
    /// holds); false when none is kept. A read in flight keeps its own clone open.
    fn close_one(&mut self) -> bool {
        if self.sealed.pop_lru().is_some() {
            return true;
        }
        let Some(&seg) = self.indexes.keys().next() else { return false };
        self.indexes.remove(&seg).is_some()
    }

    /// Close every file: the log is closing (see `ClosedFile`).
    fn close_all(&mut self) {
        self.sealed.clear();
        self.indexes.clear();
        self.active.1 = Arc::new(ClosedFile);
    }

    /// `file` is the new active segment; the old one is now sealed.
    fn rolled(&mut self, base: u64, file: Handle) {
        let (old, old_file) = std::mem::replace(&mut self.active, (base, file));
        self.sealed.put(old, old_file);
    }
}

/// Decoded entries blocks of sealed segments, least recently used dropped past
/// `ENTRIES_CACHE_BYTES` (an LRU list: O(1) per lookup and per eviction, however many
/// small blocks a store of many streams holds). A sealed segment never changes, so a
/// block stays right until its segment is compacted away (then nothing asks for it: the
/// index no longer lists the segment) or its index is rebuilt (`forget_segment`).
struct EntriesCache {
    blocks: LruCache<String, Arc<Vec<Entry>>>,
    bytes: usize,
}

/// Bytes of decoded entries the store keeps (about 1.4 million records' entries).
pub const ENTRIES_CACHE_BYTES: usize = 32 << 20;

fn block_bytes(block: &[Entry]) -> usize {
    block.len().saturating_mul(std::mem::size_of::<Entry>())
}

impl Default for EntriesCache {
    fn default() -> Self {
        Self { blocks: LruCache::unbounded(), bytes: 0 }
    }
}

impl EntriesCache {
    fn get(&mut self, key: &str) -> Option<Arc<Vec<Entry>>> {
        self.blocks.get(key).cloned()
    }

    /// Keep `entries` under `key` (unless it alone is over the budget); return them.
    fn put(&mut self, key: String, entries: Vec<Entry>) -> Arc<Vec<Entry>> {
        let block = Arc::new(entries);
        let size = block_bytes(&block);
        if size > ENTRIES_CACHE_BYTES {
            return block;
        }
        if let Some(old) = self.blocks.put(key, Arc::clone(&block)) {
            self.bytes = self.bytes.saturating_sub(block_bytes(&old));
        }
        self.bytes = self.bytes.saturating_add(size);
        while self.bytes > ENTRIES_CACHE_BYTES {
            let Some((_, gone)) = self.blocks.pop_lru() else { break };
            self.bytes = self.bytes.saturating_sub(block_bytes(&gone));
        }
        block
    }

    /// Drop every block of segment `seg` (rare: an index rebuilt from its segment).
    fn forget_segment(&mut self, seg: u64) {
        let prefix = format!("{seg}/");
        let gone: Vec<String> =
            self.blocks.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        for key in gone {
            if let Some(block) = self.blocks.pop(&key) {
                self.bytes = self.bytes.saturating_sub(block_bytes(&block));
            }
        }
    }
}

struct Inner {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    opts: Options,
    writer: Mutex<Writer>,
    index: RwLock<Index>,
    handles: Mutex<Handles>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
    /// Threads inside `append_many` / `prune` / `delete_stream` right now.
    appenders: std::sync::atomic::AtomicUsize,
    closed: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    /// Serialises rebuilds of damaged index files found by readers.
    rebuilding: Mutex<()>,
    report: OpenReport,
    cache: Mutex<LatestCache>,
    /// Decoded entries blocks of sealed segments, by `"<seg>/<stream>"` (`sealed_entries`).
    entries: Mutex<EntriesCache>,
    /// The process that opened the log. A process forked from it inherits the log
    /// (memory, descriptors, the lock's open file description) but not its threads, so
    /// a lock one of them held stays held: `check_open` refuses any other process
    /// before taking a lock, and `close` there lets go of what it can without waiting.
    opened_by: u32,
}

/// An open segment log (one writer process per directory).
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// This process's id as `Inner::check_process` sees it: read again at every open and
/// close and by `note_fork`, not at every call (getpid is a system call: two of them made
/// a small append a fifth slower, and a `latest` served from memory two fifths).
static PROCESS_ID: AtomicU32 = AtomicU32::new(0);

/// Read this process's id into `PROCESS_ID`, and return it.
fn process_id_now() -> u32 {
    let id = std::process::id();
    PROCESS_ID.store(id, Ordering::Relaxed);
    id
}

/// Tell the logs that this process may be a fork: every log opened by another process
/// refuses it from now on (`CoreError::Forked`). The Python binding calls it in every
/// child right after `os.fork()` (an `os.register_at_fork` hook). Without it a child
/// is still noticed by `close`, `Drop` and any open, which read the id themselves.
pub fn note_fork() {
    process_id_now();
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn header_error(path: &Path, e: HeaderError) -> CoreError {
    match e {
        HeaderError::Version(found) => {
            CoreError::FormatVersion { path: path.to_owned(), found, supported: FORMAT_VERSION }
        }
        HeaderError::Invalid(reason) => CoreError::corrupt(path, 0, reason),
    }
}

/// A segment header's key id must be the one of the key the store was opened with (0
/// for none), in every recovery mode: a keyed store accepts no unauthenticated segment,
/// and a store opened without its key does not read past the MACs.
fn check_key_id(path: &Path, found: u32, key: Option<&AuthKey>) -> Result<()> {
    let ours = key.map_or(0, AuthKey::id);
    let reason = match (found, ours) {
        _ if found == ours => return Ok(()),
        (_, 0) => "the segment is authenticated (written with a key): open the store with its auth_key",
        (0, _) => "the segment is not authenticated (written without a key) but an auth_key was given",
        _ => "the segment was written with another auth_key",
    };
    Err(CoreError::authentication(path, KEY_ID_AT, reason))
}

/// The error for damage found where none may be: tampering is an authentication error.
fn damage_error(d: &Damage, describe: impl Fn(&str) -> String) -> CoreError {
    if d.tampered {
        CoreError::authentication(&d.path, d.offset, d.reason.clone())
    } else {
        CoreError::corrupt(&d.path, d.offset, describe(&d.reason))
    }
}

fn read_all(h: &Handle, path: &Path) -> Result<Vec<u8>> {
    let len = h.size().at(path)?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| CoreError::corrupt(path, 0, "file too large"))?];
    h.read_exact_at(&mut buf, 0).at(path)?;
    Ok(buf)
}

/// Validate a stream id.
fn check_stream(stream: &str) -> Result<()> {
    if stream.is_empty() || stream.len() > MAX_STREAM_LEN {
        return Err(CoreError::InvalidArgument(format!(
            "stream id must be 1 to {MAX_STREAM_LEN} UTF-8 bytes, got {}",
            stream.len()
        )));
    }
    Ok(())
}

/// Validate a record kind given by a caller: 0, the tombstone (4) and the kinds kept for
/// future formats (7-127) are refused; 1-3, 5, 6 and the user kinds 128-255 are written.
fn check_kind(kind: u8) -> Result<()> {
    if kind == 0 || kind == KIND_TOMBSTONE {
        return Err(CoreError::InvalidArgument(format!("record kind {kind} is reserved")));
    }
    if (FIRST_RESERVED_KIND..FIRST_USER_KIND).contains(&kind) {
        return Err(CoreError::InvalidArgument(format!(
            "record kind {kind} is reserved for future formats ({FIRST_RESERVED_KIND}-{}); user kinds are {FIRST_USER_KIND}-255",
            FIRST_USER_KIND - 1
        )));
    }
    Ok(())
}

impl Log {
    /// Open (or create) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self> {
        Self::open_with(dir, opts, Arc::new(StdFs))
    }

    /// Open (or create) the log in `dir` on the given file system.
    pub fn open_with(dir: impl AsRef<Path>, opts: Options, fs: Arc<dyn FileSystem>) -> Result<Self> {
        let started = Instant::now();
        let dir = dir.as_ref().to_owned();
        if opts.segment_bytes < 4096 {
            return Err(CoreError::InvalidArgument(format!(
                "segment_bytes must be {SEGMENT_BYTES}, got {}",
                opts.segment_bytes
            )));
        }
        if !(1..=22).contains(&opts.compression_level) {
            return Err(CoreError::InvalidArgument(format!(
                "compression_level must be {COMPRESSION_LEVELS}, got {}",
                opts.compression_level
            )));
        }
        let guard = if opts.read_only {
            None
        } else {
            let created = fs.list(&dir).is_err();
            fs.create_dir_all(&dir).at(&dir)?;
            if created {
                // A new store directory is durable only once its parent directory is synced.
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                fs.sync_dir(parent).at(parent)?;
            }
            Some(fs.lock(&dir.join(LOCK_FILE)).map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    let holder = e.get_ref().and_then(|r| r.downcast_ref::<LockHeld>()).and_then(|h| h.0);
                    CoreError::Locked { path: dir.clone(), holder }
                } else {
                    CoreError::io(dir.join(LOCK_FILE), e)
                }
            })?)
        };
        let recovery = Recovery { dir: &dir, fs: fs.as_ref(), opts: &opts };
        let ((writer, index, mut report), held) =
            if opts.read_only { recovery.run_beside_writer()? } else { (recovery.run()?, Vec::new()) };
        let handles = Handles::new(writer.base, Arc::clone(&writer.file), held);
        let opts_cache_bytes = opts.cache_bytes;
        report.elapsed = started.elapsed();
        let inner = Arc::new(Inner {
            dir,
            fs,
            opts,
            writer: Mutex::new(writer),
            index: RwLock::new(index),
            handles: Mutex::new(handles),
            sync: Mutex::new(SyncState::default()),
            synced_cv: Condvar::new(),
            appenders: std::sync::atomic::AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            lock: Mutex::new(guard),
            rebuilding: Mutex::new(()),
            report,
            cache: Mutex::new(LatestCache::new(opts_cache_bytes)),
            entries: Mutex::new(EntriesCache::default()),
            opened_by: process_id_now(),
        });
        let flusher = (inner.opts.durability == Durability::Group && !inner.opts.read_only).then(|| {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || inner.flush_loop())
        });
        Ok(Self { inner, flusher: Mutex::new(flusher) })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// What open found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// `CoreError::Forked` in a process other than the one that opened the log (a
    /// forked child), which may use none of it; takes no lock. For callers that hold a
    /// lock of their own around calls into the log (the Python binding's record iterator).
    pub fn check_process(&self) -> Result<()> {
        self.inner.check_process()
    }

    /// Append one record; returns `(seq, timestamp_us)`.
    pub fn append(&self, stream: &str, kind: u8, payload: &[u8]) -> Result<(u64, i64)> {
        let out = self.append_many(&[NewRecord { stream, kind, payload, compress: true }])?;
        out.first().copied().ok_or_else(|| CoreError::InvalidArgument("nothing appended".into()))
    }

    /// Append records in one write; all or none. Returns `(seq, timestamp_us)` of each.
    pub fn append_many(&self, records: &[NewRecord<'_>]) -> Result<Vec<(u64, i64)>> {
        self.append_prepared(PreparedBatch(self.prepare(records)?))
    }

    /// Write a batch `try_append_many` handed back, waiting for whatever it would not.
    pub fn append_prepared(&self, batch: PreparedBatch) -> Result<Vec<(u64, i64)>> {
        self.inner.check_open()?;
        if batch.0.is_empty() {
            return Ok(Vec::new());
        }
        let _in_flight = self.inner.appending();
        let (assigned, lsn) = {
            let mut w = lock(&self.inner.writer);
            self.inner.write_frames(&mut w, batch.0)?
        };
        self.inner.make_durable(lsn)?;
        Ok(assigned)
    }

    /// `append_many` if it can be done at once, without waiting for anything: the policy
    /// is `process` or `group` (no fdatasync to wait for), the writer is free, and the
    /// records fit in the active segment (no roll). Otherwise nothing is written and the
    /// checked, compressed batch comes back (`TryAppend::Wait`) for `append_prepared`,
    /// so that no payload is compressed twice. For callers that hold a lock of their own
    /// meanwhile (the Python binding keeps the GIL across a small append: handing it
    /// over and taking it back costs more than one write into the page cache).
    pub fn try_append_many(&self, records: &[NewRecord<'_>]) -> Result<TryAppend> {
        let batch = PreparedBatch(self.prepare(records)?);
        if self.inner.opts.durability == Durability::Sync || batch.0.is_empty() {
            return Ok(TryAppend::Wait(batch));
        }
        let mut w = match self.inner.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(TryAppend::Wait(batch)),
        };
        let most: usize = batch.0.iter().map(|r| RECORD_HEADER_LEN + MAC_LEN + r.stream.len() + r.stored.len()).sum();
        if w.pos.saturating_add(most as u64) >= self.inner.opts.segment_bytes {
            return Ok(TryAppend::Wait(batch));
        }
        let (assigned, _lsn) = self.inner.write_frames(&mut w, batch.0)?;
        Ok(TryAppend::Done(assigned))
    }

    /// Check `records` and compress their payloads, ready for `write_frames`.
    fn prepare(&self, records: &[NewRecord<'_>]) -> Result<Vec<Prepared>> {
        self.inner.check_writable("append")?;
        for r in records {
            check_stream(r.stream)?;
            check_kind(r.kind)?;
            if r.payload.len() > MAX_PAYLOAD {
                return Err(CoreError::InvalidArgument(format!(
                    "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
                    r.payload.len()
                )));
            }
        }
        let level = self.inner.opts.compression_level;
        let min = self.inner.opts.compress_min_bytes;
        Ok(records
            .iter()
            .map(|r| {
                let watched = lock(&self.inner.cache).wants(r.stream, r.kind);
                let s = codec::compress(r.payload, level, if r.compress { min } else { usize::MAX });
                Prepared {
                    stream: r.stream.to_owned(),
                    kind: r.kind,
                    seq: None,
                    timestamp_us: None,
                    flags: s.flags,
                    raw_len: r.payload.len() as u32,
                    stored: s.bytes,
                    tombstone: None,
                    cached: watched.then(|| r.payload.to_vec()),
                }
            })
            .collect())
    }

    /// The newest live record of `kind` in `stream`, shared with the latest-record cache
    /// (no copy of its payload is made to keep it there).
    pub fn latest(&self, stream: &str, kind: u8) -> Result<Option<Arc<Record>>> {
        let found = self.latest_loc(stream, kind)?;
        if let Some(hit) = found.as_ref().and_then(|at| lock(&self.inner.cache).get(stream, kind, at.loc.entry.seq)) {
            return Ok(Some(hit));
        }
        let record = found.map(|at| self.inner.read_loc(stream, &at, None)).transpose()?.map(Arc::new);
        lock(&self.inner.cache).asked(stream, kind, record.as_ref());
        Ok(record)
    }

    /// `latest` with only the first `n` bytes of its payload (all of a shorter one), of
    /// which only those are decompressed: a header (a snapshot's watermark) of a payload
    /// of any size costs `n` bytes of memory. Answered from the latest-record cache when
    /// it holds the record, never added to it.
    pub fn latest_head(&self, stream: &str, kind: u8, n: usize) -> Result<Option<Record>> {
        let found = self.latest_loc(stream, kind)?;
        if let Some(hit) = found.as_ref().and_then(|at| lock(&self.inner.cache).get(stream, kind, at.loc.entry.seq)) {
            let payload = hit.payload.get(..n).unwrap_or(&hit.payload).to_vec();
            return Ok(Some(Record { stream: hit.stream.clone(), payload, ..*hit }));
        }
        found.map(|at| self.inner.read_loc(stream, &at, Some(n))).transpose()
    }

    /// Where the newest live record of `kind` in `stream` is.
    fn latest_loc(&self, stream: &str, kind: u8) -> Result<Option<Located>> {
        self.inner.check_open()?;
        let idx = read(&self.inner.index);
        idx.streams.get(stream).and_then(|s| s.latest_of(kind)).map(|loc| self.inner.locate(loc)).transpose()
    }

    /// `latest` if its answer is a record in the latest-record cache, found without I/O
    /// and without waiting for a lock (`None`: call `latest`). For callers that hold a
    /// lock of their own meanwhile (the Python binding keeps the GIL for it).
    pub fn latest_in_memory(&self, stream: &str, kind: u8) -> Option<Arc<Record>> {
        if self.inner.check_open().is_err() {
            return None;
        }
        let seq = {
            let idx = self.inner.index.try_read().ok()?;
            idx.streams.get(stream)?.latest_of(kind)?.entry.seq
        };
        self.inner.cache.try_lock().ok()?.get(stream, kind, seq)
    }

    /// The newest live record of `kind` in each stream; payloads are read and
    /// decompressed on several threads when there is enough to share.
    pub fn latest_many(&self, streams: &[String], kind: u8) -> Result<Vec<Option<Record>>> {
        self.inner.check_open()?;
        let work: Vec<(usize, Located)> = {
            let idx = read(&self.inner.index);
            let mut work = Vec::new();
            for (i, s) in streams.iter().enumerate() {
                if let Some(loc) = idx.streams.get(s).and_then(|st| st.latest_of(kind)) {
                    work.push((i, self.inner.locate(loc)?));
                }
            }
            work
        };
        let bytes: u64 = work.iter().map(|(_, at)| u64::from(at.loc.entry.len)).sum();
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(8);
        let mut out: Vec<Option<Record>> = vec![None; streams.len()];
        if threads < 2 || work.len() < 2 || bytes < 256 * 1024 {
            for (i, at) in &work {
                out[*i] = Some(self.inner.read_loc(&streams[*i], at, None)?);
            }
            return Ok(out);
        }
        let chunk = work.len().div_ceil(threads);
        let results: Vec<Result<Vec<(usize, Record)>>> = std::thread::scope(|scope| {
            let tasks: Vec<_> = work
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter().map(|(i, at)| Ok((*i, self.inner.read_loc(&streams[*i], at, None)?))).collect()
                    })
                })
                .collect();
            tasks
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err(CoreError::InvalidArgument("reader thread panicked".into()))))
                .collect()
        });
        for part in results {
            for (i, rec) in part? {
                out[i] = Some(rec);
            }
        }
        Ok(out)
    }

    /// Where the live records of `stream` with `seq > after_seq` (and a kind in `kinds`)
    /// are, in seq order, the first `limit` of them: a snapshot that later appends and
    /// compaction do not disturb. Pass each to `read_at`.
    pub fn locate(
        &self,
        stream: &str,
        after_seq: u64,
        kinds: Option<&[u8]>,
        limit: Option<usize>,
    ) -> Result<Vec<Located>> {
        self.inner.check_open()?;
        self.inner.live_locs(stream, after_seq, kinds, limit)
    }

    /// Read records of `stream` found by `locate`, in order (adjacent ones with one
    /// read). Returns the records before the first error, and that error.
    pub fn read_many(&self, stream: &str, ats: &[Located]) -> (Vec<Record>, Option<CoreError>) {
        if let Err(e) = self.inner.check_open() {
            return (Vec::new(), Some(e));
        }
        self.inner.read_locs(stream, ats, None)
    }

    /// Read the live records of `stream` after `after_seq`, in seq order.
    pub fn read(&self, stream: &str, after_seq: u64, kinds: Option<&[u8]>) -> Result<Vec<Record>> {
        let ats = self.locate(stream, after_seq, kinds, None)?;
        match self.inner.read_locs(stream, &ats, None) {
            (records, None) => Ok(records),
            (_, Some(e)) => Err(e),
        }
    }

    /// Ids of every stream not deleted, sorted.
    pub fn streams(&self) -> Result<Vec<String>> {
        self.inner.check_open()?;
        let idx = read(&self.inner.index);
        let mut v: Vec<String> = idx.streams.iter().filter(|(_, s)| !s.is_deleted()).map(|(k, _)| k.clone()).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The last sequence number assigned in `stream` (0 if none).
    pub fn last_seq(&self, stream: &str) -> Result<u64> {
        self.inner.check_open()?;
        Ok(read(&self.inner.index).streams.get(stream).map_or(0, |s| s.last_seq))
    }

    /// Delete all but the newest `keep_last` records of `kind`; returns how many.
    pub fn prune(&self, stream: &str, kind: u8, keep_last: u64) -> Result<u64> {
        self.inner.check_writable("prune")?;
        check_stream(stream)?;
        check_kind(kind)?;
        let mut w = lock(&self.inner.writer);
        let live = self.inner.live_locs(stream, 0, Some(&[kind]), None)?;
        let keep = usize::try_from(keep_last).unwrap_or(usize::MAX);
        if live.len() <= keep {
            return Ok(0);
        }
        let doomed = live.len() - keep;
        let upto = live[doomed - 1].loc.entry.seq;
        let lsn = self.inner.write_tombstone(&mut w, stream, kind, upto)?;
        drop(w);
        if keep == 0 {
            lock(&self.inner.cache).forget(stream, Some(kind));
        }
        self.inner.make_durable(lsn)?;
        Ok(doomed as u64)
    }

    /// Delete every record of `stream`; returns how many. Seqs are not reused.
    pub fn delete_stream(&self, stream: &str) -> Result<u64> {
        self.inner.check_writable("delete_stream")?;
        check_stream(stream)?;
        let mut w = lock(&self.inner.writer);
        let live = self.inner.live_locs(stream, 0, None, None)?;
        let last = match read(&self.inner.index).streams.get(stream) {
            Some(s) if !s.is_deleted() => s.last_seq,
            _ => return Ok(0),
        };
        let lsn = self.inner.write_tombstone(&mut w, stream, TOMBSTONE_ALL_KINDS, last)?;
        drop(w);
        lock(&self.inner.cache).forget(stream, None);
        self.inner.make_durable(lsn)?;
        Ok(live.len() as u64)
    }

    /// Copy the live records out of sealed segments that are at least `min_dead_ratio`
    /// dead, then unlink them. Appends wait while it runs. A record stored raw whose
    /// payload is at least `compress_min_bytes` (one appended with `compress: false`) is
    /// compressed as it is copied, if zstd shrinks it: raw now, compressed at compaction.
    pub fn compact(&self, min_dead_ratio: f64) -> Result<CompactReport> {
        self.compact_with(min_dead_ratio, &mut |_, _| true)
    }

    /// `compact`, calling `progress(done, total)` with bytes of sealed segments examined
    /// after each one. When it returns `false`, compaction stops there (every segment
    /// handled so far is complete) and the report covers what was done.
    pub fn compact_with(
        &self,
        min_dead_ratio: f64,
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<CompactReport> {
        self.inner.check_writable("compact")?;
        if !(0.0..=1.0).contains(&min_dead_ratio) {
            return Err(CoreError::InvalidArgument(format!(
                "min_dead_ratio must be a number from 0 to 1, got {min_dead_ratio}"
            )));
        }
        self.inner.compact(min_dead_ratio, progress)
    }

    /// Scan every segment and index file read-only; report every damaged range.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(&mut |_, _| true)
    }

    /// `verify`, calling `progress(done, total)` with bytes scanned after each segment.
    /// When it returns `false`, the scan stops and the report covers the segments scanned.
    pub fn verify_with(&self, progress: &mut dyn FnMut(u64, u64) -> bool) -> Result<VerifyReport> {
        self.inner.check_open()?;
        self.inner.verify(progress)
    }

    /// Counters.
    pub fn stats(&self) -> Result<Stats> {
        self.inner.check_open()?;
        let (active_len, appended) = {
            let w = lock(&self.inner.writer);
            (w.pos, w.appended)
        };
        let idx = read(&self.inner.index);
        Ok(Stats {
            segments: idx.sealed.len() as u64 + 1,
            bytes: idx.sealed.values().map(|s| s.len).sum::<u64>() + active_len,
            streams: idx.streams.values().filter(|s| !s.is_deleted()).count() as u64,
            appended,
            syncs: lock(&self.inner.sync).syncs,
        })
    }

    /// fdatasync everything appended so far, whatever the policy (nothing to do read-only).
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        if self.inner.opts.read_only {
            return Ok(());
        }
        let lsn = lock(&self.inner.writer).lsn;
        self.inner.sync_to(lsn)
    }

    /// Flush, stop the flusher thread and release the writer lock. Idempotent.
    ///
    /// In a process forked from the one that opened the log, it only lets go of this
    /// process's copies of the log's file descriptors (the lock's included, so that this
    /// process never keeps the store locked once the parent closed it), and writes and
    /// waits for nothing: the threads of the parent that may hold the log's locks do not
    /// exist here, so a lock it cannot take at once is left alone, and so is the memory
    /// those locks guard (never freed: it may be half updated).
    pub fn close(&self) -> Result<()> {
        if process_id_now() != self.inner.opened_by {
            if let Ok(mut flusher) = self.flusher.try_lock() {
                // Its thread is the parent's: neither joined nor detached here.
                std::mem::forget(flusher.take());
            }
            std::mem::forget(Arc::clone(&self.inner));
            self.inner.let_go_in_fork();
            return Ok(());
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        {
            let (m, cv) = &self.inner.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        if let Some(t) = lock(&self.flusher).take() {
            let _ = t.join();
        }
        let (lsn, rolled) = {
            let mut w = lock(&self.inner.writer);
            // Sealing a large active segment now spares the next open from scanning it.
            let seal = w.pos >= SEAL_AT_CLOSE_BYTES && !self.inner.opts.read_only;
            let rolled = if seal { self.inner.roll(&mut w) } else { Ok(()) };
            self.inner.closed.store(true, Ordering::Release);
            (w.lsn, rolled)
        };
        let result = if self.inner.opts.read_only { Ok(()) } else { self.inner.sync_to(lsn).and(rolled) };
        // Release every file descriptor now, not when the last reference to the log goes.
        lock(&self.inner.writer).file = Arc::new(ClosedFile);
        lock(&self.inner.handles).close_all();
        lock(&self.inner.lock).take();
        result
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Counts a thread in `Inner::appenders` while it lives.
struct Appending<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn appending(&self) -> Appending<'_> {
        self.appenders.fetch_add(1, Ordering::Relaxed);
        Appending(&self.appenders)
    }

    /// `check_open`, and refuse `what` on a read-only log.
    fn check_writable(&self, what: &str) -> Result<()> {
        self.check_open()?;
        if self.opts.read_only {
            return Err(CoreError::InvalidArgument(format!(
                "{what} needs the writer: {} is open read-only",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Refuse a process other than the one that opened the log (see `opened_by` and
    /// `note_fork`). Takes no lock, so a forked child can call it whatever the parent's
    /// threads held.
    fn check_process(&self) -> Result<()> {
        if PROCESS_ID.load(Ordering::Relaxed) == self.opened_by {
            Ok(())
        } else {
            Err(CoreError::Forked { path: self.dir.clone(), opened_by: self.opened_by })
        }
    }

    /// Let go, in a forked child, of the descriptors the log holds, taking only locks
    /// that are free at once (see `Log::close`). The child's copy of the lock file's
    /// descriptor goes first: closing it does not release the parent's lock, which
    /// lasts while the parent's own descriptor is open.
    fn let_go_in_fork(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut guard) = self.lock.try_lock() {
            guard.take();
        }
        if let Ok(mut w) = self.writer.try_lock() {
            w.file = Arc::new(ClosedFile);
        }
        if let Ok(mut handles) = self.handles.try_lock() {
            handles.close_all();
        }
    }

    fn check_open(&self) -> Result<()> {
        self.check_process()?;
        if self.closed.load(Ordering::Acquire) {
            Err(CoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn seg_path(&self, base: u64) -> PathBuf {
        self.dir.join(segment_name(base))
    }

    /// Frame and write `records` at the end of the active segment in one write, then
    /// index them. Returns each record's `(seq, timestamp)` and the LSN to sync to.
    ///
    /// An active segment already full is rolled first, and a failed roll is the error
    /// (nothing of the batch written): the segment never grows past `segment_bytes`
    /// plus one batch, and a roll that keeps failing fails every write. The roll after
    /// a write that fills the segment is best effort (its records are written).
    fn write_frames(&self, w: &mut Writer, records: Vec<Prepared>) -> Result<(Vec<(u64, i64)>, u64)> {
        self.check_open()?;
        if let Some(why) = &w.failed {
            return Err(CoreError::io(
                self.seg_path(w.base),
                std::io::Error::other(format!("an earlier fdatasync failed ({why}); reopen the store")),
            ));
        }
        if w.next_offset.saturating_add(records.len() as u64) > MAX_OFFSET {
            // Only a store whose segment names were tampered with gets here; open refuses
            // anything past the limit, so nothing written is ever unreadable.
            let why = format!("global offset {} would pass 2^63", w.next_offset);
            return Err(CoreError::corrupt(self.seg_path(w.base), 16, why));
        }
        if w.pos >= self.opts.segment_bytes {
            self.roll(w)?;
        }
        let ts_now = now_us();
        let mut assigned = Vec::with_capacity(records.len());
        let mut entries = Vec::with_capacity(records.len());
        w.buf.clear();
        {
            let idx = read(&self.index);
            let mut next: HashMap<&str, u64> = HashMap::new();
            for (i, r) in records.iter().enumerate() {
                let seq = match r.seq {
                    Some(s) => s,
                    None => {
                        let n = next
                            .entry(r.stream.as_str())
                            .or_insert_with(|| idx.streams.get(&r.stream).map_or(0, |s| s.last_seq));
                        if r.kind != KIND_TOMBSTONE {
                            *n += 1;
                        }
                        *n
                    }
                };
                let ts = r.timestamp_us.unwrap_or(ts_now);
                // Every record of the write but the last says more follow, so a crash
                // that cuts the write is seen at open and the whole batch dropped.
                let more = if i + 1 < records.len() { FLAG_BATCH_MORE } else { 0 };
                let header = Header {
                    offset: w.next_offset + i as u64,
                    seq,
                    timestamp_us: ts,
                    kind: r.kind,
                    flags: (r.flags & !FLAG_BATCH_MORE) | more,
                    raw_len: r.raw_len,
                };
                let pos = w.pos + w.buf.len() as u64;
                let len = record::encode(&mut w.buf, &header, &r.stream, &r.stored, self.opts.auth_key.as_ref());
                entries.push(Entry { seq, pos, len: len as u32, kind: r.kind });
                assigned.push((seq, ts));
            }
        }
        if let Err(e) = w.file.write_all_at(&w.buf, w.pos) {
            // Cut whatever part of the batch reached the file; the next write would
            // overwrite it anyway, since `pos` does not move.
            let _ = w.file.set_len(w.pos);
            return Err(CoreError::io(self.seg_path(w.base), e));
        }
        w.pos += w.buf.len() as u64;
        w.lsn += w.buf.len() as u64;
        w.next_offset += records.len() as u64;
        w.appended += records.len() as u64;
        {
            let mut idx = write(&self.index);
            for (r, e) in records.iter().zip(entries) {
                match idx.streams.get_mut(&r.stream) {
                    Some(s) => s.add_active(w.base, e, r.tombstone),
                    None => idx.streams.entry(r.stream.clone()).or_default().add_active(w.base, e, r.tombstone),
                }
            }
        }
        let kept: Vec<Record> = records
            .into_iter()
            .zip(&assigned)
            .filter_map(|(r, &(seq, timestamp_us))| {
                r.cached.map(|payload| Record { stream: r.stream, kind: r.kind, seq, timestamp_us, payload })
            })
            .collect();
        if !kept.is_empty() {
            let mut cache = lock(&self.cache);
            for r in kept {
                cache.appended(r);
            }
        }
        let lsn = w.lsn;
        if w.pos >= self.opts.segment_bytes {
            // The records are written: a failed roll is retried (and reported) by the next write.
            let _ = self.roll(w);
        }
        Ok((assigned, lsn))
    }

    fn write_tombstone(&self, w: &mut Writer, stream: &str, target: u8, upto: u64) -> Result<u64> {
        let payload = encode_tombstone(target, upto);
        let t = Prepared {
            stream: stream.to_owned(),
            kind: KIND_TOMBSTONE,
            seq: None,
            timestamp_us: None,
            flags: 0,
            raw_len: payload.len() as u32,
            stored: payload.to_vec(),
            tombstone: Some((target, upto)),
            cached: None,
        };
        Ok(self.write_frames(w, vec![t])?.1)
    }

    /// Seal the active segment and start a new one. Every file operation (fdatasync,
    /// the index file, the new segment) happens before the in-memory index changes, so
    /// a failure leaves the log as it was and the next append retries the roll.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.sync_active(w)?;
        let (mut summary, entries) = {
            let idx = read(&self.index);
            let mut names: Vec<&String> = idx.streams.keys().collect();
            names.sort_unstable();
            let mut streams = Vec::new();
            let mut entries = Vec::new();
            for name in names {
                if let Some((sum, es)) = idx.streams.get(name).and_then(|s| s.summarize(name)) {
                    streams.push(sum);
                    entries.push(es);
                }
            }
            (IndexSummary { base: w.base, segment_len: w.pos, records: w.next_offset - w.base, streams }, entries)
        };
        let bytes = encode_index(&mut summary, &entries);
        self.write_file_atomically(&self.dir.join(index_name(w.base)), &bytes)?;
        let base = w.next_offset;
        let file = self.create_segment(base)?;
        {
            let mut idx = write(&self.index);
            for s in idx.streams.values_mut() {
                s.reset_active(w.base);
            }
            idx.add_sealed(summary);
            idx.active_base = base;
        }
        lock(&self.handles).rolled(base, Arc::clone(&file));
        w.file = file;
        w.base = base;
        w.pos = SEGMENT_HEADER_LEN as u64;
        self.write_manifest()
    }

    /// Rewrite the manifest from the index (see `format::Manifest`).
    fn write_manifest(&self) -> Result<()> {
        let m = manifest_of(&read(&self.index));
        write_manifest(self.fs.as_ref(), &self.dir, &m)
    }

    /// fdatasync the active segment with the writer held (roll, compaction). A failure
    /// poisons the writer as in `sync_to`: the kernel may have dropped the dirty pages.
    fn sync_active(&self, w: &mut Writer) -> Result<()> {
        if let Err(e) = w.file.sync_data() {
            w.failed = Some(e.to_string());
            return Err(CoreError::io(self.seg_path(w.base), e));
        }
        self.note_synced(w.lsn);
        Ok(())
    }

    fn create_segment(&self, base: u64) -> Result<Handle> {
        create_segment(self.fs.as_ref(), &self.dir, base, key_id(&self.opts))
    }

    fn write_file_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_file_atomically(self.fs.as_ref(), &self.dir, path, bytes)
    }

    fn note_synced(&self, lsn: u64) {
        let mut s = lock(&self.sync);
        s.synced = s.synced.max(lsn);
        s.syncs += 1;
        self.synced_cv.notify_all();
    }

    fn make_durable(&self, lsn: u64) -> Result<()> {
        match self.opts.durability {
            Durability::Sync => self.sync_to_with(lsn, true),
            Durability::Process | Durability::Group => Ok(()),
        }
    }

    /// Return once everything up to `lsn` is fdatasynced. One caller syncs at a time;
    /// the others wait for it and usually find their bytes covered (group commit).
    ///
    /// `gather` (sync appends only): before syncing, wait (at most the duration of the
    /// last fdatasync) until as many appenders as were in flight at the end of the last
    /// one have written and are waiting too. Without it the threads released by one
    /// fdatasync miss the next, and each fdatasync covers about half the appenders.
    fn sync_to_with(&self, lsn: u64, gather: bool) -> Result<()> {
        let mut s = lock(&self.sync);
        loop {
            if s.synced >= lsn {
                return Ok(());
            }
            if s.syncing {
                s.waiting += 1;
                s = self.synced_cv.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
                s.waiting -= 1;
                continue;
            }
            s.syncing = true;
            if gather && s.peak > 1 {
                let deadline = Instant::now() + s.last_sync.min(MAX_COMMIT_DELAY);
                while s.waiting + 1 < s.peak && Instant::now() < deadline {
                    s = self
                        .synced_cv
                        .wait_timeout(s, Duration::from_micros(20))
                        .map_or_else(|p| p.into_inner().0, |r| r.0);
                }
            }
            drop(s);
            let (file, target, base) = {
                let w = lock(&self.writer);
                (Arc::clone(&w.file), w.lsn, w.base)
            };
            let started = Instant::now();
            let result = file.sync_data();
            s = lock(&self.sync);
            s.syncing = false;
            s.last_sync = started.elapsed();
            s.peak = self.appenders.load(Ordering::Relaxed);
            if result.is_ok() {
                s.synced = s.synced.max(target);
                s.syncs += 1;
            }
            self.synced_cv.notify_all();
            if let Err(e) = result {
                drop(s);
                lock(&self.writer).failed = Some(e.to_string());
                return Err(CoreError::io(self.seg_path(base), e));
            }
        }
    }

    fn sync_to(&self, lsn: u64) -> Result<()> {
        self.sync_to_with(lsn, false)
    }

    fn flush_loop(&self) {
        let (m, cv) = &self.stop;
        let mut stopped = lock(m);
        while !*stopped {
            stopped = cv.wait_timeout(stopped, self.opts.group_commit).map_or_else(|p| p.into_inner().0, |r| r.0);
            if *stopped {
                break;
            }
            drop(stopped);
            let lsn = lock(&self.writer).lsn;
            // An error is kept in `Writer::failed` and reported by the next append.
            let _ = self.sync_to(lsn);
            stopped = lock(m);
        }
    }

    fn handle(&self, base: u64) -> Result<Handle> {
        if let Some(h) = lock(&self.handles).get(base) {
            return Ok(h);
        }
        let path = self.seg_path(base);
        let h = self.open_file(&path).at(&path)?;
        Ok(lock(&self.handles).keep(base, h))
    }

    /// Open a store file for reading. When the process is out of descriptors, close a
    /// sealed segment's file this log keeps (the least recently used) and try again,
    /// while it keeps any.
    fn open_file(&self, path: &Path) -> std::io::Result<Handle> {
        loop {
            match self.fs.open(path, false) {
                Err(e) if is_out_of_descriptors(&e) && lock(&self.handles).close_one() => {}
                opened => return opened,
            }
        }
    }

    /// `loc` with an open handle on its segment. Called with the index read lock held,
    /// so the segment cannot be compacted away before its file is open.
    fn locate(&self, loc: Loc) -> Result<Located> {
        Ok(Located { loc, handle: self.handle(loc.seg)? })
    }

    fn read_loc(&self, stream: &str, at: &Located, head: Option<usize>) -> Result<Record> {
        let (mut records, error) = self.read_locs(stream, std::slice::from_ref(at), head);
        match (error, records.pop()) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => Ok(r),
            (None, None) => Err(CoreError::InvalidArgument("nothing to read".into())),
        }
    }

    /// Read the records at `ats`, in order, with one `pread` per run of records that lie
    /// next to each other in one segment (a journal usually does). Returns the records
    /// read before the first error, and that error. With a `head` of `n`, only the first
    /// `n` bytes of each payload (see `decode_record`).
    fn read_locs(&self, stream: &str, ats: &[Located], head: Option<usize>) -> (Vec<Record>, Option<CoreError>) {
        let mut out = Vec::with_capacity(ats.len());
        let mut i = 0;
        while i < ats.len() {
            let first = &ats[i];
            let start = first.loc.entry.pos;
            let mut end = start + u64::from(first.loc.entry.len);
            let mut j = i + 1;
            while j < ats.len()
                && ats[j].loc.seg == first.loc.seg
                && ats[j].loc.entry.pos == end
                && end - start < MAX_READ_RUN
            {
                end += u64::from(ats[j].loc.entry.len);
                j += 1;
            }
            let path = self.seg_path(first.loc.seg);
            let mut buf = match zeroed((end - start) as usize) {
                Ok(buf) => buf,
                Err(e) => return (out, Some(e)),
            };
            if let Err(e) = first.handle.read_exact_at(&mut buf, start) {
                let err = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    CoreError::corrupt(&path, start, "segment ends inside an indexed record")
                } else {
                    CoreError::io(&path, e)
                };
                return (out, Some(err));
            }
            for at in &ats[i..j] {
                let from = (at.loc.entry.pos - start) as usize;
                let frame = &buf[from..from + at.loc.entry.len as usize];
                match decode_record(&path, stream, at.loc, frame, self.opts.auth_key.as_ref(), head) {
                    Ok(r) => out.push(r),
                    Err(e) => return (out, Some(e)),
                }
            }
            i = j;
        }
        (out, None)
    }

    /// A sealed segment's entries for `stream`, from its index file. A damaged index
    /// file is rebuilt from the segment and read again.
    fn sealed_entries(&self, seg: u64, stream: &str) -> Result<Arc<Vec<Entry>>> {
        let key = format!("{seg}/{stream}");
        if let Some(hit) = lock(&self.entries).get(&key) {
            return Ok(hit);
        }
        let entries = self.load_sealed_entries(seg, stream)?;
        Ok(lock(&self.entries).put(key, entries))
    }

    /// `sealed_entries` from the index file (or a rebuilt index), sorted by seq.
    fn load_sealed_entries(&self, seg: u64, stream: &str) -> Result<Vec<Entry>> {
        let Some((at, n, crc, seg_len)) = ({
            let idx = read(&self.index);
            idx.sealed
                .get(&seg)
                .and_then(|s| Some((s.len, s.streams.get(stream)?)))
                .map(|(len, s)| (s.entries_at, s.entries, s.entries_crc, len))
        }) else {
            return Ok(Vec::new());
        };
        let path = self.dir.join(index_name(seg));
        let mut buf = vec![0u8; n as usize * INDEX_ENTRY_LEN];
        let held = lock(&self.handles).index(seg);
        let file = held.map_or_else(|| self.open_file(&path), Ok);
        let ok = file.and_then(|h| h.read_exact_at(&mut buf, at)).is_ok() && crc32c::crc32c(&buf) == crc;
        let mut entries = if ok { decode_entries(&buf) } else { Vec::new() };
        if ok && entries.iter().all(|e| e.within(seg_len)) {
            if !entries.is_sorted_by_key(|e| e.seq) {
                entries.sort_by_key(|e| (e.seq, e.pos)); // written sorted; a damaged file must not make reads skip records
            }
            return Ok(entries);
        }
        if !read(&self.index).sealed.contains_key(&seg) {
            return Ok(Vec::new()); // compacted away meanwhile: the caller looks again
        }
        let (summary, _, rebuilt) = {
            let _one_at_a_time = lock(&self.rebuilding);
            rebuild_index(
                self.fs.as_ref(),
                &self.dir,
                seg,
                RecoveryMode::TolerateTailCorruption,
                !self.opts.read_only,
                self.opts.auth_key.as_ref(),
            )?
        };
        let entries = match summary.streams.iter().find(|s| s.stream == stream) {
            None => Vec::new(),
            Some(s) => {
                let from = usize::try_from(s.entries_at).unwrap_or(usize::MAX);
                let block = from.checked_add(s.entries as usize * INDEX_ENTRY_LEN).and_then(|to| rebuilt.get(from..to));
                decode_entries(block.ok_or_else(|| CoreError::corrupt(&path, s.entries_at, "rebuilt index is short"))?)
            }
        };
        lock(&self.entries).forget_segment(seg); // other streams' blocks of this segment were rebuilt too
        let mut idx = write(&self.index);
        if let Some(s) = idx.sealed.get_mut(&seg) {
            s.streams = summary.streams.into_iter().map(|s| (s.stream.clone(), s)).collect();
        }
        Ok(entries)
    }

    /// The live records of a stream after `after_seq`, deduplicated by seq (a record
    /// copied by an interrupted compaction may exist twice: the later copy wins).
    ///
    /// Sealed entries are read with no lock held; if a compaction removed one of the
    /// segments meanwhile, the lookup starts again (its records moved elsewhere).
    /// Only the first `limit` are opened (`locate`): a read of a few records of a long
    /// stream does not take a handle for each of the others.
    fn live_locs(
        &self,
        stream: &str,
        after_seq: u64,
        kinds: Option<&[u8]>,
        limit: Option<usize>,
    ) -> Result<Vec<Located>> {
        loop {
            let (segs, mut locs) = {
                let idx = read(&self.index);
                let Some(s) = idx.streams.get(stream) else { return Ok(Vec::new()) };
                let segs: Vec<u64> = s
                    .sealed
                    .iter()
                    .copied()
                    .filter(|seg| {
                        idx.sealed
                            .get(seg)
                            .and_then(|ss| ss.streams.get(stream))
                            .is_some_and(|ss| ss.max_entry_seq > after_seq)
                    })
                    .collect();
                let locs: Vec<Loc> = s.active.iter().map(|&entry| Loc { seg: idx.active_base, entry }).collect();
                (segs, locs)
            };
            for &seg in &segs {
                let entries = self.sealed_entries(seg, stream)?;
                // Sorted by seq: skip what is not after `after_seq`, and with a `limit` stop
                // once that many seqs are live (a seq may be in several segments, or twice in
                // one after an interrupted compaction: the merge below keeps the newest copy).
                let from = entries.partition_point(|e| e.seq <= after_seq);
                let idx = read(&self.index);
                let Some(s) = idx.streams.get(stream) else { return Ok(Vec::new()) };
                let mut seqs = 0usize;
                let mut last = None;
                for &entry in &entries[from..] {
                    if !kinds.is_none_or(|k| k.contains(&entry.kind)) || s.is_dead(entry.kind, entry.seq) {
                        continue;
                    }
                    if last != Some(entry.seq) {
                        if limit.is_some_and(|l| seqs >= l) {
                            break;
                        }
                        seqs += 1;
                        last = Some(entry.seq);
                    }
                    locs.push(Loc { seg, entry });
                }
            }
            let idx = read(&self.index);
            let gone = |seg: &u64| *seg != idx.active_base && !idx.sealed.contains_key(seg);
            if segs.iter().any(gone) || locs.iter().any(|l| gone(&l.seg)) {
                continue;
            }
            let Some(s) = idx.streams.get(stream) else { return Ok(Vec::new()) };
            locs.retain(|l| {
                l.entry.seq > after_seq
                    && !s.is_dead(l.entry.kind, l.entry.seq)
                    && kinds.is_none_or(|k| k.contains(&l.entry.kind))
            });
            locs.sort_by_key(|l| (l.entry.seq, l.seg, l.entry.pos));
            let mut out: Vec<Loc> = Vec::with_capacity(locs.len());
            for l in locs {
                match out.last_mut() {
                    Some(prev) if prev.entry.seq == l.entry.seq => *prev = l,
                    _ => out.push(l),
                }
            }
            return out.into_iter().take(limit.unwrap_or(usize::MAX)).map(|loc| self.locate(loc)).collect();
        }
    }

    fn compact(&self, min_dead_ratio: f64, progress: &mut dyn FnMut(u64, u64) -> bool) -> Result<CompactReport> {
        let mut w = lock(&self.writer);
        let bytes_of = |w: &Writer| -> u64 { read(&self.index).sealed.values().map(|s| s.len).sum::<u64>() + w.pos };
        let bytes_before = bytes_of(&w);
        // A mostly dead active segment is sealed first, so its space can come back too.
        let (active_live, active_records) = {
            let idx = read(&self.index);
            let mut live = 0u64;
            let mut n = 0u64;
            for s in idx.streams.values() {
                for e in &s.active {
                    n += 1;
                    if !s.is_dead(e.kind, e.seq) {
                        live += u64::from(e.len);
                    }
                }
            }
            (live, n)
        };
        let active_data = w.pos - SEGMENT_HEADER_LEN as u64;
        if active_records > 0 && dead_ratio(active_live, active_data) >= min_dead_ratio {
            self.roll(&mut w)?;
        }
        let sealed: Vec<(u64, u64)> = read(&self.index).sealed.iter().map(|(b, s)| (*b, s.len)).collect();
        let mut report = CompactReport { bytes_before, ..CompactReport::default() };
        let total: u64 = sealed.iter().map(|(_, len)| len).sum();
        let mut done = 0;
        for (seg, len) in sealed {
            if !progress(done, total) {
                break;
            }
            done += len;
            let streams: Vec<String> =
                read(&self.index).sealed.get(&seg).map(|s| s.streams.keys().cloned().collect()).unwrap_or_default();
            let mut live: Vec<(String, Entry)> = Vec::new();
            let mut tombstoned: Vec<String> = Vec::new();
            for stream in &streams {
                let entries = self.sealed_entries(seg, stream)?;
                let idx = read(&self.index);
                let Some(s) = idx.streams.get(stream) else { continue };
                live.extend(entries.iter().copied().filter(|e| !s.is_dead(e.kind, e.seq)).map(|e| (stream.clone(), e)));
                let has_tombstones = idx
                    .sealed
                    .get(&seg)
                    .and_then(|ss| ss.streams.get(stream))
                    .is_some_and(|ss| !ss.tombstones.is_empty());
                if has_tombstones && !s.tombstones().is_empty() {
                    tombstoned.push(stream.clone());
                }
            }
            let live_bytes: u64 = live.iter().map(|(_, e)| u64::from(e.len)).sum();
            if dead_ratio(live_bytes, len.saturating_sub(SEGMENT_HEADER_LEN as u64)) < min_dead_ratio {
                continue;
            }
            // Copy live records (stored bytes as they are, but a raw payload long enough
            // to compress is compressed; new global offsets) and the stream's current
            // deletion watermarks, then make them durable.
            let h = self.handle(seg)?;
            let path = self.seg_path(seg);
            let mut copies = Vec::with_capacity(live.len());
            for (stream, e) in &live {
                let mut buf = vec![0u8; e.len as usize];
                h.read_exact_at(&mut buf, e.pos).at(&path)?;
                // A record that fails authentication is never copied (and so re-MACed).
                let f = record::decode(&buf, self.opts.auth_key.as_ref()).map_err(|err| match err {
                    record::DecodeError::Unauthenticated(why) => CoreError::authentication(&path, e.pos, why),
                    _ => CoreError::corrupt(&path, e.pos, "damaged record met by compaction"),
                })?;
                let (flags, stored) = if f.header.flags & FLAG_ZSTD == 0 {
                    let s = codec::compress(f.payload, self.opts.compression_level, self.opts.compress_min_bytes);
                    (f.header.flags | s.flags, s.bytes)
                } else {
                    (f.header.flags, f.payload.to_vec())
                };
                copies.push(Prepared {
                    stream: stream.clone(),
                    kind: f.header.kind,
                    seq: Some(f.header.seq),
                    timestamp_us: Some(f.header.timestamp_us),
                    flags,
                    raw_len: f.header.raw_len,
                    stored,
                    tombstone: None,
                    cached: None,
                });
            }
            for stream in &tombstoned {
                let (last, marks) = {
                    let idx = read(&self.index);
                    idx.streams.get(stream).map(|s| (s.last_seq, s.tombstones())).unwrap_or_default()
                };
                for (target, upto) in marks {
                    let payload = encode_tombstone(target, upto);
                    copies.push(Prepared {
                        stream: stream.clone(),
                        kind: KIND_TOMBSTONE,
                        seq: Some(last),
                        timestamp_us: None,
                        flags: 0,
                        raw_len: payload.len() as u32,
                        stored: payload.to_vec(),
                        tombstone: Some((target, upto)),
                        cached: None,
                    });
                }
            }
            report.records_copied += live.len() as u64;
            if !copies.is_empty() {
                self.write_frames(&mut w, copies)?;
            }
            self.sync_active(&mut w)?;
            {
                let mut idx = write(&self.index);
                idx.sealed.remove(&seg);
                for stream in &streams {
                    if let Some(s) = idx.streams.get_mut(stream) {
                        s.drop_sealed(seg);
                    }
                }
            }
            lock(&self.handles).sealed.pop(&seg);
            // The manifest drops the segment before it goes: a crash in between leaves a
            // segment the manifest no longer lists, which the next open finishes removing.
            self.write_manifest()?;
            self.fs.remove(&path).at(&path)?;
            let idx_path = self.dir.join(index_name(seg));
            self.fs.remove(&idx_path).at(&idx_path)?;
            report.segments_removed += 1;
        }
        if report.segments_removed > 0 {
            self.fs.sync_dir(&self.dir).at(&self.dir)?;
        }
        progress(done, total);
        report.bytes_after = bytes_of(&w);
        Ok(report)
    }

    /// Whether sealed segment `seg`, whose file (or index file) is gone, was compacted
    /// away by the writer since this read-only view opened: the store's MANIFEST no longer
    /// lists it. Its live records were copied forward, past what this view sees; a fresh
    /// open sees them.
    fn compacted_since_open(&self, seg: u64) -> bool {
        if !self.opts.read_only {
            return false;
        }
        let path = self.dir.join(MANIFEST_FILE);
        let listed =
            self.fs.open(&path, false).and_then(|h| read_all_io(&h)).ok().and_then(|b| decode_manifest(&b).ok());
        listed.is_some_and(|m| seg < m.active && m.sealed.binary_search(&seg).is_err())
    }

    fn verify(&self, progress: &mut dyn FnMut(u64, u64) -> bool) -> Result<VerifyReport> {
        let (sealed, active_base, active_end, total) = {
            let w = lock(&self.writer);
            let idx = read(&self.index);
            let sealed_bytes: u64 = idx.sealed.values().map(|s| s.len).sum();
            (idx.sealed.keys().copied().collect::<Vec<u64>>(), w.base, w.pos, sealed_bytes + w.pos)
        };
        let mut report = VerifyReport::default();
        let mut kinds: HashMap<(String, u8), KindStats> = HashMap::new();
        for (seg, end) in sealed.iter().map(|&s| (s, None)).chain(std::iter::once((active_base, Some(active_end)))) {
            if !progress(report.bytes, total) {
                break;
            }
            let path = self.seg_path(seg);
            let h = match self.handle(seg) {
                Err(CoreError::Io { source, .. }) if is_not_found(&source) && self.compacted_since_open(seg) => {
                    continue
                }
                h => h?,
            };
            let mut bytes = read_all(&h, &path)?;
            if let Some(end) = end {
                bytes.truncate(end as usize);
            }
            report.segments += 1;
            report.bytes += bytes.len() as u64;
            match decode_segment_header(&bytes) {
                Err(e @ HeaderError::Version(_)) => {
                    report.damaged.push(Damage::new(&path, 0, SEGMENT_HEADER_LEN as u64, format!("{e:?}")));
                    continue;
                }
                // The records after a damaged header are still checked, as a tolerant open keeps them.
                Err(HeaderError::Invalid(why)) => {
                    report.damaged.push(Damage::new(&path, 0, SEGMENT_HEADER_LEN as u64, why));
                }
                Ok((_, key_id)) => {
                    if let Err(CoreError::Authentication { offset, reason, .. }) =
                        check_key_id(&path, key_id, self.opts.auth_key.as_ref())
                    {
                        report.damaged.push(Damage { tampered: true, ..Damage::new(&path, offset, 4, reason) });
                    }
                }
            }
            let Scan { records, damaged, tail } = scan(&bytes, &path, seg, self.opts.auth_key.as_ref());
            report.records += records.len() as u64;
            report.damaged.extend(damaged);
            let idx = read(&self.index);
            for r in records {
                let dead = r.header.kind != KIND_TOMBSTONE
                    && idx.streams.get(&r.stream).is_some_and(|s| s.is_dead(r.header.kind, r.header.seq));
                let stored = u64::from(r.len).saturating_sub((RECORD_HEADER_LEN + r.stream.len()) as u64);
                let k = kinds.entry((r.stream.clone(), r.header.kind)).or_insert_with(|| KindStats {
                    stream: r.stream,
                    kind: r.header.kind,
                    ..KindStats::default()
                });
                if dead {
                    k.dead += 1;
                } else {
                    k.live += 1;
                    k.stored_bytes += stored;
                    k.raw_bytes += u64::from(r.header.raw_len);
                }
            }
            drop(idx);
            if let Some(t) = tail {
                report.damaged.push(Damage::new(&path, t.offset, t.bytes, t.reason));
            }
            if end.is_none() {
                let idx_path = self.dir.join(index_name(seg));
                match check_index_file(&idx_path, self.open_file(&idx_path), seg, bytes.len() as u64) {
                    Err((_, true)) if self.compacted_since_open(seg) => {}
                    Err((d, _)) => report.damaged.push(d),
                    Ok(()) => {}
                }
            }
        }
        progress(report.bytes, total);
        let mut kinds: Vec<KindStats> = kinds.into_values().collect();
        kinds.sort_by(|a, b| (&a.stream, a.kind).cmp(&(&b.stream, b.kind)));
        report.kinds = kinds;
        Ok(report)
    }
}

/// `len` zero bytes to read a run of records into, or `OutOfMemory`.
fn zeroed(len: usize) -> Result<Vec<u8>> {
    let mut buf = codec::buffer(len).map_err(|_| CoreError::OutOfMemory { bytes: len })?;
    buf.resize(len, 0);
    Ok(buf)
}

/// Decode the frame of the record at `loc` (of `stream`) and decompress its payload, or
/// with a `head` of `n` only its first `n` bytes.
fn decode_record(
    path: &Path,
    stream: &str,
    loc: Loc,
    frame: &[u8],
    key: Option<&AuthKey>,
    head: Option<usize>,
) -> Result<Record> {
    let f = record::decode(frame, key).map_err(|e| match e {
        record::DecodeError::Truncated { .. } => CoreError::corrupt(path, loc.entry.pos, "record cut short"),
        record::DecodeError::Invalid(r) => CoreError::corrupt(path, loc.entry.pos, r),
        record::DecodeError::Unauthenticated(r) => CoreError::authentication(path, loc.entry.pos, r),
    })?;
    if f.stream != stream || f.header.seq != loc.entry.seq || f.header.kind != loc.entry.kind {
        return Err(CoreError::corrupt(path, loc.entry.pos, "index points at a different record"));
    }
    let raw_len = f.header.raw_len as usize;
    let payload = match head {
        None => codec::decompress(f.payload, f.header.flags, raw_len),
        Some(n) => codec::decompress_head(f.payload, f.header.flags, raw_len, n),
    }
    .map_err(|e| match e {
        codec::DecompressError::Invalid(why) => CoreError::corrupt(path, loc.entry.pos, why),
        codec::DecompressError::OutOfMemory(bytes) => CoreError::OutOfMemory { bytes },
    })?;
    Ok(Record {
        stream: stream.to_owned(),
        kind: f.header.kind,
        seq: f.header.seq,
        timestamp_us: f.header.timestamp_us,
        payload,
    })
}

fn dead_ratio(live: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        1.0 - (live as f64 / total as f64)
    }
}

/// The key id segment headers carry (0: no key).
fn key_id(opts: &Options) -> u32 {
    opts.auth_key.as_ref().map_or(0, AuthKey::id)
}

fn create_segment(fs: &dyn FileSystem, dir: &Path, base: u64, key_id: u32) -> Result<Handle> {
    let path = dir.join(segment_name(base));
    let tmp = dir.join(format!("{}.tmp", segment_name(base)));
    let _ = fs.remove(&tmp);
    let h = fs.create(&tmp).at(&tmp)?;
    h.write_all_at(&encode_segment_header(base, now_us(), key_id), 0).at(&tmp)?;
    h.sync_data().at(&tmp)?;
    fs.rename(&tmp, &path).at(&path)?;
    fs.sync_dir(dir).at(dir)?;
    Ok(h)
}

/// The live segments as the index knows them.
fn manifest_of(idx: &Index) -> Manifest {
    Manifest { active: idx.active_base, sealed: idx.sealed.keys().copied().collect() }
}

fn write_manifest(fs: &dyn FileSystem, dir: &Path, m: &Manifest) -> Result<()> {
    write_file_atomically(fs, dir, &dir.join(MANIFEST_FILE), &encode_manifest(m))
}

fn write_file_atomically(fs: &dyn FileSystem, dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs.remove(&tmp);
    let h = fs.create(&tmp).at(&tmp)?;
    h.write_all_at(bytes, 0).at(&tmp)?;
    h.sync_data().at(&tmp)?;
    fs.rename(&tmp, path).at(path)?;
    fs.sync_dir(dir).at(dir)
}

/// How many times a read-only open starts again when the writer's compactions keep
/// removing files under it (see `Recovery::run_beside_writer`).
const VIEW_OPEN_ATTEMPTS: u32 = 16;

/// Whether `e` is "no such file".
fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Whether `e` is the process's (EMFILE) or the system's (ENFILE) descriptor limit.
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether `e` may come from a file that the writer removed meanwhile, rather than damage.
fn raced(e: &CoreError) -> bool {
    match e {
        CoreError::Io { source, .. } => is_not_found(source),
        CoreError::Corrupt { .. } => true,
        _ => false,
    }
}

/// Check an index file against its segment; `Err` describes the damage, and whether
/// the file was not found.
fn check_index_file(
    path: &Path,
    file: std::io::Result<Handle>,
    seg: u64,
    seg_len: u64,
) -> std::result::Result<(), (Damage, bool)> {
    let damage = |offset: u64, reason: String| (Damage::new(path, offset, 0, reason), false);
    let bytes = file
        .and_then(|h| read_all_io(&h))
        .map_err(|e| (Damage::new(path, 0, 0, format!("cannot read: {e}")), is_not_found(&e)))?;
    let summary = parse_index(&bytes, seg).map_err(|(off, why)| damage(off, why))?;
    if summary.segment_len != seg_len {
        return Err(damage(24, format!("index says the segment is {} bytes, it is {seg_len}", summary.segment_len)));
    }
    for s in &summary.streams {
        let at = s.entries_at as usize;
        let end = at.saturating_add(s.entries as usize * INDEX_ENTRY_LEN);
        match bytes.get(at..end) {
            Some(block) if crc32c::crc32c(block) == s.entries_crc => {}
            _ => return Err(damage(s.entries_at, format!("entries of stream {:?} are damaged", s.stream))),
        }
    }
    Ok(())
}

/// The length of an index file with this summary (None when it lists no stream).
fn index_file_len(s: &IndexSummary) -> Option<u64> {
    // Saturating: a crafted `entries_at` must not overflow (found by the open_dir fuzz
    // target); a length past the file's is rebuilt like any damaged index.
    s.streams.iter().map(|st| st.entries_at.saturating_add(u64::from(st.entries) * INDEX_ENTRY_LEN as u64)).max()
}

fn read_all_io(h: &Handle) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(h.size()?).map_err(std::io::Error::other)?];
    h.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Parse an index file's header and summary; `Err((offset, reason))` when damaged.
fn parse_index(bytes: &[u8], seg: u64) -> std::result::Result<IndexSummary, (u64, String)> {
    let (base, seg_len, records, sum_len, sum_crc) = decode_index_header(bytes).map_err(|e| (0, format!("{e:?}")))?;
    if base != seg {
        return Err((16, format!("index is for segment {base}, not {seg}")));
    }
    let end = usize::try_from(sum_len)
        .ok()
        .and_then(|l| INDEX_HEADER_LEN.checked_add(l))
        .ok_or((40, "bad summary length".to_string()))?;
    let sum = bytes.get(INDEX_HEADER_LEN..end).ok_or((40, "summary cut short".to_string()))?;
    if crc32c::crc32c(sum) != sum_crc {
        return Err((INDEX_HEADER_LEN as u64, "summary checksum mismatch".into()));
    }
    let summary = decode_summary(base, seg_len, records, sum)
        .ok_or((INDEX_HEADER_LEN as u64, "summary does not parse".into()))?;
    if summary.streams.iter().flat_map(|s| &s.latest).any(|e| !e.within(seg_len)) {
        // A read would trust it (found by the open_dir fuzz target).
        return Err((INDEX_HEADER_LEN as u64, "an entry points outside the segment".into()));
    }
    Ok(summary)
}

/// Scan a sealed segment and write its index file anew. Returns the summary and the
/// damage skipped (only in tolerant mode; otherwise damage is an error).
/// Rebuild segment `seg`'s index by scanning it; returns its summary, the damage found
/// and the index file's bytes, which are written to the file when `persist`.
fn rebuild_index(
    fs: &dyn FileSystem,
    dir: &Path,
    seg: u64,
    mode: RecoveryMode,
    persist: bool,
    key: Option<&AuthKey>,
) -> Result<(IndexSummary, Vec<Damage>, Vec<u8>)> {
    let path = dir.join(segment_name(seg));
    let h = fs.open(&path, false).at(&path)?;
    let bytes = read_all(&h, &path)?;
    let mut damaged = Vec::new();
    match decode_segment_header(&bytes) {
        Ok((base, key_id)) if base == seg => check_key_id(&path, key_id, key)?,
        Err(HeaderError::Version(found)) => {
            return Err(CoreError::FormatVersion { path, found, supported: FORMAT_VERSION })
        }
        // Tolerant: a damaged header is reported and the records after it still count.
        Ok(_) | Err(HeaderError::Invalid(_)) if mode == RecoveryMode::TolerateAnyCorruption => {
            damaged.push(Damage::new(&path, 0, SEGMENT_HEADER_LEN as u64, "bad segment header"));
        }
        Ok((base, _)) => {
            return Err(CoreError::corrupt(&path, 16, format!("header says base offset {base}, file name says {seg}")))
        }
        Err(e) => return Err(header_error(&path, e)),
    }
    let Scan { records, damaged: found, tail } = scan(&bytes, &path, seg, key);
    damaged.extend(found);
    if let Some(t) = tail {
        damaged.push(Damage::new(&path, t.offset, t.bytes, t.reason));
    }
    if let (Some(d), RecoveryMode::TolerateTailCorruption) = (damaged.first(), mode) {
        return Err(damage_error(d, |why| format!("sealed segment: {why}")));
    }
    let mut streams: HashMap<String, StreamIdx> = HashMap::new();
    for r in &records {
        let e = Entry { seq: r.header.seq, pos: r.pos, len: r.len, kind: r.header.kind };
        streams.entry(r.stream.clone()).or_default().add_active(seg, e, r.tombstone);
    }
    let mut summary =
        IndexSummary { base: seg, segment_len: bytes.len() as u64, records: records.len() as u64, streams: Vec::new() };
    let mut all_entries = Vec::new();
    let mut names: Vec<&String> = streams.keys().collect();
    names.sort_unstable();
    let names: Vec<String> = names.into_iter().cloned().collect();
    for name in names {
        if let Some((sum, es)) = streams.get(&name).and_then(|s| s.summarize(&name)) {
            summary.streams.push(sum);
            all_entries.push(es);
        }
    }
    let out = encode_index(&mut summary, &all_entries);
    if persist {
        write_file_atomically(fs, dir, &dir.join(index_name(seg)), &out)?;
    }
    Ok((summary, damaged, out))
}

/// Open-time recovery: read the sealed indexes, scan the active segment, repair its tail.
struct Recovery<'a> {
    dir: &'a Path,
    fs: &'a dyn FileSystem,
    opts: &'a Options,
}

type Recovered = (Writer, Index, OpenReport);

impl Recovery<'_> {
    fn run(&self) -> Result<Recovered> {
        let mut report = OpenReport::default();
        let names = self.fs.list(self.dir).at(self.dir)?;
        let read_only = self.opts.read_only;
        for n in names.iter().filter(|n| n.ends_with(".tmp") && !read_only) {
            let _ = self.fs.remove(&self.dir.join(n));
        }
        let mut segs: Vec<u64> = names.iter().filter_map(|n| parse_name(n, SEGMENT_SUFFIX)).collect();
        segs.sort_unstable();
        let has_index: std::collections::HashSet<u64> =
            names.iter().filter_map(|n| parse_name(n, INDEX_SUFFIX)).collect();
        let mut index = Index::default();
        let tolerant = self.opts.recovery == RecoveryMode::TolerateAnyCorruption;
        let manifest = self.read_manifest(&names, &mut report)?;
        if let Some(m) = &manifest {
            segs = self.check_manifest(m, segs, tolerant, &mut report)?;
        }
        // The newest segment is sealed when the active one is gone (tolerant open only):
        // then every segment found is sealed and a new active one is created.
        let active_gone =
            manifest.as_ref().is_some_and(|m| segs.last().is_some_and(|l| m.sealed.binary_search(l).is_ok()));
        let (sealed, active) = match segs.split_last() {
            Some((&last, rest)) if !active_gone => (rest, Some(last)),
            _ => (&segs[..], None),
        };
        let mut sealed_end = 0u64;
        for &seg in sealed {
            let summary = self.open_sealed(seg, has_index.contains(&seg), tolerant, &mut report)?;
            sealed_end = sealed_end.max(seg.saturating_add(summary.records));
            report.records += summary.records;
            index.add_sealed(summary);
        }
        let writer = match active {
            Some(active) => {
                let (writer, records) = self.open_active(active, tolerant, &mut index, &mut report)?;
                report.records += records;
                if has_index.contains(&active) && !read_only {
                    // Left by a roll that crashed before the next segment existed: stale once we append.
                    let _ = self.fs.remove(&self.dir.join(index_name(active)));
                }
                writer
            }
            None if read_only => {
                return Err(CoreError::InvalidArgument(format!(
                    "{} is not a pyactors store: it holds no segment file (a read-only open creates none)",
                    self.dir.display()
                )))
            }
            None => Writer {
                file: create_segment(self.fs, self.dir, sealed_end, key_id(self.opts))?,
                base: sealed_end,
                pos: SEGMENT_HEADER_LEN as u64,
                next_offset: sealed_end,
                lsn: 0,
                appended: 0,
                buf: Vec::new(),
                failed: None,
            },
        };
        index.active_base = writer.base;
        report.segments = sealed.len() as u64 + 1;
        let live = manifest_of(&index);
        if manifest.as_ref() != Some(&live) && !read_only {
            write_manifest(self.fs, self.dir, &live)?;
        }
        Ok((writer, index, report))
    }

    /// A read-only open races the writer: a compaction or a roll may remove a file this
    /// open listed before it opens it. A failure that such a removal explains (a file not
    /// found, a listed segment missing, bytes that no longer agree) while the MANIFEST
    /// changed under the attempt is not damage: open again, from a fresh listing, up to
    /// `VIEW_OPEN_ATTEMPTS` times. With the MANIFEST unchanged the error stands. Returns
    /// what was recovered and the newest `VIEW_HELD_SEGMENTS` sealed segments, open.
    fn run_beside_writer(&self) -> Result<(Recovered, Vec<Held>)> {
        let path = self.dir.join(MANIFEST_FILE);
        let manifest = || self.fs.open(&path, false).and_then(|h| read_all_io(&h)).ok();
        let mut attempts = 1;
        loop {
            let before = manifest();
            match self.run().and_then(|r| Ok((self.hold(&r.1)?, r))) {
                Err(e) if attempts < VIEW_OPEN_ATTEMPTS && raced(&e) && manifest() != before => attempts += 1,
                result => return result.map(|(held, r)| (r, held)),
            }
        }
    }

    /// Open the newest `VIEW_HELD_SEGMENTS` sealed segments of `index` and their index
    /// files. A missing index file is left to be rebuilt when read, as in any open. A
    /// segment that is gone is an error (`run_beside_writer` starts again). At the
    /// descriptor limit it holds half of what it could open, leaving the rest of the
    /// process (and this view's own reads) descriptors to work with; any other failure
    /// to open a segment is left to the read that needs it.
    fn hold(&self, index: &Index) -> Result<Vec<Held>> {
        let mut held = Vec::new();
        for &seg in index.sealed.keys().rev().take(VIEW_HELD_SEGMENTS) {
            let path = self.dir.join(segment_name(seg));
            let file = match self.fs.open(&path, false) {
                Ok(file) => file,
                Err(e) if is_not_found(&e) => return Err(CoreError::io(path, e)),
                Err(e) if is_out_of_descriptors(&e) => {
                    held.truncate(held.len() / 2);
                    break;
                }
                Err(_) => break,
            };
            held.push((seg, file, self.fs.open(&self.dir.join(index_name(seg)), false).ok()));
        }
        Ok(held)
    }

    /// The manifest, if present and intact; a damaged one is reported (with the
    /// rebuilt indexes) and rewritten from the segments found.
    fn read_manifest(&self, names: &[String], report: &mut OpenReport) -> Result<Option<Manifest>> {
        if !names.iter().any(|n| n == MANIFEST_FILE) {
            return Ok(None);
        }
        let path = self.dir.join(MANIFEST_FILE);
        let bytes = read_all(&self.fs.open(&path, false).at(&path)?, &path)?;
        match decode_manifest(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(HeaderError::Version(found)) => {
                Err(CoreError::FormatVersion { path, found, supported: FORMAT_VERSION })
            }
            Err(HeaderError::Invalid(_)) => {
                report.rebuilt_indexes.push(path);
                Ok(None)
            }
        }
    }

    /// Hold the segments found against the manifest. A segment older than the
    /// manifest's active one that it does not list was being removed by a compaction
    /// that crashed after rewriting the manifest (its live records were already copied
    /// forward and synced): finish removing it. A listed segment that is gone is
    /// `Corrupt`, or in tolerant mode reported. Returns the segments to open.
    fn check_manifest(
        &self,
        m: &Manifest,
        segs: Vec<u64>,
        tolerant: bool,
        report: &mut OpenReport,
    ) -> Result<Vec<u64>> {
        let mut kept = Vec::with_capacity(segs.len());
        for seg in segs {
            if seg >= m.active || m.sealed.binary_search(&seg).is_ok() {
                kept.push(seg);
                continue;
            }
            let leftovers = [self.dir.join(segment_name(seg)), self.dir.join(index_name(seg))];
            for path in leftovers.into_iter().filter(|_| !self.opts.read_only) {
                match self.fs.remove(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(CoreError::io(path, e)),
                    _ => {}
                }
            }
        }
        for &seg in m.sealed.iter().chain(std::iter::once(&m.active)) {
            if kept.binary_search(&seg).is_ok() {
                continue;
            }
            let path = self.dir.join(segment_name(seg));
            let what = if seg == m.active { "the active segment" } else { "a sealed segment" };
            let reason = format!("{what} listed in {MANIFEST_FILE} is missing");
            if !tolerant {
                return Err(CoreError::corrupt(&path, 0, reason));
            }
            report.damaged.push(Damage::new(path, 0, 0, reason));
        }
        Ok(kept)
    }

    /// Check a sealed segment's header and length against its index (reading only
    /// the header and the index summary); rebuild the index when it is missing or damaged.
    fn open_sealed(&self, seg: u64, has_index: bool, tolerant: bool, report: &mut OpenReport) -> Result<IndexSummary> {
        let path = self.dir.join(segment_name(seg));
        let h = self.fs.open(&path, false).at(&path)?;
        let len = h.size().at(&path)?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let head_ok = h.read_exact_at(&mut head, 0).is_ok();
        match decode_segment_header(&head) {
            Err(HeaderError::Version(found)) => {
                return Err(CoreError::FormatVersion { path, found, supported: FORMAT_VERSION });
            }
            Ok((base, key_id)) if head_ok && base == seg => check_key_id(&path, key_id, self.opts.auth_key.as_ref())?,
            Ok((base, _)) if head_ok => {
                let why = format!("header says base offset {base}, file name says {seg}");
                return self.sealed_damage(seg, tolerant, report, CoreError::corrupt(&path, 16, why));
            }
            _ => return self.sealed_damage(seg, tolerant, report, CoreError::corrupt(&path, 0, "bad segment header")),
        }
        let idx_path = self.dir.join(index_name(seg));
        let parsed = if has_index {
            self.fs.open(&idx_path, false).ok().and_then(|ih| {
                let mut hb = [0u8; INDEX_HEADER_LEN];
                ih.read_exact_at(&mut hb, 0).ok()?;
                let (_, _, _, sum_len, _) = decode_index_header(&hb).ok()?;
                let mut all = vec![0u8; INDEX_HEADER_LEN + usize::try_from(sum_len).ok().filter(|&l| l <= 1 << 30)?];
                ih.read_exact_at(&mut all, 0).ok()?;
                parse_index(&all, seg).ok()
            })
        } else {
            None
        };
        // An index file cut short or grown is rebuilt like a missing one.
        let parsed = parsed.filter(|s| {
            let size = self.fs.open(&idx_path, false).and_then(|h| h.size()).ok();
            index_file_len(s).is_none_or(|want| size == Some(want))
        });
        match parsed {
            Some(s) if s.segment_len == len => Ok(s),
            Some(s) => {
                let why = format!("sealed segment is {len} bytes, its index says {}", s.segment_len);
                self.sealed_damage(seg, tolerant, report, CoreError::corrupt(&path, len.min(s.segment_len), why))
            }
            None => {
                let mode =
                    if tolerant { RecoveryMode::TolerateAnyCorruption } else { RecoveryMode::TolerateTailCorruption };
                let (summary, damaged, _) =
                    rebuild_index(self.fs, self.dir, seg, mode, !self.opts.read_only, self.opts.auth_key.as_ref())?;
                report.rebuilt_indexes.push(idx_path);
                report.damaged.extend(damaged);
                Ok(summary)
            }
        }
    }

    /// Damage found in a sealed segment: an error, or in tolerant mode a rescan that
    /// keeps every valid record and reports the rest.
    fn sealed_damage(&self, seg: u64, tolerant: bool, report: &mut OpenReport, err: CoreError) -> Result<IndexSummary> {
        if !tolerant {
            return Err(err);
        }
        if let CoreError::Corrupt { path, offset, reason } = &err {
            report.damaged.push(Damage::new(path, *offset, 0, reason.clone()));
        }
        let (summary, damaged, _) = rebuild_index(
            self.fs,
            self.dir,
            seg,
            RecoveryMode::TolerateAnyCorruption,
            !self.opts.read_only,
            self.opts.auth_key.as_ref(),
        )?;
        report.rebuilt_indexes.push(self.dir.join(index_name(seg)));
        report.damaged.extend(damaged);
        Ok(summary)
    }

    fn open_active(
        &self,
        seg: u64,
        tolerant: bool,
        index: &mut Index,
        report: &mut OpenReport,
    ) -> Result<(Writer, u64)> {
        let path = self.dir.join(segment_name(seg));
        let read_only = self.opts.read_only;
        let file = self.fs.open(&path, !read_only).at(&path)?;
        let mut bytes = read_all(&file, &path)?;
        // A segment is renamed into place only once its header is synced, so a header
        // never fully written (a file shorter than it, or of it alone and all zeros) is
        // left only by a power loss in the restart below: start it again. A bad header
        // with bytes after it is damage, handled by the match below.
        if bytes.len() < SEGMENT_HEADER_LEN || bytes == [0u8; SEGMENT_HEADER_LEN] {
            report.truncated_bytes += bytes.len() as u64;
            report.damaged.push(Damage::new(&path, 0, bytes.len() as u64, "segment header cut short (torn creation)"));
            let header = encode_segment_header(seg, now_us(), key_id(self.opts));
            if !read_only {
                file.set_len(0).at(&path)?;
                file.write_all_at(&header, 0).at(&path)?;
                file.sync_data().at(&path)?;
            }
            bytes = header.to_vec();
        }
        match decode_segment_header(&bytes) {
            Ok((base, key_id)) if base == seg => check_key_id(&path, key_id, self.opts.auth_key.as_ref())?,
            // Tolerant: a damaged header is reported and written anew; the records after it still count.
            Ok(_) | Err(HeaderError::Invalid(_)) if tolerant => {
                report.damaged.push(Damage::new(&path, 0, SEGMENT_HEADER_LEN as u64, "bad segment header"));
                let header = encode_segment_header(seg, now_us(), key_id(self.opts));
                if !read_only {
                    file.write_all_at(&header, 0).at(&path)?;
                    file.sync_data().at(&path)?;
                }
                bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&header);
            }
            Ok((base, _)) => {
                return Err(CoreError::corrupt(
                    &path,
                    16,
                    format!("header says base offset {base}, file name says {seg}"),
                ))
            }
            Err(e) => return Err(header_error(&path, e)),
        }
        let Scan { records, damaged, tail } = scan(&bytes, &path, seg, self.opts.auth_key.as_ref());
        if let Some(d) = damaged.first() {
            if !tolerant {
                return Err(damage_error(d, |why| format!("{why} (valid records follow, so this is not a torn tail)")));
            }
        }
        report.damaged.extend(damaged);
        let mut end = bytes.len() as u64;
        if let Some(t) = tail {
            if !read_only {
                file.set_len(t.offset).at(&path)?;
            }
            report.truncated_bytes += t.bytes;
            report.dropped_records += t.records;
            report.damaged.push(Damage::new(&path, t.offset, t.bytes, t.reason));
            end = t.offset;
        }
        // Under `group` and `sync`, what was recovered is made durable before anything is
        // appended after it (the new life may act on records a power loss would take back).
        // `process` promises only a prefix after a power loss, so its open skips the
        // fdatasync, which costs milliseconds when the killed writer left dirty pages.
        if !read_only && self.opts.durability != Durability::Process {
            file.sync_data().at(&path)?;
        }
        // The next record continues the offsets the scan expects: one past the last
        // valid record, or the segment's base. (Taking a sealed segment's end instead
        // made the scan at the next open take the new records for damage when names and
        // offsets disagree: found by the open_dir fuzz target.)
        let next_offset = records.last().map_or(seg, |r| r.header.offset.saturating_add(1));
        if next_offset > MAX_OFFSET {
            return Err(CoreError::corrupt(&path, 16, format!("global offset {next_offset} is past 2^63")));
        }
        for r in &records {
            let e = Entry { seq: r.header.seq, pos: r.pos, len: r.len, kind: r.header.kind };
            index.streams.entry(r.stream.clone()).or_default().add_active(seg, e, r.tombstone);
        }
        let w = Writer { file, base: seg, pos: end, next_offset, lsn: 0, appended: 0, buf: Vec::new(), failed: None };
        Ok((w, records.len() as u64))
    }
}
