//! The PyO3 binding: `pyactors._core`. Arguments are copied into owned Rust values,
//! then every piece of file I/O, compression and decompression runs inside
//! `py.detach` with the GIL released — but one: an append of fewer than
//! `KEEP_GIL_MAX_BYTES` is checked and compressed (microseconds) with the GIL held, and
//! written with it too when `Log::try_append_many` can do so at once (no fdatasync, no
//! segment roll, the writer free): one write into the page cache. Otherwise the GIL is
//! released while `Log::append_prepared` waits. Releasing it there cost more than the write: the caller then waits for
//! whichever thread took the GIL (a pykka actor, LangGraph's loop) to hand it back.
//! (`tell` throughput of a `PersistentActor` went up by half; small LangGraph
//! checkpoints got about twice as cheap; docs/PERFORMANCE.md.) It never waits for a
//! lock with the GIL held (but the latest-record cache's mutex, which is only ever held
//! for a map lookup or update, never across I/O or a call into Python), so it cannot
//! deadlock with a thread that holds the writer and calls back into Python
//! (compaction's progress). Likewise `latest` answered from
//! the latest-record cache (`Log::latest_in_memory`: try-locks only, no I/O) is a copy
//! made with the GIL held.

mod errors;
#[cfg(feature = "fault-injection")]
mod fault;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::auth::AuthKey;
use crate::error::CoreError;
use crate::fs::{FileSystem, StdFs};
use crate::log::{
    Durability, Located, Log, NewRecord, Options, Record, RecoveryMode, TryAppend, COMPRESSION_LEVELS, SEGMENT_BYTES,
};
use crate::scan::Damage;

type RawRecord<'py> = (String, u8, u64, i64, Bound<'py, PyBytes>);

fn to_py<'py>(py: Python<'py>, r: &Record) -> PyResult<RawRecord<'py>> {
    Ok((r.stream.clone(), r.kind, r.seq, r.timestamp_us, bytes(py, &r.payload)?))
}

/// A copy of `b` as `bytes`; `MemoryError` (not a panic) when Python cannot allocate it.
fn bytes<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, b.len(), |out| {
        out.copy_from_slice(b);
        Ok(())
    })
}

/// A numeric argument converted as PyO3 converts it, but a value the Rust type cannot
/// hold (PyO3's `OverflowError`: too large, or negative for an unsigned type) is
/// `InvalidArgumentError` naming the argument and `range`, the values it takes.
fn arg<'py, T>(value: &Bound<'py, PyAny>, name: &str, range: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    value.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        if e.is_instance_of::<PyOverflowError>(value.py()) {
            CoreError::InvalidArgument(format!("{name} must be {range}, got {value}")).into()
        } else {
            e
        }
    })
}

/// The range text of an unsigned 64-bit argument.
const U64: &str = "an integer from 0 to 2**64 - 1";
/// The range text of `group_commit_ms`.
const GROUP_COMMIT_MS: &str = "a number of milliseconds from a nanosecond (1e-6) to below 2**64 seconds";

/// `fn $f(value) -> PyResult<$t>`: `arg` for a parameter with a default (PyO3's
/// `from_py_with` takes a function's path).
macro_rules! arg_fn {
    ($f:ident, $t:ty, $name:literal, $range:expr) => {
        fn $f(value: &Bound<'_, PyAny>) -> PyResult<$t> {
            arg(value, $name, $range)
        }
    };
}
arg_fn!(group_commit_ms_arg, f64, "group_commit_ms", GROUP_COMMIT_MS);
arg_fn!(segment_bytes_arg, u64, "segment_bytes", SEGMENT_BYTES);
arg_fn!(compression_level_arg, i32, "compression_level", COMPRESSION_LEVELS);
arg_fn!(compress_min_bytes_arg, usize, "compress_min_bytes", U64);
arg_fn!(cache_bytes_arg, usize, "cache_bytes", U64);
arg_fn!(after_seq_arg, u64, "after_seq", U64);
arg_fn!(min_dead_ratio_arg, f64, "min_dead_ratio", "a number from 0 to 1");

fn damages(py: Python<'_>, list: &[Damage]) -> PyResult<Py<PyList>> {
    let items: Vec<(String, u64, u64, String, bool)> =
        list.iter().map(|d| (d.path.display().to_string(), d.offset, d.length, d.reason.clone(), d.tampered)).collect();
    Ok(PyList::new(py, items)?.unbind())
}

/// Checked conversion of a Python int to a record kind.
fn kind(k: &Bound<'_, PyAny>) -> PyResult<u8> {
    arg(k, "record kind", "1 to 255")
}

/// Checked conversion of an optional list of record kinds.
fn kinds(ks: Option<Vec<Bound<'_, PyAny>>>) -> PyResult<Option<Vec<u8>>> {
    ks.map(|ks| ks.iter().map(kind).collect()).transpose()
}

/// Calls a Python `progress(done, total)` from a long operation running without the
/// GIL (taking it for the call), and checks for signals so Ctrl-C stops the operation.
/// The first exception stops the operation and is raised when it returns.
struct Progress {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Progress {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        Self { callback, error: None }
    }

    /// Report; `false` (stop) once the callback or a signal handler raised, or once the
    /// callback forked and this is the child (which must not go on with `log`'s work).
    fn report(&mut self, log: &Log, done: u64, total: u64) -> bool {
        if self.error.is_some() {
            return false;
        }
        let outcome = Python::attach(|py| {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                cb.call1(py, (done, total))?;
            }
            log.check_process()?;
            Ok::<(), PyErr>(())
        });
        if let Err(e) = outcome {
            self.error = Some(e);
        }
        self.error.is_none()
    }

    fn raise(&mut self) -> PyResult<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

/// The real file system, or (test builds only) the fault layer passed as `_fault`.
fn file_system(fault: Option<Bound<'_, PyAny>>) -> PyResult<Arc<dyn FileSystem>> {
    match fault {
        None => Ok(Arc::new(StdFs)),
        #[cfg(feature = "fault-injection")]
        Some(f) => Ok(f.cast::<fault::PyFaultFs>()?.get().file_system()),
        #[cfg(not(feature = "fault-injection"))]
        Some(_) => {
            Err(CoreError::InvalidArgument("_fault needs a build with the fault-injection feature".into()).into())
        }
    }
}

/// An open segment log (see `pyactors.store.SegmentStore`, the public API).
#[pyclass(name = "SegmentLog", module = "pyactors._core", frozen)]
struct PySegmentLog {
    log: Arc<Log>,
    path: String,
}

/// Appends smaller than this (payload bytes in all) may run with the GIL held (module docs).
const KEEP_GIL_MAX_BYTES: usize = 16 * 1024;

impl PySegmentLog {
    fn append_batch(&self, py: Python<'_>, batch: &[NewRecord<'_>]) -> Result<Vec<(u64, i64)>, CoreError> {
        if batch.iter().map(|r| r.payload.len()).sum::<usize>() >= KEEP_GIL_MAX_BYTES {
            return py.detach(|| self.log.append_many(batch));
        }
        match self.log.try_append_many(batch)? {
            TryAppend::Done(done) => Ok(done),
            TryAppend::Wait(prepared) => py.detach(|| self.log.append_prepared(prepared)),
        }
    }
}

#[pymethods]
impl PySegmentLog {
    #[new]
    #[pyo3(signature = (path, *, durability="process", group_commit_ms=5.0, segment_bytes=67_108_864, compression_level=3, compress_min_bytes=256, tolerant=false, read_only=false, auth_key=None, cache_bytes=67_108_864, _fault=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: String,
        durability: &str,
        #[pyo3(from_py_with = group_commit_ms_arg)] group_commit_ms: f64,
        #[pyo3(from_py_with = segment_bytes_arg)] segment_bytes: u64,
        #[pyo3(from_py_with = compression_level_arg)] compression_level: i32,
        #[pyo3(from_py_with = compress_min_bytes_arg)] compress_min_bytes: usize,
        tolerant: bool,
        read_only: bool,
        auth_key: Option<PyBackedBytes>,
        #[pyo3(from_py_with = cache_bytes_arg)] cache_bytes: usize,
        _fault: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // NaN, infinities, negatives, less than a nanosecond (a busy flusher) and more
        // than a `Duration` holds (a panic in `Duration::from_secs_f64`) are refused alike.
        let group_commit =
            Duration::try_from_secs_f64(group_commit_ms / 1000.0).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                CoreError::InvalidArgument(format!("group_commit_ms must be {GROUP_COMMIT_MS}, got {group_commit_ms}"))
            })?;
        let opts = Options {
            durability: Durability::parse(durability)?,
            group_commit,
            segment_bytes,
            compression_level,
            compress_min_bytes,
            recovery: if tolerant { RecoveryMode::TolerateAnyCorruption } else { RecoveryMode::TolerateTailCorruption },
            read_only,
            // Only the keyed HMAC state is kept (in Rust memory); the bytes object is dropped.
            auth_key: auth_key.map(|k| AuthKey::new(&k)).transpose()?,
            cache_bytes,
        };
        let fs = file_system(_fault)?;
        let log = py.detach(|| Log::open_with(&path, opts, fs))?;
        Ok(Self { log: Arc::new(log), path })
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn durability(&self) -> &'static str {
        self.log.options().durability.name()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.log.is_closed()
    }

    fn open_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.log.open_report();
        let d = PyDict::new(py);
        d.set_item("segments", r.segments)?;
        d.set_item("records", r.records)?;
        d.set_item("truncated_bytes", r.truncated_bytes)?;
        d.set_item("dropped_records", r.dropped_records)?;
        d.set_item("damaged", damages(py, &r.damaged)?)?;
        let rebuilt: Vec<String> = r.rebuilt_indexes.iter().map(|p| p.display().to_string()).collect();
        d.set_item("rebuilt_indexes", rebuilt)?;
        d.set_item("elapsed_us", r.elapsed.as_micros() as u64)?;
        Ok(d)
    }

    #[pyo3(signature = (stream, kind, payload, *, compress=true))]
    fn append(
        &self,
        py: Python<'_>,
        stream: &str,
        kind: Bound<'_, PyAny>,
        payload: PyBackedBytes,
        compress: bool,
    ) -> PyResult<(u64, i64)> {
        let batch = [NewRecord { stream, kind: self::kind(&kind)?, payload: &payload, compress }];
        let out = self.append_batch(py, &batch)?;
        Ok(out.first().copied().ok_or_else(|| CoreError::InvalidArgument("nothing appended".into()))?)
    }

    #[pyo3(signature = (records, *, compress=true))]
    fn append_many(
        &self,
        py: Python<'_>,
        records: Vec<(String, Bound<'_, PyAny>, PyBackedBytes)>,
        compress: bool,
    ) -> PyResult<Vec<u64>> {
        let kinds = records.iter().map(|r| kind(&r.1)).collect::<PyResult<Vec<u8>>>()?;
        let batch: Vec<NewRecord<'_>> = records
            .iter()
            .zip(&kinds)
            .map(|((stream, _, payload), &kind)| NewRecord { stream, kind, payload, compress })
            .collect();
        let out = self.append_batch(py, &batch)?;
        Ok(out.into_iter().map(|(seq, _)| seq).collect())
    }

    #[pyo3(signature = (stream, kind, head=None))]
    fn latest<'py>(
        &self,
        py: Python<'py>,
        stream: &str,
        kind: Bound<'py, PyAny>,
        head: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<RawRecord<'py>>> {
        let kind = self::kind(&kind)?;
        if let Some(head) = head {
            let n = arg(&head, "head", U64)?;
            let r = py.detach(|| self.log.latest_head(stream, kind, n))?;
            return r.map(|r| to_py(py, &r)).transpose();
        }
        // From the latest-record cache: a copy, no I/O, so the GIL is kept (see above).
        if let Some(r) = self.log.latest_in_memory(stream, kind) {
            return to_py(py, &r).map(Some);
        }
        let r = py.detach(|| self.log.latest(stream, kind))?;
        r.map(|r| to_py(py, &r)).transpose()
    }

    fn latest_many<'py>(
        &self,
        py: Python<'py>,
        streams: Vec<String>,
        kind: Bound<'py, PyAny>,
    ) -> PyResult<Vec<Option<RawRecord<'py>>>> {
        let kind = self::kind(&kind)?;
        let out = py.detach(|| self.log.latest_many(&streams, kind))?;
        out.iter().map(|r| r.as_ref().map(|r| to_py(py, r)).transpose()).collect()
    }

    #[pyo3(signature = (stream, after_seq=0, kinds=None, limit=None))]
    fn read(
        &self,
        py: Python<'_>,
        stream: String,
        #[pyo3(from_py_with = after_seq_arg)] after_seq: u64,
        kinds: Option<Vec<Bound<'_, PyAny>>>,
        limit: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyRecordIter> {
        let kinds = self::kinds(kinds)?;
        let limit: Option<usize> = limit.map(|l| arg(&l, "limit", U64)).transpose()?;
        // Only the first `limit` records are located and ever read (no read-ahead past them).
        let locs = py.detach(|| self.log.locate(&stream, after_seq, kinds.as_deref(), limit))?;
        Ok(PyRecordIter { log: Arc::clone(&self.log), stream, locs, pending: Mutex::new((0, VecDeque::new())) })
    }

    #[pyo3(signature = (stream, after_seq=0, kinds=None))]
    fn read_payloads<'py>(
        &self,
        py: Python<'py>,
        stream: &str,
        #[pyo3(from_py_with = after_seq_arg)] after_seq: u64,
        kinds: Option<Vec<Bound<'py, PyAny>>>,
    ) -> PyResult<Vec<(u64, u8, Bound<'py, PyBytes>)>> {
        let kinds = self::kinds(kinds)?;
        let records = py.detach(|| self.log.read(stream, after_seq, kinds.as_deref()))?;
        records.into_iter().map(|r| Ok((r.seq, r.kind, bytes(py, &r.payload)?))).collect()
    }

    /// How many records `read` would yield, from the index alone (no record is read).
    #[pyo3(signature = (stream, after_seq=0, kinds=None))]
    fn count(
        &self,
        py: Python<'_>,
        stream: &str,
        #[pyo3(from_py_with = after_seq_arg)] after_seq: u64,
        kinds: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<usize> {
        let kinds = self::kinds(kinds)?;
        Ok(py.detach(|| self.log.locate(stream, after_seq, kinds.as_deref(), None))?.len())
    }

    fn streams(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.log.streams())?)
    }

    fn last_seq(&self, py: Python<'_>, stream: &str) -> PyResult<u64> {
        Ok(py.detach(|| self.log.last_seq(stream))?)
    }

    fn prune(
        &self,
        py: Python<'_>,
        stream: &str,
        kind: Bound<'_, PyAny>,
        keep_last: Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let (kind, keep_last) = (self::kind(&kind)?, arg(&keep_last, "keep_last", U64)?);
        Ok(py.detach(|| self.log.prune(stream, kind, keep_last))?)
    }

    fn delete_stream(&self, py: Python<'_>, stream: &str) -> PyResult<u64> {
        Ok(py.detach(|| self.log.delete_stream(stream))?)
    }

    #[pyo3(signature = (min_dead_ratio=0.5, progress=None))]
    fn compact<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = min_dead_ratio_arg)] min_dead_ratio: f64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut reporter = Progress::new(progress);
        let r = py.detach(|| {
            self.log.compact_with(min_dead_ratio, &mut |done, total| reporter.report(&self.log, done, total))
        });
        reporter.raise()?;
        let r = r?;
        let d = PyDict::new(py);
        d.set_item("segments_removed", r.segments_removed)?;
        d.set_item("records_copied", r.records_copied)?;
        d.set_item("bytes_before", r.bytes_before)?;
        d.set_item("bytes_after", r.bytes_after)?;
        Ok(d)
    }

    #[pyo3(signature = (progress=None))]
    fn verify<'py>(&self, py: Python<'py>, progress: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyDict>> {
        let mut reporter = Progress::new(progress);
        let r = py.detach(|| self.log.verify_with(&mut |done, total| reporter.report(&self.log, done, total)));
        reporter.raise()?;
        let r = r?;
        let d = PyDict::new(py);
        d.set_item("segments", r.segments)?;
        d.set_item("records", r.records)?;
        d.set_item("bytes", r.bytes)?;
        d.set_item("damaged", damages(py, &r.damaged)?)?;
        let kinds: Vec<(String, u8, u64, u64, u64, u64)> =
            r.kinds.into_iter().map(|k| (k.stream, k.kind, k.live, k.dead, k.stored_bytes, k.raw_bytes)).collect();
        d.set_item("kinds", kinds)?;
        Ok(d)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // Waits for the writer lock, which a compaction may hold for a while.
        let s = py.detach(|| self.log.stats())?;
        let d = PyDict::new(py);
        d.set_item("segments", s.segments)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("streams", s.streams)?;
        d.set_item("appended", s.appended)?;
        d.set_item("syncs", s.syncs)?;
        Ok(d)
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.log.flush())?)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.log.close())?)
    }
}

/// Iterator over records located by `SegmentLog.read`. Reads lazily, a chunk of
/// records (at most `CHUNK_RECORDS` or `CHUNK_BYTES`) per release of the GIL.
#[pyclass(name = "RecordIter", module = "pyactors._core", frozen)]
struct PyRecordIter {
    log: Arc<Log>,
    stream: String,
    locs: Vec<Located>,
    /// (index of the next location to read, records read but not yet returned)
    pending: Mutex<(usize, VecDeque<Record>)>,
}

const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: u64 = 1 << 20;

#[pymethods]
impl PyRecordIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<RawRecord<'py>>> {
        // Before the lock: in a forked child a thread of the parent may have held it.
        self.log.check_process()?;
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.1.is_empty() {
            let start = pending.0;
            let mut end = start;
            let mut bytes = 0u64;
            while end < self.locs.len() && end - start < CHUNK_RECORDS && (end == start || bytes < CHUNK_BYTES) {
                bytes += u64::from(self.locs[end].loc.entry.len);
                end += 1;
            }
            let chunk = &self.locs[start..end];
            // Read in order and stop at the first error: the records before a damaged
            // one are still returned, then the error is raised at its place.
            let (records, error) = py.detach(|| self.log.read_many(&self.stream, chunk));
            pending.0 = start + records.len();
            pending.1.extend(records);
            if pending.1.is_empty() {
                if let Some(e) = error {
                    return Err(e.into());
                }
            }
        }
        pending.1.pop_front().map(|r| to_py(py, &r)).transpose()
    }
}

/// The `os.register_at_fork` hook of the module: a forked child's logs notice it at
/// once (see `log::note_fork`).
#[pyfunction]
fn after_fork_in_child() {
    crate::log::note_fork();
}

/// The native core of pyactors (private: use `pyactors.store`).
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use crate::format as f;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FORMAT_VERSION", f::FORMAT_VERSION)?;
    m.add("SEGMENT_MAGIC", PyBytes::new(m.py(), f::SEGMENT_MAGIC))?;
    m.add("INDEX_MAGIC", PyBytes::new(m.py(), f::INDEX_MAGIC))?;
    m.add("SEGMENT_HEADER_LEN", f::SEGMENT_HEADER_LEN)?;
    m.add("RECORD_HEADER_LEN", f::RECORD_HEADER_LEN)?;
    m.add("MAX_STREAM_LEN", f::MAX_STREAM_LEN)?;
    m.add("FLAG_ZSTD", f::FLAG_ZSTD)?;
    m.add("KIND_TOMBSTONE", f::KIND_TOMBSTONE)?;
    let hooks = PyDict::new(m.py());
    hooks.set_item("after_in_child", wrap_pyfunction!(after_fork_in_child, m)?)?;
    m.py().import("os")?.call_method("register_at_fork", (), Some(&hooks))?;
    m.add_class::<PySegmentLog>()?;
    m.add_class::<PyRecordIter>()?;
    #[cfg(feature = "fault-injection")]
    m.add_class::<fault::PyFaultFs>()?;
    Ok(())
}
