//! JSON between Python values and [`serde_json::Value`], meaning what the `json` module
//! means: the plain types (`dict` with `str` keys, `list`, `tuple`, `str`, `int`, finite
//! `float`, `bool`, `None`) are converted directly, anything else goes through
//! `json.dumps` for its rules and its errors; and a value comes back as `json.loads` would
//! make it. (A call's arguments and answer are converted on every call: the `json` module
//! and a text in between cost more than the call's own work in the binding.)

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Nesting deeper than this goes through `json.dumps`, which also refuses cycles.
const DIRECT_DEPTH: usize = 32;

/// A Python value as JSON; NaN and other non-JSON values are refused with `ValueError`
/// (or `TypeError`), as `json.dumps(allow_nan=False)` refuses them.
pub(crate) fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    match direct(obj, 0) {
        Some(value) => Ok(value),
        None => through_json_module(obj),
    }
}

/// `obj` as JSON if it is made of the plain types only (exactly them, not subclasses,
/// which may serialize otherwise), else `None`.
fn direct(obj: &Bound<'_, PyAny>, depth: usize) -> Option<Value> {
    if obj.is_none() {
        return Some(Value::Null);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        // A lone surrogate is not UTF-8: `json.dumps` escapes it, and reading it back fails.
        return s.to_cow().ok().map(|s| Value::String(s.into_owned()));
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Some(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        // Beyond 64 bits the text route reads it as a float.
        return i
            .extract::<i64>()
            .map(Value::from)
            .or_else(|_| i.extract::<u64>().map(Value::from))
            .ok();
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        // Not finite: `json.dumps` raises the error.
        return Number::from_f64(f.value()).map(Value::Number);
    }
    if depth >= DIRECT_DEPTH {
        return None;
    }
    if let Ok(dict) = obj.cast_exact::<PyDict>() {
        let mut map = Map::new();
        for (key, value) in dict.iter() {
            let key = key.cast_exact::<PyString>().ok()?.to_cow().ok()?;
            map.insert(key.into_owned(), direct(&value, depth + 1)?);
        }
        return Some(Value::Object(map));
    }
    if let Ok(list) = obj.cast_exact::<PyList>() {
        return list.iter().map(|v| direct(&v, depth + 1)).collect();
    }
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        return tuple.iter().map(|v| direct(&v, depth + 1)).collect();
    }
    None
}

/// `obj` as JSON through `json.dumps(obj, allow_nan=False)` and back.
fn through_json_module(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("allow_nan", false)?;
    let text: String = py
        .import("json")?
        .call_method("dumps", (obj,), Some(&kwargs))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(format!("not JSON: {e}")))
}

/// A JSON value as the Python value `json.loads` makes of it.
pub(crate) fn from_json(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(to_python(py, value)?.unbind())
}

fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(b) => b.into_bound_py_any(py),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into_bound_py_any(py),
            (None, Some(u), _) => u.into_bound_py_any(py),
            (None, None, Some(f)) => f.into_bound_py_any(py),
            (None, None, None) => Err(PyValueError::new_err(format!("not a JSON number: {n}"))),
        },
        Value::String(s) => s.into_bound_py_any(py),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            Ok(list.into_any())
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            Ok(dict.into_any())
        }
    }
}
