"""The JIT backend's process-wide configuration step and its reference fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import minires.kernels.jit as J
import minires.kernels.reference as R


def test_configure_is_one_step_applied_once():
    cfg = J.configure()
    assert {"prefer_512_bit", "malloc_tuned", "threads", "spinning"} <= set(cfg)
    assert J.configure() is cfg  # later calls change nothing
    from minires.kernels.jit import _numba

    assert _numba.PREFER_512 == cfg["prefer_512_bit"]
    assert _numba.MALLOC_TUNED == cfg["malloc_tuned"]


@pytest.mark.parametrize("verbose", ["1", "0"])
def test_minires_verbose_reports_the_settings_on_stderr(verbose):
    env = dict(os.environ, MINIRES_VERBOSE=verbose, MINIRES_MALLOC_TUNE="0")
    # a parallel kernel (ReLU over 4 MB) starts the thread team, which measures its polls
    code = "import numpy as np, minires.kernels.jit as J; J.relu_forward(np.ones(1 << 20, 'f4'))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    if verbose == "1":
        assert "configure()" in done.stderr
        assert "glibc mallopt: unchanged" in done.stderr  # MINIRES_MALLOC_TUNE=0 obeyed
        assert "thread team" in done.stderr
        if J.configure()["spinning"]:
            assert "ns each on this CPU" in done.stderr  # the measured poll time
    else:
        assert "configure()" not in done.stderr


def test_missing_numba_kernel_falls_back_with_a_warning(monkeypatch):
    """A kernel module that cannot be imported gives the reference, with a warning that
    names the exception (never a silent switch)."""
    monkeypatch.setitem(J._IMPLEMENTED, "relu_forward", "no_such_module")
    with pytest.warns(RuntimeWarning, match="ModuleNotFoundError.*NumPy reference"):
        fn = J._resolve("relu_forward")
    assert fn is R.relu_forward


def test_backend_falls_back_to_the_reference_with_a_warning(monkeypatch):
    """minires.backend: when the JIT backend cannot be imported, the numpy reference
    stands in, with a warning naming the exception."""
    from minires import backend

    monkeypatch.setitem(backend.BACKENDS, "numba", "minires.kernels.no_such_jit")
    monkeypatch.setattr(backend, "_loaded", {})
    with pytest.warns(UserWarning, match="no_such_jit.*falling back to the NumPy reference"):
        module = backend._load("numba")
    assert module is R


def test_kernel_cache_key_covers_the_sources_a_kernel_inlines(tmp_path):
    """Numba keys a cached kernel by its own file; ours adds a digest of every module
    with compiled code (a kernel inlines simd.py's intrinsics and other modules'
    helpers) and the bounds-check switch, so editing simd.py recompiles the kernels
    instead of running stale machine code. Modules without compiled code (the
    planner) do not count."""
    import shutil

    import numba

    from minires.kernels.jit import _numba, conv

    folder = os.path.dirname(_numba.__file__)
    for name in os.listdir(folder):
        if name.endswith(".py"):
            shutil.copy(os.path.join(folder, name), tmp_path / name)
    before = _numba._kernel_sources_digest(str(tmp_path))
    assert before == _numba._kernel_sources_digest(folder)
    with open(tmp_path / "planner.py", "a") as f:
        f.write("\n# a comment\n")
    assert _numba._kernel_sources_digest(str(tmp_path)) == before
    with open(tmp_path / "simd.py", "a") as f:
        f.write("\n# a comment\n")
    assert _numba._kernel_sources_digest(str(tmp_path)) != before

    kernel = conv._transpose_flip_range
    assert isinstance(kernel._cache, _numba._KernelCache)
    sig = kernel.signatures[0] if kernel.signatures else ()
    key = kernel._cache._index_key(sig, kernel.targetctx.codegen())
    assert key[-2:] == (_numba._kernel_sources_digest(), numba.config.BOUNDSCHECK)
