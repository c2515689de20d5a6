"""minires.optim against torch.optim: the same parameters fed the same gradient function
must follow the same trajectory, step after step; schedules must give the same lrs."""

from __future__ import annotations

import numpy as np
import pytest

import minires as mr
from minires.optim import SGD, Adam, AdamW
from minires.optim import lr_scheduler as lrs

SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]


def _grad_fn(p: np.ndarray, target: np.ndarray, step: int) -> np.ndarray:
    """A quadratic's gradient plus a step-dependent wobble: deterministic, non-trivial."""
    return 2.0 * (p - target) + np.sin(step + p * 3.0)


def _run_pair(torch, make_mr, make_torch, dtype, steps=6, groups=False):
    rng = np.random.default_rng(1)
    inits = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    targets = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    mp = [mr.nn.Parameter(x.copy()) for x in inits]
    tp = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in inits]
    if groups:  # second group: its own lr
        opt_m = make_mr([{"params": mp[:2]}, {"params": mp[2:], "lr": 0.03}])
        opt_t = make_torch([{"params": tp[:2]}, {"params": tp[2:], "lr": 0.03}])
    else:
        opt_m, opt_t = make_mr(mp), make_torch(tp)
    for step in range(steps):
        opt_m.zero_grad()
        opt_t.zero_grad()
        for p, q, tg in zip(mp, tp, targets):
            p.grad = _grad_fn(p.data, tg, step).astype(dtype)
            q.grad = torch.from_numpy(_grad_fn(q.detach().numpy(), tg, step).astype(dtype))
        opt_m.step()
        opt_t.step()
        yield [p.data for p in mp], [q.detach().numpy() for q in tp]


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.1, momentum=0.5, weight_decay=1e-3, nesterov=True),
    dict(lr=0.01, maximize=True, momentum=0.9),
]
ADAM_CASES = [
    (Adam, "Adam", dict()),
    (Adam, "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    (Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    (Adam, "Adam", dict(lr=0.01, amsgrad=True)),
    (AdamW, "AdamW", dict(lr=0.01)),
    (AdamW, "AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
]


@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda kw: ",".join(kw))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_matches_torch(torch, kw, dtype):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for mine, theirs in _run_pair(
        torch, lambda p: SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw), dtype
    ):
        for a, b in zip(mine, theirs):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("cls,tname,kw", ADAM_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_matches_torch(torch, cls, tname, kw, dtype):
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    tcls = getattr(torch.optim, tname)
    for mine, theirs in _run_pair(torch, lambda p: cls(p, **kw), lambda p: tcls(p, **kw), dtype):
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a, b, **tol)


def test_param_groups_match_torch(torch):
    make_m = lambda p: SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
    make_t = lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)  # noqa: E731
    for mine, theirs in _run_pair(torch, make_m, make_t, np.float64, groups=True):
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize(
    "make", [lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True), lambda p: Adam(p, lr=0.01)]
)
def test_state_dict_resume_is_exact(tmp_path, make):
    """3 steps, save via mr.save, fresh optimizer + load, 3 more == 6 straight."""
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s) for s in SHAPES]
    target = [rng.standard_normal(s) for s in SHAPES]

    def run(params, opt, steps):
        for step in steps:
            for p, tg in zip(params, target):
                p.grad = _grad_fn(p.data, tg, step)
            opt.step()

    straight = [mr.nn.Parameter(x.copy()) for x in init]
    run(straight, make(straight), range(6))

    first = [mr.nn.Parameter(x.copy()) for x in init]
    opt = make(first)
    run(first, opt, range(3))
    mr.save({"opt": opt.state_dict(), "params": [p.data for p in first]}, tmp_path / "o.npz")
    ck = mr.load(tmp_path / "o.npz")
    second = [mr.nn.Parameter(x) for x in ck["params"]]
    opt2 = make(second)
    opt2.load_state_dict(ck["opt"])
    run(second, opt2, range(3, 6))
    for a, b in zip(straight, second):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_torch_state_dict(torch):
    """A torch Adam's state_dict loads into ours and the two continue identically."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    tp = torch.nn.Parameter(torch.from_numpy(x.copy()))
    topt = torch.optim.Adam([tp], lr=0.05, weight_decay=0.01)
    for step in range(3):
        tp.grad = torch.from_numpy(_grad_fn(tp.detach().numpy(), 0.0, step))
        topt.step()
    mp = mr.nn.Parameter(tp.detach().numpy().copy())
    mopt = Adam([mp], lr=1.0)
    mopt.load_state_dict(topt.state_dict())
    assert mopt.param_groups[0]["lr"] == 0.05
    for step in range(3, 6):
        tp.grad = torch.from_numpy(_grad_fn(tp.detach().numpy(), 0.0, step))
        mp.grad = _grad_fn(mp.data, 0.0, step)
        topt.step()
        mopt.step()
    np.testing.assert_allclose(mp.data, tp.detach().numpy(), rtol=1e-12)


def test_zero_grad_and_skip_none():
    p, q = mr.nn.Parameter(np.ones(3)), mr.nn.Parameter(np.ones(2))
    opt = SGD([p, q], lr=0.5)
    p.grad = np.full(3, 2.0)
    opt.step()  # q has no grad: untouched
    np.testing.assert_array_equal(p.data, np.zeros(3))
    np.testing.assert_array_equal(q.data, np.ones(2))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad, np.zeros(3))
    opt.zero_grad()
    assert p.grad is None


def test_bad_arguments():
    p = mr.nn.Parameter(np.ones(3))
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        SGD([p], lr=-1.0)
    assert SGD([p]).param_groups[0]["lr"] == 1e-3  # PyTorch 2's default
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        SGD([np.ones(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


# -- schedules ------------------------------------------------------------------------------

SCHEDULES = {
    "step": (lambda o, L: L.StepLR(o, step_size=3, gamma=0.5)),
    "multistep": (lambda o, L: L.MultiStepLR(o, milestones=[2, 5, 9], gamma=0.1)),
    "cosine": (lambda o, L: L.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    "linear": (lambda o, L: L.LinearLR(o, start_factor=0.1, total_iters=4)),
    "warmup+cosine": (
        lambda o, L: L.SequentialLR(
            o,
            [L.LinearLR(o, start_factor=0.01, total_iters=3), L.CosineAnnealingLR(o, T_max=9)],
            milestones=[3],
        )
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_match_torch(torch, name):
    import warnings

    p, q = mr.nn.Parameter(np.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt_m = SGD([{"params": [p]}], lr=0.1, momentum=0.9)
    opt_t = torch.optim.SGD([{"params": [q]}], lr=0.1, momentum=0.9)
    sm = SCHEDULES[name](opt_m, lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = SCHEDULES[name](opt_t, torch.optim.lr_scheduler)
    for _ in range(12):
        assert sm.get_last_lr() == pytest.approx(st.get_last_lr(), rel=1e-10, abs=1e-15)
        assert opt_m.param_groups[0]["lr"] == pytest.approx(opt_t.param_groups[0]["lr"], 1e-10)
        opt_m.step()
        opt_t.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm.step()
            st.step()


def test_schedule_state_dict_roundtrip(tmp_path):
    def make():
        p = mr.nn.Parameter(np.ones(2))
        opt = SGD([p], lr=0.1)
        return opt, SCHEDULES["warmup+cosine"](opt, lrs)

    opt, s = make()
    for _ in range(5):
        s.step()
    mr.save({"o": opt.state_dict(), "s": s.state_dict()}, tmp_path / "s.npz")
    ck = mr.load(tmp_path / "s.npz")
    opt2, s2 = make()
    opt2.load_state_dict(ck["o"])
    s2.load_state_dict(ck["s"])
    for _ in range(6):
        s.step()
        s2.step()
        assert s.get_last_lr() == s2.get_last_lr()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_lr_at_is_readable():
    opt = SGD([mr.nn.Parameter(np.ones(1))], lr=1.0)
    s = lrs.MultiStepLR(opt, [2, 4], gamma=0.1)
    assert [round(s.lr_at(e)[0], 6) for e in range(6)] == [1, 1, 0.1, 0.1, 0.01, 0.01]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: SGD(p, lr="a"), TypeError, "SGD: lr must be a number, got 'a'"),
        (lambda p: SGD(p, lr=float("nan")), ValueError, "SGD: lr must be finite"),
        (lambda p: SGD(p, lr=0.1, momentum=None), TypeError, "momentum must be a number"),
        (lambda p: SGD(p, lr=True), TypeError, "lr must be a number, got True"),
        (lambda p: SGD(p, lr=0.1, nesterov="yes"), TypeError, "nesterov must be True or False"),
        (lambda p: Adam(p, betas=0.9), TypeError, "betas must be a pair"),
        (lambda p: Adam(p, betas=(0.9, float("inf"))), ValueError, "betas must be finite"),
        (lambda p: Adam(p, eps="1e-8"), TypeError, "eps must be a number"),
        (lambda p: SGD([{"params": p, "lr": "x"}], lr=0.1), TypeError, "lr must be a number"),
    ],
)
def test_hyperparameters_of_the_wrong_type_are_refused_clearly(make, error, match):
    params = [mr.nn.Parameter(np.zeros(3, np.float32))]
    with pytest.raises(error, match=match):
        make(params)


def test_scheduler_settings_that_would_misbehave_are_refused_or_saturate():
    p = mr.nn.Parameter(mr.zeros(2))
    opt = mr.optim.SGD([p], lr=0.1)
    big = lrs.StepLR(opt, step_size=1, gamma=1e300)
    for _ in range(3):
        big.step()  # lr overflows to inf (as float arithmetic does), no OverflowError
    assert big.get_last_lr()[0] == float("inf")
    opt = mr.optim.SGD([p], lr=0.1)
    a, b = lrs.LinearLR(opt, total_iters=2), lrs.StepLR(opt, step_size=1)
    with pytest.raises(ValueError, match=r"milestones must be non-decreasing and >= 0"):
        lrs.SequentialLR(opt, [a, b], milestones=[-2])
    seq = lrs.SequentialLR(opt, [a, b], milestones=[2])
    state = seq.state_dict()
    state["milestones"] = [-2]
    with pytest.raises(ValueError, match="milestones must be non-decreasing"):
        seq.load_state_dict(state)
    with pytest.raises(ValueError, match="total_iters must be >= 0"):
        lrs.LinearLR(opt, total_iters=-3)
    lin = lrs.LinearLR(opt, total_iters=2)
    state = lin.state_dict()
    state["total_iters"] = -3
    with pytest.raises(ValueError, match="LinearLR state: total_iters must be >= 0"):
        lin.load_state_dict(state)


def test_scheduler_constructors_refuse_non_finite_settings():
    opt = mr.optim.SGD([mr.nn.Parameter(mr.zeros(2))], lr=0.1)
    for make in (lambda: lrs.StepLR(opt, 1, gamma=float("nan")),
                 lambda: lrs.MultiStepLR(opt, [2], gamma=float("inf")),
                 lambda: lrs.CosineAnnealingLR(opt, 5, eta_min=float("nan"))):  # fmt: skip
        with pytest.raises(ValueError, match="must be finite"):
            make()
