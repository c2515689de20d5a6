"""``minires gradcheck``: the gradient check of every built-in op, as a table.

Each case builds small random float64 inputs (seeded, jittered away from kinks such as
relu at 0 and max-pool ties), runs `minires.gradcheck`, and reports the worst error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minires as mr
import minires.functional as F
from minires.commands._args import Parser, non_negative_int

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


def _bn_buffers(c: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(c), np.ones(c)


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
    return s


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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``minires gradcheck [--backend numba|numpy] [--op NAME ...] [--seed N]``."""
    p = Parser(prog="minires gradcheck", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["numba", "numpy"], default=None)
    p.add_argument("--op", action="append", help="only ops whose name contains this")
    p.add_argument("--seed", type=non_negative_int, default=0)
    args = p.parse_args(argv)
    if args.backend:
        mr.set_backend(args.backend)
    rows = run_all(args.seed, args.op)
    print(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1
