//! A fault-injecting file system for tests (cargo feature `fault-injection`, off in
//! release wheels): the real file system, with every write, fdatasync, rename and
//! directory sync of the log passing through one counter so a test can fail exactly
//! the one it chooses, and a model of what a power loss would keep.
//!
//! **Counting.** Four kinds of operation are counted: `write` (one `write_all_at`),
//! `fdatasync`, `rename` and `dirsync`, plus `any` (all four together). A rule set with
//! [`FaultFs::fail_after`] fires on the k-th operation of its kind from now (k ≥ 1),
//! once: the operation fails with an errno (`ENOSPC`, `EIO`, …), or, for a write,
//! writes the first half of the buffer and then fails (a short write), or cuts the
//! power (see below) and fails with `EIO`. A test enumerates every failure point of a
//! workload by running it once to count its operations, then once per k.
//! [`FaultFs::set_space`] models a full disk: once that many more bytes are written,
//! every write writes what still fits and fails with `ENOSPC` until the limit is
//! lifted. Creations, removals, truncations and reads are not counted and never fail.
//!
//! **Power loss.** Each file is known by an identity (its inode, so to speak). What a
//! power loss keeps of a file is its *durable image*: its bytes as of its last
//! completed fdatasync (a file that was never synced is empty; a file that existed
//! before the `FaultFs` first saw it counts as durable as it was then). Writes and
//! truncations after that are lost, at whatever offsets they were. Names are durable
//! separately: a creation, rename or removal counts only once the directory holding
//! the name was fsynced (`dirsync`), and a directory made by `create_dir_all` only once
//! its parent was. [`FaultFs::power_loss`] rewrites the real files on disk to what a
//! machine would find after rebooting: every durable name holds its file's durable
//! image (a name removed or renamed away since the last directory sync comes back), a
//! name never made durable is deleted, a directory never made durable is deleted with
//! everything in it. From then on every operation through this `FaultFs` and its
//! handles fails with `EIO`, so the test drops the store and reopens the directory on
//! the real file system. Not modelled: a write that partly reaches the disk (torn
//! sectors), reordering of unsynced writes (all of them are dropped, none kept), and
//! the lock file (it is passed through untouched). fdatasync and directory fsync update
//! the model but are not passed to the disk: the model decides what survives, and the
//! tests that enumerate thousands of cut points stay fast.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::format::SEGMENT_SUFFIX;
use crate::fs::{FileHandle, FileSystem, Handle, LockGuard, StdFs};

/// ENOSPC: no space left on the device.
pub const ENOSPC: i32 = 28;
/// EIO: an I/O error.
pub const EIO: i32 = 5;

/// A kind of counted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// One `write_all_at`.
    Write,
    /// An fdatasync of a file.
    Sync,
    /// A rename.
    Rename,
    /// An fsync of a directory.
    DirSync,
    /// Any of the four.
    Any,
}

impl Op {
    /// Parse `"write"`, `"fdatasync"`, `"rename"`, `"dirsync"` or `"any"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "write" => Some(Self::Write),
            "fdatasync" => Some(Self::Sync),
            "rename" => Some(Self::Rename),
            "dirsync" => Some(Self::DirSync),
            "any" => Some(Self::Any),
            _ => None,
        }
    }
}

/// What a rule does to the operation it fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this errno; nothing is done.
    Error(i32),
    /// A write writes the first half of its buffer, then fails with this errno (other
    /// operations just fail).
    Short(i32),
    /// Cut the power (see [`FaultFs::power_loss`]) and fail with `EIO`.
    PowerLoss,
}

/// How many operations went through, and how many faults were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Writes.
    pub write: u64,
    /// fdatasyncs.
    pub sync: u64,
    /// Renames.
    pub rename: u64,
    /// Directory fsyncs.
    pub dirsync: u64,
    /// Faults injected (rules fired, writes refused for lack of space, power losses).
    pub injected: u64,
    /// Bytes read from segment files (for tests of what open and reads touch).
    pub segment_bytes_read: u64,
}

impl Counts {
    /// All counted operations.
    pub fn total(&self) -> u64 {
        self.write + self.sync + self.rename + self.dirsync
    }

    fn of(&self, op: Op) -> u64 {
        match op {
            Op::Write => self.write,
            Op::Sync => self.sync,
            Op::Rename => self.rename,
            Op::DirSync => self.dirsync,
            Op::Any => self.total(),
        }
    }
}

struct Rule {
    op: Op,
    /// Fires when the count of `op` reaches this.
    at: u64,
    fault: Fault,
}

#[derive(Default)]
struct State {
    counts: Counts,
    rules: Vec<Rule>,
    space: Option<u64>,
    powered_off: bool,
    next_id: u64,
    /// The durable image of each file identity.
    durable: HashMap<u64, Vec<u8>>,
    /// Names as the running process sees them.
    names: HashMap<PathBuf, u64>,
    /// Names as a reboot would find them.
    durable_names: HashMap<PathBuf, u64>,
    /// Directories created and not yet made durable by an fsync of their parent.
    new_dirs: HashSet<PathBuf>,
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl State {
    /// Count `op`; fail it if the power is off or a rule fires.
    fn before(&mut self, op: Op) -> io::Result<Option<Fault>> {
        if self.powered_off {
            return Err(powered_off());
        }
        match op {
            Op::Write => self.counts.write += 1,
            Op::Sync => self.counts.sync += 1,
            Op::Rename => self.counts.rename += 1,
            Op::DirSync => self.counts.dirsync += 1,
            Op::Any => {}
        }
        let counts = self.counts;
        let fired = self.rules.iter().position(|r| (r.op == op || r.op == Op::Any) && counts.of(r.op) == r.at);
        let Some(i) = fired else { return Ok(None) };
        let fault = self.rules.swap_remove(i).fault;
        self.counts.injected += 1;
        match fault {
            Fault::Error(errno) => Err(io::Error::from_raw_os_error(errno)),
            Fault::PowerLoss => {
                self.cut_power()?;
                Err(powered_off())
            }
            Fault::Short(errno) if op != Op::Write => Err(io::Error::from_raw_os_error(errno)),
            Fault::Short(_) => Ok(Some(fault)),
        }
    }

    /// Give `path` an identity if it exists on disk and has none yet: it counts as
    /// durable as it is now.
    fn register(&mut self, path: &Path) -> Option<u64> {
        if let Some(&id) = self.names.get(path) {
            return Some(id);
        }
        let bytes = std::fs::read(path).ok()?;
        let id = self.new_id(bytes);
        self.names.insert(path.to_owned(), id);
        self.durable_names.insert(path.to_owned(), id);
        Some(id)
    }

    fn new_id(&mut self, durable: Vec<u8>) -> u64 {
        self.next_id += 1;
        self.durable.insert(self.next_id, durable);
        self.next_id
    }

    fn sync_dir(&mut self, dir: &Path) {
        let in_dir = |p: &PathBuf| parent(p) == dir;
        self.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> =
            self.names.iter().filter(|(p, _)| in_dir(p)).map(|(p, &i)| (p.clone(), i)).collect();
        self.durable_names.extend(now);
        self.new_dirs.retain(|d| parent(d) != dir);
    }

    /// Rewrite the disk to its durable image and refuse everything from now on.
    fn cut_power(&mut self) -> io::Result<()> {
        self.powered_off = true;
        let mut paths: HashSet<&PathBuf> = self.names.keys().collect();
        paths.extend(self.durable_names.keys());
        for path in paths {
            match self.durable_names.get(path).and_then(|id| self.durable.get(id)) {
                Some(bytes) => {
                    let mut f =
                        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
                    io::Write::write_all(&mut f, bytes)?;
                }
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
            }
        }
        for dir in &self.new_dirs {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn powered_off() -> io::Error {
    io::Error::other("the power was cut (simulated power loss)")
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real file system with counted, injectable faults and a power-loss model
/// (see the module documentation). Cheap to clone: clones share one state.
#[derive(Clone, Default)]
pub struct FaultFs {
    state: Shared,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFs").field("counts", &self.counts()).finish()
    }
}

impl FaultFs {
    /// A fault layer with no rule and no space limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inject `fault` into the `k`-th operation of kind `op` from now (k ≥ 1), once.
    pub fn fail_after(&self, op: Op, k: u64, fault: Fault) {
        let mut s = lock(&self.state);
        let at = s.counts.of(op) + k.max(1);
        s.rules.push(Rule { op, at, fault });
    }

    /// Drop every rule that has not fired.
    pub fn clear_rules(&self) {
        lock(&self.state).rules.clear();
    }

    /// Allow only `bytes` more bytes to be written (`None`: no limit). Past it, each
    /// write writes what still fits and fails with `ENOSPC`.
    pub fn set_space(&self, bytes: Option<u64>) {
        lock(&self.state).space = bytes;
    }

    /// The counters.
    pub fn counts(&self) -> Counts {
        lock(&self.state).counts
    }

    /// True once the power was cut.
    pub fn powered_off(&self) -> bool {
        lock(&self.state).powered_off
    }

    /// Cut the power now: rewrite every file and name this layer has seen to its
    /// durable image; every later operation fails with `EIO`.
    ///
    /// # Errors
    /// When rewriting the real files fails.
    pub fn power_loss(&self) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Ok(());
        }
        s.counts.injected += 1;
        s.cut_power()
    }

    fn handle(&self, path: &Path, inner: Handle, id: u64) -> Handle {
        let segment = path.to_string_lossy().contains(SEGMENT_SUFFIX);
        Arc::new(FaultHandle { inner, id, segment, state: Arc::clone(&self.state) })
    }
}

struct FaultHandle {
    inner: Handle,
    id: u64,
    /// A segment file (or its `.tmp`): reads are counted.
    segment: bool,
    state: Shared,
}

impl FileHandle for FaultHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        let n = self.inner.read_at(buf, offset)?;
        if self.segment {
            s.counts.segment_bytes_read += n as u64;
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = lock(&self.state);
        let fault = s.before(Op::Write)?;
        if let Some(Fault::Short(errno)) = fault {
            self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::from_raw_os_error(errno));
        }
        if let Some(space) = s.space {
            let len = buf.len() as u64;
            if len > space {
                s.space = Some(0);
                s.counts.injected += 1;
                let fits = usize::try_from(space).unwrap_or(usize::MAX).min(buf.len());
                self.inner.write_all_at(&buf[..fits], offset)?;
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            s.space = Some(space - len);
        }
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.before(Op::Sync)?;
        // Not passed to the disk: the model, not the disk, decides what a power loss keeps.
        let mut image = vec![0u8; usize::try_from(self.inner.size()?).map_err(io::Error::other)?];
        self.inner.read_exact_at(&mut image, 0)?;
        s.durable.insert(self.id, image);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        self.inner.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        let s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        self.inner.size()
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        // The topmost directory this call creates: deleting it undoes the whole call.
        let mut top = None;
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            top = Some(p.to_owned());
            d = p.parent();
        }
        StdFs.create_dir_all(dir)?;
        s.new_dirs.extend(top);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        if lock(&self.state).powered_off {
            return Err(powered_off());
        }
        StdFs.list(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Handle> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        let h = StdFs.create(path)?;
        let id = s.new_id(Vec::new());
        s.names.insert(path.to_owned(), id);
        Ok(self.handle(path, h, id))
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<Handle> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        let h = StdFs.open(path, write)?;
        let id = s.register(path).ok_or_else(|| io::Error::other("opened a file that cannot be read"))?;
        Ok(self.handle(path, h, id))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.before(Op::Rename)?;
        s.register(from);
        s.register(to);
        StdFs.rename(from, to)?;
        if let Some(id) = s.names.remove(from) {
            s.names.insert(to.to_owned(), id);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.powered_off {
            return Err(powered_off());
        }
        s.register(path);
        StdFs.remove(path)?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.before(Op::DirSync)?;
        std::fs::metadata(dir)?; // a missing directory still fails; no real fsync (see `sync_data`)
        s.sync_dir(dir);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        StdFs.lock(path)
    }
}
