//! Conversion between JSON-like Python values and Rhai `Dynamic` values.
//!
//! Python → Rhai: `None` → `()`, `bool`, `int` (must fit in i64, else an error), `float`,
//! `str`, `dict` (string keys) → object map, `list`/`tuple` → array, `bytes` → BLOB.
//! Anything else goes through the optional `default` callable, which returns a JSON-like
//! value to convert instead (mstream uses it for bson types → Extended JSON).
//!
//! Rhai → Python: the reverse; `char` becomes a one-character `str`. A map whose first key
//! (maps are sorted) starts with `$` is passed to the optional `object_hook` (Extended
//! JSON → bson types). Keys of returned maps follow the order of the corresponding input
//! dict (the "template"); new keys follow in sorted order.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use rhai::{Array, Dynamic, ImmutableString, Map};

/// Deepest nesting converted in either direction (guards against cycles).
pub const MAX_DEPTH: usize = 200;

/// Conversion hooks shared by every call of one script.
pub struct Codec {
    pub default: Option<Py<PyAny>>,
    pub object_hook: Option<Py<PyAny>>,
}

impl Codec {
    /// Convert a Python value to a Rhai value.
    pub fn to_dynamic(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Dynamic> {
        if let Ok(s) = obj.cast_exact::<PyString>() {
            return Ok(Dynamic::from(ImmutableString::from(s.to_str()?)));
        }
        if obj.is_none() {
            return Ok(Dynamic::UNIT);
        }
        if let Ok(b) = obj.cast::<PyBool>() {
            return Ok(Dynamic::from_bool(b.is_true()));
        }
        if obj.is_instance_of::<PyInt>() {
            return match obj.extract::<i64>() {
                Ok(i) => Ok(Dynamic::from_int(i)),
                Err(_) => Err(PyOverflowError::new_err(format!(
                    "integer {} does not fit in a Rhai integer (64-bit signed)",
                    obj.str()?
                ))),
            };
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return Ok(Dynamic::from_float(f.value()));
        }
        if depth >= MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "the value is nested deeper than {MAX_DEPTH} levels (a cycle?)"
            )));
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            let mut map = Map::new();
            for (k, v) in d.iter() {
                let key = k.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "object keys must be strings, got {}",
                        k.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ))
                })?;
                map.insert(key.to_str()?.into(), self.to_dynamic(&v, depth + 1)?);
            }
            return Ok(Dynamic::from_map(map));
        }
        if let Ok(l) = obj.cast::<PyList>() {
            let mut arr = Array::with_capacity(l.len());
            for v in l.iter() {
                arr.push(self.to_dynamic(&v, depth + 1)?);
            }
            return Ok(Dynamic::from_array(arr));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let mut arr = Array::with_capacity(t.len());
            for v in t.iter() {
                arr.push(self.to_dynamic(&v, depth + 1)?);
            }
            return Ok(Dynamic::from_array(arr));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Dynamic::from(ImmutableString::from(s.to_str()?)));
        }
        if let Some(default) = &self.default {
            let replacement = default.bind(obj.py()).call1((obj,))?;
            return self.to_dynamic(&replacement, depth + 1);
        }
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Dynamic::from_blob(b.as_bytes().to_vec()));
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Dynamic::from_blob(b.to_vec()));
        }
        Err(PyTypeError::new_err(format!(
            "cannot pass a {} value to a script",
            obj.get_type().name()?
        )))
    }

    /// Convert a Rhai value to a Python value, ordering map keys after `template`.
    pub fn to_python<'py>(
        &self,
        py: Python<'py>,
        value: Dynamic,
        template: Option<&Bound<'py, PyAny>>,
        depth: usize,
    ) -> Result<Bound<'py, PyAny>, String> {
        let value = value.flatten();
        if value.is_unit() {
            return Ok(py.None().into_bound(py));
        }
        if let Ok(b) = value.as_bool() {
            return Ok(PyBool::new(py, b).to_owned().into_any());
        }
        if let Ok(i) = value.as_int() {
            return Ok(i.into_pyobject(py).map_err(|e| e.to_string())?.into_any());
        }
        if let Ok(f) = value.as_float() {
            return Ok(PyFloat::new(py, f).into_any());
        }
        if value.is_string() {
            let s = value.into_immutable_string().map_err(|t| t.to_string())?;
            return Ok(PyString::new(py, s.as_str()).into_any());
        }
        if let Ok(c) = value.as_char() {
            return Ok(PyString::new(py, c.encode_utf8(&mut [0; 4])).into_any());
        }
        if depth >= MAX_DEPTH {
            return Err(format!(
                "the result is nested deeper than {MAX_DEPTH} levels"
            ));
        }
        if value.is_map() {
            let map = value.cast::<Map>();
            return self.map_to_python(py, map, template, depth);
        }
        if value.is_array() {
            let arr = value.cast::<Array>();
            let seq = template.and_then(|t| t.cast::<PyList>().ok());
            let items = arr
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let sub = seq.and_then(|s| s.get_item(i).ok());
                    self.to_python(py, item, sub.as_ref(), depth + 1)
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(PyList::new(py, items)
                .map_err(|e| e.to_string())?
                .into_any());
        }
        if value.is_blob() {
            let blob = value.cast::<rhai::Blob>();
            return Ok(PyBytes::new(py, &blob).into_any());
        }
        if value.is::<crate::TransformResult>() {
            return Err("result(...) cannot be nested inside an event".into());
        }
        Err(format!(
            "a value of type '{}' cannot be part of an event",
            value.type_name()
        ))
    }

    fn map_to_python<'py>(
        &self,
        py: Python<'py>,
        mut map: Map,
        template: Option<&Bound<'py, PyAny>>,
        depth: usize,
    ) -> Result<Bound<'py, PyAny>, String> {
        let out = PyDict::new(py);
        let err = |e: PyErr| e.to_string();
        let ejson = map.keys().next().is_some_and(|k| k.starts_with('$'));
        let tmpl = template.and_then(|t| t.cast::<PyDict>().ok());
        if let Some(tmpl) = tmpl {
            for (key, sub) in tmpl.iter() {
                let Ok(key_str) = key.cast::<PyString>() else {
                    continue;
                };
                let Ok(k) = key_str.to_str() else { continue };
                if let Some(v) = map.remove(k) {
                    out.set_item(&key, self.to_python(py, v, Some(&sub), depth + 1)?)
                        .map_err(err)?;
                }
            }
        }
        for (k, v) in map {
            out.set_item(k.as_str(), self.to_python(py, v, None, depth + 1)?)
                .map_err(err)?;
        }
        if ejson {
            if let Some(hook) = &self.object_hook {
                return hook.bind(py).call1((out,)).map_err(err);
            }
        }
        Ok(out.into_any())
    }
}
