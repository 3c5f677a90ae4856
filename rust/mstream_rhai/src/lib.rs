//! A sandboxed [Rhai](https://rhai.rs) engine for mstream's `udf` provider.
//!
//! One [`Script`] is one compiled script in its own `rhai::Engine`. Its
//! `transform(data, attributes)` calls the script's `fn transform(data, attributes)` the
//! way the original mstream (makarski/mstream) does and returns the resulting events as a
//! list of `(data, attributes)` pairs:
//!
//! * `result(data)` / `result(data, attributes)` → one event (`result(data)` keeps the
//!   input attributes);
//! * an array of `result(...)` values → several events (fan-out), `[]` → none;
//! * `()` → none (the event is filtered out).
//!
//! Every call runs under Rhai's limits (operations, call depth, expression depth, string,
//! array and map size), a wall-clock deadline and a memory budget checked from
//! `Engine::on_progress`, with the GIL released. Errors are `RhaiError` with the script name, line, column, a `kind`
//! and the message.

mod convert;
mod helpers;
mod memory;
mod transforms;

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

use std::cell::Cell;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Map, ParseError, Position, Scope, AST};

pyo3::create_exception!(
    mstream_rhai,
    RhaiError,
    PyException,
    "A Rhai script failed to compile or run, hit a limit, or returned an invalid value.\n\n\
     Attributes: script (name), kind (syntax, contract, runtime, operations, time, \
     call_depth, memory, string_size, array_size, map_size, expr_depth, input, return), reason \
     (the message without location), line and column (None when unknown)."
);

/// The function every script must define, with two parameters.
const UDF_NAME: &str = "transform";
/// The value `on_progress` terminates a script with when its deadline has passed.
const TIME_TOKEN: &str = "mstream: time limit";
/// The value `on_progress` terminates a script with when its memory budget is spent.
const MEMORY_TOKEN: &str = "mstream: memory limit";
/// The deadline is checked every this many operations (a clock read per operation would
/// cost more than the operation).
const CHECK_EVERY: u64 = 256;

thread_local! {
    /// Deadline of the call running on this thread; scripts never call each other, so one
    /// slot per thread is enough and calls on different threads run in parallel.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// What `result(...)` returns: one output event.
#[derive(Clone)]
pub(crate) struct TransformResult {
    data: Dynamic,
    attributes: Option<Map>,
}

struct Limits {
    max_operations: u64,
    time: Option<Duration>,
    time_ms: f64,
    max_call_levels: usize,
    max_expr_depth: usize,
    max_string_size: usize,
    max_array_size: usize,
    max_map_size: usize,
    memory_bytes: usize,
}

/// A compiled Rhai script with its own sandboxed engine.
///
/// Args:
///     source: the script text; it must define `fn transform(data, attributes)`.
///     name: the script name (its file name), used in errors.
///     max_operations, max_call_levels, max_expr_depth, max_string_size (bytes),
///     max_array_size, max_map_size: Rhai's engine limits (0 = unlimited).
///     time_ms: wall-clock limit of one call in milliseconds (None = none).
///     memory_bytes: net bytes one call may allocate (0 = unlimited); checked after every
///         operation.
///     default: called with a value the engine cannot convert; returns a JSON-like
///         replacement (e.g. Extended JSON for bson types).
///     object_hook: called with each returned dict whose first key starts with `$`;
///         its result replaces the dict.
///     print: called with the text of every `print(...)` / `debug(...)` of the script
///         (dropped when None).
///
/// Raises:
///     RhaiError: a syntax error (kind `syntax`, with line and column), or no
///         `transform` function with two parameters (kind `contract`).
#[pyclass(frozen, module = "mstream_rhai")]
struct Script {
    /// The script name used in errors.
    #[pyo3(get)]
    name: String,
    engine: Engine,
    ast: AST,
    limits: Limits,
    codec: convert::Codec,
}

#[pymethods]
impl Script {
    #[new]
    #[pyo3(signature = (
        source, name, *, max_operations, time_ms, max_call_levels, max_expr_depth,
        max_string_size, max_array_size, max_map_size, memory_bytes, default=None,
        object_hook=None, print=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: &str,
        name: String,
        max_operations: u64,
        time_ms: Option<f64>,
        max_call_levels: usize,
        max_expr_depth: usize,
        max_string_size: usize,
        max_array_size: usize,
        max_map_size: usize,
        memory_bytes: usize,
        default: Option<Py<PyAny>>,
        object_hook: Option<Py<PyAny>>,
        print: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let time = match time_ms {
            None => None,
            Some(ms) if ms.is_finite() && ms > 0.0 => Some(Duration::from_secs_f64(ms / 1000.0)),
            Some(ms) => {
                return Err(PyValueError::new_err(format!(
                    "time_ms must be > 0, got {ms}"
                )))
            }
        };
        let limits = Limits {
            max_operations,
            time,
            time_ms: time_ms.unwrap_or(0.0),
            max_call_levels,
            max_expr_depth,
            max_string_size,
            max_array_size,
            max_map_size,
            memory_bytes,
        };
        let mut engine = sandboxed_engine(&limits, print);
        let compiled = py.detach(|| engine.compile(source));
        let mut ast = match compiled {
            Ok(ast) => ast,
            Err(err) => return Err(syntax_error(py, &name, err)),
        };
        // At run time the interner is one lock shared by every thread calling this script
        // (taken for `let` of strings, interpolation, loop variables): without it calls on
        // several threads run in parallel.
        engine.set_max_strings_interned(0);
        ast.set_source(name.as_str());
        let transforms: Vec<usize> = ast
            .iter_functions()
            .filter(|f| f.name == UDF_NAME)
            .map(|f| f.params.len())
            .collect();
        if transforms != [2] {
            let found = match transforms.as_slice() {
                [] => "none".to_string(),
                n => n
                    .iter()
                    .map(|p| format!("{p} parameter(s)"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            return Err(script_error(
                py,
                &name,
                "contract",
                format!(
                    "a script must define one function `fn {UDF_NAME}(data, attributes)` \
                     with two parameters (found: {found})"
                ),
                Position::NONE,
            ));
        }
        let codec = convert::Codec {
            default,
            object_hook,
        };
        Ok(Script {
            name,
            engine,
            ast,
            limits,
            codec,
        })
    }

    /// Run the script's `transform(data, attributes)` on one event.
    ///
    /// Args:
    ///     data: the decoded document (JSON-like values).
    ///     attributes: the event attributes (a dict of strings); not modified.
    ///
    /// Returns:
    ///     A list of `(data, attributes)` pairs: empty when the script filtered the
    ///     event out, several when it fanned out.
    ///
    /// Raises:
    ///     RhaiError: the script failed, hit a limit, or returned an invalid value; or the
    ///         input cannot be converted (kind `input`).
    fn transform<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        attributes: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyList>> {
        let input = self.input(py, data)?;
        let mut attrs = Map::new();
        for (k, v) in attributes.iter() {
            let value = self.input(py, &v)?;
            attrs.insert(k.str()?.to_str()?.into(), value);
        }
        let outcome = py.detach(|| self.call(input, attrs));
        let value = outcome.map_err(|err| self.runtime_error(py, *err))?;
        self.results(py, value, data, attributes)
    }

    fn __repr__(&self) -> String {
        format!("Script({:?})", self.name)
    }
}

impl Script {
    fn input(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Dynamic> {
        self.codec.to_dynamic(value, 0).map_err(|err| {
            script_error(
                py,
                &self.name,
                "input",
                format!("cannot pass the event to the script: {err}"),
                Position::NONE,
            )
        })
    }

    /// Call `transform` under the limits (no GIL held).
    fn call(&self, data: Dynamic, attributes: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let deadline = self.limits.time.map(|t| Instant::now() + t);
        DEADLINE.with(|d| d.set(deadline));
        memory::start((self.limits.memory_bytes > 0).then_some(self.limits.memory_bytes));
        let options = CallFnOptions::new().eval_ast(true).rewind_scope(true);
        let out = self.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut Scope::new(),
            &self.ast,
            UDF_NAME,
            (data, Dynamic::from_map(attributes)),
        );
        DEADLINE.with(|d| d.set(None));
        memory::stop();
        out
    }

    /// Turn the script's return value into the list of output events.
    fn results<'py>(
        &self,
        py: Python<'py>,
        value: Dynamic,
        data: &Bound<'py, PyAny>,
        attributes: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyList>> {
        let value = value.flatten();
        let items: Vec<TransformResult> = if value.is_unit() {
            Vec::new()
        } else if value.is::<TransformResult>() {
            vec![value.cast::<TransformResult>()]
        } else if value.is_array() {
            let arr = value.cast::<rhai::Array>();
            let mut items = Vec::with_capacity(arr.len());
            for (i, item) in arr.into_iter().enumerate() {
                let item = item.flatten();
                if !item.is::<TransformResult>() {
                    return Err(self.return_error(
                        py,
                        format!(
                            "an array returned by transform must hold only result(...) values \
                             (fan-out); item {i} is a {}",
                            item.type_name()
                        ),
                    ));
                }
                items.push(item.cast::<TransformResult>());
            }
            items
        } else {
            return Err(self.return_error(
                py,
                format!(
                    "transform must return result(data, attributes), an array of result(...) \
                     values, or () to drop the event; got a {}",
                    value.type_name()
                ),
            ));
        };
        let out = PyList::empty(py);
        for item in items {
            let doc = self
                .codec
                .to_python(py, item.data, Some(data), 0)
                .map_err(|msg| self.return_error(py, msg))?;
            let attrs = match item.attributes {
                None => attributes.copy()?,
                Some(map) => {
                    let d = PyDict::new(py);
                    for (k, v) in map {
                        d.set_item(k.as_str(), v.flatten().to_string())?;
                    }
                    d
                }
            };
            out.append(PyTuple::new(py, [doc, attrs.into_any()])?)?;
        }
        Ok(out)
    }

    fn return_error(&self, py: Python<'_>, message: String) -> PyErr {
        script_error(
            py,
            &self.name,
            "return",
            format!("invalid return value: {message}"),
            Position::NONE,
        )
    }

    fn runtime_error(&self, py: Python<'_>, err: EvalAltResult) -> PyErr {
        let mut err = err;
        let mut outer = Position::NONE;
        let mut calls: Vec<String> = Vec::new();
        while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = err {
            if !pos.is_none() {
                outer = pos;
            }
            if name != UDF_NAME {
                calls.push(if name.starts_with("anon$") {
                    "a closure".into()
                } else {
                    format!("function '{name}'")
                });
            }
            err = *inner;
        }
        let mut pos = err.take_position();
        if pos.is_none() {
            pos = outer;
        }
        let l = &self.limits;
        let (kind, mut reason) = match &err {
            EvalAltResult::ErrorTooManyOperations(..) => (
                "operations",
                format!("operations limit exceeded: more than {} operations", l.max_operations),
            ),
            EvalAltResult::ErrorTerminated(token, ..) if token.to_string() == TIME_TOKEN => (
                "time",
                format!("time limit exceeded: ran longer than {} ms", l.time_ms),
            ),
            EvalAltResult::ErrorTerminated(token, ..) if token.to_string() == MEMORY_TOKEN => (
                "memory",
                format!(
                    "memory limit exceeded: the call allocated more than {} MB",
                    l.memory_bytes as f64 / 1_048_576.0
                ),
            ),
            EvalAltResult::ErrorStackOverflow(..) => (
                "call_depth",
                format!(
                    "call depth limit exceeded: more than {} nested function calls (unbounded recursion?)",
                    l.max_call_levels
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(what, ..) if what.contains("string") => (
                "string_size",
                format!("string size limit exceeded: a string is longer than {} bytes", l.max_string_size),
            ),
            EvalAltResult::ErrorDataTooLarge(what, ..) if what.contains("array") => (
                "array_size",
                format!(
                    "array size limit exceeded: more than {} elements (nested arrays counted)",
                    l.max_array_size
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(what, ..) if what.contains("map") => (
                "map_size",
                format!(
                    "map size limit exceeded: more than {} properties (nested maps counted)",
                    l.max_map_size
                ),
            ),
            EvalAltResult::ErrorParsing(rhai::ParseErrorType::ExprTooDeep, ..) => (
                "expr_depth",
                format!("expression depth limit exceeded: nested deeper than {}", l.max_expr_depth),
            ),
            other => ("runtime", other.to_string()),
        };
        if !calls.is_empty() {
            calls.reverse();
            reason = format!("{reason} (in {})", calls.join(", called from "));
        }
        script_error(py, &self.name, kind, reason, pos)
    }
}

fn sandboxed_engine(limits: &Limits, print: Option<Py<PyAny>>) -> Engine {
    let mut engine = Engine::new();
    // No code loading: `eval` and modules are syntax errors, and no resolver reads files.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    for symbol in ["eval", "import", "export"] {
        engine.disable_symbol(symbol);
    }
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    let timed = limits.time.is_some();
    if timed || limits.memory_bytes > 0 {
        engine.on_progress(move |ops| {
            if memory::exceeded() {
                return Some(MEMORY_TOKEN.into());
            }
            if !timed || ops % CHECK_EVERY != 0 {
                return None;
            }
            DEADLINE.with(|d| match d.get() {
                Some(deadline) if Instant::now() >= deadline => Some(TIME_TOKEN.into()),
                _ => None,
            })
        });
    }
    match print {
        Some(hook) => {
            let hook = std::sync::Arc::new(hook);
            let for_debug = hook.clone();
            engine.on_print(move |text| emit(&hook, text));
            engine.on_debug(move |text, _, _| emit(&for_debug, text));
        }
        None => {
            engine.on_print(|_| {});
            engine.on_debug(|_, _, _| {});
        }
    }
    engine.register_type_with_name::<TransformResult>("Result");
    engine.register_fn("result", |data: Dynamic| TransformResult {
        data,
        attributes: None,
    });
    engine.register_fn("result", |data: Dynamic, attributes: Map| TransformResult {
        data,
        attributes: Some(attributes),
    });
    helpers::register(&mut engine);
    transforms::register(&mut engine);
    engine
}

fn emit(hook: &Py<PyAny>, text: &str) {
    Python::attach(|py| {
        if let Err(err) = hook.call1(py, (text,)) {
            err.write_unraisable(py, None);
        }
    });
}

fn syntax_error(py: Python<'_>, name: &str, err: ParseError) -> PyErr {
    let kind = if matches!(*err.0, rhai::ParseErrorType::ExprTooDeep) {
        "expr_depth"
    } else {
        "syntax"
    };
    script_error(py, name, kind, format!("syntax error: {}", err.0), err.1)
}

/// A `RhaiError` whose text is `name:line:column: reason` (location when known).
fn script_error(py: Python<'_>, name: &str, kind: &str, reason: String, pos: Position) -> PyErr {
    let line = pos.line();
    let column = pos.position();
    let text = match (line, column) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}: {reason}"),
        (Some(l), None) => format!("{name}:{l}: {reason}"),
        _ => format!("{name}: {reason}"),
    };
    let err = RhaiError::new_err(text);
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("script", name)?;
        value.setattr("kind", kind)?;
        value.setattr("reason", reason.as_str())?;
        value.setattr("line", line)?;
        value.setattr("column", column)?;
        Ok(())
    };
    match set() {
        Ok(()) => err,
        Err(other) => other,
    }
}

/// The Rhai engine for mstream's `udf` provider.
#[pymodule]
mod mstream_rhai {
    #[pymodule_export]
    use super::RhaiError;
    #[pymodule_export]
    use super::Script;
}
