//! The file-system interface every file operation of the log goes through, so a
//! fault-injecting implementation can be put under the log without touching its logic.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
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
    /// Create `dir` (mode 0700) and its parents if missing.
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
    /// Take an exclusive, non-blocking advisory lock on `path` (created 0600 if missing).
    /// Fails with `ErrorKind::WouldBlock` when another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

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

struct FileLock(#[allow(dead_code)] File);
impl LockGuard for FileLock {}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
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
        let f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)?;
        Ok(Arc::new(f))
    }
    fn open(&self, path: &Path, write: bool) -> io::Result<Handle> {
        Ok(Arc::new(OpenOptions::new().read(true).write(write).open(path)?))
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
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(FileLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "locked by another writer"))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
