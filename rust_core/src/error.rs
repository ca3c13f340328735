//! The one error type of the core. The binding layer maps each variant to a class of
//! `pyactors.errors` in exactly one place (`py/errors.rs`).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the segment log.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The operating system refused an operation (disk full, EIO, permissions…).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The OS error (keeps its errno).
        #[source]
        source: io::Error,
    },
    /// Another process (or another open handle) holds the store's writer lock.
    #[error(
        "{}: the store is locked by another writer{}",
        path.display(),
        holder.map_or(String::new(), |pid| format!(" (process {pid}, as its LOCK file says)"))
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// The process holding the lock, as the holder wrote it into `LOCK` (`None` if
        /// the file names none: a writer of an earlier release, or unreadable).
        holder: Option<u32>,
    },
    /// Bytes that must be a valid record, header or index are damaged.
    #[error("{}: corrupt at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage is, in bytes from the start of the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Bytes that are intact (their CRC matches) fail authentication: a record's MAC does
    /// not check out, a record lacks one in a keyed store, or a segment was written with
    /// another key (or with a key when none was given, or without one when one was).
    #[error("{}: authentication failed at byte offset {offset}: {reason}", path.display())]
    Authentication {
        /// The file.
        path: PathBuf,
        /// Where the record (or the segment header's key id) is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("{}: format version {found} is not supported (this build reads {supported})", path.display())]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A caller passed something out of range; nothing was written.
    #[error("{0}")]
    InvalidArgument(String),
    /// The log was used in a process forked from the one that opened it: the child
    /// shares the parent's files, lock and write position, so it may not touch them.
    #[error(
        "{}: the store was opened by process {opened_by}, and this process is a fork of it: \
         open the store again in this process (after the parent closed it), open a read-only view, \
         or use the spawn start method",
        path.display()
    )]
    Forked {
        /// The store directory.
        path: PathBuf,
        /// The id of the process that opened the store.
        opened_by: u32,
    },
    /// The log was used after `close()`.
    #[error("the store is closed")]
    Closed,
    /// Memory for a record (its stored frame or its payload) could not be had: the
    /// operating system refused the allocation (an address-space limit, say).
    #[error("out of memory: {bytes} bytes for a record could not be allocated")]
    OutOfMemory {
        /// The size of the allocation refused.
        bytes: usize,
    },
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    /// Wrap an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CoreError::Io { path: path.into(), source }
    }

    /// A corruption error at `offset` of `path`.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        CoreError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }

    /// An authentication error at `offset` of `path`.
    pub fn authentication(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        CoreError::Authentication { path: path.into(), offset, reason: reason.into() }
    }
}

/// Attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| CoreError::io(path, e))
    }
}
