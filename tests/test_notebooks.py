"""Execute every teaching notebook (notebooks/0*.ipynb) with nbclient.

Each notebook checks what it claims with asserts, so a regression in the engine fails
here. The kernel runs with the repository on PYTHONPATH and one BLAS thread (the
matrices are tiny; more threads only contend on a busy machine).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed")
pytest.importorskip("ipykernel", reason="ipykernel not installed")


def test_notebooks_exist():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06"], NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # stored with outputs: the page on a repository must show them
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
    client = nbclient.NotebookClient(
        nb,
        timeout=180,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    t = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # show the failing cell's error
        pytest.fail(f"{path.name} failed:\n{exc}")
    elapsed = time.time() - t
    print(f"{path.name}: {elapsed:.1f}s", file=sys.stderr)
    assert elapsed < 180, f"{path.name} took {elapsed:.0f}s (budget 3 minutes)"
