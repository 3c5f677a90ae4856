"""Every docstring example in the package runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mstream
from mstream.udf.rhai_engine import INSTALL_HINT, rhai_available
from tests.servers.fixtures import REQUIRE_ENV, servers_required

#: Modules whose examples need the optional Rhai extension.
NEEDS_RHAI = {"mstream.udf.rhai_engine"}


def _modules() -> list[str]:
    names = ["mstream"]
    for info in pkgutil.walk_packages(mstream.__path__, "mstream."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    if name in NEEDS_RHAI and not rhai_available():
        if servers_required():
            pytest.fail(f"{INSTALL_HINT} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
