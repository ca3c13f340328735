//! `pyactors._core.FaultFs`: the fault layer of `crate::fault`, for the Python tests.
//! Compiled only with the `fault-injection` feature (the dev build; never a wheel).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::CoreError;
use crate::fault::{Fault, FaultFs, Op};
use crate::fs::FileSystem;

/// A file system that injects I/O faults and simulates power loss (tests only).
#[pyclass(name = "FaultFs", module = "pyactors._core", frozen)]
pub(crate) struct PyFaultFs {
    fs: FaultFs,
}

impl PyFaultFs {
    pub(crate) fn file_system(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.fs.clone())
    }
}

#[pymethods]
impl PyFaultFs {
    #[new]
    fn new() -> Self {
        Self { fs: FaultFs::new() }
    }

    /// Fail the `k`-th `op` from now ("write", "fdatasync", "rename", "dirsync" or
    /// "any") with `errno`; a write with `short` first writes half its buffer.
    #[pyo3(signature = (op, k, errno, *, short=false))]
    fn fail_after(&self, op: &str, k: u64, errno: i32, short: bool) -> PyResult<()> {
        let fault = if short { Fault::Short(errno) } else { Fault::Error(errno) };
        self.fs.fail_after(parse_op(op)?, k, fault);
        Ok(())
    }

    /// Cut the power on the `k`-th `op` from now.
    fn power_loss_after(&self, op: &str, k: u64) -> PyResult<()> {
        self.fs.fail_after(parse_op(op)?, k, Fault::PowerLoss);
        Ok(())
    }

    /// Cut the power now.
    fn power_loss(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.fs.power_loss()).map_err(|e| CoreError::io("<power loss>", e).into())
    }

    /// Drop every rule that has not fired.
    fn clear(&self) {
        self.fs.clear_rules();
    }

    /// Allow only `nbytes` more bytes to be written (None: no limit).
    fn set_space(&self, nbytes: Option<u64>) {
        self.fs.set_space(nbytes);
    }

    #[getter]
    fn powered_off(&self) -> bool {
        self.fs.powered_off()
    }

    /// Operations counted so far and faults injected.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.fs.counts();
        let d = PyDict::new(py);
        d.set_item("write", c.write)?;
        d.set_item("fdatasync", c.sync)?;
        d.set_item("rename", c.rename)?;
        d.set_item("dirsync", c.dirsync)?;
        d.set_item("any", c.total())?;
        d.set_item("injected", c.injected)?;
        Ok(d)
    }
}

fn parse_op(op: &str) -> PyResult<Op> {
    Op::parse(op).ok_or_else(|| {
        CoreError::InvalidArgument(format!("op must be 'write', 'fdatasync', 'rename', 'dirsync' or 'any', not {op:?}"))
            .into()
    })
}
