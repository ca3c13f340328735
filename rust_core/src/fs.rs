//! The file-system interface every file operation of the log goes through, so a
//! fault-injecting implementation can be put under the log without touching its logic.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// An open file: positional reads and writes, so handles can be shared by threads.
pub trait FileHandle: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read (0 at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncate or extend to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Read exactly `buf.len()` bytes at `offset`, or fail with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends early")),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A shared, open file.
pub type Handle = Arc<dyn FileHandle>;

/// What a closed log holds in place of its files, so their descriptors are released
/// at `close()`: every operation fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClosedFile;

fn closed() -> io::Error {
    io::Error::other("the log is closed")
}

impl FileHandle for ClosedFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
        Err(closed())
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn sync_data(&self) -> io::Result<()> {
        Err(closed())
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(closed())
    }
    fn size(&self) -> io::Result<u64> {
        Err(closed())
    }
}

/// A held advisory lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync {}

/// Directory and file operations of the log.
pub trait FileSystem: Send + Sync {
    /// Create `dir` (mode 0700) and its parents if missing; an existing `dir` that
    /// others may enter (any group or other bit set) is tightened to 0700.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Create a new file (mode 0600, read-write); fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Handle>;
    /// Open an existing file, read-write when `write`.
    fn open(&self, path: &Path, write: bool) -> io::Result<Handle>;
    /// Atomically rename `from` to `to` (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync a directory, making its entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Take an exclusive, non-blocking advisory lock on `path` (created 0600 if missing)
    /// and on the directory holding it, which, unlike the file, cannot be deleted
    /// from under the holder to let a second one in, and write this process's id into
    /// `path`. Fails with `ErrorKind::WouldBlock` when another holder has either, the
    /// error's inner value then a `LockHeld` naming the holder when `path` does.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// The real file system. Every store file is opened with `O_NOFOLLOW` and must be a
/// regular file: a symlink (or FIFO, device, directory) planted in place of a segment,
/// index, MANIFEST, LOCK or `.tmp` file is refused with an I/O error naming it, never
/// followed, so nothing outside the store directory is read or written.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

/// `O_NOFOLLOW`, and `O_NONBLOCK` so that opening a FIFO does not wait for a writer
/// before `open_regular` can refuse it (it changes nothing for a regular file).
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Open with `OPEN_FLAGS`; the file must be a regular one.
fn open_regular(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let f = opts.custom_flags(OPEN_FLAGS).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(e.kind(), "is a symbolic link, which a store never follows: its files must be regular files")
        } else {
            e
        }
    })?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "is not a regular file: a store opens no other kind"));
    }
    Ok(f)
}

/// The inner value of the `WouldBlock` error of `FileSystem::lock`: the process that
/// holds the lock, as it wrote its id into the lock file (`None` if the file names none).
#[derive(Debug)]
pub struct LockHeld(pub Option<u32>);

impl std::fmt::Display for LockHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "locked by another writer (process {pid})"),
            None => f.write_str("locked by another writer"),
        }
    }
}

impl std::error::Error for LockHeld {}

/// The process id a lock file names: its first line as decimal digits, at most
/// 32 bytes read; anything else names none.
fn lock_holder(f: &File) -> Option<u32> {
    let mut buf = [0u8; 32];
    let n = FileExt::read_at(f, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Take `f`'s flock, non-blocking.
fn try_lock(f: &File) -> io::Result<()> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(io::ErrorKind::WouldBlock, LockHeld(None))),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

impl FileHandle for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// The store directory's and the LOCK file's flocks.
struct FileLock(#[allow(dead_code)] File, #[allow(dead_code)] File);
impl LockGuard for FileLock {}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn create(&self, path: &Path) -> io::Result<Handle> {
        let f = open_regular(OpenOptions::new().read(true).write(true).create_new(true).mode(0o600), path)?;
        Ok(Arc::new(f))
    }
    fn open(&self, path: &Path, write: bool) -> io::Result<Handle> {
        Ok(Arc::new(open_regular(OpenOptions::new().read(true).write(write), path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let d = File::open(dir)?;
        // The LOCK file's flock too, which writers of earlier versions take alone.
        let f = open_regular(OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600), path)?;
        if let Err(e) = try_lock(&d).and_then(|()| try_lock(&f)) {
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, LockHeld(lock_holder(&f))));
            }
            return Err(e);
        }
        // Who holds it, for the error of the next opener (not synced: after a crash the
        // lock is free and the id is not read).
        f.set_len(0)?;
        FileExt::write_all_at(&f, format!("{}\n", std::process::id()).as_bytes(), 0)?;
        Ok(Box::new(FileLock(d, f)))
    }
}
