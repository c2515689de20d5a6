"""``python -m minires.benchmarks``: see `benchmarks.cli`."""

import sys

from minires.benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
