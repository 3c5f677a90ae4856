"""The notebooks run top to bottom, as a reader would run them (``pytest -m notebooks``).

Each notebook is executed in a fresh kernel with a scratch directory as its working
directory; a cell that raises fails the test, and every cell that plots must have produced
a picture (an ``image/png`` output). ``real_servers.ipynb`` starts the test servers from
``tests/servers`` itself (or uses ``MSTREAM_TEST_KAFKA_BOOTSTRAP`` / ``MSTREAM_TEST_MONGODB_URI``);
when they cannot start here (no Java) it prints why and stops, and this test skips, unless
``MSTREAM_REQUIRE_SERVERS=1``, when the notebook raises instead and the test fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.servers.fixtures import REQUIRE_ENV, servers_required

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {
    "quickstart.ipynb",
    "formats.ipynb",
    "watching_a_pipeline.ipynb",
    "composing_in_code.ipynb",
    "real_servers.ipynb",
    "dead_letters_as_data.ipynb",
}
SKIP_MARK = "SKIPPED:"
"""What ``real_servers.ipynb`` prints when its servers cannot be started here."""
PLOTTING = ("plt.", ".plot(", ".plot.")
"""A code cell containing one of these draws a picture."""
BUDGET_SECONDS = 60


def _text(output: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [c for c in code if c.get("outputs")], f"{path.name}: outputs are committed"
    started = time.monotonic()
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    elapsed = time.monotonic() - started
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    skipped = [_text(o) for o in outputs if SKIP_MARK in _text(o)]
    if skipped:
        if servers_required():  # the notebook raises then; never pass CI by skipping
            pytest.fail(f"{skipped[0].strip()} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(skipped[0].strip())
    for cell in code:
        if any(mark in cell.source for mark in PLOTTING):
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: a plotting cell drew nothing:\n{cell.source[:200]}"
    if path.name == "quickstart.ipynb":
        assert any("kept," in _text(o) for o in outputs)
    assert elapsed < BUDGET_SECONDS, f"{path.name} took {elapsed:.0f}s"


@pytest.mark.notebooks
def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED
