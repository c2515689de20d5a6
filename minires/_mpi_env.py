"""What an MPI launcher tells each rank through the environment, read before NumPy and
Numba are imported (so their thread pools can still be sized). No imports but os."""

from __future__ import annotations

import os

# Environment variables MPI launchers set in each rank: (world size, ranks on this node).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCAL_NRANKS")
_THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def launched_size() -> int:
    """The world size an MPI launcher announced in the environment (1 if none)."""
    for var in _SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def limit_threads_for_ranks() -> int | None:
    """Under an MPI launcher with several ranks, give each rank ``cores // ranks-per-node``
    threads (at least 1) by setting NUMBA_NUM_THREADS, OMP_NUM_THREADS,
    OPENBLAS_NUM_THREADS and MKL_NUM_THREADS — each only if the user has not set it.
    Must run before NumPy and Numba are imported (``minires/__init__`` calls it first).

    Returns:
        The thread count set, or None if nothing was changed.
    """
    if launched_size() <= 1:
        return None
    local = next((int(os.environ[v]) for v in _LOCAL_SIZE_VARS if os.environ.get(v, "").isdigit()),
                 launched_size())  # fmt: skip
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    n = max(1, cores // max(local, 1))
    changed = False
    for var in _THREAD_VARS:
        if var not in os.environ:
            os.environ[var] = str(n)
            changed = True
    return n if changed else None


limit_threads_for_ranks()
