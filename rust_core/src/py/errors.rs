//! The one mapping from `CoreError` to the Python classes of `pyactors.errors`.

use pyo3::exceptions::PyMemoryError;
use pyo3::PyErr;

use crate::error::CoreError;

pyo3::import_exception!(pyactors.errors, AuthenticationError);
pyo3::import_exception!(pyactors.errors, CorruptSegmentError);
pyo3::import_exception!(pyactors.errors, FormatVersionError);
pyo3::import_exception!(pyactors.errors, InvalidArgumentError);
pyo3::import_exception!(pyactors.errors, StoreClosedError);
pyo3::import_exception!(pyactors.errors, StoreForkedError);
pyo3::import_exception!(pyactors.errors, StoreIOError);
pyo3::import_exception!(pyactors.errors, StoreLockedError);

impl From<CoreError> for PyErr {
    #[cold]
    #[inline(never)]
    fn from(e: CoreError) -> PyErr {
        let text = e.to_string();
        match e {
            CoreError::Io { path, source } => {
                let errno = source.raw_os_error().unwrap_or(libc_eio());
                StoreIOError::new_err((errno, text, path.display().to_string()))
            }
            CoreError::Locked { .. } => StoreLockedError::new_err(text),
            CoreError::Forked { .. } => StoreForkedError::new_err(text),
            CoreError::Corrupt { path, offset, reason } => {
                CorruptSegmentError::new_err((path.display().to_string(), offset, reason))
            }
            CoreError::Authentication { path, offset, reason } => {
                AuthenticationError::new_err((path.display().to_string(), offset, reason))
            }
            CoreError::FormatVersion { path, found, supported } => {
                FormatVersionError::new_err((path.display().to_string(), found, supported))
            }
            CoreError::InvalidArgument(msg) => InvalidArgumentError::new_err(msg),
            CoreError::Closed => StoreClosedError::new_err(text),
            CoreError::OutOfMemory { .. } => PyMemoryError::new_err(text),
        }
    }
}

/// EIO, for I/O errors that carry no errno (a short read, a failed check).
const fn libc_eio() -> i32 {
    5
}
