"""``minires bench``: time grouped vs dense vs depthwise conv (the `benchmarks` package)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """Dispatch to minires.benchmarks.cli.main (same options as python -m minires.benchmarks)."""
    try:
        from minires.benchmarks.cli import main as bench_main
    except ImportError as exc:  # benchmarks/ ships beside minires/; say so if missing
        print(f"minires bench: the 'benchmarks' package is not importable ({exc})")
        return 2
    return bench_main(argv, prog="minires bench")
