"""BLAS thread control shared by the kernels and the ops (pure Python, no Numba).

OpenBLAS's worker threads spin-wait after every threaded call; on 2 cores they fight the
Numba pool. Callers that run many small products limit BLAS to one thread around them,
and the conv kernels run every GEMM on one BLAS thread so that their results do not
depend on how many threads BLAS has (OpenBLAS's threaded GEMM can round differently).
threadpoolctl is a dependency of minires; should it be missing, these helpers do nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

_controller: Any = None


def blas_controller() -> Any:
    """threadpoolctl's controller (created once: it scans the loaded libraries), or False
    when threadpoolctl is not installed."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # not installed (optional): leave BLAS as it is
            _controller = False
    return _controller


def blas_one_thread() -> contextlib.AbstractContextManager:
    """Context manager running BLAS on one thread inside the block (a no-op without
    threadpoolctl). The limit applies on creation: use it only in a ``with`` statement."""
    ctl = blas_controller()
    return ctl.limit(limits=1, user_api="blas") if ctl else contextlib.nullcontext()
