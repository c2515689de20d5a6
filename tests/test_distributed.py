"""Data-parallel training on MPI (minires.distributed, nn.SyncBatchNorm, minires train
under mpiexec). The tests marked ``mpi`` really run ``mpiexec`` (the ``minires[mpi]``
extra: mpi4py and the mpich wheel) with timeouts, on the embedded digits in float64, and
are skipped with a reason where mpiexec or mpi4py is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import minires as mr
from minires import data, distributed, nn
from minires.distributed import Communicator, DataParallel, split_counts

ROOT = Path(__file__).resolve().parents[1]
# cifar_resnet8 on the 1,438 digits with global batch 200: 7 full batches and a last one of
# 38, split 19/19 on 2 ranks and 10/10/9/9 on 4 — uneven, no padding.
TRAIN_ARGS = ["--model", "cifar_resnet8", "--epochs", "2", "--batch-size", "200",
              "--dtype", "float64", "--no-progress", "--no-plot", "--seed", "3"]  # fmt: skip
TIMEOUT = 240  # seconds; a stuck rank must fail the test, not hang CI


def _mpiexec() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return None
    try:
        return distributed.find_mpiexec()
    except FileNotFoundError:
        return None


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None,
    reason="mpiexec or mpi4py missing: pip install 'minires[mpi]' to run the MPI tests",
)


def _env(n: int) -> dict[str, str]:
    env = distributed.mpi_environment(n)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MPIR_CVAR_POLLS_BEFORE_YIELD", "1")  # 4 ranks on 2 cores: yield when idle
    return env


def _mpirun(n: int, args: list[str], cwd: Path, timeout: float = TIMEOUT):
    cmd = [MPIEXEC, "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(n), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _train(out: Path, extra: list[str] = (), n: int | None = None) -> Path:
    args = ["-m", "minires", "train", *TRAIN_ARGS, "--out", str(out), *extra]
    if n is None:
        r = subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(1),
                           capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    else:
        r = _mpirun(n, args, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _max_rel_diff(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    worst = 0.0
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30)))
    return worst


# -- without MPI ----------------------------------------------------------------------------


def test_split_counts_are_even_then_uneven():
    assert split_counts(38, 4) == [10, 10, 9, 9]
    assert split_counts(200, 2) == [100, 100]
    assert sum(split_counts(7, 3)) == 7


def test_augmentation_of_a_sample_does_not_depend_on_its_batch():
    """Draws are keyed by (seed, epoch, sample index): any shard of a batch gets exactly
    its rows of the whole batch, so N ranks augment like one process."""
    train, _, _ = data.make_loaders("digits", batch_size=64, seed=5, augment=True)
    idx = train.batch_indices(3, 2)
    whole = train.load(idx, 3)[0].data
    parts = [train.load(idx[lo:hi], 3)[0].data for lo, hi in ((0, 17), (17, 40), (40, 64))]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(train.load(idx, 4)[0].data, whole)  # a new epoch, new draws
    first = next(iter(train.epoch_iter(3, 2)))[0].data
    np.testing.assert_array_equal(first, whole)


def test_sample_rng_draws_are_uniform_and_per_sample():
    rng = data.transforms.SampleRNG(0, 0, np.arange(20000))
    u = rng.random(20000)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    k = rng.integers(0, 3, size=20000)
    assert set(np.unique(k)) == {0, 1, 2}
    with pytest.raises(ValueError, match="per sample"):
        rng.random(7)


def test_size_one_communicator_is_a_no_op():
    comm = Communicator()
    a = np.arange(4.0)
    assert comm.allreduce_(a) is a and comm.size == 1 and comm.is_root
    tree = {"w": np.ones(3), "meta": [1, "x"]}
    assert comm.bcast_tree(tree) is tree


def test_data_parallel_refuses_a_batch_that_leaves_a_rank_empty():
    class Fake(Communicator):
        rank, size = 0, 4

    train, _, _ = data.make_loaders("digits", batch_size=1437, seed=0)  # last batch: 1 sample
    with pytest.raises(ValueError, match="at least one sample per step"):
        DataParallel(None, comm=Fake()).check_batches(train)


def test_convert_sync_batchnorm_keeps_parameters_and_order():
    from minires.models import get_model

    model = get_model("cifar_resnet8", num_classes=10, in_channels=1)
    params = list(model.parameters())
    keys = list(model.state_dict())
    conv = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert conv is model and isinstance(model.bn1, nn.SyncBatchNorm)
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))
    bn = nn.BatchNorm2d(3)
    assert isinstance(nn.SyncBatchNorm.convert_sync_batchnorm(bn), nn.SyncBatchNorm)


def test_sync_batchnorm_on_one_process_is_batchnorm():
    x = mr.tensor(np.random.default_rng(0).standard_normal((6, 3, 4, 4)))
    a, b = nn.BatchNorm2d(3, dtype=np.float64), nn.SyncBatchNorm(3, dtype=np.float64)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    np.testing.assert_array_equal(a.running_var, b.running_var)


def test_train_workers_without_mpi_explains(monkeypatch, capsys):
    from minires.commands import train

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert train.main(["--workers", "2"]) == 2
    assert "minires[mpi]" in capsys.readouterr().err


# -- under mpiexec --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory) -> dict:
    """Reference: one process, the same global batch."""
    out = _train(tmp_path_factory.mktemp("single") / "run")
    return {"weights": mr.load(out / "model.npz"),
            "history": json.loads((out / "metrics.json").read_text())["history"]}  # fmt: skip


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("n", [2, 4])  # 4 ranks on 2 cores: oversubscribed
def test_sync_bn_ranks_match_one_process(n, tmp_path, single_process_run):
    out = _train(tmp_path / "run", ["--sync-bn", "--check-sync"], n=n)
    assert _max_rel_diff(single_process_run["weights"], mr.load(out / "model.npz")) <= 1e-9
    # Sharded evaluation counts every test image once: the same accuracy as one process;
    # the training metrics are summed over ranks.
    ours = json.loads((out / "metrics.json").read_text())["history"]
    for a, b in zip(single_process_run["history"], ours):
        assert a["test_acc"] == b["test_acc"] and a["train_acc"] == b["train_acc"]
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-9)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-9)


@pytest.mark.mpi
@needs_mpi
def test_per_rank_bn_matches_emulation_and_only_rank_0_writes(tmp_path):
    """Without --sync-bn each rank normalises its own shard: the same as one process
    that runs the shards one after the other with per-shard BatchNorm statistics and
    running buffers, sums the gradients, and averages the buffers at every epoch's end.
    Each rank runs in its own working directory (MPMD), so files of rank 1 would show."""
    dirs = [tmp_path / "rank0", tmp_path / "rank1"]
    cmd = [MPIEXEC]
    for i, d in enumerate(dirs):
        d.mkdir()
        if i:
            cmd.append(":")
        cmd += ["-n", "1", "-wdir", str(d), sys.executable, "-m", "minires", "train",
                *TRAIN_ARGS, "--out", "run", "--check-sync"]  # fmt: skip
    r = subprocess.run(cmd, env=_env(2), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (dirs[0] / "run").iterdir()) == [
        "checkpoint.npz",
        "metrics.csv",
        "metrics.json",
        "model.npz",
    ]
    assert list(dirs[1].iterdir()) == []
    assert r.stdout.count('"epoch": 2') == 1  # rank 0 alone prints the result
    got = mr.load(dirs[0] / "run" / "model.npz")
    assert _max_rel_diff(_emulate_per_rank_bn(2), got) <= 1e-9


def _emulate_per_rank_bn(n_ranks: int) -> dict:
    from minires import training
    from minires.commands.train import DEFAULTS, _prepare_model
    from minires.models import get_model

    cfg = {**DEFAULTS, "model": "cifar_resnet8", "epochs": 2, "batch_size": 200,
           "dtype": "float64", "seed": 3}  # fmt: skip
    mr.manual_seed(cfg["seed"])
    train, _, info = data.make_loaders("digits", batch_size=200, seed=3, dtype="float64")
    model = get_model(cfg["model"], num_classes=info.num_classes, in_channels=info.in_channels)
    model = _prepare_model(model, cfg)
    opt = training.build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = training.build_scheduler(opt, "cosine", epochs=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def get_bufs():
        return [(m.running_mean.copy(), m.running_var.copy(), m.num_batches_tracked) for m in bns]

    def set_bufs(bufs):
        for m, (rm, rv, nb) in zip(bns, bufs):
            m.running_mean[...], m.running_var[...], m.num_batches_tracked = rm, rv, nb

    per_rank = [get_bufs() for _ in range(n_ranks)]
    import minires.functional as F

    for epoch in range(2):
        model.train()
        for i in range(len(train)):
            idx = train.batch_indices(epoch, i)
            counts = split_counts(len(idx), n_ranks)
            opt.zero_grad()
            lo = 0
            for r, c in enumerate(counts):
                set_bufs(per_rank[r])
                x, y = train.load(idx[lo : lo + c], epoch)
                F.cross_entropy(model(x), y).backward(np.asarray(c / len(idx)))
                per_rank[r] = get_bufs()
                lo += c
            opt.step()
        mean = [(sum(b[j][0] for b in per_rank) / n_ranks, sum(b[j][1] for b in per_rank)
                 / n_ranks, per_rank[0][j][2]) for j in range(len(bns))]  # fmt: skip
        per_rank = [[(a.copy(), v.copy(), nb) for a, v, nb in mean] for _ in range(n_ranks)]
        set_bufs(mean)
        sched.step()
    return model.state_dict()


@pytest.mark.mpi
@needs_mpi
def test_a_failing_rank_ends_the_job_quickly(tmp_path):
    """Rank 1 raises while rank 0 waits in a collective: without the abort rank 0 would
    wait forever."""
    script = tmp_path / "fail.py"
    script.write_text(
        textwrap.dedent("""
        from minires import distributed as dist

        def main():
            comm = dist.get_comm()
            if comm.rank == 1:
                raise ValueError("boom on rank 1")
            comm.barrier()  # never completes: rank 1 is gone
            return 0

        dist.guard(main)
    """)
    )
    t0 = time.perf_counter()
    r = _mpirun(2, [str(script)], tmp_path, timeout=60)
    elapsed = time.perf_counter() - t0
    assert r.returncode != 0
    assert "[rank 1] ValueError: boom on rank 1" in r.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"


@pytest.mark.mpi
@needs_mpi
def test_train_error_on_every_rank_exits_non_zero(tmp_path):
    r = _mpirun(2, ["-m", "minires", "train", "--model", "no_such_model", "--out",
                    str(tmp_path / "x"), "--no-progress"], ROOT, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "no_such_model" in r.stderr


SYNCBN_GRADCHECK = """
import numpy as np
import minires as mr
import minires.functional as F
from minires import distributed as dist, nn
from minires.nn.sync_batchnorm import sync_batch_norm

comm = dist.get_comm()
assert comm.size == 2, comm
counts = [3, 2]  # uneven shards of a global batch of 5
lo, hi = sum(counts[: comm.rank]), sum(counts[: comm.rank + 1])
rng = np.random.default_rng(0)  # the same replicated inputs on every rank
x = mr.tensor(rng.standard_normal((5, 3, 2, 2)) * 2 + 1, requires_grad=True)
w = mr.tensor(rng.standard_normal(3) + 1.5, requires_grad=True)
b = mr.tensor(rng.standard_normal(3), requires_grad=True)
v = rng.standard_normal((5, 3, 2, 2))

def fn(x, w, b):
    # The whole computation over both ranks as one function of replicated inputs: each
    # rank normalises its shard; the weighted sum is all-reduced.
    out = sync_batch_norm(dist.shard(x, counts), None, None, dist.replicated(w),
                          dist.replicated(b), comm=comm)
    return dist.all_reduce_sum((out * mr.tensor(v[lo:hi])).sum())

result = mr.gradcheck(fn, [x, w, b])
assert result, result

# Forward and running statistics equal one process's BatchNorm2d on the whole batch.
full, mine = nn.BatchNorm2d(3, dtype=np.float64), nn.SyncBatchNorm(3, dtype=np.float64)
ref = full(x).data[lo:hi]
got = mine(mr.tensor(x.data[lo:hi])).data
np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(mine.running_var, full.running_var, rtol=1e-12)
np.testing.assert_allclose(mine.running_mean, full.running_mean, rtol=1e-12, atol=1e-15)
print(f"rank {comm.rank} ok")
"""


@pytest.mark.mpi
@needs_mpi
def test_sync_batchnorm_gradcheck_across_two_ranks(tmp_path):
    script = tmp_path / "gc.py"
    script.write_text(SYNCBN_GRADCHECK)
    r = _mpirun(2, [str(script)], tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rank 0 ok" in r.stdout and "rank 1 ok" in r.stdout


@pytest.mark.mpi
@needs_mpi
def test_resume_under_mpi_is_bit_exact(tmp_path):
    """1 epoch, then --resume to 2, on 2 ranks = 2 epochs straight on 2 ranks, bit for bit
    (constant schedule: the resumed run keeps the schedule's horizon)."""
    base = [a for a in TRAIN_ARGS if a != "--no-plot"] + ["--schedule", "constant", "--no-plot"]
    base = [a for i, a in enumerate(base) if not (a == "2" and base[i - 1] == "--epochs")]
    base.remove("--epochs")
    straight = _mpirun(2, ["-m", "minires", "train", *base, "--epochs", "2", "--out",
                           str(tmp_path / "a")], ROOT)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = _mpirun(2, ["-m", "minires", "train", *base, "--epochs", "1", "--out",
                        str(tmp_path / "b")], ROOT)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _mpirun(2, ["-m", "minires", "train", "--resume", str(tmp_path / "b"),
                          "--epochs", "2", "--no-progress", "--no-plot"], ROOT)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = mr.load(tmp_path / "a" / "model.npz"), mr.load(tmp_path / "b" / "model.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.mpi
@needs_mpi
def test_experiment_degradation_under_mpiexec(tmp_path):
    r = _mpirun(2, ["-m", "minires", "experiment", "degradation", "--dataset", "synthetic",
                    "--depths", "8", "14", "--epochs", "1", "--out", str(tmp_path / "deg"),
                    "--no-progress"], ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "deg" / "degradation.json").exists()
    assert r.stdout.count("results:") == 1  # rank 0 alone reports


@pytest.mark.mpi
@needs_mpi
def test_each_rank_limits_its_threads_unless_the_user_chose(tmp_path):
    code = ("import os, sys, minires, numba; e = os.environ; "
            "sys.stdout.write(f\"{e['NUMBA_NUM_THREADS']},{e['OMP_NUM_THREADS']},"
            "{numba.config.NUMBA_NUM_THREADS}\\n\")")  # fmt: skip
    env = _env(2)
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)
    n = str(max(1, len(os.sched_getaffinity(0)) // 2))

    def per_rank() -> list[str]:
        r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", code], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return sorted(r.stdout.split())

    assert per_rank() == [f"{n},{n},{n}"] * 2
    env["NUMBA_NUM_THREADS"] = "3"  # the user's choice stays
    assert per_rank() == [f"3,{n},3"] * 2


@pytest.mark.mpi
@needs_mpi
def test_train_workers_reexecutes_under_mpiexec(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "minires", "train", "--workers", "2", "--model", "cifar_resnet8",
         "--epochs", "1", "--batch-size", "200", "--out", str(tmp_path / "w"), "--no-progress",
         "--no-plot", "--check-sync"],
        cwd=ROOT, env=_env(2), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data-parallel on 2 MPI ranks" in r.stderr and "mpiexec" in r.stderr
    assert (tmp_path / "w" / "model.npz").exists()
