"""gradcheck must be able to fail, and must say why."""

from __future__ import annotations

import warnings

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

import minires as mr
import minires.functional as F


class WrongSquare(mr.Function):
    """Forward x^2, backward deliberately 2.1 x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2.1 * x * g


class BatchNormNoCentering(mr.Function):
    """A batchnorm whose backward forgets the mean terms: passes a sum-based check."""

    @staticmethod
    def forward(ctx, x):
        mu, var = x.mean(0), x.var(0)
        inv = 1 / np.sqrt(var + 1e-5)
        ctx.save_for_backward(inv)
        return (x - mu) * inv

    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return g * inv


def x64(*shape, seed=0):
    return mr.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def test_wrong_backward_fails_with_report():
    x = x64(3, 4)
    with pytest.raises(mr.GradcheckError, match=r"input 0 \(3, 4\): MISMATCH.*analytic"):
        mr.gradcheck(WrongSquare.apply, [x])
    res = mr.gradcheck(WrongSquare.apply, [x], raise_exception=False)
    assert not res and res.max_abs_error > 1e-3
    rep = res.inputs[0]
    assert rep.worst_index is not None and len(rep.worst_index) == 2
    assert rep.analytic == pytest.approx(2.1 / 2 * rep.numeric, rel=1e-4)


def test_random_upstream_gradient_catches_bug_a_plain_sum_hides():
    x = x64(5, 3)
    # With a plain sum upstream, both the true and the buggy gradients of sum(bn(x)) vanish.
    x.grad = None
    BatchNormNoCentering.apply(x).sum().backward()
    assert not np.allclose(x.grad, 0)  # the bug is visible only with a random upstream grad
    assert not mr.gradcheck(BatchNormNoCentering.apply, [x], raise_exception=False)
    assert not mr.gradcheck(BatchNormNoCentering.apply, [x], raise_exception=False, fast_mode=True)


def test_correct_ops_pass_in_all_modes():
    x, w = x64(2, 3, 5, 5), x64(4, 3, 3, 3, seed=1)
    f = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    assert mr.gradcheck(f, [x, w])
    assert mr.gradcheck(f, [x, w], fast_mode=True)
    assert mr.gradcheck(lambda x: F.log_softmax(x), [x64(3, 4)], full_jacobian=True)


def test_multiple_outputs_and_non_grad_inputs():
    x, y = x64(3), mr.tensor(np.ones(3))
    assert mr.gradcheck(lambda x, y: (x * y, (x * x).sum()), [x, y])


def test_float32_refused_clearly():
    x = mr.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        mr.gradcheck(lambda x: x * 2, [x])


def test_no_input_requires_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        mr.gradcheck(lambda x: x * 2, [mr.tensor(np.ones(2))])


def test_kink_is_reported_as_warning_not_bare_mismatch():
    x = mr.tensor(np.array([0.0, 1.0, -1.0]), requires_grad=True)  # relu at exactly 0
    with pytest.warns(mr.GradcheckWarning, match="non-differentiable"):
        res = mr.gradcheck(F.relu, [x])
    assert res and res.inputs[0].kinks == [(0,)]
    tie = mr.tensor(np.array([[[[1.0, 1.0], [0.0, -1.0]]]]), requires_grad=True)
    with pytest.warns(mr.GradcheckWarning):
        assert mr.gradcheck(lambda t: F.max_pool2d(t, 2), [tie])


def test_inputs_grads_are_restored():
    x = x64(3)
    x.grad = np.full(3, 7.0)
    mr.gradcheck(lambda x: x * 3, [x])
    np.testing.assert_array_equal(x.grad, np.full(3, 7.0))


def test_report_str_lists_every_input():
    res = mr.gradcheck(lambda a, b: a * b, [x64(2), x64(2, seed=1)])
    text = str(res)
    assert "passed" in text and "input 0" in text and "input 1" in text


# -- the worst element is the true worst (issue 12, defect 1) -----------------------------


class OffAt0And5(mr.Function):
    """x^2 with a backward off by 0.01 at [0] and by 10 at [5] (times the upstream grad)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        off = np.zeros_like(x)
        off[0], off[5] = 0.01, 10.0
        return (2 * x + off) * g


@pytest.mark.parametrize("mode", [{}, {"full_jacobian": True}, {"n_projections": 5}])
def test_report_names_the_worst_element_not_the_first_failing_one(mode):
    x = x64(8)
    res = mr.gradcheck(OffAt0And5.apply, [x], raise_exception=False, **mode)
    rep = res.inputs[0]
    assert not res and rep.worst_index == (5,)
    assert rep.n_failed == 2
    assert rep.analytic - rep.numeric == pytest.approx(rep.abs_error)
    assert rep.abs_error == pytest.approx(rep.max_abs_error)
    assert "worst at (5,)" in str(res) and "MISMATCH in 2 of 8" in str(res)
    if mode.get("full_jacobian"):  # the Jacobian entry itself: d y5 / d x5
        assert rep.row == " (output 5)"
        assert rep.numeric == pytest.approx(2 * x.data[5], rel=1e-6)
        assert rep.abs_error == pytest.approx(10.0, rel=1e-6)


class ScaledIdentity(mr.Function):
    """y = c * x, backward c*g + err*g: err[0]=0.5 at c=1000 (within rtol), err[1]=0.01
    at c=1 (10x its tolerance). The larger absolute error is the one that passes."""

    c = np.array([1000.0, 1.0, 2.0])
    err = np.array([0.5, 0.01, 0.0])

    @staticmethod
    def forward(ctx, x):
        return ScaledIdentity.c * x

    @staticmethod
    def backward(ctx, g):
        return (ScaledIdentity.c + ScaledIdentity.err) * g


def test_worst_means_furthest_out_of_tolerance():
    res = mr.gradcheck(ScaledIdentity.apply, [x64(3)], raise_exception=False, full_jacobian=True)
    rep = res.inputs[0]
    assert not res and rep.n_failed == 1 and rep.worst_index == (1,)
    assert rep.max_abs_error == pytest.approx(0.5, rel=1e-6)  # at (0,), which passes
    assert rep.abs_error == pytest.approx(0.01, rel=1e-5)


# -- fast mode and kinks (defect 2) ---------------------------------------------------------


class ReluNoMask(mr.Function):
    """relu whose backward forgets the mask."""

    @staticmethod
    def forward(ctx, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, g):
        return g


def test_fast_mode_fails_a_wrong_relu_with_an_input_on_the_kink():
    x = mr.tensor(np.array([0.0, -1.0, 2.0, -3.0, -0.5]), requires_grad=True)
    with pytest.warns(mr.GradcheckWarning):
        res = mr.gradcheck(ReluNoMask.apply, [x], raise_exception=False, fast_mode=True)
    assert not res and res.inputs[0].kinks == [(0,)]
    with pytest.warns(mr.GradcheckWarning):
        res = mr.gradcheck(ReluNoMask.apply, [x], raise_exception=False)
    assert not res and res.inputs[0].worst_index in [(1,), (3,), (4,)]
    # The correct relu on the same input passes, the kink left out.
    with pytest.warns(mr.GradcheckWarning):
        ok = mr.gradcheck(F.relu, [x], fast_mode=True)
    assert ok and ok.inputs[0].kinks == [(0,)]


@pytest.mark.parametrize("seed", range(4))
def test_fast_mode_finds_every_kink_among_many(seed):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((3, 4, 5))
    zeros = rng.random(data.shape) < 0.3  # zeros are common after relu and zero padding
    data[zeros] = 0.0
    x = mr.tensor(data, requires_grad=True)
    with pytest.warns(mr.GradcheckWarning):
        ok = mr.gradcheck(F.relu, [x], fast_mode=True, seed=seed)
    assert sorted(ok.inputs[0].kinks) == sorted(map(tuple, np.argwhere(zeros).tolist()))
    with pytest.warns(mr.GradcheckWarning):
        assert not mr.gradcheck(ReluNoMask.apply, [x], raise_exception=False, fast_mode=True)
    np.testing.assert_array_equal(x.data, data)


class Curved(mr.Function):
    """10 * (sum x)^2: smooth, but moving all 400 elements together bends the one-sided
    slopes apart by eps * v^T H v, which grows with the number of elements moved."""

    extra = 0.0  # a wrong backward adds this

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.array(10 * x.sum() ** 2)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (20 * x.sum() + Curved.extra) * np.ones_like(x) * g


def test_fast_mode_does_not_take_joint_curvature_for_kinks():
    data = np.random.default_rng(0).standard_normal((20, 20))
    x = mr.tensor(data - data.mean(), requires_grad=True)
    Curved.extra = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", mr.GradcheckWarning)
        for seed in range(3):
            res = mr.gradcheck(Curved.apply, [x], fast_mode=True, seed=seed)
            assert res and res.inputs[0].kinks == []
    Curved.extra = 1e-2
    assert not mr.gradcheck(Curved.apply, [x], fast_mode=True, raise_exception=False)


# -- non-finite values never pass (defect 3) ------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad):
    data = np.array([0.5, 1.0, bad, 2.0])
    with pytest.raises(ValueError, match=r"input 0 .*non-finite.*at \(2,\)"):
        mr.gradcheck(WrongSquare.apply, [mr.tensor(data, requires_grad=True)])
    other = mr.tensor(np.array([1.0, bad]))  # also when the input is not checked
    with pytest.raises(ValueError, match=r"input 1 .*non-finite.*at \(1,\)"):
        mr.gradcheck(lambda a, b: a * b, [x64(2), other])


class NanGradAt(mr.Function):
    """x^2 with a backward that puts ``value`` at element 2."""

    value = np.nan

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        out = 2 * x * g
        out[2] = NanGradAt.value
        return out


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("mode", [{}, {"full_jacobian": True}, {"fast_mode": True}])
def test_non_finite_analytic_gradient_fails_and_says_where(value, mode):
    NanGradAt.value = value
    res = mr.gradcheck(NanGradAt.apply, [x64(5)], raise_exception=False, **mode)
    rep = res.inputs[0]
    assert not res and not rep.passed
    assert any("analytic gradient not finite" in p for p in rep.problems)
    if not mode.get("fast_mode"):
        assert rep.worst_index == (2,) and "(2,)" in rep.problems[0]
    with pytest.raises(mr.GradcheckError, match="analytic gradient not finite"):
        mr.gradcheck(NanGradAt.apply, [x64(5)], **mode)


class NanWhenMoved(mr.Function):
    """x^2, but NaN once element 2 leaves its starting value: the numeric side is NaN
    there while the analytic side is right."""

    start = 0.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        y = x * x
        if x[2] != NanWhenMoved.start:
            y[2] = np.nan
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


@pytest.mark.parametrize("mode", [{}, {"full_jacobian": True}, {"fast_mode": True}])
def test_non_finite_numeric_gradient_fails_and_says_where(mode):
    x = x64(5)
    NanWhenMoved.start = x.data[2]
    res = mr.gradcheck(NanWhenMoved.apply, [x], raise_exception=False, **mode)
    rep = res.inputs[0]
    assert not res
    assert any("numeric gradient not finite" in p for p in rep.problems)
    if not mode.get("fast_mode"):
        assert rep.worst_index == (2,) and rep.n_failed == 1


def test_non_finite_output_fails_and_says_which():
    x = mr.tensor(np.array([1.0, -1.0, 2.0]), requires_grad=True)  # log(-1) = nan
    with np.errstate(invalid="ignore"):
        res = mr.gradcheck(lambda t: (t * 2, t.log()), [x], raise_exception=False)
    assert not res and "output 1" in res.problems[0] and "(1,)" in res.problems[0]
    assert "not compared" in str(res)


def test_nan_input_no_longer_lets_a_wrong_backward_pass():
    x = mr.tensor(np.array([np.nan, 1.0, 2.0]), requires_grad=True)
    with pytest.raises(ValueError, match="non-finite"):
        mr.gradcheck(WrongSquare.apply, [x], raise_exception=False)


# -- settings validated (defect 3 and 4) ----------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"eps": 0},
        {"eps": 0.0},
        {"eps": -1e-6},
        {"eps": np.nan},
        {"eps": np.inf},
        {"atol": np.nan},
        {"atol": -1e-5},
        {"atol": np.inf},
        {"rtol": np.nan},
        {"rtol": -1.0},
        {"rtol": np.inf},
        {"n_projections": 0},
        {"n_projections": -2},
        {"seed": -1},
    ],
)
def test_bad_settings_are_refused_naming_the_setting(kw):
    ((name, value),) = kw.items()
    with pytest.raises(ValueError, match=rf"{name}={value!r}"):
        mr.gradcheck(WrongSquare.apply, [x64(3)], **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"eps": "1e-6"},
        {"eps": None},
        {"atol": True},
        {"n_projections": 2.5},
        {"n_projections": True},
        {"seed": 1.5},
        {"fast_mode": 1},
        {"fast_mode": "yes"},
        {"full_jacobian": None},
        {"raise_exception": "no"},
    ],
)
def test_wrong_types_of_settings_are_refused(kw):
    (name,) = kw
    with pytest.raises(TypeError, match=name):
        mr.gradcheck(WrongSquare.apply, [x64(3)], **kw)


def test_numpy_scalars_are_accepted_as_settings():
    res = mr.gradcheck(
        lambda t: t * 3,
        [x64(3)],
        eps=np.float64(1e-6),
        atol=np.float32(1e-5),
        n_projections=np.int64(3),
        fast_mode=np.bool_(False),
        seed=np.int32(4),
    )
    assert res and res.mode == "3 random projection(s)"


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="fast_mode and full_jacobian"):
        mr.gradcheck(WrongSquare.apply, [x64(3)], fast_mode=True, full_jacobian=True)
    with pytest.raises(TypeError, match="fn must be callable"):
        mr.gradcheck("relu", [x64(3)])
    with pytest.raises(TypeError, match="inputs must be"):
        mr.gradcheck(F.relu, np.ones(3))
    with pytest.raises(TypeError, match="input 1 is a ndarray"):
        mr.gradcheck(lambda a, b: a, [x64(3), np.ones(3)])
    with pytest.raises(ValueError, match="output 0 of fn is int64"):
        mr.gradcheck(lambda t: mr.tensor(np.argsort(t.data)), [x64(3)])
    with pytest.raises(ValueError, match="output 1 of fn is float32"):
        mr.gradcheck(lambda t: (t * 2, t.float()), [x64(3)])
    with pytest.raises(ValueError, match="no outputs"):
        mr.gradcheck(lambda t: (), [x64(3)])
    with pytest.raises(ValueError, match=r"eps=1e-06 is too small for input 0: at \(1,\)"):
        mr.gradcheck(lambda t: t * 2, [mr.tensor(np.array([1.0, 1e12]), requires_grad=True)])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        mr.gradcheck(lambda t: t * 2, [mr.Tensor(ro, requires_grad=True)])


# -- inputs restored exactly when fn raises (defect 3) --------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("mode", [{}, {"full_jacobian": True}, {"fast_mode": True}])
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 6])
def test_fn_raising_midway_leaves_inputs_bitwise_unchanged(mode, fail_at):
    a = mr.tensor(np.array([0.1, -0.0, 1 / 3, -2.5e-3, 7.0]), requires_grad=True)
    b = mr.tensor(np.array([[np.pi, -1e-300], [5e3, 0.0]]), requires_grad=True)
    a.grad = np.full(5, 9.0)
    before = [t.data.tobytes() for t in (a, b)]
    arrays = [a.data, b.data]
    boom = Boom("user's error")
    calls = 0

    def fn(x, y):
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise boom
        return x * 2, y * 3

    with pytest.raises(Boom) as info:
        mr.gradcheck(fn, [a, b], **mode)
    assert info.value is boom
    assert [t.data.tobytes() for t in (a, b)] == before
    assert a.data is arrays[0] and b.data is arrays[1]
    np.testing.assert_array_equal(a.grad, np.full(5, 9.0))
    assert b.grad is None


def test_multiple_outputs_sharing_a_graph():
    x = x64(4)
    assert mr.gradcheck(lambda t: (lambda h: (h * 2, h.sum()))(t.exp()), [x])


def test_footer_says_how_to_read_the_numbers():
    text = str(mr.gradcheck(lambda t: t * 3, [x64(3)]))
    assert "how to read rel err" in text and "values show ~0, the others 1e-10..1e-7" in text
    assert "> rtol wrong" in text and "used eps" not in text
    text = str(mr.gradcheck(lambda t: t * 3, [x64(3)], eps=1e-5))
    assert "used eps=1e-05" in text


# -- one planted wrong element: every mode fails, the report names it ------------------------


class Planted(mr.Function):
    """y = sin(x) + x^2/2 (smooth, no kinks), backward right except at ``where``, which is
    off by ``size`` times a tolerance (``scale`` says which)."""

    where: tuple[int, ...] = ()
    size = 2.0
    scale = "element"
    atol, rtol = 1e-5, 1e-3

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x) + x * x / 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = (np.cos(x) + x) * g
        p = Planted
        # The element's own tolerance, or a bound on fast mode's, which is relative to
        # the whole projection u^T J v (|v| <= 1.5).
        mag = abs(grad[p.where]) if p.scale == "element" else 1.5 * np.abs(grad).sum()
        grad[p.where] += p.size * (p.atol + p.rtol * mag)
        return grad


def _planted_case(data, scale):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), label="shape")
    x = data.draw(
        hnp.arrays(np.float64, shape, elements=st.floats(-3, 3, allow_subnormal=False)),
        label="x",
    )
    flat = data.draw(st.integers(0, x.size - 1), label="flat index")
    Planted.where = tuple(int(i) for i in np.unravel_index(flat, shape))
    sign = data.draw(st.sampled_from([-1.0, 1.0]), label="sign")
    low = 2.0 if scale == "element" else 3.0
    Planted.size = sign * data.draw(st.floats(low, 1e4), label="size in tolerances")
    Planted.scale = scale
    return mr.tensor(x, requires_grad=True)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_planted_wrong_element_fails_every_mode(data):
    x = _planted_case(data, "projection")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    for mode in ({}, {"fast_mode": True}, {"full_jacobian": True}):
        res = mr.gradcheck(Planted.apply, [x], raise_exception=False, seed=seed, **mode)
        assert not res, (mode, str(res))
    res = mr.gradcheck(Planted.apply, [x], raise_exception=False, seed=seed)
    assert res.inputs[0].worst_index == Planted.where and res.inputs[0].n_failed == 1


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_planted_error_just_above_tolerance_is_named(data):
    x = _planted_case(data, "element")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    for mode in ({}, {"full_jacobian": True}):
        res = mr.gradcheck(Planted.apply, [x], raise_exception=False, seed=seed, **mode)
        rep = res.inputs[0]
        assert not res and rep.worst_index == Planted.where and rep.n_failed == 1, str(res)
        assert f"worst at {Planted.where}" in str(res)


# -- the command -------------------------------------------------------------------------


@pytest.mark.parametrize("ops", [["typo"], ["relu", "typo"], ["conv3d", "typo"]])
def test_command_refuses_an_unknown_op_listing_the_known_ones(ops, capsys, monkeypatch):
    from minires.cli import main
    from minires.commands import gradcheck as gc

    ran = []
    monkeypatch.setattr(gc, "run_all", lambda *a, **k: ran.append(a) or [])
    argv = ["gradcheck"] + [a for op in ops for a in ("--op", op)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and not ran  # nothing else run
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown op" in lines[0] and "known ops:" in lines[0]
    unknown = lines[0].split(";")[0]
    assert "'typo'" in unknown and ("'conv3d'" in unknown) == ("conv3d" in ops)
    assert "'relu'" not in unknown  # a name that matches is not called unknown
    for op, _, _ in gc.cases():
        assert op in lines[0]


def test_command_runs_the_ops_a_name_matches(capsys):
    from minires.cli import main

    assert main(["gradcheck", "--op", "relu", "--op", "max_pool2d"]) == 0
    out = capsys.readouterr().out
    assert "2/2 ops passed" in out and "how to read rel err" in out


def test_command_refuses_a_negative_seed(capsys):
    from minires.cli import main

    with pytest.raises(SystemExit) as info:
        main(["gradcheck", "--seed", "-1"])
    assert info.value.code == 2 and "--seed" in capsys.readouterr().err


# -- curvature is not a kink (fuzz finding, session 7) ---------------------------------------


class Steep(mr.Function):
    """1000 x^2 near 0: smooth, with one-sided slopes 2000 * eps apart - beyond the kink
    tolerance of the old test, which then left every element out and passed anything."""

    factor = 2000.0  # the derivative's; a wrong backward uses another

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 1000 * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return Steep.factor * x * g


@pytest.mark.parametrize("fast_mode", [False, True])
def test_large_curvature_is_not_taken_for_kinks(fast_mode):
    x = mr.tensor(1e-5 * np.random.default_rng(0).standard_normal(5), requires_grad=True)
    Steep.factor = 2000.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", mr.GradcheckWarning)
        ok = mr.gradcheck(Steep.apply, [x], fast_mode=fast_mode)
    assert ok and ok.inputs[0].kinks == []
    Steep.factor = 3000.0
    bad = mr.gradcheck(Steep.apply, [x], fast_mode=fast_mode, raise_exception=False)
    assert not bad and bad.inputs[0].kinks == []


@pytest.mark.parametrize("fast_mode", [False, True])
def test_tight_tolerances_do_not_turn_elements_into_kinks(fast_mode):
    """A 1.5x backward at rtol=1e-9 (the kink test once scaled with the tolerance):
    failed, nothing left out as a kink."""
    x = mr.tensor(np.random.default_rng(1).standard_normal(6), requires_grad=True)
    Steep.factor = 3000.0
    res = mr.gradcheck(Steep.apply, [x], rtol=1e-9, fast_mode=fast_mode, raise_exception=False)
    assert not res and res.inputs[0].kinks == []


@pytest.mark.parametrize("fast_mode", [False, True])
def test_a_check_that_compares_nothing_fails(fast_mode):
    x = mr.tensor(np.zeros(4), requires_grad=True)  # relu at 0 everywhere: all kinks
    with pytest.warns(mr.GradcheckWarning):
        res = mr.gradcheck(F.relu, [x], fast_mode=fast_mode, raise_exception=False)
    assert not res and len(res.inputs[0].kinks) == 4
    assert "nothing was compared" in str(res)
