"""kernels/jit/DESIGN.md names only things that exist, and shows the planner's table."""

from __future__ import annotations

import pathlib
import re

from minires.kernels.jit.planner import Algorithm

KERNELS = pathlib.Path(__file__).resolve().parents[2] / "kernels"
DESIGN = KERNELS / "jit" / "DESIGN.md"


def _source() -> str:
    return "\n".join(p.read_text() for p in sorted(KERNELS.rglob("*.py")))


def test_every_backticked_identifier_exists_in_kernels():
    """Each `name` (or `a.b.name`) in DESIGN.md is defined or used in kernels/*.py; file
    names must exist in the repository (kernels/, tests/)."""
    text, src = DESIGN.read_text(), _source()
    names = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.*]*)`", text))
    assert len(names) > 40
    missing = []
    for name in sorted(names):
        if name.endswith((".py", ".md")):
            if not list(KERNELS.parent.glob(f"*/**/{pathlib.Path(name).name}")):
                missing.append(name)
            continue
        last = name.rstrip(".*").split(".")[-1].rstrip("_*")
        if last and not re.search(rf"\b{re.escape(last)}", src):
            missing.append(name)
    assert missing == []


def test_dispatch_table_names_every_algorithm():
    text = DESIGN.read_text()
    for a in Algorithm:
        if a.transposed_of is None:
            assert f"`{a.name}`" in text, a
    assert "`TRANSPOSED_*`" in text
