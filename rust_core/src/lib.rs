//! pyactors-core: an append-only, zstd-compressed, CRC32C-checked segment log.
//!
//! The storage modules know nothing of Python; the PyO3 binding lives in `py/`,
//! compiled only with the `python` feature (maturin turns it on), so plain
//! `cargo test` needs no Python. The on-disk format is described in `docs/FORMAT.md`
//! and in `// Format:` comments next to the code that writes it.
//!
//! No panic may be reachable from Python arguments or file bytes: beside the crate's
//! `unwrap_used`/`expect_used` lints, the library denies the panicking macros outside
//! tests (and `codec` denies indexing and unchecked arithmetic on file bytes).
#![cfg_attr(not(test), deny(clippy::panic, clippy::unreachable, clippy::todo, clippy::unimplemented))]

pub mod auth;
mod cache;
pub mod codec;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod format;
pub mod fs;
pub mod index;
pub mod log;
pub mod record;
pub mod scan;

#[cfg(feature = "python")]
mod py;

pub use auth::AuthKey;
pub use error::{CoreError, Result};
pub use log::{
    CompactReport, Durability, Log, NewRecord, OpenReport, Options, PreparedBatch, Record, RecoveryMode, Stats,
    TryAppend, VerifyReport,
};
pub use scan::Damage;
