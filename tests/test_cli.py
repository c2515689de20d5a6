"""The `minires` command line."""

from __future__ import annotations

import subprocess
import sys

from minires.cli import main
from minires.commands import gradcheck as gc


def test_gradcheck_command_passes_every_op(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    n = len(gc.cases())
    assert f"{n}/{n} ops passed" in out
    for op in ("conv2d depthwise", "batch_norm train", "max_pool2d", "cross_entropy"):
        assert op in out


def test_every_design_op_has_a_gradcheck_case():
    names = " ".join(op for op, _, _ in gc.cases())
    for op in (
        "conv2d",
        "conv2d grouped",
        "conv2d depthwise",
        "batch_norm",
        "relu",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "linear",
        "flatten",
        "log_softmax",
        "cross_entropy",
        "matmul",
        "sum",
        "mean",
        "max",
        "reshape",
        "transpose",
        "getitem",
        "exp",
        "log",
        "pow",
        "div",
    ):
        assert op in names


def test_help_and_unknown_command(capsys):
    assert main([]) == 0
    assert "gradcheck" in capsys.readouterr().out
    assert main(["nope"]) == 2


def test_console_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "minires", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("minires ")
