"""``minires gradcheck``: the gradient check of every built-in op, as a table.

Each case builds small random float64 inputs (seeded, jittered away from kinks such as
relu at 0 and max-pool ties), runs `minires.gradcheck`, and reports the worst error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minires as mr
import minires.functional as F
from minires.commands._args import Parser, non_negative_int
from minires.gradcheck import reading_guide

Case = tuple[str, str, Callable[[np.random.Generator], tuple[Callable, list]]]


def _t(rng: np.random.Generator, *shape: int, positive: bool = False) -> mr.Tensor:
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    return mr.tensor(x, requires_grad=True, dtype=np.float64)


def _distinct(rng: np.random.Generator, *shape: int) -> mr.Tensor:
    """Values with gaps >= 0.01 and away from 0: no ties, no kinks within eps."""
    n = int(np.prod(shape))
    x = rng.permutation(np.arange(1, n + 1)) * 0.01 * rng.choice([-1, 1], n)
    return mr.tensor(x.reshape(shape), requires_grad=True, dtype=np.float64)


def _leaf(values: np.ndarray) -> mr.Tensor:
    return mr.tensor(values, requires_grad=True, dtype=np.float64)


def _bn_buffers(c: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(c), np.ones(c)


def _dropout_case(r: np.random.Generator) -> tuple[Callable, list]:
    """Dropout with a mask drawn once (from the case's generator, not minires' own)."""
    mask = (r.random((3, 4)) < 0.5) * 2.0  # kept values scaled by 1 / (1 - p)
    return (lambda x: F.Dropout.apply(x, mask)), [_t(r, 3, 4)]


def cases() -> list[Case]:
    """(op, shape description, builder) for every built-in op."""
    s = []

    def add(op: str, shape: str):
        def deco(build):
            s.append((op, shape, build))
            return build

        return deco

    add("add (broadcast)", "(3,4)+(4,)")(lambda r: (lambda a, b: a + b, [_t(r, 3, 4), _t(r, 4)]))
    add("sub (broadcast)", "(2,3,1)-(3,4)")(
        lambda r: (lambda a, b: a - b, [_t(r, 2, 3, 1), _t(r, 3, 4)])
    )
    add("mul (broadcast)", "(3,4)*(3,1)")(
        lambda r: (lambda a, b: a * b, [_t(r, 3, 4), _t(r, 3, 1)])
    )
    add("div", "(3,4)/(3,4)")(
        lambda r: (lambda a, b: a / b, [_t(r, 3, 4), _t(r, 3, 4, positive=True)])
    )
    add("pow", "(3,4)**(3,4)")(
        lambda r: (lambda a, b: a**b, [_t(r, 3, 4, positive=True), _t(r, 3, 4)])
    )
    add("neg", "(5,)")(lambda r: (lambda a: -a, [_t(r, 5)]))
    add("exp", "(3,4)")(lambda r: (lambda a: a.exp(), [_t(r, 3, 4)]))
    add("log", "(3,4)")(lambda r: (lambda a: a.log(), [_t(r, 3, 4, positive=True)]))
    add("tanh", "(3,4)")(lambda r: (lambda a: a.tanh(), [_t(r, 3, 4)]))
    add("sigmoid", "(3,4)")(lambda r: (lambda a: a.sigmoid(), [_t(r, 3, 4)]))
    add("relu", "(2,3,4)")(lambda r: (F.relu, [_distinct(r, 2, 3, 4)]))
    add("sum", "(2,3,4) axis=1")(lambda r: (lambda a: a.sum(axis=1), [_t(r, 2, 3, 4)]))
    add("mean", "(2,3,4) axis=(0,2)")(lambda r: (lambda a: a.mean(axis=(0, 2)), [_t(r, 2, 3, 4)]))
    add("max", "(3,5) axis=1")(lambda r: (lambda a: a.max(axis=1), [_distinct(r, 3, 5)]))
    add("reshape", "(2,6)->(3,4)")(lambda r: (lambda a: a.reshape(3, 4), [_t(r, 2, 6)]))
    add("transpose", "(2,3,4)->(2,0,1)")(
        lambda r: (lambda a: a.transpose(2, 0, 1), [_t(r, 2, 3, 4)])
    )
    add("getitem", "(4,5)[1:, ::2]")(lambda r: (lambda a: a[1:, ::2], [_t(r, 4, 5)]))
    add("getitem (repeated idx)", "(5,)[[0,0,3]]")(
        lambda r: (lambda a: a[np.array([0, 0, 3])], [_t(r, 5)])
    )
    add("pad", "(2,3,4,4) channels+2")(
        lambda r: (lambda a: F.pad(a, (0, 0, 0, 0, 0, 2)), [_t(r, 2, 3, 4, 4)])
    )
    add("cat", "(2,3)+(2,2) axis=1")(
        lambda r: (lambda a, b: mr.cat([a, b], axis=1), [_t(r, 2, 3), _t(r, 2, 2)])
    )
    add("matmul", "(2,3,4)@(4,5)")(lambda r: (lambda a, b: a @ b, [_t(r, 2, 3, 4), _t(r, 4, 5)]))
    add("linear", "(3,4)->(3,5)")(lambda r: (F.linear, [_t(r, 3, 4), _t(r, 5, 4), _t(r, 5)]))
    add("flatten", "(2,3,2,2)")(lambda r: (F.flatten, [_t(r, 2, 3, 2, 2)]))
    add("log_softmax", "(3,5)")(lambda r: (F.log_softmax, [_t(r, 3, 5)]))
    add("cross_entropy", "(4,5)")(
        lambda r: (lambda a: F.cross_entropy(a, np.array([0, 4, 2, 2])), [_t(r, 4, 5)])
    )
    add("conv2d", "(2,3,7,6) k3 s2 p1")(
        lambda r: (
            lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
            [_t(r, 2, 3, 7, 6), _t(r, 4, 3, 3, 3), _t(r, 4)],
        )
    )
    add("conv2d dilated", "(1,2,7,7) k(3,2) d2 p2")(
        lambda r: (
            lambda x, w: F.conv2d(x, w, padding=2, dilation=2),
            [_t(r, 1, 2, 7, 7), _t(r, 3, 2, 3, 2)],
        )
    )
    add("conv2d grouped", "(2,4,5,5) g=2")(
        lambda r: (
            lambda x, w: F.conv2d(x, w, padding=1, groups=2),
            [_t(r, 2, 4, 5, 5), _t(r, 6, 2, 3, 3)],
        )
    )
    add("conv2d depthwise", "(2,3,5,5) g=3 x2")(
        lambda r: (
            lambda x, w: F.conv2d(x, w, padding=1, stride=2, groups=3),
            [_t(r, 2, 3, 5, 5), _t(r, 6, 1, 3, 3)],
        )
    )
    add("batch_norm train", "(3,4,3,3)")(
        lambda r: (
            lambda x, w, b: F.batch_norm(x, *_bn_buffers(4), w, b, training=True),
            [_t(r, 3, 4, 3, 3), _t(r, 4), _t(r, 4)],
        )
    )
    add("batch_norm eval", "(2,4,3,3)")(
        lambda r: (
            lambda x, w, b: F.batch_norm(x, np.full(4, 0.3), np.full(4, 2.0), w, b, training=False),
            [_t(r, 2, 4, 3, 3), _t(r, 4), _t(r, 4)],
        )
    )
    add("batch_norm train 2d", "(5,3)")(
        lambda r: (lambda x: F.batch_norm(x, None, None, training=True), [_t(r, 5, 3)])
    )
    add("max_pool2d", "(2,2,5,5) k3 s2 p1")(
        lambda r: (lambda x: F.max_pool2d(x, 3, 2, 1), [_distinct(r, 2, 2, 5, 5)])
    )
    add("avg_pool2d", "(2,2,5,5) k3 s2 p1")(
        lambda r: (lambda x: F.avg_pool2d(x, 3, 2, 1), [_t(r, 2, 2, 5, 5)])
    )
    add("adaptive_avg_pool2d", "(2,3,5,5)->1")(
        lambda r: (lambda x: F.adaptive_avg_pool2d(x, 1), [_t(r, 2, 3, 5, 5)])
    )
    add("adaptive_avg_pool2d", "(1,2,5,7)->(2,3)")(
        lambda r: (lambda x: F.adaptive_avg_pool2d(x, (2, 3)), [_t(r, 1, 2, 5, 7)])
    )
    # PyTorch's names (issue 13): the ops behind Dropout, GroupNorm, LayerNorm, the losses
    # and the Tensor methods
    add("min", "(3,5) dim=1")(lambda r: (lambda a: a.min(dim=1), [_distinct(r, 3, 5)]))
    add("abs", "(3,4)")(lambda r: (lambda a: a.abs(), [_distinct(r, 3, 4)]))
    add("sqrt", "(3,4)")(lambda r: (lambda a: a.sqrt(), [_t(r, 3, 4, positive=True)]))
    add("clamp", "(4,5) [-0.055, 0.045]")(
        lambda r: (lambda a: a.clamp(-0.055, 0.045), [_distinct(r, 4, 5)])
    )
    add("clamp (tensor bounds)", "(3,4) in [(4,), (3,1)]")(
        lambda r: (
            lambda a, lo, hi: a.clamp(lo, hi),
            [
                _distinct(r, 3, 4),
                _leaf(r.uniform(-0.1, 0.0, 4)),
                _leaf(r.uniform(0.0, 0.1, (3, 1))),
            ],
        )
    )
    add("where", "(3,4) ? (3,4) : (4,)")(
        lambda r: (
            (lambda cond: lambda a, b: mr.where(cond, a, b))(mr.tensor(r.random((3, 4)) < 0.5)),
            [_t(r, 3, 4), _t(r, 4)],
        )
    )
    add("maximum / minimum (broadcast)", "(3,4), (4,)")(
        lambda r: (
            lambda a, b: mr.maximum(a, b) * 2.0 + mr.minimum(a, b),
            [_distinct(r, 3, 4), _leaf(_distinct(r, 4).data + 0.005)],  # no ties
        )
    )
    add("var / std", "(3,5) dim=1")(
        lambda r: (
            lambda a: a.var(1, keepdim=True) + a.std(0, unbiased=False, keepdim=True),
            [_t(r, 3, 5)],
        )
    )
    add("clone / expand", "(3,1)->(2,3,4)")(
        lambda r: (lambda a: a.clone().expand(2, 3, 4) * a, [_t(r, 3, 1)])
    )
    add("nll_loss", "(4,5) weighted, ignore_index")(
        lambda r: (
            lambda a: F.nll_loss(
                F.log_softmax(a, 1),
                np.array([0, 4, 2, 1]),
                weight=np.arange(1.0, 6.0),
                ignore_index=1,
            ),
            [_t(r, 4, 5)],
        )
    )
    add("binary_cross_entropy_with_logits", "(3,4) pos_weight")(
        lambda r: (
            lambda a, y: F.binary_cross_entropy_with_logits(a, y, pos_weight=np.full(4, 2.0)),
            [_t(r, 3, 4), _leaf(r.uniform(0.1, 0.9, (3, 4)))],
        )
    )
    add("gelu / silu / softplus / leaky", "(3,4) summed")(
        lambda r: (
            lambda a: (
                F.gelu(a)
                + F.gelu(a, approximate="tanh")
                + F.silu(a)
                + F.softplus(a)
                + F.leaky_relu(a, 0.1)
            ),
            [_distinct(r, 3, 4)],
        )
    )
    add("permute", "(2,3,4)->(1,2,0)")(lambda r: (lambda a: a.permute(1, 2, 0), [_t(r, 2, 3, 4)]))
    add("unsqueeze/squeeze", "(3,1,4)")(
        lambda r: (lambda a: a.squeeze(1).unsqueeze(0), [_t(r, 3, 1, 4)])
    )
    add("stack", "2 x (2,3) dim=1")(
        lambda r: (lambda a, b: mr.stack([a, b], dim=1), [_t(r, 2, 3), _t(r, 2, 3)])
    )
    add("dropout (fixed mask)", "(3,4) p=0.5")(_dropout_case)
    add("layer_norm", "(2,3,4) over (3,4)")(
        lambda r: (
            lambda x, w, b: F.layer_norm(x, (3, 4), w, b),
            [_t(r, 2, 3, 4), _t(r, 3, 4), _t(r, 3, 4)],
        )
    )
    add("group_norm", "(2,6,3,3) G=3")(
        lambda r: (
            lambda x, w, b: F.group_norm(x, 3, w, b),
            [_t(r, 2, 6, 3, 3), _t(r, 6), _t(r, 6)],
        )
    )
    add("mse_loss", "(3,4)")(lambda r: (F.mse_loss, [_t(r, 3, 4), _t(r, 3, 4)]))
    add("cross_entropy smoothed", "(4,5) e=0.1 sum")(
        lambda r: (
            lambda a: F.cross_entropy(a, np.array([0, 4, 2, 2]), "sum", label_smoothing=0.1),
            [_t(r, 4, 5)],
        )
    )
    add("remainder", "(3,4) % (4,)")(
        lambda r: (lambda a, b: a % b, [_distinct(r, 3, 4), _leaf(r.uniform(0.5, 0.9, 4))])
    )
    add("prod", "(3,4) dim=1, all; a 0")(
        lambda r: (
            lambda a: a.prod(1) + a.prod(),
            [_leaf(np.where(np.arange(12).reshape(3, 4) == 5, 0.0, r.uniform(0.5, 1.5, (3, 4))))],
        )
    )
    add("cumsum", "(3,4) dim=0")(lambda r: (lambda a: a.cumsum(0), [_t(r, 3, 4)]))
    add("logsumexp", "(3,4) dim=1")(lambda r: (lambda a: a.logsumexp(1), [_t(r, 3, 4)]))
    add("flip", "(2,3,4) dims 0,2")(lambda r: (lambda a: a.flip(0, 2) * a, [_t(r, 2, 3, 4)]))
    add("pad (modes, crop)", "(1,2,4,5) 4 modes")(
        lambda r: (
            lambda a: (
                F.pad(a, (2, 1, 1, 2), mode="reflect")
                + F.pad(a, (2, 1, 1, 2), mode="replicate")
                + F.pad(a, (2, 1, 1, 2), mode="circular")
                + F.pad(a, (4, -1, 4, -1), value=0.5)
            ),
            [_t(r, 1, 2, 4, 5)],
        )
    )
    add("max pool with indices", "(1,2,5,5) k2 s1")(
        lambda r: (
            lambda x: F.max_pool2d(x, 2, 1, return_indices=True)[0],
            [_distinct(r, 1, 2, 5, 5)],
        )
    )
    add("norm", "(3,4) p=2,1,inf dim=1")(
        lambda r: (
            lambda a: a.norm(dim=1) + a.norm(1, 1) + a.norm(float("inf"), 1),
            [_distinct(r, 3, 4)],
        )
    )
    add("sort / topk", "(3,5) dim=1")(
        lambda r: (
            lambda a: a.sort(1, descending=True).values[:, :2] * a.topk(2, 1).values,
            [_distinct(r, 3, 5)],
        )
    )
    add("repeat / mT", "(2,3)->(2,3,4)")(lambda r: (lambda a: a.repeat(2, 2, 1).mT, [_t(r, 2, 3)]))
    add("interpolate bilinear", "(1,2,3,5)->(4,7)")(
        lambda r: (lambda a: F.interpolate(a, size=(4, 7), mode="bilinear"), [_t(r, 1, 2, 3, 5)])
    )
    add("interpolate nearest", "(1,2,3,5) x2")(
        lambda r: (lambda a: F.interpolate(a, scale_factor=2), [_t(r, 1, 2, 3, 5)])
    )
    return s


def larger_cases() -> list[Case]:
    """Ops whose finite-difference noise grows with size (reductions, many outputs per
    input), at larger shapes: the calibration measures how far a correct op's error goes."""
    s = []

    def add(op: str, shape: str, build):
        s.append((op, shape, build))

    add(
        "conv2d",
        "(4,8,8,8) k3 p1",
        lambda r: (
            lambda x, w, b: F.conv2d(x, w, b, padding=1),
            [_t(r, 4, 8, 8, 8), _t(r, 8, 8, 3, 3), _t(r, 8)],
        ),
    )
    add(
        "batch_norm train",
        "(16,4,6,6)",
        lambda r: (
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            [_t(r, 16, 4, 6, 6), _t(r, 4), _t(r, 4)],
        ),
    )
    add(
        "linear",
        "(16,32)->(16,24)",
        lambda r: (F.linear, [_t(r, 16, 32), _t(r, 24, 32), _t(r, 24)]),
    )
    add("log_softmax", "(8,100)", lambda r: (F.log_softmax, [_t(r, 8, 100)]))
    add("matmul", "(20,30)@(30,20)", lambda r: (lambda a, b: a @ b, [_t(r, 20, 30), _t(r, 30, 20)]))
    add(
        "avg_pool2d",
        "(4,4,9,9) k3 s2 p1",
        lambda r: (lambda x: F.avg_pool2d(x, 3, 2, 1), [_t(r, 4, 4, 9, 9)]),
    )
    return s


class _Scaled(mr.Function):
    """Identity forward; backward multiplies the gradient by ``factor``: a planted bug of
    relative size ``factor - 1`` in whatever backward feeds this input."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


def planted(fn: Callable, inputs: list, delta: float) -> Callable:
    """``fn`` with the gradient of its first checked input off by a factor ``1 + delta``."""
    first = next(t for t in inputs if t.requires_grad)

    def wrong(*args):
        return fn(*[_Scaled.apply(a, 1 + delta) if a is first else a for a in args])

    return wrong


@dataclass
class Calibration:
    """Max relative error of every correct op (per case, over seeds) and of planted bugs."""

    correct: dict[str, list[float]]
    larger: dict[str, list[float]]
    planted: dict[float, list[tuple[float, bool]]]  # delta -> (max rel err, passed) per case

    def summary(self) -> str:
        lines = []
        for name, found in (("correct ops", self.correct), ("larger shapes", self.larger)):
            if not found:
                continue
            rel = np.concatenate(list(found.values()))
            worst = max(found, key=lambda k: max(found[k]))
            lines.append(
                f"{name}, {len(found)} cases x {len(next(iter(found.values())))} seed(s): "
                f"max rel err median {np.median(rel):.1e}, 90th percentile "
                f"{np.percentile(rel, 90):.1e}, max {rel.max():.1e} ({worst})"
            )
        if self.planted:
            lines.append("backward off by a factor (1 + delta), seed 0:")
        for delta, runs in self.planted.items():
            rel = np.array([r for r, _ in runs])
            n_fail = sum(not ok for _, ok in runs)
            lines.append(
                f"  delta {delta:.0e}: max rel err median {np.median(rel):.1e} "
                f"(min {rel.min():.1e}, max {rel.max():.1e}); {n_fail}/{len(runs)} cases fail"
            )
        return "\n".join(lines)


def calibrate(
    seeds: int = 8,
    larger_seeds: int = 3,
    deltas: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
    progress: bool = False,
) -> Calibration:
    """Measure what relative errors correct and broken ops show (float64, default settings).

    Every case of `cases` over ``seeds`` seeds (a seed sets both the inputs and the
    projections), the `larger_cases` over ``larger_seeds``, and every case with its
    backward off by a factor ``1 + delta`` for each delta (seed 0).
    """
    import warnings

    from minires.gradcheck import GradcheckWarning

    def rel(fn, inputs, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GradcheckWarning)
            r = mr.gradcheck(fn, inputs, raise_exception=False, seed=seed)
        return r.max_rel_error, r.passed

    jobs = [("correct", op, shape, b, s) for op, shape, b in cases() for s in range(seeds)]
    jobs += [
        ("larger", op, shape, b, s) for op, shape, b in larger_cases() for s in range(larger_seeds)
    ]
    jobs += [(d, op, shape, b, 0) for d in deltas for op, shape, b in cases()]
    cal = Calibration({}, {}, {d: [] for d in deltas})
    it = jobs
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm comes with the [plot] and [test] extras
            tqdm = None
        if tqdm is not None:
            it = tqdm(jobs, desc="calibrating gradcheck", unit="check")
    for kind, op, shape, build, seed in it:
        fn, inputs = build(np.random.default_rng(seed))
        if kind in ("correct", "larger"):
            getattr(cal, kind).setdefault(f"{op} {shape}", []).append(rel(fn, inputs, seed)[0])
        else:
            cal.planted[kind].append(rel(planted(fn, inputs, kind), inputs, seed))
    return cal


@dataclass
class Row:
    op: str
    shape: str
    max_abs: float
    max_rel: float
    passed: bool
    seconds: float


def run_all(seed: int = 0, ops: list[str] | None = None) -> list[Row]:
    """Gradient-check every built-in op (or those whose name contains one of ``ops``)."""
    rows = []
    for op, shape, build in cases():
        if ops and not any(o in op for o in ops):
            continue
        rng = np.random.default_rng(seed)
        fn, inputs = build(rng)
        t0 = time.perf_counter()
        res = mr.gradcheck(fn, inputs, raise_exception=False)
        rows.append(
            Row(
                op,
                shape,
                res.max_abs_error,
                res.max_rel_error,
                res.passed,
                time.perf_counter() - t0,
            )
        )
    return rows


def format_table(rows: list[Row]) -> str:
    """The table `minires gradcheck` prints."""
    head = f"{'op':<24} {'shape':<24} {'max abs err':>12} {'max rel err':>12}  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.op:<24} {r.shape:<24} {r.max_abs:>12.2e} {r.max_rel:>12.2e}  "
            f"{'pass' if r.passed else 'FAIL'}"
        )
    n_ok = sum(r.passed for r in rows)
    lines.append(
        f"{n_ok}/{len(rows)} ops passed (float64, central differences, eps=1e-6, "
        f"backend {mr.get_backend()})"
    )
    lines.append(reading_guide().replace("\n    ", " "))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``minires gradcheck [--backend numba|numpy] [--op NAME ...] [--seed N] [--calibrate]``."""
    p = Parser(
        prog="minires gradcheck",
        description="Gradient-check every built-in op in float64 and print the worst errors.",
    )
    p.add_argument("--backend", choices=["numba", "numpy"], default=None)
    p.add_argument(
        "--op", action="append", metavar="NAME", help="only ops whose name contains NAME"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of inputs and projections"
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="measure what relative errors correct ops and planted bugs show (tens of seconds)",
    )
    args = p.parse_args(argv)
    known = list(dict.fromkeys(op for op, _, _ in cases()))
    unknown = [o for o in args.op or [] if not any(o in op for op in known)]
    if unknown:
        print(
            f"minires gradcheck: unknown op {', '.join(map(repr, unknown))}; known ops: "
            f"{', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if args.backend:
        mr.set_backend(args.backend)
    if args.calibrate:
        print(calibrate(progress=True).summary())
        return 0
    rows = run_all(args.seed, args.op)
    print(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1
