"""Resuming from a corrupt or mismatched training checkpoint (fuzz findings, session 13):
every field is checked before anything is loaded, and a refused checkpoint raises a
ValueError (TypeError for wrong types at the level of one object) naming the field and
the value at fault, leaving the model, optimizer, scheduler, loader and random state
exactly as they were. Valid checkpoints still resume bit for bit."""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn, training
from minires.data import DataLoader
from minires.data.dataset import TensorDataset
from minires.optim import SGD, Adam
from minires.optim import lr_scheduler as lrs
from minires.random import get_rng_state

QUIET = dict(progress=False, plot=False, log=lambda s: None)


def _objects(seed: int = 0, loader_seed: int = 1, optimizer: str = "sgd") -> tuple[Any, ...]:
    """A tiny conv net with batchnorm, its optimizer, a warm-up + cosine schedule (nested
    scheduler states) and a shuffled loader of 2 batches."""
    mr.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    opt = training.build_optimizer(net, optimizer, lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = training.build_scheduler(opt, "cosine", epochs=3, warmup=1)
    rng = np.random.default_rng(0)
    ds = TensorDataset(rng.standard_normal((16, 1, 4, 4)).astype(np.float32), np.arange(16) % 3)
    return net, opt, sched, DataLoader(ds, batch_size=8, shuffle=True, seed=loader_seed)


def _fresh() -> tuple[Any, ...]:
    """Objects to resume into, unlike the checkpoint's in every part: another init,
    momentum buffers from one step, another loader seed, another random state."""
    net, opt, sched, loader = _objects(seed=5, loader_seed=2)
    x, y = next(iter(loader.epoch_iter(0)))
    F.cross_entropy(net(x), y).backward()
    opt.step()
    opt.zero_grad()
    mr.manual_seed(123)
    return net, opt, sched, loader


def _snapshot(net: Any, opt: Any, sched: Any, loader: Any) -> dict[str, Any]:
    subs = getattr(sched, "_schedulers", [])
    return {
        "model": {k: v.copy() for k, v in net.state_dict().items()},
        "optimizer": copy.deepcopy(opt.state_dict()),
        "scheduler": copy.deepcopy(sched.state_dict()),
        "scheduler attributes": [sorted(vars(s)) for s in [sched, *subs]],
        "loader": loader.state_dict(),
        "rng": copy.deepcopy(get_rng_state()),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _assert_untouched(objects: tuple[Any, ...], before: dict[str, Any]) -> None:
    net, opt, sched, loader = objects
    after = _snapshot(net, opt, sched, loader)
    for part in before:
        assert _same(before[part], after[part]), f"the refused checkpoint changed the {part}"
    assert sched.optimizer is opt and callable(sched.step)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    """A real run's checkpoint after epoch 1 of 3, and the checkpoint as loaded."""
    out = tmp_path_factory.mktemp("run")
    net, opt, sched, loader = _objects()
    training.train(net, loader, None, 1, opt, sched, out_dir=out, **QUIET)
    return out, training.load_checkpoint(out)


# -- the guarantees hold only if a valid checkpoint changes every part ---------------------


def test_a_valid_checkpoint_changes_every_part(run):
    _, ck = run
    objects = _fresh()
    before = _snapshot(*objects)
    training.restore_checkpoint(ck, *objects)
    after = _snapshot(*objects)
    for part in ("model", "optimizer", "scheduler", "loader", "rng"):
        assert not _same(before[part], after[part]), part  # else the tests below prove nothing
    assert objects[3].state_dict() == {"seed": 1, "epoch": 1}
    assert objects[2].last_epoch == 1 and objects[2].optimizer is objects[1]


def test_resume_is_still_bit_exact_at_and_within_an_epoch(tmp_path):
    def weights(objects):
        return {k: v.copy() for k, v in objects[0].state_dict().items()}

    straight = _objects()
    rows = training.train(*straight[:1], straight[3], None, 3, *straight[1:3], **QUIET).rows

    first = _objects()
    training.train(first[0], first[3], None, 2, *first[1:3], out_dir=tmp_path / "a", **QUIET)
    resumed = _objects(seed=9, loader_seed=4)
    h = training.train(resumed[0], resumed[3], None, 3, *resumed[1:3], resume=tmp_path / "a",
                       **QUIET)  # fmt: skip
    assert _same(weights(resumed), weights(straight))
    assert [r["train_loss"] for r in h.rows] == [r["train_loss"] for r in rows]

    def interrupt(epoch, batch, info):
        if (epoch, batch) == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: a checkpoint at epoch 1, batch 1

    first = _objects()
    h = training.train(first[0], first[3], None, 3, *first[1:3], out_dir=tmp_path / "b",
                       callback=interrupt, **QUIET)  # fmt: skip
    assert h.interrupted
    ck = training.load_checkpoint(tmp_path / "b")
    assert (ck["epoch"], ck["batch"]) == (1, 1) and ck["partial"]["seen"] == 8
    resumed = _objects(seed=9, loader_seed=4)
    training.train(resumed[0], resumed[3], None, 3, *resumed[1:3], resume=tmp_path / "b",
                   **QUIET)  # fmt: skip
    assert _same(weights(resumed), weights(straight))


# -- corrupt checkpoints, through train(resume=...) ---------------------------------------


def _set(*path: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation: set ``ck[path[0]][path[1]]... = path[-1]`` (or delete with DELETE)."""

    def mutate(ck: dict[str, Any]) -> None:
        *keys, last, value = path
        d = ck
        for k in keys:
            d = d[k]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value

    return mutate


DELETE = object()


def _history_row(**change: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(ck: dict[str, Any]) -> None:
        ck["history"][0].update(change)
        for k, v in change.items():
            if v is DELETE:
                del ck["history"][0][k]

    return mutate


def _step_state(ck: dict[str, Any]) -> None:
    """A StepLR state where the cosine warm-up's SequentialLR state was."""
    opt = SGD([nn.Parameter(np.ones(2))], lr=0.1)
    ck["scheduler"] = lrs.StepLR(opt, 2).state_dict()


CORRUPT = {
    # the fuzz findings
    "scheduler step=1": (_set("scheduler", "step", 1), r"'scheduler'.*unknown key 'step'"),
    "scheduler optimizer=5": (
        _set("scheduler", "optimizer", 5),
        r"'scheduler'.*unknown key 'optimizer'",
    ),
    "scheduler last_epoch='x'": (
        _set("scheduler", "last_epoch", "x"),
        r"'scheduler'.*last_epoch must be an int, got 'x'",
    ),
    "loader={}": (_set("loader", {}), r"'loader'.*no 'seed' entry"),
    "loader seed='abc'": (_set("loader", "seed", "abc"), r"'loader'.*seed must be an int.*'abc'"),
    "partial={}": (_set("partial", {}), r"'partial' has no 'loss_sum'"),
    "history=[1, 2]": (_set("history", [1, 2]), r"'history'\[0\] is 1, expected a dict"),
    "batch=-1": (_set("batch", -1), r"'batch' is -1, expected >= 0"),
    "epoch=-3": (_set("epoch", -3), r"'epoch' is -3, expected >= 0"),
    "batch=10**6": (_set("batch", 10**6), r"'batch' is 1000000, but an epoch .* has 2 batches"),
    # the scheduler
    "scheduler last_epoch=-2": (_set("scheduler", "last_epoch", -2), r"last_epoch must be in .*-2"),
    "scheduler last_epoch=True": (
        _set("scheduler", "last_epoch", True),
        r"last_epoch must be an int, got True",
    ),
    "scheduler without last_epoch": (
        _set("scheduler", "last_epoch", DELETE),
        r"'scheduler'.*no 'last_epoch' entry",
    ),
    "scheduler base_lrs=[nan]": (
        _set("scheduler", "base_lrs", [float("nan")]),
        r"base_lrs\[0\] must be finite, got nan",
    ),
    "scheduler base_lrs of 2 groups": (
        _set("scheduler", "base_lrs", [0.1, 0.1]),
        r"base_lrs must be a list of length 1",
    ),
    "scheduler base_lrs=[-1]": (_set("scheduler", "base_lrs", [-1.0]), r"base_lrs\[0\].*>= 0"),
    "scheduler milestones='abc'": (
        _set("scheduler", "milestones", "abc"),
        r"milestones must be a list, got 'abc'",
    ),
    "cosine T_max=0": (
        _set("scheduler", "_schedulers", 1, "T_max", 0),
        r"_schedulers\[1\]:.*T_max must be > 0",
    ),
    "warm-up start_factor=2": (
        _set("scheduler", "_schedulers", 0, "start_factor", 2.0),
        r"start_factor must be <= 1",
    ),
    "warm-up with an extra key": (
        _set("scheduler", "_schedulers", 0, "lr_lambda", 1),
        r"_schedulers\[0\].*'lr_lambda'",
    ),
    "two sub-scheduler states of three": (
        lambda ck: ck["scheduler"]["_schedulers"].append({}),
        r"_schedulers must be a list of",
    ),
    "another scheduler's state": (_step_state, r"'scheduler'.*unknown key 'step_size'"),
    "no scheduler state": (_set("scheduler", None), r"no scheduler state"),
    # the loader
    "loader seed=-1": (_set("loader", "seed", -1), r"'loader'.*seed must be in .*-1"),
    "loader epoch=2**64": (_set("loader", "epoch", 2**64), r"'loader'.*epoch must be in"),
    "loader with an extra key": (_set("loader", "shuffle", True), r"unknown key 'shuffle'"),
    # the unfinished epoch's sums and the position
    "partial loss_sum=nan": (
        _set("partial", "loss_sum", float("nan")),
        r"'partial'\['loss_sum'\] is nan",
    ),
    "partial seen='x'": (_set("partial", "seen", "x"), r"'partial'\['seen'\] is 'x'"),
    "partial correct > seen": (
        lambda ck: ck.update(batch=1, partial={"loss_sum": 1.0, "correct": 9, "seen": 8}),
        r"'correct' is 9, more than 'seen' \(8\)",
    ),
    "partial sums at batch 0": (
        _set("partial", "seen", 8),
        r"'partial' is .*sums without samples seen.*batch 0",
    ),
    "partial with an extra key": (_set("partial", "total", 1), r"unknown key 'total'"),
    "partial more samples than its batches": (
        lambda ck: ck.update(batch=1, partial={"loss_sum": 1.0, "correct": 2, "seen": 9}),
        r"'partial' has seen 9 samples, more than its 1 batches of at most 8",
    ),
    "batch=True": (_set("batch", True), r"'batch' is a bool"),
    # the history
    "history row without train_loss": (
        _history_row(train_loss=DELETE),
        r"'history'\[0\] has no 'train_loss'",
    ),
    "history row with an extra key": (_history_row(note="x"), r"unknown key 'note'"),
    "history row epoch=0": (_history_row(epoch=0), r"'history'\[0\]\['epoch'\] is 0"),
    "history row beyond the checkpoint": (_history_row(epoch=2), r"\['epoch'\] is 2"),
    "history row train_acc=1.5": (_history_row(train_acc=1.5), r"\['train_acc'\] is 1.5"),
    "history row lr='fast'": (_history_row(lr="fast"), r"\['lr'\] is 'fast'"),
    "history row half a test": (_history_row(test_acc=0.5), r"all None or all numbers"),
    # the random state
    "rng={'a': 1}": (_set("rng", {"a": 1}), r"'rng' is not a valid random state"),
    "rng state too large": (_set("rng", "state", "state", 2**200), r"'rng' is not a valid"),
    # the optimizer
    "lr='abc'": (_set("optimizer", "param_groups", 0, "lr", "abc"), r"'lr' is 'abc'"),
    "lr=-5": (_set("optimizer", "param_groups", 0, "lr", -5.0), r"'lr' is -5.0.*>= 0"),
    "lr=nan": (_set("optimizer", "param_groups", 0, "lr", float("nan")), r"'lr' is nan"),
    "momentum=inf": (_set("optimizer", "param_groups", 0, "momentum", float("inf")), "'momentum'"),
    "initial_lr='x'": (_set("optimizer", "param_groups", 0, "initial_lr", "x"), "'initial_lr'"),
    "momentum buffer of another shape": (
        _set("optimizer", "state", "3", "momentum_buffer", np.zeros(7, np.float32)),
        r"parameter 3: 'momentum_buffer' has shape \(7,\), the parameter has \(2,\)",
    ),
    "momentum buffer of strings": (
        _set("optimizer", "state", "0", "momentum_buffer", "abc"),
        r"parameter 0: 'momentum_buffer' is a str",
    ),
    "an unknown buffer": (
        _set("optimizer", "state", "0", "exp_avg", np.zeros(2)),
        r"unknown buffer 'exp_avg'",
    ),
    "state of parameter 99": (
        _set("optimizer", "state", "99", {"momentum_buffer": np.zeros(3, np.float32)}),
        r"entry for parameter '99', which no param group lists",
    ),
    "state key 'abc'": (_set("optimizer", "state", "abc", {}), r"parameter numbers, got 'abc'"),
    "one parameter listed": (
        _set("optimizer", "param_groups", 0, "params", [0]),
        r"group 0 has 1 parameters",
    ),
    "a parameter listed twice": (
        _set("optimizer", "param_groups", 0, "params", [0, 1, 2, 3, 4, 4]),
        r"parameter 4 is in",
    ),
    # the model
    "model weight of another shape": (
        _set("model", "3.weight", np.zeros((3, 7), np.float32)),
        r"(?s)'model'.*3.weight.*\(3, 7\)",
    ),
    "model without a buffer": (
        _set("model", "1.running_var", DELETE),
        r"(?s)'model'.*missing keys: 1.running_var",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_checkpoint_is_refused_before_anything_is_loaded(run, tmp_path, case):
    out, ck = run
    mutate, message = CORRUPT[case]
    bad = copy.deepcopy(ck)
    mutate(bad)
    mr.save(bad, tmp_path / "bad.npz")
    objects = _fresh()
    before = _snapshot(*objects)
    net, opt, sched, loader = objects
    with pytest.raises(ValueError, match=message):
        training.train(net, loader, None, 3, opt, sched, resume=tmp_path / "bad.npz", **QUIET)
    _assert_untouched(objects, before)


def test_restore_checkpoint_refuses_the_same_way(run):
    """restore_checkpoint itself (a checkpoint dict, e.g. built in memory)."""
    _, ck = run
    for case in ("scheduler step=1", "loader={}", "batch=10**6", "momentum buffer of strings",
                 "model weight of another shape", "rng state too large"):  # fmt: skip
        bad = copy.deepcopy(ck)
        CORRUPT[case][0](bad)
        objects = _fresh()
        before = _snapshot(*objects)
        with pytest.raises(ValueError, match=CORRUPT[case][1]):
            training.restore_checkpoint(bad, *objects)
        _assert_untouched(objects, before)


def test_load_checkpoint_names_the_file_and_field(run, tmp_path):
    """What needs no model is refused on reading (`minires train --resume` reports it)."""
    _, ck = run
    for case in ("epoch=-3", "partial={}", "history=[1, 2]", "rng={'a': 1}"):
        bad = copy.deepcopy(ck)
        CORRUPT[case][0](bad)
        mr.save(bad, tmp_path / "bad.npz")
        with pytest.raises(ValueError, match=CORRUPT[case][1]) as info:
            training.load_checkpoint(tmp_path / "bad.npz")
        assert str(tmp_path / "bad.npz") in str(info.value)


# -- each object's own load_state_dict ------------------------------------------------------


def _scheduler_snapshot(sched: Any) -> Any:
    subs = getattr(sched, "_schedulers", [])
    return [(sorted(vars(s)), copy.deepcopy(s.state_dict())) for s in [sched, *subs]]


@pytest.mark.parametrize(
    "state,error,message",
    [
        ({"step": 1}, ValueError, r"unknown key 'step'"),
        ({"optimizer": 5}, ValueError, r"unknown key 'optimizer'"),
        ({"last_epoch": "x"}, TypeError, r"last_epoch must be an int, got 'x'"),
        ({"last_epoch": 2.0}, TypeError, r"last_epoch must be an int, got 2.0"),
        ({"_last_lr": [0.1, "x"]}, ValueError, r"_last_lr must be a list of length 1"),
        ({"_last_lr": ["x"]}, TypeError, r"_last_lr\[0\] must be a number, got 'x'"),
        ({"milestones": [1, 2]}, ValueError, r"milestones must be a list of length 1"),
        ({"milestones": [1.5]}, TypeError, r"milestones\[0\] must be an int, got 1.5"),
    ],
)
def test_scheduler_state_is_checked_key_by_key(state, error, message):
    _, opt, sched, _ = _objects()
    good = sched.state_dict()
    before = _scheduler_snapshot(sched)
    with pytest.raises(error, match=message):
        sched.load_state_dict({**good, **state})
    with pytest.raises(error, match=message):
        sched.check_state_dict({**good, **state})
    assert _scheduler_snapshot(sched) == before
    assert sched.optimizer is opt and callable(sched.step)


def test_a_bad_sub_scheduler_state_leaves_the_whole_schedule_unchanged():
    """SequentialLR checks its sub-schedulers' states before setting its own."""
    _, _, sched, _ = _objects()
    state = copy.deepcopy(sched.state_dict())
    state["last_epoch"] = 2
    state["_schedulers"][0]["last_epoch"] = 2
    state["_schedulers"][1]["eta_min"] = float("inf")
    before = _scheduler_snapshot(sched)
    with pytest.raises(ValueError, match=r"_schedulers\[1\]:.*eta_min must be finite, got inf"):
        sched.load_state_dict(state)
    assert _scheduler_snapshot(sched) == before


SCHEDULERS = {
    "lambda": lambda o: lrs.LambdaLR(o, lambda e: 0.5**e),
    "step": lambda o: lrs.StepLR(o, 2, gamma=0.5),
    "multistep": lambda o: lrs.MultiStepLR(o, [1, 3]),
    "cosine": lambda o: lrs.CosineAnnealingLR(o, T_max=4.5, eta_min=0.001),
    "linear": lambda o: lrs.LinearLR(o, start_factor=0.25, total_iters=3),
    "sequential": lambda o: lrs.SequentialLR(
        o, [lrs.LinearLR(o, start_factor=0.5, total_iters=2), lrs.StepLR(o, 1)], milestones=[2]
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_loads_its_own_saved_state(tmp_path, name):
    def make():
        opt = SGD([{"params": [nn.Parameter(np.ones(2))]}, {"params": [nn.Parameter(np.ones(1))]}],
                  lr=0.1)  # fmt: skip
        return opt, SCHEDULERS[name](opt)

    opt, sched = make()
    for _ in range(3):
        sched.step()
    mr.save({"o": opt.state_dict(), "s": sched.state_dict()}, tmp_path / "s.npz")
    ck = mr.load(tmp_path / "s.npz")
    opt2, sched2 = make()
    opt2.load_state_dict(ck["o"])
    sched2.load_state_dict(ck["s"])
    for _ in range(4):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="unknown key 'extra'"):  # its own keys only
        sched2.load_state_dict({**ck["s"], "extra": 1})


@pytest.mark.parametrize(
    "state,error,message",
    [
        ({}, ValueError, r"no 'seed' entry"),
        ({"seed": 3}, ValueError, r"no 'epoch' entry"),
        ({"seed": 3, "epoch": 1, "batch_size": 4}, ValueError, r"unknown key 'batch_size'"),
        ({"seed": "abc", "epoch": 1}, TypeError, r"seed must be an int, got 'abc'"),
        ({"seed": 3.0, "epoch": 1}, TypeError, r"seed must be an int, got 3.0"),
        ({"seed": 3, "epoch": True}, TypeError, r"epoch must be an int, got True"),
        ({"seed": -1, "epoch": 1}, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
        ({"seed": 3, "epoch": -1}, ValueError, r"epoch must be in \[0, 2\*\*64\), got -1"),
        ({"seed": 2**64, "epoch": 1}, ValueError, r"seed must be in"),
        ([3, 1], TypeError, r"expected a mapping, got list"),
    ],
)
def test_loader_state_is_checked(state, error, message):
    *_, loader = _objects()
    with pytest.raises(error, match=message):
        loader.load_state_dict(state)
    assert loader.state_dict() == {"seed": 1, "epoch": 0}
    loader.load_state_dict({"seed": np.int64(7), "epoch": 2})  # NumPy ints are ints
    assert loader.state_dict() == {"seed": 7, "epoch": 2}
    assert type(loader.seed) is int


def test_loader_refuses_a_seed_its_hashes_cannot_take():
    *_, loader = _objects()
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        DataLoader(loader.dataset, batch_size=8, seed=2**64)


def _trained_optimizer(kind: str) -> tuple[Any, Any]:
    net, opt, _, loader = _objects(optimizer=kind)
    for x, y in loader.epoch_iter(0):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize(
    "kind,mutate,message",
    [
        ("adam", _set("state", "2", "exp_avg", DELETE), r"parameter 2: no 'exp_avg' buffer"),
        ("adam", _set("state", "0", "step", float("nan")), r"'step' is nan, expected a step count"),
        ("adam", _set("state", "0", "step", -1.0), r"'step' is -1.0"),
        ("adam", _set("state", "0", "step", "3"), r"'step' is '3'"),
        ("adam", _set("param_groups", 0, "amsgrad", True), r"no 'max_exp_avg_sq' buffer"),
        ("adam", _set("param_groups", 0, "betas", (0.9, 1.0)), r"'betas' is \(0.9, 1.0\)"),
        ("adam", _set("param_groups", 0, "eps", -1e-8), r"'eps' is -1e-08"),
        ("adam", _set("state", "5", "exp_avg_sq", np.zeros(3, complex)), r"dtype complex128"),
        ("sgd", _set("state", "5", "momentum_buffer", np.zeros(4)), r"parameter 5.*shape \(4,\)"),
        ("sgd", _set("param_groups", 0, "weight_decay", 10**400), r"'weight_decay' is 1000"),
        ("sgd", _set("param_groups", 0, "nesterov", 1), r"'nesterov' is 1"),
    ],
)
def test_optimizer_state_is_checked_before_any_is_loaded(kind, mutate, message):
    """A bad buffer of the last parameter: the first parameters' state is left alone too
    (the optimizer used to clear its state, then fail part-way)."""
    _, source = _trained_optimizer(kind)
    _, opt = _trained_optimizer(kind)
    for group in opt.param_groups:
        group["lr"] = 0.5  # unlike the source's
    state = copy.deepcopy(source.state_dict())
    mutate(state)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    with pytest.raises(ValueError, match=message):
        opt.check_state_dict(state)
    assert _same(opt.state_dict(), before)


def test_optimizer_buffers_of_a_0d_parameter_stay_arrays(tmp_path):
    """A 0-d parameter's momentum buffer is loaded as a 0-d array (it became a Python
    float, which `buf *= momentum` rebinds instead of updating: the momentum was lost)."""

    def run(opt, p, steps):
        for t in steps:
            p.grad = np.array(1.0 + t)
            opt.step()

    a = nn.Parameter(np.array(2.0))
    opt_a = SGD([a], lr=0.1, momentum=0.9)
    run(opt_a, a, range(4))
    b = nn.Parameter(np.array(2.0))
    opt_b = SGD([b], lr=0.1, momentum=0.9)
    run(opt_b, b, range(2))
    mr.save({"o": opt_b.state_dict(), "p": b.data}, tmp_path / "o.npz")
    ck = mr.load(tmp_path / "o.npz")
    c = nn.Parameter(ck["p"])
    opt_c = SGD([c], lr=0.1, momentum=0.9)
    opt_c.load_state_dict(ck["o"])
    assert isinstance(opt_c.state[id(c)]["momentum_buffer"], np.ndarray)
    run(opt_c, c, range(2, 4))
    assert c.data == a.data


def test_torch_style_adam_state_still_loads():
    """Integer state keys, a 0-d array step and settings we do not have (torch's)."""
    _, source = _trained_optimizer("adam")
    state = copy.deepcopy(source.state_dict())
    state["state"] = {int(k): {**v, "step": np.array(v["step"], np.float32)}
                      for k, v in state["state"].items()}  # fmt: skip
    state["param_groups"][0].update(foreach=None, capturable=False)
    _, opt = _trained_optimizer("adam")
    opt.load_state_dict(state)
    assert all(type(s["step"]) is float for s in opt.state.values())
    assert isinstance(opt, Adam) and opt.param_groups[0]["foreach"] is None
