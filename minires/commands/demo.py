"""``minires demo``: the tour of minires in about two minutes on 2 cores.

1. gradcheck of every built-in op (one summary line, the table in the report);
2. the residual gradient decomposition of a pre-activation resnet20 (identity term =
   upstream gradient, exactly) against the post-activation resnet20, and the gradient norm
   by depth in both and in the plain twin;
3. a short training of a small residual net and its plain twin on the embedded digits;
4. a small timing of ResNeXt's grouped 3x3 conv vs the dense one at the same FLOPs and a
   depthwise one (each backend in its own process, via ``benchmarks``), told in sentences
   computed from the numbers it just measured (``benchmarks.story.conv_story``).

Everything printed goes to ``OUT/report.md`` too, with the plots beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import minires as mr
from minires.commands._args import Parser, non_negative_int, writable_dir


class Report:
    """Prints as it goes and keeps the text for report.md."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.parts.append(text)

    def block(self, text: str, echo: bool = True) -> None:
        """Pre-formatted text (a table) as a fenced block in the Markdown; ``echo=False``
        keeps it out of the terminal."""
        if echo:
            print(text, flush=True)
        self.parts.append("```text\n" + text.rstrip() + "\n```")

    def write(self, path: Path) -> None:
        path.write_text("\n".join(self.parts) + "\n")


def _timed(report: Report, title: str, fn: Callable[[], None]) -> None:
    report(f"\n## {title}\n")
    t0 = time.perf_counter()
    fn()
    report(f"\n({time.perf_counter() - t0:.1f} s)")


def section_gradcheck(report: Report) -> bool:
    """Gradient-check every op; True when all pass."""
    from minires.commands import gradcheck as gc

    rows = gc.run_all()
    n_ok = sum(r.passed for r in rows)
    worst = max(rows, key=lambda r: r.max_abs)
    report(
        f"gradcheck: {n_ok}/{len(rows)} ops pass in float64 (worst abs error "
        f"{worst.max_abs:.1e}, in {worst.op})"
    )
    report.block(gc.format_table(rows), echo=n_ok != len(rows))
    return n_ok == len(rows)


def _digit_batch(batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from minires.data.digits import digits_stats, load_digits

    xs, ys = load_digits("train")
    mean, std = digits_stats()
    idx = np.random.default_rng(seed).permutation(len(xs))[:batch]
    return ((xs[idx] - mean) / std).astype(np.float32), ys[idx]


def section_gradients(report: Report, out: Path, depth: int, seed: int) -> None:
    """Decomposition on a float64 pre-activation resnet (the formula literally) and its
    post-activation twin, then gradient flow pre-activation vs post-activation vs plain."""
    from minires import analysis as A
    from minires import models

    x, y = _digit_batch(32, seed)
    x64 = x.astype(np.float64)
    mr.manual_seed(seed)
    pre64 = models.preact_resnet(depth, in_channels=1, bottleneck=False).double()
    mr.manual_seed(seed)
    post64 = models.cifar_resnet(depth, num_classes=10, in_channels=1).double()
    n1 = len(pre64.layer1)
    d = A.decompose(pre64, x64, y, l1=0, l2=n1)
    exact = np.array_equal(d.identity, d.grad_l2)
    report(
        f"Gradient of the loss at the input of stage 1 of the pre-activation preact_resnet{depth} "
        "(a^0), split into the identity term (the path through every shortcut of units "
        f"0..{n1 - 1}) and the residual term (every path through at least one branch F). "
        "A pre-activation unit is a + F(a) with nothing after the add, so the identity term is "
        f"dσ/da^{n1} itself - exactly equal: {exact}:"
    )
    report.block(str(d))
    r = A.decompose(post64, x64, y, l1=0, l2=n1)
    report(
        f"In the post-activation resnet{depth} (relu after every add) the same identity path "
        f"is masked by those ReLUs: |I| / |dσ/da^{n1}| = {r.identity_ratio:.3f} there, "
        f"{d.identity_ratio:.3f} in preact_resnet{depth} (sum check "
        f"{max(d.relative_error, r.relative_error):.1e} relative)."
    )
    A.plot_decompositions(
        {f"preact_resnet{depth}": A.decompose(pre64, x64, y),
         f"resnet{depth}": A.decompose(post64, x64, y)},
        path=out / "decomposition.png", title="identity vs residual terms by block boundary",
    )  # fmt: skip

    nets = {}
    for kind in ("preact", "resnet", "plain"):
        mr.manual_seed(seed)
        nets[f"{kind}_resnet{depth}" if kind == "preact" else f"{kind}{depth}"] = (
            models.preact_resnet(depth, in_channels=1, bottleneck=False)
            if kind == "preact"
            else models.cifar_resnet(depth, num_classes=10, in_channels=1, plain=kind == "plain")
        )
    comp = A.compare_gradient_flow(
        nets, x, y, steps=0, path=out / "gradient_flow.png",
        title=f"gradient norm by depth at initialisation (depth {depth})",
    )  # fmt: skip
    r0, p0 = comp.get(f"resnet{depth}", "init"), comp.get(f"plain{depth}", "init")
    q0 = comp.get(f"preact_resnet{depth}", "init")
    report(
        f"\nGradient norm at each block input at initialisation (batchnorm in train mode): the "
        f"first block's gradient is {p0.first_last_ratio:.3g}x the last one's in plain{depth}, "
        f"{r0.first_last_ratio:.3g}x in resnet{depth}, {q0.first_last_ratio:.3g}x in "
        f"preact_resnet{depth} - with batchnorm, a plain net's gradients do not vanish toward "
        "the input, they grow; in the residual nets every branch adds its own share on top of "
        "the identity path."
    )
    report.block(str(comp))


def section_training(report: Report, out: Path, depth: int, epochs: int, seed: int) -> None:
    """Train resnet{depth} and plain{depth} with the same recipe; plot both."""
    from minires import models
    from minires.data import make_loaders
    from minires.optim import SGD
    from minires.training import plot_runs, train

    runs = {}
    for plain in (False, True):
        name = f"{'plain' if plain else 'resnet'}{depth}"
        mr.manual_seed(seed)
        model = models.cifar_resnet(depth, num_classes=10, in_channels=1, plain=plain)
        train_loader, test_loader, _ = make_loaders("digits", batch_size=64, seed=seed)
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        hist = train(model, train_loader, test_loader, epochs, opt, progress=sys.stderr.isatty(),
                     plot=False, verbose=False)  # fmt: skip
        runs[name] = hist
        last = hist.last
        report(
            f"{name:>9}: train error {100 * last['train_error']:5.1f}%  "
            f"test accuracy {100 * last['test_acc']:5.1f}%  after {epochs} epoch(s)"
        )
    plot_runs(runs, out / "training.png", title=f"digits: resnet{depth} vs plain{depth}")


def section_conv_timing(report: Report, out: Path, quick: bool) -> bool:
    """Grouped vs dense vs depthwise 3x3 conv, timed by the benchmark tool. Returns
    False (the demo then exits non-zero) if the benchmark could not run."""
    bench_out = out / "conv_timing"
    cmd = [
        sys.executable, "-m", "minires.benchmarks", "--only", "ceilings,layers",
        "--out", str(bench_out), *(["--quick"] if quick else []),
        "--layers", "conv2 dense,conv2 32x4d,depthwise", "--batch", "1" if quick else "2",
        "--reps", "1" if quick else "3", "--warmup", "1", "--min-time", "0",
        "--backends", "numba,numpy" if quick else "numba,numpy,torch,torch_cl",
        "--no-progress", "--no-plots",
    ]  # fmt: skip
    report(
        "ResNeXt-50's conv2-stage 3x3 conv: dense (ResNet, C=1) vs grouped (32x4d) vs depthwise, "
        "forward + both backward passes; each backend in its own process (see `minires bench` "
        "for the full sweep and plots). What the measurement says:"
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    summary, data = bench_out / "summary.md", bench_out / "results.json"
    if proc.returncode != 0 or not summary.exists() or not data.exists():
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        report(f"(conv timing FAILED: `{' '.join(cmd[1:])}` exited {proc.returncode}: {tail})")
        return False
    report(conv_words(json.loads(data.read_text())))
    report.block(summary.read_text().strip())
    return True


def conv_words(results: dict) -> str:
    """The demo's sentences on the conv timing, computed from the benchmark's results
    (FLOP ratio, FLOP/byte, measured times and GFLOP/s, which is faster, the roofline
    bound; a noisy-run warning), with the sentences of the benchmark's layer
    verdict. The ratio convention is stated in the summary printed after it."""
    from minires.benchmarks.story import conv_story

    return conv_story(results)


def main(argv: list[str] | None = None) -> int:
    """``minires demo [--out DIR] [--quick]``."""
    p = Parser(prog="minires demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="minires_demo", help="folder for report.md and plots")
    p.add_argument("--quick", action="store_true", help="tiny settings (tests, ~20 s)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--backend", choices=["numba", "numpy"], default=None)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    if args.backend:
        mr.set_backend(args.backend)
    problem = writable_dir(args.out, "minires demo")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    out = Path(args.out)
    depth, epochs = (8, 1) if args.quick else (20, 3)
    report = Report()
    t0 = time.perf_counter()
    report(f"# minires demo\n\nbackend {mr.get_backend()}, numpy {np.__version__}, "
           f"{os.cpu_count()} CPU(s)")  # fmt: skip
    ok = True

    def gradcheck_part() -> None:
        nonlocal ok
        ok = section_gradcheck(report)

    _timed(report, "1. Gradient check of every op", gradcheck_part)
    _timed(report, "2. Gradients through skip connections",
           lambda: section_gradients(report, out, depth, args.seed))  # fmt: skip
    _timed(report, f"3. Training resnet{depth} and its plain twin on the embedded digits",
           lambda: section_training(report, out, depth, epochs, args.seed))  # fmt: skip

    def conv_part() -> None:
        nonlocal ok
        ok = section_conv_timing(report, out, args.quick) and ok

    _timed(report, "4. Grouped vs dense vs depthwise 3x3 convolution", conv_part)
    report(f"\nDone in {time.perf_counter() - t0:.0f} s. Report and plots: {out.resolve()}/")
    report.write(out / "report.md")
    return 0 if ok else 1
