"""Sandboxed script UDFs: the engines behind the ``udf`` provider.

Scripts are Lua 5.4, run by ``lupa`` in one sandboxed interpreter per script with a
per-call step, time and memory limit, or Rhai (the original mstream's language, via the
optional ``mstream_rhai`` extension, :mod:`mstream.udf.rhai_engine`). See
``mstream/udf/README.md`` for the script contract, the sandbox and the measurements behind
the choice of engine.

Example:
    >>> from mstream.udf import compile_script
    >>> script = compile_script('''
    ... function transform(data, attributes)
    ...   if not data.active then return nil end        -- drop
    ...   data.email = mask_email(data.email)
    ...   return result(data, attributes)
    ... end''', "mask.lua")
    >>> script.transform({"active": True, "email": "alice@example.com"}, {})
    [({'active': True, 'email': 'a***@example.com'}, {})]
    >>> script.transform({"active": False, "email": "bob@example.com"}, {})
    []
"""

from .library import ScriptLibrary, load_scripts
from .limits import ScriptLimits
from .python_udf import PythonUDF
from .rhai_engine import RhaiLimits, RhaiScript, compile_rhai, rhai_available
from .script import CompiledScript, compile_script

__all__ = [
    "CompiledScript",
    "PythonUDF",
    "RhaiLimits",
    "RhaiScript",
    "ScriptLibrary",
    "ScriptLimits",
    "compile_rhai",
    "compile_script",
    "load_scripts",
    "rhai_available",
]
