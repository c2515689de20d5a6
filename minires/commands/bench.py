"""``minires bench``: time grouped vs dense vs depthwise conv (`minires.benchmarks`)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """Dispatch to `minires.benchmarks.cli.main` (same options as
    ``python -m minires.benchmarks``)."""
    from minires.benchmarks.cli import main as bench_main

    return bench_main(argv, prog="minires bench")
