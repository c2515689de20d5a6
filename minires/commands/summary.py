"""``minires summary MODEL [MODEL ...]``: parameter and multiply-add tables.

minires summary resnet50                     per-layer and per-stage tables
minires summary resnet50 resnext50_32x4d     side by side, as the ResNeXt paper's Table 1
minires summary --templates                  the five ResNeXt-50 templates of equal cost
minires summary resnet20 --input 3,32,32
"""

from __future__ import annotations

import argparse
import sys

from minires import models
from minires.commands._args import Parser
from minires.summary import ModelSummary, _format_table, compare, summary

# Titles the papers use, for the side-by-side table.
TITLES = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "resnet152": "ResNet-152",
    "resnext50_32x4d": "ResNeXt-50 (32x4d)",
    "resnext101_32x8d": "ResNeXt-101 (32x8d)",
    "resnext101_64x4d": "ResNeXt-101 (64x4d)",
    "wide_resnet50_2": "Wide ResNet-50-2",
}


def _parse_shape(text: str) -> tuple[int, int, int]:
    message = f"--input expects C,H,W (e.g. 3,224,224), got {text!r}"
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(message)
    return shape  # type: ignore[return-value]


def summarize(name: str, input_shape: tuple[int, int, int] | None = None) -> ModelSummary:
    """Build ``name`` (without drawing random weights) and summarise it."""
    with models.no_init():
        model = models.get_model(name)
    return summary(model, input_shape or models.input_shape_for(name), name=name)


def templates_table(input_shape: tuple[int, int, int] | None = None) -> str:
    """The ResNeXt paper's preserved-complexity ResNeXt-50 templates (its Table 2)."""
    rows = [["template", "C", "d", "width of conv2 3x3", "params", "mult-adds"]]
    for name, (c, d) in models.RESNEXT_TEMPLATES.items():
        with models.no_init():
            model = models.resnext(50, c, d)
        s = summary(model, input_shape or (3, 224, 224), name=f"resnext50_{name}")
        macs = f"{s.total_macs:,} ({s.total_macs / 1e9:.2f}G)"
        rows.append(
            [f"ResNeXt-50 ({name})", str(c), str(d), str(c * d), f"{s.total_params:,}", macs]
        )
    title = "ResNeXt-50 templates of preserved complexity (Xie et al. 2017, Table 2)"
    return title + "\n\n" + _format_table(rows, right={1, 2, 3, 4, 5})


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``minires summary``; returns an exit code."""
    parser = Parser(
        prog="minires summary",
        description="Parameters, output shapes and multiply-adds (conv + fc, one image) of "
        "the model zoo. Two or more models print side by side, like the ResNeXt paper's "
        "Table 1.",
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"model names: {', '.join(models.list_models())}, or resnext50_CxDd, "
        "cifar_resnetN, cifar_plainN",
    )
    parser.add_argument(
        "--input",
        type=_parse_shape,
        default=None,
        metavar="C,H,W",
        help="one image's shape (default 3,224,224; 3,32,32 for CIFAR nets)",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="with several models, also print each one's per-layer table",
    )
    parser.add_argument(
        "--templates",
        action="store_true",
        help="list the five ResNeXt-50 templates of preserved complexity",
    )
    args = parser.parse_args(argv)
    if not args.models and not args.templates:
        parser.print_usage(sys.stderr)
        print("minires summary: give at least one MODEL, or --templates", file=sys.stderr)
        return 2
    try:
        sums = [summarize(n, args.input) for n in args.models]
    except ValueError as exc:
        print(f"minires summary: {exc}", file=sys.stderr)
        return 2
    parts = []
    if len(sums) == 1:
        parts.append(str(sums[0]))
    elif sums:
        if args.layers:
            parts += [str(s) for s in sums]
        parts.append(compare(sums, [TITLES.get(s.name, s.name) for s in sums]))
    if args.templates:
        parts.append(templates_table(args.input))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
