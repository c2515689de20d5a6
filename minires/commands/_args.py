"""What every ``minires`` command's parser shares: numeric argument types that check
their range (so a bad value stops at parsing: exit status 2, one line, nothing written),
help texts shown as plain prose, and one-line error messages."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

_RST_ROLE = re.compile(r":[a-z]+:`([^`]*)`")
_RST_LITERAL = re.compile(r"``([^`]*)``")
_RST_REF = re.compile(r"`([^`]*)`")


def plain(text: str | None) -> str | None:
    """Docstring markup to plain prose: ``x``, `x` and :func:`x` become x."""
    if not text:
        return text
    return _RST_REF.sub(r"\1", _RST_LITERAL.sub(r"\1", _RST_ROLE.sub(r"\1", text)))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ... (see prog --help)``,
    exit status 2) and whose description, epilog and help texts drop reST markup."""

    def __init__(self, *args: Any, **kwargs: Any):
        for key in ("description", "epilog"):
            kwargs[key] = plain(kwargs.get(key))
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = plain(kwargs["help"])
        return super().add_argument(*args, **kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        group = super().add_argument_group(*args, **kwargs)
        _plain_help(group)
        return group

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Any:
        group = super().add_mutually_exclusive_group(**kwargs)
        _plain_help(group)
        return group

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def _plain_help(group: Any) -> None:
    add = group.add_argument

    def add_argument(*args: Any, **kwargs: Any) -> argparse.Action:
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = plain(kwargs["help"])
        return add(*args, **kwargs)

    group.add_argument = add_argument


def _number(kind: type, test: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
unit_interval = _number(float, lambda v: 0 <= v <= 1, "a number between 0 and 1")


def cifar_depth(text: str) -> int:
    """A CIFAR ResNet depth 6n+2 >= 8 (8, 14, 20, 32, 44, 56, 110, ...)."""
    value = positive_int(text)
    if value < 8 or (value - 2) % 6:
        raise argparse.ArgumentTypeError(
            f"expected a depth 6n+2 >= 8 (8, 14, 20, 32, 44, 56, 110), got {value}"
        )
    return value


def writable_dir(path: str, prog: str) -> str | None:
    """Create ``path`` if needed and check it can be written; the error message (one
    line) or None. Under MPI only rank 0 writes files, so only rank 0 checks."""
    import os
    from pathlib import Path

    from minires.distributed import get_comm

    if not get_comm().is_root:
        return None

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{prog}: cannot create the output folder {path!r}: {exc.strerror or exc}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{prog}: the output folder {path!r} is not writable"
    return None
