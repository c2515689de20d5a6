"""``python -m minires`` runs the CLI."""

import sys

from minires.cli import main

sys.exit(main())
