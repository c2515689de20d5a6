"""kernels.jit's thread team (`_numba.parallel_for`): every task once, the caller takes
part, errors reach the caller, sleeping and polling workers, the `go` hand-off and its
fallback, forked children, the
MINIRES_JIT_SPIN switch, job seats; and the allocator setting of `configure()` (freed
arrays are not page-faulted back in)."""

from __future__ import annotations

import os
import platform
import sys
import threading

import numba
import numpy as np
import pytest

from minires.kernels.jit import _numba


@pytest.fixture(autouse=True)
def _polls_calibrated():
    """The poll counts measured (as when the team starts) before a test patches one."""
    _numba._calibrate_polls()


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield numba.get_num_threads()
    numba.set_num_threads(old)


# --------------------------------------------------------------------------- parallel_for


@pytest.mark.parametrize("ntasks", [1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("chunks", [1, 4])
def test_parallel_for_covers_every_task_once(threads, ntasks, chunks):
    seen = np.zeros(ntasks, np.int64)
    lock = threading.Lock()

    def body(t0, t1):
        with lock:
            seen[t0:t1] += 1

    _numba.parallel_for(body, ntasks, chunks_per_thread=chunks)
    assert (seen == 1).all()


def test_parallel_for_caller_takes_part():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        who = set()
        barrier = threading.Barrier(2, timeout=10)

        def body(t0, t1):
            who.add(threading.get_ident())
            barrier.wait()  # both chunks must run at the same time, on 2 threads

        _numba.parallel_for(body, 2, chunks_per_thread=1)
    finally:
        numba.set_num_threads(old)
    assert threading.get_ident() in who
    assert len(who) == 2


def test_parallel_for_propagates_errors(threads):
    def body(t0, t1):
        if t0 <= 5 < t1:
            raise ValueError("task 5 failed")

    with pytest.raises(ValueError, match="task 5"):
        _numba.parallel_for(body, 10)
    # the pool still works afterwards
    out = np.zeros(10)

    def fill(t0, t1):
        out[t0:t1] = 1

    _numba.parallel_for(fill, 10)
    assert out.sum() == 10


@pytest.mark.parametrize("polls", [0, 50, _numba._SPIN_POLLS])
def test_parallel_for_wakes_sleeping_and_spinning_workers(threads, polls, monkeypatch):
    """Jobs reach the workers whether they are still polling for the next job or have
    gone to sleep (polls = 0: the path without spinning), back to back and after a
    pause long enough for every worker to fall asleep."""
    import time

    monkeypatch.setattr(_numba, "_SPIN_POLLS", polls)
    out = np.zeros(64)

    def add(t0, t1):
        out[t0:t1] += 1

    for i in range(50):
        _numba.parallel_for(add, 64, chunks_per_thread=1)
        if i % 10 == 0:
            time.sleep(0.01)
    assert (out == 50).all()


def _two_threads_at_once(monkeypatch=None):
    """Runs a 2-chunk job whose chunks must run at the same time (a barrier): the worker
    has to take part. Returns the team's (seq, go) seen from inside the chunks."""
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    seen = []
    try:
        barrier = threading.Barrier(2, timeout=10)
        team = _numba._get_team()

        def body(t0, t1):
            seen.append((int(team.seq[0]), int(team.go[0])))
            barrier.wait()

        _numba.parallel_for(body, 2, chunks_per_thread=1)
    finally:
        numba.set_num_threads(old)
    return seen


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_the_caller_publishes_go_before_its_first_chunk():
    """A polling worker starts on `go` - the job's number, set by the caller right before
    it enters its first chunk (so the worker asks for the GIL once the caller released
    it) - and both chunks of the job see it set."""
    for _ in range(20):
        seen = _two_threads_at_once()
        assert len(seen) == 2
        assert all(seq == go for seq, go in seen), seen


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_a_worker_without_go_still_takes_the_job(monkeypatch):
    """If `go` never comes (a job whose caller does not publish it), the worker stops
    polling for it and takes the job from `seq` (the sleeping path)."""
    monkeypatch.setattr(_numba, "_SPIN_POLLS", 50)
    original = _numba._Team.submit

    def submit_without_go(self, job):
        original(self, job)
        job.go = None

    monkeypatch.setattr(_numba._Team, "submit", submit_without_go)
    for _ in range(5):
        assert len(_two_threads_at_once()) == 2


def test_polls_report_what_they_saw():
    """The polling helpers behind the hand-offs: `_poll_all_set` (the caller's wait,
    with its settling polls once all is done) and `_poll_go` (a worker's wait for `go`,
    with its own) answer True only for what they wait for, False once the polls run out."""
    flags = np.ones(3, np.uint8)
    assert _numba._poll_all_set(flags, 10, 100) and _numba._poll_all_set(flags, 0)
    flags[1] = 0
    assert not _numba._poll_all_set(flags, 10, 100)
    go = np.array([7], np.int64)
    assert _numba._poll_go(go, 6, 10, 100) and not _numba._poll_go(go, 7, 10, 100)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_parallel_for_in_a_forked_child(threads):
    """A forked child gets a team of its own (the parent's worker threads do not exist
    there): parallel_for must neither hang nor lose tasks."""
    out = np.zeros(64)

    def add(t0, t1):
        out[t0:t1] += 1

    _numba.parallel_for(add, 64)  # the parent's team exists before the fork
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if every task ran once more
        code = 1
        try:
            _numba.parallel_for(add, 64)
            code = 0 if (out == 2).all() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (out == 1).all()


def test_spin_env_switch_off():
    """MINIRES_JIT_SPIN=0 (read at import) turns the polling off; parallel_for still works."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from minires.kernels.jit import _numba as n; assert not n._SPINNING; "
        "out = np.zeros(8); n.parallel_for(lambda a, b: out.__setitem__(slice(a, b), 1), 8); "
        "assert out.all()"
    )
    env = dict(os.environ, MINIRES_JIT_SPIN="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


_FAULTS_CODE = """
import resource, numpy as np
import minires.kernels.jit._numba as nb
def step():  # a training step's pattern: many activations alive, then all freed
    acts = [np.ones(1 << 20, np.float32) for _ in range(16)]  # 16 x 4 MB
    del acts
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(nb.MALLOC_TUNED, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
@pytest.mark.parametrize("tune", ["1", "0"])
def test_freed_arrays_are_not_faulted_back_in(tune):
    """With the allocator tuned (the default), 64 MB of activations freed and allocated
    again reuse their pages: no page faults per step. MINIRES_MALLOC_TUNE=0 leaves glibc
    alone, which returns the memory to the OS and faults in ~16,000 pages of 4 KB per
    step."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["MINIRES_MALLOC_TUNE"] = tune
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_CODE],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout.split()
    tuned, faults = out[0] == "True", int(out[1])
    if tune == "1":
        assert tuned and faults < 200
    else:
        assert not tuned and faults > 4000


def test_job_seats_limit_the_workers():
    """A job admits `threads - 1` workers (numba.set_num_threads(k) below the team size:
    the surplus workers wake up and go back to waiting) and runs every chunk once."""
    ran = []
    job = _numba._Job(lambda t0, t1: ran.append((t0, t1)), (), [0, 3, 7, 10], 2)
    assert [job.take_seat() for _ in range(4)] == [True, True, False, False]
    job.run()
    job.wait()
    assert ran == [(0, 3), (3, 7), (7, 10)] and job.done.all()


# --------------------------------------------------------------------------- small jobs


def _threads_used(run) -> set:
    """The threads that ran tasks of the parallel_for calls made by `run` (2 threads)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    who = set()
    real = _numba.parallel_for

    def spy(kernel, ntasks, *args, **kwargs):
        def body(t0, t1, *a):
            who.add(threading.get_ident())
            return kernel(t0, t1, *a)

        return real(body, ntasks, *args, **kwargs)

    try:
        _numba.parallel_for = spy
        run(spy)
    finally:
        _numba.parallel_for = real
        numba.set_num_threads(old)
    return who


def test_small_jobs_run_on_the_calling_thread():
    """Inside `serial()`, and for a memory-bound pass of fewer than PARALLEL_MIN_BYTES
    (`nbytes=`), parallel_for runs every task on the calling thread; a large pass and
    an unmarked job still use the team (many tasks, each slow enough to be shared)."""
    me = threading.get_ident()

    def slow(t0, t1):
        for _ in range(t0, t1):
            threading.Event().wait(0.002)

    def in_serial(pf):
        with _numba.serial():
            pf(slow, 8)

    assert _threads_used(in_serial) == {me}
    small = _numba.PARALLEL_MIN_BYTES - 1
    assert _threads_used(lambda pf: pf(slow, 8, nbytes=small)) == {me}
    big = _numba.PARALLEL_MIN_BYTES
    assert len(_threads_used(lambda pf: pf(slow, 8, nbytes=big))) == 2
    assert len(_threads_used(lambda pf: pf(slow, 8))) == 2


def test_serial_nests_and_restores():
    with _numba.serial():
        with _numba.serial():
            pass
        assert _numba._local.serial
    assert not _numba._local.serial


def test_l2_size_from_sysfs_or_default(monkeypatch):
    """The L2 size per core read from Linux sysfs (a positive number of bytes), or the
    default where it cannot be read."""
    assert _numba._l2_bytes_per_core() > 0

    def missing(path):
        raise OSError(path)

    monkeypatch.setattr(_numba.os, "listdir", missing)
    assert _numba._l2_bytes_per_core(default=12345) == 12345


def test_small_convs_do_not_hand_work_to_the_team(monkeypatch):
    """A conv of fewer than `_PARALLEL_MIN_MACS` multiply-adds runs each pass on the
    calling thread (the kernels call parallel_for through their modules, so the team
    itself is watched); a larger one uses the team. Results are the same either way."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    import minires.kernels.jit as J
    from minires.kernels.jit import conv as jconv

    jobs = []
    real = _numba._Team.submit

    def watched(team, job):
        jobs.append(job)
        real(team, job)

    monkeypatch.setattr(_numba._Team, "submit", watched)
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, 16, 16, 16)).astype(np.float32)
        w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
        args = ((1, 1), (1, 1), (1, 1), 1)
        small = J.conv2d_forward(x, w, None, *args)
        assert jobs == []
        monkeypatch.setattr(jconv, "_PARALLEL_MIN_MACS", 0)
        again = J.conv2d_forward(x, w, None, *args)
        assert jobs
        np.testing.assert_array_equal(small, again)
    finally:
        numba.set_num_threads(old)


def test_poll_counts_come_from_durations_and_the_measured_poll_time():
    """The threads poll for durations, not counts: a poll (`pause`) takes 8.5 ns on one
    host and 26 on another, so the counts follow this CPU's measured time per poll."""
    fast, slow = _numba._poll_counts(8.5), _numba._poll_counts(26.0)
    assert fast == (100_000, 200_000, 1000, 800)  # the counts tuned at 8.5 ns
    assert slow == tuple(round(c * 8.5 / 26.0) for c in fast)
    assert _numba._poll_counts(1e9) == (1, 1, 1, 1)  # never zero polls
    assert 1.0 <= _numba._poll_ns(polls=2000, rounds=2) <= 200.0  # runs on this CPU


@pytest.mark.parametrize(
    "per_poll, want",
    [((30.0, 20.0, 40.0), 20.0), ((500.0, 400.0, 300.0), 200.0), ((0.2, 0.1, 0.3), 1.0)],
)
def test_poll_time_is_the_fastest_round_within_bounds(monkeypatch, per_poll, want):
    """`_poll_ns` keeps the fastest of its rounds (a round the VM descheduled only reads
    slower) and clamps it to [1, 200] ns; a fake clock gives each round its time."""
    polls = 999
    stamps = []
    for ns in per_poll:
        stamps += [len(stamps) * 10**9, len(stamps) * 10**9 + ns * (polls + 1)]
    clock = iter(stamps)
    monkeypatch.setattr(_numba.time, "perf_counter_ns", lambda: next(clock))
    assert _numba._poll_ns(polls=polls, rounds=3) == pytest.approx(want)
    if _numba._SPINNING:
        assert _numba.POLL_NS > 0 and _numba.configure()["poll_ns"] == round(_numba.POLL_NS, 1)
        counts = (_numba._SPIN_POLLS, _numba._WAIT_POLLS, _numba._SETTLE_POLLS,
                  _numba._END_SETTLE_POLLS)  # fmt: skip
        assert counts == _numba._poll_counts(_numba.POLL_NS)
