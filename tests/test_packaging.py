"""The installed wheel adds one import name, `minires`: `kernels/` and `benchmarks/` of the
repository ship as `minires.kernels` and `minires.benchmarks`, so a user's own `kernels/`
or `benchmarks/` folder can neither break minires nor be broken by it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (wheel,) = out.glob("minires-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_has_one_top_level_name(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"minires"}
    for sub in ("minires/kernels/jit/conv.py", "minires/kernels/reference/conv.py",
                "minires/benchmarks/worker.py", "minires/data/digits.npz"):  # fmt: skip
        assert sub in names


@pytest.mark.slow
def test_installed_wheel_beside_shadow_packages(tmp_path):
    """Install the wheel into a clean virtualenv and use it from a folder that holds
    `kernels/` and `benchmarks/` packages of the user's own."""
    wheel = _build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[plot]"],
                   check=True, timeout=900)  # fmt: skip
    work = tmp_path / "user"
    for shadow in ("kernels", "benchmarks"):
        (work / shadow).mkdir(parents=True)
        (work / shadow / "__init__.py").write_text(
            f"raise ImportError('the user\\'s own {shadow} package was imported')\n"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIRES_BACKEND")}

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    # Nothing but minires is importable from the install (-P: no cwd on sys.path).
    probe = run(str(py), "-P", "-c",
                "import importlib.util as u; print(u.find_spec('kernels'), "
                "u.find_spec('benchmarks'))")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["None", "None"]
    # A conv on the Numba backend, with the shadow packages first on sys.path.
    conv = run(str(py), "-c",
               "import numpy as np, minires as mr, minires.functional as F\n"
               "mr.set_backend('numba')\n"
               "x = mr.tensor(np.ones((1, 4, 6, 6), np.float32), requires_grad=True)\n"
               "w = mr.tensor(np.ones((4, 1, 3, 3), np.float32))\n"
               "y = F.conv2d(x, w, padding=1, groups=4); y.sum().backward()\n"
               "print(mr.get_backend(), float(y.data[0, 0, 2, 2]), x.grad.shape)")  # fmt: skip
    assert conv.returncode == 0, conv.stderr
    assert conv.stdout.split()[:2] == ["numba", "9.0"]
    minires_cli = str(venv / "bin" / "minires")
    demo = run(minires_cli, "demo", "--quick", "--out", str(work / "demo"), timeout=900)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "conv timing FAILED" not in demo.stdout
    assert "32x4d" in (work / "demo" / "report.md").read_text()
    bench = run(minires_cli, "bench", "--quick", "--backends", "numba,numpy", "--no-plots",
                "--out", str(work / "bench"), timeout=900)  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    assert (work / "bench" / "results.json").exists()
