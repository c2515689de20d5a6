"""The ``minires`` command. Each subcommand lives in its own module and is imported only
when run, so ``minires --help`` stays fast."""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). The function takes argv (list of str)
# and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("minires.commands.demo:main", "the two-minute tour: gradients, skips, training, conv"),
    "gradcheck": ("minires.commands.gradcheck:main", "gradient-check every built-in op"),
    "explain": (
        "minires.commands.explain:main",
        "residual gradient decomposition and gradient flow on a small model",
    ),
    "train": (
        "minires.commands.train:main",
        "train a model (digits, CIFAR, MNIST; data-parallel under mpiexec), resumable",
    ),
    "data": ("minires.commands.data:main", "download verified data sets (CIFAR, MNIST)"),
    "experiment": (
        "minires.commands.experiment:main",
        "run a paper experiment (degradation, cardinality)",
    ),
    "bench": (
        "minires.commands.bench:main",
        "time grouped vs dense vs depthwise conv (see benchmarks/)",
    ),  # noqa: E501
    "summary": ("minires.commands.summary:main", "parameter and multiply-add table of models"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: minires COMMAND [options]", "", "commands:"]
    lines += [f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items()]
    lines += ["", "Run 'minires COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minires`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from minires import __version__

        print(f"minires {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"minires: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module), func)
    from minires._mpi_env import launched_size

    if launched_size() > 1:  # under mpiexec: a failure on any rank ends every rank
        from minires.distributed import guard

        return guard(lambda: command(rest))
    return int(command(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
