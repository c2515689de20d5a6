"""minires.optim against torch.optim, from a PyTorch user's side (an audit's findings):

- trajectories of SGD / Adam / AdamW over hypothesis-drawn settings, dtypes, shapes
  (0-d, empty), several groups and gradients left None, step by step; Adam's first moment
  rounds as torch's ``lerp_`` (which works from the nearer end when beta1 < 0.5);
- ``step(closure)``; NaN / inf gradients propagate silently; ``named_parameters()``;
  ``state[param]``; the group dict itself is the group; ``decoupled_weight_decay`` and the
  implementation switches (``foreach``, ``fused``, ...); what is refused (a parameter twice
  in a group, a set of parameters, integer parameters, a gradient of the wrong shape);
- schedules step by torch's chainable rules (two schedulers on one optimizer compose, an
  lr set by hand carries on, ``last_epoch`` resumes as in torch), ``LambdaLR`` with one
  function per group, ``step(epoch)``, and ``state_dict`` round trips mid-schedule.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
from minires.optim import SGD, Adam, AdamW
from minires.optim import lr_scheduler as L

torch = pytest.importorskip("torch", reason="PyTorch not installed: torch-oracle tests skipped")
TL = torch.optim.lr_scheduler

# torch warns when a scheduler steps before the optimizer, or is given an epoch
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPES = [(), (1,), (3, 4), (2, 1, 3), (0,)]
MR_CLASSES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def _pair(x: np.ndarray) -> tuple[mr.nn.Parameter, torch.nn.Parameter]:
    return mr.nn.Parameter(x.copy()), torch.nn.Parameter(torch.from_numpy(x.copy()))


def _set_grads(mp, tp, grads) -> None:
    for p, q, g in zip(mp, tp, grads):
        p.grad = None if g is None else g.copy()
        q.grad = None if g is None else torch.from_numpy(g.copy())


# -- optimizer trajectories --------------------------------------------------------------------

unit = st.floats(0.0, 0.99)
beta2 = st.sampled_from([0.999, 0.0]) | unit


@st.composite
def settings_of(draw, kind: str) -> dict:
    """One group's settings (a valid combination for torch and minires alike)."""
    if kind == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.9]) | unit)
        nesterov = momentum > 0 and draw(st.booleans())
        return dict(
            lr=draw(st.floats(0.0, 0.3)), momentum=momentum,
            dampening=0.0 if nesterov else draw(st.sampled_from([0.0]) | unit),
            weight_decay=draw(st.sampled_from([0.0]) | st.floats(0.0, 0.1)),
            nesterov=nesterov, maximize=draw(st.booleans()),
        )  # fmt: skip
    return dict(
        lr=draw(st.floats(0.0, 0.1)),
        betas=(draw(st.sampled_from([0.9, 0.0, 0.3]) | unit), draw(beta2)),
        eps=draw(st.sampled_from([1e-8, 1e-3, 1.0])),
        weight_decay=draw(st.sampled_from([0.0]) | st.floats(0.0, 0.5)),
        amsgrad=draw(st.booleans()), maximize=draw(st.booleans()),
    )  # fmt: skip


@st.composite
def optimizer_runs(draw) -> dict:
    kind = draw(st.sampled_from(sorted(MR_CLASSES)))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4))
    n_groups = draw(st.integers(1, len(shapes)))
    return dict(
        kind=kind,
        dtype=draw(st.sampled_from([np.float64, np.float32])),
        shapes=shapes,
        groups=[draw(settings_of(kind)) for _ in range(n_groups)],
        defaults=draw(settings_of(kind)),
        steps=draw(st.integers(1, 15)),
        seed=draw(st.integers(0, 2**16)),
        edit_at=draw(st.none() | st.integers(0, 14)),
        reload_at=draw(st.none() | st.integers(0, 14)),
        reload_from=draw(st.sampled_from(["minires", "torch"])),
    )


@settings(max_examples=300)  # (quick: small shapes, a few steps)
@given(optimizer_runs())
def test_optimizers_follow_torch_step_by_step(run):
    """Same start, same gradients (some None, some large, some tiny), several groups each
    overriding some defaults, an lr changed by hand at ``edit_at``, the state (ours or
    torch's) loaded into a new optimizer at ``reload_at``: the same parameters after every
    step."""
    rng = np.random.default_rng(run["seed"])
    dtype = run["dtype"]
    inits = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in run["shapes"]]
    pairs = [_pair(x) for x in inits]
    mp, tp = [p for p, _ in pairs], [q for _, q in pairs]
    split = np.array_split(np.arange(len(mp)), len(run["groups"]))
    mgroups = [{"params": [mp[i] for i in ix], **kw} for ix, kw in zip(split, run["groups"])]
    tgroups = [{"params": [tp[i] for i in ix], **kw} for ix, kw in zip(split, run["groups"])]
    opt = MR_CLASSES[run["kind"]](mgroups, **run["defaults"])
    topt = getattr(torch.optim, run["kind"])(tgroups, **run["defaults"])
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    for step in range(run["steps"]):
        if step == run["edit_at"]:
            opt.param_groups[-1]["lr"] = topt.param_groups[-1]["lr"] = 0.05
        if step == run["reload_at"]:
            state = (opt if run["reload_from"] == "minires" else topt).state_dict()
            fresh = [{"params": g["params"], **kw} for g, kw in zip(mgroups, run["groups"])]
            opt = MR_CLASSES[run["kind"]](fresh, **run["defaults"])
            opt.load_state_dict(copy.deepcopy(state))
        grads = [
            None
            if rng.random() < 0.2
            else np.asarray(rng.standard_normal(p.shape) * rng.choice([1.0, 1e-3, 1e3]), dtype)
            for p in mp
        ]
        _set_grads(mp, tp, grads)
        opt.step()
        topt.step()
        for p, q in zip(mp, tp):
            assert p.data.dtype == dtype
            want = q.detach().numpy()
            # (absolute slack: where terms of the size of the largest value cancel, both
            # libraries round differently, to some ulps of that size)
            atol = 1000 * np.finfo(dtype).eps * max(1.0, float(np.abs(want).max(initial=0)))
            np.testing.assert_allclose(p.data, want, rtol=rtol, atol=atol)


def test_adam_first_moment_rounds_as_torch_lerp():
    """torch's ``exp_avg.lerp_(g, 1 - beta1)`` computes ``g - (g - m) * beta1`` when the
    weight is >= 0.5: with beta1 = 0 the moment is exactly g. ``m + 1 * (g - m)`` lost g
    beside a large m (1e20 + (1 - 1e20) is 0), and the step with it."""
    p, q = _pair(np.zeros(2))
    opt, topt = Adam([p], lr=0.1, betas=(0.0, 0.0)), torch.optim.Adam([q], lr=0.1, betas=(0.0, 0.0))
    for g in (np.array([1e20, 3.0]), np.array([1.0, 3.0])):
        _set_grads([p], [q], [g])
        opt.step()
        topt.step()
    np.testing.assert_array_equal(opt.state[id(p)]["exp_avg"], topt.state[q]["exp_avg"].numpy())
    np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-15)


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)),
        ("Adam", dict(lr=0.1, weight_decay=0.1)),
        ("AdamW", dict(lr=0.1, amsgrad=True)),
        ("Adam", dict(lr=0.1, betas=(0.0, 0.0))),
    ],
)
def test_non_finite_gradients_propagate_silently_as_in_torch(kind, kw):
    """NaN and inf gradients give NaN / inf parameters, as torch's, without NumPy's
    RuntimeWarnings (an error under ``-W error``)."""
    p, q = _pair(np.array([1.0, 2.0, 3.0]))
    opt, topt = MR_CLASSES[kind]([p], **kw), getattr(torch.optim, kind)([q], **kw)
    for g in ([np.nan, 1.0, np.inf], [1.0, -np.inf, 1.0], [1.0, 1.0, 1.0]):
        _set_grads([p], [q], [np.array(g)])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opt.step()
        topt.step()
        np.testing.assert_array_equal(p.data, q.detach().numpy())


def test_step_with_a_closure_returns_its_loss_as_torch():
    """``step(closure)``: the closure recomputes loss and gradients (grad mode on, even
    inside ``no_grad``), the step uses them, and its value is returned."""
    x = np.array([1.0, -2.0, 0.5])
    p, q = _pair(x)
    opt, topt = SGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([q], lr=0.1, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = (p * p * p).sum()
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = (q * q * q).sum()
        loss.backward()
        return loss

    for _ in range(3):
        with mr.no_grad():
            loss = opt.step(closure)
        tloss = topt.step(tclosure)
        assert float(loss) == pytest.approx(float(tloss), rel=1e-15)
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-15)
    assert opt.step() is None and topt.step() is None


def test_named_parameters_as_torch():
    """``model.named_parameters()`` gives groups with ``param_names``, saved in the
    ``state_dict``; a group without names beside named ones is refused, as in torch."""
    m, t = mr.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    opt = AdamW(m.named_parameters(), lr=0.1)
    topt = torch.optim.AdamW(t.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"]
    state, tstate = opt.state_dict(), topt.state_dict()
    assert state["param_groups"][0]["param_names"] == tstate["param_groups"][0]["param_names"]
    with pytest.raises(ValueError, match="names"):
        opt.add_param_group({"params": [mr.nn.Parameter(np.ones(2))]})
    with pytest.raises(ValueError, match="names"):
        topt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})


def test_state_takes_the_parameter_as_key_as_torch():
    """``opt.state[p]`` (torch's spelling) gives the parameter's buffers, and an empty dict
    for a parameter without state, as torch's defaultdict does."""
    (p, q), (p2, q2) = _pair(np.array([1.0, 2.0])), _pair(np.array([3.0]))
    opt = SGD([p, p2], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([q, q2], lr=0.1, momentum=0.9)
    _set_grads([p], [q], [np.array([0.5, -1.0])])
    opt.step()
    topt.step()
    np.testing.assert_array_equal(
        opt.state[p]["momentum_buffer"], topt.state[q]["momentum_buffer"].numpy()
    )
    assert p in opt.state and opt.state.get(p2) is None
    assert opt.state[p2] == topt.state[q2] == {}


def test_the_group_dict_is_the_group_as_in_torch():
    """Changing the dict given to the constructor or to ``add_param_group`` changes the
    group (torch keeps the dict itself); a refused group is left as it was."""
    (a, ta), (b, tb) = _pair(np.ones(2)), _pair(np.ones(2))
    g, tg = {"params": [a]}, {"params": [ta]}
    opt, topt = SGD([g], lr=0.1), torch.optim.SGD([tg], lr=0.1)
    h, th = {"params": b, "lr": 0.2}, {"params": tb, "lr": 0.2}
    opt.add_param_group(h)
    topt.add_param_group(th)
    g["lr"], tg["lr"], h["lr"], th["lr"] = 0.5, 0.5, 0.05, 0.05
    _set_grads([a, b], [ta, tb], [np.ones(2), np.ones(2)])
    opt.step()
    topt.step()
    for p, q in ((a, ta), (b, tb)):
        np.testing.assert_array_equal(p.data, q.detach().numpy())
    assert opt.param_groups[0] is g and opt.param_groups[1] is h
    refused = {"params": [np.ones(2)], "lr": 0.5}
    with pytest.raises(TypeError):
        opt.add_param_group(refused)
    assert sorted(refused) == ["lr", "params"]  # (no defaults filled in)


def test_decoupled_weight_decay_and_implementation_switches_as_torch():
    """``Adam(decoupled_weight_decay=True)`` is AdamW (torch's option); an AdamW loading
    an Adam's state stays decoupled, as torch's; ``foreach`` / ``fused`` are accepted
    (one implementation here), ``differentiable=True`` / ``capturable=True`` refused."""
    kw = dict(lr=0.1, weight_decay=0.3, foreach=False, fused=None)
    p, q = _pair(np.array([1.0, -2.0]))
    opt = Adam([p], decoupled_weight_decay=True, **kw)
    topt = torch.optim.Adam([q], decoupled_weight_decay=True, **kw)
    r, u = _pair(np.array([1.0, -2.0]))
    w = AdamW([r], **kw)
    w.load_state_dict(Adam([mr.nn.Parameter(np.zeros(2))], lr=0.1, weight_decay=0.3).state_dict())
    for i in range(4):
        _set_grads([p, r], [q, u], [np.array([0.3, i]), np.array([0.3, i])])
        opt.step()
        topt.step()
        w.step()
    np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-14)
    np.testing.assert_array_equal(r.data, p.data)
    assert w.param_groups[0]["decoupled_weight_decay"] is True
    for bad in (dict(differentiable=True), dict(capturable=True)):
        with pytest.raises(ValueError, match="not supported"):
            AdamW([mr.nn.Parameter(np.zeros(2))], **bad)
    with pytest.raises(ValueError, match="not supported"):
        SGD([mr.nn.Parameter(np.zeros(2))], differentiable=True)
    with pytest.raises(TypeError, match="foreach"):
        SGD([mr.nn.Parameter(np.zeros(2))], foreach="yes")


def test_parameters_refused_clearly():
    """Where torch raises (a set of parameters in a group) minires raises the same type;
    where torch misbehaves later it raises at once: a parameter twice in one group (torch
    warns that this will be an error; the step would update it twice) and an integer
    tensor (torch fails at its first gradient)."""
    p, q = _pair(np.ones(2))
    with pytest.raises(TypeError, match="set"):
        SGD([{"params": {p}}])
    with pytest.raises(TypeError, match="ordered"):
        torch.optim.SGD([{"params": {q}}])
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        SGD([mr.tensor(np.ones(2, np.int64))], lr=0.1)
    with pytest.raises(TypeError, match="pairs"):
        SGD([("w", p, 1)], lr=0.1)


@pytest.mark.parametrize(
    "grad,error,match",
    [
        (np.ones(1), ValueError, r"shape \(3,\) has a .grad of shape \(1,\)"),
        (np.ones(3, np.int64), TypeError, "float array"),
        ([1.0, 1.0, 1.0], TypeError, "float array"),
    ],
)
def test_a_gradient_torch_would_not_accept_is_refused(grad, error, match):
    """torch refuses a ``.grad`` of another shape or an integer dtype when it is assigned;
    minires' ``.grad`` is a plain attribute, so ``step`` checks every one before it changes
    any parameter (a (1,) gradient used to broadcast over the parameter)."""
    first, p = mr.nn.Parameter(np.zeros(2)), mr.nn.Parameter(np.zeros(3))
    first.grad = np.ones(2)
    for opt in (SGD([first, p], lr=0.1), Adam([first, p])):
        p.grad = grad
        with pytest.raises(error, match=match):
            opt.step()
        np.testing.assert_array_equal(first.data, np.zeros(2))
    p.grad = mr.ones(3, dtype="float64")  # a Tensor is fine: its array is used
    SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(p.data, -0.5 * np.ones(3))


# -- schedules ---------------------------------------------------------------------------------


@st.composite
def schedule_specs(draw, inner: bool = False):
    """A schedule as data, built the same way with either library by `_build`."""
    kinds = ["step", "multistep", "cosine", "linear", "lambda", "lambdas"]
    kind = draw(st.sampled_from(kinds if inner else [*kinds, "sequential"]))
    gamma = st.floats(0.1, 1.0)
    if kind == "step":
        return (kind, draw(st.integers(1, 5)), draw(gamma))
    if kind == "multistep":
        return (kind, draw(st.lists(st.integers(0, 15), max_size=4)), draw(gamma))
    if kind == "cosine":
        # (halves: torch divides by zero at a T_max a rounding error from an integer)
        t_max = draw(st.integers(1, 12) | st.integers(1, 24).map(lambda k: k / 2))
        return (kind, t_max, draw(st.sampled_from([0.0, 1e-4])))
    if kind == "linear":  # (torch's SequentialLR divides by zero at total_iters=0)
        total = draw(st.integers(1 if inner else 0, 8))
        return (kind, draw(st.floats(0.01, 1.0)), draw(st.floats(0.0, 1.0)), total)
    if kind in ("lambda", "lambdas"):
        return (kind, draw(st.floats(0.8, 1.0)))
    subs = draw(st.lists(schedule_specs(inner=True), min_size=2, max_size=3))
    milestones = sorted(
        draw(st.lists(st.integers(0, 12), min_size=len(subs) - 1, max_size=len(subs) - 1))
    )
    return (kind, subs, milestones)


def _build(spec, opt, M):
    kind, *args = spec
    if kind == "step":
        return M.StepLR(opt, args[0], args[1])
    if kind == "multistep":
        return M.MultiStepLR(opt, args[0], args[1])
    if kind == "cosine":
        return M.CosineAnnealingLR(opt, args[0], args[1])
    if kind == "linear":
        return M.LinearLR(opt, *args)
    if kind == "lambda":
        return M.LambdaLR(opt, lambda e, a=args[0]: a**e)
    if kind == "lambdas":  # one function per group
        rest = [lambda e: 1 / (1 + e)] * (len(opt.param_groups) - 1)
        return M.LambdaLR(opt, [lambda e, a=args[0]: a**e, *rest])
    return M.SequentialLR(opt, [_build(s, opt, M) for s in args[0]], args[1])


def _optimizers(lrs):
    groups = [{"params": [mr.nn.Parameter(np.ones(1))], "lr": lr} for lr in lrs]
    tgroups = [{"params": [torch.nn.Parameter(torch.ones(1))], "lr": lr} for lr in lrs]
    return SGD(groups, lr=0.1), torch.optim.SGD(tgroups, lr=0.1)


@settings(max_examples=300)
@given(
    specs=st.lists(schedule_specs(), min_size=1, max_size=2),
    lrs=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=3),
    edit_at=st.none() | st.integers(0, 25),
    save_at=st.none() | st.integers(0, 25),
)
def test_schedules_follow_torch_exactly(specs, lrs, edit_at, save_at):
    """One or two schedulers (chained) on an optimizer of 1 to 3 groups, an lr scaled by
    hand at ``edit_at``, the state saved and loaded into fresh objects at ``save_at``:
    every lr, ``get_last_lr()`` and ``last_epoch`` equal to torch's, bit for bit."""
    opt, topt = _optimizers(lrs)
    scheds, tscheds = [_build(s, opt, L) for s in specs], [_build(s, topt, TL) for s in specs]
    for epoch in range(30):
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
        assert [s.get_last_lr() for s in scheds] == [s.get_last_lr() for s in tscheds]
        assert [s.last_epoch for s in scheds] == [s.last_epoch for s in tscheds]
        if epoch == edit_at:  # (up, not down: see the note on negative lrs below)
            for g, tg in zip(opt.param_groups, topt.param_groups):
                g["lr"] = tg["lr"] = g["lr"] * 1.5
        # (torch's cosine rule turns an lr below eta_min, set by hand or by a chained
        # schedule, negative; load_state_dict refuses a negative lr: no round trip then)
        if epoch == save_at and min(g["lr"] for g in opt.param_groups) >= 0:
            state, sched_states = opt.state_dict(), [s.state_dict() for s in scheds]
            opt, _ = _optimizers(lrs)
            scheds = [_build(s, opt, L) for s in specs]
            opt.load_state_dict(state)
            for s, sd in zip(scheds, sched_states):
                s.load_state_dict(sd)
        opt.step()
        topt.step()
        for s, ts in zip(scheds, tscheds):
            s.step()
            ts.step()


def test_cosine_with_a_t_max_next_to_an_integer_does_not_divide_by_zero():
    """torch's recursive cosine rule divides by zero at the step after the minimum when
    T_max is a rounding error below an integer; minires takes the rise torch takes at an
    integer T_max there, and stays on the closed form."""
    opt, topt = _optimizers([1.0])
    t_max = 1.9999999999999982
    s, ts = L.CosineAnnealingLR(opt, t_max), TL.CosineAnnealingLR(topt, t_max)
    for _ in range(2):
        s.step()
        ts.step()
    with pytest.raises(ZeroDivisionError):
        ts.step()
    for epoch in range(3, 12):
        s.step()
        assert s.get_last_lr() == pytest.approx(s.lr_at(epoch), abs=1e-12)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("StepLR", dict(step_size=3, gamma=0.5)),
        ("StepLR", dict(step_size=5, gamma=0.5)),
        ("MultiStepLR", dict(milestones=[5, 8])),
        ("CosineAnnealingLR", dict(T_max=10)),
        ("LinearLR", dict(start_factor=0.2, total_iters=8)),
        ("LambdaLR", dict(lr_lambda=lambda e: 0.9**e)),
    ],
)
def test_resuming_with_last_epoch_as_torch(name, kw):
    """``last_epoch=4`` with ``initial_lr`` set: the first step and the ones after follow
    torch's rules from the optimizer's current lr (the closed form gave other lrs); without
    ``initial_lr`` both refuse with a KeyError."""
    opt, topt = _optimizers([0.1, 0.03])
    for g in [*opt.param_groups, *topt.param_groups]:
        g["initial_lr"] = g["lr"]
    s, ts = getattr(L, name)(opt, last_epoch=4, **kw), getattr(TL, name)(topt, last_epoch=4, **kw)
    for _ in range(10):
        assert s.get_last_lr() == ts.get_last_lr() and s.last_epoch == ts.last_epoch
        s.step()
        ts.step()
    opt, topt = _optimizers([0.1])
    with pytest.raises(KeyError, match="initial_lr"):
        getattr(L, name)(opt, last_epoch=4, **kw)
    with pytest.raises(KeyError, match="initial_lr"):
        getattr(TL, name)(topt, last_epoch=4, **kw)


@pytest.mark.parametrize("last_epoch", [-1, 0, 2, 5])
def test_sequential_with_last_epoch_as_torch(last_epoch):
    def make(opt, M):
        warm, step = M.LinearLR(opt, 0.1, total_iters=3), M.StepLR(opt, 2, 0.5)
        return M.SequentialLR(opt, [warm, step], [3], last_epoch=last_epoch)

    opt, topt = _optimizers([0.1])
    s, ts = make(opt, L), make(topt, TL)
    for _ in range(8):
        assert s.get_last_lr() == ts.get_last_lr() and s.last_epoch == ts.last_epoch
        s.step()
        ts.step()


@pytest.mark.parametrize(
    "name,kw",
    [
        ("StepLR", dict(step_size=2, gamma=0.5)),
        ("MultiStepLR", dict(milestones={1, 3})),  # any collection, as torch
        ("CosineAnnealingLR", dict(T_max=5)),
        ("LinearLR", dict(start_factor=0.2, total_iters=4)),
        ("LinearLR", dict(start_factor=0.5, total_iters=0)),
    ],
)
def test_step_with_an_epoch_uses_the_closed_form_as_torch(name, kw):
    """torch's deprecated ``step(epoch)``: jump to the epoch, closed-form lrs there; the
    steps after it carry on by the chainable rules."""
    opt, topt = _optimizers([0.1])
    s, ts = getattr(L, name)(opt, **kw), getattr(TL, name)(topt, **kw)
    for epoch in (3, 1, 4, 9):
        if kw.get("total_iters") != 0:  # (torch's closed form divides by total_iters)
            with pytest.warns(UserWarning, match="deprecated"):
                s.step(epoch)
            ts.step(epoch)
        for _ in range(3):
            assert s.get_last_lr() == ts.get_last_lr() and s.last_epoch == ts.last_epoch
            s.step()
            ts.step()


def test_scheduler_arguments_refused_as_torch():
    """A list of lr_lambdas of the wrong length, a non-scheduler or no scheduler in
    SequentialLR, a last_epoch that is not an int: the exception type torch raises."""
    opt, topt = _optimizers([0.1, 0.2])
    for lib, o, error in ((L, opt, ValueError), (TL, topt, ValueError)):
        with pytest.raises(error, match="lr_lambdas"):
            lib.LambdaLR(o, [lambda e: 1.0])
    with pytest.raises(TypeError):
        L.SequentialLR(opt, [L.StepLR(opt, 2), 3], [2])
    with pytest.raises(TypeError):
        TL.SequentialLR(topt, [TL.StepLR(topt, 2), 3], [2])
    with pytest.raises(ValueError, match="at least one"):
        L.SequentialLR(opt, [], [])
    with pytest.raises(ValueError, match="at least one"):
        TL.SequentialLR(topt, [], [])
    for g in [*opt.param_groups, *topt.param_groups]:
        g.setdefault("initial_lr", g["lr"])
    with pytest.raises(TypeError, match="last_epoch"):
        L.StepLR(opt, 2, last_epoch="3")
    with pytest.raises(TypeError):
        TL.StepLR(topt, 2, last_epoch="3")
