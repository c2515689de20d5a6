"""``minires data``: fetch data sets, verified against their published checksums.

minires data download cifar10                  # into $MINIRES_DATA or ~/.cache/minires
minires data download mnist --root data --mirror https://my.mirror/mnist/
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from minires.data.download import DOWNLOADABLE

    p = argparse.ArgumentParser(prog="minires data", description="Manage data sets.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = sub.add_parser(
        "download",
        help="download and verify a data set",
        description="Download a data set with a progress bar, verify it against the published "
        "MD5 checksums before anything is extracted or read, and install it atomically. An "
        "interrupted download resumes when run again; an installed data set is not fetched "
        "again.",
    )
    d.add_argument("name", choices=DOWNLOADABLE)
    d.add_argument("--root", help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    d.add_argument("--mirror", metavar="URL", help="base URL serving the same file names")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from minires.data.download import ChecksumError, download, is_installed

    if is_installed(args.name, args.root):
        from minires.data.download import SOURCES, data_root

        print(f"{args.name} is already in {data_root(args.root) / SOURCES[args.name].folder}")
        return 0
    try:
        folder = download(args.name, args.root, mirror=args.mirror,
                          progress=not args.no_progress, timeout=args.timeout)  # fmt: skip
    except (ConnectionError, ChecksumError, OSError, ValueError) as exc:
        # (an unwritable --root, a --mirror that is not a URL: one line, not a traceback)
        print(f"minires data: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: verified and installed in {folder}")
    return 0
